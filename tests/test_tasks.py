"""Long-range task generator (benchmarks/tasks.py) and the trained tones model (benchmarks/results)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.tasks import TONES_DEFAULTS, make_task, make_tones, task_info

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_shapes_dtypes_determinism():
    x, y = make_tones(16, 1024, seed=3)
    assert x.shape == (16, 1024, 1) and x.dtype == np.float32
    assert y.shape == (16,) and y.dtype == np.int64
    x2, y2 = make_task("tones", 16, 1024, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = make_tones(16, 1024, seed=4)
    assert not np.array_equal(x, x3)
    assert make_tones(0, 64)[0].shape == (0, 64, 1)


def test_labels_balanced_and_in_range():
    _, y = make_tones(8000, 64, seed=0)
    K = TONES_DEFAULTS["n_classes"]
    counts = np.bincount(y, minlength=K)
    assert counts.size == K and y.min() >= 0
    # multinomial: each count ~ 1000 +- 30 (sd); 5 sd margin
    assert np.all(np.abs(counts - 1000) < 150)


def test_noise_free_frequency_matches_class():
    """Independent check: with noise 0 and jitter 0, the sequence is exactly the class sinusoid
    (least-squares fit of sin/cos at the class frequency leaves rounding-level residuals, and the
    neighbouring class frequencies fit worse)."""
    L, K = 1024, 8
    x, y = make_tones(24, L, seed=5, noise=0.0, jitter=0.0)
    t = np.arange(L)
    for xi, yi in zip(x[:, :, 0].astype(np.float64), y):
        res = {}
        for k in range(K):
            f = (4.0 + 0.5 * k) / L
            basis = np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)], axis=1)
            coef, *_ = np.linalg.lstsq(basis, xi, rcond=None)
            res[k] = np.linalg.norm(basis @ coef - xi) / np.linalg.norm(xi)
            if k == yi:
                assert abs(np.hypot(*coef) - 1.0) < 1e-5  # unit amplitude
        assert res[yi] < 1e-6  # float32 storage
        assert min(v for k, v in res.items() if k != yi) > 1e-2


def test_noise_level():
    x, _ = make_tones(64, 2048, seed=1, noise=3.0)
    # signal power 1/2, noise power 9: total variance 9.5 (sd of the estimate ~ 9.5 * sqrt(2/N))
    assert abs(np.var(x) - 9.5) < 0.2


@pytest.mark.parametrize(
    "kw",
    [dict(n=-1), dict(n=1.5), dict(length=8), dict(n_classes=1), dict(spacing=0.0), dict(noise=-1.0),
     dict(jitter=0.5), dict(f0=600.0)],
)
def test_invalid_arguments(kw):
    args = {"n": 2, "length": 64}
    args.update(kw)
    n, length = args.pop("n"), args.pop("length")
    with pytest.raises(ValueError):
        make_tones(n, length, 0, **args)


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        make_task("listops", 2)
    with pytest.raises(ValueError):
        task_info("listops")
    assert task_info("tones") == {"kind": "classification", "d_input": 1, "d_output": 8, "chance": 0.125}


def test_trained_model_record_and_twin():
    """The committed model: its record is consistent, numpy inference runs, and the kernel-truncation
    helper with no truncation reproduces ``forward`` exactly."""
    from benchmarks.train_longrange import truncated_kernel_logits
    from mor_lqo.deep import S4DModel, read_safetensors

    path = RESULTS / "tones_s4d.safetensors"
    rec = json.loads(path.with_suffix(".json").read_text())
    sd, _ = read_safetensors(path)
    model = S4DModel.from_state_dict(sd)
    assert model.num_parameters() == rec["params"]
    assert rec["test_accuracy"] > 0.9 and rec["numpy_torch_max_logit_diff"] < 1e-3
    assert path.stat().st_size < 1_000_000
    x, y = make_tones(40, rec["task"]["length"], rec["task"]["test_seed"])
    full = model.forward(x)
    np.testing.assert_allclose(truncated_kernel_logits(model, x, None, batch_size=16), full, rtol=1e-12, atol=1e-12)
    # the first 40 test sequences: the recorded accuracy is over 2000, so only a loose check here
    assert np.mean(full.argmax(-1) == y) >= 0.8
    # cutting the kernels at 64 lags destroys it (the model uses long lags)
    cut = truncated_kernel_logits(model, x, 64, batch_size=16)
    assert np.mean(cut.argmax(-1) == y) < 0.5


def test_training_smoke(tmp_path):
    """A few steps on short sequences: the script writes weights + record that load again."""
    pytest.importorskip("torch")
    from benchmarks.train_longrange import main
    from mor_lqo.deep import S4DModel, read_safetensors

    out = tmp_path / "m.safetensors"
    rec = main(["--out", str(out), "--steps", "3", "--length", "64", "--d-model", "4", "--d-state", "8",
                "--eval-every", "2"])
    assert out.is_file() and out.with_suffix(".json").is_file()
    sd, meta = read_safetensors(out)
    m = S4DModel.from_state_dict(sd)
    assert m.n_modes == (4, 4) and meta["task"] == "tones"
    assert rec["steps_run"] == 3 and len(rec["history"]) == 2
    assert set(rec["truncated_kernel_accuracy"]) == {"16", "32", "64", "128", "256", "512"}


# ---------------------------------------------------------------------------------------------
# benchmarks/reproduce.py: the claims summary on synthetic rows (the sweep itself is a benchmark)
# ---------------------------------------------------------------------------------------------
def _row(method, ratio, acc, ssm, total, viol=0, samples=10, tight=0.1, bound=1.0):
    return {"model": "m", "method": method, "reducer": method, "ratio": ratio, "accuracy": acc,
            "acc_drop_points": round(100 * (0.9 - acc), 3), "ssm_frac": ssm, "total_frac": total,
            "ssm_params": int(1000 * ssm), "total_params": int(2000 * total), "orders": "2 2",
            "bound": bound, "measured_max": 0.5, "bound_violations": viol, "bound_samples": samples,
            "tightness": tight, "error": ""}


def test_reproduce_summary_and_plots(tmp_path):
    from benchmarks.reproduce import claims_markdown, plot_accuracy, plot_bound, summarize

    rows = [
        _row("modal", "1", 0.9, 1.0, 1.0, samples=0, tight=""),
        _row("bt", "1/2", 0.88, 0.5, 0.7), _row("bt", "1/32", 0.30, 0.05, 0.5),
        _row("h2", "1/2", 0.90, 0.5, 0.7), _row("h2", "1/32", 0.885, 0.04, 0.45),
        _row("bound", "1/2", 0.895, 0.5, 0.7, bound=0.7), _row("bound", "1/32", 0.85, 0.04, 0.45, viol=1, tight=1.2),
        {"model": "m", "method": "irka", "ratio": "1/2", "error": "RuntimeError: x"},
    ]
    c = summarize(rows)["m"]
    assert c["original"] == 0.9
    assert c["h2_vs_bt"]["1/2"]["winner"] == "h2" and c["h2_vs_bt"]["1/32"]["winner"] == "h2"
    assert c["at_1_32"] == {"bt": 0.30, "h2": 0.885, "bound": 0.85}
    # within 1 point: h2 1/2 (drop 0), bound 1/2 (0.5); h2 1/32 drops 1.5 -> only within 2 points
    assert c["removed"]["1"]["total_run"] in ("h2 1/2", "bound 1/2")
    assert abs(c["removed"]["1"]["total_removed"] - 0.3) < 1e-12
    assert c["removed"]["2"]["total_run"] == "h2 1/32" and abs(c["removed"]["2"]["total_removed"] - 0.55) < 1e-12
    # per method: bt 1/2 drops 2 points (only within 2), the original counts for every method
    assert c["removed"]["1"]["per_method"] == pytest.approx({"modal": 0.0, "bt": 0.0, "h2": 0.3, "bound": 0.3})
    assert c["removed"]["2"]["per_method"] == pytest.approx({"modal": 0.0, "bt": 0.3, "h2": 0.55, "bound": 0.3})
    assert c["bound_vs_uniform"]["1/32"] == {"bound": 0.85, "uniform_h2": 0.885, "bound_orders": "2 2",
                                             "bound_ssm_params": 40, "uniform_ssm_params": 40}
    # five runs share the largest bound (1.0): saturated at the cap; bound 1/2 (0.7) is not. Within 2 points
    # of the original: bt 1/2, h2 1/2, h2 1/32 (saturated) and bound 1/2 (not)
    assert c["bound_holds"] == {"runs": 6, "sequences": 60, "violations": 1, "holds": False, "max_tightness": 1.2,
                                "min_tightness": 0.1, "saturated_runs": 5, "runs_within_2_points": 4,
                                "saturated_within_2_points": 3}
    md = claims_markdown({"m": c}, rows)
    assert "| 1/32 |" in md and "error" in md and "1 violations" in md
    assert "5 of 6 runs at the saturated (trivial) cap (3 of the 4 runs within 2 points" in md
    plot_accuracy(rows, "m", tmp_path / "a.png")
    plot_bound(rows, tmp_path / "b.png")
    assert (tmp_path / "a.png").stat().st_size > 1000 and (tmp_path / "b.png").stat().st_size > 1000


def test_reproduce_torch_model_rows_without_bound(tmp_path):
    """Rows of a torch model (benchmarks/reproduce_torch.py): empty bound columns are summarised as 'not
    evaluated', never as '0 violations', and the bound plot skips them."""
    from benchmarks.reproduce import claims_markdown, plot_bound, summarize

    rows = [dict(_row("modal", "1", 0.9, 1.0, 1.0, samples=0, tight=""), bound="", measured_max=""),
            dict(_row("h2", "1/4", 0.9, 0.25, 0.3, samples=0, tight=""), bound="", measured_max="")]
    c = summarize(rows)
    assert c["m"]["bound_holds"]["sequences"] == 0
    md = claims_markdown(c, rows)
    assert "not evaluated" in md and "violations" not in md
    plot_bound(rows, tmp_path / "b.png")  # no point to draw, no error


