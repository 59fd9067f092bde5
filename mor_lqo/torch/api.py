"""The entry point :func:`compress` for torch modules and its :class:`TorchCompressionResult`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..adapters.registry import extract as extract_flat
from ..deep.compress import CompressionError
from ..deep.compress import compress as compress_state_dict
from ..deep.compress.options import check_options
from ..errors import CalibrationError, LayoutError
from .modules import check_settings, find_blocks, rewrap, settings_from_modules, unwrap
from .rebuild import build_reduced, count_parameters
from .recording import batches, call_module, record_block_inputs

__all__ = ["TorchCompressionResult", "compress"]

METHODS = ("h2", "modal", "bt", "irka", "tsia")


@dataclass
class TorchCompressionResult:
    """Outcome of :func:`compress`.

    Attributes
    ----------
    module : torch.nn.Module
        The smaller module: same classes as the input (a deep copy with the reduced SSM parameters), in
        the same ``DataParallel`` wrapper; ``torch.compile`` and DDP wrappers are removed (see ``notes``).
    report : dict
        ``method``, ``length`` (calibration sequence length L), ``blocks`` (per SSM block: name, arch,
        orders and stored modes before/after, ``h2_error_L``/``rel_h2_error_L`` (data-free finite
        horizon), ``output_error`` (relative RMS change of the block's output on the recorded calibration
        inputs), ``recorded_at`` (module whose input was recorded), ``settings_check``), ``parameters``
        (trainable, ``before``/``after``), ``metric`` (``before``/``after``, if a metric was given),
        ``settings`` (used for the extraction), ``timings`` and ``notes``.
    result : mor_lqo.deep.compress.CompressionResult
        The state-dict level result (reduced state dict, per-layer details).
    """

    module: nn.Module
    report: dict
    result: Any = None
    notes: list[str] = field(default_factory=list)


def _dtype_device(core: nn.Module):
    for p in core.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    return torch.get_default_dtype(), torch.device("cpu")


def _metric(metric, module: nn.Module, which: str):
    if metric is None:
        return None
    modes = [(m, m.training) for m in module.modules()]
    try:
        value = metric(module)
    except Exception as exc:
        exc.add_note(f"raised by metric(module) on the {which} module in mor_lqo.torch.compress")
        raise
    finally:  # a metric that switches to eval mode leaves the module as it found it
        for m, flag in modes:
            m.training = flag
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return value.tolist() if isinstance(value, np.ndarray) else value


def _block_output_errors(old: nn.Module, new: nn.Module, where: dict, recorded: dict, dtype, device) -> dict:
    """Relative RMS change of each recorded module's output when fed the original network's recorded input."""
    out = {}
    was = (old.training, new.training)
    old.eval()
    new.eval()
    try:
        with torch.no_grad():
            for prefix, (path, swapped) in where.items():
                u = torch.from_numpy(recorded[prefix]).to(dtype=dtype, device=device)
                u = u.transpose(1, 2) if swapped else u
                try:
                    yo, yn = _first(_at(old, path)(u)), _first(_at(new, path)(u))
                except Exception:  # noqa: BLE001 - a block that cannot be called alone: no figure for it
                    continue
                d = (yn.double() - yo.double()).norm().item()
                out[prefix] = d / max(yo.double().norm().item(), 1e-300)
    finally:
        old.train(was[0])
        new.train(was[1])
    return out


def _first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def compress(module: nn.Module, calibration, *, ratio=None, order=None, budget=None, method: str = "h2",
             metric: Callable[[nn.Module], Any] | None = None, executor=None, arch: str = "auto",
             progress: bool = False, options=None, **settings) -> TorchCompressionResult:
    r"""Compress every SSM block of a torch module with the data-weighted finite-horizon h2 fit.

    Finds the SSM blocks the adapter knows (:mod:`mor_lqo.adapters`: S4D, S4, DSS, S5, LRU, LQO) from the
    module's state-dict keys, also inside ``torch.compile``, ``DataParallel`` or DDP wrappers and in
    Lightning-style modules; reads the settings that the weights do not record (discretisation, dt
    transform, bidirectionality, ...) from the block modules and checks the extracted systems against the
    modules' own kernels; records the sequences that actually enter every block on the calibration
    batches (forward pre-hooks, eval mode, no grad); reduces every block by
    :func:`mor_lqo.deep.compress.compress` over the recorded length L (per-channel blocks: fits weighted by
    the lag covariance of each channel's recorded input, i.e. the expected squared SSM-output error on the
    data; MIMO blocks: data-ranked modal start, h2 gradient, finite-horizon check); and builds a smaller
    module of the same classes. The input module is never modified.

    Parameters
    ----------
    module : torch.nn.Module
    calibration : tensor, array or iterable of batches
        Inputs of the module (a DataLoader's ``(x, y)`` batches: ``x`` is used, labels never; dict batches
        are keyword arguments). All batches must have the same sequence length.
    ratio, order, budget
        As in :func:`mor_lqo.deep.compress.compress` (default ratio 1/8): fraction of each unit's state,
        real order per unit, or a budget of SSM parameters.
    method : {"h2", "modal", "bt", "irka", "tsia"}
    metric : callable, optional
        ``metric(module) -> number`` evaluated on the original and the compressed module (e.g. held-out
        accuracy); exceptions propagate with a note saying where they came from.
    executor
        As in :func:`mor_lqo.deep.compress.compress`.
    arch : str
        ``"auto"`` or a layout name.
    progress : bool
    options : mapping, optional
        Method options (see :func:`mor_lqo.deep.compress.compress`).
    **settings
        Layout settings given explicitly (they must agree with what the modules store).

    Returns
    -------
    TorchCompressionResult

    Raises
    ------
    LayoutError
        No known SSM block (the message lists the module classes seen).
    SettingsMismatchError
        A setting read or given does not reproduce the module's own kernel.
    CalibrationError
        Calibration data of the wrong type, shape, dtype or length; a block never called.
    CompressionError
        Unknown method, invalid ratio / order / budget, an unknown or invalid option.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise CompressionError(f"unknown method {method!r} for torch modules; choose one of {', '.join(METHODS)}")
    options = check_options(options)  # before the calibration run
    un = unwrap(module)
    core = un.core
    dtype, device = _dtype_device(core)
    found = find_blocks(core, arch)
    used = settings_from_modules(found, settings)
    sd = {k: v.detach() for k, v in core.state_dict().items()}
    blocks = {b.name: b for b in extract_flat({k: v.cpu().numpy() for k, v in sd.items()}, arch, **used)}
    lti = [fb for fb in found if blocks[fb.prefix].lti]
    if not lti and any(fb.arch in ("mamba", "mamba2") for fb in found):
        raise LayoutError("no LTI SSM block to reduce: Mamba mixers are input dependent, so method "
                          f"{method!r} does not apply; prune their states with mor_lqo.torch.prune_states")
    recorded, where, _ = record_block_inputs(core, lti, {fb.prefix: blocks[fb.prefix].m for fb in lti},
                                             calibration, dtype, device)
    checks = {fb.prefix: check_settings(fb, blocks[fb.prefix], used, _at(core, where[fb.prefix][0])) for fb in lti}
    t_rec = time.perf_counter()
    res = compress_state_dict(sd, method, ratio=ratio, order=order, budget=budget, arch=arch, layer_inputs=recorded,
                              executor=executor, progress=progress, options=options, **used)
    new_core, build_notes = build_reduced(core, res.state_dict, res.layers, {fb.prefix: fb.module for fb in lti})
    try:
        _run_once(new_core, calibration, dtype, device)
    except Exception as exc:
        raise CalibrationError(f"the reduced module fails on the calibration data ({type(exc).__name__}: {exc})"
                               ) from exc
    out_err = _block_output_errors(core, new_core, where, recorded, dtype, device)
    wrapped, wrap_notes = rewrap(new_core, un.wrappers)
    report = _report(res, method, used, checks, where, out_err, core, new_core, t0, t_rec)
    report["metric"] = {"before": _metric(metric, module, "original"), "after": _metric(metric, wrapped, "compressed")}
    report["notes"] = list(res.notes) + build_notes + wrap_notes
    return TorchCompressionResult(module=wrapped, report=report, result=res, notes=report["notes"])


def _at(core: nn.Module, path: str) -> nn.Module:
    return core.get_submodule(path) if path else core


def _run_once(module: nn.Module, calibration, dtype, device) -> None:
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            call_module(module, batches(calibration)[0], dtype, device)
    finally:
        module.train(was)


def _report(res, method, used, checks, where, out_err, core, new_core, t0, t_rec) -> dict:
    keep = ("name", "arch", "units", "order_before", "order_after", "stored_before", "stored_after", "params_before",
            "params_after", "h2_error_L", "rel_h2_error_L", "h2_error", "rel_h2_error")
    blocks = []
    for lay in res.layers:
        entry = {k: lay.get(k) for k in keep}
        entry.update(output_error=out_err.get(lay["name"]), recorded_at=where.get(lay["name"], (None,))[0],
                     settings_check=checks.get(lay["name"]))
        blocks.append(entry)
    t = time.perf_counter()
    return {"method": method, "length": res.length, "blocks": blocks, "settings": dict(used),
            "parameters": {"before": count_parameters(core), "after": count_parameters(new_core)},
            "ssm_parameters": res.params["ssm"],
            "timings": {"record": t_rec - t0, **res.timings, "total": t - t0}}
