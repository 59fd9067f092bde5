"""Joint bound minimisation (mor_lqo.torch.bound_descent) and its differentiable bound (bound_terms)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_builders import lqo_sd, s4d_sd, truncate_lqo, truncate_s4d  # noqa: E402

from mor_lqo.deep import LQOModel, S4DModel  # noqa: E402
from mor_lqo.deep.bound import BoundEvaluator, measured_output_error, output_error_bound, s4d_kernels  # noqa: E402
from mor_lqo.deep.bound_hybrid import hybrid_layer  # noqa: E402
from mor_lqo.deep.bound_taylor import taylor_propagate  # noqa: E402
from mor_lqo.errors import InvalidArgumentError, LayoutError  # noqa: E402
from mor_lqo.torch.bound_descent import minimise_bound  # noqa: E402
from mor_lqo.torch.bound_terms import TheoremThreeBound, trainable_keys  # noqa: E402


def _pair(family, seed, full_m=False, perturb=0.3):
    rng = np.random.default_rng(seed)
    if family == "s4d":
        sd = s4d_sd(rng, H=4, M=(4, 3))
        red = truncate_s4d(sd, (2, 2), perturb, rng)
        m, mc = S4DModel.from_state_dict(sd), S4DModel.from_state_dict(red)
    else:
        sd = lqo_sd(rng, H=4, P=(5, 3), R=(2, 1))
        red = truncate_lqo(sd, (3, 2), perturb, rng)
        if full_m:  # the layout variant with a full Hermitian M instead of the factor U
            for i in range(2):
                U = red.pop(f"layers.{i}.ssm.U").astype(np.float64)
                Uc = U[..., 0] + 1j * U[..., 1]
                M = np.einsum("hrp,hrq->hpq", np.conj(Uc), Uc)
                red[f"layers.{i}.ssm.M"] = np.stack([M.real, M.imag], axis=-1).astype(np.float32)
        m, mc = LQOModel.from_state_dict(sd), LQOModel.from_state_dict(red)
    x = 0.5 * rng.standard_normal((8, 12))
    return m, mc, x


def _numpy_taylor(m, sd, x):
    """Theorem 3 per sequence by the numpy route (mor_lqo.deep.bound_taylor) for compressed tensors ``sd``."""
    mc = type(m).from_state_dict(sd)
    ev = BoundEvaluator(m, inputs=x)
    red = [mc.ssm_params(i) for i in range(m.n_layers)]
    terms = [ev.layer_terms(i, r) for i, r in enumerate(red)]
    kern = [s4d_kernels(r, ev.L) if ev.family == "s4d" else None for r in red]
    hyb = [hybrid_layer(ev, i, r, k) for i, (r, k) in enumerate(zip(red, kern))]
    return taylor_propagate(ev, terms, hyb, red, kern)


@pytest.mark.parametrize("family,full_m", [("s4d", False), ("lqo", False), ("lqo", True)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_bound_equals_numpy_bound(family, full_m, seed):
    """The torch transcription reproduces Theorem 3 of the numpy evaluator per sequence to rounding."""
    m, mc, x = _pair(family, seed, full_m)
    sd = {k: v.astype(np.float64) for k, v in mc.state_dict().items()}
    fn = TheoremThreeBound(BoundEvaluator(m, inputs=x), sd)
    keys = [k for i in range(m.n_layers) for k in trainable_keys(family, sd, i)]
    assert ("layers.0.ssm.M" in keys) == (family == "lqo" and full_m)
    params = {k: torch.tensor(sd[k]) for k in keys}
    got = fn(params, np.arange(x.shape[0])).numpy()
    ref = _numpy_taylor(m, sd, x)
    np.testing.assert_allclose(got, ref, rtol=1e-11)
    # and a subset of the sequences gives the same values for those sequences
    np.testing.assert_allclose(fn(params, [5, 2]).numpy(), ref[[5, 2]], rtol=1e-11)


def _mean_bound_along(m, sd, x, v, t):
    shifted = dict(sd)
    for k, d in v.items():
        shifted[k] = sd[k] + t * d
    return float(np.mean(_numpy_taylor(m, shifted, x)))


@pytest.mark.parametrize("family", ["s4d", "lqo"])
def test_bound_gradient_matches_finite_differences_of_numpy_bound(family):
    """Autograd's directional derivative against central differences of the independent numpy bound."""
    m, mc, x = _pair(family, 3)
    sd = {k: v.astype(np.float64) for k, v in mc.state_dict().items()}
    fn = TheoremThreeBound(BoundEvaluator(m, inputs=x), sd)
    keys = [k for i in range(m.n_layers) for k in trainable_keys(family, sd, i)]
    params = {k: torch.tensor(sd[k], requires_grad=True) for k in keys}
    fn(params, np.arange(x.shape[0])).mean().backward()
    rng = np.random.default_rng(7)
    for _ in range(3):
        v = {k: rng.standard_normal(sd[k].shape) for k in keys}
        analytic = sum(float(np.sum(params[k].grad.numpy() * v[k])) for k in keys)
        h = 1e-6

        fd = (_mean_bound_along(m, sd, x, v, h) - _mean_bound_along(m, sd, x, v, -h)) / (2 * h)
        # central difference error O(h^2 f''') plus rounding O(eps |f| / h) ~ 1e-9 relative here
        assert abs(analytic - fd) <= 1e-6 * max(1.0, abs(fd)), (analytic, fd)


