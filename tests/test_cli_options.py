"""Method options (``compress(options=...)``, ``mor-lqo compress --option``), the re-measured layer errors
(:func:`mor_lqo.deep.compress.layer_errors.layer_errors`) and ``mor-lqo compress --descend-bound``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from deep_builders import lqo_sd, s4d_sd, truncate_lqo, truncate_s4d

from mor_lqo.adapters import save
from mor_lqo.cli import EXIT_OK, EXIT_USAGE, main, method_options
from mor_lqo.deep import LQOModel, S4DModel, read_safetensors
from mor_lqo.deep.bound import output_error_bound, s4d_kernels
from mor_lqo.deep.compress import CompressionError, check_options, compress
from mor_lqo.deep.compress.layer_errors import layer_errors
from mor_lqo.errors import LayoutError

# ---------------------------------------------------------------------------------------------------------
# check_options
# ---------------------------------------------------------------------------------------------------------


def test_check_options_accepts_every_documented_kind():
    opts = {"iters": 0, "tol": 1e-9, "maxiter": 5, "rho": 0.0, "data_iters": 3, "data_stall": (20, 1e-3),
            "allocate": "data", "error_guard": False}
    out = check_options(opts)
    assert out == opts and out is not opts
    assert check_options(None) == {}
    assert check_options({"data_stall": None, "iters": np.int64(4)})["iters"] == 4


@pytest.mark.parametrize("opts,match", [
    ({"errorguard": False}, "did you mean 'error_guard'"),
    ({"colour": 1}, "unknown option 'colour'"),
    ({"iters": -1}, "'iters' must be an integer >= 0"),
    ({"iters": 2.5}, "'iters' must be an integer"),
    ({"iters": True}, "'iters' must be an integer"),
    ({"maxiter": 0}, "'maxiter' must be an integer >= 1"),
    ({"tol": 0.0}, "'tol' must be a positive number"),
    ({"tol": float("nan")}, "'tol' must be a positive number"),
    ({"rho": -1e-3}, "'rho' must be a number >= 0"),
    ({"rho": float("inf")}, "'rho' must be a number >= 0"),
    ({"data_stall": (0, 1e-3)}, "'data_stall' must be None or a pair"),
    ({"data_stall": 20}, "'data_stall' must be None or a pair"),
    ({"allocate": "bound"}, "'allocate' must be 'uniform' or 'data'"),
    ({"error_guard": "no"}, "'error_guard' must be True or False"),
])
def test_check_options_refuses(opts, match):
    with pytest.raises(CompressionError, match=match):
        check_options(opts)


def test_check_options_refuses_non_mappings():
    with pytest.raises(CompressionError, match="mapping"):
        check_options([("iters", 3)])


def test_compress_refuses_an_unknown_option_before_any_work(rng):
    sd = s4d_sd(rng, H=3, M=(4,))
    with pytest.raises(CompressionError, match="did you mean 'data_iters'"):
        compress(sd, "h2", order=2, length=8, options={"data_iter": 3}, progress=False)


def test_method_options_from_the_command_line():
    ns = argparse.Namespace(options=["data_stall=20,1e-3", "error_guard=false", "iters=7", "data_iters=0"])
    assert method_options(ns) == {"data_stall": (20, 1e-3), "error_guard": False, "iters": 7, "data_iters": 0}
    assert method_options(argparse.Namespace(options=["data_stall=none"])) == {"data_stall": None}


# ---------------------------------------------------------------------------------------------------------
# layer_errors: against compress's own figures and brute-force kernel sums
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["s4d", "lqo"])
def test_layer_errors_agree_with_compress(family, rng):
    """compress reports the errors of its reduced modes before the float32 write-back, layer_errors those of
    the written checkpoint: they agree to the write-back's rounding."""
    sd = s4d_sd(rng, H=4, M=(6, 5)) if family == "s4d" else lqo_sd(rng, H=4, P=(6, 4), R=(2, 1))
    res = compress(sd, "h2", order=4, length=16, progress=False, executor="serial")
    errs = layer_errors(sd, res.state_dict, length=16)
    assert set(errs) == {lay["name"] for lay in res.layers}
    for lay in res.layers:
        for key in ("h2_error", "rel_h2_error", "h2_error_L", "rel_h2_error_L"):
            assert errs[lay["name"]][key] == pytest.approx(lay[key], rel=1e-5), key


