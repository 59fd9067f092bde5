"""Matrix equations: residuals, diagonal closed forms vs dense solvers, kernels vs references, batching."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from conftest import random_stable

import mor_lqo as ml
from mor_lqo import equations as eq
from mor_lqo.kernels import triangular_numba as tn
from mor_lqo.kernels import triangular_reference as tr


def _rel(res, Q):
    return np.linalg.norm(res) / np.linalg.norm(Q)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("n, r", [(1, 1), (4, 3), (70, 55), (130, 6), (6, 130)])
def test_dense_residuals_at_rounding_level(n, r, complex_, rng):
    A, _, _ = random_stable(n, 1, 1, discrete=True, complex_=complex_, rng=rng, radius=0.95)
    Bm, _, _ = random_stable(r, 1, 1, discrete=True, complex_=complex_, rng=rng, radius=0.95)
    Q = rng.standard_normal((n, r)) + (1j * rng.standard_normal((n, r)) if complex_ else 0)
    X = eq.stein_sylvester(A, Bm, Q)
    assert _rel(A @ X @ Bm.conj().T - X + Q, Q) < 1e-12
    Ac, Bc = A - 2 * np.eye(n), Bm - 2 * np.eye(r)
    X = eq.sylvester(Ac, Bc, Q)
    assert _rel(Ac @ X + X @ Bc.conj().T + Q, Q) < 1e-12
    assert np.iscomplexobj(X) == complex_  # real data stays real, complex stays complex
    Qs = Q[:, :1] @ Q[:, :1].conj().T
    P = eq.stein(A, Qs)
    assert _rel(A @ P @ A.conj().T - P + Qs, Qs) < 1e-12
    P = eq.lyapunov(Ac, Qs)
    assert _rel(Ac @ P + P @ Ac.conj().T + Qs, Qs) < 1e-12


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("complex_", [False, True])
def test_diagonal_operands_equal_dense_solutions(discrete, complex_, rng):
    n, r = 9, 4
    lam = rng.uniform(0.1, 0.9, n) * (np.exp(1j * rng.uniform(0, np.pi, n)) if complex_ else 1)
    mu = rng.uniform(0.1, 0.9, r) * (np.exp(1j * rng.uniform(0, np.pi, r)) if complex_ else 1)
    if not discrete:
        lam, mu = lam - 1.5, mu - 1.5
    Q = rng.standard_normal((n, r))
    solve = eq.stein_sylvester if discrete else eq.sylvester
    X_dense = solve(np.diag(lam), np.diag(mu), Q)
    for a, b in [(eq.Diagonal(lam), eq.Diagonal(mu)), (eq.Diagonal(lam), np.diag(mu)),
                 (np.diag(lam), eq.Diagonal(mu))]:
        np.testing.assert_allclose(solve(a, b, Q), X_dense, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("discrete", [False, True])
def test_numba_kernels_equal_references(discrete, rng):
    n, r = 12, 5
    T = np.triu(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) * 0.3
    S = np.triu(rng.standard_normal((r, r)) + 1j * rng.standard_normal((r, r))) * 0.3
    F = rng.standard_normal((n, r)) + 1j * rng.standard_normal((n, r))
    np.testing.assert_allclose(tn.tri_stein_sylvester(T, S, F), tr.tri_stein_sylvester(T, S, F), rtol=1e-12)
    lam = 0.5 * np.exp(1j * rng.uniform(0, 3, n)) - (0 if discrete else 1.0)
    Sd = S - (0 if discrete else np.eye(r))
    np.testing.assert_allclose(tn.diag_left_sylvester(lam, Sd, F, discrete),
                               tr.diag_left_sylvester(lam, Sd, F, discrete), rtol=1e-11)


def test_recursive_solver_respects_real_2x2_blocks(rng):
    # real matrix with many complex-conjugate eigenvalue pairs: splits must not cut 2x2 blocks
    n = 150
    A, _, _ = random_stable(n, 1, 1, discrete=False, rng=rng)
    Q = rng.standard_normal((n, n))
    Q = Q @ Q.T
    X = eq.lyapunov(A, Q)
    assert _rel(A @ X + X @ A.T + Q, Q) < 1e-12
    np.testing.assert_allclose(X, sla.solve_continuous_lyapunov(A, -Q), rtol=1e-9, atol=1e-9 * np.abs(X).max())


@pytest.mark.parametrize("n, r", [(1, 1), (2, 2), (9, 7), (12, 1), (3, 10)])
def test_real_quasi_triangular_stein_kernel_equals_kronecker_reference(n, r, rng):
    # real Schur forms with 2x2 blocks on both sides (complex pairs) and 1x1 blocks
    T, _ = sla.schur(0.3 * rng.standard_normal((n, n)), output="real")
    S, _ = sla.schur(0.3 * rng.standard_normal((r, r)), output="real")
    F = rng.standard_normal((n, r))
    Y = tn.tri_stein_sylvester_real(T, S, F)
    np.testing.assert_allclose(Y, tr.tri_stein_sylvester_real(T, S, F), rtol=1e-12, atol=1e-13)
    assert _rel(T @ Y @ S.T - Y + F, F) < 1e-14


@pytest.mark.parametrize("n", [150, 300])
def test_real_discrete_gramian_in_real_arithmetic_matches_scipy(n, rng):
    # the real path (real Schur form, recursive blocking over 2x2 blocks, real leaves) against
    # scipy's solver and against the complex path
    A, B, _ = random_stable(n, 2, 1, discrete=True, rng=rng, radius=0.95)
    Q = B @ B.T
    X = eq.stein(A, Q)
    assert not np.iscomplexobj(X)
    assert _rel(A @ X @ A.T - X + Q, Q) < 1e-12
    ref = sla.solve_discrete_lyapunov(A, Q)
    np.testing.assert_allclose(X, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    T, U = sla.schur(A, output="real")
    Tc, Uc = sla.rsf2csf(T, U)
    Yc = eq.tri_solve(Tc, Tc, Uc.conj().T @ Q @ Uc, True)
    np.testing.assert_allclose(X, (Uc @ Yc @ Uc.conj().T).real, rtol=1e-10, atol=1e-10 * np.abs(X).max())
    Fc = Q + 1j * rng.standard_normal((n, n))  # complex right-hand side on real operators
    Yr = eq.tri_solve(T, T, U.T @ Fc @ U, True)
    assert _rel(T @ Yr @ T.T - Yr + U.T @ Fc @ U, Fc) < 1e-12


def test_batched_equations(rng):
    N, n, r = 5, 6, 3
    A = np.stack([random_stable(n, 1, 1, discrete=True, rng=rng)[0] for _ in range(N)])
    Bm = np.stack([random_stable(r, 1, 1, discrete=True, rng=rng)[0] for _ in range(N)])
    Q = rng.standard_normal((N, n, r))
    X = eq.stein_sylvester(A, Bm, Q)
    for k in range(N):
        np.testing.assert_allclose(X[k], eq.stein_sylvester(A[k], Bm[k], Q[k]), rtol=1e-13)
    lam = rng.uniform(-0.9, 0.9, (N, n)) + 1j * rng.uniform(-0.3, 0.3, (N, n))
    P = eq.stein(eq.Diagonal(lam), np.ones((N, n, n)))
    for k in range(N):
        np.testing.assert_allclose(P[k], eq.stein(np.diag(lam[k]), np.ones((n, n))), rtol=1e-12)


def test_shape_errors():
    with pytest.raises(ml.errors.ShapeError):
        eq.lyapunov(np.eye(3), np.eye(2))
    with pytest.raises(ml.errors.ShapeError):
        eq.sylvester(np.ones((2, 3)), np.eye(2), np.eye(2))
