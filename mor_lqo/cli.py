r"""Command line: ``mor-lqo compress`` and ``mor-lqo inspect`` (also ``python -m mor_lqo``).

::

    mor-lqo compress                       # the bundled S4D model on the bundled MNIST-1D test split
    mor-lqo compress ckpt.safetensors --ratio 1/16 --out out/
    mor-lqo inspect ckpt.pt --tol 1e-2
    mor-lqo compress ckpt.pt --model mypkg.models:build --data calib.npz   # your torch module
    mor-lqo compress --bundled lqo --ratio 1/4 --descend-bound 150       # paper A's joint bound descent

``compress`` prints a per-layer table (order before → after, h2 error, share of the output-error bound)
and totals (SSM and trainable parameters, accuracy, bound vs measured logit error), and writes to
``--out`` (default ``./mor_lqo_out``) as one unit: the compressed checkpoint (safetensors, never over the
input), ``report.json`` and a PNG plot are written into a hidden staging directory and published
together; an existing non-empty ``--out`` is replaced only with ``--force`` and only if it holds an
earlier run's outputs. Exit codes: 0 success, 2 invalid arguments (bad ratio, order, budget, method),
3 unreadable / missing / unsafe checkpoint or data file, 4 unknown or inconsistent layout, 5 the
outputs cannot be written (``--out`` exists, permission, read-only or full disk), 6 out of memory,
130 interrupted (SIGINT), 143 terminated (SIGTERM), 1 any other error. Errors are one line; ``--debug``
shows the traceback. No torch needed, except for ``--model`` and ``--descend-bound``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._files import (
    DEFAULT_MAX_ARRAY_BYTES,
    OutputExistsError,
    atomic_output,
    available_memory,
    check_output_dir,
    format_bytes,
    read_npz_checked,
    staged_output_dir,
)
from .errors import CheckpointError, DataFileError, LayoutError, MorLqoError, OrderError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FILE, EXIT_LAYOUT, EXIT_OUTPUT, EXIT_MEMORY = 0, 1, 2, 3, 4, 5, 6
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
CALIBRATION = 256
DEFAULT_OUT = "mor_lqo_out"


class CLIError(Exception):
    """An error with a message for the user and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .deep.compress import DEFAULT_METHOD, DEFAULT_RATIO, METHODS

    p = argparse.ArgumentParser(prog="mor-lqo", description="Model-order reduction of Deep SSM checkpoints.")
    p.add_argument("--version", action="version", version=f"mor-lqo {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{compress,inspect}")

    c = sub.add_parser("compress", help="reduce the SSM blocks of a checkpoint (default: the bundled model)",
                       description="Reduce every SSM block, write the compressed checkpoint, report.json and a "
                                   "plot. Without CHECKPOINT the bundled S4D model is compressed and evaluated "
                                   "on the bundled MNIST-1D test split.")
    c.add_argument("checkpoint", nargs="?", help="checkpoint (.safetensors, .pt/.pth/.ckpt/.bin, .npz)")
    c.add_argument("--arch", default="auto", help="layout (default: auto-detect)")
    c.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS,
                   help=f"reduction method (default: {DEFAULT_METHOD})")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--ratio", help=f"fraction of the SSM state kept, e.g. 1/32, 0.125 or 32x (default "
                                   f"{DEFAULT_RATIO})")
    g.add_argument("--order", type=int, help="reduced real order per unit (even)")
    g.add_argument("--budget", type=float, help="maximum number of SSM parameters after compression")
    c.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output directory, written as one unit (default ./{DEFAULT_OUT})")
    c.add_argument("--force", action="store_true",
                   help="replace an existing --out that holds an earlier run's outputs")
    c.add_argument("--bundled", default="s4d", choices=("s4d", "lqo"),
                   help="bundled model used when no CHECKPOINT is given (default s4d)")
    c.add_argument("--data", help="npz with x (batch, L[, d_in]) and optionally y: calibration and evaluation data "
                                  "for a user checkpoint")
    c.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="a layout setting the checkpoint does not record, e.g. --set dt_transform=softplus "
                        "--set n_groups=8 (repeatable; see docs/adapters.md)")
    c.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, e.g. --option error_guard=false --option data_iters=400 or "
                        "--option data_stall=20,1e-3 (repeatable; see docs/cli.md)")
    c.add_argument("--descend-bound", type=int, metavar="STEPS",
                   help="after the reduction, minimise the output-error bound over all reduced blocks jointly "
                        "for STEPS gradient steps (S4D and LQO models; needs torch and calibration inputs)")
    c.add_argument("--descent-guard", default=None, metavar="FRACTION|none",
                   help="keep only descent iterates whose calibration error is at most (1 + FRACTION) times the "
                        "start's (default 0); 'none' minimises the bound alone")
    c.add_argument("--model", metavar="PKG.MODULE:FACTORY",
                   help="build your torch module with this factory, load CHECKPOINT into it, calibrate on --data and "
                        "write a checkpoint of the same kind (needs torch)")
    c.add_argument("--length", type=int, help="sequence length for finite-horizon h2 (without --data)")
    c.add_argument("--calibration", type=int, default=CALIBRATION,
                   help=f"number of sequences used for calibration (default {CALIBRATION}; labels unused)")
    c.add_argument("--executor", default=None, choices=("process", "thread", "serial"),
                   help="where the per-block work runs (default: process pool when the work is large)")
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the per-block work on a dask.distributed cluster (e.g. tcp://10.0.0.5:8786)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    c.add_argument("--quiet", action="store_true", help="print only the output paths")
    c.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    i = sub.add_parser("inspect", help="blocks, orders, Hankel singular values and suggested orders",
                       description="List the SSM blocks of a checkpoint with their orders, Hankel singular "
                                   "values and the smallest orders meeting a relative tolerance.")
    i.add_argument("checkpoint", help="checkpoint file")
    i.add_argument("--arch", default="auto")
    i.add_argument("--tol", type=float, default=1e-2,
                   help="relative Hankel-singular-value tolerance sigma_{r+1}/sigma_1 (default 1e-2)")
    i.add_argument("--length", type=int, help="use finite-horizon (FIR Hankel) singular values over L lags")
    i.add_argument("--hsv", type=int, default=8, help="leading Hankel singular values shown (default 8)")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="a layout setting the checkpoint does not record (repeatable)")
    i.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _clean(o):
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (np.floating, np.integer)):
        return _clean(o.item())
    return o


