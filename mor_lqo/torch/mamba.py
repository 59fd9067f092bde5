r"""State-index pruning of the Mamba / Mamba2 mixers of a torch module: :func:`prune_states`.

Mamba is input dependent (:math:`\bar A_t, B_t, C_t` depend on the input), so the LTI methods of
:func:`~mor_lqo.torch.compress` do not apply; what is exact is removing states by index
(:mod:`mor_lqo.adapters.mamba`). :func:`prune_states` chooses the states from data: the inputs that reach
each mixer on the calibration batches are recorded, and greedy backward elimination drops, one at a time,
the state whose removal changes that mixer's output least (squared error summed over the recorded
inputs). The effect of removing state n is measured exactly on the unpruned mixer by zeroing its C
read-out (:func:`mor_lqo.adapters.mamba.readout_rows`); the effects of removing several states add
(exactly for Mamba1, to first order for Mamba2, whose gated RMSNorm follows the sum over states), so the
elimination runs on their Gram matrix: N + 2 mixer calls per recorded batch for Mamba1, whatever the kept
number; for Mamba2 the effects are measured again on the pruned mixer after each quarter of the remaining
states is dropped (a few rounds of fewer calls each).
"""

from __future__ import annotations

import copy
import numbers
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..adapters.mamba import readout_rows
from ..adapters.reduce import reduce_state_dict
from ..adapters.registry import extract as extract_flat
from ..deep.compress import CompressionError, parse_ratio
from ..errors import CalibrationError, LayoutError
from .api import TorchCompressionResult, _dtype_device, _first, _metric
from .modules import find_blocks, rewrap, settings_from_modules, unwrap
from .rebuild import build_reduced, count_parameters
from .recording import batches, call_module

__all__ = ["prune_states", "greedy_elimination", "removal_effects"]

SELECTIONS = ("data", "heuristic")
MAMBA = ("mamba", "mamba2")


def _record_mixer_inputs(core: nn.Module, mixers: dict[str, nn.Module], calibration, dtype, device) -> dict:
    """Per mixer name: the list of (args, kwargs) it was called with on the calibration batches."""
    rec: dict[str, list] = {name: [] for name in mixers}
    hooks = []
    for name, mod in mixers.items():
        def hook(_m, args, kwargs, name=name):
            rec[name].append((tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args),
                              {k: v for k, v in kwargs.items() if k not in ("cache", "cache_params")}))
        hooks.append(mod.register_forward_pre_hook(hook, with_kwargs=True))
    was = core.training
    core.eval()
    try:
        with torch.no_grad():
            for batch in batches(calibration):
                call_module(core, batch, dtype, device)
    finally:
        core.train(was)
        for h in hooks:
            h.remove()
    for name, calls in rec.items():
        if not calls:
            raise CalibrationError(f"{name or '<root>'}: the mixer was never called on the calibration data")
    return rec


def _outputs(mixer: nn.Module, calls) -> list[torch.Tensor]:
    with torch.no_grad():
        return [_first(mixer(*a, **k)) for a, k in calls]


def _zero_readout(params, saved, block, drop) -> None:
    for leaf, w in saved.items():
        params[leaf].copy_(w)
    for n in drop:
        for leaf, rows in readout_rows(block, n).items():
            params[leaf][torch.as_tensor(rows)] = 0