def test_reproduce_saturated_runs():
    from benchmarks.reproduce import _saturated_runs

    rows = [{"bound": 5.0}, {"bound": 183.3}, {"bound": 183.3}, {"bound": ""}, {"bound": 171.8}]
    assert _saturated_runs(rows) == 2
    # a single largest value is not evidence of the cap
    assert _saturated_runs([{"bound": 5.0}, {"bound": 7.0}]) == 0
    assert _saturated_runs([]) == 0


def test_reproduce_merge_and_csv_roundtrip(tmp_path):
    """Re-running one model merges the other models' CSVs; numbers survive write -> read."""
    from benchmarks.reproduce import _write_csv, merge_rows, read_csv, summarize

    old = [dict(_row("modal", "1", 0.9, 1.0, 1.0, samples=0, tight=""), model="a"),
           dict(_row("h2", "1/2", 0.89, 0.5, 0.7), model="a"),
           {"model": "a", "method": "bt", "reducer": "bt", "ratio": "1/2", "error": "RuntimeError: x"}]
    _write_csv(tmp_path / "sweep_a.csv", old)
    back = read_csv(tmp_path / "sweep_a.csv")
    assert [r["method"] for r in back] == ["modal", "h2", "bt"]
    assert back[1]["accuracy"] == 0.89 and back[1]["ssm_params"] == 500 and back[1]["bound_violations"] == 0
    assert back[0]["tightness"] == "" and back[2]["error"] == "RuntimeError: x" and back[2]["accuracy"] == ""
    assert summarize(back)["a"]["removed"]["1"]["total_run"] == "h2 1/2"

    new = {"b": [dict(_row("modal", "1", 0.8, 1.0, 1.0, samples=0, tight=""), model="b")]}
    rows, merged = merge_rows(new, tmp_path, ("a", "b", "c"))  # c: neither run nor on disk
    assert merged == ["a"] and [r["model"] for r in rows] == ["a", "a", "a", "b"]
    rows, merged = merge_rows(new, tmp_path, ())  # --no-merge
    assert merged == [] and [r["model"] for r in rows] == ["b"]
    # a re-run model replaces its CSV rows
    rows, merged = merge_rows({"a": new["b"]}, tmp_path, ("a",))
    assert merged == [] and len(rows) == 1
