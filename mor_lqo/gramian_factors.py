r"""Square-root (Cholesky) factors of Gramians computed directly, for Hankel singular values and BT.

Forming a Gramian and factoring it afterwards loses the small singular directions: for strongly
non-normal :math:`A` the product :math:`\|P\|\,\|Q\|` exceeds :math:`\sigma_1^2` by many orders of
magnitude, and rounding errors of size :math:`\varepsilon\|P\|` in :math:`P` become errors of the
Hankel singular values far larger than :math:`\varepsilon\sigma_1`. Hammarling's method computes a
triangular factor :math:`U` with :math:`P = U^T U` from the Schur form of :math:`A` without forming
:math:`P`, column by column, with errors relative to the factor itself (docs/numerics.md).

:func:`gramian_factors` returns :math:`Z_P, Z_Q` with :math:`P = Z_P Z_P^H`, :math:`Q = Z_Q Z_Q^H`:

* strongly non-normal real dense systems: Hammarling's method (SLICOT ``SB03OD``, continuous Lyapunov
  and discrete Stein equations); for LQO systems the quadratic term of the observability Gramian is a
  PSD right-hand side with the factor :math:`K = [C;\ Z_P^T M_1;\ \dots;\ Z_P^T M_p]`, since
  :math:`M_j P M_j = (Z_P^T M_j)^T (Z_P^T M_j)` for symmetric :math:`M_j`;
* strongly non-normal complex dense LTI systems: the same through the real representation
  :math:`R(X) = [[\mathrm{Re}\,X, -\mathrm{Im}\,X], [\mathrm{Im}\,X, \mathrm{Re}\,X]]`, whose Gramians
  are :math:`R(P)`, :math:`R(Q)`; a complex factor of :math:`P` is read off the real one;
* diagonal systems (normal, where the formed route is accurate) and complex LQO systems:
  pivoted-Cholesky factors of the formed (diagonal: closed-form Cauchy) Gramians
  (:func:`mor_lqo.reduction.balanced.gramian_factor`).
"""

from __future__ import annotations

import numpy as np

from .gramians import _memo, check_stable, controllability_gramian, observability_gramian
from .systems import LQOSystem

__all__ = ["gramian_factors", "hammarling_factor", "nonnormality", "NONNORMALITY_LIMIT"]


def hammarling_factor(A: np.ndarray, K: np.ndarray, discrete: bool) -> np.ndarray:
    r"""Upper-triangular :math:`U` with :math:`X = U^T U` solving the observability-type equation

    .. math::

        A^T X + X A + K^T K = 0 \quad\text{(continuous)}, \qquad
        A^T X A - X + K^T K = 0 \quad\text{(discrete)},

    for real stable ``A`` (n, n) and real ``K`` (k, n), by Hammarling's method (SLICOT ``SB03OD``).
    The controllability equation :math:`A P + P A^T + B B^T = 0` is the case ``A.T, B.T``.

    Returns
    -------
    U : ndarray, shape (n, n), upper triangular
    """
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


NONNORMALITY_LIMIT = 1e6  # ||P|| ||Q|| / sigma_1^2 above which formed Gramians lose the HSVs' accuracy


def _hammarling_applies(sys: LQOSystem) -> bool:
    """Dense systems, real (LTI or LQO) or complex LTI (through the real representation)."""
    return not sys.is_diagonal and sys.n > 0 and not (sys.is_complex and sys.M is not None)


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
    :math:`\sigma_i^2` by about :math:`arepsilon \|P\| \|Q\| = arepsilon\kappa\sigma_1^2`.
    """
    nP = _norm2_estimate(lambda v: ZP.conj().T @ (ZP @ v), ZP.shape[1])  # ||Z_P||_2 = ||P||_2^(1/2)
    nQ = _norm2_estimate(lambda v: ZQ.conj().T @ (ZQ @ v), ZQ.shape[1])
    s1 = _norm2_estimate(lambda v: ZQ.conj().T @ (ZP @ (ZP.conj().T @ (ZQ @ v))), ZQ.shape[1])  # sigma_1
    return float((nP * nQ / s1) ** 2) if s1 > 0 else 1.0


def gramian_factors(sys: LQOSystem) -> tuple[np.ndarray, np.ndarray]:
    r"""Factors :math:`Z_P` (n, k_P), :math:`Z_Q` (n, k_Q) of the controllability and (LQO)
    observability Gramians: :math:`P = Z_P Z_P^H`, :math:`Q = Z_Q Z_Q^H` (cached on ``sys``).

    First the fast route: pivoted-Cholesky factors of the formed Gramians. For a dense system (real, or
    complex without quadratic outputs) whose non-normality estimate :func:`nonnormality` exceeds
    :data:`NONNORMALITY_LIMIT` the factors are recomputed by Hammarling's method
    (:func:`hammarling_factor`), which keeps the Hankel singular values accurate to ~1e-15 sigma_1 for
    real systems (the formed route was off by up to 150 sigma_1) and to ~1e-6 sigma_1 for complex ones
    (formed: ~1e-2 sigma_1).
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
    """Hammarling factors of a dense system; complex LTI systems through their real representation.

    For complex ``A`` the real system ``(R(A), R(B), R(C))`` has Gramians ``R(P)``, ``R(Q)``; from a
    real factor ``Z_r`` (2n, k) of ``R(P)`` the complex ``W = (Z_r[:n] + i Z_r[n:]) / sqrt(2)`` satisfies
    ``W W^H = P`` (block structure of ``R(P)``).
    """
    disc = sys.is_discrete
    if sys.is_complex:
        n = sys.n
        Ar, Br, Cr = (_realification(X) for X in (sys.A, sys.B, sys.C))
        ZPr = hammarling_factor(Ar.T, Br.T, disc).T
        ZQr = hammarling_factor(Ar, Cr, disc).T
        return ((ZPr[:n] + 1j * ZPr[n:]) / np.sqrt(2.0), (ZQr[:n] + 1j * ZQr[n:]) / np.sqrt(2.0))
    A = np.asarray(sys.A, float)
    Up = hammarling_factor(A.T, np.asarray(sys.B, float).T, disc)  # P = Up^T Up
    K = np.asarray(sys.C, float)
    if sys.M is not None:
        K = np.vstack([K, *(Up @ np.asarray(Mj, float) for Mj in sys.M)])
    return Up.T, hammarling_factor(A, K, disc).T