def _fmt(x, spec=".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def parse_settings(items: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """``["dt_transform=softplus", "n_groups=8"]`` -> settings; values: int, float, true/false, none or text
    (``flag`` names the option in error messages)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"{flag} needs KEY=VALUE, got {item!r}", EXIT_USAGE)
        low = raw.strip().lower()
        value: Any = {"true": True, "false": False, "none": None}.get(low, raw.strip())
        if isinstance(value, str):
            for conv in (int, float):
                try:
                    value = conv(value)
                    break
                except ValueError:
                    pass
        out[key.strip()] = value
    return out


def method_options(args) -> dict[str, Any]:
    """``--option KEY=VALUE`` items as checked method options; a value with commas becomes a tuple."""
    from .deep.compress import CompressionError, check_options

    raw = parse_settings(getattr(args, "options", None) or [], "--option")
    for key, value in raw.items():
        if isinstance(value, str) and "," in value:
            raw[key] = tuple(parse_settings([f"v={v}"])["v"] for v in value.split(","))
    try:
        return check_options(raw)
    except CompressionError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc


def descent_guard(text: str | None) -> float | None:
    """``--descent-guard``: a fraction >= 0 (0 when not given), or None for ``none``."""
    if text is None:
        return 0.0
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise CLIError(f"--descent-guard must be a number >= 0 or 'none', got {text!r}", EXIT_USAGE)
    return value


def _load_data(path: str, max_bytes: int = DEFAULT_MAX_ARRAY_BYTES):
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"data file not found: {p}", EXIT_FILE)
    try:
        arrays = read_npz_checked(p, ("x", "y"), max_bytes)
    except DataFileError as exc:
        raise CLIError(str(exc), EXIT_FILE) from exc
    if "x" not in arrays:
        raise CLIError(f"{p}: the npz needs an array 'x' (batch, L[, d_in])", EXIT_FILE)
    x, y = arrays["x"], arrays.get("y")
    if x.ndim not in (2, 3) or x.shape[0] < 1:
        raise CLIError(f"{p}: x must have shape (batch, L) or (batch, L, d_in), got {x.shape}", EXIT_USAGE)
    if y is not None and y.shape[0] != x.shape[0]:
        raise CLIError(f"{p}: x has {x.shape[0]} sequences but y has {y.shape[0]} labels", EXIT_USAGE)
    return x, y


