"""Benchmark: h2 norms of complex diagonal systems, numba Cauchy kernels vs the plain numpy closed form.

Run as ``python -m benchmarks.bench_diagonal`` (``--quick`` skips n = 16384 and the memory
subprocesses). Prints one table:

* single systems, discrete time, ``|lam| < 1`` random complex, ``m = 1``, ``p = 1`` and ``p = 8``, for
  n = 256 ... 16384: warm time of :func:`mor_lqo.kernels.cauchy.cauchy_norm2` (min of k runs) vs
  :func:`mor_lqo.kernels.cauchy_reference.cauchy_norm2_ref` (explicit ``K``; skipped where its
  temporaries would exceed ``--numpy-limit-gb``; the agreement is then measured against the same
  closed form evaluated in row chunks), the ratio, the relative agreement, the peak extra memory of
  the numba call (fresh subprocess, peak RSS reset via ``/proc/self/clear_refs`` where available,
  otherwise ``ru_maxrss`` delta) and the tracemalloc peak of the numpy call; the "1-thr cpu" column
  is the CPU time of the serial kernels (robust against other processes competing for the cores);
* a batch of 4096 SISO complex systems of order 64 in one call (norm) and the batched inner product
  with order-16 partners.

Goals: >= 8x faster than numpy at n = 4096, agreement <= 1e-12, n = 16384 well under 100 MB extra,
batch of 4096 x 64 in <= 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from mor_lqo.kernels import cauchy as cauchy_mod
from mor_lqo.kernels.cauchy import cauchy_inner, cauchy_norm2
from mor_lqo.kernels.cauchy_reference import cauchy_inner_ref, cauchy_norm2_ref


def random_system(rng, n, m, p, batch=None, rho=0.999):
    sh = () if batch is None else (batch,)
    lam = rho * np.sqrt(rng.uniform(size=sh + (n,))) * np.exp(2j * np.pi * rng.uniform(size=sh + (n,)))
    B = rng.standard_normal(sh + (n, m)) + 1j * rng.standard_normal(sh + (n, m))
    C = rng.standard_normal(sh + (p, n)) + 1j * rng.standard_normal(sh + (p, n))
    return lam, B, C


def min_time(f, k, clock=time.perf_counter):
    best = np.inf
    val = None
    for _ in range(k):
        t0 = clock()
        val = f()
        best = min(best, clock() - t0)
    return best, val


@contextlib.contextmanager
def serial_kernels():
    """Force the single-threaded kernels (robust timings on a busy machine)."""
    old = cauchy_mod.SERIAL_WORK
    cauchy_mod.SERIAL_WORK = 1 << 62
    try:
        yield
    finally:
        cauchy_mod.SERIAL_WORK = old


def numpy_bytes(n, p):
    """Rough peak of the explicit-K reference: ~4 complex n x n temporaries."""
    return 4 * 16 * n * n + 16 * p * n * n // max(n, 1)


def chunked_norm2(lam, B, C, rows=512):
    """The same explicit closed form, evaluated block row by block row (memory O(rows n))."""
    total = 0.0
    for i0 in range(0, lam.size, rows):
        sl = slice(i0, i0 + rows)
        total += np.real(cauchy_inner_ref(lam[sl], B[sl], C[:, sl], lam, B, C, True))
    return total


_MEM_SNIPPET = r"""
import os, resource, sys
import numpy as np
from mor_lqo.kernels.cauchy import cauchy_norm2
n, p = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
def sysr(n):
    lam = 0.999 * np.sqrt(rng.uniform(size=n)) * np.exp(2j * np.pi * rng.uniform(size=n))
    return lam, rng.standard_normal((n, 1)) + 0j, rng.standard_normal((p, n)) + 0j
cauchy_norm2(*sysr(64), True)  # load the cached kernels, start the thread pool
lam, B, C = sysr(n)
def rss_kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    raise OSError
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak RSS (VmHWM)
    before = rss_kb("VmRSS:")
    cauchy_norm2(lam, B, C, True)
    extra = rss_kb("VmHWM:") - before
    how = "VmHWM"
except OSError:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cauchy_norm2(lam, B, C, True)
    extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    how = "maxrss"
