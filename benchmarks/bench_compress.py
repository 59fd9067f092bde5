"""Timings of the Deep-SSM compression pipeline.

1. ``mor-lqo compress`` on the bundled model, end to end (subprocess, as a user runs it): target ≤ 60 s on
   2 cores.
2. A synthetic S4D model with 6 layers × 256 channels × order 64 (d_state 64, 32 stored modes per channel),
   reduced 8× by each method: target ≤ 10 s for the default method.
3. Accuracy vs parameters removed for every method on the bundled models (``--accuracy``).

Usage::

    python -m benchmarks.bench_compress                 # 1 and 2
    python -m benchmarks.bench_compress --accuracy      # also 3 (a few minutes)
    python -m benchmarks.bench_compress --skip-cli --length 64 256
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the process-pool workers)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _cores() -> int:
    from mor_lqo.deep.executor import available_cores

    return available_cores()


def synthetic_s4d(H: int = 256, n_layers: int = 6, d_state: int = 64, seed: int = 0) -> dict:
    """Random S4D-minimal state dict with the S4D-Lin initialisation (A = -1/2 + i pi n, log-uniform dt)."""
    rng = np.random.default_rng(seed)
    f = np.float32
    M = d_state // 2
    sd = {
        "encoder.weight": rng.standard_normal((H, 1)).astype(f),
        "encoder.bias": rng.standard_normal(H).astype(f),
        "decoder.weight": (rng.standard_normal((10, H)) / np.sqrt(H)).astype(f),
        "decoder.bias": np.zeros(10, f),
    }
    for i in range(n_layers):
        p = f"s4_layers.{i}."
        sd[p + "D"] = rng.standard_normal(H).astype(f)
        sd[p + "kernel.C"] = (rng.standard_normal((H, M, 2)) * np.sqrt(0.5)).astype(f)
        sd[p + "kernel.log_dt"] = rng.uniform(np.log(1e-3), np.log(1e-1), H).astype(f)
        sd[p + "kernel.log_A_real"] = np.log(0.5 * np.ones((H, M))).astype(f)
        sd[p + "kernel.A_imag"] = (np.pi * np.arange(M)[None, :] * np.ones((H, 1))).astype(f)
        sd[p + "output_linear.0.weight"] = (rng.standard_normal((2 * H, H, 1)) / np.sqrt(H)).astype(f)
        sd[p + "output_linear.0.bias"] = np.zeros(2 * H, f)
        sd[f"norms.{i}.weight"] = np.ones(H, f)
        sd[f"norms.{i}.bias"] = np.zeros(H, f)
    return sd


def bench_cli() -> dict:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "mor_lqo", "compress", "--out", d, "--no-progress"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        print(r.stdout)
        if r.returncode:
            print(r.stderr, file=sys.stderr)
            raise SystemExit(f"mor-lqo compress failed with exit code {r.returncode}")
        rep = json.loads((Path(d) / "report.json").read_text())
    print(f"[cli] mor-lqo compress (bundled s4d, defaults): {wall:.1f} s end to end (target <= 60 s); "
          f"accuracy {rep['accuracy']['before']:.2f} -> {rep['accuracy']['after']:.2f} %, "
          f"state {1 / rep['state_ratio']:.0f}x smaller")
    return {"wall_s": wall, "report_timings": rep["timings"], "accuracy": rep["accuracy"]}


def bench_synthetic(lengths, methods) -> list[dict]:
    from mor_lqo.deep.compress import compress

    sd = synthetic_s4d()
    rows = []
    for method in methods:
        for L in ([None] + list(lengths)) if method in ("h2", "modal") else [None]:
            t0 = time.perf_counter()
            c0 = _cpu()
            res = compress(sd, method=method, ratio="1/8", length=L, progress=False)
            wall = time.perf_counter() - t0
            cpu = _cpu() - c0
            rel = [lay.get("rel_h2_error_L") if L else lay.get("rel_h2_error") for lay in res.layers]
            rows.append({"method": method, "length": L, "wall_s": wall, "cpu_s": cpu, "timings": res.timings,
                         "median_rel_h2": float(np.median([r for r in rel if r is not None])) if any(
                             r is not None for r in rel) else None})
            print(f"[synthetic 6x256x64 -> 8x] method {method:5s} horizon {L or 'inf':>5}: {wall:6.1f} s wall, "
                  f"{cpu:6.1f} s CPU incl. workers (reduce {res.timings['reduce']:.1f} s, write-back "
                  f"{res.timings['write_back']:.1f} s); "
                  f"median relative h2 error {rows[-1]['median_rel_h2']}; CPU / {_cores()} cores = "
                  f"{cpu / _cores():.1f} s (the wall time on idle cores)", flush=True)
    return rows


def bench_accuracy(ratios, models=("s4d", "lqo"), methods=None) -> list[dict]:
    from mor_lqo.deep import load_bundled_model, load_test_split
    from mor_lqo.deep.compress import METHODS, compress

    x, y = load_test_split()
    rows = []
    for name in models:
        m = load_bundled_model(name)
        a0 = m.accuracy(x, y)
        p0 = m.num_parameters()
        for method in methods or METHODS:
            for ratio in ratios:
                t0 = time.perf_counter()
                try:
                    res = compress(m, method=method, ratio=ratio, inputs=x[:256], progress=False)
                except Exception as exc:  # report, do not stop the table
                    print(f"[accuracy] {name} {method} {ratio}: failed: {exc}")
                    continue
                a1 = res.model.accuracy(x, y)
                p1 = res.model.num_parameters()
                row = {"model": name, "method": method, "ratio": str(ratio), "acc_before": a0, "acc_after": a1,
                       "ssm_before": p0["ssm"], "ssm_after": p1["ssm"], "total_before": p0["total"],
                       "total_after": p1["total"], "orders": [lay["order_after"] for lay in res.layers],
                       "seconds": time.perf_counter() - t0}
                rows.append(row)
                print(f"[accuracy] {name} {method:5s} {ratio:>5}: {100 * a0:.1f} -> {100 * a1:.1f} %  SSM params "
                      f"{p0['ssm']} -> {p1['ssm']} ({100 * (1 - p1['ssm'] / p0['ssm']):.0f} % removed), trainable "
                      f"{100 * (1 - p1['total'] / p0['total']):.0f} % removed, orders {row['orders']}, "
                      f"{row['seconds']:.0f} s", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--accuracy", action="store_true", help="accuracy vs parameters for every method")
    ap.add_argument("--ratios", nargs="+", default=["1/4", "1/8", "1/16", "1/32"])
    ap.add_argument("--length", nargs="+", type=int, default=[64, 256],
                    help="finite horizons for the synthetic benchmark (the infinite horizon is always run)")
    ap.add_argument("--methods", nargs="+", default=["modal", "bt", "h2"])
    ap.add_argument("--models", nargs="+", default=["s4d", "lqo"], help="bundled models for --accuracy")
    ap.add_argument("--accuracy-methods", nargs="+", default=None, help="methods for --accuracy (default all)")
    ap.add_argument("--json", help="write all results to this JSON file")
    args = ap.parse_args(argv)
    out = {}
    if not args.skip_cli:
        out["cli"] = bench_cli()
    if not args.skip_synthetic:
        out["synthetic"] = bench_synthetic(args.length, args.methods)
    if args.accuracy:
        out["accuracy"] = bench_accuracy(args.ratios, args.models, args.accuracy_methods)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return out


if __name__ == "__main__":
    main()