def _save(state_dict, path: Path, metadata: dict) -> None:
    """Write a compressed checkpoint atomically, in the format of ``path``'s extension.

    Flat numpy state dicts bound for ``.safetensors`` are written by the package's own numpy writer (no
    ``safetensors`` package needed); anything else goes through :func:`mor_lqo.adapters.save`.
    """
    from .adapters import save as save_checkpoint
    from .deep.data import write_safetensors

    flat = isinstance(state_dict, dict) and all(isinstance(v, np.ndarray) for v in state_dict.values())
    if not flat or path.suffix.lower() != ".safetensors":
        save_checkpoint(state_dict, path, overwrite=True)
        return
    with atomic_output(path) as tmp:
        write_safetensors(tmp, state_dict, metadata)


def _inside(path: Path, directory: Path) -> bool:
    """True if ``path`` is ``directory`` or lies below it (symbolic links resolved)."""
    p, d = path.resolve(), directory.resolve()
    return p == d or d in p.parents


@contextlib.contextmanager
def _cluster_executor(address: str | None):
    """A ``concurrent.futures`` executor on the dask.distributed scheduler at ``address`` (None: none)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise CLIError("--scheduler needs dask.distributed: pip install 'dask[distributed]'", EXIT_USAGE) from exc
    try:
        client = Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise CLIError(f"cannot reach the dask scheduler at {address}: {exc}", EXIT_ERROR) from exc
    try:
        yield client.get_executor()
    finally:
        client.close()


FIT_BYTES_PER_LAG = 16 * 640  # complex candidate basis of the finite-horizon fit: ~640 columns per lag


def _check_length_memory(L: int) -> None:
    """Refuse a sequence length whose finite-horizon fit cannot fit in memory, before allocating it."""
    from .deep.executor import available_cores

    avail = available_memory()
    need = FIT_BYTES_PER_LAG * L * max(1, available_cores())
    if avail is not None and need > avail // 2:
        most = avail // 2 // (FIT_BYTES_PER_LAG * max(1, available_cores()))
        raise CLIError(f"--length {L} needs about {format_bytes(need)} for the finite-horizon fit, more than half "
                       f"of the {format_bytes(avail)} available; use --length {most} or less", EXIT_MEMORY)


def _check_out(out_dir: Path, force: bool) -> None:
    """Refuse an unusable ``--out`` before any work is done."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"--out {out_dir} exists and is not a directory", EXIT_USAGE)
    try:
        check_output_dir(out_dir, force)
    except OutputExistsError as exc:
        raise CLIError(str(exc), EXIT_OUTPUT) from exc
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # can we write there at all? (OSError -> exit 5)
    os.rmdir(tempfile.mkdtemp(prefix="." + out_dir.name + ".", suffix=".probe", dir=out_dir.parent))


# ---------------------------------------------------------------------------------------------
# compress
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CompressInput:
    """What ``compress`` works on: the model, the evaluation/calibration data and where it came from."""

    model: Any
    x: np.ndarray | None
    y: np.ndarray | None
    source: str
    src_path: Path
    data_note: str | None


