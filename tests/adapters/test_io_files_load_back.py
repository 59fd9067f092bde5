"""Files written by ``adapters.save`` load back with the user's ordinary tools.

Oracles: ``torch.load(weights_only=True)`` (torch's default), ``safetensors.torch.load_file``,
``nn.Module.load_state_dict(strict=True)`` and the arrays that were saved.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st_torch = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402

from mor_lqo.adapters import load, save  # noqa: E402
from mor_lqo.adapters.io import TIED_KEY  # noqa: E402


def test_numpy_state_dict_saved_as_pt_loads_with_weights_only(tmp_path):
    rng = np.random.default_rng(0)
    lin = torch.nn.Linear(3, 2)
    sd = {"weight": rng.standard_normal((2, 3)).astype(np.float32), "bias": np.zeros(2, np.float32)}
    path = save({"model": sd, "epoch": 3}, tmp_path / "x.pt")
    back = torch.load(path, weights_only=True)
    assert back["epoch"] == 3 and all(isinstance(v, torch.Tensor) for v in back["model"].values())
    lin.load_state_dict(back["model"], strict=True)
    np.testing.assert_array_equal(lin.weight.detach().numpy(), sd["weight"])
    c = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64)
    back = torch.load(save({"lam": c}, tmp_path / "c.pt"), weights_only=True)
    assert back["lam"].dtype == torch.complex64 and np.array_equal(back["lam"].numpy(), c)


def test_tied_weights_stored_once_and_restored(tmp_path):
    emb = torch.nn.Embedding(5, 3)
    head = torch.nn.Linear(3, 5, bias=False)
    head.weight = emb.weight  # tied, as HF language models do
    sd = {"embeddings.weight": emb.weight.detach(), "lm_head.weight": head.weight.detach(),
          "norm.weight": torch.ones(3)}
    path = save(sd, tmp_path / "tied.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        assert sorted(fh.keys()) == ["embeddings.weight", "norm.weight"]
        assert json.loads(fh.metadata()[TIED_KEY]) == {"lm_head.weight": "embeddings.weight"}
    back = load(path)
    assert sorted(back) == sorted(sd)
    for k in ("lm_head.weight", "embeddings.weight"):
        np.testing.assert_array_equal(back[k], emb.weight.detach().numpy())
    # untied equal values are two tensors, stored twice
    sd2 = {"a": torch.ones(3), "b": torch.ones(3)}
    with safe_open(str(save(sd2, tmp_path / "untied.safetensors")), framework="pt") as fh:
        assert sorted(fh.keys()) == ["a", "b"] and TIED_KEY not in (fh.metadata() or {})


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
def test_wrapper_prefixes_are_kept(tmp_path, prefix):
    sd = {prefix + "layer.weight": torch.randn(2, 2), prefix + "layer.bias": torch.zeros(2)}
    back = st_torch.load_file(str(save(sd, tmp_path / "p.safetensors")))
    assert sorted(back) == sorted(sd)
    back = torch.load(save(sd, tmp_path / "p.pt"), weights_only=True)
    assert sorted(back) == sorted(sd)
