"""S4 v4 diagonal / DPLR and v3 diagonal layouts against test modules with the upstream names/formulas."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mor_lqo.adapters import extract, reduce_state_dict  # noqa: E402
from mor_lqo.errors import LayoutError  # noqa: E402

from .modules import S4Block, S4v3  # noqa: E402

H, L = 4, 32
F32 = 3e-5

CONFIGS = {
    "default": dict(d_state=8),
    "shared_untied_bilinear_bidir_glu": dict(
        d_state=8, n_ssm=1, dt_tie=False, disc="bilinear", dt_transform="softplus",
        imag_transform="exp", bidirectional=True, activation="glu"),
    "channels2_nssm2": dict(d_state=6, n_ssm=2, channels=2),
}


def settings_of(cfg):
    """The settings a user passes for a v4 checkpoint (dt_transform is always required: not in the state dict)."""
    return {"dt_transform": "exp", **{k: cfg[k] for k in ("disc", "dt_transform", "imag_transform") if k in cfg}}


def make(cfg, seed=0, **over):
    kw = {**cfg, **over}
    torch.manual_seed(seed)
    return S4Block(H, seed=seed, **kw)


def module_response(ssm_output, d_model=H, L=L):
    """(L, c*H, H): response to a unit impulse at t0 = L//2 in every channel (channels independent)."""
    u = torch.zeros(1, d_model, L)
    u[..., L // 2] = 1.0
    with torch.no_grad():
        y = ssm_output(u)[0]  # (c, H, L)
    c = y.shape[0]
    out = np.zeros((L, c * d_model, d_model))
    for ci in range(c):
        for h in range(d_model):
            out[:, ci * d_model + h, h] = y[ci, h].double().numpy()
    return out


def block_response(b, L=L):
    h = b.impulse_response(L)
    y = np.zeros((L, b.p, b.m))
    t0 = L // 2
    y[t0:] = h[: L - t0]
    g = b.anticausal_response(L)
    if g is not None:
        for j in range(t0):
            y[t0 - 1 - j] += g[j]
    return y


@pytest.mark.parametrize("name", list(CONFIGS))
def test_v4_diag_extract_matches_module(name):
    cfg = CONFIGS[name]
    m = make(cfg)
    (b,) = extract(m.state_dict(), **settings_of(cfg))
    assert b.arch == "s4" and b.name == "layer."
    assert b.bidirectional == cfg.get("bidirectional", False)
    y = module_response(m.layer.ssm_output)
    np.testing.assert_allclose(block_response(b), y, atol=F32 * np.abs(y).max())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_v4_diag_reduce_strict_load_and_identity(name):
    cfg = CONFIGS[name]
    st = settings_of(cfg)
    m = make(cfg, seed=1)
    sd = m.state_dict()
    before = copy.deepcopy(sd)
    new, rep = reduce_state_dict(sd, order=4, **st)
    assert all(torch.equal(before[k], sd[k]) for k in sd)
    assert rep[0]["build"] == {"d_state": 4, "n_ssm": None} and rep[0]["writeback_error"] < 1e-10
    small = make(cfg, **{"d_state": 4, "n_ssm": None})
    small.load_state_dict(new, strict=True)
    (b,) = extract(new, **st)
    y = module_response(small.layer.ssm_output)
    np.testing.assert_allclose(block_response(b), y, atol=F32 * np.abs(y).max())
    # kept modes are original modes: their continuous A is the original row's (stored sign kept)
    S = sd["layer.kernel.A_real"].shape[0]
    for h in range(H):
        orig = set(np.round(sd["layer.kernel.A_real"][h % S].double().numpy(), 5))
        assert set(np.round(new["layer.kernel.A_real"][h].double().numpy(), 5)) <= orig
    # identity through a dense real round trip (forces the full conversion, per-channel tensors)
    # (order below the full one so the reducer is called; it returns the full realified system)
    new2, rep2 = reduce_state_dict(sd, order=cfg["d_state"] - 1, method=lambda s, r: s.realify(), **st)
    full = make(cfg, n_ssm=None)
    full.load_state_dict(new2, strict=True)
    y0 = module_response(m.layer.ssm_output)
    np.testing.assert_allclose(module_response(full.layer.ssm_output), y0, atol=F32 * np.abs(y0).max())
    # plain identity keeps the exact tensors (and the n_ssm sharing)
    new3, rep3 = reduce_state_dict(sd, order=cfg["d_state"], **st)
    for k in sd:
        torch.testing.assert_close(new3[k], sd[k], rtol=2e-6, atol=2e-6)


def test_v4_wrong_settings_are_detected_by_the_shapes_or_values():
    cfg = CONFIGS["default"]
    sd = make(cfg).state_dict()
    with pytest.raises(LayoutError, match="bidirectional"):
        extract(sd, bidirectional=True, dt_transform="exp")
    with pytest.raises(LayoutError, match="disc"):
        extract(sd, disc="dss", dt_transform="exp")
    with pytest.raises(LayoutError, match="dt_transform"):  # not in the state dict, changes the model: required
        extract(sd)


def test_v4_training_framework_prefix_in_lightning_checkpoint():
    m = make(CONFIGS["default"])
    sd = {"model.layers.0.layer." + k: v for k, v in m.state_dict().items()}
    ckpt = {"state_dict": sd, "epoch": 1, "global_step": 10}
    (b,) = extract(ckpt, dt_transform="exp")
    assert b.name == "model.layers.0.layer.layer."
    new, _ = reduce_state_dict(ckpt, order=4, dt_transform="exp")
    assert set(new) == set(ckpt) and new["state_dict"]["model.layers.0.layer.layer.kernel.C"].shape == (1, H, 2, 2)


@pytest.mark.parametrize("bidir", [False, True])
def test_dplr_extract_reduce_and_identity(bidir):
    cfg = dict(d_state=8, mode="dplr", rank=1, bidirectional=bidir)
    m = make(cfg, seed=2)
    y = module_response(m.layer.ssm_output)  # first call sets C~ and l_kernel = L
    sd = m.state_dict()
    assert sd["layer.kernel.l_kernel"].item() == L
    (b,) = extract(sd, dt_transform="exp")
    assert b.arch == "s4_dplr" and not b.systems[0].is_diagonal
    np.testing.assert_allclose(block_response(b), y, atol=F32 * np.abs(y).max())
    # identity: diagonalised write-back with P = 0 and C~ = (1 - mu^L) C
    new, rep = reduce_state_dict(sd, order=8, dt_transform="exp")
    assert rep[0]["writeback_error"] < 1e-8
    assert not new["layer.kernel.P"].any() and new["layer.kernel.l_kernel"].item() == L
    full = make(cfg, seed=5)
    full.load_state_dict(new, strict=True)
    np.testing.assert_allclose(module_response(full.layer.ssm_output), y, atol=F32 * np.abs(y).max())
    # reduced by modal truncation of the diagonalised system
    new4, rep4 = reduce_state_dict(sd, order=4, dt_transform="exp")
    small = make(cfg, seed=6, d_state=4)
    small.load_state_dict(new4, strict=True)
    (b4,) = extract(new4, dt_transform="exp")
    y4 = module_response(small.layer.ssm_output)
    np.testing.assert_allclose(block_response(b4), y4, atol=F32 * np.abs(y4).max())


@pytest.mark.parametrize("bidir,n_ssm", [(False, None), (True, 2)])
def test_v3_diag(bidir, n_ssm):
    m = S4v3(H, d_state=8, bidirectional=bidir, n_ssm=n_ssm, seed=3)
    sd = m.state_dict()
    (b,) = extract(sd)
    assert b.arch == "s4v3" and b.name == ""
    y = module_response(m.ssm_output)
    np.testing.assert_allclose(block_response(b), y, atol=F32 * np.abs(y).max())
    new, rep = reduce_state_dict(sd, order=4)
    assert new["kernel.kernel.A"].shape == (H, 2, 2)  # vestigial tensor sliced too
    small = S4v3(H, d_state=4, bidirectional=bidir, n_ssm=None)
    small.load_state_dict(new, strict=True)
    (b2,) = extract(new)
    y2 = module_response(small.ssm_output)
    np.testing.assert_allclose(block_response(b2), y2, atol=F32 * np.abs(y2).max())
    new_id, _ = reduce_state_dict(sd, order=7, method=lambda s, r: s.realify())
    full = S4v3(H, d_state=8, bidirectional=bidir, n_ssm=None)
    full.load_state_dict(new_id, strict=True)
    np.testing.assert_allclose(module_response(full.ssm_output), y, atol=F32 * np.abs(y).max())
