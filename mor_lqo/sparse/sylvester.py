r"""Sparse–dense Sylvester equations for cross Gramians (n x r).

.. math::

    A X + E X \hat A^H + B \hat B^H = 0, \qquad X \in \mathbb C^{n\times r},

with sparse A, E (n, n) and a small dense :math:`\hat A` (r, r). With the complex Schur form
:math:`\hat A^H = U T U^H` and :math:`Y = XU`, the equation becomes :math:`AY + EYT + F = 0`,
:math:`F = B\hat B^HU`, which is solved column by column (T upper triangular):

.. math::

    (A + T_{kk}E)\, y_k = -\Big(f_k + E\sum_{i<k} y_i T_{ik}\Big), \qquad k = 1, \dots, r,

one sparse factorisation per reduced pole (:class:`~mor_lqo.sparse.system.ShiftedSolver`; for real
A, E the factorisation of a shift is reused for its conjugate, which the Schur form puts next to it).
Then :math:`X = YU^H` (real for real data). This is the generalized form of the dense
:func:`mor_lqo.gramians.cross_gramian` (E = I gives the same equation).

Discrete time (:func:`sparse_dense_stein`): the Stein–Sylvester equation
:math:`AX\hat A^H - EX + B\hat B^H = 0` of :math:`Ex_k = Ax_{k-1} + Bu_k` (the standard form's
:math:`\tilde AX\hat A^H - X + \tilde B\hat B^H = 0` multiplied by E) becomes :math:`AYT - EY + F = 0`,

.. math::

    (A - T_{kk}^{-1}E)\, y_k = -T_{kk}^{-1}\Big(f_k + A\sum_{i<k} y_i T_{ik}\Big),

the pencils :math:`A - E/\bar{\hat\lambda}_k` (a reduced pole at 0 gives :math:`-Ey_k = \ldots`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..errors import ShapeError
from .system import SparseLQOSystem

__all__ = ["sparse_dense_sylvester", "sparse_dense_stein"]


def sparse_dense_sylvester(sys: SparseLQOSystem, Ahat: np.ndarray, F: np.ndarray, *,
                           adjoint: bool = False) -> np.ndarray:
    r"""Solve :math:`AX + EX\hat A^H + F = 0` (adjoint: :math:`A^HX + E^HX\hat A + F = 0`) for X (n, r).

    Parameters
    ----------
    sys : SparseLQOSystem
        Supplies A, E and the shifted solver.
    Ahat : ndarray, shape (r, r)
        Small dense matrix; :math:`A + \bar\lambda E` must be nonsingular for its eigenvalues
        :math:`\lambda` (true when both pencils are stable).
    F : ndarray, shape (n, r)
        Right-hand side, e.g. :math:`B\hat B^H`.
    adjoint : bool
        Solve the adjoint equation (Schur form of :math:`\hat A` instead of :math:`\hat A^H`; the
        columns need :math:`(A^H + \lambda_kE^H) = (A + \bar\lambda_kE)^H`, the same sparse factors
        as the primal equation).

    Returns
    -------
    X : ndarray, shape (n, r)
        Real when A, E, Ahat and F are real.
    """
    real, T, U = _schur_of(sys, Ahat, F, adjoint)
    r = T.shape[0]
    G = F @ U
    Y = np.zeros((sys.n, r), dtype=complex)
    solver = sys.solver()
    for k in range(r):
        rhs = -G[:, k]
        if k:
            rhs = rhs - sys.E_matvec(Y[:, :k] @ T[:k, k], adjoint)
        Y[:, k] = solver.solve(T[k, k], rhs[:, None], adjoint=adjoint)[:, 0]
    X = Y @ U.conj().T
    return X.real if real else X


def _schur_of(sys: SparseLQOSystem, Ahat: np.ndarray, F: np.ndarray, adjoint: bool):
    """(real, T, U): complex Schur form of Â^H (primal) or Â (adjoint), conjugate pairs adjacent."""
    Ahat = np.asarray(Ahat)
    r = Ahat.shape[0]
    if Ahat.shape != (r, r) or F.shape != (sys.n, r):
        raise ShapeError(f"Ahat must be (r, r) and F (n, r) = ({sys.n}, {r}); got {Ahat.shape}, {F.shape}")
    real = not sys.is_complex and not np.iscomplexobj(Ahat) and not np.iscomplexobj(F)
    K = Ahat if adjoint else Ahat.conj().T
    if real:
        Tr, Ur = sla.schur(K, output="real")
        T, U = sla.rsf2csf(Tr, Ur)  # conjugate pairs adjacent on the diagonal
    else:
        T, U = sla.schur(K.astype(complex), output="complex")
    return real, T, U


def sparse_dense_stein(sys: SparseLQOSystem, Ahat: np.ndarray, F: np.ndarray, *,
                       adjoint: bool = False) -> np.ndarray:
    r"""Solve :math:`AX\hat A^H - EX + F = 0` (adjoint: :math:`A^HX\hat A - E^HX + F = 0`) for X (n, r).

    The discrete-time counterpart of :func:`sparse_dense_sylvester` (module docstring); the primal and
    adjoint equations use the same sparse factorisations, of :math:`A - E/\bar{\hat\lambda}_k`.

    Parameters
    ----------
    sys : SparseLQOSystem
        Supplies A, E and the shifted solver.
    Ahat : ndarray, shape (r, r)
        Small dense matrix; :math:`\lambda\bar\mu \ne 1` for all eigenvalues λ of the pencil (A, E) and
        μ of Â (true when both are Schur stable).
    F : ndarray, shape (n, r)
    adjoint : bool

    Returns
    -------
    X : ndarray, shape (n, r)
        Real when A, E, Ahat and F are real.
    """
    import scipy.sparse.linalg as spla

    real, T, U = _schur_of(sys, Ahat, F, adjoint)
    r = T.shape[0]
    G = F @ U
    Y = np.zeros((sys.n, r), dtype=complex)
    A = sys.A.conj().T.tocsc() if adjoint else sys.A
    solver = sys.solver()
    for k in range(r):
        rhs = -G[:, k]
        if k:
            rhs = rhs - A @ (Y[:, :k] @ T[:k, k])
        t = T[k, k]
        if t == 0:  # -E y = rhs
            E = sys.E
            Y[:, k] = -rhs if E is None else -spla.spsolve((E.conj().T if adjoint else E).tocsc(), rhs)
            continue
        Y[:, k] = solver.solve(-1.0 / t, (rhs / t)[:, None], adjoint=adjoint)[:, 0]
    X = Y @ U.conj().T
    return X.real if real else X
