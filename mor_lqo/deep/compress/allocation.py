"""The bound method (paper A): per-layer orders chosen under a parameter budget by the first-order form of
the output-error bound, then the layer-weighted joint refinement."""

from __future__ import annotations

import warnings

import numpy as np

from ...adapters.registry import family
from ..executor import run_tasks
from ..models import S4DModel
from .budget import _layer_params, cost_full_ok
from .quadratic_fit import _rom_to_modes, refit_readout
from .tasks import _block_tasks, _collect, _ladder_task, _reduce_task
from .unit_modes import _siso_kernels, _unit_errors


def _bound_method(ref, blocks, x_cal, budget, pm, ex, progress, options, scores):
    from ..bound import BoundEvaluator

    ev = BoundEvaluator(ref, inputs=x_cal)
    L = ev.L
    siso = isinstance(ref, S4DModel)
    # candidate orders: all even orders up to 16, then a geometric ladder
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
    orders = dict(cur)
    res_bound = ev.evaluate(None, [b.name for b in blocks], terms=[terms[(b.name, orders[b.name])] for b in blocks])
    weights = {b.name: lb.weight for b, lb in zip(blocks, res_bound.layers)}  # first-order layer weights
    # refinement at the chosen orders
    results = {}
    if siso:
        rtasks = []
        for b in blocks:
            rtasks += _block_tasks(b, orders[b.name], "h2", L, None, 1, options)
        outs = run_tasks(_reduce_task, rtasks, ex, progress, desc="mor-lqo bound: refine")
        results = _collect(rtasks, outs)
        # never worse than the ladder candidate (finite-horizon error per channel)
        for b in blocks:
            res = results[b.name]
            lad = ladders[b.name][orders[b.name]]
            e_lad = np.linalg.norm(_siso_kernels([u.modes for u in b.units], L) - _siso_kernels(lad, L), axis=1)
            worse = res["h2_error_L"] > e_lad
            if np.any(worse):
                res["modes"] = [lad[j] if w else m_ for j, (w, m_) in enumerate(zip(worse, res["modes"]))]
                errs = _unit_errors([u.modes for u in b.units], res["modes"], [u.system.dt for u in b.units], L)
                res.update(errs)
    else:
        results = _refine_joint(blocks, orders, ladders, weights, L, options)
    info = {"orders": orders, "value": res_bound.value, "linearised": value, "weights": weights,
            "budget": budget, "spent": spent}
    return orders, results, info


def _refine_joint(blocks, orders, ladders, weights, L, options) -> dict:
    """Joint L-BFGS refinement of MIMO/LQO blocks on sum_l w_l J_l (h2_gradient_joint)."""
    from ...reduction.gradient import H2Objective, h2_gradient_joint

    objs, inits, idx = [], [], []
    for b in blocks:
        r = orders[b.name]
        (u,) = b.units
        if r >= b.order:
            continue
        hm0 = refit_readout(u.modes, ladders[b.name][r][0], L, b.meta.get("R"))
        if _unit_errors([u.modes], [hm0], [u.system.dt], L)["h2_error_L"][0] <= _unit_errors(
                [u.modes], [ladders[b.name][r][0]], [u.system.dt], L)["h2_error_L"][0]:
            ladders[b.name][r] = [hm0]
        hm0 = ladders[b.name][r][0]
        w = max(float(weights.get(b.name, 1.0)), 1e-12)
        objs.append(H2Objective(u.system, r, weight=w))
        inits.append(hm0.system(dt=u.system.dt))
        idx.append(b)
    results = {}
    if objs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            roms, _info = h2_gradient_joint(objs, inits, tol=options.get("tol", 1e-7),
                                            maxiter=options.get("maxiter", 40))
    else:
        roms = []
    for b in blocks:
        (u,) = b.units
        fam = family(b.arch)
        notes: list[str] = []
        if b in idx:
            rom = roms[idx.index(b)]
            hm = _rom_to_modes(rom, u.modes, fam.kappa(b), fam.sign(b), b.meta.get("R"), L, notes)
            # never worse than the modal start (finite-horizon error)
            e_new = _unit_errors([u.modes], [hm], [u.system.dt], L)
            start = ladders[b.name][orders[b.name]][0]
            e_old = _unit_errors([u.modes], [start], [u.system.dt], L)
            if not e_new["h2_error_L"][0] <= e_old["h2_error_L"][0]:
                hm, errs = start, e_old
                notes.append("joint refinement did not lower the finite-horizon error; modal candidate kept")
            else:
                errs = e_new
        else:
            hm = u.modes
            errs = _unit_errors([u.modes], [hm], [u.system.dt], L)
        results[b.name] = {"modes": [hm], "notes": notes, **errs}
    return results
