"""h2 norms, inner products and errors: closed forms, brute force, identities, peers, real data."""

from __future__ import annotations

import control as ct
import numpy as np
import pytest
import scipy.io
import scipy.linalg as sla
import slycot
from conftest import ADVECDIFF, random_stable, random_sym
from hypothesis import given
from hypothesis import strategies as st

import mor_lqo as ml
from mor_lqo import errors


# ----------------------------------------------------------------------------- closed forms
def test_scalar_closed_forms():
    # scalar closed form, discrete: P = b^2 / (1 - a^2), ||S||^2 = c^2 P + m^2 P^2;
    # a = 1/2, b = c = m = 1 gives P = 4/3 and ||S||^2 = 28/9
    s = ml.LQOSystem([[0.5]], [[1.0]], [[1.0]], M=[[[1.0]]], dt=1.0)
    assert ml.h2_norm(s) ** 2 == pytest.approx(28 / 9, rel=1e-15)
    a, b, c, m = 2.0, 1.5, 0.7, 0.3
    s = ml.LQOSystem([[-a]], [[b]], [[c]], M=[[[m]]])
    assert ml.h2_norm(s) ** 2 == pytest.approx(c**2 * b**2 / (2 * a) + m**2 * b**4 / (4 * a**2), rel=1e-14)
    parts = ml.h2_norm_parts(s)
    assert parts.linear == pytest.approx(c**2 * b**2 / (2 * a), rel=1e-14)
    assert parts.quadratic == pytest.approx(m**2 * b**4 / (4 * a**2), rel=1e-14)
    # complex discrete scalar: P = |b|^2 / (1 - |lam|^2)
    lam, bb = 0.6 + 0.3j, 1 - 2j
    s = ml.LQOSystem.diagonal([lam], [[bb]], [[1.0]], dt=1.0)
    assert ml.h2_norm(s) ** 2 == pytest.approx(abs(bb) ** 2 / (1 - abs(lam) ** 2), rel=1e-14)
    # scalar inner products: X = b b^ / (a + a^) (continuous), b b^/(1 - a a^) (discrete)
    s1 = ml.LQOSystem([[-a]], [[b]], [[c]], M=[[[m]]])
    s2 = ml.LQOSystem([[-1.3]], [[0.4]], [[2.0]], M=[[[-0.7]]])
    X = b * 0.4 / (a + 1.3)
    assert ml.h2_inner(s1, s2) == pytest.approx(c * 2.0 * X + m * (-0.7) * X**2, rel=1e-14)
    d1 = ml.LQOSystem([[0.5]], [[b]], [[c]], M=[[[m]]], dt=1.0)
    d2 = ml.LQOSystem([[-0.3]], [[0.4]], [[2.0]], M=[[[-0.7]]], dt=1.0)
    X = b * 0.4 / (1 + 0.5 * 0.3)
    assert ml.h2_inner(d1, d2) == pytest.approx(c * 2.0 * X + m * (-0.7) * X**2, rel=1e-14)


def _brute_force_sq(sys, L):
    h1 = sys.impulse_response(L)
    total = np.sum(np.abs(h1) ** 2)
    if sys.M is not None:
        total += np.sum(np.abs(sys.quadratic_kernel(L)) ** 2)
    return total


@pytest.mark.parametrize("conv", ["current", "standard"])
@pytest.mark.parametrize("complex_", [False, True])
def test_discrete_norm_equals_brute_force_kernel_sum(conv, complex_, rng):
    n, m, p = 5, 2, 2
    A, B, C = random_stable(n, m, p, discrete=True, complex_=complex_, rng=rng, radius=0.6)
    M = random_sym(p, n, rng, complex_)
    D = rng.standard_normal((p, m))
    s = ml.LQOSystem(A, B, C, M=M, D=D, dt=1.0, convention=conv)
    assert ml.h2_norm(s) ** 2 == pytest.approx(_brute_force_sq(s, 120), rel=1e-12)


def test_continuous_norm_equals_quadrature(rng):
    n = 4
    A, B, C = random_stable(n, 1, 1, discrete=False, rng=rng, shift=1.0)
    M = random_sym(1, n, rng)
    s = ml.LQOSystem(A, B, C, M=M)
    t, w = np.polynomial.legendre.leggauss(200)
    T = 30.0
    t, w = (t + 1) * T / 2, w * T / 2
    E = np.stack([sla.expm(A * ti) @ B for ti in t])  # (T, n, 1)
    lin = np.sum(w * (C @ E)[:, 0, 0] ** 2)
    K = np.einsum("ian,ab,kbn->ik", E, M[0], E)
    quad = w @ (K**2) @ w
    assert ml.h2_norm(s) ** 2 == pytest.approx(lin + quad, rel=1e-10)


