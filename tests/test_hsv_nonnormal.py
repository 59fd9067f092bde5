"""Hankel singular values and BT error bounds of strongly non-normal systems.

Oracle: an extended-precision reference — both Gramians solved in mpmath at 60 digits (Kronecker form
of the Lyapunov equations), HSVs = sqrt(eig(PQ)) in mpmath. Forming the Gramians in double precision and
factoring them afterwards was off by up to 150 sigma_1 here; the Hammarling factors agree to ~1e-15,
real (SB03OD) and complex (complex Schur form), continuous and discrete, LTI and LQO.
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


def _kron_operator_complex(Am, n: int, discrete: bool):
    """mpmath matrix of X -> Am X + X Am^H (continuous) or Am X Am^H - X (discrete) on column-major vec X:
    I kron Am + conj(Am) kron I, resp. conj(Am) kron Am - I."""
    K = -mpmath.eye(n * n) if discrete else mpmath.zeros(n * n, n * n)
    for a in range(n):
        for b in range(n):
            for c in range(n):
                if discrete:
                    for d in range(n):
                        K[a + b * n, c + d * n] += Am[a, c] * mpmath.conj(Am[b, d])
                else:
                    K[a + b * n, c + b * n] += Am[a, c]
                    K[a + b * n, a + c * n] += mpmath.conj(Am[b, c])
    return K


def reference_hsv_complex(A, B, C, M=None, discrete: bool = False, dps: int = 60) -> np.ndarray:
    """HSVs of a complex (LQO) system, both Gramians solved in mpmath at ``dps`` digits:
    A P + P A^H + BB^H = 0, A^H Q + Q A + C^H C + sum_j M_j P M_j = 0 (discrete: A P A^H - P + ...)."""
    with mpmath.workdps(dps):
        n = A.shape[0]

        def gramian(Am, rhs):
            v = mpmath.lu_solve(_kron_operator_complex(Am, n, discrete),
                                mpmath.matrix([-rhs[a, b] for b in range(n) for a in range(n)]))
            return mpmath.matrix([[v[a + b * n] for b in range(n)] for a in range(n)])

        Am = mpmath.matrix(A.tolist())
        P = gramian(Am, mpmath.matrix((B @ B.conj().T).tolist()))
        rhs = mpmath.matrix((C.conj().T @ C).tolist())
        for Mj in [] if M is None else M:
            Mm = mpmath.matrix(Mj.tolist())
            rhs += Mm * P * Mm
        Q = gramian(Am.H, rhs)
        ev = mpmath.eig(P * Q, left=False, right=False)
        return np.sort([float(mpmath.sqrt(abs(mpmath.re(e)))) for e in ev])[::-1]


NC = 5  # order of the complex family (the Kronecker reference costs O(NC^6) in 60-digit arithmetic)


def nonnormal_complex(seed: int, scale: float, discrete: bool = False):
    """Complex strongly non-normal family: triu(randn + i randn, 1) * scale plus a stable diagonal
    (continuous: Re lambda in -0.001 - Exp(1); discrete: |lambda| uniform in [0.05, 0.95])."""
    rng = np.random.default_rng(200 + seed)
    U = np.triu(rng.standard_normal((NC, NC)) + 1j * rng.standard_normal((NC, NC)), 1) * scale
    if discrete:
        lam = rng.uniform(0.05, 0.95, NC) * np.exp(2j * np.pi * rng.uniform(size=NC))
    else:
        lam = -0.001 - rng.exponential(size=NC) + 1j * rng.standard_normal(NC)
    B = rng.standard_normal((NC, 1)) + 1j * rng.standard_normal((NC, 1))
    C = rng.standard_normal((1, NC)) + 1j * rng.standard_normal((1, NC))
    return U + np.diag(lam), B, C


def hinf_error_sampled_complex(A, B, C, rom) -> float:
    """H-infinity error of a complex system on +-1201 log-spaced frequencies, refined at the peak
    (the response of a complex system is not conjugate-symmetric: both signs of omega are sampled)."""
    n = A.shape[0]

    def gain(w):
        s = 1j * w
        g = C @ np.linalg.solve(s * np.eye(n) - A, B)
        gr = rom.C @ np.linalg.solve(s * np.eye(rom.n) - rom.A, rom.B)
        return float(np.abs(g - gr).max())

    pos = 10.0 ** np.linspace(-6, 6, 1201)
    grid = np.concatenate([-pos[::-1], [0.0], pos])
    vals = np.array([gain(w) for w in grid])
    k = int(np.argmax(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    peak = minimize_scalar(lambda w: -gain(w), bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    return max(vals.max(), -peak.fun)


def _check_complex(seed, scale):
    A, B, C = nonnormal_complex(seed, scale)
    ref = reference_hsv_complex(A, B, C)
    sys = ml.LQOSystem(A, B, C)
    # 1e-10 sigma_1: the target; measured <= 1e-15 sigma_1 (the real representation: 7e-8 ... 1.6e-6,
    # the formed Gramians: up to 1.2e-2)
    np.testing.assert_allclose(ml.hankel_singular_values(sys), ref, rtol=0, atol=1e-10 * ref[0])
    for r in (1, 3):
        res = ml.balanced_truncation(sys, r)
        np.testing.assert_allclose(res.hsv, ref, rtol=0, atol=1e-10 * ref[0])
        assert res.error_bound == pytest.approx(2 * ref[r:].sum(), rel=1e-9, abs=1e-10 * ref[0])
        assert hinf_error_sampled_complex(A, B, C, res.rom) <= res.error_bound * (1 + 1e-9)


@pytest.mark.parametrize("seed,scale", _cases(range(4)))
def test_complex_nonnormal_systems(seed, scale):
    """Complex dense non-normal systems: Hammarling's method on the complex Schur form."""
    _check_complex(seed, scale)


