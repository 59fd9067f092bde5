r"""Reduce every SSM block of a state dict and write the reduced systems back into the layout.

Pipeline per block (docs/adapters.md, "Reduction"): extract the exact discrete systems → reduce each unit
(per channel for S4/S4D, jointly for S5/LRU/LQO, shared-mode selection for DSS, index pruning for
Mamba) with a pluggable ``reducer(system, r) -> rom`` → :func:`~mor_lqo.adapters.modal_form.to_half_modes`
→ inverse parametrisation of the layout → cast back to the input's array type and dtype. Every write-back
is verified by re-extracting the new arrays (float64, before the cast) and comparing the impulse
response with the reduced model's (:data:`WRITEBACK_RTOL`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping

import numpy as np

from ..errors import LayoutError, MorLqoError, OrderError, ShapeError, UnstableSystemError
from ..systems import LQOSystem
from ._common import is_torch_tensor, to_numpy
from .block import Block, HalfModes, Unit
from .io import _View
from .modal_form import to_half_modes
from .registry import extract as _extract_flat
from .registry import family

__all__ = ["reduce_state_dict", "modal_reducer", "ReducerUnavailableError", "get_reducer", "within_slots",
           "check_modal_ranking"]

# Relative impulse-response mismatch tolerated between a reduced model and its re-extracted write-back
# (float64 arithmetic through log/exp and eigen-decompositions: ~1e-13 expected; 1e-8 flags real bugs).
WRITEBACK_RTOL = 1e-8
CHECK_LAGS = 64

_METHODS = {
    "bt": "balanced_truncation",
    "balanced_truncation": "balanced_truncation",
    "h2": "h2_gradient",
    "h2_gradient": "h2_gradient",
    "modal_truncation": "modal_truncation",
}


class ReducerUnavailableError(MorLqoError, ImportError):
    """The requested reduction method is not available in this installation of mor_lqo."""


def modal_reducer(system_modes: HalfModes, r: int, horizon: int | None = None) -> HalfModes:
    r"""Exact modal truncation of stored half modes to real order ``r`` (even).

    Keeps the ``r/2`` stored modes with the largest diagonal h2 contribution
    :math:`\|c_i\|^2\|b_i\|^2/(1-|\lambda_i|^2)` (finite-horizon sum when ``horizon`` is given), in their
    original order. Needs no reducer and writes back exactly into every conjugate-pair layout.
    """
    r = int(r)
    if r % 2:
        raise OrderError(
            f"modal truncation keeps whole conjugate pairs, so the real order must be even (got {r}); "
            "use method='bt' or 'h2' for odd orders (a real mode then costs one stored slot)"
        )
    k = r // 2
    if k < 1:
        raise OrderError(f"reduced order must be >= 2 for modal truncation, got {r}")
    if k >= system_modes.n:
        return system_modes
    s = system_modes.h2_contributions(horizon)
    keep = np.sort(np.argsort(-s, kind="stable")[:k])
    return system_modes.select(keep)


def within_slots(reduce_to: Callable[[int], HalfModes], r: int, slots: int, notes: list | None = None) -> HalfModes:
    """The reduction of real order ``r`` if its modes fit ``slots`` stored modes, else of the largest lower order
    that fits: orders are budgets.

    A real pole of a reduced model takes a whole stored (complex) slot of a conjugate-pair layout, so a ROM
    of real order r with k real poles stores (r + k)/2 modes; ``reduce_to(q)`` is called for q = r, r - 1, ...
    until its modes fit (order 1 stores one mode, so this ends). The budget of order r is ``ceil(r/2)``
    slots: exactly r states for even r, the fewest slots that can hold an odd order otherwise.
    """
    q = r
    hm = reduce_to(q)
    while hm.n > slots and q > 1:
        q -= 1
        hm = reduce_to(q)
    if hm.n > slots:
        raise OrderError(f"no reduced model of order <= {r} fits in {slots} stored modes")
    if q < r and notes is not None:
        notes.append(f"order {r}: the reduced models of some units have real poles, which take a stored slot "
                     f"each; those units were reduced to the largest lower order that stores at most {slots} "
                     "modes (orders are budgets)")
    return hm


# Sum of the modes' h2 contributions over the squared h2 norm above which modal truncation of a dense
# (non-normal, e.g. S4 DPLR with the LegS initialisation) unit is refused: the contributions cancel and
# ranking modes by them is arbitrary (relative errors of 6 ... 3e5 were measured on such blocks).
MODAL_CANCELLATION_MAX = 10.0


def check_modal_ranking(system: LQOSystem, modes: HalfModes, where: str = "") -> None:
    r"""Refuse modal truncation of a dense unit whose modes' h2 contributions cancel.

    :math:`\sum_i s_i` (the diagonal contributions of :meth:`HalfModes.h2_contributions`) equals the squared h2
    norm of the strictly proper part for a normal A; for a strongly non-normal A it is orders of magnitude
    larger. Above :data:`MODAL_CANCELLATION_MAX` times the norm, raises :class:`~mor_lqo.errors.IllConditionedError`.
    """
    from ..errors import IllConditionedError
    from ..norms import h2_norm

    s = system
    try:
        norm2 = h2_norm(LQOSystem(s.A, s.B, s.C, dt=s.dt, convention=s.convention)) ** 2
    except UnstableSystemError:
        return  # unstable units are reported elsewhere; their ranking uses finite horizons
    total = float(np.sum(modes.h2_contributions()))
    if not total <= MODAL_CANCELLATION_MAX * norm2:
        raise IllConditionedError(
            f"{where + ': ' if where else ''}modal truncation is not reliable for this non-normal (DPLR) unit: its "
            f"modes' h2 contributions sum to {total / max(norm2, 1e-300):.3g} times its squared h2 norm (they "
            "cancel); use method 'bt' or 'h2'")


def get_reducer(method) -> Callable:
    """``reducer(system, r) -> rom`` for a method name (looked up lazily in mor_lqo) or a callable."""
    if callable(method):
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a name or a callable reducer(system, r), got {method!r}")
    import mor_lqo

    name = _METHODS.get(method, method)
    fn = getattr(mor_lqo, name, None)
    if fn is None or not callable(fn):
        raise ReducerUnavailableError(
            f"method {method!r} needs mor_lqo.{name}, which is not available in this installation; "
            "use method='modal' (exact modal truncation, no reducer needed) or pass a callable "
            "reducer(system, r) -> reduced system"
        )
    return fn


def _rom_of(out) -> LQOSystem:
    if isinstance(out, LQOSystem):
        return out
    rom = getattr(out, "rom", None)
    if isinstance(rom, LQOSystem):
        return rom
    raise TypeError(f"the reducer returned {type(out).__name__}, expected an LQOSystem or a result "
                    "with .rom")


def _reduce_unit(unit: Unit, r: int, method, kappa: float, sign: int, horizon) -> HalfModes:
    if r >= unit.system.order:
        if unit.modes is not None:
            return unit.modes
        return to_half_modes(unit.system, kappa, sign)
    if method == "modal":
        if unit.modes is not None:
            return modal_reducer(unit.modes, r, horizon)
        modes = to_half_modes(unit.system, kappa, sign)
        check_modal_ranking(unit.system, modes)
        return modal_reducer(modes, r, horizon)
    reducer = get_reducer(method)

    def reduce_to(q: int) -> HalfModes:
        return to_half_modes(_check_rom(unit.system, _rom_of(reducer(unit.system, q))), kappa, sign)

    return within_slots(reduce_to, r, (r + 1) // 2)


def _check_rom(full: LQOSystem, rom: LQOSystem) -> LQOSystem:
    """The reduced model must keep the inputs, outputs, time domain and D of the full one."""
    if (rom.m, rom.p) != (full.m, full.p):
        raise ShapeError(f"the reducer returned a model with (m, p) = {(rom.m, rom.p)}, expected "
                         f"{(full.m, full.p)}")
    if not rom.is_discrete or rom.convention != full.convention:
        raise ShapeError("the reducer must return a discrete model in the current-input convention")
    if not np.allclose(rom.D, full.D, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(full.D).max())):
        raise LayoutError("the reducer changed the feed-through D; the layouts keep D, so reduce with "
                          "D fixed")
    return rom


def _reduce_units(units, r, method, kappa, sign, horizon) -> list[HalfModes]:
    """Per-unit reduction; named methods go through ``mor_lqo.reduce_batch`` when it is available."""
    todo = [i for i, u in enumerate(units) if r < u.system.order]
    if isinstance(method, str) and method != "modal" and len(todo) > 1:
        import mor_lqo

        batch = getattr(mor_lqo, "reduce_batch", None)
        if batch is not None:
            try:
                res = batch([units[i].system for i in todo], r, method=_METHODS.get(method, method))
            except (NotImplementedError, TypeError, ValueError):
                res = None  # not implemented yet / method not batched: reduce one by one
            if isinstance(res, (list, tuple)) and len(res) == len(todo):
                out = [None] * len(units)
                for i, rr in zip(todo, res):
                    hm = to_half_modes(_check_rom(units[i].system, _rom_of(rr)), kappa, sign)
                    out[i] = hm if hm.n <= (r + 1) // 2 else None  # over budget: redone one by one below
                for i, u in enumerate(units):
                    if out[i] is None:
                        out[i] = _reduce_unit(u, r, method, kappa, sign, horizon)
                return out
    return [_reduce_unit(u, r, method, kappa, sign, horizon) for u in units]


def _h2(full: LQOSystem, red: LQOSystem):
    """(h2 error, h2 norm) via mor_lqo's norms when available; (None, None) otherwise or if unstable."""
    import mor_lqo

    h2_error = getattr(mor_lqo, "h2_error", None)
    h2_norm = getattr(mor_lqo, "h2_norm", None)
    if h2_error is None or h2_norm is None:
        return None, None
    try:
        return float(h2_error(full, red)), float(h2_norm(full))
    except (UnstableSystemError, NotImplementedError):
        return None, None


