"""The steps of :func:`~mor_lqo.deep.compress.compress`, each a small function over a resolved network.

``resolve_network`` (input, blocks, reference model, calibration data) → ``plan_orders`` (orders or a
budget per block) → ``calibrate`` (data weights / mode scores) → ``reduce_blocks`` (the per-block tasks on
an executor) → ``write_back`` (into the layout's parametrisation, verified by re-extraction) →
``assemble`` (the :class:`~mor_lqo.deep.compress.CompressionResult`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...adapters._common import to_numpy
from ...adapters.block import Block
from ...adapters.io import _View
from ...adapters.registry import extract as _extract_flat
from ...adapters.registry import family
from ...errors import LayoutError
from ..executor import executor_workers, run_tasks, shutdown_executor
from ..models import LQOModel, S4DModel
from .allocation import _bound_method
from .budget import _check_budget, _even_order, _n, _orders_from, _param_model, _uniform_for_budget, parse_ratio
from .constants import WRITEBACK_RTOL, CompressionError
from .recorded import check_layer_inputs, readout_sequences, recorded_calibration
from .tasks import _block_tasks, _collect, _reduce_task, _resolve_executor, _work
from .verify import _flat_input, _like, _reference_model, _verify_block
from .weights import lag_metric, lqo_mode_scores


@dataclass(frozen=True)
class Network:
    """The resolved input of a compression: the state dict, its blocks and the calibration data.

    ``orig`` is the user's (possibly nested) state dict or None for a numpy model, ``flat`` the flat
    arrays, ``flat64`` the same in float64/complex128, ``cls`` the reference-model class, ``lti`` the
    reducible blocks, ``ref`` the numpy reference model (or None), ``x_cal`` the prepared calibration
    inputs (or None), ``length`` the sequence length of the finite-horizon quantities (or None) and
    ``recorded`` the recorded inputs of the blocks (``{block name: (B, L, m)}``, or None).
    """

    orig: Any
    flat: dict
    flat64: dict
    cls: Any
    blocks: list[Block]
    lti: list[Block]
    ref: Any
    x_cal: np.ndarray | None
    length: int | None
    recorded: dict | None = None


@dataclass(frozen=True)
class OrderPlan:
    """Orders per block name (None for the bound method, which allocates them), the parameter budget
    and the per-block parameter models (``(fixed, per stored mode)``) where a budget is involved."""

    orders: dict[str, int] | None
    budget: float | None
    param_models: dict[str, tuple[float, float]] | None


def resolve_network(model_or_state_dict, arch: str, inputs, length, settings, layer_inputs=None) -> Network:
    """Load the input, extract its blocks and prepare the calibration inputs and sequence length."""
    orig, flat, cls, _src = _flat_input(model_or_state_dict)
    flat64 = {k: (v.astype(np.complex128) if np.iscomplexobj(v) else np.asarray(v, np.float64))
              for k, v in flat.items()}
    blocks = _extract_flat(flat, arch, **settings)
    lti = [b for b in blocks if b.lti]
    if not lti:
        raise LayoutError("no LTI SSM block to reduce (input-dependent layouts such as Mamba are not supported "
                          "by compress; use mor_lqo.adapters.reduce_state_dict with method='index')")
    ref = _reference_model(flat, blocks, cls)
    x_cal = None
    recorded = None
    if layer_inputs is not None:
        if inputs is not None:
            raise CompressionError("give calibration inputs or recorded layer_inputs, not both")
        recorded, length = check_layer_inputs(layer_inputs, lti, length)
    if inputs is not None:
        if ref is None:
            raise CompressionError("calibration inputs need a reference model layout (s4d or lqo)")
        x_cal = ref._prepare_input(inputs)
        if length is not None and int(length) != x_cal.shape[1]:
            raise CompressionError(f"length={length} differs from the inputs' length {x_cal.shape[1]}")
        length = int(x_cal.shape[1])
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
            raise CompressionError(f"length must be a positive integer, got {length!r}")
        length = int(length)
    return Network(orig, flat, flat64, cls, blocks, lti, ref, x_cal, length, recorded)


def plan_orders(method: str, ratio, order, budget, net: Network) -> OrderPlan:
    """Orders per block from ``order`` / ``ratio`` / ``budget`` (exactly one is given)."""
    lti = net.lti
    if method == "bound":
        if net.ref is None:
            raise CompressionError("method='bound' needs a reference model (s4d or lqo layout)")
        if net.x_cal is None:
            raise CompressionError("method='bound' needs calibration inputs (inputs=...) to evaluate the bound")
        if order is not None:
            raise CompressionError("method='bound' allocates the orders itself: give ratio or budget, not order")
    if order is not None:
        return OrderPlan(_orders_from(order, lti), None, None)
    if ratio is not None and method != "bound":
        fr = parse_ratio(ratio)
        return OrderPlan({b.name: _even_order(float(fr) * b.order, b.order) for b in lti}, None, None)
    pm = {b.name: _param_model(b, net.flat) for b in lti}
    if budget is None:  # bound with a ratio: the same fraction of the reducible parameters
        fr = parse_ratio(ratio)
        budget = sum(f + float(fr) * p * b.stored for b in lti for f, p in [pm[b.name]])
    budget = _check_budget(budget, lti, pm)
    orders = _uniform_for_budget(budget, lti, pm) if method != "bound" else None
    return OrderPlan(orders, budget, pm)


def calibrate(method: str, net: Network, rho: float) -> tuple[dict[str, np.ndarray], dict[str, list], dict | None]:
    """Data weights (lag covariances, per-channel S4D layouts), mode scores (MIMO/LQO blocks) and the block
    inputs for the data-weighted MIMO fits (``{block name: (B, L, m)}`` or None), from the calibration inputs
    recorded at every block of the original network."""
    weights: dict[str, np.ndarray] = {}
    scores: dict[str, list] = {}
    if net.recorded is not None and method in ("h2", "modal"):
        _check_recorded_memory(net)
        return (*recorded_calibration(net.lti, net.recorded, method, rho), net.recorded)
    if net.x_cal is None or method not in ("h2", "modal", "bound"):
        return weights, scores, None
    inputs = {}
    _check_calibration_memory(net, method)
    _, trace = net.ref.forward(net.x_cal, return_layer_inputs=True)
    for i, (b, tr) in enumerate(zip(net.blocks, trace)):
        if isinstance(net.ref, S4DModel):
            weights[b.name] = lag_metric(tr["input"], rho)
        elif isinstance(net.ref, LQOModel):
            scores[b.name] = [lqo_mode_scores(net.ref, i, tr["input"])]
            inputs[b.name] = tr["input"]
    return weights, scores, inputs or None


def allocate_orders(method: str, net: Network, plan: OrderPlan, inputs: dict | None, options: dict,
                    notes: list[str]) -> OrderPlan:
    """``options["allocate"] == "data"``: orders of the MIMO/LQO blocks re-split under the same parameter
    budget by :func:`~mor_lqo.deep.compress.data_allocation.data_orders`; otherwise ``plan`` unchanged."""
    how = options.get("allocate", "uniform")
    if how not in ("uniform", "data"):
        raise CompressionError(f"options['allocate'] must be 'uniform' or 'data', got {how!r}")
    if how == "uniform" or method != "h2" or not inputs or plan.orders is None:
        return plan
    from .data_allocation import data_split

    pm = plan.param_models or {b.name: _param_model(b, net.flat) for b in net.lti}
    orders = data_split(net.lti, inputs, plan.orders, pm, notes)
    return OrderPlan(orders, plan.budget, plan.param_models)


def _check_calibration_memory(net: Network, method: str) -> None:
    """Refuse, before allocating, a calibration pass that cannot fit in memory.

    The recorded forward pass keeps, per layer, the block input, SSM output and layer output
    (batch, L, H) in float64 plus FFT temporaries; the structured per-channel data weights hold about
    2 (batch + 3) numbers per channel and lag.
    """
    from ..._files import available_memory, format_bytes

    B, L = int(net.x_cal.shape[0]), int(net.x_cal.shape[1])
    H = max(b.m for b in net.lti)
    forward = 8 * B * L * H * (3 * len(net.blocks) + 6)
    weights = max(2 * 8 * len(b.units) * L * (B + 3) for b in net.lti) if isinstance(net.ref, S4DModel) else 0
    avail = available_memory()
    if avail is not None and forward + weights > avail // 2:
        raise MemoryError(f"calibration with {B} sequences of length {L} needs about "
                          f"{format_bytes(forward + weights)} (forward pass {format_bytes(forward)}, data weights "
                          f"{format_bytes(weights)}), more than half of the {format_bytes(avail)} available; use "
                          "fewer or shorter calibration sequences")


def _check_recorded_memory(net: Network) -> None:
    """Refuse per-channel data weights (about 2 (batch + 3) float64 numbers per channel and lag) that cannot fit."""
    from ..._files import available_memory, format_bytes

    L = int(net.length)
    need = max((2 * 8 * len(b.units) * L * (net.recorded[b.name].shape[0] + 3) for b in net.lti
                if b.name in net.recorded), default=0)
    avail = available_memory()
    if avail is not None and need > avail // 2:
        raise MemoryError(f"data weights over L = {L} lags need about {format_bytes(need)}, more than half of the "
                          f"{format_bytes(avail)} available; record shorter calibration sequences")


def reduce_blocks(method: str, net: Network, plan: OrderPlan, weights, scores, executor, progress: bool,
                  options: dict, inputs: dict | None = None) -> tuple[dict[str, dict], dict | None]:
    """Run the per-block reductions (``{block name: result}``, bound information or None).

    An executor created here is shut down afterwards; on an error or interruption its pending tasks
    are cancelled and its worker processes terminated.
    """
    ex, owned = _resolve_executor(executor, _work(net.lti, method, net.length))
    n_chunks = executor_workers(ex)
    failed = True
    try:
        if method == "bound":
            orders, results, bound_info = _bound_method(net.ref, net.lti, net.x_cal, plan.budget,
                                                        plan.param_models, ex, progress, options, scores,
                                                        weights, inputs, n_chunks)
            failed = False
            return results, bound_info
        tasks = []
        for b in net.lti:
            r = plan.orders.get(b.name)
            if r is not None:
                rec = None if inputs is None else inputs.get(b.name)
                tasks += _block_tasks(b, r, method, net.length, weights.get(b.name), n_chunks, options,
                                      scores.get(b.name), None if rec is None else rec[:readout_sequences(rec)])
        outs = run_tasks(_reduce_task, tasks, ex, progress, desc=f"mor-lqo {method}")
        failed = False
        return _collect(tasks, outs), None
    finally:
        if owned and ex is not None:
            shutdown_executor(ex, abort=failed)


def _kept_entry(b: Block, entry: dict, length: int | None) -> dict:
    entry.update(order_after=b.order, stored_after=b.stored, params_after=entry["params_before"],
                 h2_error=0.0, h2_norm=None, rel_h2_error=0.0, h2_error_L=0.0 if length else None,
                 writeback_error=0.0, build={})
    return entry


def _write_block(b: Block, res: dict, net: Network, new_flat: dict) -> tuple[dict, float]:
    """Write one block's reduced modes into ``new_flat`` (verified); returns (build hints, mismatch)."""
    arrays, build = family(b.arch).write_back(b, res["modes"], None)
    werr = _verify_block(b, net.flat64, arrays, res["modes"])
    if not np.isfinite(werr) or werr > WRITEBACK_RTOL:
        raise LayoutError(f"{b.name}: write-back verification failed (relative impulse-response mismatch "
                          f"{werr:.3g} > {WRITEBACK_RTOL:g})")
    for k, v in arrays.items():
        if k not in net.flat:
            raise LayoutError(f"internal: write-back produced unknown key {k!r}")
        new_flat[k] = _like(new_flat[k], v)
    return build, werr


