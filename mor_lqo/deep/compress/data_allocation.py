r"""Orders per block from data: the split of a parameter budget over MIMO / LQO blocks that minimises the sum
of the blocks' squared relative output errors on their recorded inputs (``options={"allocate": "data"}``).

For every block l and candidate stored count q the error of data-balanced truncation
(:func:`~mor_lqo.deep.compress.output_fit.data_balanced_start`, closed form, no fit) on the block's
recorded inputs gives :math:`e_l(q) = J_l(q) / J_l(0)` (squared output error relative to the block's output
energy). Starting from the smallest candidates, the step with the largest error decrease per added
parameter that still fits the budget is taken until none fits (greedy on the lower convex hull of
:math:`e_l`). The uniform split is a feasible point of the same problem: it is kept unless the greedy
split has a smaller :math:`\sum_l e_l`.

Only blocks whose units are all MIMO take part; a model with per-channel blocks keeps the uniform orders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from ...adapters.block import Block
from .output_fit import data_balanced_start, make_problem, output_error


def _candidates(n: int) -> list[int]:
    """Stored counts tried for a unit of n stored modes: 1 … n in at most 24 steps."""
    step = max(1, n // 24)
    return sorted(set(range(step, n, step)) | {1, n})


def block_error_curve(hm, U: np.ndarray, n_fwd_rows, bwd_shift: int) -> dict[int, float]:
    """``{q: e(q)}``: relative squared output error of data-balanced truncation to q stored modes."""
    prob = make_problem(hm, U, n_fwd_rows, bwd_shift, rho=0.0)
    silent = replace(hm.select([0]), C=0 * hm.C[:, :1], M=None if hm.M is None else 0 * hm.M[:, :1, :1])
    zero = max(output_error(silent, prob), 1e-300)
    curve = {}
    for q in _candidates(hm.n):
        red = hm if q == hm.n else data_balanced_start(hm, prob, q)
        curve[q] = np.inf if red is None else output_error(red, prob) / zero
    return curve


def _greedy(curves: Mapping[str, dict[int, float]], cost: Mapping[str, tuple[float, float]], budget: float
            ) -> dict[str, int]:
    """Greedy split: from the smallest counts, add the step with the best error decrease per parameter."""
    q = {k: min(c) for k, c in curves.items()}
    spent = sum(cost[k][0] + cost[k][1] * q[k] for k in curves)
    while True:
        best, gain = None, 0.0
        for k, c in curves.items():
            for nxt in (v for v in sorted(c) if v > q[k]):
                extra = cost[k][1] * (nxt - q[k])
                if spent + extra > budget + 1e-9:
                    break
                g = (c[q[k]] - c[nxt]) / max(extra, 1e-300)
                if np.isfinite(g) and g > gain:
                    best, gain = (k, nxt), g
        if best is None:
            return q
        k, nxt = best
        spent += cost[k][1] * (nxt - q[k])
        q[k] = nxt


def data_orders(blocks: Sequence[Block], modes: Mapping[str, object], inputs: Mapping[str, np.ndarray],
                uniform: Mapping[str, int], param_models: Mapping[str, tuple[float, float]], notes: list[str]
                ) -> dict[str, int]:
    """Real orders per block (see the module docstring); ``uniform`` is returned where data allocation does
    not apply. ``modes[name]``: the block's single unit's half modes; ``param_models[name]``: (fixed, per
    stored mode) SSM parameters."""
    mimo = [b for b in blocks if b.name in modes and b.name in inputs and b.name in uniform and len(b.units) == 1]
    if len(mimo) < 2 or len(mimo) != len(blocks):
        return dict(uniform)
    curves = {}
    for b in mimo:
        u = b.units[0]
        curves[b.name] = block_error_curve(modes[b.name], inputs[b.name], u.outputs.size, u.bwd_shift)
    budget = sum(param_models[b.name][0] + param_models[b.name][1] * (uniform[b.name] // 2) for b in mimo)
    greedy = _greedy(curves, param_models, budget)

    def total(q: Mapping[str, int]) -> float:
        return sum(np.interp(q[k], sorted(c), [c[v] for v in sorted(c)]) for k, c in curves.items())

    uni = {b.name: uniform[b.name] // 2 for b in mimo}
    if not total(greedy) < total(uni):
        return dict(uniform)
    notes.append("orders allocated by data (least summed relative output error of data-balanced truncation "
                 f"under the uniform split's parameter budget): {[2 * greedy[b.name] for b in mimo]} instead of "
                 f"{[uniform[b.name] for b in mimo]}")
    return {b.name: 2 * greedy[b.name] for b in mimo}


def data_split(blocks: Sequence[Block], inputs: Mapping[str, np.ndarray], uniform: Mapping[str, int],
               param_models: Mapping[str, tuple[float, float]], notes: list[str]) -> dict[str, int]:
    """:func:`data_orders` from the blocks themselves: each single-unit block's stored half modes (dense units
    diagonalised) and the recorded inputs the data-weighted fits use (``inputs[name]`` (B, L, m))."""
    from ...adapters.registry import family
    from .recorded import readout_sequences
    from .tasks import _unit_modes

    modes = {}
    for b in blocks:
        if len(b.units) == 1:
            fam = family(b.arch)
            modes[b.name] = _unit_modes(b.units[0], fam.kappa(b), fam.sign(b), "h2", b.name)
    rec = {k: v[: readout_sequences(v)] for k, v in inputs.items()}
    return data_orders(blocks, modes, rec, uniform, param_models, notes)