def _like(orig, new: np.ndarray):
    """``new`` (float64/complex128 numpy) in the array type, dtype and device of ``orig``."""
    new = np.asarray(new)
    if is_torch_tensor(orig):
        import torch

        if orig.is_complex() != np.iscomplexobj(new):
            raise LayoutError(f"internal: complex/real mismatch writing a {orig.dtype} tensor")
        t = torch.from_numpy(np.ascontiguousarray(new))
        return t.to(dtype=orig.dtype, device=orig.device)
    o = np.asarray(orig)
    if np.iscomplexobj(o) != np.iscomplexobj(new):
        raise LayoutError(f"internal: complex/real mismatch writing a {o.dtype} array")
    return new.astype(o.dtype)


def _n_params(values) -> int:
    return int(sum(int(np.prod(np.shape(to_numpy(v)))) for v in values))


def _verify(fam, block: Block, flat_np: dict, arrays: dict, modes: list[HalfModes]) -> float:
    """Max relative impulse-response mismatch between the reduced models and the written arrays."""
    tmp = dict(flat_np)
    tmp.update(arrays)
    nb = fam.extract(tmp, block.name, **block.settings)
    worst = 0.0
    for u_new, hm, u_old in zip(nb.units, modes, block.units):
        ref = hm.system(dt=u_old.system.dt).impulse_response(CHECK_LAGS)
        got = u_new.system.impulse_response(CHECK_LAGS)
        scale = max(np.linalg.norm(ref), np.linalg.norm(u_old.system.impulse_response(CHECK_LAGS)),
                    1e-300)
        worst = max(worst, float(np.linalg.norm(got - ref) / scale))
        if hm.M is not None or u_new.system.M is not None:
            Lq = 12
            ref2 = hm.system(dt=u_old.system.dt).quadratic_kernel(Lq)
            got2 = u_new.system.quadratic_kernel(Lq)
            s2 = max(np.linalg.norm(ref2), np.linalg.norm(u_old.system.quadratic_kernel(Lq)), 1e-300)
            worst = max(worst, float(np.linalg.norm(got2 - ref2) / s2))
    return worst