# ----------------------------------------------------------------------------- identities
@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("complex_", [False, True])
def test_identities(discrete, complex_, rng):
    n, r, m, p = 7, 3, 2, 2
    dt = 1.0 if discrete else 0.0
    A, B, C = random_stable(n, m, p, discrete=discrete, complex_=complex_, rng=rng)
    Ar, Br, Cr = random_stable(r, m, p, discrete=discrete, complex_=complex_, rng=rng)
    M, Mr = random_sym(p, n, rng, complex_), random_sym(p, r, rng, complex_)
    s = ml.LQOSystem(A, B, C, M=M, dt=dt)
    rom = ml.LQOSystem(Ar, Br, Cr, M=Mr, dt=dt)
    # P-form = Q-form
    Q = ml.observability_gramian(s)
    assert np.real(np.trace(B.conj().T @ Q @ B)) == pytest.approx(ml.h2_norm(s) ** 2, rel=1e-11)
    # error = augmented error system norm; <S, S^> symmetric; ||S - S|| = 0
    assert ml.h2_error(s, rom) == pytest.approx(ml.h2_norm(s - rom), rel=1e-10)
    assert ml.h2_inner(s, rom) == pytest.approx(ml.h2_inner(rom, s), rel=1e-11)
    assert ml.h2_error(s, s) <= 1e-7 * ml.h2_norm(s)
    parts = ml.h2_error_parts(s, rom)
    lin = ml.LQOSystem(A, B, C, dt=dt) - ml.LQOSystem(Ar, Br, Cr, dt=dt)
    assert parts.linear == pytest.approx(ml.h2_norm(lin) ** 2, rel=1e-10)
    # similarity invariance (T^{-1} A T, T^{-1} B, C T, T^H M T)
    T = rng.standard_normal((n, n)) + 3 * np.eye(n)
    st_ = s.similarity(T)
    assert ml.h2_norm(st_) == pytest.approx(ml.h2_norm(s), rel=1e-10)
    assert ml.h2_error(st_, rom) == pytest.approx(ml.h2_error(s, rom), rel=1e-9)
    np.testing.assert_allclose(ml.hankel_singular_values(st_)[:3], ml.hankel_singular_values(s)[:3], rtol=1e-8)
    # M = 0 equals the LTI result
    s0 = ml.LQOSystem(A, B, C, M=np.zeros((p, n, n)), dt=dt)
    assert ml.h2_norm(s0) == pytest.approx(ml.h2_norm(ml.LQOSystem(A, B, C, dt=dt)), rel=1e-13)
    # diagonal closed forms equal the dense solvers
    lam = np.linalg.eigvals(A)
    V = np.linalg.eig(A)[1]
    sd = ml.LQOSystem.diagonal(lam, np.linalg.solve(V, B), C @ V, dt=dt)
    assert ml.h2_norm(sd) == pytest.approx(ml.h2_norm(ml.LQOSystem(A, B, C, dt=dt)), rel=1e-9)


def test_symmetrisation_leaves_norm_and_outputs_unchanged(rng):
    n = 5
    A, B, C = random_stable(n, 1, 1, discrete=True, rng=rng)
    Mn = rng.standard_normal((1, n, n))
    Ms = (Mn + Mn.transpose(0, 2, 1)) / 2
    with pytest.warns(errors.SymmetrizationWarning):
        s1 = ml.LQOSystem(A, B, C, M=Mn, dt=1.0)
    s2 = ml.LQOSystem(A, B, C, M=Ms, dt=1.0)
    assert ml.h2_norm(s1) == ml.h2_norm(s2)
    u = rng.standard_normal((20, 1))
    x = np.zeros(n)
    y = []
    for k in range(20):
        x = A @ x + B[:, 0] * u[k, 0]
        y.append(C[0] @ x + x @ Mn[0] @ x)
    np.testing.assert_allclose(s1.simulate(u)[:, 0], y, rtol=1e-12)


def test_conventions_give_identical_norms_without_d(rng):
    A, B, C = random_stable(6, 2, 2, discrete=True, rng=rng)
    M = random_sym(2, 6, rng)
    a = ml.LQOSystem(A, B, C, M=M, dt=1.0, convention="standard")
    b = ml.LQOSystem(A, B, C, M=M, dt=1.0, convention="current")
    assert ml.h2_norm(a) == pytest.approx(ml.h2_norm(b), rel=1e-14)


