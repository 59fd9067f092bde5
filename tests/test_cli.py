"""Tests of the command line (mor_lqo.cli): the main job on the bundled model, user checkpoints with and
without data, inspect, and clear errors with distinct exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from deep_builders import lqo_sd, s4d_sd

from mor_lqo.adapters import save
from mor_lqo.cli import EXIT_FILE, EXIT_LAYOUT, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, main
from mor_lqo.deep import S4DModel, read_safetensors


@pytest.fixture
def ckpt(tmp_path, rng):
    return save(s4d_sd(rng, H=4, M=(6, 5)), tmp_path / "model.safetensors")


def test_main_job_bundled_model(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compress", "--out", str(out), "--no-progress"]) == EXIT_OK
    text = capsys.readouterr().out
    for s in ("s4_layers.0.", "SSM parameters", "trainable parameters", "accuracy", "bound", "wrote"):
        assert s in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["params"]["before"] > rep["params"]["after"] > 0
    assert rep["params"]["ssm"]["before"] >= 7 * rep["params"]["ssm"]["after"]
    assert rep["state_ratio"] <= 1 / 8
    acc = rep["accuracy"]
    assert acc["before"] == pytest.approx(97.5) and acc["after"] >= acc["before"] - 1.0
    assert rep["bound"]["value"] >= rep["bound"]["measured_max_error"] > 0
    assert len(rep["layers"]) == 3
    for lay in rep["layers"]:
        assert {"name", "order_before", "order_after", "h2_error"} <= set(lay)
        assert lay["order_after"] * 8 <= lay["order_before"]
    assert sum(lay["bound_share"] for lay in rep["layers"]) == pytest.approx(1.0)
    # the compressed checkpoint loads into the numpy model and gives the reported accuracy
    from mor_lqo.deep import load_test_split

    sd, _ = read_safetensors(out / "s4d_mnist1d_compressed.safetensors")
    x, y = load_test_split()
    assert 100 * S4DModel.from_state_dict(sd).accuracy(x, y) == pytest.approx(acc["after"])
    assert (out / "compression.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import os

    mask = os.umask(0)
    os.umask(mask)
    for f in ("report.json", "compression.png", "s4d_mnist1d_compressed.safetensors"):
        assert (out / f).stat().st_mode & 0o777 == 0o666 & ~mask


def test_user_checkpoint_without_data(ckpt, tmp_path, capsys):
    before = ckpt.read_bytes()
    out = tmp_path / "o"
    assert main(["compress", str(ckpt), "--ratio", "1/3", "--length", "16", "--out", str(out), "--no-progress",
                 "--no-plot"]) == EXIT_OK
    assert ckpt.read_bytes() == before  # never overwrites the input
    rep = json.loads((out / "report.json").read_text())
    assert rep["accuracy"] == {"before": None, "after": None}
    assert rep["bound"]["value"] is None
    assert rep["params"]["ssm"]["after"] < rep["params"]["ssm"]["before"]
    assert all(lay["h2_error"] is not None and lay["h2_error_L"] is not None for lay in rep["layers"])
    assert not (out / "compression.png").exists()
    sd, _ = read_safetensors(out / "model_compressed.safetensors")
    assert S4DModel.from_state_dict(sd).d_state == (4, 4)
    # --out is published as one unit: the input's own (non-empty) directory is refused, --force or not
    for extra in ([], ["--force"]):
        assert main(["compress", str(ckpt), "--order", "2", "--out", str(ckpt.parent), "--quiet", *extra]) in (
            EXIT_OUTPUT, EXIT_USAGE)
    assert ckpt.read_bytes() == before


def test_user_checkpoint_with_data(ckpt, tmp_path, rng):
    x = rng.standard_normal((40, 12)).astype(np.float32)
    y = rng.integers(0, 5, 40)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "o"
    assert main(["compress", str(ckpt), "--data", str(tmp_path / "d.npz"), "--order", "2", "--out", str(out),
                 "--no-progress", "--method", "h2"]) == EXIT_OK
    rep = json.loads((out / "report.json").read_text())
    assert rep["accuracy"]["before"] is not None and rep["length"] == 12
    assert rep["bound"]["value"] >= rep["bound"]["measured_max_error"]


def test_torch_checkpoint_and_lqo(tmp_path, rng):
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v) for k, v in lqo_sd(rng, H=3, P=(6, 4), R=(2, 1)).items()}
    path = tmp_path / "lqo.pt"
    torch.save(sd, path)
    out = tmp_path / "o"
    assert main(["compress", str(path), "--method", "modal", "--order", "4", "--out", str(out), "--no-progress",
                 "--no-plot"]) == EXIT_OK
    new = torch.load(out / "lqo_compressed.pt", weights_only=True)  # same kind as the input: torch tensors
    assert isinstance(new["layers.0.ssm.log_A_real"], torch.Tensor) and new["layers.0.ssm.log_A_real"].shape == (2,)
    assert set(new) == set(sd)


@pytest.mark.parametrize("args,code,msg", [
    (["compress", "/nonexistent/x.safetensors"], EXIT_FILE, "not found"),
    (["compress", "--ratio", "abc"], EXIT_USAGE, "ratio"),
    (["compress", "--ratio", "0"], EXIT_USAGE, "ratio"),
    (["compress", "--ratio", "3/2"], EXIT_USAGE, "ratio"),
    (["compress", "--order", "3"], EXIT_USAGE, "even"),
    (["compress", "--budget", "-5"], EXIT_USAGE, "budget"),
    (["compress", "--budget", "10"], EXIT_USAGE, "minimum"),
    (["compress", "--method", "nope"], EXIT_USAGE, "invalid choice"),
    (["compress", "--ratio", "1/2", "--order", "4"], EXIT_USAGE, "not allowed"),
    (["inspect", "/nonexistent/x.pt"], EXIT_FILE, "not found"),
    ([], EXIT_USAGE, "usage"),
])
def test_errors(args, code, msg, capsys, tmp_path):
    if args and args[0] == "compress":
        args = args + ["--out", str(tmp_path / "o"), "--no-progress"]
    assert main(args) == code
    cap = capsys.readouterr()
    assert msg in (cap.err + cap.out)


def test_unknown_layout_and_bad_files(tmp_path, capsys, rng):
    p = save({"foo.weight": rng.standard_normal((3, 3)).astype(np.float32)}, tmp_path / "x.safetensors")
    assert main(["compress", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == EXIT_LAYOUT
    assert "no SSM block" in capsys.readouterr().err
    assert main(["inspect", str(p)]) == EXIT_LAYOUT
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["compress", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == EXIT_FILE
    assert main(["inspect", str(tmp_path / "y.txt")]) == EXIT_FILE
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["compress", str(p), "--out", str(f)]) == EXIT_USAGE
    assert main(["compress", str(p), "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "o")]) == EXIT_FILE


def test_bound_needs_data(ckpt, tmp_path, capsys):
    assert main(["compress", str(ckpt), "--method", "bound", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == EXIT_USAGE
    assert "calibration inputs" in capsys.readouterr().err


def test_inspect(ckpt, capsys):
    assert main(["inspect", str(ckpt)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "s4_layers.0." in text and "suggested order" in text and "HSV" in text
    assert main(["inspect", str(ckpt), "--json", "--length", "20", "--tol", "1e-3"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert [b["order"] for b in info["blocks"]] == [12, 10]
    for b in info["blocks"]:
        assert b["hsv"] == sorted(b["hsv"], reverse=True)
        assert 2 <= b["suggested_order"]["median"] <= b["suggested_order"]["max"] <= max(b["order"], 20)
    assert main(["inspect", str(ckpt), "--tol", "2"]) == EXIT_USAGE


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "mor_lqo", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "compress" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mor_lqo", "compress", "--ratio", "x"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == EXIT_USAGE and "ratio" in r.stderr
