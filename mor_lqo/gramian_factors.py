r"""Square-root (Cholesky) factors of Gramians computed directly, for Hankel singular values and BT.

Forming a Gramian and factoring it afterwards loses the small singular directions: for strongly
non-normal :math:`A` the product :math:`\|P\|\,\|Q\|` exceeds :math:`\sigma_1^2` by many orders of
magnitude, and rounding errors of size :math:`\varepsilon\|P\|` in :math:`P` become errors of the
Hankel singular values far larger than :math:`\varepsilon\sigma_1`. Hammarling's method computes a
triangular factor :math:`U` with :math:`P = U^H U` from the Schur form of :math:`A` without forming
:math:`P`, column by column, with errors relative to the factor itself (docs/numerics.md).

:func:`gramian_factors` returns :math:`Z_P, Z_Q` with :math:`P = Z_P Z_P^H`, :math:`Q = Z_Q Z_Q^H`:

* strongly non-normal dense systems: Hammarling's method (:func:`hammarling_factor`) for the
  continuous Lyapunov and discrete Stein equations — real systems by SLICOT ``SB03OD`` on the real
  Schur form, complex systems by the kernel :func:`mor_lqo.kernels.hammarling_numba.tri_hammarling`
  on the complex Schur form (one Schur factorisation, shared with the formed route, serves both
  Gramians). For LQO systems the quadratic term of the observability Gramian is a PSD right-hand side
  with the factor :math:`K = [C;\ W_P M_1;\ \dots;\ W_P M_p]`, since
  :math:`M_j P M_j = (W_P M_j)^H (W_P M_j)` for Hermitian :math:`M_j` and :math:`P = W_P^H W_P`;
* diagonal systems (normal, where the formed route is accurate): pivoted-Cholesky factors of the
  closed-form Cauchy Gramians (:func:`mor_lqo.reduction.balanced.gramian_factor`), as for all systems
  whose non-normality estimate stays below :data:`NONNORMALITY_LIMIT`.
"""

from __future__ import annotations

import numpy as np

from .gramians import _memo, check_stable, controllability_gramian, observability_gramian
from .systems import LQOSystem

__all__ = ["gramian_factors", "hammarling_factor", "hammarling_schur", "nonnormality", "NONNORMALITY_LIMIT"]


def hammarling_factor(A: np.ndarray, K: np.ndarray, discrete: bool) -> np.ndarray:
    r"""Upper-triangular :math:`U` with :math:`X = U^H U` solving the observability-type equation

    .. math::

        A^H X + X A + K^H K = 0 \quad\text{(continuous)}, \qquad
        A^H X A - X + K^H K = 0 \quad\text{(discrete)},

    for stable ``A`` (n, n) and ``K`` (k, n), by Hammarling's method, never forming :math:`X`: real
    ``A`` and ``K`` by SLICOT ``SB03OD`` (real Schur form), complex ones on the complex Schur form
    :math:`A = Q T Q^H` (:func:`hammarling_schur`, then a QR factorisation makes the factor
    triangular). The controllability equation :math:`A P + P A^H + B B^H = 0` is the case
    ``A.conj().T, B.conj().T``.

    Returns
    -------
    U : ndarray, shape (n, n), upper triangular (float64 for real input, complex128 otherwise)

    Raises
    ------
    UnstableSystemError
        If a complex ``A`` has an eigenvalue outside the open left half-plane (unit disc).
    """
    if np.iscomplexobj(A) or np.iscomplexobj(K):
        import scipy.linalg as sla

        T, Q = sla.schur(np.asarray(A, np.complex128), output="complex", check_finite=False)
        return np.triu(np.linalg.qr(hammarling_schur(T, Q, K, discrete), mode="r"))
    from slycot import sb03od

    n = A.shape[0]
    if K.shape[0] > n:  # K^T K = R^T R with the triangular QR factor R (n, n): the same equation
        K = np.linalg.qr(K, mode="r")
    k = K.shape[0]
    Kp = np.zeros((max(n, k), n))
    Kp[:k] = K
    U, scale = sb03od(n, k, np.array(A, dtype=float, order="F"), np.zeros((n, n), order="F"),
                      np.asfortranarray(Kp), dico="D" if discrete else "C", fact="N", trans="N")[:2]
    return np.triu(U[:n, :n]) / scale


def hammarling_schur(T: np.ndarray, Q: np.ndarray, K: np.ndarray, discrete: bool) -> np.ndarray:
    r"""Square factor :math:`W` (n, n), :math:`X = W^H W`, of the solution of
    :math:`A^H X + X A + K^H K = 0` (discrete: :math:`A^H X A - X + K^H K = 0`) from a complex Schur
    form :math:`A = Q T Q^H` (T upper triangular, Q unitary).

    In Schur coordinates :math:`\tilde X = Q^H X Q` solves the same equation with :math:`T` and the
    triangular QR factor :math:`R` (n, n, zero-padded) of :math:`K Q`; the kernel
    :func:`mor_lqo.kernels.hammarling_numba.tri_hammarling` returns :math:`\tilde U` with
    :math:`\tilde X = \tilde U^H \tilde U`, and :math:`W = \tilde U Q^H`. Cost O(n³ + k n²).

    Raises
    ------
    UnstableSystemError
        If a diagonal entry of ``T`` is not stable.
    """
    from .errors import UnstableSystemError
    from .kernels.hammarling_numba import tri_hammarling

    n = T.shape[0]
    R = np.linalg.qr(np.asarray(K, np.complex128) @ Q, mode="r")  # (min(k, n), n) upper trapezoidal
    Rp = np.zeros((n, n), np.complex128)
    Rp[: R.shape[0]] = R
    try:
        Ut = tri_hammarling(np.ascontiguousarray(T, np.complex128), Rp, bool(discrete))
    except ValueError:
        what = "|lambda| < 1" if discrete else "Re lambda < 0"
        raise UnstableSystemError(f"Hammarling's method needs a stable matrix ({what} for all eigenvalues)"
                                  ) from None
    return Ut @ Q.conj().T


