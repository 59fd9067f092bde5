r"""Data-weighted joint fit of a reduced MIMO / LQO diagonal unit to the full unit's outputs on recorded inputs.

For a unit :math:`x_k = \lambda \odot x_{k-1} + B u_k`, :math:`y_k = \kappa\,\mathrm{Re}(C x_k) +
[x_k^H M_j x_k]_j + D u_k` (:class:`~mor_lqo.adapters.block.HalfModes`) and recorded inputs
:math:`U \in \mathbb R^{N \times L \times m}` the reduced unit
:math:`(\hat\lambda, \hat B, \hat C, \hat M_j = \hat U_j^H \hat U_j)` minimises

.. math::

    J = \frac{1}{\tau}\sum_{b < N}\sum_{k < L} \|y_k^{(b)} - \hat y_k^{(b)}\|_2^2
        + \rho\,(\text{the same on white noise}),
    \qquad \tau = N L\, \overline{u^2},

the squared output error on the data: the finite-horizon h2 error weighted by the inputs' actual lag
covariance (linear part) and by their actual second- and fourth-order statistics (quadratic part), both
exact on the calibration data rather than modelled by Gramians. The feed-through :math:`D` is kept and
cancels. Parametrisation (the layouts' own): :math:`\hat\lambda = e^{-e^{a} + i b}` (always stable,
:math:`|\hat\lambda| < 1`), complex :math:`\hat B, \hat C` and the rank-R factor :math:`\hat U_j` (so every
:math:`\hat M_j` is positive semi-definite of rank :math:`\le R`). The gradient is exact (reverse-mode
adjoint of the recursion, :func:`output_error_gradient`), the optimiser L-BFGS.

Rows beyond ``n_fwd_rows`` belong to the anticausal direction of a bidirectional unit: simulated on the
time-reversed inputs (``bwd_shift`` 1: the last reversed state does not reach the output), with the same
:math:`\hat\lambda, \hat B`.

No torch here: plain numpy; the recursions are loops over time with vectorised batch/mode arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...adapters.block import HalfModes
from .recorded import _states

__all__ = ["OutputFitProblem", "make_problem", "output_error", "output_error_gradient", "fit_outputs",
           "best_readout", "data_balanced_start", "data_gramians", "quadratic_factor", "unit_outputs"]


@dataclass(frozen=True)
class OutputFitProblem:
    """Recorded inputs per direction and the full unit's outputs on them (simulated once).

    ``inputs[d]`` (N, L, m) float64 (time-reversed for the anticausal direction): the ``n_data`` recorded
    sequences followed by the regularising white-noise sequences; ``rows[d]`` the output rows of direction
    d, ``shift[d]`` 1 where the last state of the direction does not reach the output, ``targets[d]``
    (N, L - shift, p_d) the full unit's outputs without the feed-through, ``weight`` (N,) the weight of
    each sequence's squared error in :math:`J`.
    """

    inputs: tuple
    rows: tuple
    shift: tuple
    targets: tuple
    weight: np.ndarray
    n_data: int
    kappa: float


def quadratic_factor(M: np.ndarray, rtol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    r"""Signed low-rank factor of Hermitian :math:`M_j` (p, n, n): ``(F (p, R, n), s (p, R))`` with
    :math:`M_j = F_j^H \mathrm{diag}(s_j) F_j` (eigenvalues below ``rtol`` times the largest dropped, so R is
    the largest numerical rank; missing entries padded with zeros)."""
    w, V = np.linalg.eigh(0.5 * (M + np.conj(np.swapaxes(M, -1, -2))))
    scale = max(float(np.max(np.abs(w))) if w.size else 0.0, 1e-300)
    keep = np.abs(w) > rtol * scale
    R = max(int(np.max(np.sum(keep, axis=1))) if keep.size else 0, 1)
    p, n = M.shape[0], M.shape[1]
    F = np.zeros((p, R, n), np.complex128)
    s = np.zeros((p, R))
    for j in range(p):
        idx = np.flatnonzero(keep[j])
        F[j, : idx.size] = np.sqrt(np.abs(w[j, idx]))[:, None] * V[j][:, idx].conj().T
        s[j, : idx.size] = np.sign(w[j, idx])
    return F, s


def unit_outputs(hm: HalfModes, X: np.ndarray, rows: slice) -> np.ndarray:
    """Outputs ``kappa Re(C x) + x^H M x`` (no feed-through) of the rows of a unit for states X (N, L, n)."""
    y = hm.kappa * np.real(X @ hm.C[rows].T)
    if hm.M is not None:
        F, s = quadratic_factor(hm.M[rows])
        W = (X @ F.reshape(-1, F.shape[-1]).T).reshape(*X.shape[:2], *F.shape[:2])
        y = y + np.einsum("nljr,jr->nlj", W.real**2 + W.imag**2, s)
    return y


def _directions(p: int, n_fwd_rows: int | None, bwd_shift: int):
    q = p if n_fwd_rows is None else int(n_fwd_rows)
    out = [(slice(0, q), False, 0)]
    if q < p:
        out.append((slice(q, p), True, int(bwd_shift)))
    return out


def make_problem(full: HalfModes, U: np.ndarray, n_fwd_rows: int | None = None, bwd_shift: int = 1,
                 rho: float = 1e-2, seed: int = 0) -> OutputFitProblem:
    r"""The fit problem of ``full`` on recorded inputs U (N, L, m): inputs, rows, simulated targets, weights.

    The data term has weight :math:`1/\tau`, :math:`\tau = N L\,\overline{u^2}`. With ``rho`` > 0,
    :math:`n_w = \max(4, \lceil N/8 \rceil)` white-noise sequences of the data's RMS (seeded, so the fit is
    reproducible) are added with total weight ``rho`` relative to the data: their expected squared output
    error is the finite-horizon h2 error, so this is the MIMO/LQO analogue of the ridge of the per-channel
    lag weights, keeping the fit sensible in input directions the data never excite.
    """
    U = np.asarray(U, np.float64)
    N, L, m = U.shape
    ms = max(float(np.mean(U * U)), 1e-300)
    weight = np.full(N, 1.0 / (N * L * ms))
    if rho > 0:
        n_w = max(4, -(-N // 8))
        white = np.random.default_rng(seed).standard_normal((n_w, L, m)) * np.sqrt(ms)
        U = np.concatenate([U, white])
        weight = np.concatenate([weight, np.full(n_w, rho / (n_w * L * ms))])
    ins, rows, shifts, targets = [], [], [], []
    for r, rev, sh in _directions(full.p, n_fwd_rows, bwd_shift):
        Ud = np.ascontiguousarray(U[:, ::-1]) if rev else U
        X = _states(full.lam, Ud @ full.B.T)
        ins.append(Ud)
        rows.append(r)
        shifts.append(sh)
        targets.append(unit_outputs(full, X[:, : L - sh], r))
    return OutputFitProblem(tuple(ins), tuple(rows), tuple(shifts), tuple(targets), weight, N, float(full.kappa))


# ----------------------------------------------------------------------------------- parameters
def _split(theta: np.ndarray, q: int, m: int, p: int, R: int):
    """(a, b, B (q, m), C (p, q), U (p, R, q) or None) from the real parameter vector."""
    i = 0

    def take(k):
        nonlocal i
        out = theta[i : i + k]
        i += k
        return out

    a, b = take(q), take(q)
    B = (take(q * m) + 1j * take(q * m)).reshape(q, m)
    C = (take(p * q) + 1j * take(p * q)).reshape(p, q)
    Uq = (take(p * R * q) + 1j * take(p * R * q)).reshape(p, R, q) if R else None
    return a, b, B, C, Uq


def _pack(a, b, B, C, Uq) -> np.ndarray:
    parts = [a, b, B.real.ravel(), B.imag.ravel(), C.real.ravel(), C.imag.ravel()]
    if Uq is not None:
        parts += [Uq.real.ravel(), Uq.imag.ravel()]
    return np.concatenate(parts)


def _to_theta(red: HalfModes, R: int) -> np.ndarray:
    lam = red.lam
    mag = np.clip(np.abs(lam), 1e-300, 1.0 - 1e-15)
    a = np.log(-np.log(mag))
    b = np.angle(lam)
    Uq = None
    if R:
        F, s = quadratic_factor(red.M) if red.M is not None else (np.zeros((red.p, 0, red.n)), np.zeros((red.p, 0)))
        F = F * (s > 0)[..., None]  # the PSD part (a reduced M-hat is PSD already)
        Uq = np.zeros((red.p, R, red.n), np.complex128)
        k = min(R, F.shape[1])
        Uq[:, :k] = F[:, :k]
    return _pack(a, b, red.B, red.C, Uq)


def _from_theta(theta: np.ndarray, like: HalfModes, R: int) -> HalfModes:
    q, m, p = like.n, like.m, like.p
    a, b, B, C, Uq = _split(theta, q, m, p, R)
    lam = np.exp(-np.exp(a) + 1j * b)
    M = None if Uq is None else np.einsum("jrp,jrq->jpq", Uq.conj(), Uq)
    return replace(like, lam=lam, B=B, C=C, M=M)


# ----------------------------------------------------------------------------------- objective
def output_error(red: HalfModes, prob: OutputFitProblem) -> float:
    r"""Normalised squared output error :math:`J` of ``red`` on the problem's data (module docstring)."""
    J = 0.0
    for Ud, rows, sh, Y in zip(prob.inputs, prob.rows, prob.shift, prob.targets):
        X = _states(red.lam, Ud @ red.B.T)
        if sh:
            X = X[:, :-sh]
        d = unit_outputs(red, X, rows) - Y
        J += float(np.sum(prob.weight * np.sum(d * d, axis=(1, 2))))
    return J


