"""Tests of mor_lqo.deep.compress: the finite-horizon fit, data weights, quadratic re-fit, the pipeline
(all methods, both reference families, executors, input types) and its error handling."""

from __future__ import annotations

import concurrent.futures
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from deep_builders import lqo_sd, s4d_sd
from hypothesis import given, settings
from hypothesis import strategies as st

from mor_lqo.adapters import extract
from mor_lqo.adapters.block import HalfModes
from mor_lqo.deep import LQOModel, S4DModel
from mor_lqo.deep.bound import lqo_block_h2_errors, output_error_bound
from mor_lqo.deep.compress import (
    CompressionError,
    compress,
    fit_finite_horizon,
    fit_quadratic,
    lag_weights,
    parse_ratio,
    refit_readout,
)
from mor_lqo.errors import CheckpointError, LayoutError


def kernels(lam, c, kappa, L):
    """kappa Re sum_k c_k lam_k^l, (N, L)."""
    return kappa * np.einsum("nk,nkl->nl", c, np.power(lam[:, :, None], np.arange(L))).real


# ---------------------------------------------------------------------------------------------
# finite-horizon fit
# ---------------------------------------------------------------------------------------------
def test_fit_recovers_one_pair_from_the_grid():
    """One conjugate pair is found from the candidate grid alone (up to the ridge bias) in >= 97 % of
    random cases (the fit is a local method: greedy insertion + Levenberg-Marquardt; measured ~99 %)."""
    bad = total = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        for L in (8, 12, 20, 40, 80):
            lam = np.exp(-rng.uniform(0.01, 1.0, (5, 1)) + 1j * rng.uniform(0.05, 3.0, (5, 1)))
            c = rng.standard_normal((5, 1)) + 1j * rng.standard_normal((5, 1))
            t = kernels(lam, c, 2.0, L)
            mu, C, _ = fit_finite_horizon(t, 1, kappa=2.0)
            err = np.linalg.norm(kernels(mu, C, 2.0, L) - t, axis=1) / np.linalg.norm(t, axis=1)
            assert np.all(np.abs(mu) < 1) and np.all(mu.imag >= 0) and np.all(err <= 1 + 1e-12)
            bad += int(np.sum(err > 1e-5))
            total += err.size
    assert bad <= 0.03 * total


@given(seed=st.integers(0, 10_000), q=st.integers(2, 4), extra=st.integers(0, 6), L=st.integers(20, 60))
@settings(max_examples=20, deadline=None)
def test_fit_recovers_low_order_kernels_from_modes(seed, q, extra, L):
    """A kernel of q pairs among q + extra candidate modes (extra residues 0) is recovered exactly."""
    rng = np.random.default_rng(seed)
    N = 4
    lam = np.exp(-rng.uniform(0.02, 0.5, (N, q + extra)) + 1j * rng.uniform(0.2, 2.5, (N, q + extra)))
    c = rng.standard_normal((N, q + extra)) + 1j * rng.standard_normal((N, q + extra))
    c[:, q:] = 0
    t = kernels(lam, c, 2.0, L)
    score = np.abs(c) ** 2
    mu, C, _ = fit_finite_horizon(t, q, init=lam, init_score=score, kappa=2.0)
    err = np.linalg.norm(kernels(mu, C, 2.0, L) - t, axis=1) / np.linalg.norm(t, axis=1)
    assert np.all(err < 1e-4)  # ridge bias only (FIT_RIDGE = 1e-4 relative to the basis)