def removal_effects(mixer: nn.Module, block, calls, dropped=(), left=None):
    r"""Removal effects of the states ``left`` on the mixer with the states ``dropped`` already removed.

    With :math:`y` the original output, :math:`y_D` the output with ``dropped`` removed and
    :math:`c_n = y_D - y_{D \cup \{n\}}` (state n's read-out zeroed as well), summed over the recorded
    ``calls`` in float64: the Gram matrix :math:`G_{nm} = \langle c_n, c_m\rangle` over ``left``,
    :math:`b_n = \langle y - y_D, c_n\rangle`, :math:`\|y - y_D\|^2` and :math:`\|y\|^2`; len(left) + 2
    mixer calls per recorded call. The mixer must be a private copy (its read-out rows are zeroed in
    place, then restored)."""
    N = block.meta["N"]
    left = [n for n in range(N) if n not in dropped] if left is None else list(left)
    params = dict(mixer.named_parameters())
    saved = {leaf: params[leaf].detach().clone() for leaf in readout_rows(block, 0)}
    G, bvec, err0, norm = np.zeros((len(left), len(left))), np.zeros(len(left)), 0.0, 0.0
    with torch.no_grad():
        for args, kwargs in calls:
            _zero_readout(params, saved, block, ())
            y = _first(mixer(*args, **kwargs)).double().reshape(-1)
            _zero_readout(params, saved, block, dropped)
            yd = _first(mixer(*args, **kwargs)).double().reshape(-1)
            effects = []
            for n in left:
                _zero_readout(params, saved, block, list(dropped) + [n])
                effects.append(yd - _first(mixer(*args, **kwargs)).double().reshape(-1))
            E = torch.stack(effects)
            G += (E @ E.T).numpy()
            bvec += (E @ (y - yd)).numpy()
            err0 += float(((y - yd) ** 2).sum())
            norm += float((y ** 2).sum())
        _zero_readout(params, saved, block, ())
    return G, bvec, err0, norm


def greedy_elimination(mixer: nn.Module, block, calls, keep: int, refresh: float | None = None
                       ) -> tuple[list[int], float]:
    r"""States of ``block`` kept by greedy backward elimination on the recorded ``calls`` of ``mixer``.

    Each step drops the state that least increases the squared output error
    :math:`\|y - y_D - \sum_{n \in S} c_n\|^2` (:func:`removal_effects`; the first minimum on ties, so the
    choice is deterministic). For Mamba1 the removal effects add exactly (the output is linear in each
    state's read-out: gate and ``out_proj`` act after the sum over states), so one evaluation of the
    effects gives the greedy elimination on the true output error. For Mamba2 the gated RMSNorm after the
    sum makes the sum a first-order model, so the effects are measured again on the pruned mixer after every
    ``refresh`` fraction of the remaining states has been dropped (default 1/4 for Mamba2; None or 1:
    never; a tiny fraction: one state per evaluation, the exact greedy). Returns the kept indices (sorted)
    and the relative RMS output change the last model predicts."""
    N = block.meta["N"]
    if refresh is None:
        refresh = 0.25 if block.arch == "mamba2" else 1.0
    if not 0 < refresh <= 1:
        raise CompressionError(f"refresh must be in (0, 1], got {refresh!r}")
    dropped: list[int] = []
    err, norm = 0.0, 0.0
    while len(dropped) < N - keep:
        left = [n for n in range(N) if n not in dropped]
        G, bvec, err, norm = removal_effects(mixer, block, calls, dropped, left)
        steps = N - keep - len(dropped) if refresh >= 1 else max(1, int(refresh * len(left)))
        steps = min(steps, N - keep - len(dropped))
        cross = bvec.copy()  # <y - y_D + sum of the effects dropped in this round, c_m>
        alive = np.ones(len(left), bool)
        for _ in range(steps):
            gain = np.where(alive, 2 * cross + np.diag(G), np.inf)
            j = int(np.argmin(gain))
            err += float(gain[j])
            alive[j] = False
            cross += G[:, j]
            dropped.append(left[j])
    return sorted(n for n in range(N) if n not in dropped), float(np.sqrt(max(err, 0.0) / norm)) if norm > 0 else 0.0