def output_error_gradient(theta: np.ndarray, prob: OutputFitProblem, shape: tuple[int, int, int, int]
                          ) -> tuple[float, np.ndarray]:
    r"""``(J, dJ/dtheta)`` for the packed real parameters (a, b, Re/Im B, Re/Im C, Re/Im U).

    Reverse mode through the recursion, one direction at a time (:func:`_direction_error_gradient`); the pole
    gradient is mapped to the parameters of :math:`\hat\lambda = e^{-e^a + ib}`: :math:`\partial J/\partial a
    = -e^a\,\mathrm{Re}(\overline{\nabla_\lambda}\hat\lambda)`, :math:`\partial J/\partial b =
    \mathrm{Re}(i\,\overline{\nabla_\lambda}\hat\lambda)`.
    """
    q, m, p, R = shape
    a, b, B, C, Uq = _split(theta, q, m, p, R)
    lam = np.exp(-np.exp(a) + 1j * b)
    Ufull = np.zeros((p, 0, q), np.complex128) if Uq is None else Uq
    J = 0.0
    gB = np.zeros((q, m), np.complex128)
    gC = np.zeros((p, q), np.complex128)
    gU = np.zeros_like(Ufull)
    glam = np.zeros(q, np.complex128)
    for Ud, rows, Y in zip(prob.inputs, prob.rows, prob.targets):
        j, gl, gb_, gc, gu = _direction_error_gradient(lam, B, C[rows], Ufull[rows], Ud, Y, prob.weight, prob.kappa)
        J += j
        glam += gl
        gB += gb_
        gC[rows] += gc
        gU[rows] += gu
    t = np.conj(glam) * lam
    return J, _pack(-np.exp(a) * t.real, np.real(1j * t), gB, gC, None if Uq is None else gU)


