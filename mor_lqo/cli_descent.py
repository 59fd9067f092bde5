r"""``mor-lqo compress --descend-bound STEPS``: the joint bound descent after the reduction.

The reduced network of :func:`mor_lqo.deep.compress.compress` is the start of
:func:`mor_lqo.torch.minimise_bound` on the calibration inputs. Its result replaces the compressed
checkpoint's SSM tensors (in the input's structure, array type and dtypes), and the per-block h2 errors
are measured again (:func:`~mor_lqo.deep.compress.layer_errors.layer_errors`), so the report describes
the checkpoint that is written.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["descend"]


def _cli():
    from . import cli

    return cli


def descend(args, res, orig_model, calibration: np.ndarray | None) -> tuple[Any, dict[str, Any]]:
    """Run the bound descent on a :class:`~mor_lqo.deep.compress.CompressionResult`.

    Parameters
    ----------
    args : argparse.Namespace
        ``descend_bound`` (steps) and ``descent_guard`` (text) of the command line.
    res : CompressionResult
        The reduction (its ``model`` must be an S4D or LQO reference model).
    orig_model : S4DModel or LQOModel
        The original network.
    calibration : ndarray or None
        Calibration inputs (batch, L[, d_in]).

    Returns
    -------
    (CompressionResult, dict)
        The result with the descended tensors, model and re-measured layer errors (``res`` itself is not
        modified), and the report entry ``{"steps", "guard", "mean_bound_before", "mean_bound_after",
        "max_bound_before", "max_bound_after", "kept", "seconds"}``.

    Raises
    ------
    CLIError
        Exit 2: no reference model, no calibration inputs, or torch not installed.
    """
    from .adapters._common import to_numpy
    from .adapters.io import _View
    from .deep.compress.layer_errors import layer_errors, refresh_layer_errors
    from .deep.compress.verify import _like, dotted_prefix
    from .errors import LayoutError

    cli = _cli()
    if res.model is None or orig_model is None:
        raise cli.CLIError("--descend-bound works on checkpoints of the S4D and LQO reference layouts "
                           "(docs/adapters.md); this checkpoint is not one", cli.EXIT_USAGE)
    if calibration is None:
        raise cli.CLIError("--descend-bound needs calibration inputs: give --data (or use the bundled model)",
                           cli.EXIT_USAGE)
    try:
        from .torch import minimise_bound
    except ImportError as exc:
        raise cli.CLIError(f"--descend-bound needs PyTorch (pip install 'mor_lqo[torch]'): {exc}",
                           cli.EXIT_USAGE) from exc
    guard = cli.descent_guard(args.descent_guard)
    out = minimise_bound(orig_model, res.model, calibration, steps=args.descend_bound, max_error_increase=guard)
    view = _View(res.state_dict)
    flat = dict(view.flat)
    prefix = "" if all(k in flat for k in out.state_dict) else dotted_prefix(flat)
    for name, value in out.state_dict.items():
        key = prefix + name
        if key not in flat:
            raise LayoutError(f"internal: the descent changed {key!r}, which the checkpoint does not hold")
        if not np.array_equal(np.asarray(value), np.asarray(to_numpy(flat[key]))):
            flat[key] = _like(flat[key], np.asarray(value))
    errors = layer_errors(orig_model, out.model, length=res.length)
    new = dataclasses.replace(res, state_dict=view.rebuild(flat), model=out.model,
                              layers=refresh_layer_errors(res.layers, errors), notes=list(res.notes))
    verdict = ("kept" if out.improved else
               "not kept: the certified mean bound did not decrease, the reduction is written unchanged")
    guard_text = "none" if guard is None else f"{guard:g}"
    new.notes.append(f"bound descent ({args.descend_bound} steps, guard {guard_text}): certified mean bound "
                     f"{out.bound_before:.4g} -> {out.bound_after:.4g} on {len(calibration)} calibration sequences; "
                     f"{verdict}")
    entry = {"steps": args.descend_bound, "guard": guard, "mean_bound_before": out.bound_before,
             "mean_bound_after": out.bound_after, "max_bound_before": out.max_before,
             "max_bound_after": out.max_after, "kept": out.improved, "seconds": out.seconds}
    return new, entry