print(extra / 1024, how)
"""


def numba_extra_mb(n, p):
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", _MEM_SNIPPET, str(n), str(p)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    mb, how = out.stdout.split()
    return float(mb), how


def numpy_peak_mb(f):
    tracemalloc.start()
    try:
        f()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip n = 16384 and the memory subprocesses")
    ap.add_argument("--numpy-limit-gb", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=7, help="timing repeats for numba (min of k)")
    args = ap.parse_args(argv)

    import numba

    rng = np.random.default_rng(12345)
    sizes = [256, 1024, 4096] + ([] if args.quick else [16384])
    print(
        f"numba {numba.__version__}, {numba.get_num_threads()} threads, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs; times are min of k warm runs"
    )
    # warm-up (kernel compilation / cache load) and the threading layer in use
    cauchy_norm2(*random_system(rng, 32, 1, 1), True)
    cauchy_norm2(*random_system(rng, 32, 1, 8), True)
    cauchy_norm2(*random_system(rng, 2048, 1, 1), True)
    print(
        f"threading layer {numba.threading_layer()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )

    hdr = (
        f"{'case':<22}{'n':>7}{'p':>4}{'numba ms':>11}{'1-thr cpu':>10}{'numpy ms':>11}{'speedup':>9}"
        f"{'rel.diff':>11}{'numba +MB':>11}{'numpy MB':>10}"
    )
    print(hdr)
    print("-" * len(hdr))
    for p in (1, 8):
        for n in sizes:
            lam, B, C = random_system(rng, n, 1, p)
            k = args.repeat if n <= 4096 else 3
            t_nb, v_nb = min_time(lambda lam=lam, B=B, C=C: cauchy_norm2(lam, B, C, True), k)
            with serial_kernels():
                t_1, v_1 = min_time(
                    lambda lam=lam, B=B, C=C: cauchy_norm2(lam, B, C, True), min(k, 5), time.process_time
                )
            assert abs(v_1 - v_nb) <= 1e-14 * abs(v_nb)
            if numpy_bytes(n, p) <= args.numpy_limit_gb * 2**30:
                kn = 3 if n <= 1024 else 2
                t_np, v_np = min_time(lambda lam=lam, B=B, C=C: cauchy_norm2_ref(lam, B, C, True), kn)
                np_ms = f"{1e3 * t_np:11.1f}"
                ratio = f"{t_np / t_nb:8.1f}x"
                np_mb = f"{numpy_peak_mb(lambda lam=lam, B=B, C=C: cauchy_norm2_ref(lam, B, C, True)):10.0f}"
            else:
                v_np = chunked_norm2(lam, B, C)
                np_ms, ratio, np_mb = f"{'skipped':>11}", f"{'-':>9}", f"{'-':>10}"
            diff = abs(v_nb - v_np) / abs(v_np)
            if args.quick:
                mem = f"{'-':>11}"
            else:
                mb, how = numba_extra_mb(n, p)
                mem = f"{mb:9.1f}{'' if how == 'VmHWM' else '*':2}"
            print(
                f"{'h2 norm, discrete':<22}{n:>7}{p:>4}{1e3 * t_nb:11.2f}{1e3 * t_1:10.2f}{np_ms}{ratio}"
                f"{diff:11.1e}{mem}{np_mb}"
            )

    # batched: 4096 SISO systems of order 64
    N, n = 4096, 64
    lam, B, C = random_system(rng, n, 1, 1, batch=N)
    cauchy_norm2(lam, B, C, True)
    t_nb, v_nb = min_time(lambda: cauchy_norm2(lam, B, C, True), args.repeat)
    with serial_kernels():
        t_1, _ = min_time(lambda: cauchy_norm2(lam, B, C, True), 5, time.process_time)
    t_np, v_np = min_time(lambda: cauchy_norm2_ref(lam, B, C, True), 3)
    diff = np.max(np.abs(v_nb - v_np) / np.abs(v_np))
    print(
        f"{'batch 4096, norm':<22}{n:>7}{1:>4}{1e3 * t_nb:11.2f}{1e3 * t_1:10.2f}{1e3 * t_np:11.1f}"
        f"{t_np / t_nb:8.1f}x{diff:11.1e}{'-':>11}{'-':>10}"
    )
    lr, Br, Cr = random_system(rng, 16, 1, 1, batch=N)
    cauchy_inner(lam, B, C, lr, Br, Cr, True)
    t_nb, v_nb = min_time(lambda: cauchy_inner(lam, B, C, lr, Br, Cr, True), args.repeat)
    with serial_kernels():
        t_1, _ = min_time(lambda: cauchy_inner(lam, B, C, lr, Br, Cr, True), 5, time.process_time)
    t_np, v_np = min_time(lambda: cauchy_inner_ref(lam, B, C, lr, Br, Cr, True), 3)
    diff = np.max(np.abs(v_nb - v_np) / np.abs(v_np))
    print(
        f"{'batch 4096, inner r16':<22}{n:>7}{1:>4}{1e3 * t_nb:11.2f}{1e3 * t_1:10.2f}{1e3 * t_np:11.1f}"
        f"{t_np / t_nb:8.1f}x{diff:11.1e}{'-':>11}{'-':>10}"
    )
    print(
        "numba ms: wall time of the default (parallel) call; 1-thr cpu: CPU time [ms] of the serial "
        "kernels (insensitive to other processes); numba +MB: peak RSS increase of the call in a fresh process (* = ru_maxrss delta, a lower "
        "bound); numpy MB: tracemalloc peak. 'skipped': explicit K would exceed "
        f"{args.numpy_limit_gb:g} GB, agreement measured against the row-chunked closed form."
    )


if __name__ == "__main__":
    main()
