"""The real Lightning package: a LightningModule trained by a Trainer, its ``.ckpt`` reduced and loaded back.

Oracles: Lightning's own ``load_from_checkpoint`` (builds the module from the saved hyper-parameters and
loads strictly) and ``Trainer.fit(ckpt_path=...)`` (resumes: counters, optimizer, schedulers), and the
modules' own kernels for the reported finite-horizon errors.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import mor_lqo.torch as mt  # noqa: E402
from mor_lqo.adapters import reduce_state_dict, save  # noqa: E402

from .modules import S4Model  # noqa: E402

SEQ = 20
TRAINER = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False)


class LitS4(L.LightningModule):
    """A user's LightningModule around the upstream-style S4D classifier."""

    def __init__(self, d_model: int = 4, d_state: int = 16, n_layers: int = 2, lr: float = 1e-2):
        super().__init__()
        self.save_hyperparameters()
        self.model = S4Model(d_input=1, d_output=3, d_model=d_model, n_layers=n_layers, d_state=d_state)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=2)}


def _kernels(lit, length=SEQ):
    """The layers' convolution kernels over ``length`` lags, evaluated in float64."""
    import copy

    lit64 = copy.deepcopy(lit).double()
    return [layer.kernel(L=length).detach() for layer in lit64.model.s4_layers]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    x, y = torch.randn(32, SEQ, 1), torch.randint(0, 3, (32,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    lit = LitS4()
    trainer = L.Trainer(max_steps=3, **TRAINER)
    trainer.fit(lit, loader)
    path = tmp_path_factory.mktemp("lit") / "full.ckpt"
    trainer.save_checkpoint(path)
    return lit.eval(), path, x, loader


def test_reduced_ckpt_loads_with_load_from_checkpoint_and_resumes(trained, tmp_path):
    lit, path, x, loader = trained
    raw = torch.load(path, weights_only=True)
    new, report = reduce_state_dict(path, order=4)
    assert new["hyper_parameters"]["d_state"] == 4 and raw["hyper_parameters"]["d_state"] == 16
    assert new["optimizer_states"] == [] and new["lr_schedulers"] == [] and new["global_step"] == raw["global_step"]
    assert any("fresh optimizer" in n for n in report[0]["checkpoint_notes"])
    out = save(new, tmp_path / "small.ckpt")
    assert torch.load(out, weights_only=True)["hyper_parameters"]["d_state"] == 4
    small = LitS4.load_from_checkpoint(out).eval()  # Lightning builds the module from the saved hparams
    assert small.model.s4_layers[0].kernel.log_A_real.shape == (4, 2)
    # the reported (infinite-horizon) h2 errors are those of the loaded modules' kernels: 2e5 lags reach
    # exp(-100) of the slowest mode (Re A = -1/2, dt >= 1e-3)
    for k0, k1, entry in zip(_kernels(lit, 200_000), _kernels(small, 200_000), report):
        assert (k1 - k0).norm().item() == pytest.approx(entry["h2_error"], rel=1e-6)
    # resuming training from the reduced checkpoint: counters kept, fresh optimizer of the new shapes
    trainer = L.Trainer(max_steps=raw["global_step"] + 2, **TRAINER)
    resumed = LitS4(**small.hparams)
    trainer.fit(resumed, loader, ckpt_path=out)
    assert trainer.global_step == raw["global_step"] + 2
    assert np.all(np.isfinite(resumed(x[:2]).detach().numpy()))


def test_identity_order_reproduces_the_trained_module(trained, tmp_path):
    lit, path, x, _ = trained
    new, _ = reduce_state_dict(path, order=16)
    full = LitS4.load_from_checkpoint(save(new, tmp_path / "same.ckpt")).eval()
    with torch.no_grad():
        np.testing.assert_allclose(full(x).numpy(), lit(x).numpy(), rtol=1e-5, atol=1e-5)


def test_torch_compress_of_a_lightning_module_saves_a_loadable_checkpoint(trained, tmp_path):
    lit, _, x, loader = trained
    res = mt.compress(lit, x[:16].numpy(), order=4, executor="serial")
    assert isinstance(res.module, LitS4) and res.module is not lit
    assert res.module.hparams["d_state"] == 4 and lit.hparams["d_state"] == 16
    assert any("hparams: d_state 16 -> 4" in n for n in res.notes)
    for k0, k1, block in zip(_kernels(lit), _kernels(res.module), res.report["blocks"]):
        assert (k1 - k0).norm().item() == pytest.approx(block["h2_error_L"], rel=1e-4)
    # fine-tune the compressed module with the user's trainer, save, load back with Lightning's loader
    trainer = L.Trainer(max_steps=1, **TRAINER)
    trainer.fit(res.module, loader)
    trainer.save_checkpoint(tmp_path / "compressed.ckpt")
    back = LitS4.load_from_checkpoint(tmp_path / "compressed.ckpt").eval()
    res.module.eval()
    with torch.no_grad():
        np.testing.assert_array_equal(back(x).numpy(), res.module(x).numpy())


def test_cli_state_dict_path_writes_a_lightning_checkpoint(trained, tmp_path):
    """``mor-lqo compress x.ckpt`` (no ``--model``) writes ``x_compressed.ckpt`` that Lightning loads."""
    import json

    from mor_lqo.cli import main

    lit, path, x, _ = trained
    out = tmp_path / "out"
    assert main(["compress", str(path), "--order", "4", "--out", str(out), "--quiet", "--no-progress",
                 "--no-plot"]) == 0
    ckpt = out / "full_compressed.ckpt"
    small = LitS4.load_from_checkpoint(ckpt).eval()
    assert small.hparams["d_state"] == 4 and torch.load(ckpt, weights_only=True)["optimizer_states"] == []
    rep = json.loads((out / "report.json").read_text())
    assert any("d_state 16 -> 4" in n for n in rep["checkpoint_notes"])
    errs = [(k1 - k0).norm().item() for k0, k1 in zip(_kernels(lit, 200_000), _kernels(small, 200_000))]
    np.testing.assert_allclose(errs, [lay["h2_error"] for lay in rep["layers"]], rtol=1e-6)
