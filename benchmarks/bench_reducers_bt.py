"""Benchmarks: balanced truncation and batched reduction against python-control / SLICOT.

Run: ``python -m benchmarks.bench_reducers_bt [--quick]``. Prints one table: wall time (min of k
runs; every timed call of ours gets fresh system objects, so no cached Gramians are reused), the CPU
time of the same run (``time.process_time``, all threads; robust on a shared machine), the peer's
times, the ratio ``peer / ours`` (> 1: mor_lqo is faster) and the h2 errors of both.

Cases
-----
1. Dense real continuous BT, n = 1000: a random stable system (m = p = 8, r = 20) and a 1-D heat
   equation (finite differences, r = 4), against ``control.balred`` (SLICOT ab09ad).
2. ``reduce_batch`` of 1024 S4D-like channels (conjugate pairs, ZOH-discretised, real order 64) to
   r = 2, against a loop of ``control.balred`` on the realified channels (python-control treats
   discrete systems as continuous: every pole has Re > 0 there, so it returns the *unreduced*
   64-state model), against a loop of SLICOT ``ab09ad(dico='D')`` (correct discrete BT, what
   balred should do), against a loop of our single-system ``balanced_truncation`` and against
   ``reduce_batch(..., algorithm="two_factor")`` (both Cholesky factors + SVD: the previous kernel).
3. The same channels in continuous time (S4D-Lin, B = 1, before discretisation), where balred does
   perform BT: ``reduce_batch`` vs a loop of ``control.balred``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import control as ct
import numpy as np

from mor_lqo import LQOSystem, h2_error
from mor_lqo.reduction.balanced import balanced_truncation
from mor_lqo.reduction.batch import random_s4d_channels, reduce_batch


def _blas1():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def best_of(fn, k):
    """(min wall time, CPU time of that run, result)."""
    best = (np.inf, np.inf, None)
    for _ in range(k):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best[0]:
            best = (wall, cpu, out)
    return best


HEADER = (f"{'case':<50} {'ours s':>8} {'cpu s':>7} {'peer s':>8} {'cpu s':>7}  {'peer':<30} "
          f"{'ratio':>7}  {'err ours':>10} {'err peer':>10}")


def row(name, ours, peer, peer_name, e_ours, e_peer):
    ratio = peer[0] / ours[0]
    ep = f"{e_peer:>10.4g}" if isinstance(e_peer, float) else f"{e_peer:>10}"
    print(f"{name:<50} {ours[0]:>8.3f} {ours[1]:>7.3f} {peer[0]:>8.3f} {peer[1]:>7.3f}  {peer_name:<30} "
          f"{ratio:>6.2f}x  {e_ours:>10.4g} {ep}")
    return ratio


def random_stable(n, rng, m=2, p=2):
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    A -= (np.max(np.linalg.eigvals(A).real) + 0.5) * np.eye(n)
    return A, rng.standard_normal((n, m)), rng.standard_normal((p, n))


def heat(n):
    """1-D heat equation on (0, 1), Dirichlet ends, FD; input at x = 1/3, output = mean temperature."""
    h = 1.0 / (n + 1)
    A = (np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)) / h**2
    B = np.zeros((n, 1))
    B[n // 3, 0] = 1.0 / h
    C = np.full((1, n), h)
    return A, B, C


def dense_bt(k, quick):
    rng = np.random.default_rng(0)
    n = 400 if quick else 1000
    # m = p = 8 keeps the r = 20 error (relative ~2e-2) far above the rounding floor of h2 errors;
    # the heat model's Hankel singular values reach the rounding level of dense Gramians (~1e-10
    # sigma_1) after ~9, so it is reduced to r = 4 (relative error ~2e-5)
    cases = (("random stable m=p=8", random_stable(n, rng, m=8, p=8), 20), ("heat FD", heat(n), 4))
    for name, (A, B, C), r in cases:
        ours = best_of(lambda A=A, B=B, C=C, r=r: balanced_truncation(LQOSystem(A, B, C), r), k)
        ss = ct.ss(A, B, C, np.zeros((C.shape[0], B.shape[1])))
        peer = best_of(lambda ss=ss, r=r: ct.balred(ss, r), max(1, k - 1))
        full = LQOSystem(A, B, C)
        e_peer = h2_error(full, LQOSystem.from_control(peer[2]))
        row(f"BT dense {name} n={n} r={r}", ours, peer, "control.balred (ab09ad)", ours[2].h2_error, e_peer)


def _loop_balred(systems, r):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [ct.balred(s, r) for s in systems]


def _loop_ab09ad_discrete(reals, r):
    from slycot import ab09ad

    out = []
    for s in reals:
        A, B, C = (np.array(x, order="F") for x in (s.A, s.B, s.C))
        nr, Ar, Br, Cr, _ = ab09ad("D", "B", "N", s.n, s.m, s.p, A, B, C, nr=r, tol=0.0)
        out.append(LQOSystem(Ar, Br, Cr, D=s.D, dt=s.dt, convention=s.convention))
    return out


def batch(k, quick):
    N = 256 if quick else 1024
    r = 2
    chans = random_s4d_channels(N, 32, seed=0)
    ours = best_of(lambda: reduce_batch(chans, r), k)
    res = ours[2]
    e_ours = float(np.mean(res.h2_errors))
    rel_ours = float(np.mean(res.relative_errors))
    print(f"  (reduce_batch: {int(res.paired.sum())}/{N} ROMs with a complex pole pair written as conjugate "
          f"pairs; mean relative h2 error {rel_ours:.4f})")
    with _blas1():
        ctl = [c.to_control() for c in chans]
        peer = best_of(lambda: _loop_balred(ctl, r), max(1, k - 1))
    orders = sorted({x.nstates for x in peer[2]})
    row(f"reduce_batch {N} S4D ch. 64->2 (discrete)", ours, peer, f"loop control.balred [order {orders}]",
        e_ours, "no reduc.")
    reals = [c.realify() for c in chans]
    with _blas1():
        peer2 = best_of(lambda: _loop_ab09ad_discrete(reals, r), 1)
    e2 = float(np.mean([h2_error(s, x) for s, x in zip(reals, peer2[2])]))
    row(f"reduce_batch {N} S4D ch. 64->2 (discrete)", ours, peer2, "loop slycot ab09ad dico='D'", e_ours, e2)
    sub = chans[: N // 8]
    peer3 = best_of(lambda: [balanced_truncation(c, r) for c in sub], 2)
    peer3 = (peer3[0] * 8, peer3[1] * 8, None)
    row(f"reduce_batch {N} S4D ch. 64->2 (discrete)", ours, peer3, "loop balanced_truncation (x8)", e_ours,
        e_ours)
    two = best_of(lambda: reduce_batch(chans, r, algorithm="two_factor"), k)
    row(f"reduce_batch {N} S4D ch. 64->2 (discrete)", ours, two, "reduce_batch two-factor SVD path", e_ours,
        float(np.mean(two[2].h2_errors)))
    print(f"  (one-factor kernel used for {N - res.info['two_factor']}/{N} channels; "
          f"ratio on CPU time vs the balred loop: {peer[1] / ours[1]:.2f}x)")
    modal = best_of(lambda: reduce_batch(chans, r, method="modal"), k)
    print(f"  (reduce_batch method='modal': {modal[0]:.3f} s wall, {modal[1]:.3f} s CPU, mean h2 error "
          f"{np.mean(modal[2].h2_errors):.4g}, mean relative {np.mean(modal[2].relative_errors):.4f})")


def batch_continuous(k, quick):
    N = 256 if quick else 1024
    rng = np.random.default_rng(1)
    n = 32
    chans = []
    for _ in range(N):
        lam = -np.exp(np.log(0.5) + 0.1 * rng.standard_normal(n)) + 1j * np.pi * np.arange(n)
        C = (rng.standard_normal((1, n)) + 1j * rng.standard_normal((1, n))) / np.sqrt(2)
        chans.append(LQOSystem.conjugate_pairs(lam, np.ones((n, 1)), C))
    ours = best_of(lambda: reduce_batch(chans, 2), k)
    with _blas1():
        ctl = [c.to_control() for c in chans]
        peer = best_of(lambda: _loop_balred(ctl, 2), max(1, k - 1))
    e_peer = float(np.mean([h2_error(c, LQOSystem.from_control(x)) for c, x in zip(chans, peer[2])]))
    row(f"reduce_batch {N} S4D ch. 64->2 (continuous)", ours, peer, "loop control.balred (ab09ad)",
        float(np.mean(ours[2].h2_errors)), e_peer)


def main(quick=False):
    k = 2 if quick else 3
    print("times: min of k runs (wall) and the CPU time of that run; ratio = peer wall / ours wall")
    print(HEADER)
    dense_bt(k, quick)
    batch(k, quick)
    batch_continuous(k, quick)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    main(**vars(ap.parse_args()))