def _check_compress_args(args):
    """Validate the numeric options before any work; returns the parsed ratio (or None)."""
    from .deep.compress import CompressionError, parse_ratio

    ratio = None
    if args.ratio is not None:
        try:
            ratio = parse_ratio(args.ratio)
        except CompressionError as exc:
            raise CLIError(str(exc), EXIT_USAGE) from exc
    if args.order is not None and (args.order < 2 or args.order % 2):
        raise CLIError(f"--order must be an even integer >= 2 (conjugate pairs), got {args.order}", EXIT_USAGE)
    if args.budget is not None and not (math.isfinite(args.budget) and args.budget > 0):
        raise CLIError(f"--budget must be a positive number of parameters, got {args.budget}", EXIT_USAGE)
    if args.calibration < 1:
        raise CLIError("--calibration must be >= 1", EXIT_USAGE)
    if args.scheduler is not None and args.executor is not None:
        raise CLIError("--scheduler and --executor are exclusive: the cluster is the executor", EXIT_USAGE)
    if args.length is not None and args.length < 1:
        raise CLIError("--length must be >= 1", EXIT_USAGE)
    if args.length is not None:
        _check_length_memory(args.length)
    method_options(args)
    descent_guard(args.descent_guard)
    if args.descent_guard is not None and args.descend_bound is None:
        raise CLIError("--descent-guard applies to --descend-bound, which is not given", EXIT_USAGE)
    if args.descend_bound is not None:
        import importlib.util

        if args.descend_bound < 1:
            raise CLIError(f"--descend-bound must be >= 1 steps, got {args.descend_bound}", EXIT_USAGE)
        if args.checkpoint is not None and not args.data:
            raise CLIError("--descend-bound needs calibration inputs: give --data", EXIT_USAGE)
        if importlib.util.find_spec("torch") is None:
            raise CLIError("--descend-bound needs PyTorch: pip install 'mor_lqo[torch]'", EXIT_USAGE)
    return ratio


def _load_compress_input(args) -> _CompressInput:
    """The bundled model with its test split, or the user's checkpoint (and ``--data``)."""
    if args.checkpoint is None:
        from .deep.data import bundled_model_path, load_bundled_model, load_test_split

        src_path = bundled_model_path(args.bundled)
        try:
            model_in = load_bundled_model(args.bundled)
            x, y = load_test_split()
        except FileNotFoundError as exc:
            raise CLIError(f"bundled data missing: {exc}", EXIT_FILE) from exc
        note = (f"accuracy on the bundled MNIST-1D test split ({len(x)} sequences); calibration uses the "
                f"inputs of the first {min(args.calibration, len(x))} (labels unused)")
        if args.data:
            x, y = _load_data(args.data)
        return _CompressInput(model_in, x, y, f"bundled:{args.bundled} ({src_path.name})", src_path, note)
    from .adapters import load as load_checkpoint

    src_path = Path(args.checkpoint)
    if not src_path.exists():
        raise CLIError(f"checkpoint not found: {src_path}", EXIT_FILE)
    if not src_path.is_file():
        raise CLIError(f"checkpoint is not a file: {src_path}", EXIT_FILE)
    try:
        model_in = load_checkpoint(src_path)
    except CheckpointError as exc:
        raise CLIError(str(exc), EXIT_FILE) from exc
    x, y = _load_data(args.data) if args.data else (None, None)
    return _CompressInput(model_in, x, y, str(src_path), src_path, None)


def _run_compress(args, inp: _CompressInput, ratio):
    """Run :func:`mor_lqo.deep.compress.compress` with the CLI's options; errors become exit codes."""
    from .deep.compress import CompressionError, compress

    cal = None if inp.x is None else inp.x[: args.calibration]
    try:
        with _cluster_executor(args.scheduler) as cluster:
            return compress(inp.model, method=args.method, ratio=ratio, order=args.order, budget=args.budget,
                            arch=args.arch, inputs=cal, length=None if cal is not None else args.length,
                            executor=cluster or args.executor, progress=not (args.no_progress or args.quiet),
                            options=method_options(args), **parse_settings(args.settings))
    except (CompressionError, OrderError) as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc
    except LayoutError as exc:
        raise CLIError(str(exc), EXIT_LAYOUT) from exc
    except TypeError as exc:  # unknown layout settings
        raise CLIError(str(exc), EXIT_USAGE) from exc


def _reference_of(inp: _CompressInput, res):
    """The original network as a numpy reference model of the result's family (None if it has none)."""
    if res.model is None:
        return None
    from .deep.compress.verify import _flat_input, _reference_model

    ref = _reference_model(_flat_input(inp.model)[1], [], type(res.model))
    if ref is None:
        raise CLIError("internal: the input checkpoint does not build the reference model its compression "
                       "built", EXIT_LAYOUT)
    return ref


