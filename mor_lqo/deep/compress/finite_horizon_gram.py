r"""The data-weighted finite-horizon fit in Gram form: variable projection, Levenberg–Marquardt and greedy
insertion on the inner products of the basis columns under the structured lag weights
(:class:`~mor_lqo.deep.compress.lag_gram.LagMetric`), never forming an L x L matrix.

Every column of the fit is the real part of a complex multiple of :math:`a^l` or :math:`l a^l`, so all
needed inner products follow from the closed-form kernels of :func:`~mor_lqo.deep.compress.lag_gram.pair_kernels`:
:math:`\langle \mathrm{Re}(\gamma_1\phi_1), \mathrm{Re}(\gamma_2\phi_2)\rangle =
\tfrac12\mathrm{Re}(\gamma_1\gamma_2\langle\phi_1,\phi_2\rangle + \gamma_1\bar\gamma_2\langle\phi_1,\bar\phi_2\rangle)`.
The iterates equal those of the dense route (the same ridge, the same Kaufman Jacobian) up to rounding.
"""

from __future__ import annotations

import numpy as np

from .constants import _NU_BOUNDS
from .lag_gram import (
    Blocked,
    LagMetric,
    block_sums,
    combine,
    derivative_moments,
    diag_kernels,
    moment_tables,
    moments,
    pair_kernels,
    powers,
)


class GramProblem:
    """Target kernels t (N, L) and their weights: the moment coefficients [M t, r, sequences] and t^T M t."""

    def __init__(self, t: np.ndarray, metric: LagMetric, _parts=None):
        if _parts is not None:
            self.coef, self.blk, self.tau, self.r0 = _parts
        else:
            v = metric.apply(t)
            self.tau = np.sum(t * v, axis=1)
            self.coef = metric.coef(v)
            self.blk = Blocked(self.coef)
            self.r0 = metric.acf[:, 0].copy()
        self.N, self.L = self.blk.ct.shape[0], self.blk.L

    def take(self, rows) -> GramProblem:
        if isinstance(rows, slice) or len(rows) == self.N:
            return self
        return GramProblem(None, None, (None, self.blk.take(rows), self.tau[rows], self.r0[rows]))

    def kernels(self, s: np.ndarray, deriv: bool):
        """Moments of the poles s (N, k) and their kernels against [s, conj(s)] ((N, k, 2k) each)."""
        X0, X1 = moments(s, self.blk, deriv)
        sb = np.concatenate([s, s.conj()], axis=1)
        Xb0 = np.concatenate([X0, X0.conj()], axis=1)
        Xb1 = None if X1 is None else np.concatenate([X1, X1.conj()], axis=1)
        K = pair_kernels(s, X0[..., 1:], None if X1 is None else X1[..., 1:], sb, Xb0[..., 1:],
                         None if Xb1 is None else Xb1[..., 1:], self.r0, deriv)
        return X0, X1, K


def pair_gain(g11, g12, g22, v1, v2) -> np.ndarray:
    r"""Insertion gains :math:`v^T G^{-1} v` of 2 x 2 Gram matrices ``[[g11, g12], [g12, g22]]`` (arrays of
    one shape), each regularised by 1e-10 of its trace; ``-inf`` where G is not positive definite."""
    reg = 1e-10 * np.abs(g11 + g22) + 1e-300
    g11, g22 = g11 + reg, g22 + reg
    det = g11 * g22 - g12 * g12
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = (g22 * v1 * v1 - 2 * g12 * v1 * v2 + g11 * v2 * v2) / det
    return np.where(np.isfinite(gain) & (det > 0), gain, -np.inf)


def _real(K: np.ndarray, gp: np.ndarray, ip: np.ndarray, gq: np.ndarray, iq: np.ndarray) -> np.ndarray:
    r"""Real Gram matrix of the columns :math:`\mathrm{Re}(g_p\phi_{i_p})`, :math:`\mathrm{Re}(g_q\psi_{i_q})`
    from the kernels K (N, k, 2k) against [poles, conjugate poles]."""
    k = K.shape[2] // 2
    Kd = K[:, ip][:, :, iq]
    Kc = K[:, ip][:, :, k + iq]
    return 0.5 * (gp[:, :, None] * (gq[:, None, :] * Kd + gq.conj()[:, None, :] * Kc)).real


def _ridge_solve(G: np.ndarray, g: np.ndarray, ridge: float):
    """(G + alpha I)^{-1} (N, d, d), alpha = ridge^2 lambda_max(G) (N,), and the solution c of g."""
    w, V = np.linalg.eigh(G)
    w = np.clip(w, 0.0, None)
    alpha = ridge**2 * w[:, -1] + 1e-300
    Kinv = np.einsum("nik,nk,njk->nij", V, 1.0 / (w + alpha[:, None]), V)
    return Kinv, alpha, np.einsum("nij,nj->ni", Kinv, g)


