"""IRKA benchmark: mor_lqo.irka vs pyMOR's IRKAReductor (continuous time, r = 10).

Usage::

    python -m benchmarks.bench_irka [--r 10] [--repeats 3] [--tols 1e-4 1e-6] [--threads 1|0]

Models (n = 1006, m = p = 1):

* ``penzl``: Penzl's example exactly as ``pymor.models.examples.penzl_example()`` builds it (built
  here without pyMOR; pyMOR gets its natural *sparse* A, mor_lqo stores A dense);
* ``penzl-rot``: the same transfer function in a random orthogonal basis (``Q A Q^T, Q B, C Q^T``),
  a dense A for both tools (the generic dense case; identical H2 norm and optimal errors).

Timings are the minimum over ``--repeats`` runs (the machine is shared; the minimum is the least
noisy statistic; pyMOR on the dense model: one run, it is tens of times slower). ``ours total``: ``irka`` on a freshly built system (includes the Schur
factorisation, the full model's H2 norm — an n x n Lyapunov solve — and the final error, which
pyMOR's ``reduce`` does not compute); ``ours iter``: the same call on a system whose Schur factor and
norm are already cached (what every further call on the same model costs). pyMOR: a fresh
``IRKAReductor(fom).reduce(r, tol=...)``. All errors are relative H2 errors measured by
``mor_lqo.h2_error`` (the same yardstick for both ROMs; an unstable ROM has error inf).

``--threads 1`` (default) limits BLAS to one thread for both tools through threadpoolctl (when
installed): on an oversubscribed machine multithreaded BLAS makes small products and QRs orders of
magnitude slower and the timings meaningless. ``--threads 0`` leaves BLAS alone.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import numpy as np

from mor_lqo import LQOSystem, h2_error, irka


def penzl(n: int = 1006):
    """Penzl's example (dense A, B, C) as in pyMOR's ``penzl_example``."""
    A = np.zeros((n, n))
    for k, w in enumerate((100.0, 200.0, 400.0)):
        A[2 * k:2 * k + 2, 2 * k:2 * k + 2] = [[-1.0, w], [-w, -1.0]]
    idx = np.arange(6, n)
    A[idx, idx] = -np.arange(1.0, n - 5)
    B = np.ones((n, 1))
    B[:6] = 10.0
    return A, B, B.T.copy()


def rotated(A, B, C, seed: int = 0):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal(A.shape))
    return Q @ A @ Q.T, Q @ B, C @ Q.T


def _min_time(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _rel_err(sys, A, B, C, E=None):
    """Relative H2 error of the ROM (E^{-1}A, E^{-1}B, C) (pyMOR ROMs carry E = W^T V)."""
    if E is not None:
        A, B = np.linalg.solve(E, A), np.linalg.solve(E, B)
    try:
        return h2_error(sys, LQOSystem(A, B, C), relative=True)
    except Exception:  # unstable ROM
        return float("inf")


def _pymor():
    try:
        from pymor.core.logger import set_log_levels
        from pymor.models.iosys import LTIModel
        from pymor.reductors.h2 import IRKAReductor
    except ImportError:
        return None
    set_log_levels({"pymor": "ERROR"})
    return LTIModel, IRKAReductor


def bench_model(name: str, A, B, C, r: int, repeats: int, tols=(1e-4, 1e-6)) -> dict:
    """Time mor_lqo.irka and (if installed) pyMOR's IRKAReductor on one model, at each tol."""
    ref = LQOSystem(A, B, C)
    row = {"model": name, "tols": tols}
    cached = LQOSystem(A, B, C)
    irka(cached, r)
    for tol in tols:
        t_tot, res = _min_time(lambda tol=tol: irka(LQOSystem(A, B, C), r, tol=tol), repeats)
        t_it, res = _min_time(lambda tol=tol: irka(cached, r, tol=tol), repeats)
        # started from pyMOR's default initial data (shifts logspace(-1, 1, r), directions ones)
        t_p0, res0 = _min_time(
            lambda tol=tol: irka(cached, r, tol=tol, shifts=np.logspace(-1, 1, r)), repeats)
        row[("ours", tol)] = (t_tot, h2_error(ref, res.rom, relative=True), res.iterations)
        row[("ours-cached", tol)] = (t_it, h2_error(ref, res.rom, relative=True), res.iterations)
        row[("ours-pyinit", tol)] = (t_p0, h2_error(ref, res0.rom, relative=True),
                                     res0.iterations)
    pm = _pymor()
    if pm is None:
        return row
    LTIModel, IRKAReductor = pm
    import scipy.sparse as sps

    fom = LTIModel.from_matrices(sps.csr_matrix(A) if name == "penzl" else A, B, C)

    def red(ptol):
        rd = IRKAReductor(fom)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rom = rd.reduce(r, tol=ptol)
        return rom, rd

    # pyMOR on the dense model takes tens of seconds per run: one run is enough (ratio >> noise)
    py_repeats = repeats if name == "penzl" else 1
    for tol in tols:
        t_py, (rom, rd) = _min_time(lambda tol=tol: red(tol), py_repeats)
        E = None if rom.E.__class__.__name__ == "IdentityOperator" else rom.E.matrix
        row[("pymor", tol)] = (t_py, _rel_err(ref, rom.A.matrix, rom.B.matrix, rom.C.matrix, E),
                               len(rd.conv_crit))
    return row


def run(r: int = 10, repeats: int = 3, tols=(1e-4, 1e-6)) -> list[dict]:
    A0, B0, C0 = penzl()
    return [bench_model("penzl", A0, B0, C0, r, repeats, tols),
            bench_model("penzl-rot", *rotated(A0, B0, C0), r, repeats, tols)]


LABELS = {"ours": "mor_lqo irka (fresh system)", "ours-cached": "mor_lqo irka (Schur+norm cached)",
          "ours-pyinit": "mor_lqo irka, pyMOR init (cached)", "pymor": "pyMOR IRKAReductor"}


def print_table(rows, r, repeats, note):
    print(f"IRKA, continuous, r = {r}; min of {repeats} runs; {note}")
    hdr = (f"{'model':10} {'tol':>6} {'tool / setting':34} {'time [s]':>9} {'rel. H2 error':>14} "
           f"{'its':>4} {'vs pyMOR':>9}")
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        for tol in row["tols"]:
            ref = row.get(("pymor", tol), (None,))[0]
            for key in ("ours", "ours-cached", "ours-pyinit", "pymor"):
                if (key, tol) not in row:
                    continue
                t, err, its = row[(key, tol)]
                ratio = f"{t / ref:8.3f}x" if ref else "      n/a"
                print(f"{row['model']:10} {tol:6.0e} {LABELS[key]:34} {t:9.3f} {err:14.6e} "
                      f"{its:4d} {ratio}")
        if ("pymor", row["tols"][0]) not in row:
            print(f"{row['model']:10} pyMOR not installed: comparison skipped")
    print("vs pyMOR = time / pyMOR's time at the same tol (< 1: mor_lqo faster)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--r", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-4, 1e-6])
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (0: leave unchanged)")
    args = ap.parse_args(argv)
    limit = contextlib.nullcontext()
    note = "BLAS threads unchanged"
    if args.threads > 0:
        try:
            from threadpoolctl import threadpool_limits

            limit = threadpool_limits(args.threads)
            note = f"BLAS threads limited to {args.threads} (threadpoolctl)"
        except ImportError:
            note = "threadpoolctl missing: BLAS threads unchanged"
    with limit:
        rows = run(args.r, args.repeats, tuple(args.tols))
    print_table(rows, args.r, args.repeats, note)
    return rows


if __name__ == "__main__":
    main()