def reduce_state_dict(state_dict, order, method="modal", arch: str = "auto", *,
                      horizon: int | None = None, uniform: bool = True, **settings):
    r"""Reduce every SSM block of a state dict and write it back into the layout's own parametrisation.

    Parameters
    ----------
    state_dict : Mapping or path
        Flat, nested (``{'model': ...}``) or ``module.``-prefixed dict of torch tensors or numpy
        arrays, or a checkpoint path (loaded with :func:`~mor_lqo.adapters.load`).
    order : int or dict
        Reduced *real* order per unit (per channel for S4/S4D/DSS, per layer for S5/LRU/LQO), i.e.
        twice the number of stored complex modes; a dict maps block names (key prefixes) to orders
        (blocks not listed are kept). An order ≥ the full order keeps the unit unchanged (identity
        write-back). Mamba blocks (``method="index"``): the number of states kept, or explicit state
        indices ``order={block_name: [i, j, ...]}``.
    method : {"modal", "bt", "h2", ...} or callable
        ``"modal"``: exact modal truncation (:func:`modal_reducer`, no reducer needed). Other names are
        looked up in ``mor_lqo`` at call time (``"bt"`` → ``balanced_truncation``, ``"h2"`` →
        ``h2_gradient``); a callable ``reducer(system, r) -> rom`` is used as it is. DSS blocks allow
        only ``"modal"`` (shared Λ); Mamba blocks use ``"index"`` pruning (see :mod:`.mamba`).
    arch : str
        ``"auto"`` or one layout name (see :data:`mor_lqo.adapters.KNOWN`).
    uniform : bool, default True
        Pad all blocks of a layout to the same stored size with inert modes, so that the new dict loads
        into a model built with one state size for all layers (False: each block keeps its own size).
    horizon : int, optional
        Finite horizon for the modal ranking (needed when modes have |λ| ≥ 1, e.g. DSS softmax).
    **settings
        Layout settings not stored in the state dict (``disc``, ``dt_transform``, ``conj_sym``, ...);
        see :func:`~mor_lqo.adapters.extract`.

    Returns
    -------
    new_state_dict : Mapping
        Same structure, container type, array type and dtypes as the input; only the SSM keys change
        (other values are passed through as the same objects). The input is never modified.
    report : list of dict
        Per block: ``name``, ``arch``, ``order_before``/``order_after`` and ``stored_before``/
        ``stored_after`` (per unit, maxima), ``h2_error``/``h2_norm``/``rel_h2_error`` (root-sum-square
        over units; None if unavailable or unstable), ``params_before``/``params_after``,
        ``writeback_error`` (relative, float64) and ``build`` (constructor arguments for strict
        loading, e.g. ``{"d_state": 10}``).
    """
    if not isinstance(state_dict, Mapping):
        from .io import load

        state_dict = load(state_dict, keep_structure=True)  # training metadata kept for the write-back
    view = _View(state_dict)
    flat_orig = view.flat
    flat_np = {k: to_numpy(v) for k, v in flat_orig.items()}
    blocks = _extract_flat(flat_np, arch, **settings)
    plans = [_plan_block(block, r, method, horizon) for block, r in _block_orders(blocks, order)]
    common = _common_stored(plans) if uniform else {}  # one d_state / state size for the whole model
    new_flat = dict(flat_orig)
    report = [_write_and_report(plan, method, common, flat_orig, flat_np, new_flat) for plan in plans]
    out, notes = _update_training_metadata(view.rebuild(new_flat), report)
    for entry in report:
        entry["checkpoint_notes"] = notes
    return out, report


