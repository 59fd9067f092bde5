"""Direct Gramian factors (mor_lqo.gramian_factors) against scipy's dense Lyapunov/Stein solvers.

Oracles: ``scipy.linalg.solve_continuous_lyapunov`` / ``solve_discrete_lyapunov`` (Bartels–Stewart, an
independent implementation) on well-conditioned systems, where both are accurate to ~1e-14 relative;
exact 2-norms for the non-normality estimate.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl

import mor_lqo as ml
from mor_lqo.gramian_factors import _hammarling_factors, gramian_factors, hammarling_factor, nonnormality


def _stable(rng, n, discrete):
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    if discrete:
        return 0.9 * A / max(abs(np.linalg.eigvals(A)))
    return A - (max(np.linalg.eigvals(A).real) + 0.5) * np.eye(n)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("k", [1, 3, 30])  # k > n exercises the QR compression of the right-hand side
def test_hammarling_factor_solves_the_equation(discrete, k):
    rng = np.random.default_rng(k)
    n = 12
    A, K = _stable(rng, n, discrete), rng.standard_normal((k, n))
    U = hammarling_factor(A, K, discrete)
    assert np.allclose(U, np.triu(U))
    X = (sl.solve_discrete_lyapunov(A.T, K.T @ K) if discrete else sl.solve_continuous_lyapunov(A.T, -K.T @ K))
    np.testing.assert_allclose(U.T @ U, X, rtol=0, atol=1e-12 * np.abs(X).max())


@pytest.mark.parametrize("discrete", [False, True])
def test_lqo_factors_match_the_lqo_gramians(discrete):
    rng = np.random.default_rng(5)
    n, p = 9, 2
    A = _stable(rng, n, discrete)
    B, C = rng.standard_normal((n, 2)), rng.standard_normal((p, n))
    M = rng.standard_normal((p, n, n))
    M = M + M.transpose(0, 2, 1)  # indefinite symmetric quadratic outputs
    sys = ml.LQOSystem(A, B, C, M=M, dt=1.0) if discrete else ml.LQOSystem(A, B, C, M=M)
    ZP, ZQ = _hammarling_factors(sys)
    P, Q = ml.controllability_gramian(sys), ml.observability_gramian(sys)
    np.testing.assert_allclose(ZP @ ZP.T, P, rtol=0, atol=1e-12 * np.abs(P).max())
    np.testing.assert_allclose(ZQ @ ZQ.T, Q, rtol=0, atol=1e-12 * np.abs(Q).max())
    # the default route (well-conditioned system: formed Gramians) gives the same Hankel singular values
    Zp, Zq = gramian_factors(sys)
    s_fast = np.linalg.svd(Zp.T @ Zq, compute_uv=False)
    s_ham = np.linalg.svd(ZP.T @ ZQ, compute_uv=False)
    np.testing.assert_allclose(s_fast[:n], s_ham[:n], rtol=0, atol=1e-12 * s_ham[0])


def test_nonnormality_estimate_matches_exact_norms():
    rng = np.random.default_rng(3)
    A = _stable(rng, 40, False)
    sys = ml.LQOSystem(A, rng.standard_normal((40, 2)), rng.standard_normal((2, 40)))
    ZP, ZQ = gramian_factors(sys)
    P, Q = ZP @ ZP.T, ZQ @ ZQ.T
    exact = np.linalg.norm(P, 2) * np.linalg.norm(Q, 2) / np.linalg.svd(ZP.T @ ZQ, compute_uv=False)[0] ** 2
    assert nonnormality(ZP, ZQ) == pytest.approx(exact, rel=1e-3)