def _phi_coeffs(N: int, k: int):
    ip = np.concatenate([np.arange(k), np.arange(k)])
    gp = np.broadcast_to(np.concatenate([np.ones(k), -1j * np.ones(k)]), (N, 2 * k))
    return ip, gp


def evaluate(prob: GramProblem, s: np.ndarray, ridge: float, jac: bool = True):
    r"""Variable projection at log-poles s (N, k): residues c (N, 2k), objective f (N,) and, with ``jac``,
    the Gauss–Newton matrix :math:`J^TJ` and gradient :math:`J^Tr` in (nu, theta), nu = log(-Re s)
    (else the state for :func:`jacobian`)."""
    N, k = s.shape
    lo, hi = moment_tables(s, prob.blk)
    Y0 = block_sums(lo, prob.blk)
    X0 = combine(hi, Y0)
    sb = np.concatenate([s, s.conj()], axis=1)
    Xb0 = np.concatenate([X0, X0.conj()], axis=1)
    K00 = pair_kernels(s, X0[..., 1:], None, sb, Xb0[..., 1:], None, prob.r0, False)
    ip, gp = _phi_coeffs(N, k)
    G = _real(K00, gp, ip, gp, ip)
    g = (gp * X0[:, ip, 0]).real
    Kinv, alpha, c = _ridge_solve(G, g, ridge)
    f = prob.tau - np.sum(g * c, axis=1)
    state = _State(s, lo, hi, Y0, X0, G, Kinv, alpha, c)
    if not jac:
        return c, f, state
    return (c, f) + jacobian(prob, state)


class _State:
    """Arrays of one evaluation that the Jacobian reuses (rows selectable)."""

    def __init__(self, *arrays):
        self.arrays = arrays

    def __getitem__(self, rows) -> _State:
        return _State(*(a[rows] for a in self.arrays))


def jacobian(prob: GramProblem, state: _State):
    r""":math:`J^TJ` (N, 2k, 2k) and :math:`J^Tr` (N, 2k) of the Kaufman variable-projection Jacobian at an
    evaluated point (``state`` from :func:`evaluate`)."""
    s, lo, hi, Y0, X0, G, Kinv, alpha, c = state.arrays
    N, k = s.shape
    X1 = derivative_moments(lo, hi, Y0, prob.blk)
    sb = np.concatenate([s, s.conj()], axis=1)
    Xb0 = np.concatenate([X0, X0.conj()], axis=1)
    Xb1 = np.concatenate([X1, X1.conj()], axis=1)
    K = pair_kernels(s, X0[..., 1:], X1[..., 1:], sb, Xb0[..., 1:], Xb1[..., 1:], prob.r0, True)
    ip, gp = _phi_coeffs(N, k)
    A, Bc = c[:, :k], c[:, k:]
    gD = np.concatenate([s.real * (A - 1j * Bc), Bc + 1j * A], axis=1)
    H = _real(K[2], gp, ip, gD, ip)  # Phi^T M D
    DD = _real(K[3], gD, ip, gD, ip)
    DMe = (gD * X1[:, ip, 0]).real - np.einsum("npq,np->nq", H, c)
    KH = Kinv @ H
    JtJ = DD - 2 * np.swapaxes(H, 1, 2) @ KH + np.swapaxes(KH, 1, 2) @ G @ KH
    Jtr = -(DMe - alpha[:, None] * np.einsum("npq,np->nq", KH, c))
    return JtJ, Jtr


