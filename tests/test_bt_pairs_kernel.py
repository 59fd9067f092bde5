"""One-factor batched BT kernel (mor_lqo.kernels.bt_pairs_numba) against independent routes.

Oracles: the two-factor square-root BT of the same channels (both pivoted-Cholesky factors and an SVD,
the numerically conservative textbook method), single-system ``balanced_truncation`` of the realified
channel, and the core's Gramians / h2 norms. The one-factor Hankel singular values are eigenvalues of
``Z^T Q Z``: their error is absolute, about ``eps * sigma_1^2 / sigma_k``, so they are compared with an
absolute tolerance ``1e-12 * sigma_1`` (the values here stay above ``1e-4 * sigma_1``: the resulting
error is below ``1e-11 * sigma_1`` by that estimate) and the dominant ones to a relative 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest

from mor_lqo import LQOSystem, h2_error, h2_norm
from mor_lqo.gramians import controllability_gramian, observability_gramian
from mor_lqo.kernels.bt_pairs_numba import bt_pairs_one_factor, real_gramians_into
from mor_lqo.reduction import batch as bm
from mor_lqo.reduction.balanced import balanced_truncation


def _channels(N, n, rng, *, discrete, m=1, p=1, decay=False):
    if discrete:
        rho = rng.uniform(0.05, 0.8, (N, n)) if not decay else np.linspace(0.05, 4.0, n) + rng.uniform(0, 0.01, (N, n))
        lam = np.exp(-rho + 1j * rng.uniform(0.1, 3.0, (N, n)))
    else:
        re = rng.uniform(0.1, 1.0, (N, n)) if not decay else np.geomspace(0.1, 300.0, n) * rng.uniform(1, 1.01, (N, n))
        lam = -re + 1j * rng.uniform(0.1, 3.0, (N, n))
    B = rng.standard_normal((N, n, m)) + 1j * rng.standard_normal((N, n, m))
    C = rng.standard_normal((N, p, n)) + 1j * rng.standard_normal((N, p, n))
    return lam, B, C


def _markov(A, B, C, k=6):
    out, X = [], B.copy()
    for _ in range(k):
        out.append(C @ X)
        X = A @ X
    return np.stack(out)


def _same_rom(a, b, i, rtol):
    """Equal reduced models up to a state transformation: equal Markov parameters (discrete sense of A)."""
    ma = _markov(a["A"][i], a["B"][i], a["C"][i])
    mb = _markov(b["A"][i], b["B"][i], b["C"][i])
    assert np.abs(ma - mb).max() <= rtol * np.abs(mb).max()


def test_real_gramians_equal_core():
    rng = np.random.default_rng(1)
    for discrete in (False, True):
        lam, B, C = _channels(1, 5, rng, discrete=discrete, m=2, p=3)
        sys = LQOSystem.conjugate_pairs(lam[0], B[0], C[0], dt=1.0 if discrete else 0.0, scale=1.5)
        d = 10
        Pr, Qr, Cr = np.empty((d, d)), np.empty((d, d)), np.empty((3, d))
        real_gramians_into(lam[0], B[0], C[0], 1.5, discrete, Pr, Qr, Cr)
        real = sys.realify()
        P, Q = controllability_gramian(real), observability_gramian(real)
        assert np.abs(Pr - P).max() <= 1e-13 * np.abs(P).max()
        assert np.abs(Qr - Q).max() <= 1e-13 * np.abs(Q).max()
        np.testing.assert_allclose(Cr, real.C, rtol=0, atol=1e-15 * np.abs(real.C).max())


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("m, p, r", [(1, 1, 2), (1, 1, 5), (2, 3, 4)])
def test_one_factor_equals_two_factor(discrete, m, p, r):
    rng = np.random.default_rng(7 + m + r)
    lam, B, C = _channels(40, 8, rng, discrete=discrete, m=m, p=p)
    fast = bm.bt_pairs_batch(lam, B, C, r, discrete=discrete, scale=2.0)
    ref = bm.bt_pairs_batch(lam, B, C, r, discrete=discrete, scale=2.0, algorithm="two_factor")
    assert fast["two_factor"] == 0 and ref["two_factor"] == 40
    s1 = ref["hsv"][:, :1]
    assert np.abs(fast["hsv"] - ref["hsv"]).max() <= 1e-12 * s1.max()
    np.testing.assert_allclose(fast["hsv"][:, : r + 1], ref["hsv"][:, : r + 1], rtol=1e-12)
    np.testing.assert_allclose(fast["norm2"], ref["norm2"], rtol=1e-13)
    np.testing.assert_allclose(fast["err2"], ref["err2"], rtol=1e-9)
    for i in range(40):
        _same_rom(fast, ref, i, 1e-10)


def test_one_factor_kernel_bisection_branch_and_flags():
    """The dstebz branch gives the same models; channels whose sigma_r is too small are flagged."""
    rng = np.random.default_rng(3)
    lam, B, C = _channels(12, 6, rng, discrete=True)
    kappa = np.full(12, 2.0)
    a = bt_pairs_one_factor(lam, B, C, kappa, 4, True, 1e-10)
    b = bt_pairs_one_factor(lam, B, C, kappa, 4, True, 1e-10, True)
    assert a[5].all() and b[5].all()
    for i in range(12):
        _same_rom({"A": a[0], "B": a[1], "C": a[2]}, {"A": b[0], "B": b[1], "C": b[2]}, i, 1e-11)
    # min_ratio above sigma_4^2 / sigma_1^2 of some channels: exactly those are flagged
    ratio = a[3][:, 3] ** 2 / a[3][:, 0] ** 2
    thr = float(np.median(ratio))
    c = bt_pairs_one_factor(lam, B, C, kappa, 4, True, thr)
    np.testing.assert_array_equal(c[5], ratio > thr)


@pytest.mark.parametrize("discrete", [False, True])
def test_decaying_channels_use_two_factor_path_and_match_single_bt(discrete):
    """Fast Hankel-singular-value decay: sigma_r^2 < 1e-10 sigma_1^2 sends channels to the SVD path."""
    rng = np.random.default_rng(5)
    lam, B, C = _channels(6, 10, rng, discrete=discrete, decay=True)
    r = 12
    out = bm.bt_pairs_batch(lam, B, C, r, discrete=discrete, scale=2.0)
    hsv = out["hsv"]
    flagged = hsv[:, r - 1] ** 2 <= 1e-10 * hsv[:, 0] ** 2
    assert flagged.any(), "the test channels must exercise the two-factor fallback"
    assert out["two_factor"] == flagged.sum()
    for i in range(6):
        sys = LQOSystem.conjugate_pairs(lam[i], B[i], C[i], dt=1.0 if discrete else 0.0, scale=2.0)
        single = balanced_truncation(sys, r)
        np.testing.assert_allclose(hsv[i, :r], single.hsv[:r], rtol=1e-8, atol=1e-14 * single.hsv[0])
        e = np.sqrt(out["err2"][i]) if np.isfinite(out["err2"][i]) else None
        if e is not None and out["stable"][i]:
            # errors near the rounding floor of the norm difference: compare with that floor
            floor = 1e-7 * h2_norm(sys)
            assert abs(e - single.h2_error) <= 1e-6 * single.h2_error + floor


def test_reduce_batch_is_lazy_and_read_only():
    chans = bm.random_s4d_channels(10, 8, seed=2)
    res = bm.reduce_batch(chans, 4)
    assert all(item is None for item in res._items)
    third = res[2]
    assert res[2] is third and res[-8] is third and res._items[2] is third
    assert [x.h2_error for x in res[1:4]] == list(res.h2_errors[1:4])
    assert third.h2_error == pytest.approx(h2_error(chans[2], third.rom), rel=1e-9)
    with pytest.raises(IndexError):
        res[10]
    for arr in (res.h2_errors, res.hsv, res.lam, res.B, res.C):
        with pytest.raises(ValueError):
            arr[0] = 0
    assert len(list(iter(res))) == 10


def _reduce_in_child(seed, queue=None):
    chans = bm.random_s4d_channels(130, 8, seed=seed)
    value = float(np.sum(bm.reduce_batch(chans, 2).h2_errors))
    if queue is not None:
        queue.put(value)
    return value


def test_reduce_batch_in_forked_worker_after_parent_use(monkeypatch):
    """The kept thread pool of the parent is not reused in a forked child (it would hang there)."""
    import multiprocessing as mp

    monkeypatch.setattr(bm, "_nthreads", lambda N: 2)
    expected = _reduce_in_child(4)  # creates the parent's pool
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_reduce_in_child, args=(4, queue))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.terminate()
        child.join()
        pytest.fail("reduce_batch hung in a forked child")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == pytest.approx(expected, rel=1e-12)
