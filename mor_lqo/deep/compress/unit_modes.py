"""Per-unit half-mode helpers: SISO batches as arrays, finite-horizon kernels, exact selections of stored
modes, parameter counts and the per-unit h2 errors (infinite and finite horizon) of a reduction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ...adapters.block import HalfModes
from ...errors import MorLqoError
from ...gramians import MARGINAL
from .lag_gram import powers


def _siso_arrays(modes: Sequence[HalfModes]):
    lam = np.stack([hm.lam for hm in modes])
    B = np.stack([hm.B[:, 0] for hm in modes])
    C = np.stack([hm.C[0] for hm in modes])
    return lam, B, C


def _is_siso_batch(modes: Sequence[HalfModes]) -> bool:
    return (len({hm.n for hm in modes}) == 1 and all(hm.m == 1 and hm.p == 1 and hm.M is None for hm in modes)
            and len({hm.kappa for hm in modes}) == 1)


def _siso_kernels(modes: Sequence[HalfModes], L: int, with_d: bool = False) -> np.ndarray:
    """(N, L) real kernels kappa Re(sum C B lam^l) (+ D at lag 0)."""
    n = max(hm.n for hm in modes)
    N = len(modes)
    lam = np.zeros((N, n), np.complex128)
    cb = np.zeros((N, n), np.complex128)
    for i, hm in enumerate(modes):
        lam[i, : hm.n] = hm.lam
        cb[i, : hm.n] = hm.C[0] * hm.B[:, 0] * hm.kappa
    zero = lam == 0
    P = powers(np.log(np.where(zero, 1.0, lam)), L)  # lam^l by two small exp tables (complex power is slow)
    P[zero] = np.arange(L) == 0
    K = np.einsum("nk,nkl->nl", cb, P).real
    if with_d:
        K[:, 0] += np.array([hm.D[0, 0] for hm in modes])
    return K


def _select_by_score(hm: HalfModes, r: int, score: np.ndarray) -> HalfModes:
    """Exact modal truncation keeping the r/2 stored modes with the largest ``score``."""
    k = max(1, r // 2)
    if k >= hm.n:
        return hm
    keep = np.sort(np.argsort(-np.asarray(score), kind="stable")[:k])
    return hm.select(keep)


def marginal_modes(hm: HalfModes) -> np.ndarray:
    """Indices of the stored modes on the unit circle to working precision (``|lambda| >= 1 - MARGINAL``,
    the stability margin of :func:`mor_lqo.gramians.check_stable`): their h2 norm is infinite."""
    return np.flatnonzero(np.abs(hm.lam) >= 1.0 - MARGINAL)


def join_modes(a: HalfModes, b: HalfModes) -> HalfModes:
    """The stored modes of ``a`` followed by those of ``b`` (same D, kappa; no quadratic outputs)."""
    return replace(a, lam=np.concatenate([a.lam, b.lam]), B=np.vstack([a.B, b.B]), C=np.hstack([a.C, b.C]))


def _stable_parts(f: HalfModes, r: HalfModes) -> tuple[HalfModes, HalfModes] | None:
    """Both units without their common marginal modes (kept exactly, they cancel in the error), or None
    if the reduced unit does not keep them exactly (infinite error)."""
    mf, mr = marginal_modes(f), marginal_modes(r)
    if mf.size == 0 and mr.size == 0:
        return f, r
    a, b = f.select(mf), r.select(mr)
    order_a, order_b = np.lexsort((a.lam.imag, a.lam.real)), np.lexsort((b.lam.imag, b.lam.real))
    same = (a.n == b.n and np.array_equal(a.lam[order_a], b.lam[order_b]) and f.M is None and r.M is None
            and np.array_equal(a.B[order_a], b.B[order_b]) and np.array_equal(a.C[:, order_a], b.C[:, order_b]))
    if not same:
        return None
    keep_f = np.setdiff1d(np.arange(f.n), mf)
    keep_r = np.setdiff1d(np.arange(r.n), mr)
    return f.select(keep_f), r.select(keep_r)


def _unit_errors(full: Sequence[HalfModes], red: Sequence[HalfModes], dts, L: int | None) -> dict:
    """Per-unit h2 errors (infinite horizon; finite horizon L if given) and norms of the real maps."""
    from ...kernels.cauchy import cauchy_inner, cauchy_norm2

    N = len(full)
    e_inf = np.full(N, np.nan)
    n_inf = np.full(N, np.nan)
    e_L = np.full(N, np.nan) if L is not None else None
    n_L = np.full(N, np.nan) if L is not None else None
    siso = all(hm.m == 1 and hm.p == 1 and hm.M is None for hm in list(full) + list(red))
    if siso:
        def closed(hms):
            n = max(hm.n for hm in hms)
            lam = np.zeros((N, 2 * n), np.complex128)
            B = np.zeros((N, 2 * n, 1), np.complex128)
            C = np.zeros((N, 1, 2 * n), np.complex128)
            for i, hm in enumerate(hms):
                k = hm.n
                lam[i, :k], lam[i, n : n + k] = hm.lam, hm.lam.conj()
                B[i, :k, 0], B[i, n : n + k, 0] = hm.B[:, 0], hm.B[:, 0].conj()
                C[i, 0, :k], C[i, 0, n : n + k] = hm.kappa / 2 * hm.C[0], hm.kappa / 2 * hm.C[0].conj()
            return lam, B, C
        parts = [_stable_parts(f_, r_) for f_, r_ in zip(full, red)]
        if all(pr is not None and pr[0].n and pr[1].n for pr in parts):
            lf, Bf, Cf = closed([pr[0] for pr in parts])
            lr, Br, Cr = closed([pr[1] for pr in parts])
            nf = np.asarray(cauchy_norm2(lf, Bf, Cf, True), float)
            nr = np.asarray(cauchy_norm2(lr, Br, Cr, True), float)
            ip = np.real(np.asarray(cauchy_inner(lf, Bf, Cf, lr, Br, Cr, True)))
            e_inf = np.sqrt(np.maximum(nf + nr - 2 * ip, 0.0))
            n_inf = np.sqrt(nf)
            e_inf[[i for i in range(N) if full[i] is red[i]]] = 0.0  # unchanged units: exactly 0
            n_inf[[i for i in range(N) if marginal_modes(full[i]).size]] = np.inf  # kept unit-circle modes
        if L is not None:
            kf = _siso_kernels(full, L)
            kr = _siso_kernels(red, L)
            e_L = np.linalg.norm(kf - kr, axis=1)
            n_L = np.linalg.norm(kf + np.array([[hm.D[0, 0]] + [0] * (L - 1) for hm in full]), axis=1)
    else:
        import mor_lqo

        from ..bound import lqo_block_h2_error_totals

        for i, (f_, r_) in enumerate(zip(full, red)):
            try:
                sf, sr = f_.system(dt=dts[i]), r_.system(dt=dts[i])
                e_inf[i] = float(mor_lqo.h2_error(sf, sr)) if f_ is not r_ else 0.0
                n_inf[i] = float(mor_lqo.h2_norm(sf))
            except MorLqoError:
                pass
            if L is not None:
                pf = _params(f_)
                e_L[i] = math.hypot(*lqo_block_h2_error_totals(pf, _params(r_), L))
                n_L[i] = math.hypot(*lqo_block_h2_error_totals(pf, _params(replace(
                    f_, C=0 * f_.C, D=0 * f_.D, M=None if f_.M is None else 0 * f_.M)), L))
    return {"h2_error": e_inf, "h2_norm": n_inf, "h2_error_L": e_L, "h2_norm_L": n_L}


def _error_L(full: HalfModes, red: HalfModes, dt: float, L: int) -> float:
    """Finite-horizon (L lags) h2 error of one unit's real map: ``_unit_errors(...)["h2_error_L"]`` without
    the infinite-horizon errors and norms it also computes (dense for MIMO/LQO units)."""
    if all(hm.m == 1 and hm.p == 1 and hm.M is None for hm in (full, red)):
        return float(_unit_errors([full], [red], [dt], L)["h2_error_L"][0])
    from ..bound import lqo_block_h2_error_totals

    return math.hypot(*lqo_block_h2_error_totals(_params(full), _params(red), L))


def _params(hm: HalfModes) -> dict:
    """HalfModes in the ``ssm_params`` format of :mod:`mor_lqo.deep.bound`."""
    return {"Lambda_bar": hm.lam, "B_bar": hm.B, "C": hm.C, "D": hm.D, "M": hm.M, "kappa": hm.kappa}
