r"""First-order h2-optimality residuals (lqo_math.md §5) and interpolation residuals (§6).

Gramian (Wilson) form, for a full model (A, B, C, M_j) and a reduced model (Â, B̂, Ĉ, M̂_j)::

    P̂ :  Â P̂ + P̂ Â^H + B̂ B̂^H = 0                       X :  A X + X Â^H + B B̂^H = 0
    Y  :  A^H Y + Y Â - C^H Ĉ - 2 sum_j M_j X M̂_j = 0
    Q̃ :  Â^H Q̃ + Q̃ Â + Ĉ^H Ĉ + 2 sum_j M̂_j P̂ M̂_j = 0
    (discrete time: the Stein forms  Â P̂ Â^H - P̂ + ...,  A X Â^H - X + ...,  A^H Y Â - Y - ...,
     Â^H Q̃ Â - Q̃ + ...)

    continuous:  Q̃ P̂ + Y^H X = 0,      Q̃ B̂ + Y^H B = 0,   Ĉ P̂ = C X,   P̂ M̂_j P̂ = X^H M_j X
    discrete:    Q̃ Â P̂ + Y^H A X = 0,  Q̃ B̂ + Y^H B = 0,   Ĉ P̂ = C X,   P̂ M̂_j P̂ = X^H M_j X

These are half the gradients of the squared h2 error (:func:`mor_lqo.h2_error_grad`); every
stationary point of :math:`\|\Sigma - \hat\Sigma\|_{h_2}^2` (in particular every fixed point of TSIA,
LQO-TSIA and IRKA) satisfies them. :func:`h2_optimality_residuals` returns them scaled by the sizes of
the two terms, so rounding-level values (~1e-12 … 1e-9, times conditioning) mean "stationary".

Interpolation form (LTI, §6): with :math:`\hat A = X_r\,\mathrm{diag}(\hat\lambda)\,X_r^{-1}`,
:math:`\hat b_k` row k of :math:`X_r^{-1}\hat B` and :math:`\hat c_k` column k of :math:`\hat C X_r`::

    G(σ_k) b̂_k^H = Ĝ(σ_k) b̂_k^H,   ĉ_k^H G(σ_k) = ĉ_k^H Ĝ(σ_k),   ĉ_k^H G'(σ_k) b̂_k^H = ĉ_k^H Ĝ'(σ_k) b̂_k^H

at the mirror images :math:`\sigma_k = -\overline{\hat\lambda_k}` (continuous, :math:`G(s) = C(sI-A)^{-1}B`)
or :math:`\sigma_k = 1/\overline{\hat\lambda_k}` (discrete, :math:`G_a(z) = C(zI-A)^{-1}B`). In discrete
time the conditions are evaluated in the equivalent form
:math:`H(\mu) = C(I-\mu A)^{-1}B` at :math:`\mu_k = \overline{\hat\lambda_k}`
(:math:`G_a(1/\mu) = \mu H(\mu)`), which stays finite for :math:`\hat\lambda_k = 0` (Markov-parameter
matching), with :math:`H'(\mu) = C(I-\mu A)^{-1}A(I-\mu A)^{-1}B`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..equations import factor, solve_factored
from ..errors import ShapeError, UnstableSystemError
from ..gramians import adjoint_factor, check_stable, schur_factor
from ..systems import LQOSystem

__all__ = [
    "OptimalityResiduals",
    "InterpolationResiduals",
    "h2_optimality_residuals",
    "interpolation_residuals",
]


class OptimalityResiduals(NamedTuple):
    r"""Scaled first-order optimality residuals (lqo_math.md §5), each in [0, 1].

    ``A``: :math:`\|\tilde Q\hat P + Y^HX\| / (\|\tilde Q\|\|\hat P\| + \|Y\|\|X\|)` (discrete:
    :math:`\|\tilde Q\hat A\hat P + Y^HAX\| / (\|\tilde Q\|\|\hat A\|\|\hat P\| + \|Y\|\|AX\|)`);
    ``B``: :math:`\|\tilde Q\hat B + Y^HB\| / (\|\tilde Q\|\|\hat B\| + \|Y\|\|B\|)`;
    ``C``: :math:`\|\hat C\hat P - CX\| / (\|\hat C\|\|\hat P\| + \|C\|\|X\|)`;
    ``M``: :math:`\max_j \|\hat P\hat M_j\hat P - X^HM_jX\| / (\|\hat P\|^2\|\hat M_j\| + \|X\|^2\|M_j\|)`
    (0 for LTI pairs). Spectral norms.
    """

    A: float
    B: float
    C: float
    M: float

    @property
    def max(self) -> float:
        """Largest of the four residuals."""
        return float(max(self.A, self.B, self.C, self.M))


class InterpolationResiduals(NamedTuple):
    """Relative tangential interpolation residuals at the mirror images (lqo_math.md §6).

    ``right``, ``left``, ``hermite``: arrays (r,) with the relative mismatch of
    :math:`G(\\sigma_k)\\hat b_k^H`, :math:`\\hat c_k^H G(\\sigma_k)` and
    :math:`\\hat c_k^H G'(\\sigma_k)\\hat b_k^H` (each divided by the larger of the two sides);
    ``points``: the interpolation points :math:`\\sigma_k` (``inf`` for a discrete pole at 0).
    """

    right: np.ndarray
    left: np.ndarray
    hermite: np.ndarray
    points: np.ndarray

    @property
    def max(self) -> float:
        return float(max(np.max(self.right), np.max(self.left), np.max(self.hermite)))


def _n2(X) -> float:
    X = np.asarray(X)
    if X.size == 0:
        return 0.0
    return float(np.linalg.norm(X, 2)) if X.ndim == 2 else float(np.linalg.norm(X))


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return float(num / den)


def _work(sys: LQOSystem) -> LQOSystem:
    from .tsia import work_system

    return work_system(sys)[0]


def h2_optimality_residuals(sys: LQOSystem, rom: LQOSystem) -> OptimalityResiduals:
    r"""Scaled first-order h2-optimality residuals of ``rom`` as an approximation of ``sys``.

    Parameters
    ----------
    sys : LQOSystem
        Full model (n states), asymptotically stable; conjugate-pair systems are evaluated through
        their exact real realisation.
    rom : LQOSystem
        Reduced model (r states), asymptotically stable, same time domain, m and p. The feed-through
        is not part of the conditions (reducers keep ``D``).

    Returns
    -------
    OptimalityResiduals
        See the class docstring. A stationary point of the squared h2 error has all four residuals
        at rounding level; balanced truncation or arbitrary ROMs give O(1e-3 … 1) values.

    Raises
    ------
    UnstableSystemError
        If ``sys`` or ``rom`` is unstable.

    Notes
    -----
    Cost: n x r (Stein–)Sylvester solves with the cached Schur factor of ``sys`` plus O(p n^2 r).
    """
    if not isinstance(sys, LQOSystem) or not isinstance(rom, LQOSystem):
        raise TypeError("sys and rom must be LQOSystem objects")
    sys.compatible_with(rom)
    s = _work(sys)
    check_stable(s, "optimality residuals")
    check_stable(rom, "optimality residuals (reduced model)")
    disc = s.is_discrete
    fa = schur_factor(s, complex_form=disc)
    fr = factor(rom.A) if not rom.is_diagonal else schur_factor(rom)
    Ah = rom.A
    real = not (s.is_complex or rom.is_complex)

    def solve(f1, f2, F):
        Z = solve_factored(f1, f2, F, disc)
        return np.ascontiguousarray(Z.real) if real and np.iscomplexobj(Z) else Z

    Ph = solve(fr, fr, rom.B @ rom.B.conj().T)
    Ph = (Ph + Ph.conj().T) / 2
    X = solve(fa, fr, s.B @ rom.B.conj().T)
    R = s.C.conj().T @ rom.C
    Rt = rom.C.conj().T @ rom.C
    if s.M is not None and rom.M is not None:
        R = R + 2 * sum(Mj @ X @ Mhj for Mj, Mhj in zip(s.M, rom.M))
    if rom.M is not None:
        Rt = Rt + 2 * sum(Mhj @ Ph @ Mhj for Mhj in rom.M)
    Y = solve(adjoint_factor(fa), adjoint_factor(fr), -R)
    Qt = solve(adjoint_factor(fr), adjoint_factor(fr), Rt)
    Qt = (Qt + Qt.conj().T) / 2

    AX = s.lam[:, None] * X if s.is_diagonal else s.A @ X
    nQ, nP, nY, nX = _n2(Qt), _n2(Ph), _n2(Y), _n2(X)
    if disc:
        rA = _ratio(_n2(Qt @ Ah @ Ph + Y.conj().T @ AX), nQ * _n2(Ah) * nP + nY * _n2(AX))
    else:
        rA = _ratio(_n2(Qt @ Ph + Y.conj().T @ X), nQ * nP + nY * nX)
    rB = _ratio(_n2(Qt @ rom.B + Y.conj().T @ s.B), nQ * _n2(rom.B) + nY * _n2(s.B))
    rC = _ratio(_n2(rom.C @ Ph - s.C @ X), _n2(rom.C) * nP + _n2(s.C) * nX)
    rM = 0.0
    if s.M is not None or rom.M is not None:
        p = s.p
        for j in range(p):
            Mj = s.M[j] if s.M is not None else None
            Mhj = rom.M[j] if rom.M is not None else None
            lhs = Ph @ Mhj @ Ph if Mhj is not None else np.zeros_like(Ph)
            rhs = X.conj().T @ Mj @ X if Mj is not None else np.zeros_like(Ph)
            den = (nP**2 * _n2(Mhj) if Mhj is not None else 0.0) + (
                nX**2 * _n2(Mj) if Mj is not None else 0.0)
            rM = max(rM, _ratio(_n2(lhs - rhs), den))
    return OptimalityResiduals(rA, rB, rC, rM)


def interpolation_residuals(sys: LQOSystem, rom: LQOSystem) -> InterpolationResiduals:
    r"""Tangential Hermite interpolation residuals of an LTI reduced model (lqo_math.md §6).

    Parameters
    ----------
    sys, rom : LQOSystem
        LTI full and reduced models (quadratic outputs must be absent or zero), same time domain.
        ``rom`` must be diagonalisable with simple poles.

    Returns
    -------
    InterpolationResiduals
        Relative residuals per reduced pole. An h2-optimal ROM (IRKA/TSIA fixed point) has all of
        them at rounding level times the conditioning of the eigenvectors of Â.

    Raises
    ------
    ShapeError
        If a system has non-zero quadratic outputs (use :func:`h2_optimality_residuals`).

    Notes
    -----
    Each point costs one dense solve with the full model (O(n^3); diagonal systems O(n)); meant for
    tests and diagnostics, not for large n.
    """
    if not isinstance(sys, LQOSystem) or not isinstance(rom, LQOSystem):
        raise TypeError("sys and rom must be LQOSystem objects")
    sys.compatible_with(rom)
    for s_, name in ((sys, "sys"), (rom, "rom")):
        if s_.M is not None and np.any(s_.M != 0):
            raise ShapeError(f"{name} has quadratic outputs; the interpolation conditions of §6 "
                             "are for LTI systems (use h2_optimality_residuals)")
    disc = sys.is_discrete
    lam, Xr = np.linalg.eig(rom.A)
    if np.linalg.cond(Xr) > 1e12:
        raise UnstableSystemError("the reduced state matrix is (numerically) defective")
    bh = np.linalg.solve(Xr, rom.B)  # rows b_k
    ch = rom.C @ Xr  # columns c_k
    r = lam.size
    right, left, herm = np.zeros(r), np.zeros(r), np.zeros(r)
    points = np.empty(r, complex)
    for k in range(r):
        b = bh[k].conj()  # b_k^H as a column
        c = ch[:, k]
        if disc:
            mu = np.conj(lam[k])
            points[k] = np.inf if mu == 0 else 1 / mu
        else:
            points[k] = -np.conj(lam[k])
        vals = []
        for s_ in (sys, rom):
            shift = {"mu": mu} if disc else {"sigma": points[k]}
            z = _shifted_solve(s_, s_.B @ b, adjoint=False, **shift)
            w = _shifted_solve(s_, s_.C.conj().T @ c, adjoint=True, **shift)
            if disc:  # c^H H'(mu) b = w^H A z
                d = w.conj() @ (s_.lam * z if s_.is_diagonal else s_.A @ z)
            else:  # c^H G'(sigma) b = -w^H z
                d = -(w.conj() @ z)
            vals.append((s_.C @ z, w.conj() @ s_.B, d))
        (g1, g2, g3), (h1, h2, h3) = vals
        right[k] = _rel(g1, h1)
        left[k] = _rel(g2, h2)
        herm[k] = _rel(g3, h3)
    return InterpolationResiduals(right, left, herm, points)


def _rel(a, b) -> float:
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    den = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    return 0.0 if den == 0 else float(np.linalg.norm(a - b) / den)


def _shifted_solve(s: LQOSystem, f, *, sigma=None, mu=None, adjoint: bool) -> np.ndarray:
    r"""Solve :math:`K z = f` with :math:`K = \sigma I - A` (continuous) or :math:`K = I - \mu A`
    (discrete); ``adjoint=True`` solves with :math:`K^H`. Dense LU (O(n^3)) or elementwise (diagonal)."""
    if s.is_diagonal:
        d = (sigma - s.lam) if mu is None else (1 - mu * s.lam)
        return f / (np.conj(d) if adjoint else d)
    n = s.n
    K = (sigma * np.eye(n) - s.A) if mu is None else (np.eye(n) - mu * s.A)
    return np.linalg.solve(K.conj().T if adjoint else K, f)