def _fix_sizes(mod: nn.Module, old_n: int, new_n: int, groups: int | None) -> list[str]:
    """Size attributes the weights do not carry: ``ssm_state_size``/``d_state``, Mamba2's ``conv_dim`` and
    depthwise ``conv1d`` channels, and the model config's ``state_size`` (used for its cache)."""
    notes = []
    if old_n == new_n:
        return notes
    for sub in mod.modules():
        for name in ("ssm_state_size", "d_state", "state_size"):
            if vars(sub).get(name) == old_n:
                setattr(sub, name, new_n)
                notes.append(f"{type(sub).__name__}.{name} {old_n} -> {new_n}")
        if groups is not None and isinstance(vars(sub).get("conv_dim"), int):  # Mamba2: x | B | C channels
            new = sub.conv_dim - 2 * groups * (old_n - new_n)
            notes.append(f"{type(sub).__name__}.conv_dim {sub.conv_dim} -> {new}")
            sub.conv_dim = new
        if isinstance(sub, nn.Conv1d) and sub.weight.shape[0] != sub.out_channels:
            c = sub.weight.shape[0]
            sub.in_channels = sub.out_channels = sub.groups = c
    return notes


def _fix_config(root: nn.Module, layers: list[dict]) -> list[str]:
    """The model config's ``state_size``/``d_state`` (it sizes the generation cache) set to the new size
    when all mixers have one; otherwise left and noted."""
    olds = {lay["stored_before"] for lay in layers}
    news = {lay["stored_after"] for lay in layers}
    notes, seen = [], set()
    for sub in root.modules():
        cfg = vars(sub).get("config")
        if cfg is None or id(cfg) in seen:
            continue
        seen.add(id(cfg))
        for name in ("state_size", "d_state"):
            cur = getattr(cfg, name, None)
            if cur is None or cur not in olds or olds == news:
                continue
            if len(news) == 1:
                setattr(cfg, name, next(iter(news)))
                notes.append(f"{type(sub).__name__}.config.{name} {cur} -> {next(iter(news))}")
            else:
                notes.append(f"{type(sub).__name__}.config.{name} left at {cur}: the mixers keep different "
                             "numbers of states (a generation cache built from the config will not fit)")
    return notes


