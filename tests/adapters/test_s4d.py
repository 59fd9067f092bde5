"""S4D minimal layout: exact extraction, strict reload of reduced dicts, identity round trip."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mor_lqo.adapters import extract, reduce_state_dict  # noqa: E402
from mor_lqo.errors import LayoutError, OrderError  # noqa: E402
from mor_lqo.systems import LQOSystem  # noqa: E402

from .modules import S4Model  # noqa: E402

H, N, L = 6, 16, 96
# float32 storage and float32 FFT convolution in the module: errors ~1e-6 of the kernel scale
F32_RTOL = 2e-5


def make_model(seed=0, d_state=N, lr=None):
    torch.manual_seed(seed)
    model = S4Model(d_input=3, d_model=H, n_layers=2, d_state=d_state, lr=lr)
    with torch.no_grad():
        for layer in model.s4_layers:
            k = layer.kernel
            # varied decay rates and frequencies, some with dt*Im(A) > pi (aliased zoh branch)
            k.log_A_real.copy_(torch.log(0.05 + torch.rand_like(k.log_A_real)))
            k.A_imag.copy_(torch.randn_like(k.A_imag) * 20)
            k.log_dt.copy_(torch.log(torch.linspace(0.01, 0.4, H)))
    return model


def module_impulse(layer, L):
    """(L, H) response of the S4D layer's SSM map (conv + D u) to a unit impulse in every channel."""
    u = torch.zeros(1, layer.h, L)
    u[..., 0] = 1.0
    with torch.no_grad():
        return layer.ssm_output(u)[0].T.double().numpy()


def diag_response(block, L):
    h = block.impulse_response(L)
    return np.stack([h[:, i, i] for i in range(block.m)], axis=1)


def test_extract_matches_module_and_blocks_are_found():
    model = make_model()
    sd = model.state_dict()
    blocks = extract(sd)
    assert [b.name for b in blocks] == ["s4_layers.0.", "s4_layers.1."]
    for b, layer in zip(blocks, model.s4_layers):
        assert b.arch == "s4d" and b.m == b.p == H and b.stored == N // 2 and b.order == N
        assert len(b.systems) == H and all(isinstance(s, LQOSystem) for s in b.systems)
        assert all(s.is_discrete and s.is_real_output and s.order == N for s in b.systems)
        y = module_impulse(layer, L)
        h = b.impulse_response(L)
        np.testing.assert_allclose(diag_response(b, L), y, atol=F32_RTOL * np.abs(y).max())
        # per-channel layout: off-diagonal entries are exactly zero
        off = h.copy()
        for i in range(H):
            off[:, i, i] = 0
        assert not off.any()
        # channel accessor
        np.testing.assert_array_equal(b.impulse_response(L, channel=2)[:, 0, 0], h[:, 2, 2])


def test_extraction_formula_independent_route():
    """Extracted systems vs the closed-form kernel 2 Re sum C (exp(dtA)-1)/A exp(dtA l) + D delta."""
    model = make_model(seed=3)
    sd = {k: v.double().numpy() for k, v in model.state_dict().items()}
    b = extract(sd)[0]
    p = "s4_layers.0."
    dt = np.exp(sd[p + "kernel.log_dt"])
    A = -np.exp(sd[p + "kernel.log_A_real"]) + 1j * sd[p + "kernel.A_imag"]
    C = sd[p + "kernel.C"][..., 0] + 1j * sd[p + "kernel.C"][..., 1]
    l = np.arange(L)
    K = 2 * np.einsum("hn,hnl->lh", C * (np.exp(dt[:, None] * A) - 1) / A,
                      np.exp(dt[:, None, None] * A[..., None] * l)).real
    K[0] += sd[p + "D"]
    np.testing.assert_allclose(diag_response(b, L), K, rtol=1e-11, atol=1e-12 * np.abs(K).max())


