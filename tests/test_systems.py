"""System objects: validation, immutability, conventions, simulation, conversions."""

from __future__ import annotations

import control as ct
import numpy as np
import pytest
from conftest import random_stable, random_sym

import mor_lqo as ml
from mor_lqo import errors


def test_integer_input_is_cast_to_float_and_inputs_are_copied(rng):
    A = np.array([[-2, 1], [0, -3]], dtype=np.int64)
    B = np.array([[1], [2]], dtype=np.uint16)
    C = np.array([[1, 1]])
    s = ml.LQOSystem(A, B, C)
    assert s.A.dtype == np.float64 and s.B.dtype == np.float64
    A[0, 0] = 99
    assert s.A[0, 0] == -2.0
    with pytest.raises(ValueError):
        s.A[0, 0] = 1.0  # read-only


def test_complex_is_never_cast_to_real():
    s = ml.LQOSystem.diagonal([0.5 + 0.1j], [[1.0]], [[1.0]], dt=1.0)
    assert s.is_complex and s.A.dtype == np.complex128
    with pytest.raises(errors.ComplexSystemError):
        s.to_control()


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(A=np.zeros((2, 3)), B=np.ones((2, 1)), C=np.ones((1, 2))), errors.ShapeError),
        (dict(A=-np.eye(2), B=np.ones((3, 1)), C=np.ones((1, 2))), errors.ShapeError),
        (dict(A=-np.eye(2), B=np.ones((2, 1)), C=np.ones((1, 3))), errors.ShapeError),
        (dict(A=-np.eye(2), B=np.ones((2, 1)), C=None, M=None), errors.ShapeError),
        (dict(A=np.zeros((0, 0)), B=np.ones((0, 1)), C=np.ones((1, 0))), errors.ShapeError),
        (dict(A=-np.eye(2), B=np.ones((2, 1)), C=np.ones((1, 2)), D=np.ones((2, 2))), errors.ShapeError),
        (dict(A=[[np.nan, 0], [0, -1]], B=np.ones((2, 1)), C=np.ones((1, 2))), errors.NonFiniteError),
        (dict(A=-np.eye(2), B=np.ones((2, 1)), C=np.ones((1, 2)), M=np.ones((2, 2, 2))), errors.ShapeError),
        (dict(A=np.array([["a", "b"], ["c", "d"]]), B=np.ones((2, 1)), C=np.ones((1, 2))), errors.DTypeError),
        (dict(A=-np.eye(2), B=np.ones((2, 1)), C=np.ones((1, 2)), dt=-1.0), ValueError),
        (dict(A=-np.eye(2), B=np.ones((2, 1)), C=np.ones((1, 2)), dt=True), errors.DTypeError),
    ],
)
def test_bad_input_raises_specific_errors(kwargs, exc):
    with pytest.raises(exc):
        ml.LQOSystem(**kwargs)


def test_nonsymmetric_real_m_is_symmetrised_with_warning_and_complex_nonhermitian_rejected(rng):
    M = rng.standard_normal((1, 3, 3))
    with pytest.warns(errors.SymmetrizationWarning):
        s = ml.LQOSystem(-np.eye(3), np.ones((3, 1)), M=M)
    np.testing.assert_allclose(s.M, (M + M.transpose(0, 2, 1)) / 2)
    with pytest.raises(errors.NotHermitianError):
        ml.LQOSystem(-np.eye(3), np.ones((3, 1)), M=M + 1j * rng.standard_normal((1, 3, 3)))


def test_lti_subclass_and_attributes(rng):
    A, B, C = random_stable(4, 2, 3, discrete=True, rng=rng)
    s = ml.LQOSystem(A, B, C, dt=0.1)
    assert isinstance(s, ml.LTISystem) and not s.has_quadratic
    assert (s.n, s.order, s.m, s.p) == (4, 4, 2, 3) and s.is_discrete and s.is_stable()
    q = ml.LQOSystem(A, B, C, M=random_sym(3, 4, rng), dt=0.1)
    assert not isinstance(q, ml.LTISystem) and q.has_quadratic
    np.testing.assert_allclose(np.sort_complex(s.poles()), np.sort_complex(np.linalg.eigvals(A)))
    assert not ml.LQOSystem(2 * A, B, C, dt=0.1).is_stable()


