"""Paper A's joint gradient minimisation of the output-error bound, against its start (the h2 compression).

    python -m benchmarks.bound_descent                                  # bundled S4D and LQO, 1/2 1/4 1/8
    python -m benchmarks.bound_descent --models mnist1d_lqo --ratios 1/4 --steps 300

For every model and ratio: ``compress(method="h2")`` with the calibration sequences of
``benchmarks.reproduce`` (training split), then :func:`mor_lqo.torch.minimise_bound` from that start,
once bare (``max_error_increase=None``: the bound alone, as paper A states the algorithm) and once with
the default guard (``max_error_increase=0``: no iterate whose measured calibration error is larger than
the start's). Printed per run: the certified mean and max bound on the calibration inputs, the test
accuracy, the mean measured logit error on the test sequences, and the descent's seconds. Single-threaded
torch (the 2-core machine runs two of these side by side).
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> None:
    import torch

    from benchmarks.reproduce import load_case
    from mor_lqo.deep.bound import measured_output_error
    from mor_lqo.deep.compress import compress
    from mor_lqo.torch import minimise_bound

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mnist1d_s4d", "mnist1d_lqo"])
    ap.add_argument("--ratios", nargs="+", default=["1/2", "1/4", "1/8"])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--calibration", type=int, default=200, help="training sequences (calibration)")
    ap.add_argument("--test", type=int, default=None, help="test sequences (default: the whole split)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| model | ratio | variant | mean bound | max bound | accuracy % | test logit error (mean) | kept | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        case = load_case(name, args.test, args.calibration)
        m, xc, x, y = case["model"], case["x_cal"], case["x"], case["y"]
        for ratio in args.ratios:
            start = compress(m, "h2", ratio=ratio, inputs=xc, progress=False).model
            err0 = float(np.mean(measured_output_error(m, start, x)))
            first = True
            for variant, guard in (("bare", None), ("guarded", 0.0)):
                res = minimise_bound(m, start, xc, steps=args.steps, lr=args.lr, batch_size=50, eval_every=15,
                                     max_error_increase=guard)
                if first:
                    print(f"| {name} | {ratio} | h2 start | {res.bound_before:.4g} | {res.max_before:.4g} | "
                          f"{100 * start.accuracy(x, y):.1f} | {err0:.4g} | | |", flush=True)
                    first = False
                err = float(np.mean(measured_output_error(m, res.model, x)))
                print(f"| {name} | {ratio} | {variant} | {res.bound_after:.4g} | {res.max_after:.4g} | "
                      f"{100 * res.model.accuracy(x, y):.1f} | {err:.4g} | {res.improved} | {res.seconds:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
