r"""First-order h2-optimality residuals (docs/theory.md §5) and interpolation residuals (§6).

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
from ..errors import NotASystemError, UnstableSystemError
from ..gramians import adjoint_factor, check_stable, schur_factor
from ..systems import LQOSystem

__all__ = [
    "OptimalityResiduals",
    "InterpolationResiduals",
    "h2_optimality_residuals",
    "interpolation_residuals",
]


class OptimalityResiduals(NamedTuple):
    r"""Scaled first-order optimality residuals (docs/theory.md §5), each in [0, 1].

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
    """Relative tangential interpolation residuals at the mirror images (docs/theory.md §6, §7.5).

    ``right``, ``left``, ``hermite``, ``quadratic``: arrays (r,), the relative mismatch of each
    condition at pole k (see :func:`interpolation_residuals`; ``quadratic`` is 0 for LTI pairs);
    ``points``: the interpolation points (``inf`` for a discrete reduced pole at 0).
    """

    right: np.ndarray
    left: np.ndarray
    hermite: np.ndarray
    quadratic: np.ndarray
    points: np.ndarray

    @property
    def max(self) -> float:
        """Largest residual over all conditions and poles."""
        return float(max(np.max(self.right), np.max(self.left), np.max(self.hermite),
                         np.max(self.quadratic)))


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
        raise NotASystemError("sys and rom must be LQOSystem objects")
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
    r"""Tangential (Hermite) interpolation residuals of a reduced model (docs/theory.md §6, §7.5).

    With :math:`\hat A = X_r\,\mathrm{diag}(\hat\lambda)\,X_r^{-1}`, directions
    :math:`b_k = (	ext{row } k 	ext{ of } X_r^{-1}\hat B)^H`, :math:`c_k = 	ext{column } k` of
    :math:`\hat C X_r`, quadratic tangents :math:`Q_j = X_r^H\hat M_jX_r` and the resolvent
    :math:`K(\sigma) = \sigma I - A` (continuous, :math:`\sigma_k = -\overline{\hat\lambda_k}`) or
    :math:`K = I - \mu A` (discrete, :math:`\mu_k = \overline{\hat\lambda_k}`)::

        V_k = K_k^{-1} B b_k                 l_k = C^H c_k + 2 sum_j M_j (V Q_j)[:, k]     w_k = K_k^{-H} l_k
        right     C V_k         = Ĉ V̂_k                                   (condition (i))
        quadratic V_i^H M_j V_k = V̂_i^H M̂_j V̂_k   for all i, k, j          (condition (ii))
        left      w_k^H B       = ŵ_k^H B̂
        hermite   w_k^H V_k     = ŵ_k^H V̂_k        (continuous; = -c^H G'(σ) b for LTI)
                  w_k^H A V_k   = ŵ_k^H Â V̂_k      (discrete; = c^H H'(μ) b for LTI)

    (hats: the same with the reduced matrices). For LTI systems these are the Meier–Luenberger
    conditions of §6 at the mirror images; for LQO systems (i)–(iii) of LQO-IRKA (§7.5) in complex
    form (the real-data form of the reference uses transposes; for real symmetric M_j the
    symmetric sum in (iii) equals the factor 2 here).

    Parameters
    ----------
    sys, rom : LQOSystem
        Full and reduced model, same time domain, m and p. ``rom`` must be diagonalisable.

    Returns
    -------
    InterpolationResiduals
        Relative residuals per reduced pole (quadratic: per pole k, the maximum over i and j). An
        h2-optimal ROM (IRKA/TSIA fixed point) has all of them at rounding level times the
        conditioning of the eigenvectors of Â; generic ROMs (e.g. balanced truncation) do not.

    Raises
    ------
    UnstableSystemError
        If Â is numerically defective (eigenvector condition number > 1e12).

    Notes
    -----
    Each point costs one dense LU with the full model (O(n^3); diagonal systems O(n)); meant for
    tests and diagnostics, not for large n.
    """
    if not isinstance(sys, LQOSystem) or not isinstance(rom, LQOSystem):
        raise NotASystemError("sys and rom must be LQOSystem objects")
    sys.compatible_with(rom)
    sys = _work(sys)
    disc = sys.is_discrete
    lam, Xr = np.linalg.eig(rom.A)
    if np.linalg.cond(Xr) > 1e12:
        raise UnstableSystemError("the reduced state matrix is (numerically) defective")
    bdir = np.linalg.solve(Xr, rom.B).conj()  # row k = b_k
    cdir = rom.C @ Xr  # column k = c_k
    r = lam.size
    p = sys.p
    Mh = rom.M if rom.M is not None else np.zeros((p, r, r))
    Qs = np.einsum("ak,jab,bl->jkl", Xr.conj(), Mh, Xr)
    if disc:
        points = np.array([np.inf if z == 0 else 1 / np.conj(z) for z in lam], complex)
        shifts = [{"mu": np.conj(z)} for z in lam]
    else:
        points = -np.conj(lam)
        shifts = [{"sigma": z} for z in points]

    def data(s_):
        M = s_.M if s_.M is not None else np.zeros((p, s_.n, s_.n))
        V = np.column_stack([_shifted_solve(s_, s_.B @ bdir[k], adjoint=False, **shifts[k])
                             for k in range(r)])
        MV = np.stack([Mj @ V for Mj in M])  # (p, n, r)
        quad = np.einsum("na,jnb->jab", V.conj(), MV)  # V_i^H M_j V_k
        L = s_.C.conj().T @ cdir + 2 * np.einsum("jnr,jrk->nk", MV, Qs)
        W = np.column_stack([_shifted_solve(s_, L[:, k], adjoint=True, **shifts[k])
                             for k in range(r)])
        AV = (s_.lam[:, None] * V if s_.is_diagonal else s_.A @ V) if disc else V
        return (s_.C @ V, W.conj().T @ s_.B, np.einsum("nk,nk->k", W.conj(), AV), quad)

    (g1, g2, g3, g4), (h1, h2, h3, h4) = data(sys), data(rom)
    right = np.array([_rel(g1[:, k], h1[:, k]) for k in range(r)])
    left = np.array([_rel(g2[k], h2[k]) for k in range(r)])
    herm = np.array([_rel(g3[k], h3[k]) for k in range(r)])
    scale = max(float(np.max(np.abs(g4), initial=0.0)), float(np.max(np.abs(h4), initial=0.0)))
    quad = (np.max(np.abs(g4 - h4), axis=(0, 1)) / scale) if scale > 0 else np.zeros(r)
    return InterpolationResiduals(right, left, herm, quad, points)


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
