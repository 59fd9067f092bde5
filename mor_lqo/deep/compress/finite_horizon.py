"""The finite-horizon (data-weighted) h2 fit of SISO conjugate-pair channels: variable projection over
stable poles, greedy insertion from a candidate grid, Levenberg-Marquardt refinement (docs/theory.md §10.1)."""

from __future__ import annotations

import math

import numpy as np

from .constants import _NU_BOUNDS, FIT_RIDGE
from .finite_horizon_gram import Candidates, GramProblem, pair_gain
from .finite_horizon_gram import evaluate as gram_evaluate
from .finite_horizon_gram import insert as gram_insert
from .finite_horizon_gram import lm as gram_lm
from .lag_gram import LagMetric


def _powers(s: np.ndarray, L: int) -> np.ndarray:
    """exp(s * l) for l < L: (N, k) -> (N, L, k) complex."""
    return np.exp(s[:, None, :] * np.arange(L)[None, :, None])


def _weighted(W: np.ndarray | None, X: np.ndarray) -> np.ndarray:
    """W @ X along the lag axis (axis 1); W None = identity."""
    if W is None:
        return X
    return np.einsum("nij,nj...->ni...", W, X, optimize=True)


def _vp(Phi: np.ndarray, t: np.ndarray, ridge: float):
    """Ridge least squares min ||t - Phi c||^2 + alpha ||c||^2 per row; alpha = (ridge * s_max)^2.

    Returns c (N, d), residual r (N, L), objective f (N,), U (N, L, d) scaled so that
    ``U U^T`` is the (regularised) projector onto the basis.
    """
    U, sv, Vt = np.linalg.svd(Phi, full_matrices=False)
    alpha = (ridge * sv[:, :1]) ** 2 + 1e-300
    filt = sv / (sv * sv + alpha)
    Ut = np.einsum("nlk,nl->nk", U, t)
    c = np.einsum("nkj,nk->nj", Vt, Ut * filt)
    r = t - np.einsum("nlj,nj->nl", Phi, c)
    f = np.sum(r * r, axis=1) + alpha[:, 0] * np.sum(c * c, axis=1)
    return c, r, f, U * np.sqrt(sv * sv / (sv * sv + alpha))[:, None, :]


def _basis(s: np.ndarray, L: int, W) -> tuple[np.ndarray, np.ndarray]:
    pw = _powers(s, L)
    Phi = np.concatenate([pw.real, pw.imag], axis=2)
    return pw, _weighted(W, Phi)


