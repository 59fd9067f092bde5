"""Orders per block from data (``options={"allocate": "data"}``): the greedy split against brute force, the
budget, the error curves against the fit module, and where the option does not apply."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mor_lqo.deep.compress import CompressionError, compress
from mor_lqo.deep.compress.data_allocation import _greedy, block_error_curve
from mor_lqo.deep.data import load_bundled_model


def test_greedy_split_is_optimal_for_convex_curves_and_respects_the_budget():
    rng = np.random.default_rng(0)
    for _ in range(20):
        curves, cost = {}, {}
        for k in "abc":
            grid = list(range(1, 9))
            dec = np.sort(rng.uniform(0.01, 1.0, len(grid)))[::-1]  # decreasing decrements: convex
            vals = np.concatenate([[1.0], 1.0 - np.cumsum(dec[:-1]) / (np.sum(dec) + 0.1)])
            curves[k] = dict(zip(grid, vals))
            cost[k] = (float(rng.integers(0, 5)), float(rng.integers(1, 4)))
        budget = sum(f + 4 * p for f, p in cost.values())
        q = _greedy(curves, cost, budget)
        assert sum(cost[k][0] + cost[k][1] * q[k] for k in q) <= budget
        best = min(sum(curves[k][v] for k, v in zip("abc", vs)) for vs in itertools.product(range(1, 9), repeat=3)
                   if sum(cost[k][0] + cost[k][1] * v for k, v in zip("abc", vs)) <= budget)
        # greedy on convex curves with integer steps can leave at most one step's gain on the table
        step = max(curves[k][v] - curves[k][v + 1] for k in "abc" for v in range(1, 8))
        assert sum(curves[k][q[k]] for k in q) <= best + step + 1e-12


def test_error_curve_is_relative_and_zero_at_full_order():
    model = load_bundled_model("lqo")
    x = np.random.default_rng(1).standard_normal((6, 40))
    _, trace = model.forward(x, return_layer_inputs=True)
    s = model.ssm_params(0)
    from mor_lqo.adapters.block import HalfModes

    hm = HalfModes(lam=s["Lambda_bar"][:12], B=s["B_bar"][:12], C=s["C"][:, :12], D=np.diag(s["D"]), kappa=1.0,
                   M=s["M"][:, :12, :12])
    curve = block_error_curve(hm, trace[0]["input"], None, 1)
    assert curve[12] == 0.0 and all(0.0 <= v for v in curve.values())
    assert curve[1] > curve[6] > 0.0


def test_allocation_option_is_checked_and_uniform_where_it_does_not_apply():
    model = load_bundled_model("s4d")
    with pytest.raises(CompressionError, match="allocate"):
        compress(model, "h2", order=8, options={"allocate": "bound"}, progress=False, executor="serial")
    x = np.random.default_rng(2).standard_normal((4, 40))
    res = compress(model, "modal", ratio="1/4", inputs=x, options={"allocate": "data"}, progress=False,
                   executor="serial")
    assert {lay["order_after"] for lay in res.layers} == {16}
    assert not any("allocated by data" in n for n in res.notes)
