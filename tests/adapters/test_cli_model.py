"""``mor-lqo compress CKPT --model PKG.MODULE:FACTORY --data calib.npz`` on a user's module built from the
upstream s5-pytorch blocks: training (Lightning-style) and plain checkpoints, safetensors, and bad inputs."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("s5")

from mor_lqo.cli import main  # noqa: E402

USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn
    from s5 import S5Block

    class Net(nn.Module):
        def __init__(self, state_dim=16):
            super().__init__()
            self.enc = nn.Linear(1, 8)
            self.blocks = nn.ModuleList([S5Block(8, state_dim, bidir=False) for _ in range(2)])
            self.dec = nn.Linear(8, 3)

        def forward(self, x):
            h = self.enc(x)
            for b in self.blocks:
                h = b(h)
            return self.dec(h.mean(1))

    def build():
        torch.manual_seed(0)
        return Net()

    def no_ssm():
        return nn.Sequential(nn.Linear(1, 4), nn.ReLU())

    not_callable = 3
''')


@pytest.fixture()
def user(tmp_path, monkeypatch):
    (tmp_path / "user_models_cli.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("user_models_cli")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 30, 1)).astype(np.float32)
    y = rng.integers(0, 3, 48)
    np.savez(tmp_path / "calib.npz", x=x, y=y)
    return mod, tmp_path, x, y


def _accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return 100.0 * float((model(torch.from_numpy(x)).argmax(-1).numpy() == y).mean())


def test_lightning_style_checkpoint_round_trip(user):
    mod, tmp, x, y = user
    net = mod.build()
    ckpt = {"state_dict": {"model." + k: v for k, v in net.state_dict().items()},
            "hyper_parameters": {"state_dim": 16, "lr": 1e-3}, "optimizer_states": [{"state": {}}], "epoch": 2}
    torch.save(ckpt, tmp / "net.ckpt")
    out = tmp / "out"
    rc = main(["compress", str(tmp / "net.ckpt"), "--model", "user_models_cli:build", "--data", str(tmp / "calib.npz"),
               "--order", "8", "--out", str(out), "--executor", "serial", "--quiet", "--no-progress"])
    assert rc == 0
    back = torch.load(out / "net_compressed.ckpt", weights_only=True)
    assert back["optimizer_states"] == [] and back["epoch"] == 2
    assert back["hyper_parameters"] == {"state_dim": 4, "lr": 1e-3}
    fresh = mod.Net(**{"state_dim": back["hyper_parameters"]["state_dim"]})
    fresh.load_state_dict({k[len("model."):]: v for k, v in back["state_dict"].items()}, strict=True)
    rep = json.loads((out / "report.json").read_text())
    assert rep["accuracy"]["before"] == pytest.approx(_accuracy(net, x, y))
    assert rep["accuracy"]["after"] == pytest.approx(_accuracy(fresh, x, y))
    assert [b["stored_after"] for b in rep["blocks"]] == [4, 4]
    assert any("optimizer_states" in n for n in rep["checkpoint_notes"])


def test_safetensors_checkpoint_stays_safetensors(user):
    from safetensors.torch import load_file, save_file

    mod, tmp, x, _ = user
    net = mod.build()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp / "net.safetensors")
    out = tmp / "out_st"
    rc = main(["compress", str(tmp / "net.safetensors"), "--model", "user_models_cli:build", "--data",
               str(tmp / "calib.npz"), "--ratio", "1/4", "--out", str(out), "--executor", "serial", "--quiet",
               "--no-progress"])
    assert rc == 0
    fresh = mod.Net(state_dim=4)
    fresh.load_state_dict(load_file(out / "net_compressed.safetensors"), strict=True)


@pytest.mark.parametrize("spec, code, word", [
    ("user_models_cli:missing", 2, "no attribute"),
    ("no_such_package_xyz.models:build", 2, "cannot import"),
    ("user_models_cli", 2, "PKG.MODULE:FACTORY"),
    ("user_models_cli:not_callable", 2, "not callable"),
    ("user_models_cli:no_ssm", 4, "Linear"),
    ("user_models_cli:build", 4, "does not fit"),  # the checkpoint below is not this module's
])
def test_bad_factories_exit_with_a_clear_message_and_write_nothing(user, capsys, spec, code, word):
    mod, tmp, _, _ = user
    torch.save((mod.no_ssm() if spec.endswith(("no_ssm", ":build")) else mod.build()).state_dict(), tmp / "net.pt")
    out = tmp / "never"
    rc = main(["compress", str(tmp / "net.pt"), "--model", spec, "--data", str(tmp / "calib.npz"), "--out", str(out)])
    assert rc == code and word in capsys.readouterr().err
    assert not out.exists()


def test_bad_calibration_data_exits_3(user, capsys):
    mod, tmp, _, _ = user
    torch.save(mod.build().state_dict(), tmp / "net.pt")
    np.savez(tmp / "wrong.npz", x=np.zeros((4, 30, 5), np.float32))
    rc = main(["compress", str(tmp / "net.pt"), "--model", "user_models_cli:build", "--data", str(tmp / "wrong.npz"),
               "--out", str(tmp / "o"), "--executor", "serial"])
    assert rc == 3 and "wrong.npz" in capsys.readouterr().err and not (tmp / "o").exists()
    rc = main(["compress", str(tmp / "net.pt"), "--model", "user_models_cli:build", "--out", str(tmp / "o")])
    assert rc == 2 and "--data" in capsys.readouterr().err