def test_conjugate_pairs_norm_is_real_map_norm(rng):
    n = 6
    lam = rng.uniform(0.3, 0.95, n) * np.exp(1j * rng.uniform(0, np.pi, n))
    B = rng.standard_normal((n, 1)) + 1j * rng.standard_normal((n, 1))
    C = rng.standard_normal((1, n)) + 1j * rng.standard_normal((1, n))
    for scale in (1.0, 2.0):
        s = ml.LQOSystem.conjugate_pairs(lam, B, C, dt=1.0, scale=scale)
        real = s.realify()
        assert ml.h2_norm(s) == pytest.approx(ml.h2_norm(real), rel=1e-12)
        assert ml.h2_norm(s) ** 2 == pytest.approx(np.sum(s.impulse_response(400) ** 2), rel=1e-12)
        # half-coordinate formula (docs/theory.md §8.4, linear part): (k^2/2) Re[tr(CPC^H) + tr(C P~ C^T)]
        P = (B @ B.conj().T) / (1 - np.outer(lam, lam.conj()))
        Pt = (B @ B.T) / (1 - np.outer(lam, lam))
        half = scale**2 / 2 * np.real(np.trace(C @ P @ C.conj().T) + np.trace(C @ Pt @ C.T))
        assert ml.h2_norm(s) ** 2 == pytest.approx(half, rel=1e-12)
        # the complex half-system norm is an upper bound (scaled), docs/theory.md §8.4
        cplx = ml.LQOSystem.diagonal(lam, B, scale * C, dt=1.0)
        assert ml.h2_norm(s) <= ml.h2_norm(cplx) * (1 + 1e-12)


# ----------------------------------------------------------------------------- peers
@given(st.integers(1, 12), st.integers(1, 3), st.integers(1, 3), st.booleans(), st.integers(0, 2**31 - 1))
def test_property_against_python_control_and_slycot(n, m, p, discrete, seed):
    rng = np.random.default_rng(seed)
    A, B, C = random_stable(n, m, p, discrete=discrete, rng=rng)
    D = rng.standard_normal((p, m)) if discrete else np.zeros((p, m))
    s = ml.LQOSystem(A, B, C, D=D, dt=1.0 if discrete else 0.0, convention="standard")
    ref = ct.norm(ct.ss(A, B, C, D, 1.0 if discrete else 0), 2, method="slycot")
    assert ml.h2_norm(s) == pytest.approx(ref, rel=1e-9)
    ab13 = slycot.ab13bd("D" if discrete else "C", "H", n, m, p, A, B, C, D)
    assert ml.h2_norm(s) == pytest.approx(ab13, rel=1e-9)
    # the current-input convention is converted exactly by to_control
    sc = ml.LQOSystem(A, B, C, D=D, dt=1.0 if discrete else 0.0)
    assert ml.h2_norm(sc) == pytest.approx(ct.norm(sc.to_control(), 2), rel=1e-9)


def test_error_against_python_control_block_system(rng):
    A, B, C = random_stable(20, 2, 2, discrete=False, rng=rng)
    s = ml.LQOSystem(A, B, C)
    rom = s.project(np.linalg.qr(rng.standard_normal((20, 4)))[0])
    if not rom.is_stable():
        pytest.skip("random projection unstable")
    ref = ct.norm(s.to_control() - rom.to_control(), 2)
    assert ml.h2_error(s, rom) == pytest.approx(ref, rel=1e-8)


# ----------------------------------------------------------------------------- bad input
def test_unstable_and_feedthrough():
    s = ml.LQOSystem([[0.1]], [[1.0]], [[1.0]])
    with pytest.raises(errors.UnstableSystemError):
        ml.h2_norm(s)
    with pytest.raises(errors.UnstableSystemError):
        ml.h2_norm(ml.LQOSystem([[1.0]], [[1.0]], [[1.0]], dt=1.0))
    sd = ml.LQOSystem([[-1.0]], [[1.0]], [[1.0]], D=[[1.0]])
    assert ml.h2_norm(sd) == np.inf
    sd2 = ml.LQOSystem([[-2.0]], [[1.0]], [[1.0]], D=[[1.0]])
    # D cancels in the error
    assert ml.h2_error(sd, sd2) == pytest.approx(ml.h2_error(
        ml.LQOSystem([[-1.0]], [[1.0]], [[1.0]]), ml.LQOSystem([[-2.0]], [[1.0]], [[1.0]])), rel=1e-14)
    with pytest.raises(errors.SamplingTimeError):
        ml.h2_error(ml.LQOSystem([[0.5]], [[1.0]], [[1.0]], dt=1.0), ml.LQOSystem([[0.5]], [[1.0]], [[1.0]], dt=2.0))
    with pytest.raises(TypeError):
        ml.h2_norm(np.eye(2))


# ----------------------------------------------------------------------------- real data
def test_advecdiff_model():
    d = scipy.io.loadmat(ADVECDIFF)
    assert d["B"].dtype == np.uint16
    s = ml.LQOSystem(d["A"], d["B"], d["Clin"], M=d["Mquad"][None])
    assert s.B.dtype == np.float64 and s.is_stable()
    parts = ml.h2_norm_parts(s)
    # linear part against slycot; quadratic part: P-form = Q-form
    lin_ref = ct.norm(ct.ss(s.A, s.B, s.C, np.zeros((1, 2))), 2, method="slycot") ** 2
    assert parts.linear == pytest.approx(lin_ref, rel=1e-8)
    Q = ml.observability_gramian(s)
    assert np.trace(s.B.T @ Q @ s.B) == pytest.approx(parts.total, rel=1e-9)
    assert parts.quadratic > 0
