"""The real ``transformers`` Mamba and Mamba2 language models (tied embeddings, Mamba2 with n_groups > 1):
extraction, exact state-index pruning, safetensors / torch files that load back, strict reload into a
freshly built smaller model with identical logits."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mor_lqo.adapters import extract, load, reduce_state_dict, save  # noqa: E402
from mor_lqo.errors import LayoutError  # noqa: E402

N, KEEP = 8, [0, 2, 3, 6]


def _mamba(state):
    cfg = transformers.MambaConfig(vocab_size=40, hidden_size=16, state_size=state, num_hidden_layers=2, expand=2,
                                   conv_kernel=3, tie_word_embeddings=True)
    torch.manual_seed(0)
    return transformers.MambaForCausalLM(cfg).eval()


def _mamba2(state, groups=2):
    cfg = transformers.Mamba2Config(vocab_size=40, hidden_size=32, state_size=state, num_heads=4, head_dim=16,
                                    expand=2, n_groups=groups, num_hidden_layers=2, conv_kernel=3, chunk_size=8,
                                    tie_word_embeddings=True)
    torch.manual_seed(0)
    return transformers.Mamba2ForCausalLM(cfg).eval()


def _make_dropped_states_inert(model, arch):
    """Zero the C read-out of the states that pruning drops: pruned and original logits must then agree."""
    drop = [n for n in range(N) if n not in KEEP]
    with torch.no_grad():
        for layer in model.backbone.layers:
            mx = layer.mixer
            if arch == "mamba":
                R = mx.dt_proj.weight.shape[1]
                mx.x_proj.weight[[R + N + n for n in drop]] = 0
            else:
                di, G = mx.intermediate_size, mx.n_groups
                for g in range(G):
                    mx.in_proj.weight[[2 * di + G * N + g * N + n for n in drop]] = 0
                    ch = [di + G * N + g * N + n for n in drop]
                    mx.conv1d.weight[ch] = 0
                    if mx.conv1d.bias is not None:
                        mx.conv1d.bias[ch] = 0


@pytest.mark.parametrize("arch", ["mamba", "mamba2"])
def test_hf_mamba_pruned_files_load_back_with_identical_logits(arch, tmp_path):
    make = _mamba if arch == "mamba" else _mamba2
    model = make(N)
    _make_dropped_states_inert(model, arch)
    sd = model.state_dict()
    assert sd["lm_head.weight"].data_ptr() == sd["backbone.embeddings.weight"].data_ptr()  # tied
    st = {"n_groups": 2} if arch == "mamba2" else {}
    blocks = extract(sd, **st)
    assert [b.arch for b in blocks] == [arch, arch] and all(b.stored == N and not b.lti for b in blocks)
    order = {b.name: KEEP for b in blocks}
    new, rep = reduce_state_dict(sd, order=order, method="index", **st)
    assert all(r["build"]["d_state"] == len(KEEP) for r in rep)
    ids = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(ids).logits
    for name in ("small.safetensors", "small.pt"):
        save(new, tmp_path / name)
        back = load(tmp_path / name) if name.endswith(".safetensors") else torch.load(tmp_path / name,
                                                                                        weights_only=True)
        small = make(len(KEEP))
        small.load_state_dict({k: torch.as_tensor(v) for k, v in back.items()}, strict=True)
        with torch.no_grad():
            torch.testing.assert_close(small(ids).logits, ref, rtol=1e-4, atol=1e-5)


def test_hf_mamba2_needs_n_groups():
    sd = _mamba2(N, groups=2).state_dict()
    with pytest.raises(LayoutError, match="n_groups"):
        extract(sd)
    with pytest.raises(LayoutError, match="conv1d"):  # a wrong n_groups that does not divide the shapes
        extract(_mamba2(N, groups=1).state_dict(), n_groups=3)
