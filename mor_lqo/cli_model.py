"""``mor-lqo compress CKPT --model PKG.MODULE:FACTORY --data calib.npz``: compress the user's own torch module.

The factory builds the user's module (no arguments); the checkpoint's weights are loaded into it strictly
(safely: no pickled code runs); :func:`mor_lqo.torch.compress` records the SSM blocks' inputs on the first
``--calibration`` sequences of ``--data`` and compresses them; the result is written as a checkpoint of the
same kind (same format and structure; Lightning-style training checkpoints get their hyper-parameters
updated and their optimizer state dropped) with ``report.json``, published as one unit into ``--out``.
Accuracy before → after is measured on ``--data`` when it holds labels ``y``. Needs torch.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import numpy as np

from . import __version__
from ._files import OutputExistsError, staged_output_dir

__all__ = ["cmd_compress_model", "load_factory"]


def _cli():
    from . import cli

    return cli


def load_factory(spec: str):
    """The callable named by ``PKG.MODULE:FACTORY`` (usage error, exit 2, when it cannot be found)."""
    cli = _cli()
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise cli.CLIError(f"--model must look like PKG.MODULE:FACTORY, got {spec!r}", cli.EXIT_USAGE)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise cli.CLIError(f"--model {spec}: cannot import {mod_name!r} ({exc})", cli.EXIT_USAGE) from exc
    obj = mod
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise cli.CLIError(f"--model {spec}: {mod_name!r} has no attribute {attr!r}", cli.EXIT_USAGE)
    if not callable(obj):
        raise cli.CLIError(f"--model {spec}: {attr!r} is not callable", cli.EXIT_USAGE)
    return obj


def _build_module(spec: str):
    import torch

    cli = _cli()
    try:
        module = load_factory(spec)()
    except cli.CLIError:
        raise
    except Exception as exc:
        raise cli.CLIError(f"--model {spec}: the factory failed ({type(exc).__name__}: {exc})", cli.EXIT_USAGE) from exc
    if not isinstance(module, torch.nn.Module):
        raise cli.CLIError(f"--model {spec}: the factory returned {type(module).__name__}, not a torch.nn.Module",
                           cli.EXIT_USAGE)
    return module


def _key_map(module_keys: set, view) -> dict[str, str]:
    """{module key: checkpoint flat key}: as they are, or with the checkpoint's stripped prefix put back."""
    from .errors import LayoutError

    flat = set(view.flat)
    if flat == module_keys:
        return {k: k for k in flat}
    pre = getattr(view, "prefix", "") or ""
    if pre and {pre + k for k in flat} == module_keys:
        return {pre + k: k for k in flat}
    first = {k.split(".", 1)[0] for k in flat}
    if len(first) == 1 and all("." in k for k in flat):  # e.g. a Lightning module's "model." attribute
        cut = len(first.pop()) + 1
        if {k[cut:] for k in flat} == module_keys:
            return {k[cut:]: k for k in flat}
    missing, extra = sorted(module_keys - flat)[:5], sorted(flat - module_keys)[:5]
    raise LayoutError(f"the checkpoint does not fit the module built by --model: missing {missing}, unexpected "
                      f"{extra} (first five of each)")


def _load_weights(module, ckpt):
    import torch

    from .adapters.io import _View

    view = _View(ckpt)
    keys = _key_map(set(module.state_dict()), view)
    sd = {mk: torch.as_tensor(np.asarray(view.flat[ck])) if not isinstance(view.flat[ck], torch.Tensor)
          else view.flat[ck] for mk, ck in keys.items()}
    module.load_state_dict(sd, strict=True)
    return view, keys


def _accuracy(module, x: np.ndarray, y: np.ndarray | None):
    if y is None:
        return None

    import torch

    from .torch.recording import call_module

    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    was = [(m, m.training) for m in module.modules()]
    module.eval()
    hits = 0
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], 256):
                out = call_module(module, x[i:i + 256], dtype, "cpu")
                if out.ndim != 2 or out.shape[0] != min(256, x.shape[0] - i):
                    return None  # not a classifier's (batch, classes) logits: no accuracy
                hits += int((out.argmax(-1).cpu().numpy() == y[i:i + 256]).sum())
    finally:
        for m, flag in was:
            m.training = flag
    return 100.0 * hits / x.shape[0]


