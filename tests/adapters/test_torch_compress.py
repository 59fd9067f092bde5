"""mor_lqo.torch.compress on real modules: the package's torch S4D model with the bundled weights, the
upstream s5-pytorch and lru-pytorch layers, an S4 v4 layer with a non-default dt transform, wrappers, and bad
inputs. Every figure of the report is checked against what the torch modules themselves compute."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import mor_lqo.torch as mt  # noqa: E402
from mor_lqo.deep.compress import CompressionError  # noqa: E402
from mor_lqo.errors import CalibrationError, LayoutError, SettingsMismatchError  # noqa: E402

from .modules import FFTConv, SSMKernelDiag  # noqa: E402

s5 = pytest.importorskip("s5")
LRU = pytest.importorskip("LRU_pytorch").LRU

F32 = 2e-4  # float32 modules vs float64 reports: relative agreement of kernels / outputs


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _hooks(m):
    return sum(len(s._forward_pre_hooks) + len(s._forward_hooks) for s in m.modules())


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------- bundled S4D (torch)


@pytest.fixture(scope="module")
def s4d():
    from mor_lqo.adapters import load
    from mor_lqo.deep.data import bundled_model_path, load_test_split
    from mor_lqo.deep.torch_models import S4Model

    sd = load(bundled_model_path("s4d"))
    model = S4Model(d_input=1, d_output=10, d_model=64, n_layers=3, d_state=64, dropout=0.1)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in sd.items()})
    x, y = load_test_split()
    return model, torch.from_numpy(x[:, :, None]).float(), y


def test_s4d_torch_model_compressed_report_matches_modules(s4d):
    model, x, y = s4d
    before, training = _state(model), model.training

    def accuracy(m):
        m.eval()
        with torch.no_grad():
            return float((m(x[500:]).argmax(-1).numpy() == y[500:]).mean())

    res = mt.compress(model, [x[:16], x[16:32]], ratio="1/8", metric=accuracy, executor="serial")
    # the input is untouched: weights, mode, no hook left behind
    assert _same(before, _state(model)) and model.training == training and _hooks(model) == 0
    rep = res.report
    assert rep["length"] == 40 and rep["method"] == "h2"
    assert [b["order_after"] for b in rep["blocks"]] == [8, 8, 8]
    assert all(b["settings_check"] == "kernel" and b["recorded_at"] == b["name"][:-1] for b in rep["blocks"])
    # the reported finite-horizon errors are those of the modules' own kernels (float32)
    for b in rep["blocks"]:
        path = b["name"][:-1]
        k0 = model.get_submodule(path).kernel(L=40).detach().double()
        k1 = res.module.get_submodule(path).kernel(L=40).detach().double()
        assert (k1 - k0).norm().item() == pytest.approx(b["h2_error_L"], rel=F32)
        assert b["stored_after"] == 4 and res.module.get_submodule(path).kernel.log_A_real.shape == (64, 4)
    # parameters: counted on the modules themselves
    n = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert rep["parameters"] == {"before": n(model), "after": n(res.module)}
    assert rep["parameters"]["after"] < rep["parameters"]["before"]
    # the metric before/after is the caller's metric on both modules; at 1/8 the bundled model keeps its accuracy
    assert rep["metric"]["before"] == accuracy(model) and rep["metric"]["after"] == accuracy(res.module)
    assert rep["metric"]["after"] >= rep["metric"]["before"] - 0.01


def test_s4d_compressed_module_saves_and_loads_into_a_fresh_small_model(s4d, tmp_path):
    from mor_lqo.deep.torch_models import S4Model

    model, x, _ = s4d
    res = mt.compress(model, x[:16], order=6, executor="serial")
    path = tmp_path / "small.pt"
    torch.save(res.module.state_dict(), path)
    sd = torch.load(path, weights_only=True)
    fresh = S4Model(d_input=1, d_output=10, d_model=64, n_layers=3, d_state=6, dropout=0.1)
    fresh.load_state_dict(sd, strict=True)
    fresh.eval()
    res.module.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x[:8]), res.module(x[:8]))


# --------------------------------------------------------------------------------- s5-pytorch / lru-pytorch


class S5Net(nn.Module):
    def __init__(self, state=16, bidir=False, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Linear(1, 8)
        self.blocks = nn.ModuleList([s5.S5Block(8, state, bidir=bidir) for _ in range(2)])
        self.dec = nn.Linear(8, 3)

    def forward(self, x):
        h = self.enc(x)
        for b in self.blocks:
            h = b(h)
        return self.dec(h.mean(1))


class LRUNet(nn.Module):
    def __init__(self, state=16, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.enc = nn.Linear(1, 6)
        self.lru = LRU(6, 6, state)
        self.dec = nn.Linear(6, 3)

    def forward(self, x):
        return self.dec(self.lru(self.enc(x)).mean(1))


def _impulse(layer, m, L):
    """(L, p, m) impulse responses of a layer with (B, L, m) inputs."""
    U = torch.zeros(m, L, m)
    U[torch.arange(m), 0, torch.arange(m)] = 1.0
    with torch.no_grad():
        return layer(U).double().permute(1, 2, 0)


def _recorded(model, path, x):
    """The input of ``model.<path>`` on x (recorded here, independently of mor_lqo)."""
    got = []
    h = model.get_submodule(path).register_forward_pre_hook(lambda _m, a: got.append(a[0].detach().clone()))
    with torch.no_grad():
        model(x)
    h.remove()
    return got[0]


@pytest.mark.parametrize("bidir", [False, True])
def test_s5_pytorch_blocks(bidir):
    x = torch.randn(6, 30, 1, generator=torch.Generator().manual_seed(1))
    net = S5Net(bidir=bidir)
    before = _state(net)
    res = mt.compress(net, x, ratio="1/4", executor="serial")
    assert _same(before, _state(net)) and _hooks(net) == 0
    for b in res.report["blocks"]:
        path = b["name"][:-len(".seq.")]
        assert b["recorded_at"] == path and b["settings_check"] == "impulse response"
        assert b["stored_after"] == 4 and res.module.get_submodule(path).seq.Lambda.shape == (4,)
        # the block output error of the report = the layers' outputs on the input the block really saw
        u = _recorded(net, path, x)
        with torch.no_grad():
            y0, y1 = net.get_submodule(path)(u).double(), res.module.get_submodule(path)(u).double()
        assert b["output_error"] == pytest.approx(((y1 - y0).norm() / y0.norm()).item(), rel=1e-6)
        if not bidir:  # finite-horizon h2 error = the layers' impulse responses over L lags
            d = _impulse(res.module.get_submodule(path), 8, 30) - _impulse(net.get_submodule(path), 8, 30)
            assert d.norm().item() == pytest.approx(b["h2_error_L"], rel=F32)
    # strict load into a freshly built upstream model with the smaller state
    fresh = S5Net(state=4, bidir=bidir, seed=5)
    buf = io.BytesIO()
    torch.save(res.module.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.allclose(fresh(x), res.module(x), rtol=0, atol=1e-6)


def test_lru_pytorch_block_and_its_state_buffer():
    x = torch.randn(4, 25, 1, generator=torch.Generator().manual_seed(2))
    net = LRUNet()
    res = mt.compress(net, x, order=8, executor="serial")
    b = res.report["blocks"][0]
    assert b["stored_after"] == 4 and b["settings_check"] == "impulse response"
    assert res.module.lru.state.shape == (4,) and net.lru.state.shape == (16,)
    assert any("state" in n for n in res.report["notes"])
    d = _impulse(res.module.lru, 6, 25) - _impulse(net.lru, 6, 25)
    assert d.norm().item() == pytest.approx(b["h2_error_L"], rel=F32)
    fresh = LRUNet(state=4, seed=3)
    fresh.load_state_dict(res.module.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(fresh(x), res.module(x), atol=1e-6)


# --------------------------------------------------------------------------------- wrappers


def test_wrappers_dataparallel_and_compile():
    x = torch.randn(3, 20, 1, generator=torch.Generator().manual_seed(3))
    net = S5Net()
    dp = mt.compress(nn.DataParallel(net), x, order=8, executor="serial")
    assert isinstance(dp.module, nn.DataParallel) and isinstance(dp.module.module, S5Net)
    comp = mt.compress(torch.compile(net, backend="eager"), x, order=8, executor="serial")
    assert isinstance(comp.module, S5Net) and any("torch.compile" in n for n in comp.report["notes"])
    with torch.no_grad():
        assert torch.allclose(dp.module(x), comp.module(x), atol=1e-6)


# --------------------------------------------------------------------------------- S4 v4 settings


class S4Layer(nn.Module):
    """v4 FFTConv with a forward: (B, H, L) -> (B, H, L) linear SSM output."""

    def __init__(self, **kw):
        super().__init__()
        self.layer = FFTConv(4, activation=None, **kw)

    def forward(self, u):
        return self.layer.ssm_output(u)[:, 0]


class HiddenTransformKernel(SSMKernelDiag):
    """Stores its dt transform where the state dict and plain attributes do not show it."""

    @property
    def dt_transform(self):
        return self._dtt

    @dt_transform.setter
    def dt_transform(self, value):
        self._dtt = value


def test_s4_settings_read_from_module_and_checked():
    u = torch.randn(3, 4, 24, generator=torch.Generator().manual_seed(4))
    m = S4Layer(d_state=8, dt_transform="softplus")
    res = mt.compress(m, u, order=4, executor="serial")
    assert res.report["settings"]["dt_transform"] == "softplus"
    assert res.report["blocks"][0]["settings_check"] == "kernel"
    with torch.no_grad():  # a (B, H, L) layer without a `transposed` flag: its output error is still measured
        y0, y1 = m(u).double(), res.module(u).double()
    assert res.report["blocks"][0]["output_error"] == pytest.approx(((y1 - y0).norm() / y0.norm()).item(), rel=1e-6)
    with pytest.raises(SettingsMismatchError, match="dt_transform"):
        mt.compress(m, u, order=4, dt_transform="exp", executor="serial")
    hidden = S4Layer(d_state=8)
    hidden.layer.kernel = HiddenTransformKernel(4, d_state=8, dt_transform="softplus")
    before = _state(hidden)
    with pytest.raises(LayoutError, match="dt_transform"):  # unreadable and not given: refused, named
        mt.compress(hidden, u, order=4, executor="serial")
    with pytest.raises(SettingsMismatchError, match="pass it explicitly"):  # given wrong: the kernel check
        mt.compress(hidden, u, order=4, executor="serial", dt_transform="exp")
    assert _same(before, _state(hidden))
    ok = mt.compress(hidden, u, order=4, dt_transform="softplus", executor="serial")
    assert ok.report["blocks"][0]["settings_check"] == "kernel"


# --------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors_and_change_nothing():
    x = torch.randn(3, 20, 1)
    with pytest.raises(LayoutError, match="Linear"):
        mt.compress(nn.Sequential(nn.Linear(1, 4), nn.ReLU()), x)
    net = S5Net()
    before = _state(net)
    with pytest.raises(CalibrationError, match="shape and dtype"):
        mt.compress(net, torch.randn(3, 20, 5))  # wrong feature size
    with pytest.raises(CalibrationError):
        mt.compress(net, torch.ones(3, 20, 1, dtype=torch.int64))  # wrong dtype reaches the encoder
    with pytest.raises(CalibrationError, match="different sequence lengths"):
        mt.compress(net, [torch.randn(2, 20, 1), torch.randn(2, 21, 1)])
    with pytest.raises(CalibrationError, match="NaN"):
        mt.compress(net, torch.full((2, 20, 1), float("nan")))
    with pytest.raises(CalibrationError, match="iterable"):
        mt.compress(net, 3.0)
    with pytest.raises(CompressionError, match="method"):
        mt.compress(net, x, method="svd")

    def broken(_m):
        raise ZeroDivisionError("metric bug")

    with pytest.raises(ZeroDivisionError) as info:
        mt.compress(net, x, order=8, metric=broken, executor="serial")
    assert any("metric(module)" in n for n in info.value.__notes__)
    assert _same(before, _state(net)) and _hooks(net) == 0


def test_sequence_length_equal_to_width():
    """S5/LRU layers always take (batch, L, H): L == H is not ambiguous for them."""
    x = torch.randn(3, 8, 1, generator=torch.Generator().manual_seed(6))  # L = 8 = the width of S5Net
    res = mt.compress(S5Net(), x, order=8, executor="serial")
    assert res.report["length"] == 8


@pytest.mark.parametrize("method", ["modal", "bt", "h2"])
def test_trained_s5_with_a_slightly_unstable_mode(method):
    """s5-pytorch stores Lambda freely, and training can push a mode to Re > 0: the reducers keep such a mode
    exactly (it is harmless over the horizon the network uses) and reduce the rest."""
    x = torch.randn(4, 30, 1, generator=torch.Generator().manual_seed(7))
    net = S5Net()
    with torch.no_grad():
        lam = net.blocks[1].s5.seq.Lambda
        lam[3] = torch.complex(torch.tensor(0.05), lam[3].imag)
    res = mt.compress(net, x, order=8, method=method, executor="serial")
    kept = res.module.blocks[1].s5.seq.Lambda
    assert kept.shape == (4,) and torch.any(kept.real > 0)  # the unstable mode, unchanged
    assert torch.isclose(kept[kept.real > 0][0], net.blocks[1].s5.seq.Lambda[3])
    b = res.report["blocks"][1]
    d = _impulse(res.module.blocks[1].s5, 8, 30) - _impulse(net.blocks[1].s5, 8, 30)
    assert d.norm().item() == pytest.approx(b["h2_error_L"], rel=F32)
