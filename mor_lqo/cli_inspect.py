r"""``mor-lqo inspect``: the SSM blocks of a checkpoint, their orders, Hankel singular values and the orders
a relative tolerance suggests (infinite horizon, or the finite-horizon Hankel operator over ``--length`` lags)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .cli import EXIT_FILE, EXIT_LAYOUT, EXIT_OK, EXIT_USAGE, CLIError, _clean, _json_default, parse_settings
from .errors import CheckpointError, LayoutError, MorLqoError

__all__ = ["cmd_inspect", "block_hsv"]


def _fir_hankel_blocks(L: int, p: int, m: int, max_dim: int = 1600) -> int:
    """Number of block rows/columns of the finite-horizon Hankel matrix (at most ``max_dim`` rows/columns)."""
    return max(1, min(L - 1, max_dim // max(p, m)))


def _fir_hsv(h: np.ndarray, L: int | None = None, max_dim: int = 1600) -> np.ndarray:
    """Singular values of the finite-horizon Hankel operator of Markov parameters h (K, p, m).

    ``H[i, j] = h[1 + i + j]`` for ``i + j + 1 < L`` (past inputs -> future outputs inside the window of
    ``L`` lags, default ``K``); the number of block rows is capped so that the matrix has at most
    ``max_dim`` rows/columns, so only the first ``2 n`` Markov parameters are needed (``h`` may be
    shorter than ``L``).
    """
    K, p, m = h.shape
    L = K if L is None else L
    n = _fir_hankel_blocks(L, p, m, max_dim)
    lag = 1 + np.arange(n)[:, None] + np.arange(n)[None, :]  # (n, n) lag of each block
    hh = np.zeros((2 * n + 1, p, m), dtype=h.dtype)
    k = min(K, 2 * n + 1)
    hh[:k] = h[:k]
    blocks = np.where((lag < L)[:, :, None, None], hh[np.minimum(lag, 2 * n)], 0.0)  # (n, n, p, m)
    Hk = blocks.transpose(0, 2, 1, 3).reshape(n * p, n * m)
    return np.linalg.svd(Hk, compute_uv=False)


def _fir_hsv_of(system, L: int) -> np.ndarray:
    """Finite-horizon Hankel singular values of a system over ``L`` lags (computes only the lags needed)."""
    n = _fir_hankel_blocks(L, system.p, system.m)
    return _fir_hsv(system.impulse_response(min(L, 2 * n + 1)), L)


def block_hsv(block, L: int, max_units: int = 64) -> np.ndarray | None:
    """Median (over units) finite-horizon Hankel singular values of a block's linear kernels."""
    if not block.lti:
        return None
    out = []
    step = max(1, len(block.units) // max_units)
    for u in block.units[::step]:
        s = _fir_hsv_of(u.system, L)
        out.append(s[: min(s.size, block.order)])
    k = min(x.size for x in out)
    return np.median(np.stack([x[:k] for x in out]), axis=0)


def cmd_inspect(args) -> int:
    from .adapters import extract
    from .adapters import load as load_checkpoint

    path = Path(args.checkpoint)
    if not path.exists():
        raise CLIError(f"checkpoint not found: {path}", EXIT_FILE)
    if not (0 < args.tol < 1):
        raise CLIError(f"--tol must be in (0, 1), got {args.tol}", EXIT_USAGE)
    if args.length is not None and args.length < 2:
        raise CLIError("--length must be >= 2", EXIT_USAGE)
    try:
        sd = load_checkpoint(path)
        blocks = extract(sd, args.arch, **parse_settings(args.settings))
    except CheckpointError as exc:
        raise CLIError(str(exc), EXIT_FILE) from exc
    except LayoutError as exc:
        raise CLIError(str(exc), EXIT_LAYOUT) from exc
    except TypeError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc
    info = {"checkpoint": str(path), "parameters": int(sum(np.asarray(v).size for v in sd.values())),
            "tol": args.tol, "length": args.length, "blocks": []}
    for b in blocks:
        e: dict[str, Any] = {"name": b.name, "arch": b.arch, "lti": b.lti, "units": len(b.units), "m": b.m,
                             "p": b.p, "stored": b.stored, "order": b.order,
                             "params": int(sum(np.asarray(sd[k]).size for k in b.keys if k in sd))}
        if b.lti:
            hsv, skipped = _unit_hsvs(b, args.length)
            if skipped:
                e["skipped_units"] = skipped
            if hsv:
                k = min(s.size for s in hsv)
                med = np.median(np.stack([s[:k] for s in hsv]), axis=0)
                e["hsv"] = [float(v) for v in med[: args.hsv]]
                sugg = [_suggest(s, args.tol) for s in hsv]
                e["suggested_order"] = {"max": int(max(sugg)), "median": int(np.median(sugg))}
        info["blocks"].append(e)
    if args.json:
        print(json.dumps(_clean(info), indent=2, default=_json_default))
        return EXIT_OK
    print(f"{path}: {len(blocks)} SSM block(s), {info['parameters']:,d} parameters")
    kind = f"finite-horizon (L={args.length})" if args.length else "infinite-horizon"
    print(f"Hankel singular values: {kind}, median over units, relative tolerance {args.tol:g}")
    for e in info["blocks"]:
        line = (f"  {e['name']:<22} {e['arch']:<7} units {e['units']:>4}  m={e['m']:<4} p={e['p']:<4} "
                f"stored {e['stored']:>4}  order {e['order']:>4}  params {e['params']:>8,d}")
        print(line)
        if "hsv" in e:
            hs = " ".join(f"{v:.3g}" for v in e["hsv"])
            so = e["suggested_order"]
            print(f"      HSV {hs}")
            print(f"      suggested order for tol {args.tol:g}: {so['max']} (all units), {so['median']} (median unit)")
        elif not e["lti"]:
            print("      input-dependent (not LTI): no Hankel singular values")
        for note in e.get("skipped_units", []):
            print(f"      skipped {note}")
    return EXIT_OK


def _suggest(s: np.ndarray, tol: float) -> int:
    """Smallest even order r with sigma_{r+1} <= tol * sigma_1 (pairs: rounded up to even)."""
    if s.size == 0 or s[0] <= 0:
        return 2
    idx = np.flatnonzero(s / s[0] <= tol)
    r = int(idx[0]) if idx.size else int(s.size)
    r = max(2, r + (r % 2))
    return r


def _unit_hsvs(block, L: int | None, max_units: int = 256) -> tuple[list[np.ndarray], list[str]]:
    """Hankel singular values of (a sample of) a block's units, and a note for each unit skipped."""
    from .gramians import hankel_singular_values

    out, skipped = [], []
    step = max(1, len(block.units) // max_units)
    for i in range(0, len(block.units), step):
        u = block.units[i]
        try:
            if L is None:
                s = np.asarray(hankel_singular_values(u.system))
            else:
                s = _fir_hsv_of(u.system, L)[: u.system.order]
        except MorLqoError as exc:
            skipped.append(f"unit {i}: {exc}")
            continue
        if not np.all(np.isfinite(s)):
            skipped.append(f"unit {i}: non-finite Hankel singular values")
            continue
        out.append(s)
    return out, skipped