def prune_states(module: nn.Module, calibration, *, ratio=None, order=None, selection: str = "data",
                 refresh: float | None = None, metric: Callable[[nn.Module], Any] | None = None, arch: str = "auto",
                 **settings) -> TorchCompressionResult:
    """Prune the states of every Mamba / Mamba2 mixer of a torch module, chosen from data.

    Parameters
    ----------
    module : torch.nn.Module
        A model with Mamba mixers (``transformers`` ``MambaMixer``/``Mamba2Mixer``, ``mamba_ssm``); never
        modified.
    calibration : tensor, array or iterable of batches
        Inputs of the module, as in :func:`~mor_lqo.torch.compress`.
    ratio : float or str, optional
        Fraction of each mixer's states kept (rounded, at least 1; default 1/8).
    order : int or dict, optional
        Number of states kept per mixer, or ``{mixer_name: indices}`` (explicit, no selection).
    selection : {"data", "heuristic"}
        ``"data"``: greedy backward elimination on the recorded inputs (:func:`greedy_elimination`);
        ``"heuristic"``: the adapter's data-free ranking.
    refresh : float, optional
        Data selection: fraction of the remaining states dropped between two measurements of the removal
        effects (:func:`greedy_elimination`; default 1/4 for Mamba2, once for Mamba1).
    metric, arch, **settings
        As in :func:`~mor_lqo.torch.compress` (Mamba2 ``n_groups`` is read from the mixers).

    Returns
    -------
    TorchCompressionResult
        ``module``: a smaller copy of the same classes (size attributes and the config's ``state_size``
        updated); ``report``: ``method`` ("index"), ``selection``, ``blocks`` (name, arch, stored
        before/after, ``selected``, ``output_error``: relative RMS change of the mixer's output on the
        recorded inputs, ``predicted_error``: the same from the summed removal effects, data selection
        only), ``parameters``, ``metric``, ``timings``.
    """
    t0 = time.perf_counter()
    if selection not in SELECTIONS:
        raise CompressionError(f"unknown selection {selection!r}; choose one of {', '.join(SELECTIONS)}")
    if ratio is not None and order is not None:
        raise CompressionError("give ratio or order, not both")
    un = unwrap(module)
    core = un.core
    dtype, device = _dtype_device(core)
    found = [fb for fb in find_blocks(core, arch) if fb.arch in MAMBA]
    if not found:
        raise LayoutError("no Mamba / Mamba2 mixer in the module (LTI blocks: use mor_lqo.torch.compress)")
    used = settings_from_modules(found, settings)
    sd = {k: v.detach() for k, v in core.state_dict().items()}
    blocks = {b.name: b for b in extract_flat({k: v.cpu().numpy() for k, v in sd.items()}, arch, **used)
              if b.arch in MAMBA}
    keep: dict[str, Any] = {}
    for fb in found:
        N = blocks[fb.prefix].meta["N"]
        if isinstance(order, dict):
            keep[fb.prefix] = order.get(fb.prefix, N)
        elif order is not None:
            if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
                raise CompressionError(f"order must be a positive integer or a dict, got {order!r}")
            keep[fb.prefix] = min(int(order), N)
        else:
            keep[fb.prefix] = max(1, min(N, round(N * float(parse_ratio("1/8" if ratio is None else ratio)))))
    mixers = {fb.prefix: fb.module for fb in found}
    rec = _record_mixer_inputs(core, mixers, calibration, dtype, device)
    t_rec = time.perf_counter()
    chosen, predicted = {}, {}
    for name, k in keep.items():
        if not isinstance(k, numbers.Integral):
            chosen[name] = np.asarray(k)
        elif selection == "heuristic" or k >= blocks[name].meta["N"]:
            chosen[name] = int(k)
        else:
            mixer = copy.deepcopy(mixers[name]).eval()
            idx, predicted[name] = greedy_elimination(mixer, blocks[name], rec[name], int(k), refresh)
            chosen[name] = np.asarray(idx)
    new_flat, rep = reduce_state_dict(sd, order=chosen, method="index", **used)
    t_sel = time.perf_counter()
    layers = [{"name": r["name"], "build": r.get("build"), "stored_before": blocks[r["name"]].meta["N"],
               "stored_after": r["build"]["d_state"]} for r in rep if r["name"] in blocks]
    new_core, notes = build_reduced(core, new_flat, layers, mixers)
    names = {id(m): n for n, m in core.named_modules()}
    for lay in layers:
        sub = new_core.get_submodule(names[id(mixers[lay["name"]])])
        notes += [f"{lay['name']}: {c}" for c in _fix_sizes(sub, lay["stored_before"], lay["stored_after"],
                                                              blocks[lay["name"]].meta.get("G"))]
    notes += _fix_config(new_core, layers)
    new_mixers = {lay["name"]: new_core.get_submodule(names[id(mixers[lay["name"]])]) for lay in layers}
    blocks_rep = []
    for r in rep:
        if r["name"] not in blocks:
            continue
        ref, out = _outputs(mixers[r["name"]], rec[r["name"]]), _outputs(new_mixers[r["name"]], rec[r["name"]])
        num = sum(float(((y - x).double() ** 2).sum()) for y, x in zip(out, ref))
        den = sum(float((x.double() ** 2).sum()) for x in ref)
        blocks_rep.append({"name": r["name"], "arch": blocks[r["name"]].arch,
                           "stored_before": blocks[r["name"]].meta["N"], "stored_after": r["build"]["d_state"],
                           "selected": r.get("selected"), "output_error": float(np.sqrt(num / den)) if den else 0.0,
                           "predicted_error": predicted.get(r["name"])})
    wrapped, wrap_notes = rewrap(new_core, un.wrappers)
    report = {"method": "index", "selection": selection, "blocks": blocks_rep, "settings": dict(used),
              "parameters": {"before": count_parameters(core), "after": count_parameters(new_core)},
              "timings": {"record": t_rec - t0, "select": t_sel - t_rec, "total": time.perf_counter() - t0}}
    report["metric"] = {"before": _metric(metric, module, "original"), "after": _metric(metric, wrapped, "compressed")}
    report["notes"] = notes + wrap_notes
    return TorchCompressionResult(module=wrapped, report=report, result=rep, notes=report["notes"])