TRAINING_STATE = ("optimizer_states", "lr_schedulers", "optimizer_state_dict", "scheduler_state_dict")
LIGHTNING_TRAINING_STATE = ("optimizer_states", "lr_schedulers")  # lists: emptied, so that resuming works
HPARAM_KEYS = ("hyper_parameters", "hparams")


def _update_training_metadata(ckpt, report: list[dict]):
    """A training checkpoint (Lightning-style ``{"state_dict", "hyper_parameters", "optimizer_states", ...}``)
    made consistent with the reduced shapes: optimizer/scheduler states emptied (Lightning's lists) or
    dropped (plain ``optimizer_state_dict``), since they hold moments of the old parameter shapes, and
    hyper-parameters named like a block's constructor hints (``d_state``, ``state_width``, ...) set to the
    new sizes (:func:`updated_hparams`). Returns (checkpoint, notes).
    """
    if not isinstance(ckpt, Mapping) or not any(k in ckpt for k in TRAINING_STATE + HPARAM_KEYS):
        return ckpt, []
    out = dict(ckpt)
    notes = []
    emptied = [k for k in LIGHTNING_TRAINING_STATE if k in out]
    for k in emptied:
        out[k] = []
    if emptied:
        notes.append(f"emptied {', '.join(emptied)}: the optimizer state belongs to the old parameter shapes; "
                     "resuming (Trainer.fit(ckpt_path=...)) keeps the epoch and step counters and starts a "
                     "fresh optimizer and scheduler")
    dropped = [k for k in TRAINING_STATE if k in out and k not in LIGHTNING_TRAINING_STATE]
    for k in dropped:
        del out[k]
    if dropped:
        notes.append(f"dropped {', '.join(dropped)}: the optimizer state belongs to the old parameter shapes "
                     "(resume with a fresh optimizer)")
    hints = size_hints(report)
    for key in HPARAM_KEYS:
        if isinstance(out.get(key), Mapping):
            out[key], changed = _set_hparams(out[key], hints)
            notes += [f"{key}: {c}" for c in changed]
    return out, notes


