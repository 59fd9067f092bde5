"""Balanced truncation (LTI square-root BT and LQO-BT): oracles and edge cases.

Independent references: python-control ``balred``/``hsvd`` and SLICOT ``ab09ad`` (Hammarling factors,
continuous *and* discrete via ``dico='D'``), a dense scipy-based BT written here (complex systems),
sampled H-infinity errors against the a-priori bound, and the realification identity.
"""

from __future__ import annotations

import warnings

import control as ct
import numpy as np
import pytest
import scipy.io as sio
import scipy.linalg as sla
from conftest import ADVECDIFF
from hypothesis import given, settings
from hypothesis import strategies as st

from mor_lqo import LQOSystem, h2_error, h2_norm
from mor_lqo.errors import OrderError, UnstableSystemError
from mor_lqo.gramians import hankel_singular_values
from mor_lqo.reduction.balanced import (
    HSVSplitWarning,
    balanced_truncation,
    gramian_factor,
)

slycot = pytest.importorskip("slycot")


def _stable(n, m, p, *, discrete, rng, complex_=False, radius=0.8, shift=0.3):
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    B = rng.standard_normal((n, m))
    C = rng.standard_normal((p, n))
    if complex_:
        A = A + 1j * rng.standard_normal((n, n)) / np.sqrt(n)
        B = B + 1j * rng.standard_normal((n, m))
        C = C + 1j * rng.standard_normal((p, n))
    lam = np.linalg.eigvals(A)
    if discrete:
        A = A * (radius / np.max(np.abs(lam)))
    else:
        A = A - (np.max(lam.real) + shift) * np.eye(n)
    return A, B, C


def _separated_orders(hsv, candidates, ratio=1.3):
    """Orders r with sigma_r / sigma_{r+1} >= ratio (well-defined, well-conditioned truncations)."""
    return [r for r in candidates if hsv[r - 1] >= ratio * hsv[r]]


def _ab09ad(sys: LQOSystem, r: int):
    """SLICOT square-root BT (Hammarling factors); dico from the system. Returns (rom, hsv)."""
    A, B, C = (np.array(x, dtype=float, order="F") for x in (sys.A, sys.B, sys.C))
    dico = "D" if sys.is_discrete else "C"
    nr, Ar, Br, Cr, hsv = slycot.ab09ad(dico, "B", "N", sys.n, sys.m, sys.p, A, B, C, nr=r, tol=0.0)
    assert nr == r
    rom = LQOSystem(Ar, Br, Cr, D=sys.D, dt=sys.dt, convention=sys.convention)
    return rom, hsv


_S_GRID = 1j * np.concatenate([[0.0], np.logspace(-2, 2, 40)])


def _tf(sys: LQOSystem, s: complex) -> np.ndarray:
    return sys.C @ np.linalg.solve(s * np.eye(sys.n) - sys.A, sys.B)


def _hinf_sampled(sys: LQOSystem, rom: LQOSystem, npts=400) -> float:
    """max over a frequency grid of ||G(s) - G_r(s)||_2 (a lower bound of the H-infinity error)."""
    if sys.is_discrete:
        z = np.exp(1j * np.linspace(-np.pi, np.pi, npts))
    else:
        w = np.concatenate([[0.0], np.logspace(-3, 3, npts)])
        z = 1j * np.concatenate([-w[::-1], w])
    worst = 0.0
    for s in z:
        G = sys.C @ np.linalg.solve(s * np.eye(sys.n) - sys.A, sys.B)
        Gr = rom.C @ np.linalg.solve(s * np.eye(rom.n) - rom.A, rom.B)
        worst = max(worst, np.linalg.norm(G - Gr, 2))
    return worst


def _dense_bt_reference(sys: LQOSystem, r: int):
    """Independent square-root BT: scipy Lyapunov/Stein solvers, eigen factors, SVD (works for complex)."""
    A, B, C = sys.A, sys.B, sys.C
    if sys.is_discrete:
        P = sla.solve_discrete_lyapunov(A, B @ B.conj().T)
        Q = sla.solve_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    else:
        P = sla.solve_continuous_lyapunov(A, -B @ B.conj().T)
        Q = sla.solve_continuous_lyapunov(A.conj().T, -C.conj().T @ C)

    def fac(X):
        w, V = np.linalg.eigh((X + X.conj().T) / 2)
        keep = w > 0
        return V[:, keep] * np.sqrt(w[keep])

    U, L = fac(P), fac(Q)
    Z, s, Yh = np.linalg.svd(U.conj().T @ L)
    V = U @ Z[:, :r] / np.sqrt(s[:r])
    W = L @ Yh[:r].conj().T / np.sqrt(s[:r])
    rom = LQOSystem(W.conj().T @ A @ V, W.conj().T @ B, C @ V, D=sys.D, dt=sys.dt, convention=sys.convention)
    return rom, s


