"""DSS layout: shared Lambda, per-channel dt; softmax / clip / exp versions; shared-mode selection."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mor_lqo.adapters import extract, reduce_state_dict  # noqa: E402
from mor_lqo.errors import LayoutError  # noqa: E402

from .modules import DSS  # noqa: E402
from .test_s4 import block_response, module_response  # noqa: E402

H, N, L = 4, 8, 32
F32 = 3e-5


@pytest.mark.parametrize("version,bidir,pos", [("softmax", False, False), ("softmax", True, True),
                                               ("clip", False, False), ("exp", True, False)])
def test_extract_reduce_identity(version, bidir, pos):
    m = DSS(H, N, version=version, bidirectional=bidir, positive_real=pos, seed=1)
    sd = m.state_dict()
    st = {"L": L} if version == "softmax" else {}
    if version == "clip":
        st["version"] = "clip"
    (b,) = extract(sd, **st)
    assert b.arch == "dss" and b.bidirectional == bidir and b.stored == N
    y = module_response(m.ssm_output, L=L)
    np.testing.assert_allclose(block_response(b, L), y, atol=F32 * np.abs(y).max())
    before = copy.deepcopy(sd)
    new, rep = reduce_state_dict(sd, order=6, **st)
    assert all(torch.equal(before[k], sd[k]) for k in sd)
    assert rep[0]["build"] == {"d_state": 3} and len(rep[0]["selected"]) == 3
    if pos:
        assert rep[0]["h2_error"] is None  # unstable mode (Re Lambda > 0): no h2 norm
    small = DSS(H, 3, version=version, bidirectional=bidir)
    small.load_state_dict(new, strict=True)
    idx = rep[0]["selected"]
    # the reduced layer is the original restricted to the selected shared modes
    ref = DSS(H, 3, version=version, bidirectional=bidir)
    with torch.no_grad():
        for k, v in sd.items():
            if k.startswith("kernel.W"):
                ref.kernel.W.copy_(v[..., idx, :])
            elif k.startswith("kernel.Lambda"):
                getattr(ref.kernel, k.split(".")[1]).copy_(v[idx])
            else:
                ref.get_parameter(k).copy_(v)
    np.testing.assert_allclose(module_response(small.ssm_output, L=L),
                               module_response(ref.ssm_output, L=L), rtol=1e-6, atol=1e-6)
    new2, _ = reduce_state_dict(sd, order=2 * N, **st)
    for k in sd:
        torch.testing.assert_close(new2[k], sd[k])


def test_per_channel_methods_are_refused_and_softmax_needs_L():
    sd = DSS(H, N).state_dict()
    with pytest.raises(LayoutError, match="pass L="):
        extract(sd)
    with pytest.raises(LayoutError, match="shares Lambda"):
        reduce_state_dict(sd, order=4, method="bt", L=L)
