"""h2 errors of nearly equal systems, true relative errors 1e-3 ... 1e-12 (accuracy: 1e-6 or ~1e-13 ||S||).

Oracle (exact by construction): S = S1 (+) delta S2 (block diagonal, S2's output scaled by delta) and
S^ = a similarity transform of S1, so S - S^ = delta S2 and the true error is delta ||S2||, an h2 norm
computed without any cancellation. slycot ``ab13bd`` on the explicit error system is checked too
(continuous and discrete, real systems), as a peer.
"""

from __future__ import annotations

import numpy as np
import pytest

import mor_lqo as ml
from mor_lqo.errors import NumericalAccuracyError, RelativeErrorUndefinedError


def _pair(rng, n1, n2, discrete, complex_, delta, exact_similarity=False, convention="current"):
    def stable(n):
        A = rng.standard_normal((n, n)) / np.sqrt(n)
        if complex_:
            A = A + 1j * rng.standard_normal((n, n)) / np.sqrt(n)
        if discrete:
            return 0.8 * A / max(abs(np.linalg.eigvals(A)))
        return A - (max(np.linalg.eigvals(A).real) + 0.3) * np.eye(n)

    def rnd(*shape):
        X = rng.standard_normal(shape)
        return X + 1j * rng.standard_normal(shape) if complex_ else X

    A1, A2 = stable(n1), stable(n2)
    B1, B2, C1, C2 = rnd(n1, 2), rnd(n2, 2), rnd(2, n1), rnd(2, n2)
    D = rnd(2, 2) if discrete else np.zeros((2, 2))
    Z = np.zeros((n1, n2))
    A = np.block([[A1, Z], [Z.T, A2]])
    kw = {"dt": 1.0, "convention": convention} if discrete else {}
    full = ml.LQOSystem(A, np.vstack([B1, B2]), np.hstack([C1, delta * C2]), D=D, **kw)
    if exact_similarity:  # a permutation times powers of two: T A1 T^-1 is formed without rounding
        perm, scale = rng.permutation(n1), 2.0 ** rng.integers(-3, 4, n1)
        T = np.eye(n1)[perm] * scale
        Ti = (np.eye(n1)[perm] / scale).T
        assert np.array_equal(T @ Ti, np.eye(n1))
    else:  # rounding in T A1 T^-1 perturbs the true error by ~eps cond(T) ||S||
        T = np.eye(n1) + 0.3 * rng.standard_normal((n1, n1))
        Ti = np.linalg.inv(T)
    rom = ml.LQOSystem(T @ A1 @ Ti, T @ B1, C1 @ Ti, D=D, **kw)
    part = ml.LQOSystem(A2, B2, C2, **kw)
    # exact error: delta * ||S2|| (no feed-through in S2; in the current convention h_0 = C2 B2 is included)
    return full, rom, delta * ml.h2_norm(part)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("rel", [1e-3, 1e-6, 1e-8, 1e-10, 1e-12])
def test_tiny_errors_are_resolved(discrete, complex_, rel):
    _, rom, part_norm = _pair(np.random.default_rng(7), 12, 3, discrete, complex_, 1.0)
    delta = rel * ml.h2_norm(rom) / part_norm  # relative error about `rel` (||S|| ~ ||S^|| for small delta)
    full, rom, exact = _pair(np.random.default_rng(7), 12, 3, discrete, complex_, delta)
    # accuracy: 1e-6 relative, or the absolute floor of the factored route, ~1e-13 ||S|| (measured up to
    # 5e-14 ||S||: rounding in the Hammarling factor of the error system), whichever is larger. The
    # cancelling route of before was off by 100 % already at rel = 1e-9.
    tol = max(1e-6, 2e-13 / rel)
    got = ml.h2_error(full, rom)
    assert got == pytest.approx(exact, rel=tol, abs=0)
    assert ml.h2_error(full, rom, relative=True) == pytest.approx(exact / ml.h2_norm(full), rel=tol, abs=0)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("convention", [None, "standard", "current"])
@pytest.mark.parametrize("rel", [1e-3, 1e-6, 1e-9, 1e-12])
def test_relative_accuracy_1e_6_down_to_errors_of_1e_12(convention, complex_, rel):
    """S^ exactly similar to S1, so the error of the data is exactly delta ||S2||: accuracy 1e-6 relative.

    Measured: <= 1e-8 at rel = 1e-12 in all six cases (double-double residual refinement); the factored
    route alone erred by up to 5 % there, the cancelling route by 100 % from 1e-9 on.
    """
    discrete = convention is not None
    args = (12, 3, discrete, complex_)
    kw = {"exact_similarity": True, "convention": convention or "current"}
    _, rom, part_norm = _pair(np.random.default_rng(7), *args, 1.0, **kw)
    delta = rel * ml.h2_norm(rom) / part_norm
    full, rom, exact = _pair(np.random.default_rng(7), *args, delta, **kw)
    assert ml.h2_error(full, rom) == pytest.approx(exact, rel=1e-6, abs=0)


@pytest.mark.parametrize("discrete", [False, True])
def test_equal_systems_have_error_zero(discrete):
    """The refined value of an exactly zero error is a few eps^2 of the cancelling terms either side of 0:
    reported as 0, never NaN (sqrt of a negative) — and an exactly similar ROM gives 0 or a rounding-level
    value."""
    kw = {"exact_similarity": True}
    full, rom, _ = _pair(np.random.default_rng(5), 6, 2, discrete, False, 0.0, **kw)
    assert ml.h2_error(full, full) == 0.0
    assert 0.0 <= ml.h2_error(full, rom) <= 1e-14 * ml.h2_norm(full)


