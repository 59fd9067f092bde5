r"""Paper A's algorithm: minimise the output-error bound over the reduced blocks of all layers jointly.

:func:`minimise_bound` starts from a compressed network (e.g. ``compress(method="h2")`` or
``method="bound"``, which fix the orders and so the parameter budget) and descends the mean over the
calibration sequences of the a-posteriori Theorem-3 bound (docs/bound.md §4.2) with respect to the
SSM tensors of **every** layer at once, in the layout's own parametrisation: the poles
:math:`-e^{\text{log\_A\_real}} + i\,\text{A\_imag}` stay stable, LQO quadratic readouts stay PSD
(:math:`M_j = U_j^H U_j`), the step sizes ``log_dt`` and feed-throughs ``D`` are kept. The orders, and
with them the parameter count, do not change.

The descent uses the differentiable transcription :class:`~mor_lqo.torch.bound_terms.TheoremThreeBound`
(Adam on minibatches; every ``eval_every`` steps the full calibration mean is evaluated, and an
evaluation without progress restarts from the best iterate with half the step size). The result is
then cast to the checkpoint's dtype, rebuilt as a numpy model and **certified** by
:func:`mor_lqo.deep.bound.output_error_bound` (the smallest of Theorems 1–3) on the calibration inputs;
if the certified mean bound did not decrease, the start is returned unchanged. Unlike the per-layer h2
fits, the objective couples the layers: an early layer's error is weighed by how the later (reduced)
layers actually propagate it on the calibration trajectories.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..deep.bound import BoundEvaluator, _check_pair, output_error_bound
from ..errors import InvalidArgumentError, NonFiniteError
from .bound_terms import TheoremThreeBound, trainable_keys

__all__ = ["minimise_bound", "BoundDescentResult"]


@dataclass
class BoundDescentResult:
    """Outcome of :func:`minimise_bound`.

    Attributes
    ----------
    model : S4DModel or LQOModel
        The compressed network after the descent (the start if the certified bound did not decrease).
    state_dict : dict of str to ndarray
        Its state dict, in the start's dtypes.
    bound_before, bound_after : float
        Certified a-posteriori bound (Theorems 1–3), mean over the calibration sequences.
    max_before, max_after : float
        The same, maximum over the calibration sequences.
    improved : bool
        Whether the descent's result was kept.
    history : list of dict
        ``{"step", "mean_bound", "measured_mean"}``: the Theorem-3 bound and the measured logit error,
        means over the full calibration batch.
    seconds : float
    """

    model: Any
    state_dict: dict
    bound_before: float
    bound_after: float
    max_before: float
    max_after: float
    improved: bool
    history: list = field(default_factory=list)
    seconds: float = 0.0


def _certified(model, compressed, inputs) -> tuple[float, float]:
    res = output_error_bound(model, compressed, inputs=inputs)
    return float(np.mean(res.per_sample)), float(np.max(res.per_sample))


def minimise_bound(model, compressed, inputs, *, steps: int = 200, lr: float = 3e-3, batch_size: int = 64,
                   eval_every: int = 20, max_error_increase: float | None = 0.0, seed: int = 0
                   ) -> BoundDescentResult:
    r"""Minimise the mean a-posteriori output-error bound over all reduced SSM blocks jointly.

    Parameters
    ----------
    model : S4DModel or LQOModel
        The original network.
    compressed : same class
        The start: the network with reduced blocks (every other tensor identical, LayoutError otherwise).
    inputs : array_like, shape (batch, L) or (batch, L, d_in)
        Calibration sequences (no labels are used).
    steps : int
        Adam steps.
    lr : float
        Initial Adam step size (the SSM tensors are logarithms, frequencies and readouts of order one).
        An evaluation that finds no better admissible iterate restores the best one and halves the step.
    batch_size : int
        Sequences per step.
    eval_every : int
        Steps between evaluations of the full calibration mean (the best admissible iterate is kept).
    max_error_increase : float or None
        Guard on the actual error: an iterate is admissible only if its measured mean logit error on the
        calibration inputs is at most ``(1 + max_error_increase)`` times the start's. Where the bound is
        loose its minimiser need not reduce the error (docs/bound.md §6); the default 0 keeps only
        iterates that lower the bound *and* do not raise the measured error. ``None`` is the bare
        minimisation.
    seed : int
        Seed of the minibatch order.

    Returns
    -------
    BoundDescentResult

    Examples
    --------
    >>> from mor_lqo.deep import generate_mnist1d, load_bundled_model          # doctest: +SKIP
    >>> from mor_lqo.deep.compress import compress                            # doctest: +SKIP
    >>> model = load_bundled_model("lqo"); x = generate_mnist1d(seed=42)["x"][:200]  # doctest: +SKIP
    >>> start = compress(model, "h2", ratio="1/4", inputs=x).model            # doctest: +SKIP
    >>> res = minimise_bound(model, start, x)                                  # doctest: +SKIP
    >>> res.bound_before, res.bound_after, res.improved                        # doctest: +SKIP

    Raises
    ------
    LayoutError
        If ``compressed`` is not a compression of ``model``.
    InvalidArgumentError
        If ``steps`` < 0, ``batch_size`` < 1, ``eval_every`` < 1 or ``max_error_increase`` < 0.
    NonFiniteError
        If the start's bound is not finite (a non-finite iterate later only halves the step).
    """
    if steps < 0 or batch_size < 1 or eval_every < 1:
        raise InvalidArgumentError(
            f"steps must be >= 0 and batch_size, eval_every >= 1; got {steps}, {batch_size}, {eval_every}"
        )
    if max_error_increase is not None and not (np.isfinite(max_error_increase) and max_error_increase >= 0):
        raise InvalidArgumentError(f"max_error_increase must be None or a number >= 0, got {max_error_increase!r}")
    t0 = time.perf_counter()
    _check_pair(model, compressed)
    ev = BoundEvaluator(model, inputs=inputs)
    sd0 = compressed.state_dict()
    fn = TheoremThreeBound(ev, sd0)
    keys = [k for i in range(model.n_layers) for k in trainable_keys(ev.family, sd0, i)]
    params = {k: torch.tensor(np.asarray(sd0[k], np.float64), requires_grad=True) for k in keys}
    nb = ev.inputs.shape[0]
    ref_logits = model.decode(ev._stats[-1]["Y"])  # the original network's logits on the calibration inputs
    rng = np.random.default_rng(seed)
    step_size = lr
    opt = torch.optim.Adam(list(params.values()), lr=step_size)

    def evaluate(step: int) -> tuple[float, bool]:
        try:
            with torch.no_grad():
                vals = [fn(params, np.arange(s, min(nb, s + batch_size))) for s in range(0, nb, batch_size)]
            val = float(torch.cat(vals).mean())
        except RuntimeError:  # torch.linalg on non-finite iterates
            val = float("nan")
        if not np.isfinite(val):  # a step too long for the exponentials: not admissible, the step is halved
            if step == 0:
                raise NonFiniteError("the bound of the start is not finite")
            history.append({"step": step, "mean_bound": val, "measured_mean": float("nan")})
            return val, False
        out = _rebuild(compressed, sd0, params).forward(ev.inputs)
        err = float(np.mean(np.linalg.norm(out - ref_logits, axis=-1)))
        history.append({"step": step, "mean_bound": val, "measured_mean": err})
        ok = max_error_increase is None or err <= (1.0 + max_error_increase) * history[0]["measured_mean"]
        return val, ok

    history: list[dict] = []
    best, _ = evaluate(0)
    best_params = {k: v.detach().clone() for k, v in params.items()}
    order = rng.permutation(nb)
    pos = 0
    for step in range(1, steps + 1):
        if pos + batch_size > nb:
            order, pos = rng.permutation(nb), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        opt.zero_grad()
        try:
            loss = fn(params, idx).mean()
            stepped = bool(torch.isfinite(loss))
        except RuntimeError:  # torch.linalg on non-finite iterates
            stepped = False
        if stepped:
            loss.backward()
            opt.step()
        if not stepped or step % eval_every == 0 or step == steps:
            val, ok = evaluate(step) if stepped else (float("nan"), False)
            if ok and val < best:
                best, best_params = val, {k: v.detach().clone() for k, v in params.items()}
            else:  # back to the best iterate with half the step size
                with torch.no_grad():
                    for k, v in params.items():
                        v.copy_(best_params[k])
                step_size *= 0.5
                opt = torch.optim.Adam(list(params.values()), lr=step_size)
    return _finish(model, compressed, sd0, best_params, ev.inputs, history, t0)


def _rebuild(compressed, sd0: Mapping[str, np.ndarray], params: Mapping[str, torch.Tensor]):
    """The compressed model with the given SSM tensors, cast to the start's dtypes."""
    new_sd = {k: np.array(v, copy=True) for k, v in sd0.items()}
    for k, v in params.items():
        new_sd[k] = v.detach().numpy().astype(sd0[k].dtype)
    return type(compressed).from_state_dict(new_sd)


def _finish(model, compressed, sd0: Mapping[str, np.ndarray], best_params, inputs, history, t0
            ) -> BoundDescentResult:
    candidate = _rebuild(compressed, sd0, best_params)
    new_sd = candidate.state_dict()
    mean0, max0 = _certified(model, compressed, inputs)
    mean1, max1 = _certified(model, candidate, inputs)
    improved = mean1 < mean0
    if not improved:
        candidate, new_sd, mean1, max1 = compressed, {k: np.array(v, copy=True) for k, v in sd0.items()}, mean0, max0
    return BoundDescentResult(model=candidate, state_dict=new_sd, bound_before=mean0, bound_after=mean1,
                              max_before=max0, max_after=max1, improved=improved, history=history,
                              seconds=time.perf_counter() - t0)