def _dense(sys, rng, with_d=True):
    """The system in random dense coordinates: the h2 routines then solve Lyapunov equations instead of
    the diagonal Cauchy sums that layer_errors uses."""
    import mor_lqo as ml

    T = rng.standard_normal((sys.n, sys.n)) + 1j * rng.standard_normal((sys.n, sys.n)) + 3 * np.eye(sys.n)
    Ti = np.linalg.inv(T)
    return ml.LQOSystem(T @ np.asarray(sys.A) @ Ti, T @ sys.B, sys.C @ Ti, D=sys.D if with_d else None, dt=sys.dt)


def test_layer_errors_equal_brute_force_kernel_sums(rng):
    """S4D: the finite-horizon error is the norm of the kernel difference over L lags; the infinite-horizon
    error and norm agree with the dense Lyapunov-based h2 routines on every channel's system."""
    import mor_lqo as ml
    from mor_lqo.adapters import extract

    sd = s4d_sd(rng, H=4, M=(6, 5))
    red = truncate_s4d(sd, (3, 2), 0.2, rng)
    m, mc = S4DModel.from_state_dict(sd), S4DModel.from_state_dict(red)
    L = 20
    errs = layer_errors(m, mc, length=L)
    for i, (b0, b1) in enumerate(zip(extract(sd), extract(red))):
        k0, k1 = s4d_kernels(m.ssm_params(i), L), s4d_kernels(mc.ssm_params(i), L)
        assert errs[b0.name]["h2_error_L"] == pytest.approx(np.linalg.norm(k0 - k1), rel=1e-10)
        e = [ml.h2_error(_dense(u0.system, rng), _dense(u1.system, rng)) for u0, u1 in zip(b0.units, b1.units)]
        # the h2 norm is that of the strictly proper part (D excluded)
        n = [ml.h2_norm(_dense(u.system, rng, with_d=False)) for u in b0.units]
        assert errs[b0.name]["h2_error"] == pytest.approx(np.linalg.norm(e), rel=1e-8)
        assert errs[b0.name]["h2_norm"] == pytest.approx(np.linalg.norm(n), rel=1e-8)


def test_layer_errors_lqo_finite_horizon_against_simulated_kernels(rng):
    """LQO: the finite-horizon error includes the quadratic kernels; against the unit systems' own
    Markov parameters and quadratic kernels summed over L lags."""
    from mor_lqo.adapters import extract

    sd = lqo_sd(rng, H=3, P=(5, 3), R=(2, 1))
    red = truncate_lqo(sd, (3, 2), 0.2, rng)
    L = 9
    errs = layer_errors(sd, red, length=L)
    b0, b1 = extract(sd), extract(red)
    for blk, other in zip(b0, b1):
        s0, s1 = blk.units[0].system, other.units[0].system
        lin = np.real(s0.impulse_response(L)) - np.real(s1.impulse_response(L))
        quad = np.real(s0.quadratic_kernel(L)) - np.real(s1.quadratic_kernel(L))
        brute = np.sqrt(np.sum(lin**2) + np.sum(quad**2))
        assert errs[blk.name]["h2_error_L"] == pytest.approx(brute, rel=1e-9)


def test_layer_errors_identical_and_mismatched(rng):
    sd = lqo_sd(rng, H=3, P=(5, 3), R=(2, 1))
    errs = layer_errors(sd, dict(sd), length=8)
    assert all(e["h2_error"] == 0.0 and e["h2_error_L"] == 0.0 for e in errs.values())
    other = lqo_sd(rng, H=3, P=(5,), R=(2,))
    with pytest.raises(LayoutError, match="different SSM blocks"):
        layer_errors(sd, other)


# ---------------------------------------------------------------------------------------------------------
# mor-lqo compress --option / --descend-bound
# ---------------------------------------------------------------------------------------------------------


def _files(tmp_path, sd, rng, n=16, L=12):
    ck = save(sd, tmp_path / "m.safetensors")
    data = tmp_path / "data.npz"
    np.savez(data, x=(0.5 * rng.standard_normal((n, L))).astype(np.float32), y=rng.integers(0, 5, n))
    return ck, data


@pytest.mark.parametrize("opt,match", [("error-guard=false", "unknown option"), ("iters=-2", "'iters' must be"),
                                       ("data_stall=20", "'data_stall'"), ("nokey", "--option needs KEY=VALUE")])