def _lm(t: np.ndarray, s: np.ndarray, W, iters: int, ridge: float, nu_lo: np.ndarray, ftol: float = 1e-7):
    """Levenberg–Marquardt on the log-poles s = -e^nu + i theta (variable projection, Kaufman Jacobian).

    ``nu_lo`` (N,) bounds the decay rates from below (no pole slower than the slowest original mode).
    """
    N, L = t.shape
    k = s.shape[1]
    lo = nu_lo[:, None]
    nu = np.clip(np.log(np.clip(-s.real, 1e-300, None)), lo, _NU_BOUNDS[1])
    th = s.imag.copy()
    lv = np.arange(L)[None, :, None]

    def ev(nu_, th_, rows):
        s_ = -np.exp(nu_) + 1j * th_
        pw_, Phi_ = _basis(s_, L, None if W is None else W[rows])
        c_, r_, f_, U_ = _vp(Phi_, t[rows], ridge)
        return pw_, c_, r_, f_, U_

    pw, c, r, f, U = ev(nu, th, slice(None))
    lam = np.full(N, 1e-2)
    active = np.ones(N, bool)
    stall = np.zeros(N, int)
    for _ in range(iters):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        a, b = c[idx, :k], c[idx, k:]
        lp = lv * pw[idx]
        e = np.exp(nu[idx])[:, None, :]
        dnu = -e * (lp.real * a[:, None, :] + lp.imag * b[:, None, :])
        dth = -lp.imag * a[:, None, :] + lp.real * b[:, None, :]
        Dm = _weighted(None if W is None else W[idx], np.concatenate([dnu, dth], axis=2))
        Ui = U[idx]
        J = -(Dm - np.einsum("nlk,nmk,nmj->nlj", Ui, Ui, Dm, optimize=True))
        g = np.einsum("nlj,nl->nj", J, r[idx])
        A = np.einsum("nli,nlj->nij", J, J)
        dg = np.einsum("nii->ni", A)
        reg = lam[idx, None, None] * (np.eye(2 * k)[None] * (dg[:, :, None] + 1e-12 * dg.max(axis=1)[:, None, None]
                                                               + 1e-300))
        try:
            step = -np.linalg.solve(A + reg, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / (dg + 1e-300)
        nu_n = np.clip(nu[idx] + step[:, :k], lo[idx], _NU_BOUNDS[1])
        th_n = th[idx] + step[:, k:]
        pw_n, c_n, r_n, f_n, U_n = ev(nu_n, th_n, idx)
        ok = np.isfinite(f_n) & (f_n < f[idx])
        rel = (f[idx] - f_n) / np.maximum(f[idx], 1e-300)
        ii = idx[ok]
        nu[ii], th[ii], pw[ii], c[ii] = nu_n[ok], th_n[ok], pw_n[ok], c_n[ok]
        r[ii], f[ii], U[ii] = r_n[ok], f_n[ok], U_n[ok]
        lam[idx] = np.where(ok, lam[idx] / 3.0, lam[idx] * 4.0)
        small = ok & (rel < ftol)
        stall[idx] = np.where(small | ~ok, stall[idx] + 1, 0)
        active[idx] = (lam[idx] < 1e10) & (stall[idx] < 4)
    return -np.exp(nu) + 1j * th, c, f


def _candidate_grid(L: int) -> np.ndarray:
    """Shared log-pole candidates: decay rates 1e-4..3 (log-spaced) x angles (0, pi]."""
    g = np.logspace(-4, math.log10(3.0), 16)
    a = np.linspace(math.pi / (2 * L), math.pi, min(36, max(24, L)))
    return (-g[:, None] + 1j * a[None, :]).ravel()


class _Candidates:
    """Candidate basis columns for the greedy insertion, with their Gram matrices.

    ``shared`` log-poles (G,) are common to all rows: without weights their columns (G, L, 2) and Gram
    matrices are computed once; ``rows`` log-poles (N, n) are per row. Weighted columns are per row and
    cached when small.
    """

    _CACHE_MAX = 3e7  # floats

    def __init__(self, shared: np.ndarray, rows: np.ndarray | None, W, N: int, L: int):
        self.W, self.N, self.L = W, N, L
        self.blocks: list = []
        if W is None:
            Phi = self._cols(shared[None])[0]  # (G, L, 2)
            self.blocks.append(("shared", shared, Phi, np.einsum("gla,glb->gab", Phi, Phi)))
        else:
            chunk = max(1, int(self._CACHE_MAX // max(1, N * L * 2)))
            for g0 in range(0, shared.size, chunk):
                cs = np.broadcast_to(shared[g0 : g0 + chunk], (N, min(chunk, shared.size - g0)))
                self.blocks.append(("rows", cs, None, None) if shared.size > chunk else self._row_block(cs))
        if rows is not None and rows.size:
            self.blocks.append(self._row_block(rows))

    def _cols(self, cs: np.ndarray) -> np.ndarray:
        pw = np.exp(cs[..., None] * np.arange(self.L))  # (..., g, L)
        return np.stack([pw.real, pw.imag], axis=-1)

    def _row_block(self, cs: np.ndarray):
        Phi = self._cols(cs)  # (N, g, L, 2)
        if self.W is not None:
            Phi = np.einsum("nij,ngjc->ngic", self.W, Phi, optimize=True)
        return ("rows", cs, Phi, np.einsum("ngla,nglb->ngab", Phi, Phi))

    def __iter__(self):
        for blk in self.blocks:
            yield blk if blk[2] is not None else self._row_block(blk[1])


def _insert(t, W, s_cur, cands: _Candidates):
    r"""Best new log-pole per row among the candidates given the current poles (greedy insertion).

    The gain of a candidate pair of columns :math:`\Phi` is :math:`v^T (\Phi^T P_\perp \Phi)^{-1} v`,
    :math:`v = \Phi^T r`, with r the residual of the current basis Q: the decrease of the least-squares
    residual when the pair is added.
    """
    N, L = t.shape
    if s_cur.shape[1]:
        _, Phi = _basis(s_cur, L, W)
        Q, _ = np.linalg.qr(Phi)
        r = t - np.einsum("nlk,nk->nl", Q, np.einsum("nlk,nl->nk", Q, t))
    else:
        r, Q = t, None
    best = np.full(N, -np.inf)
    choice = np.zeros(N, np.complex128)
    rows = np.arange(N)
    for kind, cs, Phi, gram in cands:
        if kind == "shared":  # Phi (G, L, 2), gram (G, 2, 2)
            v = np.einsum("gla,nl->nga", Phi, r)
            gram = np.broadcast_to(gram, (N,) + gram.shape)
            if Q is not None:
                A = np.einsum("nlk,gla->ngka", Q, Phi, optimize=True)
                gram = gram - np.einsum("ngka,ngkb->ngab", A, A)
            csn = np.broadcast_to(cs, (N, cs.size))
        else:
            v = np.einsum("ngla,nl->nga", Phi, r)
            if Q is not None:
                A = np.einsum("nlk,ngla->ngka", Q, Phi, optimize=True)
                gram = gram - np.einsum("ngka,ngkb->ngab", A, A)
            csn = cs
        gain = pair_gain(gram[..., 0, 0], gram[..., 0, 1], gram[..., 1, 1], v[..., 0], v[..., 1])
        j = np.argmax(gain, axis=1)
        gb = gain[rows, j]
        upd = gb > best
        best = np.where(upd, gb, best)
        choice = np.where(upd, csn[rows, j], choice)
    return choice


def fit_finite_horizon(t: np.ndarray, q: int, *, W: np.ndarray | None = None, init: np.ndarray | None = None,
                       init_score: np.ndarray | None = None, kappa: float = 2.0, iters: int = 120,
                       ridge: float = FIT_RIDGE, return_path: bool = False, sweep: bool = True):
    r"""Finite-horizon (optionally weighted) h2-optimal conjugate-pair fit of real SISO kernels.

    Minimises, per row n, :math:`\|W_n (t_n - \hat t_n)\|^2 + \alpha\|c\|^2` over
    :math:`\hat t_n[l] = \kappa\,\mathrm{Re}\sum_{k<q} \hat c_k \mu_k^l` (l < L) with stable poles
    :math:`\mu_k = e^{-e^{\nu_k} + i\theta_k}`: variable projection for the residues, greedy pole
    insertion over a candidate grid (plus the ``init`` poles) with Levenberg–Marquardt refinement after
    every insertion, one exchange sweep (each pole re-inserted given the others), and the best of that
    and an LM run from the dominant ``init`` poles.

    Parameters
    ----------
    t : ndarray, shape (N, L)
        Target kernels (without the feed-through D, which the reduced model keeps).
    q : int
        Number of conjugate pairs (real order 2q).
    W : ndarray, shape (N, L, L), or LagMetric, optional
        Square roots of the lag weights (identity = plain finite-horizon h2), or the structured lag
        weights :class:`~mor_lqo.deep.compress.lag_gram.LagMetric` (their squares), fitted in Gram form
        without L x L products (:mod:`~mor_lqo.deep.compress.finite_horizon_gram`) when the horizon is
        long against the number of sequences (:meth:`LagMetric.structured`), else by the dense route.
    init : ndarray, shape (N, n), optional
        Candidate poles (e.g. the original modes, |mu| < 1); the q with the largest finite-horizon
        contribution (``init_score``, default: their finite-horizon decay sums) also start a second LM
        run. No fitted pole decays slower than the slowest of them (so the reduced model is never closer
        to marginal stability than the original).
    init_score : ndarray, shape (N, n), optional
        Ranking of the ``init`` poles (e.g. their modal h2 contributions).
    kappa : float
        Output factor of the stored residues.
    return_path : bool
        Also return the greedy solutions for every order 2, 4, ..., 2q (list of (lam, C, f)).
    sweep : bool
        Run the exchange sweep (skipped for the candidate ladders of ``method="bound"``).

    Returns
    -------
    lam : ndarray (N, q) complex, Im >= 0
    C : ndarray (N, q) complex, so that :math:`\hat t[l] = \kappa\,\mathrm{Re}\sum_k C_k \mu_k^l`
    f : ndarray (N,)
        Final (regularised) objective.
    """
    t = np.asarray(t, np.float64)
    N, L = t.shape
    if isinstance(W, LagMetric) and not W.structured():
        W = W.sqrt()
    if isinstance(W, LagMetric) and N > _GRAM_ROWS:  # independent rows: bounded memory
        parts = [fit_finite_horizon(t[r], q, W=W[r], init=None if init is None else init[r],
                                    init_score=None if init_score is None else init_score[r], kappa=kappa,
                                    iters=iters, ridge=ridge, return_path=return_path, sweep=sweep)
                 for r in np.array_split(np.arange(N), -(-N // _GRAM_ROWS))]
        out = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
        if return_path:
            path = [tuple(np.concatenate([p[3][o][i] for p in parts]) for i in range(3)) for o in range(q)]
            return out + (path,)
        return out
    nu_lo, s_rows, s_init = _init_poles(init, init_score, q, N, L)
    grid = _candidate_grid(L)
    fit = (_GramRoute if isinstance(W, LagMetric) else _DenseRoute)(t, W, grid, s_rows, ridge, nu_lo)
    s_cur = np.zeros((N, 0), np.complex128)
    path = []
    f = fit.tau
    c = np.zeros((N, 0))
    for k in range(1, q + 1):
        new = fit.insert(s_cur)
        new = np.maximum(new.real, -np.exp(_NU_BOUNDS[1])) + 1j * new.imag
        new = np.minimum(new.real, -np.exp(nu_lo)) + 1j * new.imag
        s_cur = np.concatenate([s_cur, new[:, None]], axis=1)
        s_cur, c, f = fit.lm(s_cur, iters if k == q else max(10, iters // 8))
        if return_path:
            path.append(_to_modes(s_cur, c, kappa) + (f.copy(),))
    for j in range(q if q > 1 and sweep else 0):  # one exchange sweep: re-insert each pole given the others
        rest = np.delete(s_cur, j, axis=1)
        new = fit.insert(rest)
        new = np.minimum(np.maximum(new.real, -np.exp(_NU_BOUNDS[1])), -np.exp(nu_lo)) + 1j * new.imag
        s2, c2, f2 = fit.lm(np.concatenate([rest, new[:, None]], axis=1), max(10, iters // 8))
        better = f2 < f * (1 - 1e-12)
        s_cur = np.where(better[:, None], s2, s_cur)
        c = np.where(better[:, None], c2, c)
        f = np.where(better, f2, f)
    if q > 1 and sweep:
        s_cur, c, f = fit.lm(s_cur, iters)
    if s_init is not None:  # never worse than the dominant-mode start: LM from it where it is better
        rows = np.flatnonzero(fit.objective(s_init) < f)
        s2, c2, f2 = s_cur.copy(), c.copy(), f.copy()
        if rows.size:
            s2[rows], c2[rows], f2[rows] = fit.lm(s_init[rows], iters, rows)
        better = f2 < f
        s_cur = np.where(better[:, None], s2, s_cur)
        c = np.where(better[:, None], c2, c)
        f = np.where(better, f2, f)
        if return_path:
            path[-1] = _to_modes(s_cur, c, kappa) + (f.copy(),)
    lam, C = _to_modes(s_cur, c, kappa)
    return (lam, C, f, path) if return_path else (lam, C, f)


INSERT_RIDGE = 1e-7  # ridge of the projection in the Gram-form insertion (the dense route projects exactly)
_GRAM_ROWS = 128  # rows per Gram-form fit (bounds the (rows, candidates, poles) kernel arrays)


class _DenseRoute:
    """The fit's operations with dense square-root weights W (N, L, L) (or none)."""

    def __init__(self, t, W, grid, s_rows, ridge, nu_lo):
        self.tw, self.W, self.ridge, self.nu_lo = _weighted(W, t), W, ridge, nu_lo
        self.cset = _Candidates(grid, s_rows, W, *t.shape)
        self.tau = np.sum(self.tw * self.tw, axis=1)

    def insert(self, s_cur):
        return _insert(self.tw, self.W, s_cur, self.cset)

    def lm(self, s, iters, rows=slice(None)):
        return _lm(self.tw[rows], s, None if self.W is None else self.W[rows], iters, self.ridge, self.nu_lo[rows])

    def objective(self, s):
        return _vp(_basis(s, self.tw.shape[1], self.W)[1], self.tw, self.ridge)[2]


class _GramRoute:
    """The fit's operations in Gram form under structured lag weights (:class:`LagMetric`)."""

    def __init__(self, t, W, grid, s_rows, ridge, nu_lo):
        self.prob, self.ridge, self.nu_lo = GramProblem(t, W), ridge, nu_lo
        self.cset = Candidates(self.prob, grid, s_rows)
        self.tau = self.prob.tau

    def insert(self, s_cur):
        return gram_insert(self.prob, s_cur, self.cset, INSERT_RIDGE)

    def lm(self, s, iters, rows=slice(None)):
        return gram_lm(self.prob.take(rows), s, iters, self.ridge, self.nu_lo[rows])

    def objective(self, s):
        return gram_evaluate(self.prob, s, self.ridge, jac=False)[1]


def _init_poles(init, init_score, q: int, N: int, L: int):
    """From the original poles ``init`` (N, n) or None: the lower bounds of the log decay rates (N,), the
    candidate log-poles (N, n) and the q dominant ones that start the second LM run (or None)."""
    nu_lo = np.full(N, _NU_BOUNDS[0])
    if init is not None:  # no reduced pole slower than the slowest original mode of the row
        a = np.abs(np.asarray(init, np.complex128))
        ok = (a > 0) & (a < 1)
        slow = np.where(ok, -np.log(np.where(ok, a, 0.5)), np.inf).min(axis=1)
        nu_lo = np.where(np.isfinite(slow), np.log(np.maximum(slow, math.exp(_NU_BOUNDS[0]))), nu_lo)
    s_rows = None
    s_init = None
    if init is not None:
        init = np.asarray(init, np.complex128)
        ok = (np.abs(init) > 0) & (np.abs(init) < 1)
        s_o = np.where(ok, np.log(np.where(ok, init, 0.5)), np.log(0.5))
        s_o = np.where(s_o.imag < 0, np.conj(s_o), s_o)
        s_o = s_o.real + 1j * np.maximum(s_o.imag, math.pi / (4 * L))
        s_rows = s_o
        if init.shape[1] >= q:
            a = np.abs(init) ** 2
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(np.isclose(a, 1.0), float(L), (1 - a**L) / (1 - a))
            score = np.where(ok, g if init_score is None else np.asarray(init_score, float), -1.0)
            sel = np.argsort(-score, axis=1, kind="stable")[:, :q]
            s_init = np.take_along_axis(s_o, sel, axis=1)
    return nu_lo, s_rows, s_init


def _to_modes(s: np.ndarray, c: np.ndarray, kappa: float):
    k = s.shape[1]
    mu = np.exp(s)
    C = (c[:, :k] - 1j * c[:, k:]) / kappa
    neg = mu.imag < 0
    return np.where(neg, mu.conj(), mu), np.where(neg, C.conj(), C)