def test_simulation_equals_kernel_convolution_both_conventions(rng):
    n, m, p, L = 5, 2, 2, 30
    A, B, C = random_stable(n, m, p, discrete=True, rng=rng, radius=0.8)
    M = random_sym(p, n, rng)
    D = rng.standard_normal((p, m))
    u = rng.standard_normal((L, m))
    for conv in ("current", "standard"):
        s = ml.LQOSystem(A, B, C, M=M, D=D, dt=1.0, convention=conv)
        y = s.simulate(u)
        h1 = s.impulse_response(L)
        lin = np.array([sum(h1[i] @ u[k - i] for i in range(k + 1)) for k in range(L)])
        h2 = ml.LQOSystem(A, B, C, M=M, dt=1.0).quadratic_kernel(L)
        # quadratic kernel is in the current convention; standard shifts by one lag
        quad = np.zeros((L, p))
        for k in range(L):
            shift = 0 if conv == "current" else 1
            for i1 in range(k + 1 - shift):
                for i2 in range(k + 1 - shift):
                    quad[k] += np.einsum("a,jab,b->j", u[k - shift - i1], h2[i1, i2], u[k - shift - i2])
        np.testing.assert_allclose(y, lin + quad, rtol=1e-10, atol=1e-10)
    # y^(b)_k = y^(a)_{k+1} without D
    sa = ml.LQOSystem(A, B, C, M=M, dt=1.0, convention="standard")
    sb = ml.LQOSystem(A, B, C, M=M, dt=1.0, convention="current")
    np.testing.assert_allclose(sb.simulate(u)[:-1], sa.simulate(u)[1:], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sb.simulate(u, convention="standard"), sa.simulate(u), atol=1e-12)


def test_conjugate_pairs_is_exact_real_system_and_realify_matches(rng):
    n, L = 4, 40
    lam = 0.9 * np.exp(1j * rng.uniform(0, np.pi, n)) * rng.uniform(0.5, 1, n)
    B = rng.standard_normal((n, 1)) + 1j * rng.standard_normal((n, 1))
    C = rng.standard_normal((1, n)) + 1j * rng.standard_normal((1, n))
    U = rng.standard_normal((2, n)) + 1j * rng.standard_normal((2, n))
    M = (U.conj().T @ U)[None]
    s = ml.LQOSystem.conjugate_pairs(lam, B, C, M=M, D=[[0.3]], dt=1.0, scale=2.0)
    assert s.order == 2 * n and s.is_real_output and s.is_diagonal
    u = rng.standard_normal((L, 1))
    # direct recursion of the stored half system
    x = np.zeros(n, complex)
    y_ref = []
    for k in range(L):
        x = lam * x + B[:, 0] * u[k, 0]
        y_ref.append(2 * np.real(C[0] @ x) + np.real(x.conj() @ M[0] @ x) + 0.3 * u[k, 0])
    y = s.simulate(u)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y[:, 0], y_ref, rtol=1e-12, atol=1e-12)
    r = s.realify()
    assert not r.is_complex and r.order == 2 * n
    np.testing.assert_allclose(r.simulate(u), y, rtol=1e-11, atol=1e-11)


def test_python_control_round_trip_discrete_current_convention(rng):
    A, B, C = random_stable(6, 2, 2, discrete=True, rng=rng)
    D = rng.standard_normal((2, 2))
    s = ml.LQOSystem(A, B, C, D=D, dt=0.5)  # current-input convention
    cs = s.to_control()
    u = rng.standard_normal((25, 2))
    resp = ct.forced_response(cs, U=u.T, T=np.arange(25) * 0.5)
    np.testing.assert_allclose(resp.outputs.T, s.simulate(u), rtol=1e-10, atol=1e-10)
    back = ml.LQOSystem.from_control(cs)
    assert back.convention == "standard" and back.dt == 0.5
    np.testing.assert_allclose(back.simulate(u), s.simulate(u), rtol=1e-10, atol=1e-10)


