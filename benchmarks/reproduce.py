r"""Reproduce the claims of the two papers on models we can train and run.

One command regenerates every table and plot under ``benchmarks/results/``::

    python -m benchmarks.reproduce            # full sweep (≈ 55 min on 2 cores; docs/results.md)
    python -m benchmarks.reproduce --quick    # a subset (a few minutes): S4D MNIST-1D, 3 methods
    python -m benchmarks.reproduce --models tones_s4d     # re-run one model, merge the others' CSVs
    python -m benchmarks.reproduce --summarize-only       # rebuild sweep.csv, claims, plots from the CSVs

Models (all trained by committed scripts, evaluated with the numpy reference models, no retraining):

``mnist1d_s4d``
    bundled S4D model (3 layers, H = 64, 32 stored modes = real order 64 per channel), MNIST-1D test
    split (1000 sequences, L = 40) — the paper-B setting;
``mnist1d_lqo``
    bundled LQO Deep SSM (2 layers, H = 64, P = 64 complex modes, rank-2 quadratic readout), same data —
    the paper-A setting (LQO blocks; 88 % of its parameters are SSM parameters);
``mnist1d_s4d_n256``
    state-heavy S4D model (3 layers, H = 32, d_state = 256 = real order 256 per channel; 88 % of its
    56,266 trainable parameters are SSM parameters; ``benchmarks/train_mnist1d.py --model
    s4d_large_state``), same data — the paper-A regime with S4D blocks;
``tones_s4d``
    S4D model trained on the long-range ``tones`` task (L = 1024, 2 layers, H = 32, order 64 per
    channel; ``benchmarks/train_longrange.py``), 1000 test sequences (seed 2);
``mnist1d_lqo_p256``
    state-heavy LQO Deep SSM (2 layers, H = 32, P = 256 complex modes per layer, rank-2 quadratic readout;
    about 98 % of its trainable parameters are SSM parameters; ``benchmarks/train_mnist1d.py --model
    lqo_large_state``), MNIST-1D — paper A's own regime;
``mnist1d_s5_upstream``
    classifier built from the upstream ``s5-pytorch`` ``S5`` layer (2 residual blocks, H = 32, P = 64;
    ``benchmarks/upstream_families.py``), compressed as a torch module by :func:`mor_lqo.torch.compress`
    (``benchmarks/reproduce_torch.py``; no bound columns, ``bound`` not applicable).

For every model, method (``modal``, ``bt``, ``irka`` — ``tsia`` for LQO blocks —, ``h2``, ``bound``) and
ratio of the SSM state kept (1, 1/2, …, 1/32) it records the test accuracy, the SSM and total
parameters kept, and the output-error bound (a posteriori, :func:`mor_lqo.deep.bound.output_error_bound`)
against the measured logit error on ``--bound-samples`` test sequences. ``h2`` uses the same order in
every layer; ``bound`` allocates the orders per layer under the same parameter budget (paper A).
Calibration inputs (data weights of ``h2``, the bound of ``bound``) are **training** sequences
(MNIST-1D train split; tones seed 3), never test data; labels are never used.

Outputs: ``sweep_<model>.csv`` (one row per run), ``sweep.csv`` (all), ``claims.json`` / ``claims.md``
(the checked claims), ``accuracy_<model>.png`` (accuracy vs fraction of SSM / all parameters kept)
and ``bound_vs_measured.png``. A run of some models only (``--models``) merges the existing
``sweep_<model>.csv`` of the other models of :data:`MODELS` into the combined outputs (``--no-merge``:
only the models run now); ``--summarize-only`` runs nothing and rebuilds the combined outputs (and the
accuracy plots) from the per-model CSVs. Per-model wall times are kept in ``claims.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
RATIOS = ("1", "1/2", "1/4", "1/8", "1/16", "1/32")
METHODS = ("modal", "bt", "irka", "h2", "bound")
MODELS = ("mnist1d_s4d", "mnist1d_lqo", "mnist1d_s4d_n256", "tones_s4d", "mnist1d_lqo_p256", "mnist1d_s5_upstream")
N256_WEIGHTS = RESULTS / "mnist1d_s4d_n256.safetensors"
P256_WEIGHTS = RESULTS / "mnist1d_lqo_p256.safetensors"
STATE_HEAVY = {  # model name: (weights, family, description)
    "mnist1d_s4d_n256": (N256_WEIGHTS, "s4d", "S4D model (d_state 256)"),
    "mnist1d_lqo_p256": (P256_WEIGHTS, "lqo", "LQO model (P = 256 modes per layer)"),
}
QUICK = {"models": ("mnist1d_s4d",), "methods": ("modal", "bt", "h2"), "ratios": ("1", "1/2", "1/8", "1/32")}
CSV_FIELDS = [
    "model", "method", "reducer", "ratio", "ssm_frac", "total_frac", "accuracy", "acc_drop_points",
    "ssm_params", "ssm_params_before", "total_params", "total_params_before", "orders", "bound",
    "measured_max", "bound_violations", "bound_samples", "tightness", "time_s", "error",
]


# ---------------------------------------------------------------------------------------------
# models and data
# ---------------------------------------------------------------------------------------------
def load_case(name: str, n_test: int | None, n_calib: int) -> dict:
    """Model, test data and calibration inputs of one benchmark model.

    Returns
    -------
    dict with ``model`` (numpy reference model), ``x``/``y`` (test), ``x_cal`` (training inputs),
    ``family`` (``"s4d"``/``"lqo"``) and ``desc``.
    """
    from mor_lqo.deep import S4DModel, load_bundled_model, load_test_split, read_safetensors

    from .reproduce_torch import TORCH_MODELS, load_torch_case

    if name in TORCH_MODELS:
        return load_torch_case(name, n_test, n_calib)
    if name in ("mnist1d_s4d", "mnist1d_lqo"):
        fam = name.split("_")[1]
        model = load_bundled_model(fam)
        x, y = load_test_split()
        from mor_lqo.deep import generate_mnist1d

        x_cal = generate_mnist1d(seed=42)["x"][:n_calib]
        desc = f"MNIST-1D (L = 40), bundled {fam.upper()} model"
    elif name in STATE_HEAVY:
        from mor_lqo.deep import LQOModel, generate_mnist1d

        path, fam, what = STATE_HEAVY[name]
        sd, _ = read_safetensors(path)
        model = (S4DModel if fam == "s4d" else LQOModel).from_state_dict(sd)
        x, y = load_test_split()
        x_cal = generate_mnist1d(seed=42)["x"][:n_calib]
        desc = f"MNIST-1D (L = 40), state-heavy {what} of benchmarks/train_mnist1d.py"
    elif name == "tones_s4d":
        from benchmarks.tasks import make_tones
        from benchmarks.train_longrange import DEFAULT_OUT, TEST_SEED

        sd, _ = read_safetensors(DEFAULT_OUT)
        model = S4DModel.from_state_dict(sd)
        x, y = make_tones(n_test or 1000, 1024, TEST_SEED)
        x_cal, _ = make_tones(n_calib, 1024, 3)
        fam = "s4d"
        desc = "tones (L = 1024), S4D model of benchmarks/train_longrange.py"
    else:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    if n_test is not None:
        x, y = x[:n_test], y[:n_test]
    return {"model": model, "x": x, "y": y, "x_cal": x_cal, "family": fam, "desc": desc}


def _reducer(method: str, family: str) -> str:
    return "tsia" if (method == "irka" and family == "lqo") else method


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------
def run_one(case: dict, method: str, ratio: str, *, bound_samples: int, executor, acc0: float,
            options: dict | None = None) -> dict:
    """Compress ``case["model"]`` with ``method`` at ``ratio`` and measure everything (one CSV row)."""
    from mor_lqo.deep.bound import output_error_bound
    from mor_lqo.deep.compress import compress

    if case.get("torch"):
        from .reproduce_torch import run_one_torch

        return run_one_torch(case, method, ratio, acc0=acc0)

    model = case["model"]
    p0 = model.num_parameters()
    row = {"method": method, "reducer": _reducer(method, case["family"]), "ratio": ratio,
           "ssm_params_before": p0["ssm"], "total_params_before": p0["total"], "bound_samples": bound_samples,
           "error": ""}
    t0 = time.perf_counter()
    if Fraction(ratio) == 1:
        compressed = model
        row.update(ssm_params=p0["ssm"], total_params=p0["total"],
                   orders=" ".join(str(2 * m) for m in model.n_modes))
    else:
        res = compress(model, method=row["reducer"], ratio=ratio, inputs=case["x_cal"], progress=False,
                       executor=executor, options=options)
        compressed = res.model
        row.update(ssm_params=res.params["ssm"]["after"], total_params=res.params["total"]["after"],
                   orders=" ".join(str(lay["order_after"]) for lay in res.layers))
    row["time_s"] = round(time.perf_counter() - t0, 2)
    acc = compressed.accuracy(case["x"], case["y"], batch_size=250)
    row["accuracy"] = acc
    row["acc_drop_points"] = round(100.0 * (acc0 - acc), 3)
    row["ssm_frac"] = row["ssm_params"] / row["ssm_params_before"]
    row["total_frac"] = row["total_params"] / row["total_params_before"]
    if compressed is model:
        row.update(bound=0.0, measured_max=0.0, bound_violations=0, tightness="")
    else:
        b = output_error_bound(model, compressed, inputs=case["x"][:bound_samples])
        row["bound"] = float(b.value)
        row["measured_max"] = float(b.measured_max)
        row["bound_violations"] = int(np.sum(b.per_sample < b.measured))
        row["tightness"] = b.tightness
    return row


# ---------------------------------------------------------------------------------------------
# claims
# ---------------------------------------------------------------------------------------------
def _fmt_ratio(r: str) -> str:
    return r if "/" in r else str(r)


def summarize(rows: Sequence[dict]) -> dict:
    """Check the papers' claims on the measured rows.

    Returns
    -------
    dict keyed by model with
        ``original`` accuracy; ``h2_vs_bt``: per ratio the accuracies of h2 and BT and the winner;
        ``at_1_32``: accuracy per method at ratio 1/32; ``removed``: for 1 and 2 points of tolerated
        accuracy loss, the largest share of SSM and of all trainable parameters removed by any run within
        the tolerance (with the run), and per method the share of all parameters removed by its best run
        within the tolerance (``per_method``; the original model counts for every method);
        ``bound_vs_uniform``: per ratio the accuracies of ``bound``
        (allocated orders) and ``h2`` (uniform orders); ``bound_holds``: whether the bound was ≥ the
        measured error for every sequence of every run, the number of checks and the violations.
    """
    out: dict = {}
    models = list(dict.fromkeys(r["model"] for r in rows))
    for m in models:
        rs = [r for r in rows if r["model"] == m and not r.get("error")]
        orig = [r for r in rs if Fraction(r["ratio"]) == 1]
        if not orig:
            continue
        acc0 = orig[0]["accuracy"]
        by = {(r["method"], r["ratio"]): r for r in rs}
        ratios = sorted({r["ratio"] for r in rs if Fraction(r["ratio"]) < 1}, key=Fraction, reverse=True)
        h2_bt = {}
        for q in ratios:
            a, b = by.get(("h2", q)), by.get(("bt", q))
            if a and b:
                d = a["accuracy"] - b["accuracy"]
                h2_bt[q] = {"h2": a["accuracy"], "bt": b["accuracy"],
                            "winner": "h2" if d > 0 else ("bt" if d < 0 else "tie")}
        at32 = {meth: by[(meth, "1/32")]["accuracy"] for meth in METHODS if (meth, "1/32") in by}
        removed = {}
        for tol in (1, 2):
            ok = [r for r in rs if r["acc_drop_points"] <= tol + 1e-9]
            best_t = max(ok, key=lambda r: 1 - r["total_frac"])
            best_s = max(ok, key=lambda r: 1 - r["ssm_frac"])
            removed[str(tol)] = {
                "total_removed": 1 - best_t["total_frac"], "total_run": f"{best_t['method']} {best_t['ratio']}",
                "total_run_accuracy": best_t["accuracy"],
                "ssm_removed": 1 - best_s["ssm_frac"], "ssm_run": f"{best_s['method']} {best_s['ratio']}",
                "ssm_run_accuracy": best_s["accuracy"],
                "per_method": {meth: max((1 - r["total_frac"] for r in ok if r["method"] == meth or
                                          Fraction(r["ratio"]) == 1), default=0.0)
                               for meth in METHODS if any(r["method"] == meth for r in rs)},
            }
        bvu = {}
        for q in ratios:
            a, b = by.get(("bound", q)), by.get(("h2", q))
            if a and b:
                bvu[q] = {"bound": a["accuracy"], "uniform_h2": b["accuracy"], "bound_orders": a["orders"],
                          "bound_ssm_params": a["ssm_params"], "uniform_ssm_params": b["ssm_params"]}
        checked = [r for r in rs if Fraction(r["ratio"]) < 1]
        viol = int(sum(int(r["bound_violations"]) for r in checked))
        tights = [float(r["tightness"]) for r in checked if r["tightness"] not in ("", None)]
        out[m] = {"original": acc0, "h2_vs_bt": h2_bt, "at_1_32": at32, "removed": removed,
                  "bound_vs_uniform": bvu,
                  "bound_holds": {"runs": len(checked), "sequences": int(sum(int(r["bound_samples"]) for r in checked)),
                                  "violations": viol, "holds": viol == 0,
                                  "max_tightness": max(tights, default=None),
                                  "min_tightness": min(tights, default=None),
                                  "saturated_runs": _saturated_runs(checked),
                                  "runs_within_2_points": len(_within(checked, 2.0)),
                                  "saturated_within_2_points": len(_within(_saturated_rows(checked), 2.0))}}
    return out


def _saturated_rows(rows: Sequence[dict]) -> list[dict]:
    """Runs whose bound is the saturated (trivial) cap.

    The cap of the a-posteriori bound depends on the original model's trajectories only, so every
    saturated run of a model reports the same largest value; a bound value shared (to 1e-9 relative) by
    at least two runs and equal to the model's largest bound is counted as saturated.
    """
    with_bound = [r for r in rows if r.get("bound") not in ("", None)]
    if not with_bound:
        return []
    top = max(float(r["bound"]) for r in with_bound)
    hits = [r for r in with_bound if abs(float(r["bound"]) - top) <= 1e-9 * max(abs(top), 1e-300)]
    return hits if len(hits) >= 2 else []


def _saturated_runs(rows: Sequence[dict]) -> int:
    """Number of :func:`_saturated_rows`."""
    return len(_saturated_rows(rows))


def _within(rows: Sequence[dict], points: float) -> list[dict]:
    """Runs whose accuracy is within ``points`` of the original's."""
    return [r for r in rows if float(r["acc_drop_points"]) <= points]


