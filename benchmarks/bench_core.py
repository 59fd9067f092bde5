"""Core benchmarks: h2 norms and errors against python-control/slycot, scipy and plain numpy.

Run: ``python -m benchmarks.bench_core [--quick]``. Prints one table of times (min of k runs, cold
caches: every timed call gets a fresh system object) and ratios ``peer time / our time``
(> 1 means mor_lqo is faster).
"""

from __future__ import annotations

import argparse
import time

import control as ct
import numpy as np
import scipy.linalg as sla

import mor_lqo as ml


def best_of(fn, k=3):
    best, out = np.inf, None
    for _ in range(k):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def stable_dense(n, discrete, rng, m=2, p=2):
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    lam = np.linalg.eigvals(A)
    if discrete:
        A *= 0.95 / np.max(np.abs(lam))
    else:
        A -= (np.max(lam.real) + 0.1) * np.eye(n)
    return A, rng.standard_normal((n, m)), rng.standard_normal((p, n))


def row(name, ours, peer, peer_name, agree):
    ratio = peer / ours
    print(f"{name:<44} {ours * 1e3:>10.2f} {peer * 1e3:>10.2f}  {peer_name:<22} {ratio:>7.2f}x  {agree:.1e}")
    return ratio


def main(quick=False):
    rng = np.random.default_rng(0)
    k = 2 if quick else 3
    print(f"{'case':<44} {'ours ms':>10} {'peer ms':>10}  {'peer':<22} {'ratio':>8}  rel.diff")
    sizes = [200, 500] if quick else [200, 500, 1000]
    for discrete in (False, True):
        for n in sizes:
            A, B, C = stable_dense(n, discrete, rng)
            dt = 1.0 if discrete else 0.0
            t_ours, v = best_of(
                lambda A=A, B=B, C=C, dt=dt: ml.h2_norm(ml.LQOSystem(A, B, C, dt=dt, convention="standard")), k)
            sys = ct.ss(A, B, C, np.zeros((2, 2)), 1.0 if discrete else 0)
            t_ct, ref = best_of(lambda sys=sys: ct.norm(sys, 2, method="slycot"), k)
            kind = "discrete" if discrete else "continuous"
            row(f"dense real h2 norm {kind} n={n}", t_ours, t_ct, "control.norm (slycot)", abs(v - ref) / ref)

            def scipy_norm(A=A, B=B, C=C, discrete=discrete):
                if discrete:
                    P = sla.solve_discrete_lyapunov(A, B @ B.T)
                else:
                    P = sla.solve_continuous_lyapunov(A, -B @ B.T)
                return np.sqrt(np.trace(C @ P @ C.T))

            t_sp, ref2 = best_of(scipy_norm, k)
            row(f"dense real h2 norm {kind} n={n}", t_ours, t_sp, "scipy lyapunov+trace", abs(v - ref2) / ref2)

    # h2 error, dense real continuous n = 1000, r = 20
    n, r = (500, 20) if quick else (1000, 20)
    A, B, C = stable_dense(n, False, rng)
    full = ml.LQOSystem(A, B, C)
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    rom = ml.LQOSystem(V.T @ A @ V - 0.0 * np.eye(r), V.T @ B, C @ V)
    if not rom.is_stable():
        rom = ml.LQOSystem(-np.eye(r) + 0.1 * rng.standard_normal((r, r)), V.T @ B, C @ V)
    t_ours, e = best_of(lambda: ml.h2_error(ml.LQOSystem(A, B, C), rom), k)
    err_ct = full.to_control() - rom.to_control()
    t_ct, e_ref = best_of(lambda: ct.norm(err_ct, 2, method="slycot"), k)
    row(f"h2 error dense real n={n} r={r} (cold)", t_ours, t_ct, "control.norm(sys-rom)", abs(e - e_ref) / e_ref)
    ml.h2_error(full, rom)
    t_warm, _ = best_of(lambda: ml.h2_error(full, rom), k)
    row(f"h2 error dense real n={n} r={r} (warm)", t_warm, t_ct, "control.norm(sys-rom)", abs(e - e_ref) / e_ref)

    # complex diagonal / batched: see benchmarks.bench_diagonal for the full table
    N, nb = 4096, 64
    lam = rng.uniform(0.5, 0.999, (N, nb)) * np.exp(1j * rng.uniform(0, np.pi, (N, nb)))
    Bb = (rng.standard_normal((N, nb, 1)) + 1j * rng.standard_normal((N, nb, 1)))
    Cb = (rng.standard_normal((N, 1, nb)) + 1j * rng.standard_normal((N, 1, nb)))
    from mor_lqo.kernels.cauchy import cauchy_norm2

    cauchy_norm2(lam[:2], Bb[:2], Cb[:2], True)
    t_b, vals = best_of(lambda: cauchy_norm2(lam, Bb, Cb, True), k)

    def numpy_batch():
        K = 1.0 / (1.0 - lam[:, :, None] * lam.conj()[:, None, :])
        cb = Cb[:, 0, :] * Bb[:, :, 0]
        return np.real(np.einsum("ni,nik,nk->n", cb, K, cb.conj()))

    t_np, ref = best_of(numpy_batch, k)
    row(f"batched h2 norms {N} x diag order {nb}", t_b, t_np, "numpy Cauchy (batched)",
        float(np.max(np.abs(vals - ref) / ref)))
    print(f"  -> batched time {t_b * 1e3:.1f} ms (goal <= 50 ms)")