def test_relative_accuracy_on_a_larger_system():
    """Order 60 + 5 against 60, true relative error 1e-11 (real continuous; the refinement is O(m^3))."""
    kw = {"exact_similarity": True}
    _, rom, part_norm = _pair(np.random.default_rng(11), 60, 5, False, False, 1.0, **kw)
    delta = 1e-11 * ml.h2_norm(rom) / part_norm
    full, rom, exact = _pair(np.random.default_rng(11), 60, 5, False, False, delta, **kw)
    assert ml.h2_error(full, rom) == pytest.approx(exact, rel=1e-6, abs=0)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("rel", [1e-3, 1e-7, 1e-11])
def test_against_slycot_ab13bd_on_the_error_system(discrete, rel):
    slycot = pytest.importorskip("slycot")
    rng = np.random.default_rng(3)
    full, rom, exact = _pair(rng, 10, 2, discrete, False, rel)
    std = full.to_control() if discrete else None
    stdr = rom.to_control() if discrete else None
    if discrete:  # the standard-convention realisations of both maps, then the explicit error system
        A1, B1, C1, D1 = std.A, std.B, std.C, std.D
        A2, B2, C2, D2 = stdr.A, stdr.B, stdr.C, stdr.D
    else:
        A1, B1, C1, D1 = full.A, full.B, full.C, full.D
        A2, B2, C2, D2 = rom.A, rom.B, rom.C, rom.D
    n1, n2 = A1.shape[0], A2.shape[0]
    Ae = np.block([[A1, np.zeros((n1, n2))], [np.zeros((n2, n1)), A2]])
    Be, Ce, De = np.vstack([B1, B2]), np.hstack([C1, -C2]), D1 - D2
    ref = slycot.ab13bd("D" if discrete else "C", "H", Ae.shape[0], 2, 2, Ae.copy(), Be.copy(), Ce.copy(),
                        De.copy())
    got = ml.h2_error(full, rom)
    tol = max(1e-6, 2e-13 / rel)
    assert got == pytest.approx(exact, rel=tol, abs=0)
    # ab13bd (Hammarling on the explicit error system) is a peer with a similar absolute floor
    assert got == pytest.approx(ref, rel=2 * tol, abs=0)


def test_relative_error_refuses_infinite_and_zero_norms():
    rng = np.random.default_rng(0)
    A = -np.eye(3) + 0.1 * rng.standard_normal((3, 3))
    S = ml.LQOSystem(A, np.ones((3, 1)), np.ones((1, 3)), D=np.ones((1, 1)))
    R = ml.LQOSystem(A[:2, :2], np.ones((2, 1)), np.ones((1, 2)), D=np.ones((1, 1)))
    assert np.isfinite(ml.h2_error(S, R))  # D cancels: the absolute error is defined
    with pytest.raises(RelativeErrorUndefinedError, match="infinite"):
        ml.h2_error(S, R, relative=True)
    Z = ml.LQOSystem(A, np.ones((3, 1)), np.zeros((1, 3)))
    with pytest.raises(RelativeErrorUndefinedError, match="norm 0"):
        ml.h2_error(Z, ml.LQOSystem(A[:2, :2], np.ones((2, 1)), np.zeros((1, 2))), relative=True)
    assert issubclass(NumericalAccuracyError, ml.errors.MorLqoError)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("convention", [None, "standard", "current"])
@pytest.mark.parametrize("rel", [1e-3, 1e-6, 1e-9])
def test_lqo_pairs_resolve_small_errors(convention, complex_, rel):
    """LQO pairs take the factored route for small linear or quadratic parts: the quadratic error is a
    sum of squares of Z^T M_e Z. Before, the quadratic part cancelled: measured relative accuracy ~1e-1
    at rel = 1e-9 (absolute floor ~sqrt(eps) ||S||); now max(1e-6, 2e-13 / rel)."""
    discrete = convention is not None
    rng = np.random.default_rng(4)
    n1, n2 = 10, 3
    perm, scale = rng.permutation(n1), 2.0 ** rng.integers(-3, 4, n1)
    T = np.eye(n1)[perm] * scale
    Ti = (np.eye(n1)[perm] / scale).T
    A1, A2 = (_pair(rng, n, 1, discrete, complex_, 1.0)[1].A for n in (n1, n2))

    def rnd(*shape):
        X = rng.standard_normal(shape)
        return X + 1j * rng.standard_normal(shape) if complex_ else X

    def herm(n):
        X = rnd(2, n, n)
        return X + X.conj().transpose(0, 2, 1)

    B1, B2, C1, C2, M1, M2 = rnd(n1, 2), rnd(n2, 2), rnd(2, n1), rnd(2, n2), herm(n1), herm(n2)
    kw = {"dt": 1.0, "convention": convention} if discrete else {}
    part = ml.LQOSystem(A2, B2, C2, M=M2, **kw)
    rom = ml.LQOSystem(T @ A1 @ Ti, T @ B1, C1 @ Ti, M=Ti.T @ M1 @ Ti, **kw)  # Ti real: Ti^H = Ti^T
    delta = rel * ml.h2_norm(rom) / ml.h2_norm(part)
    Z = np.zeros((n1, n2))
    M = np.stack([np.block([[M1[j], Z], [Z.T, delta * M2[j]]]) for j in range(2)])
    full = ml.LQOSystem(np.block([[A1, Z], [Z.T, A2]]), np.vstack([B1, B2]), np.hstack([C1, delta * C2]), M=M, **kw)
    exact = delta * ml.h2_norm(part)
    assert ml.h2_error(full, rom) == pytest.approx(exact, rel=max(1e-6, 2e-13 / rel), abs=0)
