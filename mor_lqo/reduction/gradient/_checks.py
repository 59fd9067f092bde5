"""Argument checks shared by the gradient reducers (each raises a specific error with the bad value)."""

from __future__ import annotations

import math
import numbers

from ...errors import InvalidArgumentError, NotASystemError
from ...gramians import check_stable
from ...systems import LQOSystem


def _check_system(sys) -> LQOSystem:
    if not isinstance(sys, LQOSystem):
        raise NotASystemError(f"expected an LQOSystem, got {type(sys).__name__}")
    check_stable(sys)
    return sys


def _positive(x, name) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x <= 0:
        raise InvalidArgumentError(f"{name} must be a positive finite number, got {x!r}")
    return float(x)


def _nonneg(x, name) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative finite number, got {x!r}")
    return float(x)


def _check_margin(margin, disc: bool) -> float:
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not math.isfinite(margin):
        raise InvalidArgumentError(f"margin must be a finite number, got {margin!r}")
    margin = float(margin)
    if margin < 0 or (disc and margin >= 1):
        raise InvalidArgumentError(f"margin must satisfy 0 <= margin{' < 1' if disc else ''}, got {margin}")
    return margin


def _check_maxiter(maxiter):
    """``maxiter`` unchanged if it is a non-negative integer (bool excluded), else InvalidArgumentError."""
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0:
        raise InvalidArgumentError(f"maxiter must be a non-negative integer, got {maxiter!r}")
    return maxiter
