"""The bound method (paper A): per-layer orders chosen under a parameter budget by the output-error bound.

Candidate allocations of the budget — uniform orders, the greedy minimiser of the first-order form of the
bound (docs/bound.md §6) and, for MIMO/LQO layers with recorded inputs, the data allocation — are each
reduced block by block with the data-weighted finite-horizon h2 fit (the method ``"h2"``, which minimises
each layer's injected output error on the calibration trajectories: the leading term of Theorems 2–3), and
the candidate with the smallest a-posteriori bound (Theorems 1–3, mean over the calibration sequences) is
kept. Uniform orders come first, so a tie keeps them.

The bound is loose for errors injected in early layers, so on its own it tends to starve the last layers
(docs/results.md §4). A **guard** therefore admits only candidates whose measured mean logit error on the
calibration sequences is at most the uniform candidate's (:func:`calibration_error`; uniform orders are
always admissible); ``options={"error_guard": False}`` ranks by the bound alone.
"""

from __future__ import annotations

import numpy as np

from ..executor import run_tasks
from ..models import S4DModel
from .budget import _layer_params, _uniform_for_budget, cost_full_ok
from .tasks import _block_tasks, _collect, _ladder_task, _reduce_task


def _first_order_orders(ev, blocks, budget, pm, ex, progress, options, scores) -> tuple[dict[str, int], float]:
    """Greedy minimiser of the first-order bound (``ev.propagate(..., linear=True)``, max over the calibration
    sequences) over per-block orders within ``budget``, on modal / finite-horizon ladders of candidate orders.
    Returns ``(real orders per block, first-order bound value)``."""
    L = ev.L
    siso = isinstance(ev.model, S4DModel)
    # candidate orders: even orders up to 16, then a geometric ladder, capped at 4x the budget's average
    per_total = sum(pm[b.name][1] for b in blocks)
    k_avg = max(1.0, (budget - sum(pm[b.name][0] for b in blocks)) / max(per_total, 1e-300))
    cap = max(8, int(4 * 2 * k_avg))
    cands = {}
    for b in blocks:
        full = b.order
        if siso:
            c = [r for r in range(2, min(full, 17), 2)] + [r for r in (20, 24, 32, 48, 64, 96, 128, 192, 256)
                                                           if r < full]
        else:  # MIMO blocks: every candidate costs a block h2 evaluation, use a coarser ladder
            c = [r for r in (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if r < full]
        c = [r for r in c if r <= cap]
        cands[b.name] = sorted(set(c)) + ([full] if cost_full_ok(pm[b.name], b, budget) else [])
    tasks = []
    for b in blocks:
        tasks.append({"block": b.name, "modes": [u.modes for u in b.units], "length": L,
                      "candidates": cands[b.name], "options": options, "scores": scores.get(b.name)})
    outs = run_tasks(_ladder_task, tasks, ex, progress, desc="mor-lqo bound: candidates")
    ladders = {t["block"]: o["ladder"] for t, o in zip(tasks, outs)}
    terms = {}
    for i, b in enumerate(blocks):
        for c in cands[b.name]:
            terms[(b.name, c)] = ev.layer_terms(i, _layer_params(ladders[b.name][c], siso))

    def cost(name, r):
        f, per = pm[name]
        return f + per * (r // 2)

    cur = {b.name: cands[b.name][0] for b in blocks}
    spent = sum(cost(n, r) for n, r in cur.items())
    def objective(sel):
        return float(np.max(ev.propagate([terms[(bb.name, sel[bb.name])] for bb in blocks], linear=True)))

    value = objective(cur)
    while True:
        best = None
        for b in blocks:
            for c in cands[b.name]:
                if c <= cur[b.name]:
                    continue
                dc = cost(b.name, c) - cost(b.name, cur[b.name])
                if spent + dc > budget + 1e-9:
                    continue
                trial = dict(cur)
                trial[b.name] = c
                v = objective(trial)
                gain = (value - v) / max(dc, 1e-300)
                if v < value and (best is None or gain > best[0]):
                    best = (gain, b.name, c, v, dc)
        if best is None:
            break
        _, name, c, value, dc = best
        cur[name] = c
        spent += dc
    return dict(cur), value


def _bound_candidates(ev, blocks, budget, pm, ex, progress, options, scores, inputs) -> dict[str, dict[str, int]]:
    """Candidate allocations ``{name: real orders per block}``: uniform, first-order bound, data (if any)."""
    cands = {"uniform": _uniform_for_budget(budget, blocks, pm)}
    cands["first-order bound"], _ = _first_order_orders(ev, blocks, budget, pm, ex, progress, options, scores)
    if inputs and not isinstance(ev.model, S4DModel):
        from .data_allocation import data_split

        data = data_split(blocks, inputs, cands["uniform"], pm, [])
        if data != cands["uniform"]:
            cands["data"] = data
    return cands


def _block_output(red, u: np.ndarray, siso: bool) -> np.ndarray:
    """Output (batch, L, H) of a reduced block (``ssm_params`` format) on the input ``u`` (batch, L, H)."""
    from ..bound import s4d_kernels
    from ..bound_hybrid import causal_conv_channels
    from ..bound_taylor import _states

    if siso:
        return causal_conv_channels(u, s4d_kernels(red, u.shape[1]))
    x = _states(np.asarray(red["Lambda_bar"], np.complex128), np.asarray(red["B_bar"], np.complex128), u)
    y = float(red["kappa"]) * (x @ np.asarray(red["C"], np.complex128).T).real
    for j, Mj in enumerate(np.asarray(red["M"], np.complex128)):
        y[..., j] += np.sum(np.conj(x) * (x @ Mj.T), axis=-1).real
    D = np.asarray(red["D"], np.float64)
    return y + (u * D if D.ndim == 1 else u @ D.T)


def calibration_error(ev, params) -> np.ndarray:
    r"""Measured logit error :math:`\|f(x) - \hat f(x)\|` per calibration sequence of the network whose blocks
    are replaced by ``params`` (one ``ssm_params``-format dict per layer), computed without writing it back.

    The bound method's guard: a candidate allocation is admissible only if its mean error is at most the
    uniform candidate's (``options={"error_guard": False}`` turns the guard off).
    """
    ref = ev.model
    u = ref.encode(ev.inputs)
    for i, red in enumerate(params):
        u = ref.post_ssm(i, _block_output(red, u, isinstance(ref, S4DModel)), u)
    return np.linalg.norm(ref.decode(u) - ref.decode(ev._stats[-1]["Y"]), axis=-1)  # Y: original trajectory


def _bound_method(ref, blocks, x_cal, budget, pm, ex, progress, options, scores, weights=None, inputs=None,
                  n_chunks: int = 1):
    """Orders and reduced blocks of the bound method (module docstring): ``(orders, results, info)``."""
    from ..bound import BoundEvaluator
    from .recorded import readout_sequences

    ev = BoundEvaluator(ref, inputs=x_cal)
    siso = isinstance(ref, S4DModel)
    cands = _bound_candidates(ev, blocks, budget, pm, ex, progress, options, scores, inputs)
    weights, inputs = weights or {}, inputs or {}
    pairs = sorted({(b.name, o[b.name]) for o in cands.values() for b in blocks if o[b.name] < b.order})
    tasks, keys = [], []
    for b in blocks:
        rec = inputs.get(b.name)
        rec = None if rec is None else rec[: readout_sequences(rec)]
        for name, r in pairs:
            if name == b.name:
                t = _block_tasks(b, r, "h2", ev.L, weights.get(b.name), n_chunks, options, scores.get(b.name), rec)
                tasks += t
                keys += [(b.name, r)] * len(t)
    outs = run_tasks(_reduce_task, tasks, ex, progress, desc="mor-lqo bound: h2 candidates")
    grouped: dict = {k: ([], []) for k in pairs}
    for t, o, k in zip(tasks, outs, keys):
        grouped[k][0].append(t)
        grouped[k][1].append(o)
    reduced = {k: _collect(ts, os_)[k[0]] for k, (ts, os_) in grouped.items()}
    scored, errors = {}, {}
    for cname, orders in cands.items():
        params = [_layer_params(reduced[(b.name, orders[b.name])]["modes"] if orders[b.name] < b.order
                                else [u.modes for u in b.units], siso) for b in blocks]
        res = ev.evaluate(params, [b.name for b in blocks])
        scored[cname] = (float(np.mean(res.per_sample)), res)
        errors[cname] = float(np.mean(calibration_error(ev, params)))
    guard = bool(options.get("error_guard", True))
    admissible = [k for k in scored if not guard or errors[k] <= errors["uniform"] * (1.0 + 1e-9)]
    best = min(admissible, key=lambda k: scored[k][0])  # dicts keep insertion order: a tie keeps "uniform"
    rejected = [k for k in scored if k not in admissible and scored[k][0] < scored[best][0]]
    orders, res_bound = cands[best], scored[best][1]
    results = {b.name: reduced[(b.name, orders[b.name])] for b in blocks if orders[b.name] < b.order}
    info = {"orders": orders, "value": res_bound.value, "chosen": best, "budget": budget,
            "spent": sum(pm[b.name][0] + pm[b.name][1] * (orders[b.name] // 2) for b in blocks),
            "weights": {b.name: lb.weight for b, lb in zip(blocks, res_bound.layers)},
            "rejected": rejected,
            "candidates": {k: {"orders": [cands[k][b.name] for b in blocks], "mean_bound": v[0],
                               "max_bound": v[1].value, "mean_error": errors[k]} for k, v in scored.items()}}
    return orders, results, info

