"""The data-weighted joint fit of MIMO / LQO units (``mor_lqo.deep.compress.output_fit``): the objective against
brute-force simulation by ``LQOSystem.simulate``, the exact gradient against central differences, the data-
balanced start, the fit's guarantees (stable poles, PSD rank-R quadratic readout, never worse than its start)
and its effect on the bundled LQO model."""

from __future__ import annotations

import numpy as np
import pytest

from mor_lqo.adapters.block import HalfModes
from mor_lqo.deep.compress import output_fit as of


def _unit(seed, n=6, m=3, p=4, quad=True, kappa=1.0, rank=2):
    rng = np.random.default_rng(seed)
    lam = np.exp(-rng.uniform(0.05, 0.6, n) + 1j * rng.uniform(-3, 3, n))
    B = rng.standard_normal((n, m)) + 1j * rng.standard_normal((n, m))
    C = rng.standard_normal((p, n)) + 1j * rng.standard_normal((p, n))
    M = None
    if quad:
        U = 0.3 * (rng.standard_normal((p, rank, n)) + 1j * rng.standard_normal((p, rank, n)))
        M = np.einsum("jrp,jrq->jpq", U.conj(), U)
    D = rng.standard_normal((p, m))
    return HalfModes(lam=lam, B=B, C=C, D=D, kappa=kappa, M=M)


def _inputs(seed, N=5, L=14, m=3):
    return np.cumsum(np.random.default_rng(seed).standard_normal((N, L, m)), axis=1) * 0.4


def _brute_force(full, red, U, n_fwd=None, shift=1):
    """Sum of squared output differences by LQOSystem.simulate (forward rows; backward rows on reversed inputs,
    the last reversed step dropped for shift 1); the feed-throughs are equal and cancel."""
    p = full.p if n_fwd is None else n_fwd
    fs, rs = full.system(), red.system()
    err = 0.0
    for u in U:
        d = fs.simulate(u) - rs.simulate(u)
        err += np.sum(d[:, :p] ** 2)
        if p < full.p:
            db = (fs.simulate(u[::-1]) - rs.simulate(u[::-1]))[: len(u) - shift, p:]
            err += np.sum(db**2)
    return err


@pytest.mark.parametrize(("quad", "n_fwd", "kappa"), [(True, None, 1.0), (False, 2, 2.0), (True, 2, 1.0)])
def test_objective_is_the_simulated_output_error(quad, n_fwd, kappa):
    full = _unit(1, quad=quad, kappa=kappa)
    red = _unit(2, n=3, quad=quad, kappa=kappa)
    red = HalfModes(red.lam, red.B, red.C, full.D, kappa, red.M)
    U = _inputs(3)
    prob = of.make_problem(full, U, n_fwd, 1, rho=0.0)
    N, L, _ = U.shape
    tau = N * L * np.mean(U * U)
    assert of.output_error(red, prob) == pytest.approx(_brute_force(full, red, U, n_fwd) / tau, rel=1e-11)


def test_white_noise_regulariser_weight():
    """With rho the problem holds max(4, N/8) seeded white sequences of total weight rho x the data's."""
    full, U = _unit(1), _inputs(3, N=40)
    prob = of.make_problem(full, U, rho=0.05)
    assert prob.inputs[0].shape[0] == 40 + 5 and prob.n_data == 40
    assert np.sum(prob.weight[40:]) == pytest.approx(0.05 * np.sum(prob.weight[:40]), rel=1e-14)
    again = of.make_problem(full, U, rho=0.05)
    np.testing.assert_array_equal(again.inputs[0], prob.inputs[0])


@pytest.mark.parametrize(("quad", "n_fwd", "kappa"), [(True, None, 1.0), (False, 2, 2.0), (True, 2, 1.0)])
def test_gradient_matches_central_differences(quad, n_fwd, kappa):
    full = _unit(4, quad=quad, kappa=kappa)
    red = _unit(5, n=3, quad=quad, kappa=kappa)
    prob = of.make_problem(full, _inputs(6), n_fwd, 1, rho=0.1)
    R = 2 if quad else 0
    shape = (3, 3, 4, R)
    th = of._to_theta(red, R)
    J, g = of.output_error_gradient(th, prob, shape)
    assert J == pytest.approx(of.output_error(of._from_theta(th, red, R), prob), rel=1e-12)
    h = 1e-6 * max(1.0, np.max(np.abs(th)))
    fd = np.array([(of.output_error_gradient(th + h * e, prob, shape)[0]
                    - of.output_error_gradient(th - h * e, prob, shape)[0]) / (2 * h) for e in np.eye(th.size)])
    # central differences: truncation O(h^2 J''') and rounding O(eps J / h) -> ~1e-8 relative to the gradient
    np.testing.assert_allclose(g, fd, rtol=0, atol=2e-7 * np.max(np.abs(g)))


@pytest.mark.parametrize("quad", [False, True])
def test_data_balanced_start_with_all_modes_reproduces_the_unit(quad):
    """At q = n the data-balanced projection is a similarity transform: zero output error (to rounding)."""
    full = _unit(7, quad=quad)
    prob = of.make_problem(full, _inputs(8, N=12), rho=0.0)
    zero = HalfModes(np.array([0.5]), np.zeros((1, 3)), np.zeros((4, 1)), full.D, 1.0,
                     None if not quad else np.zeros((4, 1, 1)))
    scale = of.output_error(zero, prob)
    same = of.data_balanced_start(full, prob, full.n)
    assert same is not None and same.n == full.n
    assert of.output_error(same, prob) <= 1e-18 * scale
    part = of.data_balanced_start(full, prob, 3)
    assert part.n == 3 and np.all(np.abs(part.lam) < 1)
    assert of.output_error(part, prob) < 0.5 * scale