@pytest.mark.slow
@pytest.mark.parametrize("seed,scale", _cases(range(4, 54)))
def test_complex_nonnormal_systems_100(seed, scale):
    _check_complex(seed, scale)


def _check_complex_discrete(seed, scale):
    A, B, C = nonnormal_complex(seed, scale, discrete=True)
    ref = reference_hsv_complex(A, B, C, discrete=True)
    sys = ml.LQOSystem(A, B, C, dt=1.0, convention="standard")
    # measured <= 6e-16 sigma_1 (formed Gramians: 0.1 ... 0.33 sigma_1)
    np.testing.assert_allclose(ml.hankel_singular_values(sys), ref, rtol=0, atol=1e-10 * ref[0])


@pytest.mark.parametrize("seed", range(2))
def test_complex_discrete_nonnormal_systems(seed):
    _check_complex_discrete(seed, 1e2)


@pytest.mark.slow
@pytest.mark.parametrize("seed,scale", _cases(range(2, 22)))
def test_complex_discrete_nonnormal_systems_40(seed, scale):
    _check_complex_discrete(seed, scale)


@pytest.mark.parametrize("discrete", [False, True])
def test_complex_lqo_nonnormal_systems(discrete):
    """Complex LQO systems: the quadratic term enters Q through K = [C; W_P M_j] (M_j Hermitian)."""
    A, B, C = nonnormal_complex(7, 100.0, discrete)
    rng = np.random.default_rng(9)
    M = rng.standard_normal((2, NC, NC)) + 1j * rng.standard_normal((2, NC, NC))
    M = (M + M.conj().transpose(0, 2, 1)) / 2
    C2 = np.vstack([C, C[:, ::-1]])
    ref = reference_hsv_complex(A, B, C2, M=M, discrete=discrete)
    sys = ml.LQOSystem(A, B, C2, M=M, **({"dt": 1.0, "convention": "standard"} if discrete else {}))
    np.testing.assert_allclose(ml.hankel_singular_values(sys), ref, rtol=0, atol=1e-10 * ref[0])