def _direction_error_gradient(lam: np.ndarray, B: np.ndarray, C: np.ndarray, U: np.ndarray, inputs: np.ndarray,
                              targets: np.ndarray, weight: np.ndarray, kappa: float):
    r"""``(J, grad_lam (q,), grad_B (q, m), grad_C (p, q), grad_U (p, R, q))`` of one direction of a unit.

    Reverse mode, with :math:`g_k = 2 w_n (\hat y_k - y_k)` and :math:`v_{k,jr} = U_{jr} x_k` the adjoint
    states are :math:`\bar x_k = \kappa C^H g_k + 2\sum_{j,r} g_{k,j} v_{k,jr} \overline{U_{jr}}
    + \bar\lambda \odot \bar x_{k+1}` and :math:`\nabla_C = \kappa\sum g_k x_k^H`,
    :math:`\nabla_{U_{jr}} = 2\sum g_{k,j} v_{k,jr} x_k^H`, :math:`\nabla_B = \sum \bar x_k u_k^T`,
    :math:`\nabla_\lambda = \sum \bar x_k \odot \overline{x_{k-1}}`, in the convention
    :math:`dJ = \mathrm{Re}\sum \overline{\nabla_z}\,dz` for every complex z.

    Parameters
    ----------
    lam : (q,) complex; B : (q, m) complex; C : (p, q) complex; U : (p, R, q) complex (R = 0: no quadratic
    output); inputs : (N, L, m) float64; targets : (N, L - shift, p) float64; weight : (N,) float64;
    kappa : output factor. States beyond ``targets.shape[1]`` do not reach the output (anticausal shift).
    """
    q, R = lam.shape[0], U.shape[1]
    X = _states(lam, inputs @ B.T)
    L_out = targets.shape[1]
    Xo = X[:, :L_out]
    yhat = kappa * np.real(Xo @ C.T)
    if R:
        Uf = U.reshape(-1, q)
        V = (Xo @ Uf.T).reshape(*Xo.shape[:2], -1, R)
        yhat = yhat + np.sum(V.real**2 + V.imag**2, axis=-1)
    E = yhat - targets
    J = float(np.sum(weight * np.sum(E * E, axis=(1, 2))))
    G = (2.0 * weight)[:, None, None] * E
    Xc = Xo.conj()
    gC = kappa * np.einsum("nlj,nlq->jq", G, Xc, optimize=True)
    direct = kappa * (G @ np.conj(C))
    gU = np.zeros_like(U)
    if R:
        GV = (G[..., None] * V).reshape(*Xo.shape[:2], -1)
        gU = 2.0 * np.einsum("nla,nlq->aq", GV, Xc, optimize=True).reshape(U.shape)
        direct = direct + 2.0 * (GV @ np.conj(Uf))
    adj = np.zeros_like(X)
    xb = np.zeros((X.shape[0], q), np.complex128)
    lc = lam.conj()
    for k in range(X.shape[1] - 1, -1, -1):
        xb = lc * xb
        if k < L_out:
            xb = xb + direct[:, k]
        adj[:, k] = xb
    gB = np.einsum("nlq,nlm->qm", adj, inputs, optimize=True)
    glam = np.einsum("nlq,nlq->q", adj[:, 1:], X[:, :-1].conj(), optimize=True)
    return J, glam, gB, gC, gU


