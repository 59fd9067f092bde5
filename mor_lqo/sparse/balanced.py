r"""Square-root balanced truncation (BT) and LQO-BT of sparse systems from low-rank Gramian factors.

::

    P ~ Z_P Z_P^H,  Q ~ Z_Q Z_Q^H                 (LR-ADI, mor_lqo.sparse.gramians; Q is the LQO
                                                    observability Gramian when M is present)
    Z_P^H E^H Z_Q = U S Y^H                         (small SVD, k_P x k_Q; sigma = diag(S))
    V = Z_P U_r S_r^{-1/2},  W = Z_Q Y_r S_r^{-1/2}   (W^H E V = I_r)
    A^ = W^H A V,  B^ = W^H B,  C^ = C V,  M^_j = V^H M_j V,  D^ = D

(with :math:`W^HEV` inverted explicitly to remove rounding). ``E^H Q E`` is the observability Gramian
of the standard form :math:`(E^{-1}A, E^{-1}B)`, so the singular values are its (LQO) Hankel singular
values and the ROM equals the dense :func:`mor_lqo.balanced_truncation` of ``sys.to_dense()`` up to a
state-space transformation and the LR-ADI accuracy. The ROM is a dense :class:`~mor_lqo.LQOSystem`.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.linalg as sla

from .._validation import check_order
from ..errors import ProjectionBreakdownError, UnstableSystemError
from ..reduction.balanced import UnstableROMWarning, _check_hsv_gap
from ..reduction.result import ReductionResult
from ..systems import LQOSystem
from .gramians import DEFAULT_TOL, controllability_factor, observability_factor
from .norms import _check, _dense, h2_error, h2_norm, use_dense
from .system import SparseLQOSystem, as_sparse_system

__all__ = ["balanced_truncation", "project"]


def orthonormal_basis(X: np.ndarray, what: str) -> np.ndarray:
    """Orthonormal basis of the columns of X (thin QR); ``ProjectionBreakdownError`` naming ``what`` when X is
    numerically rank deficient (a diagonal entry of R below 1e-13 times the largest) or not finite."""
    Q, R = np.linalg.qr(X)
    d = np.abs(np.diag(R))
    if not np.all(np.isfinite(d)) or d.min() <= 1e-13 * d.max():
        raise ProjectionBreakdownError(f"{what} is numerically rank deficient")
    return Q


def project(sys: SparseLQOSystem, V: np.ndarray, W: np.ndarray) -> LQOSystem:
    r"""Petrov–Galerkin ROM :math:`(\hat E^{-1}W^HAV, \hat E^{-1}W^HB, CV, V^HM_jV, D)`, :math:`\hat E = W^HEV`.

    The feed-through is kept (:math:`\hat D = D`, as in the dense reducers of :mod:`mor_lqo.reduction`);
    discrete ROMs are in the "current" convention, like the sparse system.
    """
    Wh = W.conj().T
    Er = Wh @ sys.E_matvec(V)
    lu = sla.lu_factor(Er, check_finite=False)
    Ar = sla.lu_solve(lu, Wh @ (sys.A @ V), check_finite=False)
    Br = sla.lu_solve(lu, Wh @ np.asarray(sys.B), check_finite=False)
    Cr = np.asarray(sys.C) @ V
    Mr = None
    if sys.M is not None:
        Mr = np.stack([V.conj().T @ (Mj @ V) for Mj in sys.M])
        Mr = (Mr + np.conj(np.swapaxes(Mr, 1, 2))) / 2
    return LQOSystem(Ar, Br, Cr, Mr, D=sys.D, dt=sys.dt, convention="current")


LQO_BT_TOL = 1e-12  # default LR-ADI tolerance of the LQO observability factor in LQO-BT ...
LQO_BT_P_FACTOR = 100  # ... whose controllability factor is computed with tol / 100 (at least 1e-14)


def balanced_truncation(sys, r: int, *, method: str = "auto", tol: float | None = None, maxiter: int = 500,
                        compute_error: bool = True) -> ReductionResult:
    r"""(LQO) balanced truncation of a sparse system to order r.

    Parameters
    ----------
    sys : SparseLQOSystem or LQOSystem
        Asymptotically stable, continuous or discrete time (Cayley map). The ROM keeps D (the
        reduction concerns the strictly proper part; with D != 0 in continuous time ``h2_norm`` is
        ``inf`` and ``h2_error`` is the finite error of the strictly proper parts).
    r : int
        Reduced order, ``1 <= r < n`` and at most the rank of the low-rank factors.
    method : {"auto", "dense", "lowrank"}
        ``"auto"``: dense :func:`mor_lqo.balanced_truncation` of ``sys.to_dense()`` for small n
        (:func:`mor_lqo.sparse.norms.use_dense`), else the low-rank square-root method.
    tol, maxiter
        LR-ADI relative residual tolerance and step limit. Default: 1e-10 for both factors of an LTI
        system; for LQO systems :data:`LQO_BT_TOL` = 1e-12 for the observability factor and
        ``tol / 100`` (at least 1e-14) for the controllability factor, which enters its right-hand
        side. On the non-normal AdvecDiff model the former 1e-10 / 1e-11 left the ROM 3.3e-7 (n = 3000)
        and 1.3e-5 (n = 10^4) away from the converged one; 1e-12 / 1e-14 gives 2.1e-9 and 2.8e-10
        (relative h2 distance) for about 1.4x the time (docs/sparse.md).
    compute_error : bool
        Compute the exact h2 error (:func:`mor_lqo.sparse.h2_error`, an (n + r) LR-ADI); else
        ``h2_error`` is NaN.

    Returns
    -------
    ReductionResult
        ``rom`` (dense, order r), ``hsv``: the k = min(rank Z_P, rank Z_Q) computed (LQO) Hankel
        singular values (the leading ones are accurate; the trailing ones are limited by ``tol``),
        ``error_bound``: :math:`2\sum_{r<i\le k}\sigma_i` (LTI; the tail beyond k is omitted),
        ``info``: ``residual_P``, ``residual_Q`` (achieved relative Lyapunov residuals), ``ranks``,
        ``factorizations``, ``time_gramians``, ``time_error``, ``V``/``W`` shapes are (n, r).

    Raises
    ------
    OrderError
        r invalid or above the numerical rank of the computed Hankel singular values.
    NumericalAccuracyError, UnstableSystemError
        LR-ADI did not converge.
    """
    sys = _check(sys)
    r = check_order(r, sys.n if isinstance(sys, SparseLQOSystem) else sys.order)
    if use_dense(sys, method):
        from ..reduction.balanced import balanced_truncation as dense_bt

        return dense_bt(_dense(sys), r)
    sys = as_sparse_system(sys)
    t0 = time.perf_counter()
    lqo = sys.M is not None
    if tol is None:
        tol = LQO_BT_TOL if lqo else DEFAULT_TOL
    fP = controllability_factor(sys, tol=max(tol / LQO_BT_P_FACTOR, 1e-14) if lqo else tol, maxiter=maxiter)
    fQ = observability_factor(sys, tol=tol, maxiter=maxiter, p_tol=fP.tol if lqo else None)
    ZP, ZQ = fP.Z, fQ.Z
    U, s, Yh = np.linalg.svd(ZP.conj().T @ sys.E_matvec(ZQ, adjoint=True), full_matrices=False)
    _check_hsv_gap(s, r, s.size)  # rounding floor of the k x k SVD, not of an n x n Gramian
    isq = 1.0 / np.sqrt(s[:r])
    V = (ZP @ U[:, :r]) * isq
    W = (ZQ @ Yh[:r].conj().T) * isq
    rom = project(sys, V, W)
    t1 = time.perf_counter()
    err = float("nan")
    if compute_error:
        try:
            err = h2_error(sys, rom, method="lowrank", maxiter=maxiter)
        except UnstableSystemError:
            warnings.warn("the reduced model is unstable (its h2 error is infinite)", UnstableROMWarning,
                          stacklevel=2)
            err = float("inf")
    info = {"residual_P": fP.residual, "residual_Q": fQ.residual, "ranks": (ZP.shape[1], ZQ.shape[1]),
            "factorizations": sys.lyap_system().solver().n_factorizations, "time_gramians": t1 - t0,
            "time_error": time.perf_counter() - t1}
    return ReductionResult(rom=rom, h2_error=err, h2_norm=h2_norm(sys, method="lowrank", tol=fP.tol, maxiter=maxiter),
                           method="lqo-bt" if lqo else "bt", hsv=s,
                           error_bound=None if lqo else float(2 * np.sum(s[r:])), info=info)