def into_source_checkpoint(new_flat: Mapping, source, report: list[dict]) -> tuple[Mapping, list[str]]:
    """Reduced weights put back into the structure of the torch checkpoint file they came from.

    Parameters
    ----------
    new_flat : Mapping
        The reduced flat state dict (keys as :func:`~mor_lqo.adapters.load` gives them for ``source``).
    source : str or PathLike
        The original ``.pt``/``.pth``/``.ckpt``/``.bin`` file.
    report : list of dict
        Per-block entries with ``build`` size hints (a compression report's layers).

    Returns
    -------
    checkpoint : Mapping
        The source's mapping (nesting, prefixes and metadata kept) holding ``new_flat``, with training
        state and hyper-parameters made consistent with the new sizes (as :func:`reduce_state_dict`).
    notes : list of str
        What was changed besides the weights.
    """
    from .io import load

    container = load(source, keep_structure=True)
    return _update_training_metadata(_View(container).rebuild(new_flat), report)


def size_hints(report: list[dict]) -> dict[str, set]:
    """Constructor size hints of the reduced blocks (``{"d_state": {4}, ...}``) from their report entries."""
    hints: dict[str, set] = {}
    for entry in report:
        for name, value in (entry.get("build") or {}).items():
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                hints.setdefault(name, set()).add(int(value))
    return hints


def updated_hparams(hp: Mapping, hints: dict[str, set]) -> tuple[dict, list[str]]:
    """Copy of a hyper-parameter mapping with the state sizes of :func:`size_hints`, and what changed.

    Every integer entry (at any nesting depth) named like a hint is set to the hint's value when all
    reduced blocks agree on it; otherwise it is left and the change list says why.
    """
    return _set_hparams(hp, hints)


