"""Lightning-style training checkpoints: reduced sizes in the hyper-parameters, optimizer state dropped.

Oracle: the checkpoint written by ``adapters.save`` is read with ``torch.load(weights_only=True)``, its
state dict loads strictly into a module built from its own (updated) hyper-parameters.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mor_lqo.adapters import reduce_state_dict, save  # noqa: E402

from .modules import S4Model  # noqa: E402


def test_lightning_checkpoint_is_made_consistent(tmp_path):
    torch.manual_seed(0)
    hp = {"d_model": 4, "d_state": 16, "n_layers": 2, "lr": 0.01, "model": {"d_state": 16, "dropout": 0.1}}
    model = S4Model(d_input=1, d_output=3, d_model=hp["d_model"], n_layers=hp["n_layers"], d_state=hp["d_state"])
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 10, 1)).sum().backward()
    opt.step()
    ckpt = {"state_dict": {"model." + k: v for k, v in model.state_dict().items()}, "hyper_parameters": hp,
            "optimizer_states": [opt.state_dict()], "lr_schedulers": [], "epoch": 3, "global_step": 30}
    new, report = reduce_state_dict(ckpt, order=4)
    assert new["optimizer_states"] == [] and new["lr_schedulers"] == [] and new["epoch"] == 3
    assert new["hyper_parameters"]["d_state"] == 4 and new["hyper_parameters"]["model"]["d_state"] == 4
    assert new["hyper_parameters"]["lr"] == 0.01 and hp["d_state"] == 16  # the input is not modified
    assert len(ckpt["optimizer_states"]) == 1
    notes = report[0]["checkpoint_notes"]
    assert any("optimizer_states" in n for n in notes) and any("d_state 16 -> 4" in n for n in notes)
    path = save(new, tmp_path / "small.ckpt")
    back = torch.load(path, weights_only=True)
    hp2 = back["hyper_parameters"]
    small = S4Model(d_input=1, d_output=3, d_model=hp2["d_model"], n_layers=hp2["n_layers"], d_state=hp2["d_state"])
    small.load_state_dict({k[len("model."):]: v for k, v in back["state_dict"].items()}, strict=True)
    x = torch.randn(2, 10, 1)
    with torch.no_grad():
        assert np.all(np.isfinite(small(x).numpy()))
