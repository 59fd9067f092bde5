"""Complex Hammarling solver (mor_lqo.kernels.hammarling_numba, mor_lqo.gramian_factors) against
independent routes.

Oracles: the plain-numpy reference kernel (scipy triangular solves, QR updates instead of Givens
rotations) for the numba kernel, and ``scipy.linalg.solve_continuous_lyapunov`` /
``solve_discrete_lyapunov`` (Bartels–Stewart) on well-conditioned systems, where both routes are accurate
to ~1e-15 relative (measured 2e-15 ... 3e-14): X and the residual must agree to 1e-13 relative.
Non-normal systems against a 60-digit reference: tests/test_hsv_nonnormal.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl

import mor_lqo as ml
from mor_lqo.errors import UnstableSystemError
from mor_lqo.gramian_factors import _hammarling_factors, hammarling_factor, hammarling_schur
from mor_lqo.kernels import hammarling_numba, hammarling_reference


def _crandn(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _stable(rng, n, discrete):
    A = _crandn(rng, n, n) / np.sqrt(2 * n)
    if discrete:
        return 0.9 * A / max(abs(np.linalg.eigvals(A)))
    return A - (max(np.linalg.eigvals(A).real) + 0.5) * np.eye(n)


def _exact(A, K, discrete):
    """scipy's solution; A is cast to complex (scipy 1.17 returns a wrong X for real A with a complex
    right-hand side: residual 1.0 against 1e-14 with A + 0j)."""
    KK = K.conj().T @ K
    A = np.asarray(A, complex)
    if discrete:
        return sl.solve_discrete_lyapunov(A.conj().T, KK)
    return sl.solve_continuous_lyapunov(A.conj().T, -KK)


def _residual(A, X, K, discrete):
    AH = A.conj().T
    return (AH @ X @ A - X if discrete else AH @ X + X @ A) + K.conj().T @ K


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("n,k", [(1, 1), (9, 1), (9, 4), (17, 3)])
def test_numba_kernel_matches_reference(discrete, n, k):
    rng = np.random.default_rng(10 * n + k)
    T, _ = sl.schur(_stable(rng, n, discrete), output="complex")
    R = np.zeros((n, n), complex)
    R[:k] = np.triu(_crandn(rng, k, n))
    if n > 2:
        R[1, 1] = 0.0  # a zero pivot: mu = 0, alpha = sqrt(delta)
    R0 = R.copy()
    U = hammarling_numba.tri_hammarling(T, R, discrete)
    np.testing.assert_array_equal(R, R0)  # the input is not modified
    Ur = hammarling_reference.tri_hammarling(T, R, discrete)
    assert np.array_equal(U, np.triu(U)) and np.all(np.diag(U).imag == 0) and np.all(np.diag(U).real >= 0)
    np.testing.assert_allclose(U, Ur, rtol=0, atol=1e-13 * np.abs(Ur).max())
    X = U.conj().T @ U
    res = _residual(T, X, R, discrete)
    assert np.abs(res).max() <= 1e-13 * max(np.abs(R.conj().T @ R).max(), np.abs(X).max())


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("k", [1, 3, 30])  # k > n exercises the QR compression of the right-hand side
def test_complex_factor_solves_the_equation(discrete, k):
    rng = np.random.default_rng(k + 100 * discrete)
    n = 12
    A, K = _stable(rng, n, discrete), _crandn(rng, k, n)
    U = hammarling_factor(A, K, discrete)
    assert U.dtype == np.complex128 and np.array_equal(U, np.triu(U))
    X, Xs = U.conj().T @ U, _exact(A, K, discrete)
    np.testing.assert_allclose(X, Xs, rtol=0, atol=1e-13 * np.abs(Xs).max())
    assert np.abs(_residual(A, X, K, discrete)).max() <= 1e-13 * np.abs(Xs).max() * np.linalg.norm(A, 2) ** 2


def test_real_matrix_with_complex_rhs_and_zero_rhs():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((8, 8)) - 4 * np.eye(8)
    K = _crandn(rng, 2, 8)
    U = hammarling_factor(A, K, False)
    Xs = _exact(A, K, False)
    np.testing.assert_allclose(U.conj().T @ U, Xs, rtol=0, atol=1e-13 * np.abs(Xs).max())
    T, Q = sl.schur(A.astype(complex), output="complex")
    assert not np.any(hammarling_schur(T, Q, np.zeros((1, 8), complex), False))


@pytest.mark.parametrize("discrete", [False, True])
def test_unstable_matrix_raises(discrete):
    A = np.diag([-1.0, 1.0 if discrete else 0.5]) + 0j
    with pytest.raises(UnstableSystemError):
        hammarling_factor(A, np.ones((1, 2), complex), discrete)


@pytest.mark.parametrize("discrete", [False, True])
def test_complex_lqo_factors_match_the_lqo_gramians(discrete):
    """Q's quadratic term enters as K = [C; W_P M_1; ...] with P = W_P^H W_P and Hermitian M_j."""
    rng = np.random.default_rng(5)
    n, p = 9, 2
    A = _stable(rng, n, discrete)
    B, C = _crandn(rng, n, 2), _crandn(rng, p, n)
    M = _crandn(rng, p, n, n)
    M = M + M.conj().transpose(0, 2, 1)  # indefinite Hermitian quadratic outputs
    sys = ml.LQOSystem(A, B, C, M=M, **({"dt": 1.0} if discrete else {}))
    ZP, ZQ = _hammarling_factors(sys)
    P, Q = ml.controllability_gramian(sys), ml.observability_gramian(sys)
    np.testing.assert_allclose(ZP @ ZP.conj().T, P, rtol=0, atol=1e-13 * np.abs(P).max())
    np.testing.assert_allclose(ZQ @ ZQ.conj().T, Q, rtol=0, atol=1e-13 * np.abs(Q).max())