# --------------------------------------------------------------------------------------------------
# real continuous systems: python-control balred / hsvd and SLICOT
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_control_balred_continuous(seed):
    rng = np.random.default_rng(seed)
    sys = LQOSystem(*_stable(30, 2, 3, discrete=False, rng=rng))
    hsv_ct = np.sort(np.abs(ct.hsvd(sys.to_control())))[::-1]
    orders = _separated_orders(hsv_ct, range(2, 13))
    assert len(orders) >= 3
    for r in orders:
        res = balanced_truncation(sys, r)
        rb = LQOSystem.from_control(ct.balred(sys.to_control(), r))
        e_ct = h2_error(sys, rb)
        assert res.method == "bt" and res.rom.order == r and not res.rom.is_complex
        # the error is a difference of O(||S||^2) numbers: its rounding floor is eps (||S|| / err)^2
        floor = np.finfo(float).eps * (h2_norm(sys) / e_ct) ** 2
        assert res.h2_error == pytest.approx(e_ct, rel=1e-10 + 50 * floor)
        # the two ROMs are the same model: transfer functions agree far below the error
        diff = max(np.linalg.norm(_tf(res.rom, z) - _tf(rb, z)) for z in _S_GRID)
        err = max(np.linalg.norm(_tf(sys, z) - _tf(res.rom, z)) for z in _S_GRID)
        assert diff <= 1e-9 * err
        assert res.h2_error == pytest.approx(h2_error(sys, res.rom), rel=1e-12)
        assert res.h2_norm == pytest.approx(h2_norm(sys), rel=1e-13)
        _, hsv_sly = _ab09ad(sys, r)
        assert res.error_bound == pytest.approx(2 * np.sum(hsv_sly[r:]), rel=1e-9)
    # HSVs: SLICOT's Hammarling factors (accurate far down the tail) and python-control's
    # sqrt(eig(P Q)), whose small values carry ~sqrt(eps) * sigma_1 noise
    big = hsv_sly >= 1e-6 * hsv_sly[0]
    np.testing.assert_allclose(res.hsv[big], hsv_sly[big], rtol=1e-9, atol=1e-12 * hsv_sly[0])
    top = hsv_ct >= 1e-3 * hsv_ct[0]
    np.testing.assert_allclose(res.hsv[top], hsv_ct[top], rtol=1e-8)
    np.testing.assert_allclose(res.hsv, hankel_singular_values(sys), rtol=1e-6, atol=1e-9 * res.hsv[0])


def test_error_bound_dominates_sampled_hinf_error():
    rng = np.random.default_rng(7)
    for discrete in (False, True):
        sys = LQOSystem(*_stable(16, 2, 2, discrete=discrete, rng=rng), dt=0.5 if discrete else 0.0)
        for r in (2, 5, 8):
            res = balanced_truncation(sys, r)
            hinf = _hinf_sampled(sys, res.rom)
            assert hinf <= res.error_bound * (1 + 1e-8)
            assert hinf >= res.hsv[r] * (1 - 1e-6)  # H-infinity error >= sigma_{r+1} (Hankel-norm bound)


# --------------------------------------------------------------------------------------------------
# discrete time: dt and convention kept, SLICOT dico='D' oracle, python-control reduces as continuous
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("convention", ["current", "standard"])
def test_discrete_matches_slycot_and_keeps_dt(convention):
    rng = np.random.default_rng(3)
    A, B, C = _stable(24, 2, 2, discrete=True, rng=rng, radius=0.9)
    D = rng.standard_normal((2, 2))
    sys = LQOSystem(A, B, C, D=D, dt=0.01, convention=convention)
    res0 = balanced_truncation(sys, 2)
    for r in _separated_orders(res0.hsv, range(2, 10)):
        res = balanced_truncation(sys, r)
        assert res.rom.dt == 0.01 and res.rom.convention == convention and res.rom.is_discrete
        np.testing.assert_array_equal(res.rom.D, D)
        ref, hsv_sly = _ab09ad(sys, r)
        assert res.h2_error == pytest.approx(h2_error(sys, ref), rel=1e-8)
        big = hsv_sly >= 1e-6 * hsv_sly[0]
        np.testing.assert_allclose(res.hsv[big], hsv_sly[big], rtol=1e-9, atol=1e-12 * hsv_sly[0])
        assert res.rom.is_stable()