def _evaluate(res, inp: _CompressInput):
    """(original reference model, accuracy before/after, bound entry, per-layer bound terms)."""
    from .deep.bound import output_error_bound

    acc = {"before": None, "after": None}
    bound_entry: dict[str, Any] = {"value": None, "measured_max_error": None}
    if res.model is None:
        return None, acc, bound_entry, {}
    orig_model = _reference_of(inp, res)
    x, y = inp.x, inp.y
    if x is None:
        return orig_model, acc, bound_entry, {}
    try:
        if y is not None:
            acc = {"before": 100.0 * orig_model.accuracy(x, y), "after": 100.0 * res.model.accuracy(x, y)}
        tb = time.perf_counter()
        bres = output_error_bound(orig_model, res.model, inputs=x)
    except MorLqoError as exc:
        raise CLIError(f"evaluation failed: {exc}", EXIT_LAYOUT) from exc
    bound_entry = {"value": bres.value, "measured_max_error": bres.measured_max, "tightness": bres.tightness,
                   "kind": bres.kind, "sequences": int(len(x)), "mean_bound": float(np.mean(bres.per_sample)),
                   "mean_measured_error": float(np.mean(bres.measured)), "seconds": time.perf_counter() - tb}
    return orig_model, acc, bound_entry, {lb.name: lb for lb in bres.layers}


def _layer_rows(res, shares: dict) -> list[dict]:
    """The result's per-layer entries with the bound's per-layer terms added."""
    layers = []
    for lay in res.layers:
        e = dict(lay)
        lb = shares.get(e["name"])
        if lb is not None:
            e["bound_share"] = lb.share
            e["bound_weight"] = lb.weight
            e["h2_error_L"] = lb.h2_error
        layers.append(e)
    return layers


def _publish(args, res, report: dict, orig_model, x, out_dir: Path, ckpt_path: Path, t0: float,
             source: Path | None = None) -> None:
    """Write checkpoint, plot and report into a staging directory and publish them as one unit; with a torch
    ``source`` file the checkpoint takes its structure and metadata (training state made consistent)."""
    from .adapters.reduce import into_source_checkpoint

    report["output"] = {"checkpoint": str(ckpt_path), "report": str(out_dir / "report.json")}
    try:
        with staged_output_dir(out_dir, args.force) as stage:
            try:
                state = res.state_dict
                if source is not None:
                    state, report["checkpoint_notes"] = into_source_checkpoint(state, source, res.layers)
                _save(state, stage / ckpt_path.name,
                      {"mor_lqo": __version__, "method": res.method, "source": report["source"]})
            except CheckpointError as exc:
                raise CLIError(str(exc), EXIT_FILE) from exc
            if not args.no_plot and _plot(res, orig_model, x, stage / "compression.png", report) is not None:
                report["output"]["plot"] = str(out_dir / "compression.png")
            report["timings"]["end_to_end"] = time.perf_counter() - t0
            _atomic_write_bytes(stage / "report.json",
                                json.dumps(_clean(report), indent=2, default=_json_default).encode())
    except OutputExistsError as exc:
        raise CLIError(str(exc), EXIT_OUTPUT) from exc


