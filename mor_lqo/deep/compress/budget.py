"""Orders, ratios and parameter budgets: parsing ratios, per-block orders, parameter counts per order."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np

from ...adapters.block import Block, HalfModes
from ...adapters.registry import family
from .constants import CompressionError


def parse_ratio(value) -> Fraction:
    """A state ratio in (0, 1] from a number or a string such as ``"1/32"``, ``"0.125"`` or ``"32x"``.

    Raises
    ------
    CompressionError
        If the value is not a number in (0, 1] (``"32x"`` means 1/32).
    """
    try:
        if isinstance(value, str):
            v = value.strip().lower()
            if v.endswith("x"):
                fr = 1 / Fraction(v[:-1])
            else:
                fr = Fraction(v)
        elif isinstance(value, (bool, np.bool_)):
            raise TypeError
        else:
            if not math.isfinite(float(value)):
                raise ValueError
            fr = Fraction(value).limit_denominator(1 << 20)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise CompressionError(f"ratio must be a number in (0, 1] such as 1/32, 0.125 or '32x', got {value!r}") from exc
    if not 0 < fr <= 1:
        raise CompressionError(f"ratio must be in (0, 1] (the fraction of the SSM state kept), got {value!r}")
    return fr


def _even_order(x: float, full: int) -> int:
    r = max(2, 2 * int(round(x / 2)))
    return min(r, full)


def _n(values) -> int:
    return int(sum(int(np.prod(np.shape(v))) for v in values))


def _param_model(block: Block, flat: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """(fixed, per stored mode) SSM parameters of a block, from exact write-backs of 1 and 2 modes."""
    fam = family(block.arch)
    if fam.reduce_block is not None or any(u.modes is None for u in block.units) or block.stored < 2:
        before = _n(flat[k] for k in block.keys)
        return 0.0, before / max(block.stored, 1)
    sizes = []
    for k in (1, 2):
        modes = [u.modes.select(np.arange(k)) for u in block.units]
        arrays, _ = fam.write_back(block, modes, None)
        sizes.append(_n(arrays.get(key, flat[key]) for key in block.keys))
    per = sizes[1] - sizes[0]
    return float(sizes[0] - per), float(per)


def _orders_from(order, blocks: Sequence[Block]) -> dict[str, int]:
    names = [b.name for b in blocks]
    if isinstance(order, Mapping):
        unknown = set(order) - set(names)
        if unknown:
            raise CompressionError(f"order names unknown blocks {sorted(unknown)}; blocks: {names}")
        raw = dict(order)
    elif isinstance(order, (list, tuple, np.ndarray)):
        if len(order) != len(blocks):
            raise CompressionError(f"order has {len(order)} entries for {len(blocks)} blocks")
        raw = dict(zip(names, order))
    else:
        raw = {n: order for n in names}
    out = {}
    full = {b.name: b.order for b in blocks}
    for n, r in raw.items():
        if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 1:
            raise CompressionError(f"order must be a positive integer (real order per unit), got {r!r} for {n}")
        if r % 2:
            raise CompressionError(f"order {r} for {n} is odd; the layouts store conjugate pairs, so the real "
                                   "order must be even")
        out[n] = min(int(r), full[n])
    return out


def _check_budget(budget, blocks, pm) -> float:
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not math.isfinite(budget) or budget <= 0:
        raise CompressionError(f"budget must be a positive number of SSM parameters, got {budget!r}")
    minimum = sum(pm[b.name][0] + pm[b.name][1] for b in blocks)
    if budget < minimum:
        raise CompressionError(f"budget {budget:g} is below the minimum {minimum:g} SSM parameters (one conjugate "
                               "pair per unit in every block)")
    return float(budget)


def _uniform_for_budget(budget: float, blocks, pm) -> dict[str, int]:
    """The largest common stored count (capped per block) whose SSM parameters fit the budget."""
    best = 1
    for k in range(1, max(b.stored for b in blocks) + 1):
        cost = sum(pm[b.name][0] + pm[b.name][1] * min(k, b.stored) for b in blocks)
        if cost <= budget + 1e-9:
            best = k
    return {b.name: min(2 * best, b.order) for b in blocks}


def _layer_params(modes: Sequence[HalfModes], siso: bool) -> dict:
    """Reduced SSM parameters of one layer in the ``ssm_params`` format of the numpy models."""
    if not siso:
        (hm,) = modes
        return {"Lambda_bar": hm.lam, "B_bar": hm.B, "C": hm.C, "D": np.diag(hm.D) if hm.D.ndim == 2 and
                hm.D.shape[0] == hm.D.shape[1] and np.count_nonzero(hm.D - np.diag(np.diag(hm.D))) == 0 else hm.D,
                "M": hm.M if hm.M is not None else np.zeros((hm.p, hm.n, hm.n), np.complex128), "kappa": hm.kappa}
    n = max(hm.n for hm in modes)
    H = len(modes)
    lam = np.zeros((H, n), np.complex128)
    B = np.zeros((H, n), np.complex128)
    C = np.zeros((H, n), np.complex128)
    for h, hm in enumerate(modes):
        lam[h, : hm.n], B[h, : hm.n], C[h, : hm.n] = hm.lam, hm.B[:, 0], hm.C[0]
    return {"Lambda_bar": lam, "B_bar": B, "C": C, "D": np.array([hm.D[0, 0] for hm in modes]),
            "kappa": modes[0].kappa}


def cost_full_ok(pm_b, block: Block, budget: float) -> bool:
    """Whether keeping the block at full order can fit in the budget at all."""
    return pm_b[0] + pm_b[1] * block.stored <= budget