def test_fit_never_worse_than_modal_start_and_respects_slowest_mode(rng):
    N, n, L, q = 12, 16, 40, 2
    lam = np.exp(-rng.uniform(0.001, 0.3, (N, n)) + 1j * rng.uniform(0, 3, (N, n)))
    c = rng.standard_normal((N, n)) + 1j * rng.standard_normal((N, n))
    t = kernels(lam, c, 2.0, L)
    mu, C, f = fit_finite_horizon(t, q, init=lam, kappa=2.0)
    fit_err = np.linalg.norm(kernels(mu, C, 2.0, L) - t, axis=1)
    # modal start: the q modes with the largest finite-horizon contribution, residues kept
    a = np.abs(lam) ** 2
    score = np.abs(c) ** 2 * (1 - a**L) / (1 - a)
    sel = np.argsort(-score, axis=1)[:, :q]
    modal = kernels(np.take_along_axis(lam, sel, 1), np.take_along_axis(c, sel, 1), 2.0, L)
    assert np.all(fit_err <= np.linalg.norm(modal - t, axis=1) + 1e-9)
    assert np.all(np.abs(mu) <= np.max(np.abs(lam), axis=1)[:, None] * (1 + 1e-12))
    # the reported objective is the (regularised) squared residual, at least the plain one
    assert np.all(f >= fit_err**2 * (1 - 1e-9))


def test_lag_weights_formula(rng):
    B_, L, H = 7, 9, 3
    U = rng.standard_normal((B_, L, H))
    Ws = lag_weights(U, rho=0.0)
    e = rng.standard_normal((H, L))
    for h in range(H):
        conv = np.array([[np.dot(e[h, : k + 1], U[b, k::-1, h]) for k in range(L)] for b in range(B_)])
        energy = np.sum(conv**2) / B_
        tr = sum(np.sum(U[:, : L - i, h] ** 2) for i in range(L)) / B_ / L
        assert e[h] @ Ws[h] @ Ws[h] @ e[h] * tr == pytest.approx(energy, rel=1e-10)
        assert np.allclose(Ws[h], Ws[h].T)


def test_weighted_fit_lowers_the_data_error(rng):
    """The data-weighted fit has a smaller output error on the calibration inputs than the plain fit."""
    N, n, L, q = 6, 12, 30, 2
    lam = np.exp(-rng.uniform(0.01, 0.3, (N, n)) + 1j * rng.uniform(0, 3, (N, n)))
    c = rng.standard_normal((N, n)) + 1j * rng.standard_normal((N, n))
    t = kernels(lam, c, 2.0, L)
    U = np.cumsum(rng.standard_normal((20, L, N)), axis=1)  # low-pass inputs
    W = lag_weights(U, rho=1e-3)
    e_plain = t - kernels(*fit_finite_horizon(t, q, init=lam)[:2], 2.0, L)
    e_data = t - kernels(*fit_finite_horizon(t, q, W=W, init=lam)[:2], 2.0, L)
    en = [np.einsum("hl,hml,hm->h", e, W @ W, e) for e in (e_plain, e_data)]
    assert np.all(en[1] <= en[0] * (1 + 1e-6))


# ---------------------------------------------------------------------------------------------
# quadratic re-fit
# ---------------------------------------------------------------------------------------------
def _lqo_modes(rng, H=3, P=5, R=2):
    lam = np.exp(rng.uniform(-1.0, -0.05, P) + 1j * rng.uniform(-2, 2, P))
    B = rng.standard_normal((P, H)) + 1j * rng.standard_normal((P, H))
    C = rng.standard_normal((H, P)) + 1j * rng.standard_normal((H, P))
    U = rng.standard_normal((H, R, P)) + 1j * rng.standard_normal((H, R, P))
    M = np.einsum("hrp,hrq->hpq", U.conj(), U)
    return HalfModes(lam=lam, B=B, C=C, D=np.diag(rng.standard_normal(H)), kappa=1.0, M=M)


def _params(hm):
    return {"Lambda_bar": hm.lam, "B_bar": hm.B, "C": hm.C, "D": hm.D, "M": hm.M, "kappa": hm.kappa}


def test_fit_quadratic_exact_and_optimal(rng):
    full = _lqo_modes(rng)
    keep = np.array([0, 2, 3])
    # a full model whose quadratic output lives on the kept modes: the fit recovers it exactly
    M = np.zeros_like(full.M)
    M[:, keep[:, None], keep[None, :]] = full.M[:, keep[:, None], keep[None, :]]
    f2 = HalfModes(lam=full.lam, B=full.B, C=full.C, D=full.D, kappa=1.0, M=M)
    red = full.select(keep)
    Mh = fit_quadratic(f2, red)
    assert np.allclose(Mh, M[:, keep[:, None], keep[None, :]], rtol=1e-8, atol=1e-10)
    # general case: never worse than the sliced M (finite horizon)
    L = 30
    Mh = fit_quadratic(full, red, horizon=L)
    _, q_fit = lqo_block_h2_errors(_params(full), {**_params(red), "M": Mh}, L)
    _, q_cut = lqo_block_h2_errors(_params(full), _params(red), L)
    assert q_fit <= q_cut * (1 + 1e-8)
    assert np.allclose(Mh, np.conj(np.swapaxes(Mh, 1, 2)))