def test_continuous_simulation_matches_python_control(rng):
    A, B, C = random_stable(5, 1, 2, discrete=False, rng=rng)
    s = ml.LQOSystem(A, B, C)
    t = np.linspace(0, 3, 61)
    u = np.sin(3 * t)[:, None]
    cs = s.to_control()
    # python-control uses linear interpolation by default; compare against its ZOH discretisation
    dsys = ct.sample_system(cs, t[1] - t[0], method="zoh")
    ref = ct.forced_response(dsys, U=u.T, T=t).outputs.T
    np.testing.assert_allclose(s.simulate(u, t=t), ref, rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError):
        s.simulate(u)


def test_project_sub_similarity(rng):
    n, r = 6, 3
    A, B, C = random_stable(n, 2, 2, discrete=True, rng=rng)
    M = random_sym(2, n, rng)
    s = ml.LQOSystem(A, B, C, M=M, dt=1.0)
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    W = rng.standard_normal((n, r))
    rom = s.project(V, W)
    E = W.T @ V
    np.testing.assert_allclose(rom.A, np.linalg.solve(E, W.T @ A @ V), atol=1e-12)
    np.testing.assert_allclose(rom.M, np.einsum("na,jnk,kb->jab", V, M, V), atol=1e-12)
    err = s - rom
    assert err.order == n + r
    u = rng.standard_normal((15, 2))
    np.testing.assert_allclose(err.simulate(u), s.simulate(u) - rom.simulate(u), atol=1e-11)
    T = rng.standard_normal((n, n)) + 3 * np.eye(n)
    st = s.similarity(T)
    np.testing.assert_allclose(st.simulate(u), s.simulate(u), rtol=1e-9, atol=1e-9)


def test_mismatched_time_domains_raise(rng):
    A, B, C = random_stable(3, 1, 1, discrete=True, rng=rng)
    s1 = ml.LQOSystem(A, B, C, dt=1.0)
    with pytest.raises(errors.SamplingTimeError):
        s1 - ml.LQOSystem(A, B, C, dt=0.5)
    with pytest.raises(errors.SamplingTimeError):
        s1 - ml.LQOSystem(A - 2 * np.eye(3), B, C)
    with pytest.raises(errors.SamplingTimeError):
        s1 - ml.LQOSystem(A, B, C, dt=1.0, convention="standard")
    with pytest.raises(errors.ShapeError):
        s1 - ml.LQOSystem(A, np.ones((3, 2)), C, dt=1.0)


@pytest.mark.parametrize("kind", ["lti", "lqo", "diagonal", "discrete-standard", "complex"])
def test_systems_survive_a_pickle_round_trip(kind):
    """Process pools and dask ship systems by pickle; the copy is equal, of the same class, immutable."""
    import pickle

    rng = np.random.default_rng(0)
    A, B, C = -np.eye(3) + 0.1 * rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), rng.standard_normal((1, 3))
    M = np.eye(3)[None]
    sys = {"lti": lambda: ml.LQOSystem(A, B, C),
           "lqo": lambda: ml.LQOSystem(A, B, C, M=M, D=np.ones((1, 2))),
           "diagonal": lambda: ml.LQOSystem.diagonal(np.array([-1.0, -2.0, -3.0 + 1j]), B, C),
           "discrete-standard": lambda: ml.LQOSystem(A / 3, B, C, M=M, dt=0.5, convention="standard"),
           "complex": lambda: ml.LQOSystem(A + 1j * A, B, C, M=M)}[kind]()
    ml.h2_norm(sys)  # fills the cache, which must not travel
    copy = pickle.loads(pickle.dumps(sys))
    assert type(copy) is type(sys) and copy.is_diagonal == sys.is_diagonal
    for name in ("A", "B", "C", "D"):
        assert np.array_equal(getattr(copy, name), getattr(sys, name))
    assert (copy.M is None) == (sys.M is None) and (copy.M is None or np.array_equal(copy.M, sys.M))
    assert (copy.dt, copy.convention) == (sys.dt, sys.convention)
    assert ml.h2_norm(copy) == ml.h2_norm(sys)
    assert not copy.A.flags.writeable