def _load_container(path: Path):
    """The whole checkpoint: torch formats as saved (training checkpoints keep their hyper-parameters and
    other entries; ``weights_only`` loading, no pickled code runs), other formats as flat state dicts."""
    from .adapters.io import load

    if not path.is_file():
        raise _cli().CLIError(f"checkpoint not found: {path}", _cli().EXIT_FILE)
    return load(path, keep_structure=True)


def cmd_compress_model(args) -> int:
    """Run ``compress --model``; returns the exit code (errors raise, :func:`mor_lqo.cli._run` maps them)."""
    from .adapters import save
    from .adapters.reduce import _update_training_metadata
    from .errors import CalibrationError
    from .torch import compress

    cli = _cli()
    t0 = time.perf_counter()
    ratio = cli._check_compress_args(args)
    if args.descend_bound is not None:
        raise cli.CLIError("--descend-bound works on checkpoints of the S4D and LQO reference layouts, not with "
                           "--model", cli.EXIT_USAGE)
    if not args.checkpoint or not args.data:
        raise cli.CLIError("--model needs a checkpoint and --data (calibration sequences)", cli.EXIT_USAGE)
    out_dir = Path(args.out)
    cli._check_out(out_dir, args.force)
    src = Path(args.checkpoint)
    if cli._inside(src, out_dir):
        raise cli.CLIError(f"the input checkpoint {src} lies inside --out {out_dir}; choose another --out",
                           cli.EXIT_USAGE)
    module = _build_module(args.model)
    ckpt = _load_container(src)
    view, keys = _load_weights(module, ckpt)
    x, y = cli._load_data(args.data)
    xc = x[: args.calibration]
    try:
        res = compress(module, xc, ratio=ratio, order=args.order, budget=args.budget, method=args.method,
                       executor=args.executor, progress=not args.no_progress, options=cli.method_options(args),
                       **cli.parse_settings(args.settings))
    except CalibrationError as exc:
        raise cli.CLIError(f"{args.data}: {exc}", cli.EXIT_FILE) from exc
    new_sd = res.module.state_dict() if not hasattr(res.module, "module") else res.module.module.state_dict()
    new_ckpt, ck_notes = _update_training_metadata(view.rebuild({keys[k]: v for k, v in new_sd.items()}),
                                                   res.result.layers)
    report = {"mor_lqo": __version__, "source": str(src), "model": args.model, **res.report,
              "accuracy": {"before": _accuracy(module, x, y), "after": _accuracy(res.module, x, y)},
              "checkpoint_notes": ck_notes}
    out_ckpt = out_dir / f"{src.stem}_compressed{src.suffix}"
    report["output"] = {"checkpoint": str(out_ckpt), "report": str(out_dir / "report.json")}
    try:
        with staged_output_dir(out_dir, args.force) as stage:
            save(new_ckpt, stage / out_ckpt.name, overwrite=True)
            report["timings"]["end_to_end"] = time.perf_counter() - t0
            cli._atomic_write_bytes(stage / "report.json",
                                    json.dumps(cli._clean(report), indent=2, default=cli._json_default).encode())
    except OutputExistsError as exc:
        raise cli.CLIError(str(exc), cli.EXIT_OUTPUT) from exc
    if not args.quiet:
        _print_summary(report)
    print(f"wrote {out_ckpt}")
    print(f"wrote {out_dir / 'report.json'}")
    return cli.EXIT_OK


def _print_summary(rep: dict) -> None:
    print(f"\n{'block':<24} {'order':>11} {'stored':>9} {'rel h2 err (L)':>15} {'output err':>11}")
    for b in rep["blocks"]:
        rel = "-" if b.get("rel_h2_error_L") is None else f"{b['rel_h2_error_L']:.3g}"
        oe = "-" if b.get("output_error") is None else f"{b['output_error']:.3g}"
        print(f"{b['name']:<24} {b['order_before']:>4} -> {b['order_after']:<4} {b['stored_before']:>3} -> "
              f"{b['stored_after']:<3} {rel:>15} {oe:>11}")
    p = rep["parameters"]
    removed = 100 * (1 - p["after"] / p["before"])
    print(f"trainable parameters  {p['before']:,d} -> {p['after']:,d} ({removed:.1f} % removed)")
    a = rep["accuracy"]
    if a["before"] is not None:
        delta = a["after"] - a["before"]
        print(f"accuracy              {a['before']:.2f} % -> {a['after']:.2f} % ({delta:+.2f} points)")
    print()