def h2_vs_ab13bd(sizes, k=3):
    """Dense real h2 norms against slycot ``ab13bd`` (the routine behind ``control.norm``), called
    directly and interleaved with ours in every repeat, so machine load affects both alike. Reports the
    median (and minimum) of the repeats: k for n <= 200, fewer above (at least 3). Ours includes
    building the system object (validation, stability check)."""
    from slycot import ab13bd

    rng = np.random.default_rng(1)
    print(f"{'dense real h2 norm':<12} {'n':>5} {'reps':>5} {'ours ms (med/min)':>19} {'ab13bd ms (med/min)':>21} "
          f"{'ratio med':>10} {'ratio min':>10}  rel.diff")
    for discrete in (False, True):
        for n in sizes:
            A, B, C = stable_dense(n, discrete, rng)
            D = np.zeros((C.shape[0], B.shape[1]))
            dt = 1.0 if discrete else 0.0
            reps = k if n <= 200 else max(3, k // (n // 100))
            t_ours, t_ref = [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                v = ml.h2_norm(ml.LQOSystem(A, B, C, dt=dt, convention="standard"))
                t1 = time.perf_counter()
                ref = ab13bd("D" if discrete else "C", "H", n, B.shape[1], C.shape[0],
                             A.copy(), B.copy(), C.copy(), D.copy())
                t2 = time.perf_counter()
                t_ours.append(t1 - t0)
                t_ref.append(t2 - t1)
            mo, mr = np.median(t_ours), np.median(t_ref)
            kind = "discrete" if discrete else "continuous"
            print(f"{kind:<12} {n:>5} {reps:>5} {mo * 1e3:>10.2f}/{min(t_ours) * 1e3:<8.2f} "
                  f"{mr * 1e3:>11.2f}/{min(t_ref) * 1e3:<9.2f} {mr / mo:>9.2f}x {min(t_ref) / min(t_ours):>9.2f}x"
                  f"  {abs(v - ref) / ref:.1e}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ab13bd", type=int, nargs="*", default=None, metavar="N",
                    help="only the h2-norm table against slycot ab13bd for these orders "
                         "(default 50 100 200 400 800 1600)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.ab13bd is not None:
        h2_vs_ab13bd(args.ab13bd or [50, 100, 200, 400, 800, 1600], args.repeats)
    else:
        main(args.quick)
