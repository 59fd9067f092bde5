"""Tests of the Cauchy-type diagonal kernels (mor_lqo.kernels.cauchy*).

Oracles: the explicit-K numpy reference, scipy Lyapunov/Sylvester solvers on diag(lam), scalar closed
forms, brute-force lag sums sum_t ||C A^t B||^2, and algebraic properties (Hermitian symmetry,
scaling, monotonicity in the horizon, thread-count invariance).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from hypothesis import given, settings
from hypothesis import strategies as st

from mor_lqo.errors import DTypeError, NonFiniteError, ShapeError
from mor_lqo.kernels import cauchy_numba as cn
from mor_lqo.kernels.cauchy import cauchy_inner, cauchy_matrix, cauchy_norm2, cross_gramian_diag
from mor_lqo.kernels.cauchy_reference import (
    cauchy_inner_ref,
    cauchy_matrix_ref,
    cauchy_norm2_ref,
)

RTOL = 1e-12


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def rand_system(rng, n, m, p, *, discrete=True, real=False, rho=0.9, batch=None):
    """Random stable diagonal system: |lam| <= rho (discrete) or Re lam <= -0.05 (continuous)."""
    sh = () if batch is None else (batch,)
    if discrete:
        r = rho * np.sqrt(rng.uniform(0.0, 1.0, sh + (n,)))
        lam = r * (
            np.sign(rng.standard_normal(sh + (n,))) if real else np.exp(2j * np.pi * rng.uniform(size=sh + (n,)))
        )
    else:
        lam = -rng.uniform(0.05, 2.0, sh + (n,))
        if not real:
            lam = lam + 1j * rng.uniform(-3.0, 3.0, sh + (n,))
    B = rng.standard_normal(sh + (n, m))
    C = rng.standard_normal(sh + (p, n))
    if not real:
        B = B + 1j * rng.standard_normal(sh + (n, m))
        C = C + 1j * rng.standard_normal(sh + (p, n))
    return lam, B, C


def abs_scale(lam1, B1, C1, lam2, B2, C2, discrete, horizon=None):
    """sum_ik |K_ik| |B1_i . conj B2_k| |C1_i . conj C2_k|: the natural scale of rounding errors."""
    K = cauchy_matrix_ref(lam1, lam2, discrete, horizon)
    U = B1 @ np.conj(np.swapaxes(B2, -1, -2))
    V = np.swapaxes(C1, -1, -2) @ np.conj(C2)
    return np.sum(np.abs(K) * np.abs(U) * np.abs(V), axis=(-2, -1))


def powers(lam, T):
    """lam**t for t < T by repeated multiplication, shape (T, n) (an independent route to powers)."""
    out = np.empty((T,) + lam.shape, dtype=complex)
    cur = np.ones_like(lam, dtype=complex)
    for t in range(T):
        out[t] = cur
        cur = cur * lam
    return out


def brute_inner(lam1, B1, C1, lam2, B2, C2, T):
    """sum_{t<T} <C1 A1^t B1, C2 A2^t B2>_F (complex; the truncated lag sum)."""
    P1 = powers(lam1, T)
    P2 = powers(lam2, T)
    H1 = np.einsum("pi,ti,im->tpm", C1, P1, B1)
    H2 = np.einsum("pi,ti,im->tpm", C2, P2, B2)
    return np.sum(H1 * np.conj(H2))


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b)))


CASES = [  # (discrete, horizon)
    (True, None),
    (False, None),
    (True, 1),
    (True, 9),
    (True, 257),
]
SHAPES = [(1, 1), (1, 6), (2, 3), (4, 3)]  # Kronecker form (m p <= m + p + 2) and two-dot form


# ----------------------------------------------------------------------------------------------------
# numba == reference
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("discrete,horizon", CASES)
@pytest.mark.parametrize("m,p", SHAPES)
@pytest.mark.parametrize("real", [False, True])
def test_single_matches_reference(discrete, horizon, m, p, real):
    rng = np.random.default_rng(10 * m + p + (100 if real else 0))
    s1 = rand_system(rng, 300, m, p, discrete=discrete, real=real)  # > BLOCK: several blocks per row
    s2 = rand_system(rng, 37, m, p, discrete=discrete, real=real)
    val = cauchy_inner(*s1, *s2, discrete, horizon)
    ref = cauchy_inner_ref(*s1, *s2, discrete, horizon)
    assert isinstance(val, complex)
    assert abs(val - ref) <= RTOL * abs(ref)
    # swapped order: inner(2, 1) = conj(inner(1, 2))
    val21 = cauchy_inner(*s2, *s1, discrete, horizon)
    assert abs(val21 - np.conj(ref)) <= RTOL * abs(ref)
    nrm = cauchy_norm2(*s1, discrete, horizon)
    nref = cauchy_norm2_ref(*s1, discrete, horizon)
    assert isinstance(nrm, float)
    assert nrm > 0
    assert abs(nrm - nref) <= RTOL * nref


@pytest.mark.parametrize("discrete,horizon", CASES)
@pytest.mark.parametrize("m,p", [(1, 1), (3, 4)])
# row layout batch-parallel / per-system loop / lane layout (two chunks of LANES = 128 systems)
@pytest.mark.parametrize("n1,n2,N", [(13, 7, 6), (300, 260, 2), (9, 5, 130)])
def test_batched_matches_reference(discrete, horizon, m, p, n1, n2, N):
    rng = np.random.default_rng(n1 + N + m)
    s1 = rand_system(rng, n1, m, p, discrete=discrete, batch=N)
    s2 = rand_system(rng, n2, m, p, discrete=discrete, batch=N)
    val = cauchy_inner(*s1, *s2, discrete, horizon)
    ref = cauchy_inner_ref(*s1, *s2, discrete, horizon)
    assert val.shape == (N,) and val.dtype == np.complex128
    assert np.all(np.abs(val - ref) <= RTOL * np.abs(ref))
    nrm = cauchy_norm2(*s1, discrete, horizon)
    nref = cauchy_norm2_ref(*s1, discrete, horizon)
    assert nrm.shape == (N,) and nrm.dtype == np.float64
    assert np.all(np.abs(nrm - nref) <= RTOL * nref)
    # batch entries equal the single-system results (up to rounding: the layouts may differ)
    scale = abs_scale(*s1, *s1, discrete, horizon)
    for s in range(N):
        single = cauchy_norm2(s1[0][s], s1[1][s], s1[2][s], discrete, horizon)
        assert abs(single - nrm[s]) <= 1e-14 * scale[s]


@pytest.mark.parametrize("serial_work", [0, 1 << 62])  # force parallel / serial kernels
@pytest.mark.parametrize(
    "N,n1,n2",
    [
        (None, 290, 270),  # single system
        (2, 290, 270),  # few large systems: row-parallel kernel per system
        (12, 290, 270),  # batch-parallel row layout
        (130, 20, 9),  # lane layout, a full and a partial chunk
    ],
)
def test_all_dispatch_paths(monkeypatch, serial_work, N, n1, n2):
    from mor_lqo.kernels import cauchy as cmod

    monkeypatch.setattr(cmod, "SERIAL_WORK", serial_work)
    rng = np.random.default_rng(7 + (N or 0))
    qcost = 2  # m = 2, p = 1: Kronecker form
    assert cmod._use_lanes(N or 0, n2, qcost) == cmod._use_lanes(N or 0, n1 / 2, qcost) == (N == 130)
    for discrete, horizon in [(True, None), (True, 40), (False, None)]:
        s1 = rand_system(rng, n1, 2, 1, discrete=discrete, batch=N)
        s2 = rand_system(rng, n2, 2, 1, discrete=discrete, batch=N)
        val = cauchy_inner(*s1, *s2, discrete, horizon)
        ref = cauchy_inner_ref(*s1, *s2, discrete, horizon)
        assert np.all(np.abs(val - ref) <= RTOL * np.abs(ref))
        nrm = cauchy_norm2(*s1, discrete, horizon)
        nref = cauchy_norm2_ref(*s1, discrete, horizon)
        assert np.all(np.abs(nrm - nref) <= RTOL * nref)
        assert np.shape(val) == np.shape(nrm) == (() if N is None else (N,))


def test_kernel_modes_agree_on_kernel_paths():
    """Kronecker and two-dot factor forms give the same value (both are exercised by dispatch)."""
    from mor_lqo.kernels import cauchy as cmod

    assert cmod._PAD == cn.PAD and cn.BLOCK % cn.PAD == 0
    rng = np.random.default_rng(3)
    lam, B, C = rand_system(rng, 50, 3, 3)
    tau2 = cmod._tau2(None)
    Lp = cmod._pack_lam(lam, True, None, cmod._log_radius(np.sqrt(tau2), lam))
    vals = []
    for kron in (True, False):
        U, V = cmod._pack_factors(B, C, kron)
        vals.append(cn.norm2_single(cn.MODE_DISCRETE, 0, tau2, Lp, U, V))
        re, im = cn.inner_single(cn.MODE_DISCRETE, 0, tau2, Lp, U, V, Lp, U, V)
        vals.append(re)
        assert abs(im) <= 1e-13 * re
    assert np.ptp(vals) <= 1e-13 * vals[0]


def test_thread_count_invariance():
    """Row results are reduced in a fixed order: bitwise identical for 1 and all threads."""
    import numba

    rng = np.random.default_rng(4)
    s1 = rand_system(rng, 700, 1, 2)
    s2 = rand_system(rng, 500, 1, 2)
    nthreads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a1, b1 = cauchy_norm2(*s1, True), cauchy_inner(*s1, *s2, True)
    finally:
        numba.set_num_threads(nthreads)
    a2, b2 = cauchy_norm2(*s1, True), cauchy_inner(*s1, *s2, True)
    assert a1 == a2 and b1 == b2


def test_large_single_system_accuracy():
    """n = 2048 (a few ms): streamed sums stay at rounding level of the explicit reference."""
    rng = np.random.default_rng(5)
    lam, B, C = rand_system(rng, 2048, 1, 1, rho=0.999)
    assert abs(cauchy_norm2(lam, B, C, True) / cauchy_norm2_ref(lam, B, C, True) - 1) <= RTOL


# ----------------------------------------------------------------------------------------------------
# independent routes
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("real", [False, True])
@pytest.mark.parametrize("m,p", [(1, 1), (2, 3), (4, 4)])
def test_norm_equals_lyapunov_trace(real, m, p):
    rng = np.random.default_rng(20 + m * p)
    for discrete in (True, False):
        lam, B, C = rand_system(rng, 12, m, p, discrete=discrete, real=real)
        A = np.diag(lam)
        if discrete:
            P = sla.solve_discrete_lyapunov(A, B @ B.conj().T)  # A P A^H - P + B B^H = 0
        else:
            P = sla.solve_continuous_lyapunov(A, -B @ B.conj().T)  # A P + P A^H + B B^H = 0
        want = np.real(np.trace(C @ P @ C.conj().T))
        assert abs(cauchy_norm2(lam, B, C, discrete) - want) <= 1e-11 * want


@pytest.mark.parametrize("discrete", [True, False])
def test_inner_equals_sylvester_trace(discrete):
    rng = np.random.default_rng(21)
    lam1, B1, C1 = rand_system(rng, 9, 2, 3, discrete=discrete)
    lam2, B2, C2 = rand_system(rng, 5, 2, 3, discrete=discrete)
    A1, A2h = np.diag(lam1), np.diag(lam2).conj().T
    Q = B1 @ B2.conj().T
    if discrete:  # X = A1 X A2^H + Q, via vec(A1 X A2^H) = (conj(A2) kron A1) vec(X), column-major
        Kr = np.kron(A2h.T, A1)
        X = np.linalg.solve(np.eye(Kr.shape[0]) - Kr, Q.reshape(-1, order="F")).reshape(Q.shape, order="F")
        res = A1 @ X @ A2h - X + Q
    else:
        X = sla.solve_sylvester(A1, A2h, -Q)
        res = A1 @ X + X @ A2h + Q
    assert np.linalg.norm(res) <= 1e-12 * np.linalg.norm(Q)
    Xd = cross_gramian_diag(lam1, B1, lam2, B2, discrete)
    assert np.linalg.norm(Xd - X) <= 1e-12 * np.linalg.norm(X)
    want = np.trace(C1 @ X @ C2.conj().T)
    assert abs(cauchy_inner(lam1, B1, C1, lam2, B2, C2, discrete) - want) <= 1e-12 * abs(want)


def test_scalar_closed_forms():
    one = np.ones((1, 1))
    assert cauchy_norm2([0.5], one, one, True) == pytest.approx(4.0 / 3.0, rel=1e-15)
    for a, b, c in [(0.5, 1.0, 1.0), (2.0, 3.0, -0.5), (1e-3, 1.0, 2.0)]:
        want = b**2 * c**2 / (2 * a)
        got = cauchy_norm2([-a], [[b]], [[c]], False)
        assert got == pytest.approx(want, rel=1e-15)
    lam, b, c = 0.3 + 0.8j, 1.5 - 0.5j, 0.25 + 2j  # complex discrete scalar: |b c|^2 / (1 - |lam|^2)
    want = abs(b * c) ** 2 / (1 - abs(lam) ** 2)
    assert cauchy_norm2([lam], [[b]], [[c]], True) == pytest.approx(want, rel=1e-14)
    # scalar cross term b1 c1 conj(b2 c2) / (1 - lam1 conj lam2)
    want = 1.5 * 2.0 * np.conj((1 - 1j) * 0.5) / (1 - 0.5 * np.conj(0.2 + 0.7j))
    got = cauchy_inner([0.5], [[1.5]], [[2.0]], [0.2 + 0.7j], [[1 - 1j]], [[0.5]], True)
    assert abs(got - want) <= 1e-15 * abs(want)


@pytest.mark.parametrize("m,p", [(1, 1), (2, 3), (4, 4)])
def test_brute_force_lag_sum(m, p):
    """sum_{t<400} ||C A^t B||^2 at rho <= 0.85 (tail < 0.85^800 ~ 1e-57)."""
    rng = np.random.default_rng(30 + m + p)
    s1 = rand_system(rng, 20, m, p, rho=0.85)
    s2 = rand_system(rng, 11, m, p, rho=0.85)
    T = 400
    want = np.real(brute_inner(*s1, *s1, T))
    assert abs(cauchy_norm2(*s1, True) - want) <= 1e-12 * want
    want12 = brute_inner(*s1, *s2, T)
    assert abs(cauchy_inner(*s1, *s2, True) - want12) <= 1e-12 * abs(want12)


def _exact_discrete_norm2(lam, b, c):
    """sum_ik b_i c_i conj(b_k c_k) / (1 - lam_i conj lam_k) in exact rational arithmetic (SISO, real b c)."""
    from fractions import Fraction as Fr

    g = [Fr(float(bi)) * Fr(float(ci)) for bi, ci in zip(b, c)]
    re = [Fr(float(x.real)) for x in lam]
    im = [Fr(float(x.imag)) for x in lam]
    total = Fr(0)
    for i in range(len(lam)):
        for k in range(len(lam)):
            xr = 1 - (re[i] * re[k] + im[i] * im[k])
            xi = re[i] * im[k] - im[i] * re[k]
            total += g[i] * g[k] * xr / (xr * xr + xi * xi)  # real part of g_i g_k conj(x) / |x|^2
    return float(total)


@pytest.mark.parametrize("N", [None, 24])  # row layout / lane layout
def test_near_unit_circle_accuracy(N):
    """Modes 1e-9 .. 1e-4 inside the unit circle: K_ii = 1 / (1 - |lam|^2) is resolved to full
    relative accuracy (the naive 1 - |lam|^2 would lose up to 1e-7 relative)."""
    rng = np.random.default_rng(45)
    nsys = N or 1
    n = 6
    lam = (1 - 10 ** rng.uniform(-9, -4, (nsys, n))) * np.exp(
        2j * np.pi * (np.arange(n) / n + 0.01 * rng.uniform(size=(nsys, n)))
    )
    b = rng.uniform(0.5, 1.5, (nsys, n))
    c = rng.uniform(0.5, 1.5, (nsys, n))
    want = np.array([_exact_discrete_norm2(lam[s], b[s], c[s]) for s in range(nsys)])
    args = (lam, b[..., None], c[:, None, :])
    if N is None:
        args = tuple(a[0] for a in args)
        want = want[0]
    got = cauchy_norm2(*args, True)
    assert np.all(np.abs(got - want) <= 1e-13 * want)
    ref = cauchy_norm2_ref(*args, True)
    assert np.all(np.abs(ref - want) <= 1e-13 * want)
    inner = cauchy_inner(*args, *args, True)
    assert np.all(np.abs(inner - want) <= 1e-13 * want)


@pytest.mark.parametrize("L", [1, 2, 7, 64, 300])
def test_horizon_equals_truncated_sum(L):
    rng = np.random.default_rng(40 + L)
    s1 = rand_system(rng, 25, 2, 2, rho=1.0)
    s2 = rand_system(rng, 8, 2, 2, rho=1.0)
    want = brute_inner(*s1, *s2, L)
    scale = abs_scale(*s1, *s2, True, L)
    assert abs(cauchy_inner(*s1, *s2, True, L) - want) <= 1e-13 * scale
    wn = np.real(brute_inner(*s1, *s1, L))
    assert abs(cauchy_norm2(*s1, True, L) - wn) <= 1e-13 * wn


def test_horizon_unit_circle_and_unstable_modes():
    """Marginal (|lam| = 1, repeated, lam = +-1) and unstable modes: finite-horizon sums stay exact."""
    lam = np.array(
        [1.0, -1.0, np.exp(0.3j), np.exp(0.3j), np.exp(0.3j + 1e-9j), np.exp(-2.9j), 1.02 * np.exp(1j), 0.5j]
    )
    rng = np.random.default_rng(41)
    B = rng.standard_normal((lam.size, 1)) + 1j * rng.standard_normal((lam.size, 1))
    C = rng.standard_normal((2, lam.size)) + 1j * rng.standard_normal((2, lam.size))
    for L in (1, 5, 100, 1000):
        want = np.real(brute_inner(lam, B, C, lam, B, C, L))
        got = cauchy_norm2(lam, B, C, True, L)
        ref = cauchy_norm2_ref(lam, B, C, True, L)
        assert abs(got - want) <= 1e-12 * want, (L, got, want)
        assert abs(ref - want) <= 1e-12 * want, (L, ref, want)
        wi = brute_inner(lam, B, C, lam[::-1], B[::-1], C[:, ::-1], L)
        gi = cauchy_inner(lam, B, C, lam[::-1], B[::-1], C[:, ::-1], True, L)
        assert abs(gi - wi) <= 1e-12 * abs_scale(lam, B, C, lam[::-1], B[::-1], C[:, ::-1], True, L)


def test_horizon_kernel_matches_geometric_sum():
    """K_L = sum_{t<L} z^t entrywise, including entries in the near-one (expm1) branch."""
    lam1 = np.array([0.999 * np.exp(0.01j), np.exp(0.5j), 0.3, -0.95, 1.0])
    lam2 = np.array([np.exp(0.5j - 1e-12), 0.99, 0.2 - 0.4j, -1.0, np.exp(-0.02j)])
    for L in (3, 50, 800):
        z = lam1[:, None] * np.conj(lam2)[None, :]
        zt = powers(z, L)
        want = np.sum(zt, axis=0)
        # both routes carry relative errors O(L eps) (z^t from rounded z); want may be exactly 0
        tol = 1e-15 * L * np.maximum(np.abs(want), 1.0)
        K = cauchy_matrix(lam1, lam2, True, L)
        assert np.all(np.abs(K - want) <= tol)
        # streamed kernel, one pair at a time (B = C = 1)
        for i in range(lam1.size):
            for k in range(lam2.size):
                v = cauchy_inner(
                    lam1[i : i + 1],
                    np.ones((1, 1)),
                    np.ones((1, 1)),
                    lam2[k : k + 1],
                    np.ones((1, 1)),
                    np.ones((1, 1)),
                    True,
                    L,
                )
                assert abs(v - want[i, k]) <= tol[i, k], (L, i, k)


def test_horizon_monotone_and_converges():
    rng = np.random.default_rng(42)
    lam, B, C = rand_system(rng, 30, 1, 3, rho=0.9)
    full = cauchy_norm2(lam, B, C, True)
    vals = [cauchy_norm2(lam, B, C, True, L) for L in (1, 2, 3, 5, 10, 30, 100, 1000)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    assert vals[0] == pytest.approx(np.linalg.norm(C @ B) ** 2, rel=1e-13)  # L = 1: ||C B||^2
    assert vals[-1] == pytest.approx(full, rel=1e-12)  # 0.9^2000 negligible
    assert vals[-2] < full


def test_cauchy_matrix_and_cross_gramian():
    rng = np.random.default_rng(50)
    lam1, B1, _ = rand_system(rng, 6, 2, 1, discrete=False)
    lam2, B2, _ = rand_system(rng, 4, 2, 1, discrete=False)
    K = cauchy_matrix(lam1, lam2, False)
    for i in range(6):
        for k in range(4):
            assert K[i, k] == -1.0 / (lam1[i] + np.conj(lam2[k]))
    Kd = cauchy_matrix(lam1 / 3, lam2 / 3, True)
    assert np.allclose(Kd, 1.0 / (1.0 - np.outer(lam1 / 3, np.conj(lam2 / 3))), rtol=1e-15, atol=0)
    X = cross_gramian_diag(lam1, B1, lam2, B2, False)
    assert np.array_equal(X, (B1 @ B2.conj().T) * K)
    # batched = stacked singles
    lb1, Bb1, _ = rand_system(rng, 5, 2, 1, batch=3)
    lb2, Bb2, _ = rand_system(rng, 4, 2, 1, batch=3)
    Xb = cross_gramian_diag(lb1, Bb1, lb2, Bb2, True, 7)
    assert Xb.shape == (3, 5, 4)
    for s in range(3):
        assert np.allclose(Xb[s], cross_gramian_diag(lb1[s], Bb1[s], lb2[s], Bb2[s], True, 7), rtol=0, atol=0)
    assert cauchy_matrix(lb1, lb2, False).shape == (3, 5, 4)


# ----------------------------------------------------------------------------------------------------
# properties
# ----------------------------------------------------------------------------------------------------
@st.composite
def system_pairs(draw):
    n1 = draw(st.integers(1, 12))
    n2 = draw(st.integers(1, 12))
    m = draw(st.integers(1, 3))
    p = draw(st.integers(1, 3))
    discrete = draw(st.booleans())
    horizon = draw(st.sampled_from([None, 1, 4, 33])) if discrete else None
    seed = draw(st.integers(0, 2**32 - 1))
    real = draw(st.booleans())
    rng = np.random.default_rng(seed)
    s1 = rand_system(rng, n1, m, p, discrete=discrete, real=real, rho=0.95)
    s2 = rand_system(rng, n2, m, p, discrete=discrete, real=real, rho=0.95)
    return s1, s2, discrete, horizon


@settings(max_examples=30, deadline=None)
@given(system_pairs())
def test_property_inner_matches_reference_and_is_hermitian(data):
    s1, s2, discrete, horizon = data
    val = cauchy_inner(*s1, *s2, discrete, horizon)
    ref = cauchy_inner_ref(*s1, *s2, discrete, horizon)
    scale = abs_scale(*s1, *s2, discrete, horizon)
    assert abs(val - ref) <= RTOL * scale
    assert abs(cauchy_inner(*s2, *s1, discrete, horizon) - np.conj(val)) <= RTOL * scale
    # sesquilinear scaling: B1 -> a B1 multiplies by a, C2 -> c C2 by conj(c)
    a, c = 0.5 - 2j, 3 + 1j
    lam1, B1, C1 = s1
    lam2, B2, C2 = s2
    scaled = cauchy_inner(lam1, a * B1, C1, lam2, B2, c * C2, discrete, horizon)
    assert abs(scaled - a * np.conj(c) * val) <= 1e-11 * abs(a * c) * scale


@settings(max_examples=30, deadline=None)
@given(system_pairs())
def test_property_norm_matches_reference_and_is_positive(data):
    (lam, B, C), _, discrete, horizon = data
    nrm = cauchy_norm2(lam, B, C, discrete, horizon)
    ref = cauchy_norm2_ref(lam, B, C, discrete, horizon)
    assert nrm > 0
    assert abs(nrm - ref) <= RTOL * ref
    inner = cauchy_inner(lam, B, C, lam, B, C, discrete, horizon)
    assert abs(inner - nrm) <= RTOL * nrm


# ----------------------------------------------------------------------------------------------------
# validation, dtypes, edge cases
# ----------------------------------------------------------------------------------------------------
def _siso(n=3):
    rng = np.random.default_rng(60)
    return rand_system(rng, n, 1, 1)


def test_shape_errors():
    lam, B, C = _siso()
    with pytest.raises(ShapeError):
        cauchy_norm2(lam, B[:2], C, True)
    with pytest.raises(ShapeError):
        cauchy_norm2(lam, B, C[:, :2], True)
    with pytest.raises(ShapeError):
        cauchy_norm2(lam, B[:, 0], C, True)  # B must be 2-D
    with pytest.raises(ShapeError):
        cauchy_norm2(lam[None, None], B, C, True)
    with pytest.raises(ShapeError):  # different m
        cauchy_inner(lam, B, C, lam, np.hstack([B, B]), C, True)
    with pytest.raises(ShapeError):  # different p
        cauchy_inner(lam, B, C, lam, B, np.vstack([C, C]), True)
    with pytest.raises(ShapeError):  # batched vs single
        cauchy_inner(lam[None], B[None], C[None], lam, B, C, True)
    with pytest.raises(ShapeError):  # different batch sizes
        cauchy_inner(lam[None], B[None], C[None], np.stack([lam, lam]), np.stack([B, B]), np.stack([C, C]), True)
    with pytest.raises(ShapeError):
        cauchy_matrix(lam[None], lam, True)
    with pytest.raises(ShapeError):
        cross_gramian_diag(lam, B, lam, np.hstack([B, B]), True)
    with pytest.raises(ValueError):  # ShapeError is a ValueError
        cross_gramian_diag(lam, B[:2], lam, B, True)


def test_dtype_and_flag_errors():
    lam, B, C = _siso()
    with pytest.raises(DTypeError):
        cauchy_norm2(np.array(["a", "b", "c"]), B, C, True)
    with pytest.raises(DTypeError):
        cauchy_norm2(lam, B.astype(object), C, True)
    with pytest.raises(NonFiniteError):
        cauchy_norm2(lam, B, C * np.nan, True)
    with pytest.raises(NonFiniteError):
        cauchy_inner(lam, B, C, np.array([np.inf, 0, 0]), B, C, True)
    with pytest.raises(ValueError):
        cauchy_norm2(lam, B, C, False, 10)  # horizon only in discrete time
    with pytest.raises(ValueError):
        cauchy_norm2(lam, B, C, True, 0)
    with pytest.raises(TypeError):
        cauchy_norm2(lam, B, C, True, 2.5)
    with pytest.raises(TypeError):
        cauchy_norm2(lam, B, C, True, True)
    with pytest.raises(TypeError):
        cauchy_norm2(lam, B, C, "yes")


def test_dtypes_and_inputs_unmodified():
    lam = np.array([0.5, -0.25])
    B = np.array([[1], [2]])  # integers -> float64
    C = np.array([[3, -1]])
    copies = [x.copy() for x in (lam, B, C)]
    want = cauchy_norm2_ref(lam.astype(complex), B.astype(complex), C.astype(complex), True)
    assert cauchy_norm2(lam, B, C, True) == pytest.approx(want, rel=1e-15)
    assert cauchy_norm2(lam.astype(np.float32), B.astype(np.float32), C.astype(np.float32), True) == pytest.approx(
        want, rel=1e-15
    )
    for x, y in zip((lam, B, C), copies):
        assert np.array_equal(x, y) and x.dtype == y.dtype
    v = cauchy_inner(lam, B, C, lam, B, C, True)
    assert isinstance(v, complex) and v.imag == 0.0
    # non-contiguous / Fortran-ordered views are fine
    rng = np.random.default_rng(61)
    lam2, B2, C2 = rand_system(rng, 40, 3, 4)
    Bf, Cf = np.asfortranarray(B2), C2[:, ::-1][:, ::-1]
    assert cauchy_norm2(lam2, Bf, Cf, True) == cauchy_norm2(lam2, B2, C2, True)


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps, reason="no extended precision")
def test_extended_precision_falls_back_to_reference():
    lam = np.array([0.5, 0.25 + 0.5j], dtype=np.clongdouble)
    B = np.ones((2, 1), dtype=np.longdouble)
    C = np.ones((1, 2), dtype=np.longdouble)
    val = cauchy_norm2(lam, B, C, True)
    assert np.asarray(val).dtype == np.longdouble
    assert abs(float(val) - cauchy_norm2(lam.astype(complex), B.astype(float), C.astype(float), True)) <= 1e-14 * float(
        val
    )
    assert np.asarray(cauchy_inner(lam, B, C, lam, B, C, True)).dtype == np.clongdouble


def test_empty_systems():
    z = np.zeros((0,))
    assert cauchy_norm2(z, np.zeros((0, 1)), np.zeros((2, 0)), True) == 0.0
    assert cauchy_inner([0.5], [[1.0]], np.zeros((0, 1)), [0.5], [[1.0]], np.zeros((0, 1)), True) == 0
    out = cauchy_norm2(np.zeros((3, 0)), np.zeros((3, 0, 1)), np.zeros((3, 1, 0)), True)
    assert out.shape == (3,) and np.all(out == 0)


def test_documented_no_stability_check():
    """Kernels stay dumb: a vanishing denominator gives inf/nan instead of an exception."""
    one = np.ones((1, 1))
    assert not np.isfinite(cauchy_norm2([1.0], one, one, True))
    assert not np.isfinite(cauchy_norm2([0.0 + 2j], one, one, False))
    assert cauchy_norm2([1.0], one, one, True, 5) == 5.0  # the horizon limit is finite


@pytest.mark.slow
def test_memory_large_system_subprocess():
    """n = 16384, p = 8: the streamed norm needs far less than 100 MB beyond the inputs."""
    import subprocess
    import sys

    code = r"""
import resource, numpy as np
from mor_lqo.kernels.cauchy import cauchy_norm2
rng = np.random.default_rng(0)
lam = 0.999 * np.sqrt(rng.uniform(size=64)) * np.exp(2j * np.pi * rng.uniform(size=64))
cauchy_norm2(lam, np.ones((64, 1)), np.ones((8, 64)), True)       # load/compile kernels
n = 16384
lam = 0.999 * np.sqrt(rng.uniform(size=n)) * np.exp(2j * np.pi * rng.uniform(size=n))
B = rng.standard_normal((n, 1)) + 1j * rng.standard_normal((n, 1))
C = rng.standard_normal((8, n)) + 1j * rng.standard_normal((8, n))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cauchy_norm2(lam, B, C, True)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra_mb = float(out.stdout.strip().splitlines()[-1])
    assert extra_mb < 50, extra_mb