def test_best_readout_is_a_least_squares_minimiser():
    full = _unit(9, quad=True)
    prob = of.make_problem(full, _inputs(10), rho=0.05)
    red = of.best_readout(_unit(11, n=3, quad=True), prob)
    J = of.output_error(red, prob)
    rng = np.random.default_rng(0)
    for _ in range(6):
        dC = 1e-4 * (rng.standard_normal(red.C.shape) + 1j * rng.standard_normal(red.C.shape))
        assert of.output_error(HalfModes(red.lam, red.B, red.C + dC, red.D, red.kappa, red.M), prob) > J


@pytest.mark.parametrize("quad", [False, True])
def test_fit_lowers_the_error_keeps_poles_stable_and_quadratic_readout_psd(quad):
    full = _unit(12, n=8, quad=quad)
    prob = of.make_problem(full, _inputs(13, N=10, L=20))
    start = of.data_balanced_start(full, prob, 3)
    fit, J = of.fit_outputs(full, start, prob, rank=2, iters=60)
    assert J == pytest.approx(of.output_error(fit, prob), rel=1e-12)
    assert J < of.output_error(start, prob)
    assert np.all(np.abs(fit.lam) < 1)
    if quad:
        for Mj in fit.M:
            w = np.linalg.eigvalsh(Mj)
            assert w.min() >= -1e-12 * w.max()
            assert np.sum(w > 1e-10 * w.max()) <= 2



def test_fit_stops_when_progress_stalls_and_returns_its_best_iterate(monkeypatch):
    """With stall=(k, r) the fit stops once the best J has fallen by less than the fraction r over k
    iterations: fewer gradient evaluations than the unstalled run, J the best value evaluated, the rule's
    condition met at the stop."""
    full = _unit(16, n=8, quad=False)
    prob = of.make_problem(full, _inputs(17, N=10, L=20))
    start = of.data_balanced_start(full, prob, 3)
    seen = []
    grad = of.output_error_gradient

    def counted(theta, p, shape):
        J, g = grad(theta, p, shape)
        seen.append(J)
        return J, g

    monkeypatch.setattr(of, "output_error_gradient", counted)
    _, J_free = of.fit_outputs(full, start, prob, iters=150, stall=None)
    n_free = len(seen)
    seen.clear()
    _, J_stall = of.fit_outputs(full, start, prob, iters=150, stall=(3, 0.05))
    assert 0 < len(seen) < n_free
    assert J_stall == pytest.approx(min(seen), rel=1e-12)
    assert J_free <= J_stall < of.output_error(start, prob)

def test_fit_never_returns_worse_than_its_start():
    """A start that is already the full unit (zero error) comes back unchanged in error."""
    full = _unit(14, n=4, quad=True)
    prob = of.make_problem(full, _inputs(15), rho=0.0)
    fit, J = of.fit_outputs(full, full, prob, rank=2, iters=5)
    assert J <= 1e-20 * of.output_error(HalfModes(full.lam, 0 * full.B, full.C, full.D, 1.0, full.M), prob)


@pytest.mark.slow  # ~60 s on an idle core (the h2 candidate of the 64-output LQO blocks dominates)
def test_bundled_lqo_model_is_fitted_to_its_layer_outputs():
    """compress(..., inputs=...) on the bundled LQO model fits every block to its outputs on the recorded layer
    inputs: the relative output error the note reports is the one simulated independently by the numpy model
    (to the note's 3 digits), and the fit lowers it below its start."""
    import re

    from mor_lqo.deep import compress, generate_mnist1d, load_bundled_model

    model = load_bundled_model("lqo")
    x = generate_mnist1d(seed=42)["x"][:24]
    res = compress(model, "h2", ratio="1/8", inputs=x, options={"data_iters": 15, "rho": 0.0}, progress=False,
                   executor="serial")
    _, trace = model.forward(x, return_layer_inputs=True)
    for i in range(model.n_layers):
        note = [n for n in res.notes if n.startswith(f"layers.{i}.ssm.: data-weighted fit")]
        before, after = map(float, re.search(r"data ([\d.e-]+) -> ([\d.e-]+)\)", note[0]).groups())
        U = trace[i]["input"]
        d_u = U * model.ssm_params(i)["D"]
        y, y_red = model.ssm_forward(i, U) - d_u, res.model.ssm_forward(i, U) - d_u
        assert np.linalg.norm(y - y_red) / np.linalg.norm(y) == pytest.approx(after, abs=0.51 * 10 ** (np.floor(np.log10(after)) - 2))
        assert after < before


def test_hermitian_refit_refuses_sizes_that_cannot_fit_in_memory():
    """The Hermitian-form refit needs 48 q^4 bytes: beyond QUAD_REFIT_MAX_MODES it raises before allocating,
    and the finite-horizon readout refit keeps the start's quadratic readout."""
    from mor_lqo.deep.compress.constants import CompressionError
    from mor_lqo.deep.compress.quadratic_fit import QUAD_REFIT_MAX_MODES, fit_quadratic, refit_readout

    q = QUAD_REFIT_MAX_MODES + 1
    full = _unit(20, n=q + 3, m=2, p=2)
    red = _unit(21, n=q, m=2, p=2)
    with pytest.raises(CompressionError, match="GiB"):
        fit_quadratic(full, red, horizon=10)
    out = refit_readout(full, red, horizon=10, rank=2)
    np.testing.assert_array_equal(out.M, red.M)
