r"""First-order h2-optimality (Wilson) residuals of a ROM of a large sparse continuous-time system.

The sparse counterpart of :func:`mor_lqo.h2_optimality_residuals` (same conditions, same scaling) for
the standard form :math:`(E^{-1}A, E^{-1}B, C, M_j)`: the n x r cross Gramians come from the
sparse–dense Sylvester equations (:func:`~mor_lqo.sparse.sylvester.sparse_dense_sylvester`)

.. math::

    AX + EX\hat A^H + B\hat B^H = 0, \qquad
    A^HY + E^HY\hat A - C^H\hat C - 2\sum_j M_jX\hat M_j = 0,

so :math:`Y_s = E^HY` is the standard form's Y, and the conditions read :math:`\tilde Q\hat P + Y^HEX = 0`,
:math:`\tilde Q\hat B + Y^HB = 0`, :math:`\hat C\hat P = CX`, :math:`\hat P\hat M_j\hat P = X^HM_jX`. This
is independent of the shifted solves of :func:`mor_lqo.sparse.irka` (Schur basis of the small matrix,
block back substitution), so it checks IRKA fixed points at sizes where the dense check is too costly.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse.linalg as spla

from ..errors import InvalidArgumentError
from ..reduction.optimality import OptimalityResiduals, _n2, _ratio
from ..systems import LQOSystem
from .sylvester import sparse_dense_sylvester
from .system import as_sparse_system

__all__ = ["h2_optimality_residuals"]


def h2_optimality_residuals(sys, rom: LQOSystem) -> OptimalityResiduals:
    """Scaled first-order h2-optimality residuals of ``rom`` for a sparse continuous-time system.

    Parameters
    ----------
    sys : SparseLQOSystem or LQOSystem
        Asymptotically stable, continuous time. The feed-through is not part of the conditions (the
        reducers keep D), as in :func:`mor_lqo.h2_optimality_residuals`.
    rom : LQOSystem
        Asymptotically stable reduced model, continuous time, same m and p.

    Returns
    -------
    OptimalityResiduals
        As :func:`mor_lqo.h2_optimality_residuals` (rounding-level values mean "stationary").
    """
    sys = as_sparse_system(sys)
    if sys.is_discrete or rom.is_discrete:
        raise InvalidArgumentError("sparse h2_optimality_residuals: continuous time only")
    Ah, Bh, Ch = rom.A, rom.B, rom.C
    Mh = rom.M if rom.M is not None else None
    X = sparse_dense_sylvester(sys, Ah, np.asarray(sys.B) @ Bh.conj().T)
    F = -(np.asarray(sys.C).conj().T @ Ch)
    Rt = Ch.conj().T @ Ch
    Ph = sla.solve_continuous_lyapunov(Ah, -Bh @ Bh.conj().T)
    Ph = (Ph + Ph.conj().T) / 2
    if sys.M is not None and Mh is not None:
        for Mj, Mhj in zip(sys.M, Mh):
            F = F - 2.0 * ((Mj @ X) @ Mhj)
    if Mh is not None:
        Rt = Rt + 2 * sum(Mhj @ Ph @ Mhj for Mhj in Mh)
    Y = sparse_dense_sylvester(sys, Ah, F, adjoint=True)
    Qt = sla.solve_continuous_lyapunov(Ah.conj().T, -Rt)
    Qt = (Qt + Qt.conj().T) / 2
    EX, B = sys.E_matvec(X), np.asarray(sys.B)
    Ys, Bs = Y, B  # the standard form's Y = E^H Y and B = E^{-1} B (for the scaling)
    if sys.E is not None:
        Ys, Bs = sys.E.conj().T @ Y, spla.spsolve(sys.E.tocsc(), B).reshape(B.shape)
    nQ, nP, nY, nX = _n2(Qt), _n2(Ph), _n2(Ys), _n2(X)
    rA = _ratio(_n2(Qt @ Ph + Y.conj().T @ EX), nQ * nP + nY * nX)
    rB = _ratio(_n2(Qt @ Bh + Y.conj().T @ B), nQ * _n2(Bh) + nY * _n2(Bs))
    rC = _ratio(_n2(Ch @ Ph - np.asarray(sys.C) @ X), _n2(Ch) * nP + _n2(np.asarray(sys.C)) * nX)
    rM = 0.0
    if sys.M is not None or Mh is not None:
        for j in range(sys.p):
            lhs = Ph @ Mh[j] @ Ph if Mh is not None else 0 * Ph
            rhs = X.conj().T @ (sys.M[j] @ X) if sys.M is not None else 0 * Ph
            den = (nP**2 * _n2(Mh[j]) if Mh is not None else 0.0)
            den += nX**2 * _spnorm(sys.M[j]) if sys.M is not None else 0.0
            rM = max(rM, _ratio(_n2(lhs - rhs), den))
    return OptimalityResiduals(rA, rB, rC, rM)


def _spnorm(M) -> float:
    """2-norm of a sparse Hermitian matrix (largest-magnitude eigenvalue)."""
    if M.shape[0] <= 200:
        return _n2(M.toarray() if hasattr(M, "toarray") else np.asarray(M))
    return float(abs(spla.eigsh(M, k=1, which="LM", return_eigenvectors=False)[0]))
