"""Tightness of the a-posteriori output-error bound (Theorems 1-3 of docs/bound.md) on the trained models.

    python -m benchmarks.bound_tightness                               # bundled S4D and LQO, 1/2 1/4 1/8
    python -m benchmarks.bound_tightness --models mnist1d_lqo_p256 --ratios 1/4 1/8 --samples 100

For every model and ratio the model is compressed with the default ``h2`` method (calibration on training
sequences, as ``benchmarks.reproduce``), and the bound is evaluated on ``--samples`` test sequences.
Printed per run: accuracy, the largest bound and measured logit error, the median and smallest
per-sequence tightness (measured / bound; 1 would be exact) of the combined bound and of Theorem 1
alone, the share of sequences whose bound sits at the trivial LayerNorm cap, any violation, and times.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> None:
    from benchmarks.reproduce import load_case
    from mor_lqo.deep.bound import output_error_bound
    from mor_lqo.deep.compress import compress

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mnist1d_s4d", "mnist1d_lqo"])
    ap.add_argument("--ratios", nargs="+", default=["1/2", "1/4", "1/8"])
    ap.add_argument("--samples", type=int, default=200, help="test sequences for the bound")
    ap.add_argument("--calibration", type=int, default=200, help="training sequences for the h2 data weights")
    args = ap.parse_args(argv)
    print("| model | ratio | accuracy % | bound max | measured max | tightness median (min) | Theorem 1 "
          "median | at cap | violations | compress s | bound s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        case = load_case(name, None, args.calibration)
        m, x = case["model"], case["x"][: args.samples]
        for ratio in args.ratios:
            t0 = time.perf_counter()
            mc = compress(m, "h2", ratio=ratio, inputs=case["x_cal"], progress=False).model
            t1 = time.perf_counter()
            b = output_error_bound(m, mc, inputs=x)
            t2 = time.perf_counter()
            tight = b.measured / b.per_sample
            at_cap = float(np.mean(b.per_sample >= b.cap * (1 - 1e-12)))
            print(f"| {name} | {ratio} | {100 * mc.accuracy(case['x'], case['y']):.1f} | {b.value:.4g} | "
                  f"{b.measured_max:.4g} | {np.median(tight):.3g} ({np.min(tight):.3g}) | "
                  f"{np.median(b.measured / b.per_sample_lemma):.3g} | {100 * at_cap:.0f} % | "
                  f"{int(np.sum(b.measured > b.per_sample))} | {t1 - t0:.0f} | {t2 - t1:.0f} |", flush=True)


if __name__ == "__main__":
    main()