def _set_hparams(hp: Mapping, hints: dict[str, set], path: str = "") -> tuple[dict, list[str]]:
    """Copy of ``hp`` with every integer entry named like a hint set to the hint's (single) new value."""
    out, changed = dict(hp), []
    for k, v in hp.items():
        where = f"{path}{k}"
        if isinstance(v, Mapping):
            out[k], sub = _set_hparams(v, hints, where + ".")
            changed += sub
        elif k in hints and isinstance(v, numbers.Integral) and not isinstance(v, bool):
            if len(hints[k]) == 1:
                (new,) = hints[k]
                out[k] = new
                changed.append(f"{where} {v} -> {new}")
            else:
                changed.append(f"{where} left at {v}: the blocks now differ ({sorted(hints[k])})")
    return out, changed


def _block_orders(blocks, order):
    """(block, requested order) for every block that is reduced (a dict names the blocks)."""
    for block in blocks:
        if isinstance(order, Mapping):
            if block.name in order:
                yield block, order[block.name]
        else:
            yield block, order


def _plan_block(block, r, method, horizon):
    """Reduce one block: (block, family, reduced half modes or None, family-specific result or None)."""
    fam = family(block.arch)
    explicit = not block.lti and isinstance(r, (list, tuple, np.ndarray))
    if not explicit:
        if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 1:
            raise OrderError(f"order must be a positive integer (real order per unit), got {r!r}")
        r = int(r)
    if fam.reduce_block is not None:
        return block, fam, None, fam.reduce_block(block, r, method, horizon=horizon)
    modes = _reduce_units(block.units, r, method, fam.kappa(block), fam.sign(block), horizon)
    return block, fam, modes, None


def _common_stored(plans) -> dict[str, int]:
    """Largest stored size per layout over the planned blocks."""
    common: dict[str, int] = {}
    for block, _, modes, _ in plans:
        if modes is not None:
            common[block.arch] = max(common.get(block.arch, 0), max(hm.n for hm in modes))
    return common


def _lti_errors(block, modes) -> dict:
    """Orders and h2 errors (root-sum-square over units) of a reduced LTI block."""
    err2 = norm2 = 0.0
    have = True
    for u, hm in zip(block.units, modes):
        e, nrm = _h2(u.system, hm.system(dt=u.system.dt))
        if e is None:
            have = False
            break
        err2 += e * e
        norm2 += nrm * nrm
    return {"order_after": max(hm.real_order for hm in modes), "stored_after": max(hm.n for hm in modes),
            "h2_error": float(np.sqrt(err2)) if have else None, "h2_norm": float(np.sqrt(norm2)) if have else None,
            "rel_h2_error": float(np.sqrt(err2 / norm2)) if have and norm2 > 0 else None}


def _write_and_report(plan, method, common, flat_orig, flat_np, new_flat) -> dict:
    """Write one planned block into ``new_flat`` (verified for LTI blocks) and return its report entry."""
    block, fam, modes, done = plan
    if done is not None:
        arrays, modes, build, extra = done
    else:
        arrays, build = fam.write_back(block, modes, common.get(block.arch))
        extra = {}
    entry = {"name": block.name, "arch": block.arch, "method": method if isinstance(method, str)
             else getattr(method, "__name__", "callable"),
             "order_before": block.order if block.lti else block.stored,
             "stored_before": block.stored,
             "params_before": _n_params(flat_orig[k] for k in block.keys)}
    if block.lti:
        entry.update(_lti_errors(block, modes))
        werr = _verify(fam, block, flat_np, arrays, modes)
        if not np.isfinite(werr) or werr > WRITEBACK_RTOL:
            raise LayoutError(
                f"{block.name}: write-back verification failed (relative impulse-response "
                f"mismatch {werr:.3g} > {WRITEBACK_RTOL:g}); the reduced model is not "
                f"representable in the {block.arch} layout"
            )
        entry["writeback_error"] = werr
    entry.update(extra)
    for k, v in arrays.items():
        if k not in flat_orig:
            raise LayoutError(f"internal: write-back produced unknown key {k!r}")
        new_flat[k] = _like(flat_orig[k], v)
    entry["params_after"] = _n_params(new_flat[k] for k in block.keys)
    entry["build"] = build
    return entry