def _cmd_compress(args) -> int:
    if args.model:
        if args.scheduler:
            raise CLIError("--scheduler is not supported with --model; use --executor", EXIT_USAGE)
        from .cli_model import cmd_compress_model

        return cmd_compress_model(args)
    t0 = time.perf_counter()
    ratio = _check_compress_args(args)
    out_dir = Path(args.out)
    _check_out(out_dir, args.force)
    inp = _load_compress_input(args)
    torch_kind = args.checkpoint is not None and inp.src_path.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin")
    ckpt_path = out_dir / f"{inp.src_path.stem}_compressed{inp.src_path.suffix if torch_kind else '.safetensors'}"
    if _inside(inp.src_path, out_dir):
        raise CLIError(f"the input checkpoint {inp.src_path} lies inside --out {out_dir}; choose another --out",
                       EXIT_USAGE)
    if not args.quiet:
        what = (f"ratio {ratio}" if ratio is not None else f"order {args.order}" if args.order is not None
                else f"budget {args.budget:g}" if args.budget is not None else "default ratio")
        print(f"mor-lqo compress: {inp.source}, method {args.method}, {what}", flush=True)
    res = _run_compress(args, inp, ratio)
    descent, plain = None, res
    if args.descend_bound is not None:
        from .cli_descent import descend

        cal = None if inp.x is None else inp.x[: args.calibration]
        res, descent = descend(args, res, _reference_of(inp, res), cal)
    orig_model, acc, bound_entry, shares = _evaluate(res, inp)
    pt = res.params["total"]
    report: dict[str, Any] = {
        "mor_lqo": __version__, "source": inp.source, "method": res.method,
        "ratio": None if ratio is None else str(ratio), "order": args.order, "budget": args.budget,
        "length": res.length, "accuracy": acc, "bound": bound_entry,
        "params": {"before": pt["before"], "after": pt["after"], "ssm": res.params["ssm"], "total": pt},
        "state_ratio": res.state_ratio, "layers": _layer_rows(res, shares),
        "notes": ([inp.data_note] if inp.data_note else []) + list(res.notes), "timings": dict(res.timings)}
    if res.allocation is not None:
        report["allocation"] = res.allocation
    if descent is not None:
        if inp.y is not None and descent["kept"]:
            descent["accuracy_before"] = 100.0 * plain.model.accuracy(inp.x, inp.y)
        report["bound_descent"] = descent
        report["timings"]["bound_descent"] = descent["seconds"]
    _publish(args, res, report, orig_model, inp.x, out_dir, ckpt_path, t0, inp.src_path if torch_kind else None)
    if not args.quiet:
        _print_table(report)
    print(f"wrote {ckpt_path}")
    print(f"wrote {out_dir / 'report.json'}")
    if "plot" in report["output"]:
        print(f"wrote {out_dir / 'compression.png'}")
    return EXIT_OK


def _print_table(rep: dict) -> None:
    L = rep.get("length")
    hdr = f"{'layer':<20} {'order':>11} {'stored':>9} {'h2 err' + (f' (L={L})' if L else ''):>16} " \
          f"{'rel':>7} {'bound share':>11}"
    print()
    print(hdr)
    print("-" * len(hdr))
    for lay in rep["layers"]:
        e = lay.get("h2_error_L") if L else lay.get("h2_error")
        rel = lay.get("rel_h2_error_L") if L else lay.get("rel_h2_error")
        share = lay.get("bound_share")
        print(f"{lay['name']:<20} {lay['order_before']:>4} -> {lay['order_after']:<4} "
              f"{lay['stored_before']:>3} -> {lay['stored_after']:<3} {_fmt(e):>16} {_fmt(rel):>7} "
              f"{(_fmt(100 * share, '.1f') + ' %') if share is not None else '-':>11}")
    print("-" * len(hdr))
    ps, pt = rep["params"]["ssm"], rep["params"]["total"]
    fewer = ps["before"] / max(ps["after"], 1)
    removed = 100 * (1 - pt["after"] / pt["before"])
    print(f"SSM parameters        {ps['before']:>9,d} -> {ps['after']:<9,d} ({fewer:.1f}x fewer)")
    print(f"trainable parameters  {pt['before']:>9,d} -> {pt['after']:<9,d} ({removed:.1f} % removed)")
    print(f"SSM state             {100 * rep['state_ratio']:.2f} % kept ({1 / rep['state_ratio']:.1f}x smaller)")
    acc = rep["accuracy"]
    if acc.get("before") is not None:
        print(f"accuracy              {acc['before']:.2f} % -> {acc['after']:.2f} % "
              f"({acc['after'] - acc['before']:+.2f} points)")
    b = rep["bound"]
    if b.get("value") is not None:
        print(f"logit error           bound {b['value']:.4g}  >=  measured max {b['measured_max_error']:.4g} "
              f"(over {b['sequences']} sequences; tightness {_fmt(b.get('tightness'))})")
    d = rep.get("bound_descent")
    if d is not None:
        before = (f"; accuracy {d['accuracy_before']:.2f} % before it" if d.get("accuracy_before") is not None
                  else "")
        print(f"bound descent         mean bound {d['mean_bound_before']:.4g} -> {d['mean_bound_after']:.4g} "
              f"({'kept' if d['kept'] else 'not kept'}; {d['steps']} steps, {d['seconds']:.0f} s{before})")
    print(f"time                  {rep['timings'].get('end_to_end', 0):.1f} s")
    print()