def test_refit_readout_exact_and_never_worse(rng):
    full = _lqo_modes(rng, H=3, P=6, R=2)
    keep = np.array([1, 2, 4])
    # readouts that live on the kept modes are recovered exactly (C and M), the rank stays <= R
    C = np.zeros_like(full.C)
    C[:, keep] = full.C[:, keep]
    M = np.zeros_like(full.M)
    M[:, keep[:, None], keep[None, :]] = full.M[:, keep[:, None], keep[None, :]]
    f2 = HalfModes(lam=full.lam, B=full.B, C=C, D=full.D, kappa=1.0, M=M)
    red = f2.select(keep)
    wrong = HalfModes(lam=red.lam, B=red.B, C=0 * red.C, D=red.D, kappa=1.0, M=0 * red.M)
    fit = refit_readout(f2, wrong, 25, rank=2)
    assert np.allclose(fit.C, red.C, rtol=1e-8, atol=1e-10)
    assert np.allclose(fit.M, red.M, rtol=1e-6, atol=1e-9)
    # general case: the finite-horizon error does not increase
    L = 25
    red = full.select(keep)
    fit = refit_readout(full, red, L, rank=2)
    lin0, q0 = lqo_block_h2_errors(_params(full), _params(red), L)
    lin1, q1 = lqo_block_h2_errors(_params(full), _params(fit), L)
    assert lin1[-1] <= lin0[-1] * (1 + 1e-10)
    assert all(np.linalg.matrix_rank(Mj, tol=1e-9 * np.abs(Mj).max()) <= 2 for Mj in fit.M)
    assert np.all(np.linalg.eigvalsh(fit.M) >= -1e-9 * np.abs(fit.M).max())