def test_cli_refuses_bad_options_before_work(opt, match, tmp_path, rng, capsys):
    ck, data = _files(tmp_path, s4d_sd(rng, H=3, M=(4,)), rng)
    out = tmp_path / "o"
    assert main(["compress", str(ck), "--data", str(data), "--option", opt, "--out", str(out)]) == EXIT_USAGE
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_cli_option_reaches_the_bound_method(tmp_path, rng):
    """``--option error_guard=false``: the bound method ranks by the bound alone (the report's allocation
    then rejects nothing and keeps the smallest mean bound)."""
    ck, data = _files(tmp_path, lqo_sd(rng, H=4, P=(6, 6), R=(2, 1)), rng, n=24)
    reps = {}
    for name, extra in (("guard", []), ("off", ["--option", "error_guard=false"])):
        out = tmp_path / name
        assert main(["compress", str(ck), "--data", str(data), "--method", "bound", "--ratio", "1/3", "--out",
                     str(out), "--no-progress", "--no-plot", "--quiet", *extra]) == EXIT_OK
        reps[name] = json.loads((out / "report.json").read_text())["allocation"]
    off = reps["off"]
    assert off["rejected"] == []
    best = min(off["candidates"].values(), key=lambda c: c["mean_bound"])
    assert off["candidates"][off["chosen"]]["mean_bound"] == best["mean_bound"]
    g = reps["guard"]
    assert g["candidates"][g["chosen"]]["mean_error"] <= g["candidates"]["uniform"]["mean_error"]


