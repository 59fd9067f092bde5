"""The public entry point :func:`compress` and its :class:`CompressionResult`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .constants import DATA_RIDGE, DEFAULT_METHOD, DEFAULT_RATIO, METHODS, CompressionError
from .options import check_options
from .pipeline import (
    allocate_orders,
    assemble,
    calibrate,
    closing_notes,
    plan_orders,
    reduce_blocks,
    resolve_network,
    write_back,
)


@dataclass
class CompressionResult:
    """Outcome of :func:`compress`.

    Attributes
    ----------
    state_dict : Mapping
        The compressed state dict, same structure, array type and dtypes as the input (a flat numpy
        dict when a numpy model was given). The input is never modified.
    model : S4DModel or LQOModel or None
        The compressed numpy reference model, when the layout is one of the reference families.
    method : str
    layers : list of dict
        Per SSM block: ``name``, ``arch``, ``units``, ``order_before``, ``order_after`` (real order per
        unit, maxima), ``stored_before``/``stored_after``, ``h2_error``/``h2_norm``/``rel_h2_error``
        (infinite horizon, root sum of squares over units; None where undefined),
        ``h2_error_L`` (finite horizon ``length``, if known), ``params_before``/``params_after``,
        ``writeback_error``, ``build`` (constructor hints), ``weight`` (bound method).
    params : dict
        ``{"ssm": {"before", "after"}, "total": {"before", "after"}}`` stored scalars.
    length : int or None
        Sequence length used for finite-horizon quantities.
    timings : dict
        Seconds per phase.
    notes : list of str
        Everything the caller should know (fallbacks, projections).
    allocation : dict or None
        Bound method only: ``orders`` (real order per block), ``chosen`` (the candidate allocation kept),
        ``value`` (its a-posteriori bound, max over the calibration inputs), ``budget``/``spent`` (SSM
        parameters), ``candidates`` (``{name: {"orders", "mean_bound", "max_bound", "mean_error"}}`` for
        "uniform", "first-order bound" and, for MIMO/LQO layers, "data"; ``mean_error`` is the measured mean
        logit error on the calibration inputs) and ``rejected`` (candidates with a smaller bound than the
        chosen one that the error guard rejected).
    """

    state_dict: Mapping
    model: Any
    method: str
    layers: list[dict]
    params: dict
    length: int | None = None
    timings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    allocation: dict | None = None

    @property
    def state_ratio(self) -> float:
        """Total stored state after / before (over all units)."""
        b = sum(lay["stored_before"] * lay["units"] for lay in self.layers)
        a = sum(lay["stored_after"] * lay["units"] for lay in self.layers)
        return a / b if b else 1.0

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no arrays)."""
        def clean(d):
            return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}

        return {"method": self.method, "length": self.length, "params": self.params,
                "state_ratio": self.state_ratio, "layers": [clean(x) for x in self.layers],
                "timings": self.timings, "notes": list(self.notes), "allocation": self.allocation}


