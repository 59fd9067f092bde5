"""Fast dense h2 norms of small real LTI systems: the symmetric quasi-triangular Lyapunov/Stein kernel
(mor_lqo.kernels.lyap_real_numba) and the Schur form without Schur vectors (mor_lqo.equations.thin_schur).

Oracles: the dense Kronecker reference kernel (small orders), the recursive Bartels–Stewart solver
``tri_solve`` and ``scipy.linalg.schur`` (independent LAPACK path), slycot ``ab13bd`` for the norm. Both
routes are backward stable on these well-conditioned systems: solutions agree to ~1e-15 relative
(measured <= 2.3e-15), norms to ~1e-14 (measured <= 1.4e-14): tolerances 1e-13 / 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl
from slycot import ab13bd

import mor_lqo as ml
from mor_lqo import errors
from mor_lqo.equations import THIN_SCHUR_MAX, thin_schur, tri_solve
from mor_lqo.kernels import lyap_real_reference
from mor_lqo.kernels.lyap_real_numba import tri_lyap_sym_real


def _stable(rng, n, discrete):
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    lam = np.linalg.eigvals(A)
    return 0.95 * A / max(abs(lam)) if discrete else A - (max(lam.real) + 0.1) * np.eye(n)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 8, 23])
def test_symmetric_kernel_matches_reference(discrete, n):
    rng = np.random.default_rng(n + 50 * discrete)
    T, U = sl.schur(_stable(rng, n, discrete))
    B = U.T @ rng.standard_normal((n, 2))
    F = B @ B.T
    X = tri_lyap_sym_real(T, F, discrete)
    Xr = lyap_real_reference.tri_lyap_sym_real(T, F, discrete)
    assert np.array_equal(X, X.T)
    np.testing.assert_allclose(X, Xr, rtol=0, atol=1e-13 * np.abs(Xr).max())


@pytest.mark.parametrize("discrete", [False, True])
def test_symmetric_kernel_matches_blocked_solver_with_many_2x2_blocks(discrete):
    rng = np.random.default_rng(7)
    n = 90
    # rotation-like 2x2 blocks: most eigenvalues complex
    A = _stable(rng, n, discrete) + np.kron(np.eye(n // 2), [[0.0, 0.8], [-0.8, 0.0]]) * (0.3 if discrete else 1)
    lam = np.linalg.eigvals(A)
    A = 0.95 * A / max(abs(lam)) if discrete else A - (max(lam.real) + 0.1) * np.eye(n)
    T, U = sl.schur(A)
    assert np.count_nonzero(np.diag(T, -1)) >= 20
    F = rng.standard_normal((n, n))
    F = F + F.T  # indefinite symmetric right-hand side
    X = tri_lyap_sym_real(T, F, discrete)
    Xr = tri_solve(T, T, F, discrete)
    np.testing.assert_allclose(X, Xr, rtol=0, atol=1e-13 * np.abs(Xr).max())


def test_thin_schur_gives_the_schur_form_and_the_transformed_rows():
    rng = np.random.default_rng(2)
    n = 60
    A, W = rng.standard_normal((n, n)), rng.standard_normal((3, n))
    T, Z, lam = thin_schur(A, W)
    Tf, U = sl.schur(A)
    np.testing.assert_allclose(np.sort_complex(lam), np.sort_complex(np.linalg.eigvals(A)), rtol=1e-12)
    assert np.all(np.tril(T, -2) == 0) and 2 * np.count_nonzero(np.diag(T, -1)) == np.count_nonzero(lam.imag)
    # W U is unique up to the signs of the Schur vectors; W A^k W^T = Z T^k Z^T is sign free
    np.testing.assert_allclose(np.abs(Z), np.abs(W @ U), rtol=0, atol=1e-10)
    for M, Mt in ((A, T), (A @ A, T @ T)):
        ref = W @ M @ W.T
        np.testing.assert_allclose(Z @ Mt @ Z.T, ref, rtol=0, atol=1e-12 * np.abs(ref).max() * n)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("n", [5, 50, 120, 151])  # thin Schur form + kernel / kernel with dgees (151)
def test_h2_norm_against_ab13bd_and_the_full_route(discrete, n):
    rng = np.random.default_rng(n)
    A, B, C = _stable(rng, n, discrete), rng.standard_normal((n, 2)), rng.standard_normal((3, n))
    kw = {"dt": 1.0, "convention": "standard"} if discrete else {}
    fast = ml.h2_norm(ml.LQOSystem(A, B, C, **kw))
    ref = ab13bd("D" if discrete else "C", "H", n, 2, 3, A.copy(), B.copy(), C.copy(), np.zeros((3, 2)))
    assert fast == pytest.approx(ref, rel=1e-12)
    # the full route (Schur factor cached first, general blocked solver) on the same system
    sys = ml.LQOSystem(A, B, C, **kw)
    f = ml.gramians.schur_factor(sys)
    Pt = tri_solve(f.T, f.T, (f.U.T @ B) @ (f.U.T @ B).T, discrete)
    full = np.sqrt(np.vdot(C @ f.U, C @ f.U @ Pt))
    assert fast == pytest.approx(full, rel=1e-12)
    assert ml.h2_norm(sys) == pytest.approx(full, rel=1e-12)  # cached factor: kernel on dgees' form
    if n <= THIN_SCHUR_MAX:
        assert "factor" not in ml.LQOSystem(A, B, C, **kw)._cache  # the fast route needs no Schur vectors


def test_thin_route_checks_stability_and_h2_error_factors_once(monkeypatch):
    A = np.diag([-1.0, 0.5, -2.0, -3.0, -4.0, -5.0])
    A[0, 1:] = 1.0
    with pytest.raises(errors.UnstableSystemError):
        ml.h2_norm(ml.LQOSystem(A, np.ones((6, 1)), np.ones((1, 6))))
    rng = np.random.default_rng(3)
    n = 40
    A = _stable(rng, n, False)
    sys = ml.LQOSystem(A, rng.standard_normal((n, 1)), rng.standard_normal((1, n)))
    rom = ml.balanced_truncation(ml.LQOSystem(A, sys.B, sys.C), 6).rom
    expected = ml.h2_error(ml.LQOSystem(A, sys.B, sys.C), rom)

    def no_thin(*args):
        raise AssertionError("h2_error must not compute a second (thin) Schur form")

    monkeypatch.setattr(ml.equations, "thin_schur", no_thin)
    assert ml.h2_error(sys, rom) == expected  # the full Schur factor first; the norms reuse it
    with pytest.raises(AssertionError):
        ml.h2_norm(ml.LQOSystem(A, sys.B, sys.C))  # a plain norm does take the thin route
