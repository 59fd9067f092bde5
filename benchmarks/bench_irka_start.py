"""IRKA's modal ("dominant") start on diagonal systems: O(n r) selection vs the dense O(n^3) route.

Usage::

    python -m benchmarks.bench_irka_start [--sizes 1000 2000 3000 5000] [--r 10] [--repeats 3]

For a diagonal system the eigenvectors are unit vectors, so the start is the coordinate selection
of the r dominant modes. ``dense`` reproduces the former route (an n x n identity as eigenvector
matrix, its inverse for the left eigenvectors, QR of both bases, projection); ``ours`` is
:func:`mor_lqo.reduction.tsia.dominant_rom`. Both ROMs are compared by their transfer functions on the imaginary axis (they are the
same model up to the signs of the basis vectors). Times: minimum over ``--repeats`` runs, BLAS
limited to one thread (threadpoolctl), measured side by side in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import time

import numpy as np

from mor_lqo import LQOSystem


def _dense_reference(sys: LQOSystem, r: int) -> LQOSystem:
    """The former O(n^3) route: eye(n) eigenvectors, explicit inverse, QR, projection."""
    tsia_mod = importlib.import_module("mor_lqo.reduction.tsia")
    lam = sys.lam
    score = np.sum(np.abs(sys.C) ** 2, axis=0) * np.sum(np.abs(sys.B) ** 2, axis=1) / (-2 * lam.real)
    keep = np.argsort(-score, kind="stable")[:r]
    Xe = np.eye(sys.n)
    V = Xe[:, keep]
    W = np.linalg.inv(Xe)[keep].conj().T
    return tsia_mod.project(sys, tsia_mod.orth(V), tsia_mod.orth(W))


def _transfer_distance(a: LQOSystem, b: LQOSystem) -> float:
    """max_s ||G_a(s) - G_b(s)|| / ||G_a(s)|| over s = i w, w in logspace(-3, 3)."""
    out = 0.0
    for w in np.logspace(-3, 3, 25):
        ga = a.C @ np.linalg.solve(1j * w * np.eye(a.n) - a.A, a.B)
        gb = b.C @ np.linalg.solve(1j * w * np.eye(b.n) - b.A, b.B)
        out = max(out, float(np.linalg.norm(ga - gb) / np.linalg.norm(ga)))
    return out


def _best(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 3000, 5000])
    ap.add_argument("--r", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    dominant_rom = importlib.import_module("mor_lqo.reduction.tsia").dominant_rom
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover
        limit = contextlib.nullcontext()
    rng = np.random.default_rng(0)
    print(f"{'n':>6} {'dense [s]':>10} {'ours [s]':>10} {'speed-up':>9} {'max rel dG':>12}")
    with limit:
        for n in args.sizes:
            sys = LQOSystem.diagonal(-rng.uniform(0.01, 10.0, n), rng.standard_normal((n, 2)),
                                     rng.standard_normal((2, n)))
            td, ref = _best(lambda s=sys: _dense_reference(s, args.r), 1 if n > 3000 else args.repeats)
            to, rom = _best(lambda s=sys: dominant_rom(s, args.r), args.repeats)
            dist = _transfer_distance(ref, rom)
            print(f"{n:>6} {td:>10.4f} {to:>10.4f} {td / to:>8.0f}x {dist:>12.1e}", flush=True)


if __name__ == "__main__":
    main()