def lm(prob: GramProblem, s: np.ndarray, iters: int, ridge: float, nu_lo: np.ndarray, ftol: float = 1e-7):
    """Levenberg–Marquardt on the log-poles (the Gram form of ``finite_horizon._lm``); returns (s, c, f).

    The Jacobian is formed only at accepted points."""
    N = prob.N
    k = s.shape[1]
    lo = nu_lo[:, None]
    nu = np.clip(np.log(np.clip(-s.real, 1e-300, None)), lo, _NU_BOUNDS[1])
    th = s.imag.copy()
    c, f, A, g = evaluate(prob, -np.exp(nu) + 1j * th, ridge)
    lam = np.full(N, 1e-2)
    active = np.ones(N, bool)
    stall = np.zeros(N, int)
    eye = np.eye(2 * k)[None]
    for _ in range(iters):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Ai = A[idx]
        dg = np.einsum("nii->ni", Ai)
        reg = lam[idx, None, None] * (eye * (dg[:, :, None] + 1e-12 * dg.max(axis=1)[:, None, None] + 1e-300))
        try:
            step = -np.linalg.solve(Ai + reg, g[idx][..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g[idx] / (dg + 1e-300)
        nu_n = np.clip(nu[idx] + step[:, :k], lo[idx], _NU_BOUNDS[1])
        th_n = np.mod(th[idx] + step[:, k:] + np.pi, 2 * np.pi) - np.pi  # same poles; keeps e^{s l} accurate
        sub = prob.take(idx)
        c_n, f_n, st = evaluate(sub, -np.exp(nu_n) + 1j * th_n, ridge, jac=False)
        ok = np.isfinite(f_n) & (f_n < f[idx])
        rel = (f[idx] - f_n) / np.maximum(f[idx], 1e-300)
        ii = idx[ok]
        if ii.size:
            A[ii], g[ii] = jacobian(sub.take(np.flatnonzero(ok)), st[ok])
        nu[ii], th[ii], c[ii], f[ii] = nu_n[ok], th_n[ok], c_n[ok], f_n[ok]
        lam[idx] = np.where(ok, lam[idx] / 3.0, lam[idx] * 4.0)
        small = ok & (rel < ftol)
        stall[idx] = np.where(small | ~ok, stall[idx] + 1, 0)
        active[idx] = (lam[idx] < 1e10) & (stall[idx] < 4)
    return -np.exp(nu) + 1j * th, c, f


class Candidates:
    """Moments of the candidate log-poles: the shared grid (G,) and per-row poles (N, n), computed once."""

    def __init__(self, prob: GramProblem, shared: np.ndarray, rows: np.ndarray | None):
        N, L = prob.N, prob.L
        cf = prob.coef.reshape(N, L, -1)
        Vg = powers(shared, L)  # (G, L)
        c2 = np.moveaxis(cf, 1, 0).reshape(L, -1)
        X = (Vg.real @ c2 + 1j * (Vg.imag @ c2)).reshape(shared.size, N, -1)
        blocks = [(np.broadcast_to(shared, (N, shared.size)), np.moveaxis(X, 0, 1))]
        if rows is not None and rows.size:
            blocks.append((rows, moments(rows, prob.blk, deriv=False)[0]))
        self.blocks = [(cs, Xc, *diag_kernels(cs, Xc[..., 1:], prob.r0)) for cs, Xc in blocks]


def insert(prob: GramProblem, s_cur: np.ndarray, cands: Candidates, ridge: float) -> np.ndarray:
    r"""Best new log-pole per row among the candidates (the Gram form of ``finite_horizon._insert``): the gain
    :math:`v^T(\Phi_c^T M \Phi_c - H_c^T K H_c)^{-1}v`, :math:`v = \Phi_c^T M (t - \Phi c)`, with K the
    ridge inverse of the current Gram matrix and c the current residues."""
    N, k = s_cur.shape
    r0 = prob.r0
    if k:
        X0, _, K00 = prob.kernels(s_cur, False)
        ip, gp = _phi_coeffs(N, k)
        Kinv, _, c = _ridge_solve(_real(K00, gp, ip, gp, ip), (gp * X0[:, ip, 0]).real, ridge)
    best = np.full(N, -np.inf)
    choice = np.zeros(N, np.complex128)
    rows = np.arange(N)
    for cs, Xc, Kzz, Kzc in cands.blocks:
        g11 = 0.5 * (Kzz + Kzc).real
        g22 = 0.5 * (Kzc - Kzz).real
        g12 = 0.5 * (Kzz - Kzc).imag
        v1, v2 = Xc[..., 0].real, Xc[..., 0].imag
        if k:
            Ka = pair_kernels(s_cur, X0[..., 1:], None, cs, Xc[..., 1:], None, r0, False)  # (N, k, nc)
            Kb = pair_kernels(s_cur, X0[..., 1:], None, cs.conj(), Xc[..., 1:].conj(), None, r0, False)
            P, Q = Ka + Kb, Ka - Kb
            Hr = 0.5 * np.concatenate([P.real, P.imag], axis=1)  # (N, 2k, nc): <Phi, Re psi_z>
            Hi = 0.5 * np.concatenate([Q.imag, -Q.real], axis=1)  # <Phi, Im psi_z>
            v1 = v1 - np.einsum("npg,np->ng", Hr, c)
            v2 = v2 - np.einsum("npg,np->ng", Hi, c)
            KHr, KHi = Kinv @ Hr, Kinv @ Hi
            g11 = g11 - np.sum(Hr * KHr, axis=1)
            g22 = g22 - np.sum(Hi * KHi, axis=1)
            g12 = g12 - np.sum(Hr * KHi, axis=1)
        gain = pair_gain(g11, g12, g22, v1, v2)
        j = np.argmax(gain, axis=1)
        gb = gain[rows, j]
        upd = gb > best
        best = np.where(upd, gb, best)
        choice = np.where(upd, cs[rows, j], choice)
    return choice
