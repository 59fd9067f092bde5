"""Benchmark: gradient-based h2 reduction to diagonal ROMs on S4D-like channels.

1. ``h2_gradient`` (init="auto": modal + BT starts) vs balanced truncation (``mor_lqo.balanced_truncation``
   and SLICOT ``ab09ad`` on the exact real realisation) and modal truncation
   (``mor_lqo.modal_truncation``), per channel, real order 64 -> r = 2, 4, 8.
2. ``h2_gradient_batch`` on 1024 channels 64 -> 2, against a loop of SLICOT BT and a loop of
   ``h2_gradient`` on the same channels (the loop of ``h2_gradient`` is timed on a subset and scaled).

Channels (S4D-like, ZOH-discretised): lam_c = -exp(log 0.5 + 0.1 N(0,1)) + i pi k, dt = exp(U(log 1e-3, log 1e-1)),
lam = exp(dt lam_c), B = (lam - 1)/lam_c, C complex normal, scale = 2 (halved S4D layout).

Timings are min-of-k repeats (the machine is shared); errors are relative h2 errors of the real
input-output map. Run ``python -m benchmarks.bench_h2_gradient [--channels 20] [--batch 1024]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import mor_lqo as ml
from mor_lqo.reduction.gradient import h2_gradient, h2_gradient_batch


def s4d_channels(rng, N, n=32):
    lc = -np.exp(np.log(0.5) + 0.1 * rng.standard_normal((N, n))) + 1j * np.pi * np.arange(n)
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), (N, 1)))
    lam = np.exp(dt * lc)
    B = ((lam - 1) / lc)[:, :, None]
    C = ((rng.standard_normal((N, 1, n)) + 1j * rng.standard_normal((N, 1, n))) / np.sqrt(2))
    return lam, B, C


def slycot_bt(sys, r):
    import slycot

    rs = sys.realify()
    A, B, C = (np.asarray(x, float) for x in (rs.A, rs.B, rs.C))
    _, Ar, Br, Cr, _ = slycot.ab09ad("D", "B", "N", A.shape[0], B.shape[1], C.shape[0], A, B, C, nr=r)
    return ml.LQOSystem(Ar, Br, Cr, D=rs.D, dt=sys.dt, convention=sys.convention)


def timed(fn, k, cpu=False):
    """Min-of-k wall time (and, with ``cpu``, min-of-k process CPU time) and the last result."""
    best, best_cpu, out = np.inf, np.inf, None
    for _ in range(k):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return ((best, best_cpu), out) if cpu else (best, out)


def per_channel(nch, repeats, seed=0):
    rng = np.random.default_rng(seed)
    lam, B, C = s4d_channels(rng, nch)
    systems = [ml.LQOSystem.conjugate_pairs(lam[i], B[i], C[i], dt=1.0, scale=2.0) for i in range(nch)]
    h2_gradient(systems[0], 2)  # warm-up (numba caches, imports)
    print(f"\n1. Per channel: {nch} S4D-like channels, real order 64 -> r; median over channels "
          f"(times: min of {repeats} per channel)")
    hdr = (f"{'r':>3} | {'h2_gradient':>11} {'BT (ml)':>9} {'BT slycot':>9} {'modal':>9} | "
           f"{'h2<=BT':>6} {'h2/BT med':>9} {'h2/BT max':>9} | {'grad':>8} {'iters':>5} | "
           f"{'t h2 [ms]':>9} {'t BT [ms]':>9} {'t slycot':>8} {'t modal':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r in (2, 4, 8):
        rows = []
        for s in systems:
            nrm = ml.h2_norm(s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_h2, res = timed(lambda s=s, r=r: h2_gradient(s, r), repeats)
            t_bt, bt = timed(lambda s=s, r=r: ml.balanced_truncation(s, r), repeats)
            t_sl, sl = timed(lambda s=s, r=r: slycot_bt(s, r), repeats)
            t_md, md = timed(lambda s=s, r=r: ml.modal_truncation(s, r), repeats)
            e_sl = ml.h2_error(s, sl)
            rows.append((res.h2_error / nrm, bt.h2_error / nrm, e_sl / nrm, md.h2_error / nrm,
                         res.h2_error / min(bt.h2_error, e_sl), res.info["grad_norm"], res.iterations,
                         t_h2, t_bt, t_sl, t_md))
        R = np.array(rows)
        med = np.median(R, axis=0)
        frac = np.mean(R[:, 4] <= 1 + 1e-9)
        print(f"{r:>3} | {med[0]:>11.4f} {med[1]:>9.4f} {med[2]:>9.4f} {med[3]:>9.4f} | {frac:>6.0%} "
              f"{med[4]:>9.4f} {R[:, 4].max():>9.4f} | {med[5]:>8.1e} {med[6]:>5.0f} | {1e3 * med[7]:>9.1f} "
              f"{1e3 * med[8]:>9.2f} {1e3 * med[9]:>8.2f} {1e3 * med[10]:>8.2f}")
    print("(errors: relative h2 errors; h2/BT: h2_gradient error / best of the two BT errors; "
          "grad: projected gradient of J/||S||^2 at the end)")


def batch(N, repeats, loop_subset, seed=1):
    rng = np.random.default_rng(seed)
    lam, B, C = s4d_channels(rng, N)
    h2_gradient_batch(lam[:2], B[:2], C[:2], 2, dt=1.0)  # warm-up
    runs = {}
    for init in ("auto", "greedy", "modal"):
        runs[init] = timed(lambda init=init: h2_gradient_batch(lam, B, C, 2, dt=1.0, init=init), repeats, cpu=True)
    systems = [ml.LQOSystem.conjugate_pairs(lam[i], B[i], C[i], dt=1.0) for i in range(N)]
    nrm = runs["auto"][1].h2_norm

    def bt_loop():
        return [slycot_bt(s, 2) for s in systems]

    (t_sl, c_sl), roms = timed(bt_loop, repeats, cpu=True)
    e_sl = np.array([ml.h2_error(s, rm) for s, rm in zip(systems, roms)]) / nrm
    sub = systems[:loop_subset]

    def h2_loop():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [h2_gradient(s, 2) for s in sub]

    (t_h2, c_h2), single = timed(h2_loop, 1, cpu=True)
    e_h2 = np.array([x.h2_error for x in single]) / nrm[:loop_subset]
    print(f"\n2. Batch: {N} channels, real order 64 -> 2 (times: min of {repeats}, wall and process CPU; "
          f"the h2_gradient loop is timed on {loop_subset} channels and scaled to {N})")
    hdr = (f"{'method':<38} {'wall [s]':>9} {'CPU [s]':>8} {'median rel err':>15} {'mean rel err':>13} "
           f"{'<= BT':>6}")
    print(hdr)
    print("-" * len(hdr))

    def row(name, t, c, e, vs_bt=True):
        frac = f"{np.mean(e <= e_sl[:e.size] * (1 + 1e-9)):>6.0%}" if vs_bt else f"{'':>6}"
        ts = f"{t:>9.3f}" if t is not None else f"{'':>9}"
        cs = f"{c:>8.3f}" if c is not None else f"{'':>8}"
        print(f"{name:<38} {ts} {cs} {np.median(e):>15.4f} {np.mean(e):>13.4f} {frac}")

    for init in ("auto", "greedy", "modal"):
        (t, c), res = runs[init]
        row(f"h2_gradient_batch init={init!r}", t, c, res.relative_error)
    res = runs["auto"][1]
    row("  modal truncation (the modal start)", None, None, runs["modal"][1].init_error / nrm)
    row("loop of SLICOT BT (ab09ad)", t_sl, c_sl, e_sl, vs_bt=False)
    row("loop of h2_gradient (auto, scaled)", t_h2 * N / loop_subset, c_h2 * N / loop_subset, e_h2)
    it = res.iterations
    t_auto = runs["auto"][0][0]
    print(f"auto: converged {res.converged.mean():.1%}, iterations (both starts) median {np.median(it):.0f} / "
          f"max {it.max()}, gradient median {np.median(res.grad_norm):.1e}, never worse than its starts: "
          f"{bool(np.all(res.h2_error <= res.init_error * (1 + 1e-12)))}; speed-up vs the BT loop: "
          f"{t_sl / t_auto:.1f}x wall, {c_sl / runs['auto'][0][1]:.1f}x CPU")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=20, help="channels for the per-channel table")
    ap.add_argument("--batch", type=int, default=1024, help="channels for the batch benchmark")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (min is reported)")
    ap.add_argument("--loop-subset", type=int, default=64, help="channels for the h2_gradient loop")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads for every method (default 1: the matrices are tiny; 0 = leave as is)")
    args = ap.parse_args(argv)
    import slycot  # noqa: F401  (load its BLAS before limiting the thread pools)

    limiter = None
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        if args.blas_threads > 0:  # applied now, for the whole run
            limiter = threadpool_limits(limits=args.blas_threads, user_api="blas")
        blas = [i.get("num_threads") for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:  # pragma: no cover
        blas = "?"
    print(f"mor_lqo {ml.__version__}; BLAS threads per library {blas}")
    try:
        per_channel(args.channels, args.repeats)
        batch(args.batch, args.repeats, min(args.loop_subset, args.batch))
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


if __name__ == "__main__":
    main()
