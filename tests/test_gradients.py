"""Gradients of the squared h2 error: finite differences (real and complex directions), factor 2, D terms."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_stable, random_sym

import mor_lqo as ml


def _J(sys, A, B, C, M, D=None, diag=False):
    kw = dict(dt=sys.dt, convention=sys.convention)
    Dh = sys.D if D is None else D
    rom = (ml.LQOSystem.diagonal(A, B, C, M=M, D=Dh, **kw) if diag
           else ml.LQOSystem(A, B, C, M=M, D=Dh, **kw))
    return ml.h2_error_grad(sys, rom).J


def _directional(sys, params, name, direction, eps, diag=False):
    p_plus = dict(params)
    p_minus = dict(params)
    p_plus[name] = params[name] + eps * direction
    p_minus[name] = params[name] - eps * direction
    return (_J(sys, **p_plus, diag=diag) - _J(sys, **p_minus, diag=diag)) / (2 * eps)


def _herm(X):
    return (X + np.conj(np.swapaxes(X, -1, -2))) / 2


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("diag_full", [False, True])
def test_gradient_matches_finite_differences(discrete, complex_, diag_full, rng):
    n, r, m, p = 6, 3, 2, 2
    dt = 1.0 if discrete else 0.0
    A, B, C = random_stable(n, m, p, discrete=discrete, complex_=complex_, rng=rng)
    if diag_full:
        sys = ml.LQOSystem.diagonal(np.linalg.eigvals(A), B, C, M=random_sym(p, n, rng, complex_), dt=dt)
    else:
        sys = ml.LQOSystem(A, B, C, M=random_sym(p, n, rng, complex_), dt=dt)
    Ar, Br, Cr = random_stable(r, m, p, discrete=discrete, complex_=complex_, rng=rng)
    params = dict(A=Ar, B=Br, C=Cr, M=random_sym(p, r, rng, complex_))  # M^ != 0 exercises the factor 2
    rom = ml.LQOSystem(**params, dt=dt)
    g = ml.h2_error_grad(sys, rom)
    assert g.J == pytest.approx(ml.h2_error(sys, rom) ** 2, rel=1e-9)
    for name, grad in [("A", g.A), ("B", g.B), ("C", g.C), ("M", g.M)]:
        for _ in range(2):
            Delta = rng.standard_normal(params[name].shape)
            if complex_:
                Delta = Delta + 1j * rng.standard_normal(params[name].shape)
            if name == "M":
                Delta = _herm(Delta)
            fd = _directional(sys, params, name, Delta, 1e-6)
            an = np.real(np.vdot(grad, Delta))  # Re tr(grad^H Delta)
            assert an == pytest.approx(fd, rel=2e-6, abs=1e-8 * abs(g.J))


@pytest.mark.parametrize("discrete", [False, True])
def test_diagonal_rom_gradient_wrt_eigenvalues(discrete, rng):
    n, r = 8, 3
    dt = 1.0 if discrete else 0.0
    A, B, C = random_stable(n, 1, 1, discrete=discrete, complex_=True, rng=rng)
    sys = ml.LQOSystem(A, B, C, dt=dt)
    lam = (0.5 * np.exp(1j * rng.uniform(0, 3, r))) if discrete else (-rng.uniform(0.5, 2, r) + 1j * rng.uniform(-2, 2, r))
    params = dict(A=lam, B=rng.standard_normal((r, 1)) + 0j, C=rng.standard_normal((1, r)) + 0j, M=None)
    g = ml.h2_error_grad(sys, ml.LQOSystem.diagonal(lam, params["B"], params["C"], dt=dt))
    np.testing.assert_allclose(g.lam, np.diag(g.A))
    Delta = rng.standard_normal(r) + 1j * rng.standard_normal(r)
    fd = _directional(sys, params, "A", Delta, 1e-6, diag=True)
    assert np.real(np.vdot(g.lam, Delta)) == pytest.approx(fd, rel=1e-6)


def test_wirtinger_convention_scalar():
    # J(c^) = |c - c^|^2 * P for a pure output mismatch with identical dynamics: grad_c^ = 2 P (c^ - c)
    lam, b = 0.5, 1.0
    P = b**2 / (1 - lam**2)
    sys = ml.LQOSystem.diagonal([lam + 0j], [[b + 0j]], [[1.0 + 0j]], dt=1.0)
    ch = 0.3 + 0.4j
    g = ml.h2_error_grad(sys, ml.LQOSystem.diagonal([lam + 0j], [[b + 0j]], [[ch]], dt=1.0))
    assert g.J == pytest.approx(abs(1 - ch) ** 2 * P, rel=1e-13)
    assert g.C[0, 0] == pytest.approx(2 * P * (ch - 1), rel=1e-13)


@pytest.mark.parametrize("conv", ["current", "standard"])
def test_feedthrough_terms_in_gradient(conv, rng):
    n, r, m, p = 5, 2, 2, 2
    A, B, C = random_stable(n, m, p, discrete=True, rng=rng)
    sys = ml.LQOSystem(A, B, C, D=rng.standard_normal((p, m)), dt=1.0, convention=conv)
    Ar, Br, Cr = random_stable(r, m, p, discrete=True, rng=rng)
    Dh = rng.standard_normal((p, m))
    params = dict(A=Ar, B=Br, C=Cr, M=None, D=Dh)
    rom = ml.LQOSystem(Ar, Br, Cr, D=Dh, dt=1.0, convention=conv)
    g = ml.h2_error_grad(sys, rom)
    assert g.J == pytest.approx(ml.h2_norm(sys - rom) ** 2, rel=1e-10)
    for name, grad in [("B", g.B), ("C", g.C), ("A", g.A)]:
        Delta = rng.standard_normal(params[name].shape)
        fd = _directional(sys, params, name, Delta, 1e-6)
        assert np.vdot(grad, Delta).real == pytest.approx(fd, rel=1e-6)


def test_similarity_identity(rng):
    # Re<grad_A, A E - E A> - Re<grad_B, E B> + Re<grad_C, C E> + sum_j Re<grad_Mj, E^H M_j + M_j E> = 0
    n, r = 6, 3
    A, B, C = random_stable(n, 1, 2, discrete=False, rng=rng)
    sys = ml.LQOSystem(A, B, C, M=random_sym(2, n, rng))
    Ar, Br, Cr = random_stable(r, 1, 2, discrete=False, rng=rng)
    Mr = random_sym(2, r, rng)
    g = ml.h2_error_grad(sys, ml.LQOSystem(Ar, Br, Cr, M=Mr))
    E = rng.standard_normal((r, r))
    val = (np.vdot(g.A, Ar @ E - E @ Ar).real - np.vdot(g.B, E @ Br).real + np.vdot(g.C, Cr @ E).real
           + sum(np.vdot(g.M[j], E.T @ Mr[j] + Mr[j] @ E).real for j in range(2)))
    scale = np.linalg.norm(g.A) * np.linalg.norm(Ar) * np.linalg.norm(E)
    assert abs(val) < 1e-10 * scale
