"""Model-order reduction methods. Every reducer returns a :class:`ReductionResult`."""

from __future__ import annotations

from .balanced import balanced_truncation
from .batch import reduce_batch
from .gradient import H2BatchResult, H2Objective, h2_gradient, h2_gradient_batch, h2_gradient_joint
from .irka import irka
from .modal import modal_truncation
from .optimality import h2_optimality_residuals, interpolation_residuals
from .result import ReductionResult
from .tsia import tsia

__all__ = [
    "ReductionResult",
    "balanced_truncation",
    "modal_truncation",
    "irka",
    "tsia",
    "h2_gradient",
    "h2_gradient_batch",
    "h2_gradient_joint",
    "H2Objective",
    "H2BatchResult",
    "reduce_batch",
    "h2_optimality_residuals",
    "interpolation_residuals",
]
