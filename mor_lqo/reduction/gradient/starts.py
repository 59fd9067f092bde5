"""Initial models of the gradient reducers: modal, greedy modal selection, balanced truncation.

:func:`_init_candidates` lists the starts of :func:`~.single.h2_gradient`; :func:`_greedy_select`
(vectorised over systems) also serves :func:`~.batch.h2_gradient_batch`. Greedy selection adds, one at
a time, the full model's mode that most lowers the projected error (docs/theory.md §7.6).
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError, OrderError, UnknownMethodError
from ...gramians import controllability_gramian, observability_gramian, psd_factor
from ...norms import h2_error
from ...systems import LQOSystem
from ..result import ReductionResult
from .evaluate import _Evaluator
from .layout import _H, _LIFT, _FullArrays, _Layout, _Modes, _upper_half
from .modes import _modal_modes, _modes_of_rom
from .objective import H2Objective


def _local_bt(sys: LQOSystem, r: int) -> LQOSystem:
    """Square-root (LQO-)balanced truncation with eigen-based Gramian factors (fallback only)."""
    S = sys.realify() if sys.half is not None else sys
    ZP = psd_factor(controllability_gramian(S))
    ZQ = psd_factor(observability_gramian(S))
    U, s, Vh = np.linalg.svd(_H(ZQ) @ ZP)
    if len(s) < r or s[r - 1] <= 1e-14 * s[0]:
        raise OrderError(f"balanced truncation: only {int(np.sum(s > 1e-14 * s[0]))} nonzero HSVs for r = {r}")
    sr = 1.0 / np.sqrt(s[:r])
    V = ZP @ _H(Vh)[:, :r] * sr
    W = ZQ @ U[:, :r] * sr
    return S.project(V, W)


def _bt_rom(sys: LQOSystem, r: int) -> LQOSystem:
    from ..balanced import balanced_truncation

    try:
        res = balanced_truncation(sys, r)
    except NotImplementedError:
        return _local_bt(sys, r)
    return res.rom if isinstance(res, ReductionResult) else res


def _greedy_select(fa: _FullArrays, lay: _Layout, lam, B, C, chunk_rows: int = 8192) -> np.ndarray:
    """Greedy forward selection of ``lay.q`` modes per system by the projected objective.

    Step k adds, for every system, the candidate mode (one of its own ``n`` modes, as in modal
    truncation) that minimises the error of the ROM made of the k selected poles with the optimal
    ``C^`` (variable projection) -- a cheap, much better-informed ranking than per-mode scores.
    ``fa`` has one row per system; ``lam (N, n)``, ``B (N, n, m)``, ``C (N, p, n)`` are the candidate
    (half) modes, oriented with ``Im lam >= 0`` for pairs. Returns indices ``(N, q)``.
    """
    N, n = lam.shape
    q = lay.q
    sel = np.zeros((N, 0), int)
    per = max(1, chunk_rows // max(n, 1))
    for k in range(1, q + 1):
        lay_k = _Layout(pairs=lay.pairs, q=k, m=lay.m, p=lay.p, disc=lay.disc, margin=lay.margin,
                        kappa=lay.kappa, quad=None, project_c=True, nu_bounds=lay.nu_bounds,
                        min_ratio=lay.min_ratio)
        J = np.empty((N, n))
        for a in range(0, N, per):
            rows = np.arange(a, min(N, a + per))
            nr = rows.size
            idx = np.concatenate([np.repeat(sel[rows][:, None, :], n, axis=1),
                                  np.broadcast_to(np.arange(n)[None, :, None], (nr, n, 1))], axis=2)
            idx = idx.reshape(nr * n, k)
            own = np.repeat(rows, n)
            lam_c = lam[own[:, None], idx]
            Bc = B[own[:, None], idx] if lay_k.opt_b else None
            th = lay_k.start_theta(lam_c, Bc, lift=_LIFT)
            ev = _Evaluator(lay_k, fa=fa.take(own))
            Jc, _, _ = ev(th, grad=False)
            J[rows] = Jc.reshape(nr, n)
        J[np.arange(N)[:, None], sel] = np.inf
        J[~np.isfinite(J)] = np.inf
        sel = np.concatenate([sel, np.argmin(J, axis=1)[:, None]], axis=1)
    return sel


def _greedy_modes(sys: LQOSystem, obj: H2Objective) -> _Modes:
    """Greedy modal selection (:func:`_greedy_select`) for a diagonal LTI full model."""
    lay = obj.layout
    if sys.half is not None:
        lam, B, C, _, kappa = sys.half
        C = C * (kappa / lay.kappa)
    else:
        lam, B, C = sys.lam.astype(np.complex128), sys.B.astype(np.complex128), sys.C.astype(np.complex128)
    if lay.pairs:
        lam, B, C = _upper_half(lam, B, C)
    sel = np.sort(_greedy_select(obj._ev.fa, lay, lam[None], B[None], C[None])[0])
    return _Modes(lam[sel], B[sel], C[:, sel], None, True)


def _init_candidates(sys, r, init, obj: H2Objective):
    """List of (name, modes, raw_error) initial models."""
    lay = obj.layout
    cands, notes = [], {}
    if isinstance(init, ReductionResult):
        init = init.rom
    if isinstance(init, LQOSystem):
        sys.compatible_with(init)
        return [("given", _modes_of_rom(init, lay), h2_error(sys, init))], notes
    if not isinstance(init, str) or init not in ("auto", "modal", "greedy", "bt"):
        raise UnknownMethodError(
            f"init must be 'auto', 'modal', 'greedy', 'bt', a ReductionResult or an LQOSystem, got {init!r}")
    if init in ("auto", "modal"):
        cands.append(("modal", _modal_modes(sys, lay), None))
    greedy_ok = (sys.is_diagonal and sys.M is None and obj._ev.fa is not None
                 and (sys.half is not None or lay.pairs is False))
    if init == "greedy" and not greedy_ok:
        raise InvalidArgumentError("init='greedy' needs a diagonal LTI full model (complex or conjugate pairs)")
    if init == "greedy" or (init == "auto" and greedy_ok and sys.order * lay.q <= 20000):
        g = _greedy_modes(sys, obj)
        def key(x):
            return np.sort_complex(x.real + 1j * np.abs(x.imag)) if lay.pairs else np.sort_complex(x)

        if not any(np.array_equal(key(g.lam), key(c[1].lam)) for c in cands):
            cands.append(("greedy", g, None))
    if init in ("auto", "bt"):
        try:
            bt = _bt_rom(sys, r)
            cands.append(("bt", _modes_of_rom(bt, lay), h2_error(sys, bt)))
        except Exception as exc:  # a failing BT must not break the gradient method in "auto" mode
            if init == "bt":
                raise
            notes["bt"] = f"{type(exc).__name__}: {exc}"
    return cands, notes