def claims_markdown(claims: dict, rows: Sequence[dict]) -> str:
    """Markdown tables of the sweep and the claims (pasted into docs/results.md)."""
    lines = []
    for m, c in claims.items():
        rs = [r for r in rows if r["model"] == m]
        methods = [x for x in METHODS if any(r["method"] == x for r in rs)]
        ratios = sorted({r["ratio"] for r in rs}, key=Fraction, reverse=True)
        lines += [f"### {m}: test accuracy (%) vs SSM state kept (original {100 * c['original']:.1f} %)", ""]
        lines += ["| ratio | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        by = {(r["method"], r["ratio"]): r for r in rs}
        for q in ratios:
            cells = []
            for x in methods:
                r = by.get((x, q)) or (by.get((methods[0], q)) if Fraction(q) == 1 else None)
                if r is None:
                    cells.append("–")
                elif r.get("error"):
                    cells.append("error")
                else:
                    cells.append(f"{100 * r['accuracy']:.1f} ({100 * r['ssm_frac']:.0f}/{100 * r['total_frac']:.0f})")
            lines.append(f"| {_fmt_ratio(q)} | " + " | ".join(cells) + " |")
        lines += ["", "Cells: accuracy (SSM parameters kept % / all parameters kept %).", ""]
        rm = c["removed"]
        lines += [
            "- H2 vs BT: " + ", ".join(f"{q}: {v['winner']} ({100 * v['h2']:.1f} vs {100 * v['bt']:.1f})"
                                         for q, v in c["h2_vs_bt"].items()),
            "- at 1/32: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in c["at_1_32"].items()),
            f"- ≤ 1 point loss: {100 * rm['1']['total_removed']:.1f} % of all parameters removed "
            f"({rm['1']['total_run']}); ≤ 2 points: {100 * rm['2']['total_removed']:.1f} % ({rm['2']['total_run']})",
        ]
        if "per_method" in rm["1"]:
            lines.append("- all parameters removed per method, ≤ 1 / ≤ 2 points: " + ", ".join(
                f"{k} {100 * v:.1f} / {100 * rm['2']['per_method'].get(k, 0.0):.1f} %"
                for k, v in rm["1"]["per_method"].items()))
        if c["bound_vs_uniform"]:
            lines.append("- bound-allocated vs uniform (h2): " + ", ".join(
                f"{q}: {100 * v['bound']:.1f} vs {100 * v['uniform_h2']:.1f} (orders {v['bound_orders']})"
                for q, v in c["bound_vs_uniform"].items()))
        bh = c["bound_holds"]
        tight = ("n/a" if bh["max_tightness"] is None
                 else f"{bh.get('min_tightness', bh['max_tightness']):.3g} … {bh['max_tightness']:.3g}")
        if bh["sequences"] == 0:  # torch models: the bound is defined for the reference architectures only
            lines += ["- output-error bound: not evaluated (defined for the S4D/LQO reference architectures)", ""]
            continue
        lines += [f"- bound ≥ measured: {bh['violations']} violations in {bh['sequences']} sequence checks over "
                  f"{bh['runs']} runs; measured/bound {tight}; "
                  f"{bh.get('saturated_runs', 0)} of {bh['runs']} runs at the saturated (trivial) cap "
                  f"({bh.get('saturated_within_2_points', 0)} of the {bh.get('runs_within_2_points', 0)} runs "
                  "within 2 points of the original accuracy)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------
def plot_accuracy(rows: Sequence[dict], model: str, path: Path) -> None:
    """Accuracy vs fraction of SSM parameters and of all parameters kept (one line per method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows if r["model"] == model and not r.get("error")]
    orig = [r for r in rs if Fraction(r["ratio"]) == 1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, key, label in ((axes[0], "ssm_frac", "fraction of SSM parameters kept"),
                           (axes[1], "total_frac", "fraction of all trainable parameters kept")):
        for meth, mk in zip(METHODS, "osd^v"):
            pts = sorted([(r[key], r["accuracy"]) for r in rs if r["method"] == meth] +
                         [(o[key], o["accuracy"]) for o in orig], reverse=True)
            pts = list(dict.fromkeys(pts))
            if len(pts) > 1:
                name = next((r["reducer"] for r in rs if r["method"] == meth), meth)
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker=mk, ms=4, label=name)
        if orig:
            a0 = 100 * orig[0]["accuracy"]
            for d, ls in ((0, "-"), (1, "--"), (2, ":")):
                ax.axhline(a0 - d, color="gray", lw=0.8, ls=ls)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{model}: accuracy without retraining (gray: original, -1, -2 points)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bound(rows: Sequence[dict], path: Path) -> None:
    """Bound vs measured max logit error, every compressed run (log-log, with y = x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows if not r.get("error") and Fraction(r["ratio"]) < 1
          and r.get("measured_max") not in ("", None) and r["measured_max"] > 0]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for model, mk in zip(dict.fromkeys(r["model"] for r in rs), "os^vD<>"):
        pts = [(r["measured_max"], r["bound"]) for r in rs if r["model"] == model]
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], mk, ms=5, alpha=0.7, label=model)
    if rs:
        lo = min(min(r["measured_max"] for r in rs), min(r["bound"] for r in rs))
        hi = max(max(r["measured_max"] for r in rs), max(r["bound"] for r in rs))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="bound = measured")
    ax.set_xlabel("measured max logit error")
    ax.set_ylabel("a-posteriori bound")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def _split(text: str | None, default: Sequence[str]) -> list[str]:
    return list(default) if not text else [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"subset: {QUICK}")
    p.add_argument("--models", default=None, help=f"comma-separated subset of {MODELS}")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of {METHODS}")
    p.add_argument("--ratios", default=None, help=f"comma-separated subset of {RATIOS}")
    p.add_argument("--n-test", type=int, default=None, help="test sequences (default: all; tones: 1000)")
    p.add_argument("--n-calib", type=int, default=200, help="calibration (training) sequences")
    p.add_argument("--bound-samples", type=int, default=200, help="test sequences for bound vs measured")
    p.add_argument("--executor", default="serial", help="compress executor: serial, process, thread")
    p.add_argument("--allocate", default="uniform", choices=("uniform", "data"),
                   help="h2 orders per block: uniform (default) or split by data (MIMO/LQO models; "
                        "compress(options={'allocate': 'data'}))")
    p.add_argument("--out", default=None,
                   help=f"output directory (default: {RESULTS}; with --quick: {RESULTS / 'quick'}, so a smoke test "
                        "never overwrites the committed results)")
    p.add_argument("--no-merge", action="store_true",
                   help="combined outputs from the models run now only (default: merge the other models' CSVs)")
    p.add_argument("--summarize-only", action="store_true",
                   help="run nothing; rebuild sweep.csv, claims and plots from the sweep_<model>.csv files")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Run the sweep, write CSV/JSON/Markdown/PNG, return the claims."""
    args = parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(os.environ.get("MOR_LQO_BLAS_THREADS", "1")))
    except ImportError:  # pragma: no cover
        pass
    models = _split(args.models, QUICK["models"] if args.quick else MODELS)
    methods = _split(args.methods, QUICK["methods"] if args.quick else METHODS)
    ratios = _split(args.ratios, QUICK["ratios"] if args.quick else RATIOS)
    if "1" not in ratios:
        ratios = ["1", *ratios]
    n_test = args.n_test if args.n_test is not None else (300 if args.quick else None)
    out = Path(args.out) if args.out is not None else (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    run_models = [] if args.summarize_only else models
    new_rows: dict[str, list[dict]] = {}
    wall: dict[str, float] = {}
    t_all = time.perf_counter()
    for name in run_models:
        t_model = time.perf_counter()
        case = load_case(name, n_test, args.n_calib)
        acc0 = case["model"].accuracy(case["x"], case["y"], batch_size=250)
        print(f"== {name}: {case['desc']}; {len(case['x'])} test sequences, original accuracy {acc0:.4f}, "
              f"parameters {case['model'].num_parameters()}", flush=True)
        rows = []
        for method in methods:
            for ratio in ratios:
                if (Fraction(ratio) == 1 and method != methods[0]) or (case.get("torch") and method == "bound"):
                    continue  # the bound method needs the bound, defined for the reference architectures only
                try:
                    row = run_one(case, method, ratio, bound_samples=min(args.bound_samples, len(case["x"])),
                                  executor=args.executor, acc0=acc0,
                                  options={"allocate": args.allocate} if method == "h2" else None)
                except Exception as exc:  # record and go on: a failed run is a result too
                    traceback.print_exc()
                    row = {"method": method, "reducer": _reducer(method, case["family"]), "ratio": ratio,
                           "error": f"{type(exc).__name__}: {exc}"}
                row["model"] = name
                rows.append(row)
                if row.get("error"):
                    print(f"  {method:>6} {ratio:>5}: FAILED {row['error']}", flush=True)
                else:
                    bound = (f"bound {row['bound']:.3g} / measured {row['measured_max']:.3g}"
                             if row["bound"] != "" else "bound n/a")
                    print(f"  {method:>6} {ratio:>5}: acc {row['accuracy']:.4f} ({row['acc_drop_points']:+.1f} pts)"
                          f"  SSM {row['ssm_frac']:.3f}  total {row['total_frac']:.3f}  orders [{row['orders']}]"
                          f"  {bound}  viol {row['bound_violations']}  {row['time_s']:.1f}s", flush=True)
        _write_csv(out / f"sweep_{name}.csv", rows)
        plot_accuracy(rows, name, out / f"accuracy_{name}.png")
        new_rows[name] = rows
        wall[name] = round(time.perf_counter() - t_model, 1)
    merge = args.summarize_only or not (args.no_merge or args.quick)
    all_rows, merged = merge_rows(new_rows, out, MODELS if merge else ())
    for name in merged:
        plot_accuracy(all_rows, name, out / f"accuracy_{name}.png")
    if not all_rows:
        print(f"no sweep rows (run or found in {out})", file=sys.stderr)
        return None
    old = _read_json(out / "claims.json").get("settings", {}).get("model_wall_time_s", {}) if merge else {}
    _write_csv(out / "sweep.csv", all_rows)
    plot_bound(all_rows, out / "bound_vs_measured.png")
    claims = summarize(all_rows)
    present = list(dict.fromkeys(r["model"] for r in all_rows))
    meta = {"quick": args.quick, "models": present, "run_now": run_models, "merged_from_csv": merged,
            "methods": methods, "ratios": ratios, "n_test": n_test,
            "n_calib": args.n_calib, "bound_samples": args.bound_samples,
            "wall_time_s": round(time.perf_counter() - t_all, 1),
            "model_wall_time_s": {m: wall.get(m, old.get(m)) for m in present}}
    (out / "claims.json").write_text(json.dumps({"settings": meta, "claims": claims}, indent=1, default=float) + "\n")
    (out / "claims.md").write_text(claims_markdown(claims, all_rows) + "\n")
    print(claims_markdown(claims, all_rows))
    print(f"wrote results to {out} in {meta['wall_time_s']:.0f} s")
    return claims


def merge_rows(new: dict[str, list[dict]], out: Path, models: Sequence[str]) -> tuple[list[dict], list[str]]:
    """Rows of the models run now plus, for the other ``models``, the rows of ``out/sweep_<model>.csv``.

    Returns
    -------
    rows : list of dict
        In the order of ``models`` (models run now but not in ``models`` last).
    merged : list of str
        The models whose rows were read from a CSV file.
    """
    rows: list[dict] = []
    merged: list[str] = []
    for m in models:
        if m in new:
            rows += new[m]
        elif (out / f"sweep_{m}.csv").is_file():
            rows += read_csv(out / f"sweep_{m}.csv")
            merged.append(m)
    for m, rs in new.items():
        if m not in models:
            rows += rs
    return rows, merged


def read_csv(path: Path) -> list[dict]:
    """Rows of a ``sweep_*.csv`` file with the numeric fields converted back (inverse of ``_write_csv``)."""
    ints = {"ssm_params", "ssm_params_before", "total_params", "total_params_before", "bound_violations",
            "bound_samples"}
    floats = {"ssm_frac", "total_frac", "accuracy", "acc_drop_points", "bound", "measured_max", "tightness",
              "time_s"}
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict = {}
            for k, v in raw.items():
                if v in ("", None) or k not in ints | floats:
                    row[k] = "" if v is None else v
                else:
                    row[k] = int(float(v)) if k in ints else float(v)
            rows.append(row)
    return rows


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in r.items()})


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