@pytest.mark.parametrize("family", ["s4d", "lqo"])
def test_minimise_bound_lowers_the_certified_bound(family):
    m, mc, x = _pair(family, 4, perturb=1.0)
    sd0 = mc.state_dict()
    res = minimise_bound(m, mc, x, steps=60, lr=1e-2, batch_size=4, eval_every=10, max_error_increase=None)
    assert res.improved and res.bound_after < 0.9 * res.bound_before
    # the certificate is the numpy bound of the returned (cast) model, and it holds
    cert = output_error_bound(m, res.model, inputs=x)
    np.testing.assert_allclose(np.mean(cert.per_sample), res.bound_after, rtol=1e-12)
    assert np.all(cert.measured <= cert.per_sample + 1e-9)
    # only the trainable SSM tensors changed; shapes, dtypes and the parameter count are kept
    keys = {k for i in range(m.n_layers) for k in trainable_keys(family, sd0, i)}
    for k, v in res.state_dict.items():
        assert v.dtype == sd0[k].dtype and v.shape == sd0[k].shape
        if k not in keys:
            np.testing.assert_array_equal(v, sd0[k])
    assert any(not np.array_equal(res.state_dict[k], sd0[k]) for k in keys)
    assert res.model.num_parameters() == mc.num_parameters()
    # the start is not modified
    for k, v in mc.state_dict().items():
        np.testing.assert_array_equal(v, sd0[k])
    assert res.history[0]["step"] == 0 and res.history[-1]["step"] == 60


@pytest.mark.parametrize("family", ["s4d", "lqo"])
def test_error_guard_keeps_the_measured_error(family):
    """With max_error_increase=0 the kept iterate's calibration error is at most the start's."""
    m, mc, x = _pair(family, 5, perturb=1.0)
    res = minimise_bound(m, mc, x, steps=40, lr=1e-2, batch_size=8, eval_every=10, max_error_increase=0.0)
    before = np.mean(measured_output_error(m, mc, x))
    after = np.mean(measured_output_error(m, res.model, x))
    assert after <= before * (1 + 1e-6)
    assert res.bound_after <= res.bound_before


def test_overlong_steps_are_halved_not_fatal():
    """Steps so long that the exponentials overflow give non-finite iterates; the descent backs off."""
    m, mc, x = _pair("lqo", 8, perturb=1.0)
    res = minimise_bound(m, mc, x, steps=30, lr=50.0, batch_size=8, eval_every=5, max_error_increase=None)
    assert len(res.history) >= 2 and not all(np.isfinite([h["mean_bound"] for h in res.history]))
    assert np.isfinite(res.bound_after) and res.bound_after <= res.bound_before


def test_zero_steps_returns_the_start():
    m, mc, x = _pair("s4d", 6)
    res = minimise_bound(m, mc, x, steps=0)
    assert not res.improved and res.bound_after == res.bound_before
    for k, v in mc.state_dict().items():
        np.testing.assert_array_equal(res.state_dict[k], v)


def test_bad_arguments():
    m, mc, x = _pair("s4d", 7)
    with pytest.raises(InvalidArgumentError):
        minimise_bound(m, mc, x, steps=-1)
    with pytest.raises(InvalidArgumentError):
        minimise_bound(m, mc, x, batch_size=0)
    with pytest.raises(InvalidArgumentError):
        minimise_bound(m, mc, x, max_error_increase=-0.1)
    other, _, _ = _pair("lqo", 7)
    with pytest.raises(LayoutError):
        minimise_bound(m, other, x, steps=1)


@pytest.mark.slow
def test_benchmark_script_runs(capsys):
    """benchmarks/bound_descent.py end to end on the bundled S4D model (tiny settings, about 20 s)."""
    from benchmarks.bound_descent import main

    main(["--models", "mnist1d_s4d", "--ratios", "1/2", "--steps", "2", "--calibration", "16", "--test", "50"])
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| mnist1d_s4d")]
    assert [r.split("|")[3].strip() for r in rows] == ["h2 start", "bare", "guarded"]
