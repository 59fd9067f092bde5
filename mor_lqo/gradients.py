r"""Squared h2 error and its gradient with respect to the reduced model (docs/theory.md §4).

Complex (Wirtinger) convention: for a complex parameter Z,
:math:`\nabla_Z J := \partial J/\partial\,\mathrm{Re} Z + i\,\partial J/\partial\,\mathrm{Im} Z
= 2\,\partial J/\partial \bar Z`, so that
:math:`J(Z + \varepsilon\Delta) = J(Z) + \varepsilon\,\mathrm{Re\,tr}(\nabla_Z J^H \Delta) + O(\varepsilon^2)`
and steepest descent is :math:`Z \leftarrow Z - \alpha \nabla_Z J`. For ``J = |z|^2`` the gradient
is ``2 z``. For real ROMs the gradients are real (the ordinary gradient).

Continuous time::

    A^ P^ + P^ A^^H + B^ B^^H = 0                 A X + X A^^H + B B^^H = 0
    A^H Y + Y A^ - C^H C^ - 2 sum_j M_j X M^_j = 0
    A^^H Q~ + Q~ A^ + C^^H C^ + 2 sum_j M^_j P^ M^_j = 0
    grad_A^ = 2 (Q~ P^ + Y^H X)      grad_B^ = 2 (Q~ B^ + Y^H B)
    grad_C^ = 2 (C^ P^ - C X)        grad_M^j = 2 (P^ M^_j P^ - X^H M_j X)

Discrete time: Stein versions of the same equations and grad_A^ = 2 (Q~ A^ P^ + Y^H A X).
The factor 2 on the quadratic terms of Y and Q~ is essential (it is *not* in the norm Gramians).
For a diagonal ROM the gradient with respect to its eigenvalues is the diagonal of grad_A^.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .equations import solve_factored
from .errors import ShapeError
from .gramians import (
    _factor_for,
    adjoint_factor,
    check_stable,
    controllability_gramian,
    cross_gramian,
)
from .norms import h2_norm_parts
from .systems import LQOSystem


class H2Gradient(NamedTuple):
    """Squared h2 error ``J`` and its gradients with respect to the ROM's matrices.

    ``A`` is the full (r, r) gradient, ``lam`` its diagonal (for diagonal ROMs; else None),
    ``M`` is None when the ROM has no quadratic part.
    """

    J: float
    A: np.ndarray
    lam: np.ndarray | None
    B: np.ndarray
    C: np.ndarray
    M: np.ndarray | None


def _hermitian(X):
    return (X + X.conj().T) / 2


def h2_error_grad(sys: LQOSystem, rom: LQOSystem) -> H2Gradient:
    r"""Squared h2 error :math:`J = \|\Sigma - \hat\Sigma\|^2` and its gradient w.r.t. the ROM.

    Parameters
    ----------
    sys : LQOSystem
        Full model (n states), dense or diagonal.
    rom : LQOSystem
        Reduced model (r states), dense or diagonal; D is treated as fixed.

    Returns
    -------
    H2Gradient
        ``J`` is *not* clamped at zero (it is a smooth function of the ROM); ``A`` (r, r),
        ``lam`` (r,) for diagonal ROMs, ``B`` (r, m), ``C`` (p, r), ``M`` (p, r, r) Hermitian.
    """
    sys.compatible_with(rom)
    check_stable(sys)
    check_stable(rom)
    disc = sys.is_discrete
    dD = sys.D - rom.D
    if not disc and np.any(dD != 0):
        raise ShapeError("continuous time: the ROM must keep the full model's D (else J = inf)")

    Phat = controllability_gramian(rom)
    X = cross_gramian(sys, rom)
    fa, fr = _factor_for(sys), _factor_for(rom)
    Ah = rom.A

    R = sys.C.conj().T @ rom.C
    Rt = rom.C.conj().T @ rom.C
    if sys.M is not None and rom.M is not None:
        R = R + 2 * (sys.M @ X @ rom.M).sum(axis=0)
    if rom.M is not None:
        Rt = Rt + 2 * (rom.M @ Phat @ rom.M).sum(axis=0)
    # Y: A^H Y + Y A^ - R = 0  (solver form: A^H Y + Y (A^^H)^H + (-R) = 0)
    Y = solve_factored(adjoint_factor(fa), adjoint_factor(fr), -R, disc)
    Qt = _hermitian(solve_factored(adjoint_factor(fr), adjoint_factor(fr), Rt, disc))

    AX = sys.lam[:, None] * X if sys.is_diagonal else sys.A @ X
    if disc:
        gA = 2 * (Qt @ Ah @ Phat + Y.conj().T @ AX)
    else:
        gA = 2 * (Qt @ Phat + Y.conj().T @ X)
    gB = 2 * (Qt @ rom.B + Y.conj().T @ sys.B)
    gC = 2 * (rom.C @ Phat - sys.C @ X)
    gM = None
    if rom.M is not None:
        XMX = (X.conj().T @ sys.M @ X if sys.M is not None
               else np.zeros_like(rom.M))
        gM = 2 * (Phat @ rom.M @ Phat - XMX)
        gM = (gM + np.conj(np.swapaxes(gM, 1, 2))) / 2

    # J = ||S||^2 + ||S^||^2 - 2 <S, S^>, unclamped
    nf = h2_norm_parts(sys).total
    nr_lin = float(np.real(np.vdot(rom.C, rom.C @ Phat)))
    nr_quad = 0.0
    if rom.M is not None:
        PM = np.einsum("ab,jbc->jac", Phat, rom.M)
        nr_quad = float(np.real(np.einsum("jab,jba->", PM, PM)))
    inner = float(np.real(np.vdot(rom.C, sys.C @ X)))
    if sys.M is not None and rom.M is not None:
        inner += float(np.real(np.vdot(X, (sys.M @ X @ rom.M).sum(axis=0))))
    J = nf + nr_lin + nr_quad - 2 * inner
    if disc:
        Dh = rom.D
        J += float(np.real(np.vdot(Dh, Dh)))
        J -= 2 * float(np.real(np.vdot(sys.D, Dh)))
        if sys.convention == "current":
            CBh = rom.C @ rom.B
            J += 2 * float(np.real(np.vdot(CBh, Dh)))
            J -= 2 * float(np.real(np.vdot(sys.C @ sys.B, Dh) + np.vdot(sys.D, CBh)))
            # nf already contains the full model's own D terms; the ROM's D cross terms:
            gC = gC - 2 * dD @ rom.B.conj().T
            gB = gB - 2 * rom.C.conj().T @ dD
    real_rom = not rom.is_complex
    if real_rom:
        gA, gB, gC = gA.real, gB.real, gC.real
        if gM is not None:
            gM = gM.real
    glam = np.diag(gA).copy() if rom.is_diagonal else None
    return H2Gradient(float(J), gA, glam, gB, gC, gM)


__all__ = ["H2Gradient", "h2_error_grad"]
