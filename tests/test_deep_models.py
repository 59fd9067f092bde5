"""Tests of the reference Deep-SSM models (numpy inference, torch twins, bundled data)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
from deep_builders import lqo_sd, s4d_sd, truncate_lqo
from hypothesis import given, settings
from hypothesis import strategies as st

from mor_lqo.deep import (
    BUNDLED_MODELS,
    LQOModel,
    S4DModel,
    bundled_model_path,
    bundled_models_info,
    load_bundled_model,
    load_test_split,
    read_safetensors,
    write_safetensors,
)
from mor_lqo.deep.data import data_path
from mor_lqo.deep.models import gelu, layer_norm
from mor_lqo.errors import LayoutError, ShapeError

# ---------------------------------------------------------------------------------------------
# random state dicts (numpy only)
# ---------------------------------------------------------------------------------------------
random_s4d_sd = partial(s4d_sd, M=(5, 3), n_out=10)
random_lqo_sd = partial(lqo_sd, P=(7, 4), R=(2, 3), n_out=10)


def cplx(a):
    return a[..., 0].astype(np.float64) + 1j * a[..., 1].astype(np.float64)


# ---------------------------------------------------------------------------------------------
# import hygiene and bundled data
# ---------------------------------------------------------------------------------------------
def test_numpy_path_does_not_import_torch():
    code = (
        "import sys; import mor_lqo.deep as d; m = d.load_bundled_model('s4d'); x, y = d.load_test_split();"
        "m.accuracy(x[:10], y[:10]); d.load_bundled_model('lqo').predict(x[:3]);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_data_size_and_files():
    root = data_path()
    files = [p for p in root.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total <= 2 * 1024 * 1024, f"package data is {total / 1024:.0f} KiB > 2 MiB"
    for name in BUNDLED_MODELS:
        assert bundled_model_path(name).is_file()
    assert (root / "mnist1d_test.npz").is_file()
    assert (root / "models.json").is_file()


def test_test_split():
    x, y = load_test_split()
    assert x.shape == (1000, 40) and x.dtype == np.float32
    assert y.shape == (1000,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_bundled_models_accuracy_matches_record(name):
    info = bundled_models_info()[name]
    model = load_bundled_model(name)
    x, y = load_test_split()
    acc = model.accuracy(x, y)
    assert acc == pytest.approx(info["test_accuracy"], abs=1.5e-3)
    assert acc >= 0.75
    assert model.num_parameters() == info["params"]
    sd, meta = read_safetensors(bundled_model_path(name))
    assert all(v.dtype == np.float32 for v in sd.values())
    assert meta["family"] == name
    assert json.loads(meta["config"]) == info["config"]


def test_bundled_sizes():
    s4d = load_bundled_model("s4d")
    assert set(s4d.d_state) == {64} and s4d.n_layers >= 2
    lqo = load_bundled_model("lqo")
    assert set(lqo.n_modes) == {64} and lqo.n_layers >= 2 and min(lqo.rank) >= 1


def test_lqo_quadratic_part_matters():
    """The trained LQO model relies on its quadratic readout: zeroing U destroys accuracy."""
    model = load_bundled_model("lqo")
    x, y = load_test_split()
    sd = model.state_dict()
    for k in sd:
        if k.endswith(".ssm.U"):
            sd[k][:] = 0
    acc0 = LQOModel.from_state_dict(sd).accuracy(x, y)
    assert acc0 < model.accuracy(x, y) - 0.2
    h = model.encode(x[:200])
    _, lin, quad = model.ssm_forward(0, h, return_parts=True)
    assert np.linalg.norm(quad) > 0.1 * np.linalg.norm(lin)


@pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None, reason="mnist1d not installed")
def test_generated_split_equals_bundled():
    import random

    from mor_lqo.deep import generate_mnist1d

    np.random.seed(123)  # noqa: NPY002  (mnist1d reseeds the legacy global state)
    random.seed(5)
    before = (np.random.random(), random.random())  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(5)
    ds = generate_mnist1d()
    after = (np.random.random(), random.random())  # noqa: NPY002
    assert before == after  # global RNG states restored
    x, y = load_test_split()
    np.testing.assert_array_equal(ds["x_test"], x)
    np.testing.assert_array_equal(ds["y_test"], y)
    assert ds["x"].shape == (4000, 40)


# ---------------------------------------------------------------------------------------------
# numpy semantics
# ---------------------------------------------------------------------------------------------
def s4d_recurrence(model, i, u):
    """Explicit per-channel recurrence x_k = Λ̄ x_{k-1} + B̄ u_k, y = 2 Re(C x) + D u."""
    s = model.ssm_params(i)
    Bsz, L, H = u.shape
    x = np.zeros((Bsz, H, s["C"].shape[1]), dtype=complex)
    y = np.empty_like(u)
    for k in range(L):
        x = s["Lambda_bar"] * x + s["B_bar"] * u[:, k, :, None]
        y[:, k] = 2 * np.einsum("hn,bhn->bh", s["C"], x).real + s["D"] * u[:, k]
    return y


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), L=st.integers(1, 70))
def test_s4d_fft_conv_equals_recurrence(seed, L):
    rng = np.random.default_rng(seed)
    model = S4DModel.from_state_dict(random_s4d_sd(rng))
    u = rng.standard_normal((3, L, model.d_model))
    for i in range(model.n_layers):
        np.testing.assert_allclose(model.ssm_forward(i, u), s4d_recurrence(model, i, u), rtol=1e-9, atol=1e-9)


def test_s4d_kernel_formula():
    rng = np.random.default_rng(1)
    sd = random_s4d_sd(rng)
    model = S4DModel.from_state_dict(sd)
    L = 17
    K = model.kernel(0, L)
    dt = np.exp(sd["s4_layers.0.kernel.log_dt"].astype(float))
    A = -np.exp(sd["s4_layers.0.kernel.log_A_real"].astype(float)) + 1j * sd["s4_layers.0.kernel.A_imag"]
    C = cplx(sd["s4_layers.0.kernel.C"])
    lam = np.exp(dt[:, None] * A)
    ref = np.stack([2 * np.sum(C * (lam - 1) / A * lam**l, axis=1).real for l in range(L)], axis=1)
    np.testing.assert_allclose(K, ref, rtol=1e-10, atol=1e-12)


def test_lqo_ssm_equals_explicit_lqo():
    rng = np.random.default_rng(2)
    sd = random_lqo_sd(rng)
    model = LQOModel.from_state_dict(sd)
    u = rng.standard_normal((4, 11, model.d_model))
    for i in range(model.n_layers):
        p = f"layers.{i}.ssm."
        lam_c = -np.exp(sd[p + "log_A_real"].astype(float)) + 1j * sd[p + "A_imag"]
        dt = np.exp(float(sd[p + "log_dt"][0]))
        lam = np.exp(dt * lam_c)
        Bb = ((lam - 1) / lam_c)[:, None] * cplx(sd[p + "B"])
        C, U, D = cplx(sd[p + "C"]), cplx(sd[p + "U"]), sd[p + "D"].astype(float)
        M = np.einsum("hrp,hrq->hpq", U.conj(), U)
        x = np.zeros((4, len(lam)), dtype=complex)
        ref = np.empty_like(u)
        for k in range(u.shape[1]):
            x = lam * x + u[:, k] @ Bb.T
            ref[:, k] = (x @ C.T).real + np.einsum("bp,hpq,bq->bh", x.conj(), M, x).real + D * u[:, k]
        y, lin, quad = model.ssm_forward(i, u, return_parts=True)
        np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(lin + quad, y, rtol=1e-12, atol=1e-12)
        assert np.all(quad >= 0)  # M_j = U_j^H U_j is PSD


def test_lqo_full_m_layout_equals_factor():
    rng = np.random.default_rng(3)
    sd = random_lqo_sd(rng)
    model = LQOModel.from_state_dict(sd)
    sd2 = dict(sd)
    U = cplx(sd2.pop("layers.1.ssm.U"))
    M = np.einsum("hrp,hrq->hpq", U.conj(), U)
    sd2["layers.1.ssm.M"] = np.stack([M.real, M.imag], -1)
    model2 = LQOModel.from_state_dict(sd2)
    assert model2.rank == (2, None)
    x = rng.standard_normal((5, 13))
    np.testing.assert_allclose(model2.forward(x), model.forward(x), rtol=1e-6, atol=1e-6)
    sd2["layers.1.ssm.M"] = rng.standard_normal(sd2["layers.1.ssm.M"].shape)
    with pytest.raises(LayoutError, match="Hermitian"):
        LQOModel.from_state_dict(sd2)


@pytest.mark.parametrize("cls,make", [(S4DModel, random_s4d_sd), (LQOModel, random_lqo_sd)])
def test_forward_trace_consistency(cls, make):
    rng = np.random.default_rng(4)
    model = cls.from_state_dict(make(rng))
    x = rng.standard_normal((6, 9))
    logits, trace = model.forward(x, return_layer_inputs=True)
    assert logits.shape == (6, 10) and len(trace) == model.n_layers
    np.testing.assert_allclose(trace[0]["input"], model.encode(x))
    for i, t in enumerate(trace):
        np.testing.assert_allclose(t["ssm_output"], model.ssm_forward(i, t["input"]))
        np.testing.assert_allclose(t["output"], model.post_ssm(i, t["ssm_output"], t["input"]))
        if i + 1 < len(trace):
            assert trace[i + 1]["input"] is t["output"]
    np.testing.assert_allclose(model.decode(trace[-1]["output"]), logits)
    np.testing.assert_array_equal(model.predict(x, batch_size=4), np.argmax(logits, -1))
    # (batch, L, 1) and (batch, L) inputs agree
    np.testing.assert_allclose(model.forward(x[:, :, None]), logits)
    # state_dict round trip
    np.testing.assert_allclose(cls.from_state_dict(model.state_dict()).forward(x), logits)


def test_reduced_and_padded_s4d_state_dicts():
    rng = np.random.default_rng(5)
    sd = random_s4d_sd(rng, M=(6, 6))
    x = rng.standard_normal((4, 12))
    # padding with inert modes (C = 0) changes nothing
    pad = dict(sd)
    for i in range(2):
        p = f"s4_layers.{i}.kernel."
        pad[p + "C"] = np.concatenate([sd[p + "C"], np.zeros((6, 3, 2), np.float32)], 1)
        pad[p + "log_A_real"] = np.concatenate([sd[p + "log_A_real"], np.zeros((6, 3), np.float32)], 1)
        pad[p + "A_imag"] = np.concatenate([sd[p + "A_imag"], np.ones((6, 3), np.float32)], 1)
    a, b = S4DModel.from_state_dict(sd), S4DModel.from_state_dict(pad)
    assert b.d_state == (18, 18)
    np.testing.assert_allclose(b.forward(x), a.forward(x), rtol=1e-12, atol=1e-12)
    # fewer modes, per-layer different counts
    red = dict(sd)
    for i, m in enumerate((2, 4)):
        p = f"s4_layers.{i}.kernel."
        for k in ("C", "log_A_real", "A_imag"):
            red[p + k] = sd[p + k][:, :m].copy()
    r = S4DModel.from_state_dict(red)
    assert r.n_modes == (2, 4)
    assert r.num_parameters()["ssm"] < a.num_parameters()["ssm"]
    assert np.all(np.isfinite(r.forward(x)))


def test_reduced_lqo_state_dict():
    rng = np.random.default_rng(6)
    sd = random_lqo_sd(rng, P=(7, 7), R=(2, 2))
    r = LQOModel.from_state_dict(truncate_lqo(sd, (3, 5)))
    assert r.n_modes == (3, 5) and r.rank == (2, 2)
    assert np.all(np.isfinite(r.forward(rng.standard_normal((2, 8)))))


def test_layout_errors():
    rng = np.random.default_rng(7)
    sd = random_s4d_sd(rng)
    bad = dict(sd)
    del bad["s4_layers.1.kernel.A_imag"]
    with pytest.raises(LayoutError, match="missing"):
        S4DModel.from_state_dict(bad)
    bad = dict(sd)
    bad["s4_layers.0.kernel.log_A_real"] = bad["s4_layers.0.kernel.log_A_real"][:, :2]
    with pytest.raises(ShapeError):
        S4DModel.from_state_dict(bad)
    bad = dict(sd, **{"s4_layers.0.kernel.B": np.zeros((6, 5, 2), np.float32)})
    with pytest.raises(LayoutError, match="unexpected"):
        S4DModel.from_state_dict(bad)
    with pytest.raises(LayoutError):
        LQOModel.from_state_dict(sd)
    with pytest.raises(LayoutError):
        S4DModel.from_state_dict(random_lqo_sd(rng))
    model = S4DModel.from_state_dict(sd)
    with pytest.raises(ShapeError):
        model.forward(np.zeros((2, 5, 3)))
    with pytest.raises(ShapeError):
        model.accuracy(np.zeros((2, 5)), np.zeros(3))


def test_elementwise_helpers():
    x = np.linspace(-6, 6, 101)
    ref = [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x]
    np.testing.assert_allclose(gelu(x), ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(gelu(np.array([1.0])), [0.8413447460685429], rtol=1e-12)
    z = layer_norm(np.array([[1.0, 2.0, 3.0]]), np.ones(3), np.zeros(3))
    np.testing.assert_allclose(z.mean(), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(), 1 / np.sqrt(1 + 1e-5 / (2 / 3)), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# safetensors I/O
# ---------------------------------------------------------------------------------------------
def test_safetensors_roundtrip(tmp_path):
    rng = np.random.default_rng(8)
    t = {
        "a": rng.standard_normal((3, 4)).astype(np.float32),
        "b.c": np.arange(5, dtype=np.int64),
        "u": np.array([1, 2], np.uint8),
        "e": np.zeros((0, 3), np.float32),
    }
    path = tmp_path / "x.safetensors"
    write_safetensors(path, t, {"k": "v"})
    back, meta = read_safetensors(path)
    assert meta == {"k": "v"} and set(back) == set(t)
    for k in t:
        np.testing.assert_array_equal(back[k], t[k])
        assert back[k].dtype == t[k].dtype
    st_np = pytest.importorskip("safetensors.numpy")
    ext = st_np.load_file(str(path))
    for k in t:
        np.testing.assert_array_equal(ext[k], t[k])
    st_np.save_file(t, str(tmp_path / "y.safetensors"), metadata={"m": "1"})
    back2, meta2 = read_safetensors(tmp_path / "y.safetensors")
    assert meta2 == {"m": "1"}
    for k in t:
        np.testing.assert_array_equal(back2[k], t[k])


def test_safetensors_truncated(tmp_path):
    from mor_lqo.errors import CheckpointError

    path = tmp_path / "x.safetensors"
    write_safetensors(path, {"a": np.ones((10, 10), np.float32)})
    data = path.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-8])
    with pytest.raises(CheckpointError):
        read_safetensors(tmp_path / "t.safetensors")
    (tmp_path / "s.safetensors").write_bytes(b"abc")
    with pytest.raises(CheckpointError):
        read_safetensors(tmp_path / "s.safetensors")


# ---------------------------------------------------------------------------------------------
# torch twins
# ---------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_torch_numpy_equal_random_init():
    torch = pytest.importorskip("torch")
    from mor_lqo.deep import torch_models as tm

    torch.manual_seed(0)
    x = torch.randn(8, 30)
    for tmodel, ncls in [
        (tm.S4Model(1, 10, d_model=12, n_layers=2, dropout=0.1, d_state=16), S4DModel),
        (tm.LQOModel(1, 10, d_model=12, n_layers=2, n_modes=9, rank=3, dropout=0.1), LQOModel),
    ]:
        tmodel.eval()
        with torch.no_grad():
            lt = tmodel(x).double().numpy()
        sd = tm.state_dict_to_numpy(tmodel)
        assert set(sd) == set(tmodel.state_dict())
        nmodel = ncls.from_state_dict(sd)
        assert set(nmodel.state_dict()) == set(sd)
        np.testing.assert_allclose(nmodel.forward(x.numpy()), lt, rtol=1e-4, atol=1e-4)


@pytest.mark.torch
def test_torch_full_m_layout_strict_reload():
    """A dict with a full (indefinite) Hermitian ``ssm.M`` loads strictly into ``LQOModel(quad="M")``."""
    torch = pytest.importorskip("torch")
    from mor_lqo.deep import torch_models as tm

    rng = np.random.default_rng(9)
    sd = random_lqo_sd(rng, H=5, P=(6, 6), R=(2, 2))
    for i in range(2):
        del sd[f"layers.{i}.ssm.U"]
        G = rng.standard_normal((5, 6, 6)) + 1j * rng.standard_normal((5, 6, 6))
        M = (G + np.conj(np.swapaxes(G, 1, 2))) / 2  # Hermitian, indefinite
        sd[f"layers.{i}.ssm.M"] = np.stack([M.real, M.imag], -1).astype(np.float32)
    t = tm.LQOModel(1, 10, d_model=5, n_layers=2, n_modes=6, quad="M")
    t.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    x = rng.standard_normal((4, 15)).astype(np.float32)
    with torch.no_grad():
        lt = t.eval()(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(LQOModel.from_state_dict(sd).forward(x), lt, rtol=1e-4, atol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_torch_numpy_equal_bundled_and_strict_reload(name):
    torch = pytest.importorskip("torch")
    from mor_lqo.deep import torch_models as tm

    model = load_bundled_model(name)
    sd = model.state_dict()
    x, _ = load_test_split()
    x = x[:200]
    # reduce every layer to its first 8 modes: the numpy model and a strict torch reload agree
    m = 8
    red = dict(sd)
    for i in range(model.n_layers):
        if name == "s4d":
            p = f"s4_layers.{i}.kernel."
            for k in ("C", "log_A_real", "A_imag"):
                red[p + k] = sd[p + k][:, :m].copy()
        else:
            p = f"layers.{i}.ssm."
            for k in ("log_A_real", "A_imag", "B"):
                red[p + k] = sd[p + k][:m].copy()
            red[p + "C"] = sd[p + "C"][:, :m].copy()
            red[p + "U"] = sd[p + "U"][:, :, :m].copy()
    for state, size in [(sd, None), (red, m)]:
        if name == "s4d":
            H = model.d_model
            t = tm.S4Model(
                1, 10, d_model=H, n_layers=model.n_layers, dropout=0.0, d_state=2 * (size or model.n_modes[0])
            )
        else:
            t = tm.LQOModel(
                1,
                10,
                d_model=model.d_model,
                n_layers=model.n_layers,
                n_modes=size or model.n_modes[0],
                rank=model.rank[0],
            )
        t.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
        t.eval()
        with torch.no_grad():
            lt = t(torch.from_numpy(x)).double().numpy()
        ln = type(model).from_state_dict(state).forward(x)
        np.testing.assert_allclose(ln, lt, rtol=2e-4, atol=2e-4 * np.abs(lt).max())


@pytest.mark.torch
@pytest.mark.parametrize("family", ["s4d", "lqo"])
def test_training_script_smoke(tmp_path, family):
    """One epoch of a tiny model through the committed training script (writes weights + JSON)."""
    pytest.importorskip("torch")
    if importlib.util.find_spec("mnist1d") is None:
        pytest.skip("mnist1d not installed")
    from benchmarks.train_mnist1d import main

    out = tmp_path / f"{family}.safetensors"
    args = ["--model", family, "--out", str(out), "--epochs", "1", "--d-model", "8", "--n-layers", "1"]
    args += ["--d-state", "8"] if family == "s4d" else ["--n-modes", "6", "--rank", "1"]
    entry = main(args + ["--test-split-out", str(tmp_path / "t.npz"), "--threads", "1"])
    sd, meta = read_safetensors(out)
    model = (S4DModel if family == "s4d" else LQOModel).from_state_dict(sd)
    assert model.n_modes == ((4,) if family == "s4d" else (6,))
    info = json.loads((tmp_path / "models.json").read_text())[family]
    assert info["test_accuracy"] == entry["test_accuracy"] and info["numpy_torch_max_logit_diff"] < 1e-3
    with np.load(tmp_path / "t.npz") as f:
        assert f["x"].shape == (1000, 40) and f["y"].dtype == np.uint8
