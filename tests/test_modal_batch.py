"""Modal truncation and batched reduction (reduce_batch) of many conjugate-pair channels.

Oracles: the error of a modal truncation is the norm of the discarded modes (exact decomposition);
batched results equal the single-system reducers channel by channel; the batched realified Gramians
equal the core's dense Gramians of ``sys.realify()``; continuous channels agree with python-control's
``balred`` (SLICOT ab09ad), discrete ones with SLICOT ab09ad(dico='D').
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import control as ct
import numpy as np
import pytest

from mor_lqo import LQOSystem, h2_error, h2_norm
from mor_lqo.errors import LayoutError, OrderError, ShapeError, UnstableSystemError
from mor_lqo.gramians import controllability_gramian, observability_gramian
from mor_lqo.kernels.bt_pairs_numba import gram_factors_two_factor
from mor_lqo.reduction import batch as bm
from mor_lqo.reduction.balanced import balanced_truncation
from mor_lqo.reduction.batch import BatchResult, random_s4d_channels, reduce_batch
from mor_lqo.reduction.modal import group_scores, modal_truncation, to_conjugate_pairs


def _dense_stable(n, m, p, *, discrete, rng):
    A = rng.standard_normal((n, n))
    lam = np.linalg.eigvals(A)
    A = A * (0.9 / np.abs(lam).max()) if discrete else A - (lam.real.max() + 0.5) * np.eye(n)
    return A, rng.standard_normal((n, m)), rng.standard_normal((p, n))


def _sym(p, n, rng, complex_=False):
    M = rng.standard_normal((p, n, n)) + (1j * rng.standard_normal((p, n, n)) if complex_ else 0)
    return (M + np.conj(np.swapaxes(M, 1, 2))) / 2


def _half_pairs(n, rng, *, discrete, m=1, p=1):
    if discrete:
        lam = np.exp(-rng.uniform(0.05, 0.8, n) + 1j * rng.uniform(0.1, 3.0, n))
    else:
        lam = -rng.uniform(0.1, 1.0, n) + 1j * rng.uniform(0.1, 3.0, n)
    B = rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m))
    C = rng.standard_normal((p, n)) + 1j * rng.standard_normal((p, n))
    return lam, B, C


# --------------------------------------------------------------------------------------------------
# modal truncation
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
def test_modal_diagonal_error_is_norm_of_discarded_modes(discrete, complex_):
    rng = np.random.default_rng(0)
    n = 12
    lam = rng.uniform(0.1, 0.9, n) if discrete else -rng.uniform(0.1, 2.0, n)
    B, C = rng.standard_normal((n, 2)), rng.standard_normal((2, n))
    if complex_:
        lam = lam * np.exp(1j * rng.uniform(-2, 2, n)) if discrete else lam + 1j * rng.uniform(-3, 3, n)
        B, C = B + 1j * rng.standard_normal((n, 2)), C + 1j * rng.standard_normal((2, n))
    dt = 0.1 if discrete else 0.0
    sys = LQOSystem.diagonal(lam, B, C, dt=dt)
    for r in (1, 4, 9):
        res = modal_truncation(sys, r)
        kept = res.info["kept"]
        drop = np.setdiff1d(np.arange(n), kept)
        disc = LQOSystem.diagonal(lam[drop], B[drop], C[:, drop], dt=dt)
        assert res.rom.order == r and res.rom.is_diagonal and res.rom.is_complex == complex_
        assert res.h2_error == pytest.approx(h2_norm(disc), rel=1e-9)
        # the kept modes are the r largest single-mode h2 norms (docs/theory.md §7.6)
        single = [h2_norm(LQOSystem.diagonal(lam[[i]], B[[i]], C[:, [i]], dt=dt)) for i in range(n)]
        assert set(kept) == set(np.argsort(single)[::-1][:r])


@pytest.mark.parametrize("discrete", [False, True])
def test_modal_lqo_error_equals_explicit_error_system(discrete):
    rng = np.random.default_rng(1)
    n, p = 8, 2
    lam = rng.uniform(0.1, 0.8, n) if discrete else -rng.uniform(0.2, 2.0, n)
    B, C, M = rng.standard_normal((n, 1)), rng.standard_normal((p, n)), _sym(p, n, rng)
    dt = 1.0 if discrete else 0.0
    sys = LQOSystem.diagonal(lam, B, C, M=M, dt=dt)
    for r in (2, 5):
        res = modal_truncation(sys, r)
        keep = np.zeros(n, bool)
        keep[res.info["kept"]] = True
        # S - S^ keeps all modes; its outputs lose the kept linear terms and the kept-kept block of M
        Ce, Me = C.copy(), M.copy()
        Ce[:, keep] = 0
        Me[:, keep[:, None] & keep[None, :]] = 0
        err_sys = LQOSystem.diagonal(lam, B, Ce, M=Me, dt=dt)
        assert res.h2_error == pytest.approx(h2_norm(err_sys), rel=1e-8)
        np.testing.assert_array_equal(res.rom.M, M[:, keep][:, :, keep])
        # the scores include the quadratic self-term: they equal the norms of the one-mode systems
        groups = np.stack([np.arange(n), -np.ones(n, int)], axis=1)
        sc = group_scores(lam, B, C, M, groups, discrete)
        ref = [h2_norm(LQOSystem.diagonal(lam[[i]], B[[i]], C[:, [i]], M=M[:, [i]][:, :, [i]], dt=dt)) ** 2
               for i in range(n)]
        np.testing.assert_allclose(sc, ref, rtol=1e-12)


@pytest.mark.parametrize("lqo", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
def test_modal_dense_real_keeps_pairs(discrete, lqo):
    rng = np.random.default_rng(2)
    n = 10
    A, B, C = _dense_stable(n, 2, 2, discrete=discrete, rng=rng)
    M = _sym(2, n, rng) if lqo else None
    sys = LQOSystem(A, B, C, M=M, dt=0.5 if discrete else 0.0)
    mu, X = np.linalg.eig(A)
    n_real = int(np.sum(mu.imag == 0))
    assert 0 < n_real < n  # the seed gives both kinds
    for r in range(2, n, 2):
        res = modal_truncation(sys, r)
        rom = res.rom
        assert not rom.is_complex and rom.order == r and rom.is_stable()
        # ROM poles are a conjugation-closed subset of the full poles
        poles = np.sort_complex(rom.poles())
        np.testing.assert_allclose(poles, np.sort_complex(mu[res.info["kept"]]), atol=1e-10)
        np.testing.assert_allclose(np.sort_complex(poles.conj()), poles, atol=1e-12)
        # exact error: the discarded modes (independent construction from eig)
        drop = np.setdiff1d(np.arange(n), res.info["kept"])
        Bz, Cz = np.linalg.solve(X, B), C @ X
        if not lqo:
            ref = h2_norm(LQOSystem.diagonal(mu[drop], Bz[drop], Cz[:, drop], dt=sys.dt))
        else:
            keep = np.zeros(n, bool)
            keep[res.info["kept"]] = True
            Mz = X.conj().T @ M @ X
            Mz[:, keep[:, None] & keep[None, :]] = 0
            Ce = Cz.copy()
            Ce[:, keep] = 0
            ref = h2_norm(LQOSystem.diagonal(mu, Bz, Ce, M=Mz, dt=sys.dt))
        assert res.h2_error == pytest.approx(ref, rel=1e-7)
        assert res.h2_error == pytest.approx(h2_error(sys, rom), rel=1e-12)


def test_modal_dense_odd_order_pair_split():
    # two complex pairs only: r = 1 and 3 would split a pair
    A = np.block([[np.array([[-0.1, 2.0], [-2.0, -0.1]]), np.zeros((2, 2))],
                  [np.zeros((2, 2)), np.array([[-0.5, 1.0], [-1.0, -0.5]])]])
    sys = LQOSystem(A, np.ones((4, 1)), np.ones((1, 4)))
    for r in (1, 3):
        with pytest.raises(OrderError, match="split a complex-conjugate pair"):
            modal_truncation(sys, r)
    assert modal_truncation(sys, 2).rom.order == 2
    # with one real mode added, r = 3 takes the best pair and the real mode
    A5 = np.zeros((5, 5))
    A5[:4, :4] = A
    A5[4, 4] = -3.0
    res = modal_truncation(LQOSystem(A5, np.ones((5, 1)), np.ones((1, 5))), 3)
    assert res.rom.order == 3 and np.any(np.isclose(res.rom.poles(), -3.0))


@pytest.mark.parametrize("scale", [2.0, 1.0])
@pytest.mark.parametrize("discrete", [False, True])
def test_modal_conjugate_pairs(discrete, scale):
    rng = np.random.default_rng(3)
    n = 9
    lam, B, C = _half_pairs(n, rng, discrete=discrete, m=2, p=2)
    lam[0] = lam[0].real  # a real stored mode too
    D = rng.standard_normal((2, 2)) if discrete else None
    sys = LQOSystem.conjugate_pairs(lam, B, C, D=D, dt=0.2 if discrete else 0.0, scale=scale)
    for r in (2, 6, 10):
        res = modal_truncation(sys, r)
        rom, kept = res.rom, res.info["kept"]
        assert rom.half is not None and rom.half[4] == scale and rom.order == r
        np.testing.assert_array_equal(rom.half[0], lam[kept])
        np.testing.assert_array_equal(rom.D, sys.D)
        drop = np.setdiff1d(np.arange(n), kept)
        disc = LQOSystem.conjugate_pairs(lam[drop], B[drop], C[:, drop], dt=sys.dt, scale=scale)
        assert res.h2_error == pytest.approx(h2_norm(disc), rel=1e-8)
        # the pair score is the h2 norm of the real 2-state pair subsystem
        score_ref = [h2_norm(LQOSystem.conjugate_pairs(lam[[i]], B[[i]], C[:, [i]], dt=sys.dt, scale=scale)) ** 2
                     for i in range(n)]
        np.testing.assert_allclose(res.info["scores"], score_ref, rtol=1e-10)
        # same as modal truncation of the real realisation
        assert res.h2_error == pytest.approx(modal_truncation(sys.realify(), r).h2_error, rel=1e-8)
    with pytest.raises(OrderError, match="even"):
        modal_truncation(sys, 3)


def test_modal_conjugate_pairs_lqo():
    rng = np.random.default_rng(4)
    n = 6
    lam, B, C = _half_pairs(n, rng, discrete=True)
    M = _sym(1, n, rng, complex_=True)
    sys = LQOSystem.conjugate_pairs(lam, B, C, M=M, dt=1.0)
    res = modal_truncation(sys, 4)
    k = res.info["kept"]
    np.testing.assert_allclose(res.rom.half[3], M[:, k][:, :, k])
    assert res.h2_error == pytest.approx(h2_error(sys.realify(), res.rom.realify()), rel=1e-9)


def test_modal_options_and_validation():
    rng = np.random.default_rng(5)
    lam, B, C = _half_pairs(5, rng, discrete=True)
    sys = LQOSystem.conjugate_pairs(lam, B, C, dt=1.0)
    h = modal_truncation(sys, 4, criterion="hinf")
    assert h.rom.order == 4 and h.info["criterion"] == "hinf"
    with pytest.raises(ValueError):
        modal_truncation(sys, 4, criterion="foo")
    lqo = LQOSystem.diagonal([0.5, 0.2], [[1.0], [1.0]], [[1.0, 1.0]], M=np.eye(2), dt=1.0)
    with pytest.raises(ValueError, match="LTI"):
        modal_truncation(lqo, 1, criterion="hinf")
    with pytest.raises(OrderError):
        modal_truncation(sys, 10)
    with pytest.raises(UnstableSystemError):
        modal_truncation(LQOSystem.diagonal([0.5, 1.2], [[1.0], [1.0]], [[1.0, 1.0]], dt=1.0), 1)


def test_to_conjugate_pairs():
    rng = np.random.default_rng(6)
    lam, B, C = _half_pairs(4, rng, discrete=True, m=2, p=2)
    real = LQOSystem.conjugate_pairs(lam, B, C, dt=1.0).realify()
    T = rng.standard_normal((8, 8))
    dense = real.similarity(T)
    for scale in (2.0, 1.0):
        cp = to_conjugate_pairs(dense, scale=scale)
        assert cp.half[4] == scale and cp.order == 8
        L = 30
        np.testing.assert_allclose(cp.impulse_response(L), dense.impulse_response(L), atol=1e-11)
    with_real = LQOSystem(np.diag([0.5, -0.3]), np.ones((2, 1)), np.ones((1, 2)), dt=1.0)
    with pytest.raises(LayoutError, match="real pole"):
        to_conjugate_pairs(with_real)
    cp = to_conjugate_pairs(with_real, allow_real_modes=True)
    assert cp.order == 4  # each real pole occupies one stored slot
    np.testing.assert_allclose(cp.impulse_response(20), with_real.impulse_response(20), atol=1e-13)


# --------------------------------------------------------------------------------------------------
# reduce_batch
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s4d():
    return random_s4d_channels(24, 32, seed=11)


def test_realified_gramians_batch_equal_core(s4d):
    lam, B, C, kappa, D, disc = bm._stack_pairs(s4d[:4])
    Pr, Qr = bm._realified_gramians(lam, B, C, kappa, disc)
    ZP, ZQ, ranks, norm2 = gram_factors_two_factor(lam, B, C, np.ascontiguousarray(kappa), disc)
    for i, sys in enumerate(s4d[:4]):
        real = sys.realify()
        P, Q = controllability_gramian(real), observability_gramian(real)
        sP, sQ = np.abs(P).max(), np.abs(Q).max()
        assert np.abs(Pr[i] - P).max() <= 1e-11 * sP and np.abs(Qr[i] - Q).max() <= 1e-11 * sQ
        assert np.abs(ZP[i] @ ZP[i].T - P).max() <= 1e-11 * sP
        assert np.abs(ZQ[i] @ ZQ[i].T - Q).max() <= 1e-11 * sQ
        assert norm2[i] == pytest.approx(h2_norm(sys) ** 2, rel=1e-10)  # D = 0 here


@pytest.mark.parametrize("r", [2, 3, 4])
def test_batch_bt_equals_single_bt(s4d, r):
    snapshot = [(s.half[0].copy(), s.half[1].copy(), s.half[2].copy()) for s in s4d]
    res = reduce_batch(s4d, r, method="bt")
    assert isinstance(res, BatchResult) and isinstance(res, Sequence) and len(res) == len(s4d)
    assert res.info["vectorised"] and res.method == "bt"
    for i, sys in enumerate(s4d):
        single = balanced_truncation(sys, r)
        item = res[i]
        assert item.h2_error == pytest.approx(single.h2_error, rel=1e-10)
        assert res.h2_errors[i] == item.h2_error
        np.testing.assert_allclose(item.hsv, single.hsv, rtol=1e-9, atol=1e-11 * single.hsv[0])
        assert item.error_bound == pytest.approx(single.error_bound, rel=1e-9)
        assert item.h2_norm == pytest.approx(h2_norm(sys), rel=1e-12)
        rom = item.rom
        assert rom.order == r and rom.dt == sys.dt and rom.convention == sys.convention
        assert rom.is_stable()
        # the reported error is that of the returned model, evaluated independently by the core
        assert item.h2_error == pytest.approx(h2_error(sys, rom), rel=1e-9)
        if res.paired[i]:
            assert rom.half is not None and rom.half[4] == 2.0 and rom.half[0].shape == (r // 2,)
            np.testing.assert_array_equal(rom.half[0], res.lam[i])
        else:
            assert not rom.is_complex
    if r % 2:
        assert not res.paired.any()
    else:
        assert res.paired.sum() >= len(s4d) // 2
    for s, (l0, b0, c0) in zip(s4d, snapshot):  # inputs unchanged
        np.testing.assert_array_equal(s.half[0], l0)
        np.testing.assert_array_equal(s.half[1], b0)
        np.testing.assert_array_equal(s.half[2], c0)


def test_batch_bt_continuous_mimo_against_balred():
    rng = np.random.default_rng(12)
    systems = []
    for _ in range(6):
        lam, B, C = _half_pairs(8, rng, discrete=False, m=2, p=2)
        systems.append(LQOSystem.conjugate_pairs(lam, B, C, scale=1.0))
    res = reduce_batch(systems, 4)
    for sys, item in zip(systems, res):
        rb = LQOSystem.from_control(ct.balred(sys.to_control(), 4))
        e = h2_error(sys, rb)
        floor = np.finfo(float).eps * (h2_norm(sys) / e) ** 2
        assert item.h2_error == pytest.approx(e, rel=1e-9 + 50 * floor)


def test_batch_bt_discrete_against_slycot():
    slycot = pytest.importorskip("slycot")
    chans = random_s4d_channels(5, 8, seed=3, dt_range=(0.05, 0.5))
    res = reduce_batch(chans, 4)
    for sys, item in zip(chans, res):
        real = sys.realify()
        A, B, C = (np.array(x, order="F") for x in (real.A, real.B, real.C))
        nr, Ar, Br, Cr, hsv = slycot.ab09ad("D", "B", "N", real.n, 1, 1, A, B, C, nr=4, tol=0.0)
        ref = LQOSystem(Ar, Br, Cr, dt=sys.dt)
        e = h2_error(real, ref)
        floor = np.finfo(float).eps * (h2_norm(sys) / e) ** 2
        assert item.h2_error == pytest.approx(e, rel=1e-9 + 50 * floor)
        np.testing.assert_allclose(item.hsv[:8], hsv[:8], rtol=1e-8)


def test_batch_bt_repeated_hankel_singular_values():
    """Two identical decoupled copies (m = p = 2): every HSV is double; r = 4 keeps both copies."""
    rng = np.random.default_rng(15)
    lam, b, c = _half_pairs(3, rng, discrete=True)
    lam2 = np.concatenate([lam, lam])
    B = np.zeros((6, 2), complex)
    C = np.zeros((2, 6), complex)
    B[:3, 0], B[3:, 1] = b[:, 0], b[:, 0]
    C[0, :3], C[1, 3:] = c[0], c[0]
    sys = LQOSystem.conjugate_pairs(lam2, B, C, dt=1.0)
    other = LQOSystem.conjugate_pairs(*_half_pairs(6, rng, discrete=True, m=2, p=2), dt=1.0)
    res = reduce_batch([sys, other], 4)
    single = balanced_truncation(sys, 4)
    np.testing.assert_allclose(single.hsv[0:6:2], single.hsv[1:6:2], rtol=1e-10)
    assert res[0].h2_error == pytest.approx(single.h2_error, rel=1e-8)
    assert res[0].h2_error == pytest.approx(h2_error(sys, res[0].rom), rel=1e-8)
    # the error of keeping both copies of the dominant pair is that of two single-copy truncations
    one = balanced_truncation(LQOSystem.conjugate_pairs(lam, b, c, dt=1.0), 2)
    assert res[0].h2_error == pytest.approx(np.sqrt(2) * one.h2_error, rel=1e-8)


def test_batch_chunking_does_not_change_results(s4d, monkeypatch):
    many = s4d * 6  # 144 channels: more than one chunk when two cores are available
    monkeypatch.setattr(bm, "_nthreads", lambda N: 3)
    a = reduce_batch(many, 2)
    monkeypatch.setattr(bm, "_nthreads", lambda N: 1)
    b = reduce_batch(many, 2)
    np.testing.assert_array_equal(a.h2_errors, b.h2_errors)
    np.testing.assert_array_equal(a.hsv, b.hsv)
    np.testing.assert_array_equal(a.h2_errors[:24], a.h2_errors[24:48])


@pytest.mark.parametrize("r", [2, 6])
def test_batch_modal_equals_single_modal(s4d, r):
    res = reduce_batch(s4d, r, method="modal")
    assert res.info["vectorised"] and res.paired.all()
    for i, sys in enumerate(s4d):
        single = modal_truncation(sys, r)
        np.testing.assert_array_equal(res[i].info["kept"], single.info["kept"])
        assert res.h2_errors[i] == pytest.approx(single.h2_error, rel=1e-9)
        assert res.h2_norms[i] == pytest.approx(single.h2_norm, rel=1e-12)
        np.testing.assert_array_equal(res[i].rom.half[0], single.rom.half[0])
    with pytest.raises(OrderError, match="even"):
        reduce_batch(s4d, 3, method="modal")


def test_batch_feedthrough_norms():
    rng = np.random.default_rng(13)
    systems = []
    for conv in ("current", "standard", "current"):
        lam, B, C = _half_pairs(5, rng, discrete=True, m=2, p=2)
        D = rng.standard_normal((2, 2))
        systems.append(LQOSystem.conjugate_pairs(lam, B, C, D=D, dt=0.1, convention=conv))
    for method in ("bt", "modal"):
        res = reduce_batch(systems, 4, method=method)
        for sys, item in zip(systems, res):
            assert item.h2_norm == pytest.approx(h2_norm(sys), rel=1e-12)
            np.testing.assert_array_equal(item.rom.D, sys.D)
            assert item.rom.convention == sys.convention
            assert item.h2_error == pytest.approx(h2_error(sys, item.rom), rel=1e-8)


def test_batch_fallback_loop():
    rng = np.random.default_rng(14)
    dense = [LQOSystem(*_dense_stable(7, 1, 1, discrete=True, rng=rng), dt=1.0) for _ in range(3)]
    res = reduce_batch(dense, 3)
    assert not res.info["vectorised"] and len(res) == 3
    for sys, item in zip(dense, res):
        assert item.h2_error == pytest.approx(balanced_truncation(sys, 3).h2_error, rel=1e-12)
    mres = reduce_batch(dense, 2, method="modal_truncation")
    assert mres.method == "modal" and not mres.info["vectorised"]


def test_batch_validation(s4d):
    with pytest.raises(OrderError):
        reduce_batch(s4d, 64)
    with pytest.raises(OrderError):
        reduce_batch(s4d, 0)
    with pytest.raises(ShapeError):
        reduce_batch([], 2)
    with pytest.raises(TypeError):
        reduce_batch(s4d[0], 2)
    with pytest.raises(TypeError):
        reduce_batch([s4d[0].A], 2)
    with pytest.raises(ValueError, match="method"):
        reduce_batch(s4d, 2, method="irka-ish")
    bad = LQOSystem.conjugate_pairs(np.array([0.5, 1.01 + 0.1j]), np.ones((2, 1)), np.ones((1, 2)), dt=1.0)
    with pytest.raises(UnstableSystemError):
        reduce_batch(s4d[:2] + [bad], 2)
    # a channel with a rank-1 Hankel operator cannot be reduced to r = 2
    rank1 = LQOSystem.conjugate_pairs(np.array([0.5 + 0j, 0.3 + 0.2j]), np.array([[1.0], [0.0]]),
                                      np.array([[1.0, 1.0]]), dt=1.0)
    with pytest.raises(OrderError, match="numerical rank"):
        reduce_batch([rank1, rank1], 2)


def test_batch_h2_method(s4d):
    grad = pytest.importorskip("mor_lqo.reduction.gradient")
    if not hasattr(grad, "h2_gradient_batch"):
        pytest.skip("h2_gradient_batch not available yet")
    chans = s4d[:4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = reduce_batch(chans, 2, method="h2", maxiter=50)
    modal = reduce_batch(chans, 2, method="modal")
    assert res.method == "h2" and res.paired.all()
    for sys, item, m in zip(chans, res, modal):
        assert item.rom.half is not None and item.rom.dt == sys.dt
        assert item.h2_error == pytest.approx(h2_error(sys, item.rom), rel=1e-8)
        assert item.h2_error <= m.h2_error * (1 + 1e-9)  # never worse than its modal start