@pytest.mark.parametrize("kappa", [1.0, 2.0])
def test_linear_readout_normal_equations_match_the_markov_least_squares(rng, kappa):
    """The closed-form normal equations equal F^T F and F^T Y of the explicit Markov-parameter design (L m
    rows), and the readout solves the explicit least-squares problem: same residual to 1e-10 relative."""
    from mor_lqo.deep.compress.quadratic_fit import linear_readout_normal_equations

    n, q, m, p, L = 9, 4, 3, 2, 40
    lam = 0.93 * np.exp(1j * rng.uniform(-3, 3, n)) * rng.uniform(0.5, 1.0, n)
    full = HalfModes(lam=lam, B=rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m)),
                     C=rng.standard_normal((p, n)) + 1j * rng.standard_normal((p, n)), D=np.zeros((p, m)),
                     kappa=kappa)
    red = replace(full.select([0, 2, 5, 7]), B=rng.standard_normal((q, m)) + 1j * rng.standard_normal((q, m)))
    pw = full.lam[:, None] ** np.arange(L)
    Y = (kappa * np.einsum("jp,pl,pm->lmj", full.C, pw, full.B).real).reshape(-1, p)
    G = (red.lam[:, None] ** np.arange(L))[:, :, None] * red.B[:, None, :]  # (q, L, m)
    F = kappa * np.concatenate([G.real, -G.imag], axis=0).reshape(2 * q, -1).T
    A, b = linear_readout_normal_equations(full, red, L)
    assert np.allclose(A, F.T @ F, rtol=1e-12, atol=1e-12 * np.abs(A).max())
    assert np.allclose(b, F.T @ Y, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    th = np.linalg.lstsq(F, Y, rcond=None)[0]
    fit = refit_readout(full, red, L)
    th_fit = np.concatenate([fit.C.T.real, fit.C.T.imag])
    res_ls, res_fit = np.linalg.norm(F @ th - Y), np.linalg.norm(F @ th_fit - Y)
    assert res_fit <= res_ls * (1 + 1e-10)
    assert np.allclose(th_fit, th, rtol=1e-7, atol=1e-9 * np.abs(th).max())

# ---------------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def s4d_model(rng):
    return S4DModel.from_state_dict(s4d_sd(rng, H=4, M=(6, 5)))


@pytest.fixture
def lqo_model(rng):
    return LQOModel.from_state_dict(lqo_sd(rng, H=3, P=(6, 4), R=(2, 1)))


@pytest.mark.parametrize("method", ["modal", "bt", "irka", "tsia", "h2", "bound"])
def test_all_methods_s4d(s4d_model, method, rng):
    x = rng.standard_normal((16, 20))
    sd_before = {k: v.copy() for k, v in s4d_model.state_dict().items()}
    res = compress(s4d_model, method=method, order=4, inputs=x, progress=False, executor="serial") \
        if method != "bound" else compress(s4d_model, method=method, ratio=0.5, inputs=x, progress=False,
                                          executor="serial")
    assert isinstance(res.model, S4DModel)
    assert all(np.array_equal(v, s4d_model.state_dict()[k]) for k, v in sd_before.items())  # input unchanged
    for lay in res.layers:
        assert lay["order_after"] <= lay["order_before"]
        assert lay["writeback_error"] < 1e-8
        assert lay["h2_error_L"] >= 0 and lay["params_after"] <= lay["params_before"]
    if method != "bound":
        assert [lay["order_after"] for lay in res.layers] == [4, 4]
    assert res.params["ssm"]["after"] < res.params["ssm"]["before"]
    # the state dict loads into the numpy model and gives its outputs; the bound holds
    m2 = S4DModel.from_state_dict(res.state_dict)
    assert np.allclose(m2.forward(x), res.model.forward(x))
    b = output_error_bound(s4d_model, res.model, inputs=x)
    assert np.all(b.measured <= b.per_sample + 1e-9)
    # reported finite-horizon errors are those of the written (float32) model up to rounding
    for i, lay in enumerate(res.layers):
        k0, k1 = s4d_model.kernel(i, 20), res.model.kernel(i, 20)
        assert np.linalg.norm(k0 - k1) == pytest.approx(lay["h2_error_L"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("method", ["modal", "bt", "irka", "tsia", "h2", "bound"])
def test_all_methods_lqo(lqo_model, method, rng):
    x = rng.standard_normal((12, 15))
    kw = dict(ratio=0.5) if method == "bound" else dict(order=4)
    res = compress(lqo_model, method=method, inputs=x, progress=False, executor="serial", **kw)
    assert isinstance(res.model, LQOModel)
    for lay in res.layers:
        assert lay["writeback_error"] < 1e-8
        assert lay["order_after"] <= lay["order_before"]
    # the layout's U factor (rank R) is kept, so the model loads as before
    for i in range(2):
        U = res.state_dict[f"layers.{i}.ssm.U"]
        assert U.shape[1] == lqo_model.state_dict()[f"layers.{i}.ssm.U"].shape[1]
    b = output_error_bound(lqo_model, res.model, inputs=x)
    assert np.all(b.measured <= b.per_sample + 1e-9)



@pytest.mark.parametrize(("which", "seed"), [("s4d", 0), ("s4d", 1), ("lqo", 0), ("lqo", 3)])
def test_bound_method_keeps_the_candidate_with_the_smallest_bound(which, seed):
    """The bound method reduces every candidate allocation with the data-weighted h2 fit and keeps the one
    whose a-posteriori bound (mean over the calibration inputs) is smallest; the reported value is the bound
    of the model it writes, recomputed independently by output_error_bound, and the budget is respected."""
    rng = np.random.default_rng(seed)  # seeds where uniform orders (0) and another split (1, 3) win
    model = (S4DModel.from_state_dict(s4d_sd(rng, H=4, M=(6, 5))) if which == "s4d"
             else LQOModel.from_state_dict(lqo_sd(rng, H=3, P=(6, 4), R=(2, 1))))
    x = rng.standard_normal((16, 20))
    res = compress(model, method="bound", ratio=0.5, inputs=x, progress=False, executor="serial")
    al = res.allocation
    assert {"uniform", "first-order bound"} <= set(al["candidates"])
    means = {k: v["mean_bound"] for k, v in al["candidates"].items()}
    errs = {k: v["mean_error"] for k, v in al["candidates"].items()}
    admissible = {k: v for k, v in means.items() if errs[k] <= errs["uniform"] * (1 + 1e-9)}
    assert al["chosen"] == min(admissible, key=admissible.get)
    assert al["rejected"] == [k for k in means if k not in admissible and means[k] < means[al["chosen"]]]
    assert [lay["order_after"] for lay in res.layers] == al["candidates"][al["chosen"]]["orders"]
    b = output_error_bound(model, res.model, inputs=x)
    assert np.mean(b.per_sample) == pytest.approx(means[al["chosen"]], rel=1e-4)
    assert b.value == pytest.approx(al["value"], rel=1e-4)
    # the guard's error is the written model's measured error (independent route: its own forward pass)
    assert np.mean(b.measured) == pytest.approx(errs[al["chosen"]], rel=1e-4)
    assert res.params["ssm"]["after"] <= al["budget"] + 1e-9 and al["spent"] <= al["budget"] + 1e-9
    assert res.summary()["allocation"]["chosen"] == al["chosen"]
    assert any("preferred the" in n for n in res.notes) == (al["chosen"] != "uniform")
    assert sum("guard rejected it" in n for n in res.notes) == len(al["rejected"])
    # without the guard the bound alone decides
    raw = compress(model, method="bound", ratio=0.5, inputs=x, progress=False, executor="serial",
                   options={"error_guard": False}).allocation
    raw_means = {k: v["mean_bound"] for k, v in raw["candidates"].items()}
    assert raw["chosen"] == min(raw_means, key=raw_means.get) and raw["rejected"] == []

def test_h2_is_better_than_modal_on_data(s4d_model, rng):
    x = np.cumsum(rng.standard_normal((32, 30)), axis=1) / 5
    errs = {}
    for method in ("modal", "h2"):
        res = compress(s4d_model, method=method, order=2, inputs=x, progress=False, executor="serial")
        errs[method] = np.mean(output_error_bound(s4d_model, res.model, inputs=x).measured)
    assert errs["h2"] < errs["modal"]


def test_ratio_budget_and_length(s4d_model):
    res = compress(s4d_model, method="modal", ratio="1/3", length=16, progress=False)
    assert [lay["order_after"] for lay in res.layers] == [4, 4]  # round(12/3) = 4, round(10/3) = 3 -> 4
    assert res.length == 16 and all(lay["h2_error_L"] is not None for lay in res.layers)
    full = compress(s4d_model, method="modal", ratio=1.0, progress=False)
    assert all(lay["h2_error"] == 0 for lay in full.layers)
    budget = 2 * (4 * 4 * 2 + 2 * 4)  # two stored modes per channel in both layers: 4 H k + 2 H per layer
    res = compress(s4d_model, method="modal", budget=budget, progress=False)
    assert res.params["ssm"]["after"] <= budget
    assert [lay["stored_after"] for lay in res.layers] == [2, 2]
    res = compress(s4d_model, method="h2", order={"s4_layers.1.": 2}, length=12, progress=False)
    assert [lay["order_after"] for lay in res.layers] == [12, 2]
    assert res.layers[0]["h2_error"] == 0.0


def test_state_dict_inputs_and_types(s4d_model, tmp_path):
    sd = s4d_model.state_dict()
    nested = {"model": {"module." + k: v for k, v in sd.items()}, "epoch": 3}
    res = compress(nested, method="modal", order=2, progress=False)
    assert set(res.state_dict) == {"model", "epoch"} and res.state_dict["epoch"] == 3
    assert all(k.startswith("module.") for k in res.state_dict["model"])
    assert res.state_dict["model"]["module.s4_layers.0.kernel.C"].dtype == np.float32
    from mor_lqo.adapters import save

    path = save(sd, tmp_path / "in.safetensors")
    before = path.read_bytes()
    res2 = compress(str(path), method="modal", order=2, progress=False)
    assert path.read_bytes() == before
    assert isinstance(res2.model, S4DModel)
    assert np.allclose(res2.model.forward(np.ones((1, 5))), res.model.forward(np.ones((1, 5))))


def test_torch_state_dict(s4d_model):
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v) for k, v in s4d_model.state_dict().items()}
    res = compress(sd, method="modal", order=2, progress=False)
    t = res.state_dict["s4_layers.0.kernel.C"]
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape[1] == 1


def test_executors_agree(s4d_model, rng):
    x = rng.standard_normal((8, 16))
    ref = compress(s4d_model, method="h2", order=2, inputs=x, progress=False, executor="serial")
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        thr = compress(s4d_model, method="h2", order=2, inputs=x, progress=False, executor=ex)
    proc = compress(s4d_model, method="h2", order=2, inputs=x, progress=False, executor="process")
    for other in (thr, proc):
        for k, v in ref.state_dict.items():
            assert np.array_equal(v, other.state_dict[k]), k


def test_errors(s4d_model, rng):
    for bad in (0, -1, 2, "abc", "0x", float("nan"), "1/0"):
        with pytest.raises(CompressionError):
            compress(s4d_model, ratio=bad, progress=False)
    with pytest.raises(CompressionError, match="unknown method"):
        compress(s4d_model, method="svd", progress=False)
    with pytest.raises(CompressionError, match="odd"):
        compress(s4d_model, order=3, progress=False)
    with pytest.raises(CompressionError, match="at most one"):
        compress(s4d_model, order=2, ratio=0.5, progress=False)
    with pytest.raises(CompressionError, match="below the minimum"):
        compress(s4d_model, budget=10, progress=False)
    with pytest.raises(CompressionError, match="calibration inputs"):
        compress(s4d_model, method="bound", progress=False)
    with pytest.raises(CompressionError, match="allocates the orders"):
        compress(s4d_model, method="bound", order=2, inputs=rng.standard_normal((2, 5)), progress=False)
    with pytest.raises(CompressionError, match="unknown blocks"):
        compress(s4d_model, order={"nope.": 2}, progress=False)
    with pytest.raises(LayoutError):
        compress({"w": np.zeros(3)}, progress=False)
    with pytest.raises(CheckpointError):
        compress("/nonexistent/file.safetensors", progress=False)
    with pytest.raises(TypeError):
        compress(42, progress=False)


def test_parse_ratio():
    assert parse_ratio("1/32") == Fraction(1, 32)
    assert parse_ratio("32x") == Fraction(1, 32)
    assert parse_ratio(0.125) == Fraction(1, 8)
    assert parse_ratio(1) == 1


def test_other_layouts_through_the_adapter(rng):
    """An S5 / LRU-style MIMO layout without a reference model: reduces, writes back, reports."""
    H, P = 3, 6
    f = np.float32
    sd = {
        "layer.Lambda_re": -np.exp(rng.uniform(-2, 0, P)).astype(f),
        "layer.Lambda_im": rng.uniform(-3, 3, P).astype(f),
        "layer.B": rng.standard_normal((P, H, 2)).astype(f),
        "layer.C": rng.standard_normal((H, P, 2)).astype(f),
        "layer.D": rng.standard_normal(H).astype(f),
        "layer.log_step": np.full(P, np.log(0.1), f),
    }
    try:
        blocks = extract(sd)
    except LayoutError:
        pytest.skip("S5 layout naming not recognised by this adapter version")
    res = compress(sd, method="h2", order=2, progress=False)
    assert res.model is None
    assert res.layers[0]["order_after"] == 2 and res.layers[0]["h2_error"] is not None
    assert len(blocks) == 1


@pytest.mark.parametrize("ratio", ["1/8"])
def test_bundled_default_keeps_accuracy(ratio):
    from mor_lqo.deep import load_bundled_model, load_test_split

    m = load_bundled_model("s4d")
    x, y = load_test_split()
    res = compress(m, ratio=ratio, inputs=x[:256], progress=False)
    assert res.state_ratio <= 1 / 8
    a0, a1 = m.accuracy(x, y), res.model.accuracy(x, y)
    assert a1 >= a0 - 0.01