def expected_modal(sd, p, k):
    """Test's own modal truncation: keep the k modes with largest |c b|^2/(1-|lam|^2) per channel."""
    dt = np.exp(sd[p + "kernel.log_dt"].double().numpy())
    A = -np.exp(sd[p + "kernel.log_A_real"].double().numpy()) + 1j * sd[p + "kernel.A_imag"].double().numpy()
    C = torch.view_as_complex(sd[p + "kernel.C"]).numpy().astype(np.complex128)
    lam = np.exp(dt[:, None] * A)
    cb = C * (lam - 1) / A
    score = np.abs(cb) ** 2 / (1 - np.abs(lam) ** 2)
    keep = np.argsort(-score, axis=1)[:, :k]
    mask = np.zeros_like(score, dtype=bool)
    np.put_along_axis(mask, keep, True, axis=1)
    l = np.arange(L)
    K = 2 * np.einsum("hn,hnl->lh", np.where(mask, cb, 0), lam[..., None] ** l).real
    K[0] += sd[p + "D"].double().numpy()
    return K


@pytest.mark.parametrize("r", [2, 8])
def test_modal_reduction_loads_strictly_and_matches(r):
    model = make_model(seed=1)
    sd = model.state_dict()
    before = copy.deepcopy(sd)
    new, report = reduce_state_dict(sd, order=r, method="modal")
    # input untouched, output has the same container type, key order, array type and dtypes
    assert all(torch.equal(before[k], sd[k]) for k in sd)
    assert type(new) is type(sd) and list(new) == list(sd)
    assert all(isinstance(v, torch.Tensor) and v.dtype == sd[k].dtype for k, v in new.items())
    for k in sd:
        if "kernel." not in k:
            assert new[k] is sd[k]  # passed through untouched
    assert [e["build"] for e in report] == [{"d_state": r}] * 2
    assert all(e["order_before"] == N and e["order_after"] == r and e["stored_after"] == r // 2
               for e in report)
    assert report[0]["params_after"] < report[0]["params_before"]
    assert all(e["writeback_error"] < 1e-10 for e in report)
    small = S4Model(d_input=3, d_model=H, n_layers=2, d_state=r)
    small.load_state_dict(new, strict=True)
    for i, layer in enumerate(small.s4_layers):
        p = f"s4_layers.{i}."
        y = module_impulse(layer, L)
        exp = expected_modal(sd, p, r // 2)
        np.testing.assert_allclose(y, exp, atol=F32_RTOL * np.abs(exp).max())
        b = extract(new)[i]
        np.testing.assert_allclose(diag_response(b, L), exp, atol=F32_RTOL * np.abs(exp).max())


def test_identity_round_trip_reproduces_parameters():
    model = make_model(seed=2)
    sd = model.state_dict()
    new, report = reduce_state_dict(sd, order=N)
    assert report[0]["order_after"] == N and report[0]["build"] == {"d_state": N}
    for k in sd:
        # same mode order, same zoh branch (aliased modes included), same C: float32-exact
        np.testing.assert_allclose(new[k].numpy(), sd[k].numpy(), rtol=2e-6, atol=2e-6)
    m2 = S4Model(d_input=3, d_model=H, n_layers=2, d_state=N)
    m2.load_state_dict(new, strict=True)
    x = torch.randn(2, 40, 3)
    with torch.no_grad():
        np.testing.assert_allclose(m2(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_numpy_and_nested_inputs_keep_their_structure():
    model = make_model(seed=4)
    sd = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    ckpt = {"model": sd, "acc": 0.5, "epoch": 3}
    before = copy.deepcopy(ckpt)
    new, _ = reduce_state_dict(ckpt, order=4)
    assert new["acc"] == 0.5 and new["epoch"] == 3 and set(new) == set(ckpt)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in new["model"].values())
    assert new["model"]["s4_layers.0.kernel.C"].shape == (H, 2, 2)
    for k in sd:
        np.testing.assert_array_equal(before["model"][k], ckpt["model"][k])
    # DataParallel prefix
    pre = OrderedDict(("module." + k, torch.from_numpy(v)) for k, v in sd.items())
    new2, _ = reduce_state_dict(pre, order=4)
    assert all(k.startswith("module.") for k in new2)
    np.testing.assert_array_equal(new2["module.s4_layers.0.kernel.C"].numpy(),
                                  new["model"]["s4_layers.0.kernel.C"])


def test_padding_with_inert_modes_for_unequal_channel_orders():
    """A reducer returning different orders per channel (odd: a real mode) → padded common d_state."""
    model = make_model(seed=5)
    sd = model.state_dict()
    calls = []

    def reducer(system, r):
        # dense real ROM: the 2 dominant conjugate pairs of the realified system + (channel 0) one
        # real mode, making real order 5 (3 stored) there and 4 (2 stored) elsewhere
        calls.append(system)
        lam, B, C, _, kappa = system.half
        s = np.abs(C[0] * B[:, 0]) ** 2 / (1 - np.abs(lam) ** 2)
        keep = np.argsort(-s)[:2]
        sub = LQOSystem.conjugate_pairs(lam[keep], B[keep], C[:, keep], D=system.D, dt=system.dt,
                                        scale=kappa).realify()
        A, Bm, Cm = sub.A, sub.B, sub.C
        if len(calls) == 1:
            A = np.block([[A, np.zeros((4, 1))], [np.zeros((1, 4)), np.array([[-0.5]])]])
            Bm = np.vstack([Bm, [[0.3]]])
            Cm = np.hstack([Cm, [[0.7]]])
        rng = np.random.default_rng(len(calls))
        T = rng.standard_normal((A.shape[0],) * 2) + 3 * np.eye(A.shape[0])
        return LQOSystem(A, Bm, Cm, D=system.D, dt=system.dt).similarity(T)

    new, report = reduce_state_dict(sd, order=5, method=reducer)
    assert report[0]["stored_after"] == 3 and report[0]["build"] == {"d_state": 6}
    assert report[0]["order_after"] == 5
    assert report[0]["writeback_error"] < 1e-9
    small = S4Model(d_input=3, d_model=H, n_layers=2, d_state=6)
    small.load_state_dict(new, strict=True)
    y = module_impulse(small.s4_layers[0], L)
    l = np.arange(L)
    # channel 0: the real mode -0.5 contributes 0.3*0.7*(-0.5)^l on top of the two pairs
    b = extract(sd)[0]
    lam, B, C, _, _ = b.systems[0].half
    s = np.abs(C[0] * B[:, 0]) ** 2 / (1 - np.abs(lam) ** 2)
    keep = np.argsort(-s)[:2]
    exp0 = 2 * np.einsum("n,nl->l", (C[0] * B[:, 0])[keep], lam[keep, None] ** l).real
    exp0 += 0.21 * (-0.5) ** l
    exp0[0] += sd["s4_layers.0.D"][0].item()
    np.testing.assert_allclose(y[:, 0], exp0, atol=F32_RTOL * np.abs(exp0).max())
    # padded channels hold inert modes: C == 0 in the extra column
    C1 = new["s4_layers.0.kernel.C"][1:]
    assert torch.all(C1[:, 2] == 0)


def test_odd_order_modal_is_refused():
    sd = make_model().state_dict()
    with pytest.raises(OrderError, match="even"):
        reduce_state_dict(sd, order=5, method="modal")


def test_inconsistent_and_partial_layouts():
    sd = {k: v.clone() for k, v in make_model().state_dict().items()}
    bad = dict(sd)
    bad["s4_layers.0.kernel.A_imag"] = torch.zeros(H, N // 2 + 1)
    with pytest.raises(LayoutError, match="inconsistent s4d shapes"):
        extract(bad)
    part = dict(sd)
    del part["s4_layers.1.kernel.C"]
    with pytest.raises(LayoutError, match=r"partial s4d layout at 's4_layers.1.'.*kernel.C"):
        extract(part)