@pytest.mark.parametrize("family,seed", [("lqo", 0), ("s4d", 0), ("s4d", 1)])
def test_cli_descend_bound(family, seed, tmp_path):
    """The written checkpoint is the descended one: its certified mean bound on the calibration inputs is the
    reported one, the reported layer errors are its own, only SSM tensors changed, and a descent that did not
    lower the certified bound writes the plain reduction."""
    rng = np.random.default_rng(seed)
    sd = s4d_sd(rng, H=4, M=(6, 6)) if family == "s4d" else lqo_sd(rng, H=4, P=(6, 4), R=(2, 1))
    ck, data = _files(tmp_path, sd, rng)
    common = ["compress", str(ck), "--data", str(data), "--ratio", "1/3", "--no-progress", "--no-plot", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == EXIT_OK
    assert main([*common, "--descend-bound", "40", "--out", str(tmp_path / "desc")]) == EXIT_OK
    rep = json.loads((tmp_path / "desc" / "report.json").read_text())
    d = rep["bound_descent"]
    plain, _ = read_safetensors(tmp_path / "plain" / "m_compressed.safetensors")
    desc, _ = read_safetensors(tmp_path / "desc" / "m_compressed.safetensors")
    assert desc.keys() == plain.keys() and all(desc[k].dtype == plain[k].dtype for k in desc)
    cls = S4DModel if family == "s4d" else LQOModel
    m0, m1 = cls.from_state_dict(sd), cls.from_state_dict(desc)
    x = np.load(data)["x"]
    cert = output_error_bound(m0, m1, inputs=x)
    assert float(np.mean(cert.per_sample)) == pytest.approx(d["mean_bound_after"], rel=1e-9)
    assert cert.value == pytest.approx(d["max_bound_after"], rel=1e-9)
    changed = {k for k in desc if not np.array_equal(desc[k], plain[k])}
    if d["kept"]:
        plain_rep = json.loads((tmp_path / "plain" / "report.json").read_text())
        assert d["accuracy_before"] == pytest.approx(plain_rep["accuracy"]["after"], abs=1e-12)
        assert d["mean_bound_after"] < d["mean_bound_before"]
        assert changed and all(".ssm." in k or "kernel." in k for k in changed)
    else:
        assert d["mean_bound_after"] == d["mean_bound_before"] and not changed and "accuracy_before" not in d
    errs = layer_errors(sd, desc, length=12)
    for lay in rep["layers"]:
        assert lay["h2_error"] == pytest.approx(errs[lay["name"]]["h2_error"], rel=1e-12)
        assert lay["rel_h2_error_L"] == pytest.approx(errs[lay["name"]]["rel_h2_error_L"], rel=1e-12)
    assert any(n.startswith("bound descent (40 steps") for n in rep["notes"])


@pytest.mark.parametrize("extra,match", [
    (["--descend-bound", "0"], "--descend-bound must be >= 1"),
    (["--descend-bound", "5", "--descent-guard", "-1"], "--descent-guard must be"),
    (["--descend-bound", "5", "--descent-guard", "lots"], "--descent-guard must be"),
    (["--descend-bound", "5", "--model", "x.y:z"], "not with --model"),
    (["--descent-guard", "0.1"], "--descent-guard applies to --descend-bound"),
])
def test_cli_descend_bound_usage_errors(extra, match, tmp_path, rng, capsys):
    ck, data = _files(tmp_path, s4d_sd(rng, H=3, M=(4,)), rng)
    out = tmp_path / "o"
    assert main(["compress", str(ck), "--data", str(data), "--out", str(out), *extra]) == EXIT_USAGE
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_cli_descend_bound_needs_data(tmp_path, rng, capsys):
    ck = save(s4d_sd(rng, H=3, M=(4,)), tmp_path / "m.safetensors")
    assert main(["compress", str(ck), "--length", "8", "--descend-bound", "5", "--out", str(tmp_path / "o")]) \
        == EXIT_USAGE
    assert "needs calibration inputs" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# reference models under a wrapping module's prefix (Lightning's ``self.model``)
# ---------------------------------------------------------------------------------------------------------


def test_dotted_prefix():
    from mor_lqo.deep.compress.verify import dotted_prefix

    assert dotted_prefix(["model.encoder.weight", "model.s4_layers.0.D"]) == "model."
    assert dotted_prefix(["a.b.encoder.weight", "a.b.decoder.weight"]) == "a.b."
    assert dotted_prefix(["encoder.weight", "decoder.weight"]) == ""
    assert dotted_prefix(["model.s4_layers.0.D", "model.s4_layers.1.D"]) == "model.s4_layers."
    assert dotted_prefix([]) == ""


@pytest.mark.parametrize("family", ["s4d", "lqo"])
def test_prefixed_reference_checkpoint_calibrates_like_the_plain_one(family, rng):
    """A reference model saved under ``model.`` is calibrated exactly like the plain one: same tensors out
    (under the same prefix), same errors."""
    sd = s4d_sd(rng, H=4, M=(6, 5)) if family == "s4d" else lqo_sd(rng, H=4, P=(6, 4), R=(2, 1))
    x = 0.5 * rng.standard_normal((12, 10))
    plain = compress(sd, "h2", ratio="1/3", inputs=x, progress=False, executor="serial")
    pref = compress({"model." + k: v for k, v in sd.items()}, "h2", ratio="1/3", inputs=x, progress=False,
                    executor="serial")
    assert set(pref.state_dict) == {"model." + k for k in plain.state_dict}
    for k, v in plain.state_dict.items():
        np.testing.assert_array_equal(pref.state_dict["model." + k], v)
    assert [lay["h2_error_L"] for lay in pref.layers] == [lay["h2_error_L"] for lay in plain.layers]
    assert type(pref.model) is type(plain.model)


def test_cli_descend_bound_on_a_lightning_checkpoint(tmp_path, rng):
    """A Lightning-style checkpoint (``state_dict`` with ``model.`` keys, training entries): the written file
    loads with ``torch.load(weights_only=True)``, keeps its structure, and only its SSM tensors differ from
    the plain reduction's, in their dtypes."""
    torch = pytest.importorskip("torch")
    sd = lqo_sd(rng, H=4, P=(6, 4), R=(2, 1))
    torch.save({"state_dict": {"model." + k: torch.from_numpy(v) for k, v in sd.items()}, "epoch": 3},
               tmp_path / "m.ckpt")
    data = tmp_path / "data.npz"
    np.savez(data, x=(0.5 * rng.standard_normal((16, 12))).astype(np.float32))
    for name, extra in (("plain", []), ("desc", ["--descend-bound", "40"])):
        assert main(["compress", str(tmp_path / "m.ckpt"), "--data", str(data), "--ratio", "1/3", "--out",
                     str(tmp_path / name), "--no-progress", "--no-plot", "--quiet", *extra]) == EXIT_OK
    a = torch.load(tmp_path / "plain" / "m_compressed.ckpt", weights_only=True)
    b = torch.load(tmp_path / "desc" / "m_compressed.ckpt", weights_only=True)
    assert b["epoch"] == 3 and a["state_dict"].keys() == b["state_dict"].keys()
    rep = json.loads((tmp_path / "desc" / "report.json").read_text())
    changed = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert rep["bound_descent"]["kept"] and changed
    assert all(k.startswith("model.layers.") and ".ssm." in k for k in changed)
    assert all(b["state_dict"][k].dtype == torch.float32 for k in changed)


def test_torch_compress_checks_options_before_calibrating():
    """``mor_lqo.torch.compress`` refuses a bad option before it looks at the module or runs it."""
    torch = pytest.importorskip("torch")
    from mor_lqo.torch import compress as torch_compress

    with pytest.raises(CompressionError, match="unknown option 'bogus'"):
        torch_compress(torch.nn.Linear(2, 2), np.zeros((1, 4, 2), np.float32), ratio="1/2", options={"bogus": 1})