def test_discrete_beats_python_control():
    """balred reduces a discrete system as if it were continuous (and drops dt): our error is smaller."""
    rng = np.random.default_rng(4)
    n = 20
    # poles in the left half of the unit disc: balred sees a "stable continuous" system and truncates
    lam = -0.5 + 0.3 * rng.uniform(-1, 1, n) + 0.2j * rng.uniform(-1, 1, n)
    lam = np.concatenate([lam[: n // 2], lam[: n // 2].conj()])
    T = rng.standard_normal((n, n))
    A = np.real(T @ np.diag(lam) @ np.linalg.inv(T))
    sys = LQOSystem(A, rng.standard_normal((n, 1)), rng.standard_normal((1, n)), dt=0.1,
                    convention="standard")
    for r in (2, 4, 6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rb = ct.balred(sys.to_control(), r)
        assert rb.dt == 0  # python-control returns a continuous-time model
        rb_d = LQOSystem(rb.A, rb.B, rb.C, D=rb.D, dt=0.1, convention="standard")
        ours = balanced_truncation(sys, r)
        theirs = h2_error(sys, rb_d) if rb_d.is_stable() else np.inf
        assert ours.h2_error < theirs
        assert ours.rom.dt == 0.1


# --------------------------------------------------------------------------------------------------
# stability, LQO with M = 0, complex systems, conjugate pairs
# --------------------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), discrete=st.booleans(), n=st.integers(6, 18))
def test_property_rom_stable_and_error_consistent(seed, discrete, n):
    rng = np.random.default_rng(seed)
    sys = LQOSystem(*_stable(n, 2, 2, discrete=discrete, rng=rng), dt=1.0 if discrete else 0.0)
    hsv = balanced_truncation(sys, 1).hsv
    for r in _separated_orders(hsv, range(1, n), ratio=1.01)[:4]:
        res = balanced_truncation(sys, r)
        assert res.rom.is_stable()
        assert res.h2_error == pytest.approx(h2_error(sys, res.rom), rel=1e-10)
        assert np.isfinite(res.h2_error) and res.h2_error <= h2_norm(sys) * 1.5


@pytest.mark.parametrize("discrete", [False, True])
def test_lqo_bt_with_zero_m_equals_lti_bt(discrete):
    rng = np.random.default_rng(5)
    A, B, C = _stable(20, 2, 2, discrete=discrete, rng=rng)
    dt = 0.2 if discrete else 0.0
    lti = LQOSystem(A, B, C, dt=dt)
    lqo = LQOSystem(A, B, C, M=np.zeros((2, 20, 20)), dt=dt)
    for r in (3, 6):
        a, b = balanced_truncation(lti, r), balanced_truncation(lqo, r)
        assert (a.method, b.method) == ("bt", "lqo-bt")
        assert b.error_bound is None and a.error_bound is not None
        np.testing.assert_allclose(b.hsv, a.hsv, rtol=1e-12, atol=1e-14 * a.hsv[0])
        assert b.h2_error == pytest.approx(a.h2_error, rel=1e-10)
        assert np.all(b.rom.M == 0)
        # same reduced input-output map (up to a state transformation)
        assert h2_error(a.rom, LQOSystem(b.rom.A, b.rom.B, b.rom.C, dt=dt)) <= 1e-7 * h2_norm(a.rom)


@pytest.mark.parametrize("discrete", [False, True])
def test_complex_system_against_dense_reference(discrete):
    rng = np.random.default_rng(6)
    A, B, C = _stable(18, 2, 2, discrete=discrete, rng=rng, complex_=True)
    sys = LQOSystem(A, B, C, dt=0.3 if discrete else 0.0)
    for r in (2, 5, 9):
        res = balanced_truncation(sys, r)
        ref, s = _dense_bt_reference(sys, r)
        assert res.rom.is_complex and res.rom.order == r and res.rom.is_stable()
        np.testing.assert_allclose(res.hsv[:12], s[:12], rtol=1e-8)
        assert res.h2_error == pytest.approx(h2_error(sys, ref), rel=1e-7)
        assert _hinf_sampled(sys, res.rom, npts=200) <= res.error_bound * (1 + 1e-8)


def test_complex_diagonal_system_against_dense_reference():
    rng = np.random.default_rng(8)
    n = 16
    lam = np.exp(-rng.uniform(0.05, 1.0, n) + 1j * rng.uniform(-np.pi, np.pi, n))
    B = rng.standard_normal((n, 1)) + 1j * rng.standard_normal((n, 1))
    C = rng.standard_normal((1, n)) + 1j * rng.standard_normal((1, n))
    sys = LQOSystem.diagonal(lam, B, C, dt=1.0)
    dense = LQOSystem(np.diag(lam), B, C, dt=1.0)
    for r in (2, 4, 7):
        res = balanced_truncation(sys, r)
        ref, s = _dense_bt_reference(dense, r)
        assert res.h2_error == pytest.approx(h2_error(dense, ref), rel=1e-7)
        np.testing.assert_allclose(res.hsv[:8], s[:8], rtol=1e-8)


@pytest.mark.parametrize("lqo", [False, True])
@pytest.mark.parametrize("scale", [2.0, 1.0])
@pytest.mark.parametrize("discrete", [False, True])
def test_conjugate_pairs_reduce_through_realify(scale, discrete, lqo):
    """Closed-form Gramians of the 2n form mapped to [Re x; Im x] == dense Gramians of realify()."""
    rng = np.random.default_rng(9)
    n = 10
    if discrete:
        lam = np.exp(-rng.uniform(0.05, 0.5, n) + 1j * rng.uniform(0, 3, n))
    else:
        lam = -rng.uniform(0.1, 1.0, n) + 1j * rng.uniform(-3, 3, n)
    B = rng.standard_normal((n, 2)) + 1j * rng.standard_normal((n, 2))
    C = rng.standard_normal((2, n)) + 1j * rng.standard_normal((2, n))
    D = rng.standard_normal((2, 2)) if discrete else None
    M = None
    if lqo:
        M = rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n))
        M = 0.1 * (M + np.conj(np.swapaxes(M, 1, 2)))
    sys = LQOSystem.conjugate_pairs(lam, B, C, M=M, D=D, dt=0.5 if discrete else 0.0, scale=scale)
    real = sys.realify()
    for r in (2, 3, 6):
        a, b = balanced_truncation(sys, r), balanced_truncation(real, r)
        assert not a.rom.is_complex and a.info["realified"]
        assert a.rom.order == r and a.rom.dt == sys.dt and a.rom.has_quadratic == lqo
        np.testing.assert_allclose(a.hsv, b.hsv, rtol=1e-12, atol=1e-14 * b.hsv[0])
        assert a.h2_error == pytest.approx(b.h2_error, rel=1e-10)
        # the error is that of the real input-output map: independent evaluation on the 2n form
        assert a.h2_error == pytest.approx(h2_error(sys, a.rom), rel=1e-8)


# --------------------------------------------------------------------------------------------------
# LQO-BT on the advection-diffusion benchmark
# --------------------------------------------------------------------------------------------------
def _advecdiff():
    d = sio.loadmat(ADVECDIFF)
    return LQOSystem(d["A"], d["B"].astype(np.float64), d["Clin"], M=d["Mquad"])


@pytest.fixture(scope="module")
def advec():
    return _advecdiff()


def _check_decreasing(sys, orders):
    errs = []
    for r in orders:
        res = balanced_truncation(sys, r)
        assert res.method == "lqo-bt" and res.error_bound is None
        assert res.rom.is_stable() and res.rom.has_quadratic and not res.rom.is_complex
        errs.append(res.relative_error**2)
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:])), errs
    return errs


