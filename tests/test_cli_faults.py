"""Fault injection for ``mor-lqo compress``: outputs are one unit, never lost, mixed or left half-written.

Each case reproduces a failure seen with the earlier CLI: an existing ``--out`` overwritten silently, two
runs mixing their files, a full disk after the checkpoint was written, SIGTERM leaving workers and
temporary files behind, unwritable output paths ending in tracebacks.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from deep_builders import s4d_sd

from mor_lqo import cli
from mor_lqo.adapters import save
from mor_lqo.cli import EXIT_OK, EXIT_OUTPUT, EXIT_SIGTERM, EXIT_USAGE, main
from mor_lqo.deep import read_safetensors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ckpt(tmp_path):
    return save(s4d_sd(np.random.default_rng(3), H=3, M=(6, 5)), tmp_path / "in" / "model.safetensors")


def _run(ckpt, out, *extra):
    return main(["compress", str(ckpt), "--order", "2", "--out", str(out), "--no-progress", "--no-plot", "--quiet",
                 *extra])


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _report_matches_checkpoint(out: Path) -> None:
    rep = json.loads((out / "report.json").read_text())
    _, meta = read_safetensors(Path(rep["output"]["checkpoint"]))
    assert meta["method"] == rep["method"]
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(v).name for v in rep["output"].values())


def test_existing_outputs_need_force_and_are_replaced_whole(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(ckpt, out, "--method", "modal") == EXIT_OK
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert _run(ckpt, out, "--method", "bt") == EXIT_OUTPUT
    assert "--force" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # untouched
    assert _run(ckpt, out, "--method", "bt", "--force") == EXIT_OK
    assert json.loads((out / "report.json").read_text())["method"] == "bt"
    _report_matches_checkpoint(out)
    assert _leftovers(tmp_path) == []


def test_foreign_files_are_never_replaced(ckpt, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    for extra in ([], ["--force"]):
        assert _run(ckpt, out, *extra) == EXIT_OUTPUT
    assert "no earlier run wrote" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(ckpt, empty) == EXIT_OK  # an empty directory is fine


def test_disk_full_keeps_the_previous_outputs(ckpt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert _run(ckpt, out, "--method", "modal") == EXIT_OK
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    real = cli._atomic_write_bytes

    def full(path, data):
        if Path(path).name == "report.json":  # the checkpoint is already written when the disk fills
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(cli, "_atomic_write_bytes", full)
    assert _run(ckpt, out, "--method", "bt", "--force") == EXIT_OUTPUT
    err = capsys.readouterr().err
    assert "no space left on device" in err and "Traceback" not in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # the complete previous run
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["/proc/mor_lqo_out", "/dev/null/out"])
def test_unwritable_out_is_one_line_before_any_work(ckpt, where, capsys, monkeypatch):
    def no_work(*args, **kwargs):  # the reduction must not even start
        raise AssertionError("compress ran although --out is unusable")

    monkeypatch.setattr(cli, "_run_compress", no_work)
    assert _run(ckpt, where) in (EXIT_OUTPUT, EXIT_USAGE)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def _cli(*args, **kw):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "mor_lqo", "compress", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_concurrent_forced_runs_never_mix(ckpt, tmp_path):
    out = tmp_path / "out"
    assert _run(ckpt, out) == EXIT_OK
    for _ in range(2):
        procs = [_cli(ckpt, "--order", "2", "--out", out, "--force", "--no-progress", "--no-plot", "--quiet",
                      "--method", m) for m in ("modal", "bt")]
        codes = [p.wait(timeout=300) for p in procs]
        assert codes == [EXIT_OK, EXIT_OK], [p.stderr.read() for p in procs]
        _report_matches_checkpoint(out)
    assert _leftovers(tmp_path) == []


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, EXIT_SIGTERM, "terminated"),
                                           (signal.SIGINT, 130, "interrupted")])
def test_signal_stops_workers_and_leaves_no_files(tmp_path, sig, code, word):
    out = tmp_path / "out"
    proc = _cli("--method", "h2", "--executor", "process", "--out", out, "--no-progress", "--no-plot")
    deadline = time.monotonic() + 120
    kids: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        kids = _children(proc.pid)
        if kids:
            break
        time.sleep(0.05)
    if not kids:
        proc.kill()
        pytest.fail(f"no worker processes appeared (rc {proc.poll()}): {proc.communicate()[1][-2000:]}")
    time.sleep(0.3)
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert rc == code, err[-2000:]
    assert word in err and "Traceback" not in err
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end and any(_alive(k) for k in kids):
        time.sleep(0.1)
    assert not any(_alive(k) for k in kids)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_huge_length_is_refused_before_allocation(ckpt, tmp_path, capsys):
    from mor_lqo.cli import EXIT_MEMORY

    assert _run(ckpt, tmp_path / "o", "--length", str(10**9)) == EXIT_MEMORY
    err = capsys.readouterr().err
    assert "--length" in err and "available" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_inspect_long_horizon_needs_only_the_lags_it_uses(ckpt, capsys):
    # the Hankel matrix is capped at 1600 rows, i.e. lags < 3201: L = 10**6 and L = 4000 are the same operator
    out = {}
    for L in (4000, 10**6):
        assert main(["inspect", str(ckpt), "--json", "--length", str(L), "--hsv", "12"]) == EXIT_OK
        out[L] = json.loads(capsys.readouterr().out)
    for a, b in zip(out[4000]["blocks"], out[10**6]["blocks"]):
        assert a["hsv"] == b["hsv"] and a["suggested_order"] == b["suggested_order"]


def test_inspect_names_units_it_cannot_analyse(tmp_path, capsys):
    sd = s4d_sd(np.random.default_rng(3), H=3, M=(6, 5))
    la = sd["s4_layers.1.kernel.log_A_real"].copy()
    la[0, 0] = -np.inf  # Re(a) = -exp(-inf) = 0: a mode on the unit circle after discretisation
    sd["s4_layers.1.kernel.log_A_real"] = la
    path = save(sd, tmp_path / "marginal.safetensors")
    assert main(["inspect", str(path), "--json"]) == EXIT_OK
    blocks = json.loads(capsys.readouterr().out)["blocks"]
    assert "skipped_units" not in blocks[0]
    assert len(blocks[1]["skipped_units"]) == 1 and blocks[1]["skipped_units"][0].startswith("unit 0:")
    assert main(["inspect", str(path)]) == EXIT_OK
    assert "skipped unit 0" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["bt", "tsia", "irka"])
def test_dead_channel_is_handled_per_channel(tmp_path, method, capsys):
    sd = s4d_sd(np.random.default_rng(3), H=3, M=(6, 5))
    C = sd["s4_layers.0.kernel.C"].copy()
    C[1] = 0  # channel 1 of layer 0 is dead: zero input-output map, zero Hankel singular values
    sd["s4_layers.0.kernel.C"] = C
    path = save(sd, tmp_path / "dead.safetensors")
    out = tmp_path / "o"
    assert _run(path, out, "--method", method, "--order", "4") == EXIT_OK
    rep = json.loads((out / "report.json").read_text())
    assert any("s4_layers.0. unit 1" in n and "modal truncation" in n for n in rep["notes"])
    new, _ = read_safetensors(out / "dead_compressed.safetensors")
    assert np.all(new["s4_layers.0.kernel.C"][1] == 0)  # still dead: exact


@pytest.mark.parametrize("method", ["bt", "modal", "h2"])
def test_unit_circle_mode_is_kept_exactly(tmp_path, method):
    sd = s4d_sd(np.random.default_rng(3), H=3, M=(6, 5))
    la = sd["s4_layers.1.kernel.log_A_real"].copy()
    la[2, 0] = -np.inf  # Re(a) = -exp(-inf) = 0: channel 2 of layer 1 has a mode on the unit circle
    sd["s4_layers.1.kernel.log_A_real"] = la
    path = save(sd, tmp_path / "marginal.safetensors")
    out = tmp_path / "o"
    assert _run(path, out, "--method", method, "--order", "4", "--length", "32") == EXIT_OK
    rep = json.loads((out / "report.json").read_text())
    if method == "bt":
        assert any("s4_layers.1. unit 2" in n and "unit circle kept exactly" in n for n in rep["notes"])
    lay = {x["name"]: x for x in rep["layers"]}["s4_layers.1."]
    assert lay["stored_after"] <= 2 and lay["h2_error_L"] is not None and np.isfinite(lay["h2_error_L"])
    new, _ = read_safetensors(out / "marginal_compressed.safetensors")
    from mor_lqo.adapters import extract

    (_, b1) = extract(new)
    lam = b1.units[2].modes.lam
    assert np.max(np.abs(lam)) >= 1 - 1e-6  # the unit-circle mode survived the reduction (float32 storage)


def test_unit_circle_mode_too_many_for_the_order_is_named(tmp_path, capsys):
    sd = s4d_sd(np.random.default_rng(3), H=3, M=(6, 5))
    la = sd["s4_layers.1.kernel.log_A_real"].copy()
    la[2, :2] = -np.inf
    sd["s4_layers.1.kernel.log_A_real"] = la
    path = save(sd, tmp_path / "marginal.safetensors")
    assert _run(path, tmp_path / "o", "--method", "bt", "--order", "4") != EXIT_OK
    err = capsys.readouterr().err
    assert "s4_layers.1. unit 2" in err and "unit circle" in err and err.count("\n") == 1


def test_calibration_too_large_is_refused_before_allocation(monkeypatch):
    from mor_lqo.deep.compress import compress

    monkeypatch.setattr("mor_lqo._files.available_memory", lambda: 512 << 10)  # pretend 512 KiB are free
    sd = s4d_sd(np.random.default_rng(3), H=4, M=(6,))
    x = np.random.default_rng(0).standard_normal((2, 512)).astype(np.float32)
    # forward 8*2*512*4*(3+6) B = 288 KiB, data weights 2*8*4*512*(2+3) B = 160 KiB: 448 KiB > 256 KiB
    with pytest.raises(MemoryError, match=r"2 sequences of length 512 needs about 448 KiB .*data weights 160 KiB"):
        compress(sd, method="h2", order=4, inputs=x, progress=False)


def test_unreadable_input_is_a_file_error_not_an_output_error(ckpt, tmp_path, monkeypatch, capsys):
    from mor_lqo.cli import EXIT_FILE

    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((2, 12), np.float32))

    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(cli, "read_npz_checked", denied)
    assert _run(ckpt, tmp_path / "o", "--data", str(data)) == EXIT_FILE
    err = capsys.readouterr().err
    assert "permission denied" in err and str(data) in err and err.count("\n") == 1
