"""Picklable per-block tasks (reduction of a chunk of units by one method, candidate ladders of the bound
method) and their executor plumbing."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import replace

import numpy as np

from ...adapters.block import Block, HalfModes
from ...adapters.reduce import check_modal_ranking, modal_reducer, within_slots
from ...adapters.registry import family
from ...errors import MorLqoError, OrderError
from ..executor import as_executor, available_cores, make_executor
from .constants import DATA_FIT_ITERS, DATA_FIT_STALL, DATA_RIDGE
from .finite_horizon import fit_finite_horizon
from .quadratic_fit import _rom_to_modes, refit_readout
from .unit_modes import (
    _error_L,
    _is_siso_batch,
    _select_by_score,
    _siso_arrays,
    _siso_kernels,
    _unit_errors,
    join_modes,
    marginal_modes,
)
from .weights import _weighted_mode_scores


def _single_blas():
    """Single-threaded BLAS inside a task (threadpoolctl, if installed): the work is many small batched
    products, and the tasks themselves run in parallel."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _reduce_task(task: dict) -> dict:
    """Worker entry point: reduce the units of one chunk (picklable, top level)."""
    with _single_blas():
        return _reduce_task_impl(task)


def _reduce_task_impl(task: dict) -> dict:
    method, r = task["method"], int(task["r"])
    modes: list[HalfModes] = task["modes"]
    dts: list[float] = task["dt"]
    kappa, sign, rank = task["kappa"], task["sign"], task.get("rank")
    L = task.get("length")
    W = task.get("weights")
    opts = task.get("options") or {}
    notes: list[str] = []
    out: list[HalfModes | None] = [None] * len(modes)
    todo = [i for i, hm in enumerate(modes) if r < hm.real_order]
    for i, hm in enumerate(modes):
        if out[i] is None and i not in todo:
            out[i] = hm
    t0 = time.perf_counter()
    if todo:
        sub = [modes[i] for i in todo]
        if r % 2:
            raise OrderError(f"conjugate-pair layouts need even real orders, got {r}")
        scores = task.get("scores")
        if method == "modal":
            if scores is not None:
                red = [_select_by_score(hm, r, scores[i]) for hm, i in zip(sub, todo)]
            elif W is not None and _is_siso_batch(sub):
                red = [_select_by_score(hm, r, sc) for hm, sc in zip(sub, _weighted_mode_scores(sub, W[todo], L))]
            else:
                red = [modal_reducer(hm, r, L) for hm in sub]
        elif method in ("h2", "bound") and not _is_siso_batch(sub):
            rec = task.get("inputs")
            red = [_mimo_h2(hm, r, dts[i], None if scores is None else scores[i], kappa, sign, rank, L, opts, notes,
                            None if rec is None else rec[i]) for hm, i in zip(sub, todo)]
        elif method in ("h2", "bound") and _is_siso_batch(sub):
            lam, B, C = _siso_arrays(sub)
            if L is not None:
                t = _siso_kernels(sub, L)
                Wt = None if W is None else W[todo]
                sc = (_weighted_mode_scores(sub, Wt, L) if Wt is not None
                      else _weighted_mode_scores(sub, np.broadcast_to(np.eye(L), (len(sub), L, L)), L))
                mu, Ch, _ = fit_finite_horizon(t, r // 2, W=Wt, init=lam, init_score=sc, kappa=sub[0].kappa,
                                               iters=opts.get("iters", 60))
                red = [HalfModes(lam=mu[j], B=np.ones((r // 2, 1)), C=Ch[j][None, :], D=hm.D, kappa=hm.kappa)
                       for j, hm in enumerate(sub)]
            else:
                from ...reduction.gradient import h2_gradient_batch

                res = h2_gradient_batch(lam, B[:, :, None], C[:, None, :], r, dt=dts[todo[0]] or 1.0,
                                        scale=sub[0].kappa, tol=opts.get("tol", 1e-7),
                                        maxiter=opts.get("maxiter", 100))
                red = [HalfModes(lam=res.lam[j], B=res.B[j], C=res.C[j], D=hm.D, kappa=hm.kappa)
                       for j, hm in enumerate(sub)]
        else:
            import mor_lqo

            fn = {"bt": mor_lqo.balanced_truncation, "irka": mor_lqo.irka, "tsia": mor_lqo.tsia,
                  "h2": mor_lqo.h2_gradient, "bound": mor_lqo.h2_gradient}[method]
            red = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for j, hm in enumerate(sub):
                    where = f"{task.get('block', '')} unit {int(task['chunk'][todo[j]])}" if "chunk" in task else ""
                    dense = (task.get("dense") or [None] * len(modes))[todo[j]]
                    red.append(_reduce_unit(fn, method, hm, dts[todo[j]], r, (kappa, sign, rank, L), notes, where,
                                            dense))
        for i, hm in zip(todo, red):
            out[i] = hm
    errs = _unit_errors(modes, out, dts, L)
    _dense_unit_errors(errs, task.get("dense"), modes, out, dts, L)
    return {"modes": out, "notes": sorted(set(notes)), "seconds": time.perf_counter() - t0, **errs}


def _dense_unit_errors(errs: dict, dense, full, red, dts, L) -> None:
    """Errors of dense units (S4 DPLR) against their original realisation, in place: the diagonalised modes of
    a non-normal A sum kernels with heavy cancellation, so errors measured on them lose digits."""
    if not dense or all(d is None for d in dense):
        return
    from ...norms import h2_error, h2_norm

    for i, sys_ in enumerate(dense):
        if sys_ is None or red[i] is full[i]:
            continue
        rom = red[i].system(dt=dts[i])
        try:
            errs["h2_error"][i], errs["h2_norm"][i] = h2_error(sys_, rom), h2_norm(sys_)
        except MorLqoError:
            errs["h2_error"][i] = errs["h2_norm"][i] = np.nan
        if L is not None and errs.get("h2_error_L") is not None:
            hf = np.real(sys_.impulse_response(L))
            errs["h2_error_L"][i] = np.linalg.norm(hf - np.real(rom.impulse_response(L)))
            errs["h2_norm_L"][i] = np.linalg.norm(hf)


def _reduce_unit(fn, method: str, hm, dt: float, r: int, layout: tuple, notes: list[str], where: str,
                 dense=None):
    """Reduce one unit with a dense reducer; degenerate units are handled here, not by aborting the model.

    A unit whose Hankel singular values vanish beyond a rank below ``r`` (a dead channel with C = 0 or
    B = 0 has none at all) needs fewer than ``r`` states: it is reduced by exact modal truncation and a
    note names it. Any other reducer error is re-raised with the block and unit named.
    """
    kappa, sign, rank, L = layout
    marg = marginal_modes(hm)
    if marg.size and hm.M is None and dense is None:  # modes on the unit circle: kept exactly, the stable rest reduced
        rest = hm.select(np.setdiff1d(np.arange(hm.n), marg))
        r_rest = r - 2 * marg.size
        if r_rest < 2 or rest.n == 0:
            raise OrderError(f"{where}: {marg.size} mode(s) on the unit circle need order {2 * marg.size + 2} "
                             f"or more (asked {r}); they cannot be reduced in the h2 norm")
        notes.append(f"{where}: {marg.size} mode(s) on the unit circle kept exactly; the stable part reduced "
                     f"to order {r_rest}")
        return join_modes(hm.select(marg), _reduce_unit(fn, method, rest, dt, r_rest, layout, notes, where))
    kw = {"multistart": False} if method in ("h2", "bound") else {}
    system = dense if dense is not None else hm.system(dt=dt)  # dense units: reduce the original realisation

    def reduce_to(q: int) -> HalfModes:
        return _rom_to_modes(fn(system, q, **kw), hm, kappa, sign, rank, L, notes)

    try:
        return within_slots(reduce_to, r, r // 2, notes)
    except OrderError:
        notes.append(f"{where}: fewer than {r} significant states (zero Hankel singular values); exact modal "
                     "truncation used")
        return modal_reducer(hm, r, L)
    except MorLqoError as exc:
        raise type(exc)(f"{where}: {exc}") from exc


# With recorded inputs, quadratic units above this real order skip the infinite-horizon h2-gradient candidate
# (dense LQO Gramians of the full order per evaluation; the data fit starts from data-balanced truncation).
H2_CANDIDATE_MAX_QUADRATIC_ORDER = 256


def _mimo_h2(hm: HalfModes, r: int, dt: float, score, kappa, sign, rank, L, opts, notes, recorded=None
             ) -> HalfModes:
    """MIMO/LQO block: h2_gradient from the (data-ranked) modal start with finite-horizon h2-optimal
    readouts (when L is known); the better of start and result in the finite-horizon error.

    With recorded inputs ``(U, forward rows, bwd_shift)`` the unit is fitted to its own outputs on the data
    (:func:`_data_fit`). Modes on or outside the unit circle (kept by the reducers) stay exactly; the
    stable rest of a linear unit is fitted to its own outputs (they add up), a quadratic unit with such
    modes keeps the h2 result.
    """
    start = _select_by_score(hm, r, score) if score is not None else modal_reducer(hm, r, L)
    if recorded is not None and hm.M is not None and hm.real_order > H2_CANDIDATE_MAX_QUADRATIC_ORDER:
        notes.append(f"h2-gradient candidate skipped for a quadratic unit of order {hm.real_order} (> "
                     f"{H2_CANDIDATE_MAX_QUADRATIC_ORDER}: its dense LQO h2 gradient is too slow); data fit only")
        red = refit_readout(hm, start, L, rank) if L is not None else start
    else:
        red = _mimo_h2_candidate(hm, r, dt, start, rank, L, opts, notes, (kappa, sign))
    if recorded is None:
        return red
    from .output_fit import make_problem, output_error

    U, n_fwd, shift = recorded
    rho = float(opts.get("rho", DATA_RIDGE))
    marg = marginal_modes(hm)
    if marg.size == 0:
        return _data_fit(hm, r // 2, {"h2": red, "modal": start}, make_problem(hm, U, n_fwd, shift, rho=rho),
                         rank, opts, notes)
    q_rest = r // 2 - marg.size
    if hm.M is not None or q_rest < 1:
        return red
    rest = hm.select(np.setdiff1d(np.arange(hm.n), marg))
    fit = join_modes(hm.select(marg), _data_fit(rest, q_rest, {}, make_problem(rest, U, n_fwd, shift, rho=rho),
                                                rank, opts, notes))
    prob = make_problem(hm, U, n_fwd, shift, rho=rho)
    return fit if output_error(fit, prob) <= output_error(red, prob) else red


def _data_fit(hm: HalfModes, q: int, cands: dict, prob, rank, opts: dict, notes: list) -> HalfModes:
    """The data-weighted fit of a unit to q stored modes (:mod:`~mor_lqo.deep.compress.output_fit`): the given
    candidates, each also with its data-optimal readout, and data-balanced truncation are compared by their
    output error on the data; the best is refined jointly in all its parameters (``options["data_iters"]``
    L-BFGS iterations, 0 to skip)."""
    from .output_fit import best_readout, data_balanced_start, fit_outputs, output_error

    cands = dict(cands)
    cands.update({f"{k} + data readout": best_readout(c, prob) for k, c in cands.items()})
    dbt = data_balanced_start(hm, prob, q)
    if dbt is not None:
        cands["data-balanced truncation"] = dbt
    if not cands:
        cands["modal"] = modal_reducer(hm, 2 * q, None)
    errs = {k: output_error(c, prob) for k, c in cands.items()}
    name = min(errs, key=errs.get)
    best, err = cands[name], errs[name]
    iters = int(opts.get("data_iters", DATA_FIT_ITERS))
    if iters > 0:
        best, err = fit_outputs(hm, best, prob, rank, iters=iters, stall=opts.get("data_stall", DATA_FIT_STALL))
    silent = replace(hm.select([0]), C=0 * hm.C[:, :1], M=None if hm.M is None else 0 * hm.M[:, :1, :1])
    zero = max(output_error(silent, prob), 1e-300)
    notes.append(f"data-weighted fit on the recorded inputs from the {name} start (relative output error on the "
                 f"data {np.sqrt(errs[name] / zero):.3g} -> {np.sqrt(err / zero):.3g})")
    return best


def _mimo_h2_candidate(hm: HalfModes, r: int, dt: float, start: HalfModes, rank, L, opts, notes, layout
                       ) -> HalfModes:
    """h2_gradient from the (data-ranked) modal ``start``; the better of start and result in the finite-horizon
    error. ``layout``: (kappa, sign) of the stored modes."""
    import mor_lqo

    kappa, sign = layout
    if L is not None:
        refit = refit_readout(hm, start, L, rank)
        if _error_L(hm, refit, dt, L) <= _error_L(hm, start, dt, L):
            start = refit
            notes.append(f"modal start with finite-horizon (L={L}) h2-optimal readouts C, M")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mor_lqo.h2_gradient(hm.system(dt=dt), r, init=start.system(dt=dt), multistart=False,
                                      maxiter=opts.get("maxiter", 40), tol=opts.get("tol", 1e-7))
        red = _rom_to_modes(res, hm, kappa, sign, rank, L, notes)
    except MorLqoError as exc:
        notes.append(f"h2_gradient failed ({exc}); modal start kept")
        return start
    if L is not None:
        e0 = _error_L(hm, start, dt, L)
        e1 = _error_L(hm, red, dt, L)
        if not e1 <= e0:
            notes.append("h2_gradient did not lower the finite-horizon error; modal start kept")
            return start
    return red


def _resolve_executor(executor, work: float):
    """(executor or None, owned) from the user's argument (a dask.distributed ``Client`` gives its executor)."""
    executor = as_executor(executor)
    if isinstance(executor, Executor):
        return executor, False
    if executor is None:
        if work < 5e6 or available_cores() < 2:
            return None, False
        return make_executor("process"), True
    if isinstance(executor, str):
        return make_executor(executor), True
    raise TypeError(f"executor must be None, 'process', 'thread', 'serial', a concurrent.futures.Executor or a "
                    f"dask.distributed Client, "
                    f"got {type(executor).__name__}")


def _unit_modes(unit, kappa: float, sign: int, method: str, where: str) -> HalfModes:
    """The unit's stored half modes; dense units (S4 DPLR) are diagonalised, and refused for ``"modal"`` when
    their modes' h2 contributions cancel (:func:`~mor_lqo.adapters.reduce.check_modal_ranking`)."""
    if unit.modes is not None:
        return unit.modes
    from ...adapters.modal_form import to_half_modes

    hm = to_half_modes(unit.system, kappa, sign)
    if method == "modal":
        check_modal_ranking(unit.system, hm, where)
    return hm


def _block_tasks(block: Block, r: int, method: str, length, weights, n_chunks: int, options,
                 scores=None, inputs=None) -> list[dict]:
    """Picklable reduction tasks for the units of one block (in chunks). ``inputs`` (B, L, m): recorded
    block inputs; MIMO units reduced by ``"h2"`` get their slice for the data-weighted readout."""
    fam = family(block.arch)
    units = block.units
    chunks = [np.arange(len(units))]
    if len(units) >= 2 * n_chunks and n_chunks > 1:
        chunks = [c for c in np.array_split(np.arange(len(units)), n_chunks) if c.size]
    rank = block.meta.get("R") if block.arch == "lqo" else None
    modes = [_unit_modes(u, fam.kappa(block), fam.sign(block), method, f"{block.name} unit {i}")
             for i, u in enumerate(units)]
    tasks = []
    for c in chunks:
        tasks.append({
            "block": block.name, "chunk": c, "method": method, "r": r,
            "modes": [modes[i] for i in c], "dt": [float(units[i].system.dt) for i in c],
            "dense": [None if units[i].modes is not None else units[i].system for i in c],
            "kappa": fam.kappa(block), "sign": fam.sign(block), "rank": rank, "length": length,
            "weights": None if weights is None else weights[c], "options": options,
            "scores": None if scores is None else [scores[i] for i in c],
            "inputs": None if inputs is None or method != "h2" or _is_siso_batch([modes[i] for i in c]) else [
                (inputs[:, :, units[i].inputs], units[i].outputs.size, units[i].bwd_shift) for i in c],
        })
    return tasks


def _work(blocks, method, length: int | None = None) -> float:
    """Rough cost of the reductions (decides whether a process pool pays off): units x order^2, times the
    horizon's share for the finite-horizon fits (their moments are sums over L lags)."""
    w = sum(len(b.units) * b.order**2 for b in blocks)
    if method in ("h2", "bound") and length:
        w *= max(1.0, length / 16)
    return w * (0.05 if method == "modal" else 1.0)


def _collect(tasks: Sequence[dict], outs: Sequence[dict]) -> dict[str, dict]:
    """Merge chunk results per block (unit order restored)."""
    res: dict[str, dict] = {}
    for t, o in zip(tasks, outs):
        d = res.setdefault(t["block"], {"parts": []})
        d["parts"].append((t["chunk"], o))
    final = {}
    for name, d in res.items():
        n = sum(c.size for c, _ in d["parts"])
        modes: list = [None] * n
        keys = ("h2_error", "h2_norm", "h2_error_L", "h2_norm_L")
        arr = {k: np.full(n, np.nan) for k in keys}
        notes = []
        has_L = True
        for c, o in d["parts"]:
            for j, i in enumerate(c):
                modes[i] = o["modes"][j]
            for k in keys:
                if o.get(k) is None:
                    if k.endswith("_L"):
                        has_L = False
                    continue
                arr[k][c] = o[k]
            notes += o["notes"]
        final[name] = {"modes": modes, "notes": sorted(set(notes)), **{k: arr[k] for k in keys[:2]},
                       "h2_error_L": arr["h2_error_L"] if has_L else None,
                       "h2_norm_L": arr["h2_norm_L"] if has_L else None}
    return final


def _ladder_task(task: dict) -> dict:
    """Worker: reduced units for every candidate order (finite-horizon fits / modal ranking)."""
    with _single_blas():
        return _ladder_task_impl(task)


def _ladder_task_impl(task: dict) -> dict:
    modes: list[HalfModes] = task["modes"]
    L = task["length"]
    cands = sorted(task["candidates"])
    out: dict[int, list[HalfModes]] = {}
    if _is_siso_batch(modes):
        lam, _, _ = _siso_arrays(modes)
        t = _siso_kernels(modes, L)
        qmax = max(c // 2 for c in cands if c < modes[0].real_order) if any(
            c < modes[0].real_order for c in cands) else 0
        if qmax:
            _, _, _, path = fit_finite_horizon(t, qmax, init=lam, kappa=modes[0].kappa, return_path=True,
                                               iters=task.get("options", {}).get("iters", 60), sweep=False)
            for c in cands:
                if c < modes[0].real_order:
                    mu, Ch, _ = path[c // 2 - 1]
                    q = c // 2
                    out[c] = [HalfModes(lam=mu[j], B=np.ones((q, 1)), C=Ch[j][None, :], D=hm.D, kappa=hm.kappa)
                              for j, hm in enumerate(modes)]
    else:
        sc = task.get("scores")
        for c in cands:
            if c < max(hm.real_order for hm in modes):
                out[c] = [_select_by_score(hm, c, sc[j]) if sc is not None else modal_reducer(hm, c, L)
                          for j, hm in enumerate(modes)]
    for c in cands:
        out.setdefault(c, list(modes))
    return {"ladder": out}
