"""Tests of the output-error bound (mor_lqo.deep.bound, docs/bound.md).

Independent checks: brute-force kernels and simulations for the block h2 errors and the single-block
inequality (docs/theory.md §10.2), dense-grid Lipschitz constants, and measured ≤ bound for random
models, random compressions and random inputs (hypothesis), a-priori and a-posteriori, and on the
bundled model with the bundled MNIST-1D test split.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from deep_builders import lqo_sd, s4d_sd, truncate_lqo, truncate_s4d
from hypothesis import given, settings
from hypothesis import strategies as st

from mor_lqo.deep import LQOModel, S4DModel
from mor_lqo.deep.bound import (
    GELU_LIPSCHITZ,
    SIGMOID_LIPSCHITZ,
    BoundEvaluator,
    _ln_step,
    layer_h2_errors,
    lqo_block_h2_error_totals,
    lqo_block_h2_errors,
    lqo_markov,
    measured_output_error,
    output_error_bound,
    s4d_kernels,
)
from mor_lqo.deep.models import gelu, layer_norm
from mor_lqo.errors import LayoutError, ShapeError
from mor_lqo.systems import LQOSystem

# absolute slack for measured <= bound: both sides are float64 forward passes of O(1..100) logits
ROUND = 1e-9


# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------
def test_gelu_lipschitz_matches_dense_grid():
    x = np.linspace(-8, 8, 400001)
    dgelu = np.gradient(gelu(x), x)
    assert abs(np.max(np.abs(dgelu)) - GELU_LIPSCHITZ) < 1e-8
    assert abs(x[np.argmax(dgelu)] - math.sqrt(2)) < 1e-3
    # closed form Phi(sqrt2) + sqrt2 phi(sqrt2)
    phi = math.exp(-1) / math.sqrt(2 * math.pi)
    assert GELU_LIPSCHITZ == pytest.approx(0.5 * (1 + math.erf(1)) + math.sqrt(2) * phi, rel=1e-15)
    s = 1 / (1 + np.exp(-x))
    assert np.max(np.gradient(s, x)) == pytest.approx(SIGMOID_LIPSCHITZ, rel=1e-8)


@given(seed=st.integers(0, 10_000), H=st.integers(2, 12), scale=st.floats(1e-3, 3.0))
@settings(max_examples=30, deadline=None)
def test_layernorm_local_lipschitz(seed, H, scale):
    """||LN(x) - LN(x^)|| <= LN step of the bound, with the std of x and ||x - x^|| only."""
    rng = np.random.default_rng(seed)
    g, b = rng.standard_normal(H), rng.standard_normal(H)
    x = rng.standard_normal(H) * rng.uniform(0.01, 3)
    xh = x + scale * rng.standard_normal(H)
    rho = np.linalg.norm(x - xh)
    y = layer_norm(x, g, b)
    cap = np.linalg.norm(y - b) + np.max(np.abs(g)) * math.sqrt(H)
    bound = _ln_step(np.array(rho), np.array(np.std(x)), np.array(cap), np.max(np.abs(g)), H, 1e-5)
    assert np.linalg.norm(y - layer_norm(xh, g, b)) <= bound * (1 + 1e-12) + 1e-14


@given(seed=st.integers(0, 10_000), H=st.integers(1, 8))
@settings(max_examples=30, deadline=None)
def test_glu_inequality(seed, H):
    """|a s(b) - a^ s(b^)| <= |a - a^| + |a| |b - b^| / 4 elementwise (original a only)."""
    rng = np.random.default_rng(seed)
    a, b = 3 * rng.standard_normal(H), 3 * rng.standard_normal(H)
    ah, bh = a + rng.standard_normal(H), b + 2 * rng.standard_normal(H)

    def sig(z):
        return 1 / (1 + np.exp(-z))

    lhs = np.abs(a * sig(b) - ah * sig(bh))
    assert np.all(lhs <= np.abs(a - ah) + np.abs(a) * np.abs(b - bh) / 4 + 1e-12)


# ---------------------------------------------------------------------------------------------
# block h2 errors against brute force
# ---------------------------------------------------------------------------------------------
def _lqo_params(rng, H=3, P=4, R=2, scale=1.0):
    lam = np.exp(rng.uniform(-1.0, -0.05, P) + 1j * rng.uniform(-2, 2, P))
    B = rng.standard_normal((P, H)) + 1j * rng.standard_normal((P, H))
    C = rng.standard_normal((H, P)) + 1j * rng.standard_normal((H, P))
    U = scale * (rng.standard_normal((H, R, P)) + 1j * rng.standard_normal((H, R, P)))
    M = np.einsum("hrp,hrq->hpq", U.conj(), U)
    return {"Lambda_bar": lam, "B_bar": B, "C": C, "D": rng.standard_normal(H), "M": M, "kappa": 1.0}


def _subset(p, idx):
    return {"Lambda_bar": p["Lambda_bar"][idx], "B_bar": p["B_bar"][idx], "C": p["C"][:, idx], "D": p["D"],
            "M": p["M"][:, idx][:, :, idx], "kappa": p["kappa"]}


def _system(p):
    return LQOSystem.conjugate_pairs(p["Lambda_bar"], p["B_bar"], p["C"], M=p["M"], D=np.diag(p["D"]), dt=1.0,
                                     scale=p["kappa"])


@pytest.mark.parametrize("L", [1, 5, 17])
def test_lqo_block_errors_brute_force(rng, L):
    full = _lqo_params(rng)
    red = _subset(full, [0, 2])
    red["C"] = red["C"] * 1.1
    lin, quad = lqo_block_h2_errors(full, red, L)
    sf, sr = _system(full), _system(red)
    h1 = sf.impulse_response(L) - sr.impulse_response(L)
    assert np.allclose(lin, np.sqrt(np.cumsum(np.sum(h1**2, axis=(1, 2)))), rtol=1e-12, atol=1e-12)
    # independent route: the quadratic kernels of the conjugate-pair systems, lag by lag
    h2 = sf.quadratic_kernel(L) - sr.quadratic_kernel(L)
    assert quad == pytest.approx(np.linalg.norm(h2), rel=1e-8, abs=1e-10)
    # markov parameters include D at lag 0
    assert np.allclose(lqo_markov(full, L), sf.impulse_response(L), rtol=1e-12, atol=1e-12)
    assert lqo_block_h2_errors(full, full, L)[1] == 0.0


@pytest.mark.parametrize("L", [1, 5, 40, 300])
@pytest.mark.parametrize("case", ["truncated", "readout", "feedthrough", "near", "no-quadratic"])
def test_lqo_block_error_totals_match_impulse_responses(rng, L, case):
    """Closed-form totals (finite-horizon Gramian) = the brute-force impulse-response difference."""
    full = _lqo_params(rng, H=3, P=6)
    red = _subset(full, [0, 2, 3])
    if case == "readout":
        red["C"] = red["C"] * 1.1
    elif case == "feedthrough":
        red["D"] = red["D"] + 0.3
    elif case == "near":  # relative error ~1e-9: the direct route is taken (the closed form would cancel)
        red = _subset(full, np.arange(6))
        red["C"] = red["C"] * (1 + 1e-9)
    elif case == "no-quadratic":
        full["M"], red["M"] = None, None
    lin, quad = lqo_block_h2_error_totals(full, red, L)
    q = red["C"].shape[1]
    sf = _system({**full, "M": full["M"] if full["M"] is not None else np.zeros((3, 6, 6))})
    sr = _system({**red, "M": red["M"] if red["M"] is not None else np.zeros((3, q, q))})
    h1 = sf.impulse_response(L) - sr.impulse_response(L)
    assert lin == pytest.approx(np.linalg.norm(h1), rel=1e-9 if case != "near" else 1e-6, abs=1e-13)
    assert (lin, quad) == pytest.approx(tuple(x if np.ndim(x) == 0 else x[-1] for x in
                                              lqo_block_h2_errors(full, red, L)), rel=1e-9, abs=1e-13)
    assert lqo_block_h2_error_totals(full, full, L) == (0.0, 0.0)


def test_s4d_kernels_match_model(rng):
    m = S4DModel.from_state_dict(s4d_sd(rng))
    for i in range(m.n_layers):
        K = m.kernel(i, 33)
        K[:, 0] += m.ssm_params(i)["D"]
        assert np.allclose(s4d_kernels(m.ssm_params(i), 33), K, rtol=1e-10, atol=1e-12)


@given(seed=st.integers(0, 10_000), H=st.integers(1, 4), P=st.integers(2, 5), L=st.integers(2, 24),
       scale=st.floats(0.05, 5.0))
@settings(max_examples=30, deadline=None)
def test_single_block_inequality(seed, H, P, L, scale):
    """docs/theory.md §10.2: |y_k - y^_k| <= ||h1 - h1^||_{k+1} ||u_0..k|| + ||h2 - h2^||_L ||u_0..k||^2."""
    rng = np.random.default_rng(seed)
    full = _lqo_params(rng, H=H, P=P)
    keep = np.sort(rng.choice(P, size=rng.integers(1, P), replace=False))
    red = _subset(full, keep)
    red["M"] = red["M"] * rng.uniform(0.5, 1.5)
    lin, quad = lqo_block_h2_errors(full, red, L)
    u = scale * rng.standard_normal((L, H))
    y, yh = _system(full).simulate(u), _system(red).simulate(u)
    un = np.sqrt(np.cumsum(np.sum(u * u, axis=1)))
    err = np.linalg.norm(y - yh, axis=1)
    rhs = lin * un + quad * un**2
    assert np.all(err <= rhs * (1 + 1e-9) + 1e-12)


# ---------------------------------------------------------------------------------------------
# the network bound
# ---------------------------------------------------------------------------------------------
@given(seed=st.integers(0, 10_000), H=st.integers(2, 6), L=st.integers(3, 24),
       k0=st.integers(1, 4), k1=st.integers(1, 3), perturb=st.sampled_from([0.0, 0.05, 1.0]),
       xscale=st.floats(0.01, 10.0))
@settings(max_examples=25, deadline=None)
def test_s4d_bound_dominates_measured(seed, H, L, k0, k1, perturb, xscale):
    rng = np.random.default_rng(seed)
    sd = s4d_sd(rng, H=H, M=(4, 3))
    m = S4DModel.from_state_dict(sd)
    mc = S4DModel.from_state_dict(truncate_s4d(sd, (k0, k1), perturb, rng))
    x = xscale * rng.standard_normal((7, L))
    res = output_error_bound(m, mc, inputs=x)
    assert res.measured.shape == res.per_sample.shape == (7,)
    assert np.all(res.measured <= res.per_sample + ROUND)
    assert res.value == pytest.approx(np.max(res.per_sample))
    assert sum(lb.share for lb in res.layers) == pytest.approx(1.0) or res.value == 0
    # a-priori bound for every input of at most this norm
    nu = float(np.max(np.linalg.norm(x, axis=1)))
    pri = output_error_bound(m, mc, input_norm=nu, length=L)
    assert pri.kind == "a-priori" and pri.per_sample is None
    assert np.max(res.measured) <= pri.value + ROUND


@given(seed=st.integers(0, 10_000), H=st.integers(2, 5), L=st.integers(3, 20),
       k0=st.integers(1, 5), k1=st.integers(1, 3), perturb=st.sampled_from([0.0, 0.1, 1.0]),
       xscale=st.floats(0.01, 3.0))
@settings(max_examples=25, deadline=None)
def test_lqo_bound_dominates_measured(seed, H, L, k0, k1, perturb, xscale):
    rng = np.random.default_rng(seed)
    sd = lqo_sd(rng, H=H, P=(5, 3), R=(2, 1))
    m = LQOModel.from_state_dict(sd)
    mc = LQOModel.from_state_dict(truncate_lqo(sd, (k0, k1), perturb, rng))
    x = xscale * rng.standard_normal((6, L))
    res = output_error_bound(m, mc, inputs=x)
    assert np.all(res.measured <= res.per_sample + ROUND)
    nu = float(np.max(np.linalg.norm(x, axis=1)))
    pri = output_error_bound(m, mc, input_norm=nu, length=L)
    assert np.max(res.measured) <= pri.value + ROUND


def test_bound_zero_at_full_order_and_tightens(rng):
    """Nested truncations with geometrically decaying residues: the bound decreases to exactly 0."""
    sd = s4d_sd(rng, H=8, M=(6, 6), decay=0.3)
    for i in range(2):
        sd[f"s4_layers.{i}.kernel.log_dt"] = np.full(8, np.log(0.05), np.float32)
    m = S4DModel.from_state_dict(sd)
    x = rng.standard_normal((40, 30))
    values, measured = [], []
    for k in (1, 2, 3, 4, 5, 6):
        res = output_error_bound(m, S4DModel.from_state_dict(truncate_s4d(sd, (k, k))), inputs=x)
        values.append(res.value)
        measured.append(res.measured_max)
        assert np.all(res.measured <= res.per_sample + ROUND)
    assert values[-1] == 0.0 and measured[-1] == 0.0
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[-2] < 0.5 * values[0]
    # first-order (linearised) form: finite, positive, and scales linearly with the errors
    ev = BoundEvaluator(m, inputs=x)
    mc = S4DModel.from_state_dict(truncate_s4d(sd, (5, 5)))
    terms = [ev.layer_terms(i, mc.ssm_params(i)) for i in range(2)]
    lin = np.max(ev.propagate(terms, linear=True))
    assert np.isfinite(lin) and lin > 0


def test_shallow_layer_weighs_more(rng):
    """The same relative error costs more in layer 0 than in the last layer (more factors after it)."""
    sd = s4d_sd(rng, H=8, M=(6, 6), decay=0.3)
    m = S4DModel.from_state_dict(sd)
    x = rng.standard_normal((20, 30))
    res = output_error_bound(m, S4DModel.from_state_dict(truncate_s4d(sd, (5, 5))), inputs=x)
    assert res.layers[0].weight > res.layers[1].weight > 0


def test_layer_h2_errors_consistent(rng):
    sd = s4d_sd(rng)
    m = S4DModel.from_state_dict(sd)
    mc = S4DModel.from_state_dict(truncate_s4d(sd, (3, 2)))
    errs = layer_h2_errors(m, mc, 25)
    res = output_error_bound(m, mc, inputs=rng.standard_normal((3, 25)))
    for e, lb in zip(errs, res.layers):
        assert lb.h2_error == pytest.approx(e["h2_error"], rel=1e-12)
        assert np.allclose(lb.channel_errors, e["channel_errors"], rtol=1e-12)
    # independent: the finite-horizon h2 error of each channel from the Cauchy closed form
    from mor_lqo.kernels.cauchy import cauchy_norm2

    p0, p1 = m.ssm_params(0), mc.ssm_params(0)
    lam = np.concatenate([p0["Lambda_bar"], p1["Lambda_bar"]], axis=1)
    cb = np.concatenate([p0["C"] * p0["B_bar"], -p1["C"] * p1["B_bar"]], axis=1)
    lf = np.concatenate([lam, lam.conj()], axis=1)
    Bf = np.ones(lf.shape + (1,))
    Cf = np.concatenate([cb, cb.conj()], axis=1)[:, None, :]
    e2 = np.asarray(cauchy_norm2(lf, Bf, Cf, True, horizon=25))
    assert np.allclose(np.sqrt(e2), errs[0]["channel_errors"], rtol=1e-6)


def test_bound_errors(rng):
    sd = s4d_sd(rng)
    m = S4DModel.from_state_dict(sd)
    other = dict(sd)
    other["decoder.bias"] = sd["decoder.bias"] + 1
    with pytest.raises(LayoutError, match="outside the SSM"):
        output_error_bound(m, S4DModel.from_state_dict(other), inputs=np.zeros((1, 5)))
    with pytest.raises(ValueError, match="exactly one"):
        output_error_bound(m, m, inputs=np.zeros((1, 5)), input_norm=1.0)
    with pytest.raises(ValueError, match="length"):
        output_error_bound(m, m, input_norm=1.0)
    with pytest.raises(ShapeError):
        output_error_bound(m, m, input_norm=1.0, length=0)
    with pytest.raises(LayoutError):
        output_error_bound(m, LQOModel.from_state_dict(lqo_sd(rng)), inputs=np.zeros((1, 5)))
    with pytest.raises(TypeError):
        output_error_bound(sd, m, inputs=np.zeros((1, 5)))
    assert np.all(measured_output_error(m, m, rng.standard_normal((3, 5))) == 0)


# ---------------------------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,keep", [("s4d", 4), ("lqo", 48)])
def test_bound_on_bundled_model_and_data(name, keep):
    from mor_lqo.deep import load_bundled_model, load_test_split

    m = load_bundled_model(name)
    x, _ = load_test_split()
    x = x[:150]
    sd = m.state_dict()
    if name == "s4d":
        mc = S4DModel.from_state_dict(truncate_s4d(sd, (keep,) * m.n_layers))
    else:
        mc = LQOModel.from_state_dict(truncate_lqo(sd, (keep,) * m.n_layers))
    res = output_error_bound(m, mc, inputs=x)
    assert res.measured_max > 0
    assert np.all(res.measured <= res.per_sample + ROUND)
    assert 0 < res.tightness <= 1


# ---------------------------------------------------------------------------------------------
# Theorem 2: exact layer injections at the hybrid point (docs/bound.md §4.1)
# ---------------------------------------------------------------------------------------------
def _hybrid_bound(m, mc, x, taylor=False):
    from mor_lqo.deep.bound_hybrid import hybrid_layer, hybrid_propagate
    from mor_lqo.deep.bound_taylor import taylor_propagate

    ev = BoundEvaluator(m, inputs=x)
    reduced = [mc.ssm_params(i) for i in range(m.n_layers)]
    terms = [ev.layer_terms(i, r) for i, r in enumerate(reduced)]
    kern = [s4d_kernels(r, ev.L) if ev.family == "s4d" else None for r in reduced]
    hyb = [hybrid_layer(ev, i, r, k) for i, (r, k) in enumerate(zip(reduced, kern))]
    out = (ev, hyb, hybrid_propagate(ev, terms, hyb, reduced), ev.propagate(terms))
    return out + (taylor_propagate(ev, terms, hyb, reduced, kern),) if taylor else out


@given(seed=st.integers(0, 10_000), family=st.sampled_from(["s4d", "lqo"]), L=st.integers(3, 20),
       k0=st.integers(1, 4), k1=st.integers(1, 3), perturb=st.sampled_from([0.0, 0.1, 1.0]),
       xscale=st.floats(0.01, 5.0))
@settings(max_examples=25, deadline=None)
def test_hybrid_bound_dominates_measured(seed, family, L, k0, k1, perturb, xscale):
    """Theorem 2 alone (not its min with Theorem 1) bounds the measured error; E is the exact injection."""
    rng = np.random.default_rng(seed)
    if family == "s4d":
        sd = s4d_sd(rng, H=4, M=(4, 3))
        m, mc = S4DModel.from_state_dict(sd), S4DModel.from_state_dict(truncate_s4d(sd, (k0, k1), perturb, rng))
    else:
        sd = lqo_sd(rng, H=4, P=(5, 3), R=(2, 1))
        m, mc = LQOModel.from_state_dict(sd), LQOModel.from_state_dict(truncate_lqo(sd, (k0, k1), perturb, rng))
    x = xscale * rng.standard_normal((6, L))
    ev, hyb, hybrid, _, taylor = _hybrid_bound(m, mc, x, taylor=True)
    measured = measured_output_error(m, mc, x)
    assert np.all(measured <= hybrid + ROUND)
    assert np.all(measured <= taylor + ROUND)  # Theorem 3 alone
    # independent route for the injections: the compressed model's layer i on the original input
    _, trace = m.forward(x, return_layer_inputs=True)
    for i, t in enumerate(trace):
        direct = np.linalg.norm(mc.layer(i, t["input"]) - t["output"], axis=-1)
        np.testing.assert_allclose(hyb[i]["E"], direct, rtol=1e-10, atol=1e-12)
    # the first layer's injection is the first layer's true error
    _, trace_c = mc.forward(x, return_layer_inputs=True)
    np.testing.assert_allclose(hyb[0]["E"], np.linalg.norm(trace_c[0]["output"] - trace[0]["output"], axis=-1),
                               rtol=1e-10, atol=1e-12)
    res = output_error_bound(m, mc, inputs=x)
    np.testing.assert_allclose(res.per_sample, np.minimum(np.minimum(res.per_sample_lemma, hybrid), taylor),
                               rtol=1e-12)
    assert np.all(res.per_sample <= res.cap * (1 + 1e-12))


@pytest.mark.parametrize("family", ["s4d", "lqo"])
def test_hybrid_bound_last_layer_only(rng, family):
    """Only the last layer compressed: Theorem 2 is ||W_dec|| mean_k ||u^_k - u_k|| exactly, ≤ Theorem 1."""
    if family == "s4d":
        sd = s4d_sd(rng, H=4, M=(4, 3))
        m, mc = S4DModel.from_state_dict(sd), S4DModel.from_state_dict(truncate_s4d(sd, (4, 1)))
    else:
        sd = lqo_sd(rng, H=4, P=(5, 3), R=(2, 1))
        m, mc = LQOModel.from_state_dict(sd), LQOModel.from_state_dict(truncate_lqo(sd, (5, 1)))
    x = rng.standard_normal((8, 25))
    ev, hyb, hybrid, lemma = _hybrid_bound(m, mc, x)
    _, tr = m.forward(x, return_layer_inputs=True)
    _, trc = mc.forward(x, return_layer_inputs=True)
    exact = ev.dec_norm * np.mean(np.linalg.norm(trc[-1]["output"] - tr[-1]["output"], axis=-1), axis=1)
    np.testing.assert_allclose(hybrid, exact, rtol=1e-9)
    assert np.all(hybrid <= lemma * (1 + 1e-12))
    assert np.all(measured_output_error(m, mc, x) <= hybrid + ROUND)


# ---------------------------------------------------------------------------------------------
# Theorem 3: first-order Taylor models (docs/bound.md §4.2)
# ---------------------------------------------------------------------------------------------
def test_taylor_curvature_constants_on_a_dense_grid():
    from mor_lqo.deep.bound_taylor import GELU_CURVATURE, SIGMOID_CURVATURE

    x = np.linspace(-12, 12, 2_000_001)
    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    assert np.max(np.abs(phi * (2 - x * x))) == pytest.approx(GELU_CURVATURE, rel=1e-9)
    s = 1 / (1 + np.exp(-x))
    assert np.max(np.abs(s * (1 - s) * (1 - 2 * s))) == pytest.approx(SIGMOID_CURVATURE, rel=1e-9)


@given(seed=st.integers(0, 10_000), H=st.integers(2, 16), scale=st.floats(1e-3, 3.0), spread=st.floats(0.0, 3.0))
@settings(max_examples=200, deadline=None)
def test_taylor_layer_norm_step_encloses_the_change(seed, H, scale, spread):
    """LN(z + S + R) - LN(z) - signal has norm <= the remainder bound, for any R with ||R|| <= rho."""
    from mor_lqo.deep.bound_taylor import _layer_norm_step

    rng = np.random.default_rng(seed)
    z = spread * rng.standard_normal((1, 1, H))
    S = scale * rng.standard_normal((1, 1, H))
    R = scale * rng.standard_normal((1, 1, H)) * rng.uniform(0, 1)
    gam, bet = rng.standard_normal(H), rng.standard_normal(H)
    sig, rem = _layer_norm_step(z, S, np.linalg.norm(R, axis=-1), gam, 1e-5)
    true = layer_norm(z + S + R, gam, bet) - layer_norm(z, gam, bet)
    assert np.linalg.norm(true - sig) <= rem[0, 0] * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("family", ["s4d", "lqo"])
def test_taylor_bound_is_first_order_tight(rng, family):
    """All modes kept, readouts perturbed by 1e-4: the bound exceeds the measured error by second-order terms
    only (Theorems 1 and 2 are 1-2 orders of magnitude above it on the same models)."""
    if family == "s4d":
        sd = s4d_sd(rng, H=4, M=(4, 3))
        m, mc = S4DModel.from_state_dict(sd), S4DModel.from_state_dict(truncate_s4d(sd, (4, 3), 1e-4, rng))
    else:
        sd = lqo_sd(rng, H=4, P=(5, 3), R=(2, 1))
        m, mc = LQOModel.from_state_dict(sd), LQOModel.from_state_dict(truncate_lqo(sd, (5, 3), 1e-4, rng))
    x = rng.standard_normal((8, 20))
    _, _, hybrid, lemma, taylor = _hybrid_bound(m, mc, x, taylor=True)
    measured = measured_output_error(m, mc, x)
    assert np.all(measured > 0)
    assert np.all(taylor <= 1.01 * measured)
    assert np.all(np.minimum(hybrid, lemma) >= 2 * taylor)
