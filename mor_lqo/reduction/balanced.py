r"""Square-root balanced truncation (BT) of LTI systems and LQO-BT (docs/theory.md §7.1, §7.2).

Algorithm (continuous and discrete time, real and complex data)::

    P  : A P + P A^H + B B^H = 0                      (discrete: A P A^H - P + B B^H = 0)
    Q  : A^H Q + Q A + C^H C + sum_j M_j P M_j = 0     (discrete: A^H Q A - Q + ...)
    P = Z_P Z_P^H,  Q = Z_Q Z_Q^H                      (PSD factors, never a failing Cholesky)
    Z_P^H Z_Q = U S Y^H                                (SVD; sigma = diag(S) are the HSVs)
    V = Z_P U_r S_r^{-1/2},   W = Z_Q Y_r S_r^{-1/2}   (so W^H V = I_r)
    A^ = W^H A V,  B^ = W^H B,  C^ = C V,  M^_j = V^H M_j V,  D^ = D

With quadratic outputs the LQO observability Gramian (Benner–Goyal–Pontes Duff) is used; the
singular values are then the LQO Hankel singular values. The Gramians are the cached core Gramians
(:mod:`mor_lqo.gramians`: Schur-based recursive blocked Bartels–Stewart for dense systems, Cauchy
closed forms for diagonal ones), so a later :func:`~mor_lqo.h2_error` or a second BT of the same
system reuses them. The factors are pivoted-Cholesky factors (:func:`gramian_factor`: defined for
semidefinite Gramians, rank-revealing, 10–50x cheaper than an eigendecomposition).

Conjugate-pair (Deep-SSM) systems are reduced through their exact real realisation
``sys.realify()`` (state ``[Re x; Im x]``) in real arithmetic, so the ROM is real; its Gramians are
the closed-form Gramians of the diagonal 2n form mapped by the real-realisation transformation
(no dense Lyapunov solve). :func:`mor_lqo.reduction.modal.to_conjugate_pairs` rewrites a ROM with
complex poles into the halved layout; :func:`mor_lqo.reduce_batch` does all of this for many
channels at once.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from .._validation import check_order, check_system
from ..errors import OrderError, UnstableSystemError
from ..gramian_factors import gramian_factors
from ..gramians import _memo, check_stable, controllability_gramian, observability_gramian
from ..norms import h2_error, h2_norm
from ..systems import LQOSystem
from .result import ReductionResult

__all__ = ["balanced_truncation", "gramian_factor", "HSVSplitWarning", "UnstableROMWarning"]

_SPLIT_RTOL = 1e-8  # sigma_r and sigma_{r+1} closer than this (relative) count as equal
_SMALL = 256  # up to this order, BLAS runs single-threaded (threaded OpenBLAS on tiny matrices is slow)


class _NoLimit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _single_threaded_blas(active: bool = True):
    """Single-threaded BLAS/LAPACK for small matrices (threadpoolctl, if installed).

    Threaded OpenBLAS on matrices of a few dozen rows costs far more in synchronisation than it
    saves and is pathological on busy machines (measured: SVD of a 64 x 64 matrix 100 ms threaded
    on a loaded 2-core machine; ``eigh`` of 1024 stacked 64 x 64 matrices 18.7 s vs 0.9 s).
    """
    if not active:
        return _NoLimit()
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - optional dependency
            _CONTROLLER = False
        else:
            _CONTROLLER = ThreadpoolController()  # scans the loaded libraries once
    if _CONTROLLER is False:  # pragma: no cover
        return _NoLimit()
    return _CONTROLLER.limit(limits=1, user_api="blas")


_CONTROLLER = None


class HSVSplitWarning(UserWarning):
    """The requested order splits a (numerically) repeated Hankel singular value.

    The truncated model then depends on an arbitrary choice of singular vectors and the stability
    guarantee of BT (sigma_r > sigma_{r+1}) does not apply.
    """


class UnstableROMWarning(UserWarning):
    """A reducer produced an unstable reduced model (its h2 error is reported as ``inf``)."""


def gramian_factor(X: np.ndarray) -> np.ndarray:
    r"""Low-rank factor Z with :math:`X \approx Z Z^H` of a positive semidefinite Gramian (never fails).

    Uses a *pivoted* Cholesky factorisation (LAPACK ``?pstrf``), which is defined for semidefinite
    matrices: it stops at the first pivot below :math:`\varepsilon \max_i X_{ii}`, so that
    :math:`\|X - Z Z^H\| \le n \varepsilon \max_i X_{ii}`, the rounding level of a densely
    computed Gramian. Rounding noise (including tiny negative eigenvalues) is thereby dropped and
    Z has the numerical rank k of X as its column count. If LAPACK reports an argument error or
    produces non-finite numbers, the eigen-based :func:`mor_lqo.gramians.psd_factor` is used.

    Parameters
    ----------
    X : ndarray, shape (n, n)
        Hermitian positive semidefinite matrix (real or complex); only its lower triangle is read.

    Returns
    -------
    Z : ndarray, shape (n, k)

    Notes
    -----
    Measured on a dense random n = 1000 system: 0.03 s per factor against 0.2–2 s for ``eigh``
    (busy 2-core machine), with the same agreement of the resulting Hankel singular values with
    SLICOT ``ab09ad`` (Hammarling factors) — both are limited by the accuracy of the dense Gramian.
    A plain Cholesky factorisation fails routinely on such Gramians.
    """
    from ..gramians import psd_factor

    dmax = float(np.max(np.real(np.diagonal(X)))) if X.size else 0.0
    if not np.isfinite(dmax) or dmax <= 0:
        return psd_factor(X)
    pstrf = lapack.zpstrf if np.iscomplexobj(X) else lapack.dpstrf
    c, piv, rank, info = pstrf(X, tol=np.finfo(float).eps * dmax, lower=1)
    if info < 0 or rank < 1:
        return psd_factor(X)
    L = np.tril(c[:, :rank])
    if not np.all(np.isfinite(L)):
        return psd_factor(X)
    Z = np.empty_like(L)
    Z[piv - 1] = L
    return Z


def _reduce_target(sys: LQOSystem) -> tuple[LQOSystem, bool]:
    """System that is actually balanced: the real realisation of a conjugate-pair system."""
    if sys.is_complex and sys.half is not None and not np.any(np.imag(sys.D)):
        return _memo(sys, "realified", sys.realify), True
    return sys, False


def _realified_gramians(sys: LQOSystem) -> tuple[np.ndarray, np.ndarray]:
    r"""Gramians of ``sys.realify()`` from the (cached, closed-form) Gramians of the diagonal 2n form.

    With :math:`x_r = [\mathrm{Re}\,x; \mathrm{Im}\,x] = R x_f`,
    :math:`R = \tfrac12 [[I, I], [-iI, iI]]`, :math:`R^{-1} = [[I, iI], [I, -iI]]`:
    :math:`P_r = R P_f R^H` and :math:`Q_r = R^{-H} Q_f R^{-1}` (also for LQO, since
    :math:`M_r = R^{-H} M_f R^{-1}`). Both are real; the rounding-level imaginary parts are dropped
    after a check.
    """
    n = sys.n // 2
    I = np.eye(n)
    R = 0.5 * np.block([[I, I], [-1j * I, 1j * I]])
    Ri = np.block([[I, 1j * I], [I, -1j * I]])
    Pf = controllability_gramian(sys)
    Qf = _observability_gramian(sys)
    P = R @ Pf @ R.conj().T
    Q = Ri.conj().T @ Qf @ Ri
    for X in (P, Q):
        scale = max(float(np.max(np.abs(X))), np.finfo(float).tiny)
        if np.max(np.abs(X.imag)) > 1e-10 * scale:  # pragma: no cover - would be a core bug
            raise RuntimeError("realified Gramian is not real: the conjugate-pair data are inconsistent")
    P, Q = P.real, Q.real
    return (P + P.T) / 2, (Q + Q.T) / 2


def _check_hsv_gap(hsv: np.ndarray, r: int, n: int) -> None:
    s1 = hsv[0] if hsv.size else 0.0
    if not hsv.size or s1 <= 0:
        raise OrderError("the system has zero Hankel singular values (zero input-output map)")
    floor = n * np.finfo(float).eps * s1
    if hsv.size < r or hsv[r - 1] <= floor:
        rank = int(np.sum(hsv > floor))
        raise OrderError(
            f"r = {r} exceeds the numerical rank of the Hankel operator ({rank}; sigma_r / sigma_1 = "
            f"{(hsv[r - 1] if hsv.size >= r else 0.0) / s1:.3g}): a model of order {rank} already "
            f"reproduces the system to rounding; choose r <= {rank}"
        )
    if r < hsv.size and hsv[r] >= hsv[r - 1] * (1 - _SPLIT_RTOL):
        warnings.warn(
            f"r = {r} splits a repeated Hankel singular value (sigma_r = {hsv[r - 1]:.12g}, "
            f"sigma_r+1 = {hsv[r]:.12g}); the reduced model is not unique and BT's stability "
            "guarantee does not apply. Choose r - 1 or r + 1.",
            HSVSplitWarning,
            stacklevel=4,
        )


def balanced_truncation(sys: LQOSystem, r: int, *, return_projection: bool = False) -> ReductionResult:
    r"""Square-root balanced truncation (LTI) or LQO balanced truncation (quadratic outputs).

    Parameters
    ----------
    sys : LQOSystem
        Asymptotically stable system, continuous (dt = 0) or discrete (either convention), real or
        complex, dense or diagonal, with or without quadratic outputs.
    r : int
        Reduced (real) state dimension, ``1 <= r < sys.order``.
    return_projection : bool, default False
        Also return the projection matrices ``V`` (n, r) and ``W`` (n, r) (with ``W^H V = I``,
        ``A^ = W^H A V``) in ``result.info["V"]``, ``result.info["W"]``. For conjugate-pair systems
        they act on the real realisation ``sys.realify()`` (state ``[Re x; Im x]``).

    Returns
    -------
    ReductionResult
        ``rom``: order r, same dt, convention, m, p and D as ``sys``; real for real systems and for
        conjugate-pair systems, complex for other complex systems.
        ``hsv`` (n,): (LQO) Hankel singular values in decreasing order, padded with zeros.
        ``error_bound``: LTI only, :math:`2\sum_{k>r}\sigma_k`, a bound on the H-infinity error
        (None for LQO systems, where no bound is known). ``h2_error``: exact h2 error (``inf`` with
        an :class:`UnstableROMWarning` in the rare case that the ROM is unstable).
        ``method``: ``"bt"`` or ``"lqo-bt"``.

    Raises
    ------
    OrderError
        If r is not an integer with 1 <= r < order, or r exceeds the numerical rank of the Hankel
        operator (the trailing singular values are zero to rounding).
    UnstableSystemError
        If ``sys`` is not asymptotically stable.

    Warns
    -----
    HSVSplitWarning
        If :math:`\sigma_r = \sigma_{r+1}` to relative accuracy 1e-8.

    Notes
    -----
    * **Conjugate-pair systems** (:meth:`LQOSystem.conjugate_pairs`, complex but real-output) are
      reduced through their exact real realisation ``sys.realify()`` in real arithmetic, so the ROM
      is a real dense system of order r with the same real input-output map error. (Reducing the
      complex half system with the complex norm would ignore the ``Re`` in the output.) Use
      :func:`mor_lqo.reduction.modal.to_conjugate_pairs` to rewrite an even-order ROM with complex
      poles into a halved Deep-SSM layout, or :func:`mor_lqo.reduce_batch` for many channels.
    * Gramian factors are Cholesky factors of the (cached) dense Gramians, with an eigen-based
      fallback for numerically semidefinite Gramians (:func:`gramian_factor`). As with every
      method that square-roots densely computed Gramians, Hankel singular values below about
      :math:`\sqrt{\varepsilon}\,\sigma_1` are not resolved accurately and relative h2 errors below
      ~1e-8 are at the rounding floor.
    * Stability: the ROM is stable when :math:`\sigma_r > \sigma_{r+1}` (Pernebo–Silverman), also
      for LQO-BT (it is the BT of the auxiliary LTI system with :math:`C_{aug}^H C_{aug} = C^HC +
      \sum_j M_jPM_j`, docs/theory.md §7.2).
    """
    check_system(sys)
    r = check_order(r, sys.order)
    with _single_threaded_blas(sys.order <= _SMALL):
        return _balanced_truncation(sys, r, return_projection)


def _balanced_truncation(sys: LQOSystem, r: int, return_projection: bool) -> ReductionResult:
    work, realified = _reduce_target(sys)
    check_stable(sys, "balanced truncation")
    if realified:
        P, Q = _realified_gramians(sys)
        ZP, ZQ = gramian_factor(P), gramian_factor(Q)
    else:
        ZP, ZQ = gramian_factors(work)
    with _single_threaded_blas(max(ZP.shape[1], ZQ.shape[1]) <= _SMALL):  # factors are often low rank
        U, s, Yh = np.linalg.svd(ZP.conj().T @ ZQ, full_matrices=False)
    hsv = np.zeros(work.n)
    hsv[: min(s.size, work.n)] = s[: work.n]
    _check_hsv_gap(s, r, work.n)

    isq = 1.0 / np.sqrt(s[:r])
    V = (ZP @ U[:, :r]) * isq
    W = (ZQ @ Yh[:r].conj().T) * isq
    rom = _project_biorth(work, V, W)

    lqo = work.has_quadratic
    # conjugate-pair systems: error and norm on the diagonal 2n form (same real I/O map, Cauchy forms)
    ref = sys if realified else work
    err = _safe_error(ref, rom)
    info: dict = {"realified": realified, "factor_ranks": (ZP.shape[1], ZQ.shape[1])}
    if return_projection:
        info["V"], info["W"] = V, W
    return ReductionResult(
        rom=rom,
        h2_error=err,
        h2_norm=h2_norm(ref),
        method="lqo-bt" if lqo else "bt",
        hsv=hsv,
        error_bound=None if lqo else float(2 * np.sum(hsv[r:])),
        info=info,
    )


def _project_biorth(sys: LQOSystem, V: np.ndarray, W: np.ndarray) -> LQOSystem:
    r"""Petrov–Galerkin ROM for (nearly) biorthogonal bases, :math:`E = W^H V \approx I`.

    :math:`\hat A = E^{-1} W^H A V`, :math:`\hat B = E^{-1} W^H B`, :math:`\hat C = C V`,
    :math:`\hat M_j = V^H M_j V` (Hermitian part), :math:`\hat D = D` — the same as
    :meth:`LQOSystem.project`, but with matrix products for :math:`\hat M` (``project`` uses an
    unoptimised 3-operand ``einsum``, O(p n^2 r^2)).
    """
    AV = sys.lam[:, None] * V if sys.is_diagonal else sys.A @ V
    Wh = W.conj().T
    E = Wh @ V
    lu = sla.lu_factor(E, check_finite=False)
    Ar = sla.lu_solve(lu, Wh @ AV, check_finite=False)
    Br = sla.lu_solve(lu, Wh @ sys.B, check_finite=False)
    Cr = sys.C @ V
    Mr = None
    if sys.M is not None:
        Mr = V.conj().T @ sys.M @ V
        Mr = (Mr + np.conj(np.swapaxes(Mr, 1, 2))) / 2
    return LQOSystem._make(A=Ar, B=Br, C=Cr, M=Mr, D=sys.D, dt=sys.dt, convention=sys.convention)


def _observability_gramian(sys: LQOSystem) -> np.ndarray:
    r"""Cached (LQO) observability Gramian, identical to :func:`mor_lqo.gramians.observability_gramian`.

    For LQO systems the weight :math:`\sum_j M_j P M_j` is formed with matrix products and the
    result is stored in the system's cache under the core's key, so the core (and later h2 errors)
    reuse it. Work-around: the core forms the weight with an unoptimised 3-operand ``einsum``
    (O(p n^4); 15 s at n = 300).
    """
    if sys.M is None or "Q" in sys._cache:
        return observability_gramian(sys)
    from ..equations import solve_factored
    from ..gramians import _factor_for, adjoint_factor

    def compute():
        P = controllability_gramian(sys)
        f = adjoint_factor(_factor_for(sys))
        R = sys.C.conj().T @ sys.C + np.sum(sys.M @ P @ sys.M, axis=0)
        Q = solve_factored(f, f, R, sys.is_discrete)
        if not sys.is_complex and np.iscomplexobj(Q):
            Q = Q.real
        return (Q + Q.conj().T) / 2

    return _memo(sys, "Q", compute)


def _safe_error(sys: LQOSystem, rom: LQOSystem) -> float:
    """h2 error, ``inf`` (with a warning) when the ROM is unstable."""
    try:
        return h2_error(sys, rom)
    except UnstableSystemError:
        warnings.warn(
            "the reduced model is unstable (its h2 error is infinite); this happens only when "
            "sigma_r is (numerically) equal to sigma_r+1 or at the rounding floor",
            UnstableROMWarning,
            stacklevel=4,
        )
        return float("inf")

