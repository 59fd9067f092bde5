"""Mamba / Mamba2: not LTI; exact state-index pruning only."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mor_lqo.adapters import extract, reduce_state_dict  # noqa: E402
from mor_lqo.errors import LayoutError, OrderError  # noqa: E402

from .modules import Mamba2Mixer, MambaMixer  # noqa: E402

N, KEEP = 6, [0, 2, 3]


def wrap(sd):
    return {"backbone.layers.0.mixer." + k: v for k, v in sd.items()}


def make_inert(mixer, keep, arch):
    """Zero the C rows of the dropped states (so pruning them must not change the output)."""
    drop = [n for n in range(N) if n not in keep]
    with torch.no_grad():
        if arch == "mamba":
            R = mixer.dt_rank
            mixer.x_proj.weight[[R + N + n for n in drop]] = 0
        else:
            di, G = mixer.d_inner, mixer.G
            for g in range(G):
                rows = [2 * di + G * N + g * N + n for n in drop]
                mixer.in_proj.weight[rows] = 0
                ch = [di + G * N + g * N + n for n in drop]
                mixer.conv1d.weight[ch] = 0
                mixer.conv1d.bias[ch] = 0


@pytest.mark.parametrize("arch", ["mamba", "mamba2"])
def test_index_pruning_is_exact(arch):
    torch.manual_seed(0)
    mk = (lambda n: MambaMixer(d_state=n)) if arch == "mamba" else (lambda n: Mamba2Mixer(d_state=n))
    mixer = mk(N)
    make_inert(mixer, KEEP, arch)
    sd = wrap(mixer.state_dict())
    st = {"n_groups": 2} if arch == "mamba2" else {}
    (b,) = extract(sd, **st)
    assert b.arch == arch and not b.lti and b.systems == [] and b.stored == N
    with pytest.raises(LayoutError, match="input dependent"):
        b.impulse_response(4)
    with pytest.raises(LayoutError, match="not LTI"):
        reduce_state_dict(sd, order=4, **st)
    name = "backbone.layers.0.mixer."
    new, rep = reduce_state_dict(sd, order={name: KEEP}, method="index", **st)
    assert rep[0]["selected"] == KEEP and rep[0]["build"]["d_state"] == 3
    small = mk(3)
    small.load_state_dict({k[len(name):]: v for k, v in new.items()}, strict=True)
    u = torch.randn(2, 10, 8)
    with torch.no_grad():
        torch.testing.assert_close(small(u), mixer(u), rtol=1e-5, atol=1e-6)
    # heuristic ranking with an integer order also loads strictly
    new2, rep2 = reduce_state_dict(sd, order=4, method="index", **st)
    mk(4).load_state_dict({k[len(name):]: v for k, v in new2.items()}, strict=True)
    with pytest.raises(OrderError):
        reduce_state_dict(sd, order={name: [0, 0, 1]}, method="index", **st)