def _best_readout(X: np.ndarray, T: np.ndarray, kappa: float, weight: np.ndarray) -> np.ndarray:
    """Weighted least-squares :math:`\\hat C` (p, q) of ``kappa Re(C x) = T`` over states X (N, L, q) and targets
    T (N, L, p), sequence b weighted by ``weight[b]``."""
    q = X.shape[-1]
    sw = np.sqrt(weight)[:, None, None]
    Xf = (X * sw).reshape(-1, q)
    F = kappa * np.concatenate([Xf.real, -Xf.imag], axis=1)
    A = F.T @ F
    A += 1e-12 * np.trace(A) / A.shape[0] * np.eye(A.shape[0])
    th = np.linalg.solve(A, F.T @ (T * sw).reshape(-1, T.shape[-1]))
    return (th[:q] + 1j * th[q:]).T


# ----------------------------------------------------------------------------------- fits
def best_readout(red: HalfModes, prob: OutputFitProblem) -> HalfModes:
    r"""``red`` with the linear readout :math:`\hat C` that minimises :math:`J` for its fixed
    :math:`(\hat\lambda, \hat B, \hat M)` (linear least squares per direction)."""
    C = np.array(red.C, np.complex128)
    zero_c = replace(red, C=np.zeros_like(C))
    for Ud, rows, sh, Y in zip(prob.inputs, prob.rows, prob.shift, prob.targets):
        X = _states(red.lam, Ud @ red.B.T)
        X = X[:, : X.shape[1] - sh]
        C[rows] = _best_readout(X, Y - unit_outputs(zero_c, X, rows), red.kappa, prob.weight)
    return replace(red, C=C)


def _psd_factor(A: np.ndarray) -> np.ndarray:
    """Z with A = Z Z^H for Hermitian PSD A (negative rounding eigenvalues clipped)."""
    w, V = np.linalg.eigh(0.5 * (A + A.conj().T))
    return V * np.sqrt(np.clip(w, 0.0, None))


def data_gramians(full: HalfModes, prob: OutputFitProblem) -> tuple[np.ndarray, np.ndarray]:
    r"""Data controllability Gramian :math:`P_d = \frac1N\sum_{b,k} x_k x_k^H` of the full unit's states on
    the recorded inputs (all directions), and the observability Gramian :math:`Q` of the output weighted by
    it: :math:`Q - \bar\Lambda Q \Lambda = \tfrac{\kappa^2}{2} C^H C + \sum_j M_j \bar P_d M_j`
    (elementwise for diagonal :math:`\Lambda`; the quadratic term is the LQO observability term with the
    data Gramian in place of the model's)."""
    n, N = full.n, prob.n_data
    Pd = np.zeros((n, n), np.complex128)
    for Ud in prob.inputs:
        X = _states(full.lam, Ud[:N] @ full.B.T).reshape(-1, n)
        Pd += X.T @ X.conj()
    Pd = 0.5 * (Pd + Pd.conj().T) / N
    rhs = 0.5 * full.kappa**2 * (full.C.conj().T @ full.C)
    if full.M is not None:
        rhs = rhs + np.einsum("jab,bc,jcd->ad", full.M, Pd.conj(), full.M, optimize=True)
    Q = rhs / (1.0 - np.conj(full.lam)[:, None] * full.lam[None, :])
    return Pd, 0.5 * (Q + Q.conj().T)