def _error_fields(res: dict) -> dict:
    """h2 errors and norms of a block (root sums of squares over its units), infinite and finite horizon."""
    e, nrm = res["h2_error"], res["h2_norm"]
    have = np.all(np.isfinite(e))
    out = {"h2_error": float(np.sqrt(np.sum(e**2))) if have else None,
           "h2_norm": float(np.sqrt(np.sum(nrm**2))) if have else None}
    out["rel_h2_error"] = out["h2_error"] / out["h2_norm"] if have and out["h2_norm"] else None
    if res.get("h2_error_L") is not None:
        eL, nL = res["h2_error_L"], res["h2_norm_L"]
        out["h2_error_L"] = float(np.sqrt(np.sum(eL**2)))
        out["rel_h2_error_L"] = float(np.sqrt(np.sum(eL**2) / max(np.sum(nL**2), 1e-300)))
    return out


def write_back(net: Network, results: dict, bound_info: dict | None) -> tuple[dict, list[dict], list[str]]:
    """Write every reduced block back: (new flat state dict, per-layer entries, notes)."""
    new_flat = dict(_View(net.orig).flat) if net.orig is not None else dict(net.flat)
    layers, notes = [], []
    for b in net.lti:
        res = results.get(b.name)
        entry = {"name": b.name, "arch": b.arch, "units": len(b.units), "order_before": b.order,
                 "stored_before": b.stored, "params_before": _n(net.flat[k] for k in b.keys)}
        if res is None:
            layers.append(_kept_entry(b, entry, net.length))
            continue
        build, werr = _write_block(b, res, net, new_flat)
        modes = res["modes"]
        entry.update(order_after=max(hm.real_order for hm in modes), stored_after=max(hm.n for hm in modes),
                     params_after=_n(new_flat[k] for k in b.keys))
        errors = _error_fields(res)
        entry.update(h2_error=errors.pop("h2_error"), h2_norm=errors.pop("h2_norm"), writeback_error=werr,
                     build=build)
        entry.update(errors)
        if bound_info is not None and b.name in bound_info.get("weights", {}):
            entry["weight"] = bound_info["weights"][b.name]
        notes += [f"{b.name}: {n}" for n in res.get("notes", [])]
        layers.append(entry)
    return new_flat, layers, notes