def _plot(res, orig_model, x, path: Path, report: dict):
    """Per-layer finite-horizon Hankel singular value decay with the chosen orders, and the bound shares."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report.setdefault("notes", []).append("matplotlib not installed: no plot written")
        return None
    from .adapters import extract
    from .cli_inspect import block_hsv

    L = res.length or 64
    try:
        blocks = extract(res.state_dict if orig_model is None else orig_model.state_dict())
    except MorLqoError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for b, lay in zip([bb for bb in blocks if bb.lti], res.layers):
        s = block_hsv(b, L)
        if s is None:
            continue
        ax.semilogy(np.arange(1, s.size + 1), s / s[0], marker=".", label=f"{b.name} (kept {lay['order_after']})")
        ax.axvline(lay["order_after"], color=ax.lines[-1].get_color(), ls=":", lw=1)
    ax.set_xlabel("order")
    ax.set_ylabel(f"Hankel singular values (L={L}, median over units, normalised)")
    ax.set_title("HSV decay and the reduced orders")
    ax.legend(fontsize=7)
    ax = axes[1]
    names = [lay["name"] for lay in report["layers"]]
    err = [lay.get("rel_h2_error_L") or lay.get("rel_h2_error") or 0 for lay in report["layers"]]
    share = [lay.get("bound_share") or 0 for lay in report["layers"]]
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, err, 0.4, label="relative h2 error")
    ax.bar(pos + 0.2, share, 0.4, label="share of the bound (first order)")
    ax.set_xticks(pos, [n.rstrip(".") for n in names], rotation=20, fontsize=7)
    acc = report.get("accuracy", {})
    title = "per-layer error"
    if acc.get("before") is not None:
        title += f" — accuracy {acc['before']:.1f} % → {acc['after']:.1f} %"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _atomic_write_bytes(path, buf.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
class Terminated(BaseException):
    """SIGTERM, raised as an exception so that cleanup (worker pools, staging directories) runs."""


def _raise_terminated(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated()


_OS_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "operation not permitted", errno.EISDIR: "is a directory",
              errno.ENOTDIR: "not a directory", errno.ENAMETOOLONG: "file name too long"}


def _os_error_message(exc: OSError) -> str:
    what = _OS_ERRORS.get(exc.errno or -1, exc.strerror or str(exc))
    where = exc.filename if exc.filename is not None else ""
    return f"{where}: {what}" if where else what


def _os_error_code(exc: OSError, args) -> int:
    """Exit 5 for errors writing the outputs (``--out``, its staging directory, the directory above),
    exit 3 for errors reading an input file."""
    out = getattr(args, "out", None)
    if out is None or exc.filename is None:
        return EXIT_OUTPUT if out is not None else EXIT_FILE
    f, out_dir = Path(os.fsdecode(exc.filename)).absolute(), Path(out).absolute()
    staging = f.name.startswith("." + out_dir.name + ".") or any(
        p.name.startswith("." + out_dir.name + ".") for p in f.parents)
    return EXIT_OUTPUT if staging or f == out_dir or out_dir in f.parents or f in out_dir.parents else EXIT_FILE


def _dispatch(args) -> int:
    if args.command == "compress":
        return _cmd_compress(args)
    from .cli_inspect import cmd_inspect

    return cmd_inspect(args)


def _run(args) -> int:
    """Run the command; map every foreseeable failure to (one-line message, exit code)."""
    name = args.command
    try:
        return _dispatch(args)
    except CLIError as exc:
        msg, code = str(exc), exc.code
    except CheckpointError as exc:
        msg, code = str(exc), EXIT_FILE
    except LayoutError as exc:
        msg, code = str(exc), EXIT_LAYOUT
    except MorLqoError as exc:
        msg, code = str(exc), EXIT_ERROR
    except MemoryError as exc:
        msg, code = str(exc) or "out of memory (reduce --length, --calibration or the data size)", EXIT_MEMORY
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # output piped into head & co.
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            except OSError:
                pass
            return EXIT_OK
        msg, code = _os_error_message(exc), _os_error_code(exc, args)
    except KeyboardInterrupt:
        msg, code = "interrupted", EXIT_SIGINT
    except Terminated:
        msg, code = "terminated", EXIT_SIGTERM
    print(f"mor-lqo {name}: error: {msg}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mor-lqo`` (returns the exit code; ``sys.exit(main())`` in scripts)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit with 2, --help/--version with 0
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        if args.debug:
            return _dispatch(args)
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