def data_balanced_start(full: HalfModes, prob: OutputFitProblem, q: int) -> HalfModes | None:
    r"""Square-root balanced truncation of the full unit with the data Gramians (:func:`data_gramians`) to
    q complex modes, re-diagonalised: :math:`\hat A = W^H \Lambda V = T\,\mathrm{diag}(\hat\lambda)T^{-1}`,
    :math:`\hat B = T^{-1}W^H B`, :math:`\hat C = C V T`, :math:`\hat M_j = T^H V^H M_j V T` (PSD when
    :math:`M_j` is), then :func:`best_readout`. None when the projected poles are not stable or the
    eigenvector basis is too ill-conditioned (condition number above 1e8) to trust."""
    Pd, Q = data_gramians(full, prob)
    Z, Y = _psd_factor(Pd), _psd_factor(Q)
    u, s, vh = np.linalg.svd(Y.conj().T @ Z)
    if q > s.size or s[q - 1] <= 1e-13 * s[0]:
        return None
    V = Z @ vh[:q].conj().T / np.sqrt(s[:q])
    W = Y @ u[:, :q] / np.sqrt(s[:q])
    mu, T = np.linalg.eig(W.conj().T @ (full.lam[:, None] * V))
    if not np.all(np.abs(mu) < 1.0) or np.linalg.cond(T) > 1e8:
        return None
    VT = V @ T
    M = None if full.M is None else np.einsum("ai,jab,bk->jik", VT.conj(), full.M, VT, optimize=True)
    red = replace(full, lam=mu, B=np.linalg.solve(T, W.conj().T @ full.B), C=full.C @ VT, M=M)
    return best_readout(red, prob)


class _Stalled(Exception):
    """Raised by the L-BFGS callback when the relative progress of J has stalled."""


def fit_outputs(full: HalfModes, start: HalfModes, prob: OutputFitProblem, rank: int | None = None,
                iters: int = 300, tol: float = 1e-10, stall: tuple[int, float] | None = (20, 1e-3)
                ) -> tuple[HalfModes, float]:
    r"""Minimise :math:`J` over :math:`(\hat\lambda, \hat B, \hat C, \hat U)` from ``start`` (L-BFGS, exact
    gradients). Returns ``(reduced unit, J)``; the start itself if the optimiser does not lower :math:`J`.

    ``stall = (k, r)``: stop once the best :math:`J` has decreased by less than the fraction r over the last
    k iterations (the relative output error then changes by less than about r/2; L-BFGS-B's own ``ftol`` is an
    absolute test for :math:`J < 1`, which the normalised J always is). None: only ``iters`` and ``tol``.
    """
    from scipy.optimize import minimize

    R = 0 if full.M is None else int(rank if rank is not None else start.n)
    shape = (start.n, start.m, start.p, R)
    theta0 = _to_theta(start, R)
    j0 = output_error(_from_theta(theta0, start, R), prob)
    best = [np.inf, theta0]
    history: list[float] = []

    def fun(theta):
        J, g = output_error_gradient(theta, prob, shape)
        if J < best[0]:
            best[0], best[1] = J, theta.copy()
        return J, g

    def callback(_xk):
        history.append(best[0])
        if stall is not None and len(history) > stall[0]:
            old = history[-1 - stall[0]]
            if old - history[-1] <= stall[1] * old:
                raise _Stalled

    try:
        minimize(fun, theta0, jac=True, method="L-BFGS-B", callback=callback,
                 options={"maxiter": int(iters), "ftol": tol, "gtol": 1e-12})
    except _Stalled:
        pass
    fit = _from_theta(best[1], start, R)
    j1 = output_error(fit, prob)
    if not np.isfinite(j1) or j1 > j0:
        return _from_theta(theta0, start, R), j0
    return fit, j1