def test_advecdiff_lqo_bt_errors_decrease(advec):
    errs = _check_decreasing(advec, (2, 6, 10, 16))
    assert errs[0] < 1 and errs[-1] < 1e-3


@pytest.mark.slow
def test_advecdiff_lqo_bt_errors_decrease_full(advec):
    _check_decreasing(advec, range(2, 31, 2))


@pytest.mark.slow
def test_advecdiff_against_independent_lqo_bt(advec):
    """LQO-BT via scipy's Lyapunov solver and eigen factors (docs/theory.md §7.2)."""
    A, B, C, M = advec.A, advec.B, advec.C, advec.M[0]
    P = sla.solve_continuous_lyapunov(A, -B @ B.T)
    Q = sla.solve_continuous_lyapunov(A.T, -(C.T @ C + M @ P @ M))
    res = balanced_truncation(advec, 8)
    s = np.sqrt(np.abs(np.sort(np.linalg.eigvals(P @ Q).real)[::-1]))
    np.testing.assert_allclose(res.hsv[:8], s[:8], rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# validation, warnings, projection, factors
# --------------------------------------------------------------------------------------------------
def test_order_validation_and_errors():
    rng = np.random.default_rng(10)
    sys = LQOSystem(*_stable(6, 1, 1, discrete=False, rng=rng))
    for bad in (0, 6, 7, -1, 2.0, True):
        with pytest.raises(OrderError):
            balanced_truncation(sys, bad)
    with pytest.raises(TypeError):
        balanced_truncation(sys.A, 2)
    unstable = LQOSystem(np.diag([-1.0, 0.5, -2.0]), np.ones((3, 1)), np.ones((1, 3)))
    with pytest.raises(UnstableSystemError):
        balanced_truncation(unstable, 1)
    marginal = LQOSystem(np.diag([0.5, 1.0]), np.ones((2, 1)), np.ones((1, 2)), dt=1.0)
    with pytest.raises(UnstableSystemError):
        balanced_truncation(marginal, 1)


def test_r_above_hankel_rank_raises():
    # modes 2 and 3 are uncontrollable: the Hankel operator has rank 1
    sys = LQOSystem.diagonal([-1.0, -2.0, -3.0], [[1.0], [0.0], [0.0]], [[1.0, 1.0, 1.0]])
    assert balanced_truncation(sys, 1).h2_error <= 1e-7 * h2_norm(sys)
    with pytest.raises(OrderError, match="numerical rank"):
        balanced_truncation(sys, 2)


def test_repeated_hsv_split_warns():
    rng = np.random.default_rng(11)
    A, B, C = _stable(4, 1, 1, discrete=False, rng=rng)
    Z = np.zeros_like(A)
    sys = LQOSystem(np.block([[A, Z], [Z, A]]), sla.block_diag(B, B), sla.block_diag(C, C))
    with pytest.warns(HSVSplitWarning):
        balanced_truncation(sys, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HSVSplitWarning)
        balanced_truncation(sys, 2)  # keeps both copies: no split


@pytest.mark.parametrize("discrete", [False, True])
def test_return_projection(discrete):
    rng = np.random.default_rng(12)
    A, B, C = _stable(12, 2, 2, discrete=discrete, rng=rng)
    M = rng.standard_normal((2, 12, 12))
    M = M + np.swapaxes(M, 1, 2)
    sys = LQOSystem(A, B, C, M=M, dt=1.0 if discrete else 0.0)
    res = balanced_truncation(sys, 4, return_projection=True)
    V, W = res.info["V"], res.info["W"]
    np.testing.assert_allclose(W.T @ V, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(res.rom.A, W.T @ A @ V, atol=1e-10 * np.abs(A).max())
    np.testing.assert_allclose(res.rom.B, W.T @ B, atol=1e-10 * np.abs(B).max() * np.abs(W).max())
    np.testing.assert_allclose(res.rom.C, C @ V)
    np.testing.assert_allclose(res.rom.M, np.einsum("na,jnk,kb->jab", V, sys.M, V), rtol=1e-10, atol=1e-12)
    assert "V" not in balanced_truncation(sys, 4).info


def test_inputs_not_modified():
    rng = np.random.default_rng(13)
    A, B, C = _stable(10, 1, 1, discrete=True, rng=rng)
    A0, B0, C0 = A.copy(), B.copy(), C.copy()
    balanced_truncation(LQOSystem(A, B, C, dt=1.0), 3)
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(B, B0)
    np.testing.assert_array_equal(C, C0)


@pytest.mark.parametrize("complex_", [False, True])
def test_gramian_factor_semidefinite(complex_):
    rng = np.random.default_rng(14)
    n, k = 30, 7
    X = rng.standard_normal((n, k)) + (1j * rng.standard_normal((n, k)) if complex_ else 0)
    G = X @ X.conj().T
    G = G - 1e-15 * np.abs(G).max() * np.eye(n)  # slightly indefinite, like a rounded Gramian
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(G)
    Z = gramian_factor(G)
    assert Z.shape[0] == n and k <= Z.shape[1] < n
    assert np.iscomplexobj(Z) == complex_
    assert np.abs(Z @ Z.conj().T - G).max() <= 1e-13 * np.abs(G).max()
    assert gramian_factor(np.zeros((4, 4))).shape[0] == 4