NONNORMALITY_LIMIT = 1e6  # ||P|| ||Q|| / sigma_1^2 above which formed Gramians lose the HSVs' accuracy


def _hammarling_applies(sys: LQOSystem) -> bool:
    """Dense systems, real or complex, LTI or LQO."""
    return not sys.is_diagonal and sys.n > 0


def _norm2_estimate(apply, dim: int, iters: int = 30) -> float:
    """Largest singular value of a linear map (power iteration on ``apply``; a fixed start vector)."""
    v = np.cos(np.arange(1, dim + 1))  # deterministic, generic start
    s = 0.0
    for _ in range(iters):
        w = apply(v)
        s = float(np.linalg.norm(w))
        if s == 0.0:
            return 0.0
        v = w / s
    return float(np.sqrt(s))


def nonnormality(ZP: np.ndarray, ZQ: np.ndarray) -> float:
    r"""Estimate of :math:`\kappa = \|P\|_2 \|Q\|_2 / \sigma_1^2` from factors (power iterations).

    :math:`\kappa \ge 1`; it is 2–100 for ordinary systems (heat equations, random stable matrices,
    the AdvecDiff model) and 1e18 or more for the strongly non-normal systems on which formed
    Gramians give wrong Hankel singular values. Rounding of the formed Gramians perturbs
    :math:`\sigma_i^2` by about :math:`\varepsilon \|P\| \|Q\| = \varepsilon\kappa\sigma_1^2`.
    """
    nP = _norm2_estimate(lambda v: ZP.conj().T @ (ZP @ v), ZP.shape[1])  # ||Z_P||_2 = ||P||_2^(1/2)
    nQ = _norm2_estimate(lambda v: ZQ.conj().T @ (ZQ @ v), ZQ.shape[1])
    s1 = _norm2_estimate(lambda v: ZQ.conj().T @ (ZP @ (ZP.conj().T @ (ZQ @ v))), ZQ.shape[1])  # sigma_1
    return float((nP * nQ / s1) ** 2) if s1 > 0 else 1.0


def gramian_factors(sys: LQOSystem) -> tuple[np.ndarray, np.ndarray]:
    r"""Factors :math:`Z_P` (n, k_P), :math:`Z_Q` (n, k_Q) of the controllability and (LQO)
    observability Gramians: :math:`P = Z_P Z_P^H`, :math:`Q = Z_Q Z_Q^H` (cached on ``sys``).

    First the fast route: pivoted-Cholesky factors of the formed Gramians. For a dense system whose
    non-normality estimate :func:`nonnormality` exceeds :data:`NONNORMALITY_LIMIT` the factors are
    recomputed by Hammarling's method (:func:`hammarling_factor`, :func:`hammarling_schur`), which keeps
    the Hankel singular values of strongly non-normal systems accurate to ~1e-15 sigma_1 (real) and
    ~1e-14 sigma_1 (complex), where the formed route was off by up to 150 sigma_1 (docs/numerics.md).
    """
    check_stable(sys, "Gramian factors")

    def compute():
        from .reduction.balanced import gramian_factor

        ZP, ZQ = gramian_factor(controllability_gramian(sys)), gramian_factor(observability_gramian(sys))
        if not _hammarling_applies(sys) or nonnormality(ZP, ZQ) <= NONNORMALITY_LIMIT:
            return ZP, ZQ
        return _hammarling_factors(sys)

    return _memo(sys, "gramian_factors", compute)


def _realification(X: np.ndarray) -> np.ndarray:
    """Real representation [[Re X, -Im X], [Im X, Re X]] (an algebra homomorphism, R(X^H) = R(X)^T)."""
    X = np.asarray(X)
    return np.block([[X.real, -X.imag], [X.imag, X.real]])


def _hammarling_factors(sys: LQOSystem) -> tuple[np.ndarray, np.ndarray]:
    """Hammarling factors (Z_P, Z_Q) of a dense system.

    Complex systems: one complex Schur form :math:`A = Q T Q^H` (cached on ``sys``) serves both
    equations; the controllability equation is the observability-type one for
    :math:`A^H = (QJ)(J T^H J)(QJ)^H` with the flip J (:func:`mor_lqo.gramians.adjoint_factor`).
    """
    disc = sys.is_discrete
    if sys.is_complex:
        from .gramians import adjoint_factor, schur_factor

        f = schur_factor(sys, complex_form=True)
        fa = adjoint_factor(f)
        Wp = hammarling_schur(fa.T, fa.U, sys.B.conj().T, disc)  # P = Wp^H Wp
        K = sys.C
        if sys.M is not None:  # M_j P M_j = (Wp M_j)^H (Wp M_j), M_j Hermitian
            K = np.vstack([K, *(Wp @ Mj for Mj in sys.M)])
        return Wp.conj().T, hammarling_schur(f.T, f.U, K, disc).conj().T
    A = np.asarray(sys.A, float)
    Up = hammarling_factor(A.T, np.asarray(sys.B, float).T, disc)  # P = Up^T Up
    K = np.asarray(sys.C, float)
    if sys.M is not None:
        K = np.vstack([K, *(Up @ np.asarray(Mj, float) for Mj in sys.M)])
    return Up.T, hammarling_factor(A, K, disc).T
