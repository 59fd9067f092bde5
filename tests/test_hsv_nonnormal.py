"""Hankel singular values and BT error bounds of strongly non-normal systems.

Oracle: an extended-precision reference — both Gramians solved in mpmath at 60 digits (Kronecker form
of the Lyapunov equations), HSVs = sqrt(eig(PQ)) in mpmath. Forming the Gramians in double precision and
factoring them afterwards was off by up to 150 sigma_1 here; the Hammarling factors agree to ~1e-15.
The BT error bound 2 sum_{i>r} sigma_i must lie above the H-infinity error, sampled on a dense
logarithmic frequency grid and refined around its peak.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import mor_lqo as ml

mpmath = pytest.importorskip("mpmath")
N = 7


def nonnormal(seed: int, scale: float):
    rng = np.random.default_rng(seed)
    A = np.triu(rng.standard_normal((N, N)), 1) * scale + np.diag(-0.001 - rng.exponential(size=N))
    return A, rng.standard_normal((N, 1)), rng.standard_normal((1, N))


def _kron_operator(Am, n: int, discrete: bool):
    """mpmath matrix of X -> Am X + X Am^T (continuous) or Am X Am^T - X (discrete) on column-major vec X."""
    K = -mpmath.eye(n * n) if discrete else mpmath.zeros(n * n, n * n)
    for a in range(n):
        for b in range(n):
            for c in range(n):
                if discrete:
                    for d in range(n):
                        K[a + b * n, c + d * n] += Am[a, c] * Am[b, d]
                else:
                    K[a + b * n, c + b * n] += Am[a, c]
                    K[a + b * n, a + c * n] += Am[b, c]
    return K


def reference_hsv(A, B, C, discrete: bool = False, dps: int = 60) -> np.ndarray:
    """sqrt(eig(PQ)), both Gramians solved in mpmath at ``dps`` digits through the Kronecker form of the
    Lyapunov (continuous) or Stein (discrete) equations."""
    with mpmath.workdps(dps):
        n = A.shape[0]

        def gramian(Am, rhs):
            v = mpmath.lu_solve(_kron_operator(Am, n, discrete),
                                mpmath.matrix([-rhs[a, b] for b in range(n) for a in range(n)]))
            return mpmath.matrix([[v[a + b * n] for b in range(n)] for a in range(n)])

        Am = mpmath.matrix(A.tolist())
        P = gramian(Am, mpmath.matrix((B @ B.T).tolist()))
        Q = gramian(Am.T, mpmath.matrix((C.T @ C).tolist()))
        ev = mpmath.eig(P * Q, left=False, right=False)
        return np.sort([float(mpmath.sqrt(abs(mpmath.re(e)))) for e in ev])[::-1]


def hinf_error_sampled(A, B, C, rom) -> float:
    def gain(logw):
        s = 1j * 10.0**logw
        g = C @ np.linalg.solve(s * np.eye(N) - A, B)
        gr = rom.C @ np.linalg.solve(s * np.eye(rom.n) - rom.A, rom.B)
        return float(np.abs(g - gr).max())

    grid = np.linspace(-6, 6, 1201)
    vals = np.array([gain(w) for w in grid])
    k = int(np.argmax(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    peak = minimize_scalar(lambda w: -gain(w), bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return max(vals.max(), -peak.fun)


def _cases(seeds):
    return [(seed, scale) for scale in (1e2, 1e3) for seed in seeds]


def _check(seed, scale):
    A, B, C = nonnormal(seed, scale)
    sys = ml.LQOSystem(A, B, C)
    ref = reference_hsv(A, B, C)
    ours = ml.hankel_singular_values(sys)
    # 1e-10 sigma_1: the target; measured errors are ~1e-15 sigma_1 (double rounding of the factors)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10 * ref[0])
    for r in (2, 4):
        res = ml.balanced_truncation(sys, r)
        np.testing.assert_allclose(res.hsv, ref, rtol=0, atol=1e-10 * ref[0])
        assert res.error_bound == pytest.approx(2 * ref[r:].sum(), rel=1e-9, abs=1e-10 * ref[0])
        assert hinf_error_sampled(A, B, C, res.rom) <= res.error_bound * (1 + 1e-9)


@pytest.mark.parametrize("seed,scale", _cases(range(6)))
def test_hsv_and_bound_of_nonnormal_systems(seed, scale):
    _check(seed, scale)


@pytest.mark.slow
@pytest.mark.parametrize("seed,scale", _cases(range(6, 100)))
def test_hsv_and_bound_of_nonnormal_systems_100(seed, scale):
    _check(seed, scale)


@pytest.mark.parametrize("seed", range(4))
def test_discrete_hsv_of_nonnormal_systems(seed):
    rng = np.random.default_rng(100 + seed)
    A = np.triu(rng.standard_normal((N, N)), 1) * 30 + np.diag(rng.uniform(-0.95, 0.95, N))
    B, C = rng.standard_normal((N, 2)), rng.standard_normal((2, N))
    ref = reference_hsv(A, B, C, discrete=True)
    sys = ml.LQOSystem(A, B, C, dt=1.0, convention="standard")
    np.testing.assert_allclose(ml.hankel_singular_values(sys), ref, rtol=0, atol=1e-10 * ref[0])


def test_current_convention_hsvs_are_those_of_the_state_hankel_operator():
    """Documented choice (docs/numerics.md): a current-convention system x_k = A x_{k-1} + B u_k, y_k = C x_k
    is balanced on (A, B, C): its HSVs are the singular values of the Hankel operator of the *state*,
    H[i, j] = C A^(i+j) B (inputs up to and including time 0 -> outputs from time 0 on), whose rank is the
    minimal current-convention order. slycot/MATLAB on ``to_control()`` = (A, B, CA, D + CB) see the
    strictly-future operator C A^(i+j+1) B instead, which misses e.g. a mode at lambda = 0."""
    rng = np.random.default_rng(11)
    n = 6
    A = rng.standard_normal((n, n))
    A *= 0.6 / max(abs(np.linalg.eigvals(A)))
    B, C = rng.standard_normal((n, 1)), rng.standard_normal((1, n))
    sys = ml.LQOSystem(A, B, C, dt=1.0)
    assert sys.convention == "current"
    k = 80  # 0.6^160 ~ 1e-36: the truncated Hankel matrices are exact to rounding
    h = [(C @ np.linalg.matrix_power(A, j) @ B).item() for j in range(2 * k + 1)]
    state = np.linalg.svd([[h[i + j] for j in range(k)] for i in range(k)], compute_uv=False)[:n]
    strict = np.linalg.svd([[h[i + j + 1] for j in range(k)] for i in range(k)], compute_uv=False)[:n]
    ours = ml.hankel_singular_values(sys)
    np.testing.assert_allclose(ours, state, rtol=0, atol=1e-12 * state[0])
    std = sys.to_control()  # (A, B, CA, D + CB): its Gramian HSVs are the strictly-future ones
    np.testing.assert_allclose(ml.hankel_singular_values(ml.LQOSystem(std.A, std.B, std.C, dt=1.0,
                                                                      convention="standard")),
                               strict, rtol=0, atol=1e-12 * strict[0])
    assert np.max(np.abs(strict - ours)) > 1e-3 * ours[0]
    # a mode at lambda = 0 is invisible to the strictly-future operator, not to the state operator
    Z = ml.LQOSystem(np.zeros((1, 1)), np.ones((1, 1)), np.ones((1, 1)), dt=1.0)
    assert ml.hankel_singular_values(Z)[0] == pytest.approx(1.0, rel=1e-14)
    assert np.allclose(Z.to_control().C, 0.0)


def reference_hsv_complex(A, B, C, dps: int = 60) -> np.ndarray:
    """HSVs of a complex continuous system: A P + P A^H + BB^H = 0, A^H Q + Q A + C^H C = 0 in mpmath."""
    with mpmath.workdps(dps):
        n = A.shape[0]

        def lyap(Am, rhs):  # vec(Am X + X Am^H) = (I kron Am + conj(Am) kron I) vec X (column-major)
            K = mpmath.zeros(n * n, n * n)
            for a in range(n):
                for b in range(n):
                    for c in range(n):
                        K[a + b * n, c + b * n] += Am[a, c]
                        K[a + b * n, a + c * n] += mpmath.conj(Am[b, c])
            v = mpmath.lu_solve(K, mpmath.matrix([-rhs[a, b] for b in range(n) for a in range(n)]))
            return mpmath.matrix([[v[a + b * n] for b in range(n)] for a in range(n)])

        Am = mpmath.matrix(A.tolist())
        P = lyap(Am, mpmath.matrix((B @ B.conj().T).tolist()))
        Q = lyap(Am.H, mpmath.matrix((C.conj().T @ C).tolist()))
        ev = mpmath.eig(P * Q, left=False, right=False)
        return np.sort([float(mpmath.sqrt(abs(mpmath.re(e)))) for e in ev])[::-1]


@pytest.mark.parametrize("seed", range(3))
def test_complex_nonnormal_systems(seed):
    """Complex dense non-normal systems go through the real representation: measured 7e-8 ... 1.6e-6 sigma_1
    on these (the formed Gramians: up to 1.2e-2 sigma_1). Short of the real case's 1e-15: the real
    representation is a harder Lyapunov problem for Hammarling's method (documented miss)."""
    rng = np.random.default_rng(200 + seed)
    n = 5
    U = np.triu(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)), 1) * 100
    A = U + np.diag(-0.001 - rng.exponential(size=n) + 1j * rng.standard_normal(n))
    B = rng.standard_normal((n, 1)) + 1j * rng.standard_normal((n, 1))
    C = rng.standard_normal((1, n)) + 1j * rng.standard_normal((1, n))
    ref = reference_hsv_complex(A, B, C)
    sys = ml.LQOSystem(A, B, C)
    np.testing.assert_allclose(ml.hankel_singular_values(sys), ref, rtol=0, atol=1e-5 * ref[0])
    res = ml.balanced_truncation(sys, 2)
    np.testing.assert_allclose(res.hsv, ref, rtol=0, atol=1e-5 * ref[0])