def assemble(net: Network, method: str, new_flat: dict, layers: list[dict], notes: list[str]):
    """The :class:`CompressionResult`: the state dict in the input's structure, the reduced reference
    model and the parameter counts."""
    from .api import CompressionResult

    view_out = _View(net.orig).rebuild(new_flat) if net.orig is not None else new_flat
    new_np = {k: np.asarray(to_numpy(v)) for k, v in new_flat.items()}
    model = _reference_model(new_np, net.blocks, net.cls) if net.ref is not None else None
    params = {"ssm": {"before": sum(x["params_before"] for x in layers),
                      "after": sum(x["params_after"] for x in layers)},
              "total": {"before": _n(net.flat.values()), "after": _n(new_np.values())}}
    return CompressionResult(state_dict=view_out, model=model, method=method, layers=layers, params=params,
                             length=net.length, notes=notes)


def closing_notes(method: str, net: Network, bound_info: dict | None, weighted: bool) -> list[str]:
    """Notes on the bound allocation and on the horizon the per-channel fits controlled."""
    notes = []
    if bound_info is not None:
        cands = "; ".join(f"{k} {v['orders']}: {v['mean_bound']:.4g}" for k, v in bound_info["candidates"].items())
        notes.append(f"bound allocation: orders {bound_info['orders']} ({bound_info['chosen']}), bound "
                     f"{bound_info['value']:.4g}; mean bound on the calibration inputs per candidate: {cands}")
        cand, chosen = bound_info["candidates"], bound_info["chosen"]
        if chosen != "uniform":
            ratio = cand[chosen]["mean_bound"] / max(cand["uniform"]["mean_bound"], 1e-300)
            notes.append(f"the bound preferred the {chosen} split to uniform orders (mean bound {ratio:.3g}x the "
                         f"uniform one; mean calibration error {cand[chosen]['mean_error']:.4g} vs "
                         f"{cand['uniform']['mean_error']:.4g}); compare with method='h2' on held-out data")
        for k in bound_info.get("rejected", []):
            notes.append(f"the {k} split {cand[k]['orders']} had a smaller bound ({cand[k]['mean_bound']:.4g}) but "
                         f"a larger measured error on the calibration inputs ({cand[k]['mean_error']:.4g} vs "
                         f"{cand['uniform']['mean_error']:.4g} for uniform orders), so the guard rejected it: the "
                         "bound is loose for errors injected in early layers and tends to starve the last layers "
                         "(options={'error_guard': False} ranks by the bound alone)")
    if net.length is not None and method in ("h2", "bound") and any(len(b.units) > 1 for b in net.lti):
        notes.append(f"per-channel blocks were fitted in the finite-horizon h2 norm over the first {net.length} "
                     "lags" + (" (weighted by the calibration inputs)" if weighted else "")
                     + "; the kernels beyond that horizon are not controlled (h2_error is the infinite-horizon "
                       "error, h2_error_L the finite-horizon one)")
    return notes
