"""mor_lqo.torch.prune_states on the real ``transformers`` Mamba and Mamba2 (n_groups > 1) models: exact when
nothing is pruned, the kept count respected, the smaller module equal to a freshly built model of that state
size, deterministic, data selection recovering inert states exactly, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import mor_lqo.torch as mt  # noqa: E402
from mor_lqo.adapters import extract  # noqa: E402
from mor_lqo.deep.compress import CompressionError  # noqa: E402
from mor_lqo.errors import LayoutError  # noqa: E402
from mor_lqo.torch.mamba import greedy_elimination  # noqa: E402

from .test_hf_mamba import KEEP, N, _make_dropped_states_inert, _mamba, _mamba2  # noqa: E402

MAKE = {"mamba": _mamba, "mamba2": _mamba2}
IDS = torch.randint(0, 40, (4, 12), generator=torch.Generator().manual_seed(3))


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("arch", ["mamba", "mamba2"])
@pytest.mark.parametrize("selection", ["data", "heuristic"])
def test_nothing_pruned_is_exact(arch, selection):
    model = MAKE[arch](N)
    res = mt.prune_states(model, IDS, order=N, selection=selection)
    assert all(b["stored_after"] == N and b["output_error"] == 0.0 for b in res.report["blocks"])
    torch.testing.assert_close(_logits(res.module), _logits(model), rtol=0, atol=0)
    res = mt.prune_states(model, IDS, ratio=1, selection=selection)
    torch.testing.assert_close(_logits(res.module), _logits(model), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["mamba", "mamba2"])
def test_greedy_keep_all_drops_nothing(arch):
    model = MAKE[arch](N)
    mixer = model.backbone.layers[0].mixer
    block = extract(model.state_dict(), **({"n_groups": 2} if arch == "mamba2" else {}))[0]
    before = _state(mixer)
    kept, err = greedy_elimination(mixer, block, [((torch.randn(2, 12, mixer.hidden_size),), {})], N)
    assert kept == list(range(N)) and err == 0.0
    after = _state(mixer)
    assert all(torch.equal(before[k], after[k]) for k in before)  # read-out rows restored


@pytest.mark.parametrize("arch", ["mamba", "mamba2"])
@pytest.mark.parametrize("ratio,keep", [("1/2", 4), (0.25, 2), ("1/16", 1)])
def test_ratio_respected_and_module_equals_fresh_model(arch, ratio, keep):
    model = MAKE[arch](N)
    before = _state(model)
    res = mt.prune_states(model, IDS, ratio=ratio)
    assert all(torch.equal(v, before[k]) for k, v in _state(model).items())  # input untouched
    blocks = res.report["blocks"]
    assert len(blocks) == 2 and all(b["stored_after"] == keep and len(b["selected"]) == keep for b in blocks)
    assert all(0 <= b["output_error"] for b in blocks)
    small = MAKE[arch](keep)
    small.load_state_dict(res.module.state_dict(), strict=True)
    assert res.report["parameters"]["after"] == mt.count_parameters(small) < res.report["parameters"]["before"]
    torch.testing.assert_close(_logits(res.module), _logits(small), rtol=1e-5, atol=1e-6)
    assert res.module.config.state_size == keep  # the generation cache is sized from it
    ids = torch.randint(0, 40, (1, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = res.module.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


@pytest.mark.parametrize("arch", ["mamba", "mamba2"])
def test_data_selection_is_deterministic_and_finds_inert_states(arch):
    model = MAKE[arch](N)
    a = mt.prune_states(model, IDS, order=3)
    b = mt.prune_states(model, IDS, order=3)
    assert [x["selected"] for x in a.report["blocks"]] == [x["selected"] for x in b.report["blocks"]]
    torch.testing.assert_close(_logits(a.module), _logits(b.module), rtol=0, atol=0)
    _make_dropped_states_inert(model, arch)
    res = mt.prune_states(model, IDS, order=len(KEEP))
    assert all(x["selected"] == KEEP and x["output_error"] < 1e-6 for x in res.report["blocks"])  # float32
    torch.testing.assert_close(_logits(res.module), _logits(model), rtol=1e-5, atol=1e-6)


def test_data_selection_beats_or_ties_heuristic_on_the_first_mixer():
    # greedy starts from the full set and removes the least harmful state: one step can never be worse than
    # the data-free choice of the same number of states (N - 1 kept)
    model = _mamba(N)
    d = mt.prune_states(model, IDS, order=N - 1, selection="data").report["blocks"][0]["output_error"]
    h = mt.prune_states(model, IDS, order=N - 1, selection="heuristic").report["blocks"][0]["output_error"]
    assert d <= h + 1e-12


def test_explicit_indices_and_refusals():
    model = _mamba(N)
    names = [b["name"] for b in mt.prune_states(model, IDS, order=N).report["blocks"]]
    res = mt.prune_states(model, IDS, order={names[0]: [1, 5]})
    assert [(b["selected"], b["stored_after"]) for b in res.report["blocks"]] == [([1, 5], 2), (list(range(N)), N)]
    assert any("left at" in n for n in res.notes)  # mixers of different sizes: the config cannot say
    assert _logits(res.module).shape == (4, 12, 40)
    with pytest.raises(CompressionError, match="selection"):
        mt.prune_states(model, IDS, ratio="1/2", selection="bt")
    with pytest.raises(CompressionError, match="ratio or order"):
        mt.prune_states(model, IDS, ratio="1/2", order=2)
    with pytest.raises(LayoutError, match="prune_states"):
        mt.compress(model, IDS, ratio="1/2", method="h2")
    np.testing.assert_array_equal(_logits(model), _logits(_mamba(N)))  # never modified


@pytest.mark.parametrize("arch", ["mamba", "mamba2"])
def test_summed_removal_effects_predict_the_output_error(arch):
    # Mamba1: the output is linear in each state's read-out, so the Gram-matrix prediction is the true error;
    # Mamba2: the gated RMSNorm after the sum makes it a first-order model (close, not equal)
    res = mt.prune_states(_mamba(N) if arch == "mamba" else _mamba2(N), IDS, order=3)
    for b in res.report["blocks"]:
        rtol = 1e-4 if arch == "mamba" else 0.5
        assert b["predicted_error"] == pytest.approx(b["output_error"], rel=rtol)


def _brute_greedy(mixer, block, x, keep):
    """Greedy backward elimination by one mixer call per candidate (zeroed read-out rows)."""
    from mor_lqo.adapters.mamba import readout_rows

    params = dict(mixer.named_parameters())
    saved = {k: v.detach().clone() for k, v in params.items()}
    with torch.no_grad():
        y = mixer(x).double()

        def err(drop):
            for k, v in saved.items():
                params[k].copy_(v)
            for n in drop:
                for leaf, rows in readout_rows(block, n).items():
                    params[leaf][torch.as_tensor(rows)] = 0
            return float(((mixer(x).double() - y) ** 2).sum())

        dropped = []
        while len(dropped) < N - keep:
            left = [n for n in range(N) if n not in dropped]
            dropped.append(left[int(np.argmin([err(dropped + [n]) for n in left]))])
        err([])
    return sorted(n for n in range(N) if n not in dropped)


@pytest.mark.parametrize("arch,refresh", [("mamba", None), ("mamba2", 1e-9)])
def test_greedy_equals_the_call_by_call_greedy(arch, refresh):
    # Mamba1 (additive effects) with one measurement, Mamba2 measured again after every drop: the same states
    # as evaluating every candidate on the mixer
    model = MAKE[arch](N)
    mixer = model.backbone.layers[1].mixer
    block = extract(model.state_dict(), **({"n_groups": 2} if arch == "mamba2" else {}))[1]
    x = torch.randn(3, 12, mixer.hidden_size, generator=torch.Generator().manual_seed(5))
    for keep in (6, 3, 1):
        kept, _ = greedy_elimination(mixer, block, [((x,), {})], keep, refresh)
        assert kept == _brute_greedy(mixer, block, x, keep)