def compress(model_or_state_dict, method: str = DEFAULT_METHOD, ratio=None, order=None, budget=None, *,
             arch: str = "auto", inputs=None, length: int | None = None, layer_inputs=None, executor=None,
             progress: bool = True, options: Mapping[str, Any] | None = None, **settings) -> CompressionResult:
    r"""Reduce every SSM block of a Deep SSM and write the reduced systems back into its layout.

    Parameters
    ----------
    model_or_state_dict : S4DModel, LQOModel, Mapping or path
        A numpy reference model, a (flat / nested / prefixed) state dict of numpy arrays or torch
        tensors, or a checkpoint file (loaded safely with :func:`mor_lqo.adapters.load`).
    method : {"modal", "bt", "irka", "tsia", "h2", "bound"}
        See the module docstring.
    ratio : float or str, optional
        Fraction of the SSM state kept per unit (``1/32``, ``"1/32"``, ``"32x"``): real order
        ``round(ratio * order)`` rounded to an even number ≥ 2. For ``"bound"`` the parameter budget is
        the same fraction of the reducible SSM parameters.
    order : int, sequence or mapping, optional
        Real order per unit: one for all blocks, one per block, or ``{block name: order}`` (blocks not
        listed are kept). Must be even (conjugate pairs).
    budget : int, optional
        Maximum number of SSM parameters after compression (``"bound"``: allocated by the bound; other
        methods: the largest uniform ratio that fits).
    arch : str
        Layout (``"auto"`` detects it; see :data:`mor_lqo.adapters.KNOWN`).
    inputs : array_like, optional
        Calibration sequences (batch, L[, d_in]) for the reference models: they set the sequence length
        (finite-horizon h2), the data weights of ``"h2"`` and the bound of ``"bound"``. Labels are never
        used.
    length : int, optional
        Sequence length without calibration data (finite-horizon h2 of ``"h2"`` / ``"modal"``).
    layer_inputs : mapping, optional
        The sequences that entered each SSM block on calibration data, ``{block name: (batch, L, m)}``
        (recorded by :func:`mor_lqo.torch.compress` with forward hooks): any layout. They set L, the data
        weights of per-channel fits (``"h2"``, ``"modal"``) and the data-weighted mode ranking of MIMO
        blocks (:mod:`~mor_lqo.deep.compress.recorded`). Exclusive with ``inputs``.
    executor : None, "process", "thread", "serial", concurrent.futures.Executor or dask Client
        Where the per-block tasks run. None: a process pool over the available cores when the work
        is large, else in-process. A given Executor (or a dask.distributed ``Client``, through its
        executor) is used as it is (not shut down). A pool created here is shut down at the end; on
        an error or interruption its pending tasks are cancelled and its workers terminated.
    progress : bool
        Show a tqdm progress bar (stderr).
    options : mapping, optional
        Method options (``iters`` for the finite-horizon fit, ``tol``/``maxiter`` for the gradient
        reducers, ``rho`` for the data weights, ``data_iters`` (200) and ``data_stall`` ((20, 1e-3): stop once J
        fell by less than 0.1 % over 20 iterations; None: never) for the data-weighted fit of MIMO/LQO
        blocks, ``allocate``: ``"uniform"`` (default) or ``"data"`` — with ``"h2"`` and calibration data
        on a model of MIMO/LQO blocks only, the same parameter budget split over the blocks by
        :mod:`~mor_lqo.deep.compress.data_allocation`), ``error_guard`` (``"bound"``, default True: a
        candidate split is admissible only if its measured calibration error is at most that of uniform
        orders). Checked by :func:`~mor_lqo.deep.compress.options.check_options`: an unknown key or a
        value of the wrong kind raises.
    **settings
        Layout settings not stored in the checkpoint (see :func:`mor_lqo.adapters.extract`).

    Returns
    -------
    CompressionResult

    Raises
    ------
    CompressionError
        Unknown method, invalid or conflicting ratio / order / budget, a budget below the minimum, or an
        unknown or invalid option.
    LayoutError, CheckpointError
        Unknown layout / unreadable checkpoint, or a reduced model that cannot be written back.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if method not in METHODS:
        raise CompressionError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    given = [v is not None for v in (ratio, order, budget)]
    if sum(given) > 1:
        raise CompressionError("give at most one of ratio, order and budget")
    if not any(given):
        ratio = DEFAULT_RATIO
    options = check_options(options)
    net = resolve_network(model_or_state_dict, arch, inputs, length, settings, layer_inputs)
    timings["load"] = time.perf_counter() - t_start
    t0 = time.perf_counter()
    plan = plan_orders(method, ratio, order, budget, net)
    timings["orders"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    weights, scores, block_inputs = calibrate(method, net, float(options.get("rho", DATA_RIDGE)))
    alloc_notes: list[str] = []
    plan = allocate_orders(method, net, plan, block_inputs, options, alloc_notes)
    if (net.x_cal is not None or net.recorded is not None) and method in ("h2", "modal", "bound"):
        timings["calibration"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results, bound_info = reduce_blocks(method, net, plan, weights, scores, executor, progress, options,
                                        block_inputs)
    timings["reduce"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    new_flat, layers, notes = write_back(net, results, bound_info)
    timings["write_back"] = time.perf_counter() - t0
    out = assemble(net, method, new_flat, layers, notes)
    timings["total"] = time.perf_counter() - t_start
    out.timings = timings
    out.notes += alloc_notes + closing_notes(method, net, bound_info, bool(weights))
    if bound_info is not None:
        out.allocation = {k: v for k, v in bound_info.items() if k != "weights"}
    return out
