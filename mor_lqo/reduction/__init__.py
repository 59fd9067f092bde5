"""Model-order reduction methods. Every reducer returns a :class:`ReductionResult`.

Names are imported on first access (PEP 562), so using one reducer does not import the others
(the gradient reducers need scipy.optimize and numba).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# irka and tsia share their names with their modules: imported eagerly so that the package
# attribute is the function, not the submodule (they need neither numba nor scipy.optimize)
from .irka import irka
from .tsia import tsia

_LAZY = {
    "ReductionResult": "result",
    "balanced_truncation": "balanced",
    "modal_truncation": "modal",
    "h2_gradient": "gradient",
    "h2_gradient_batch": "gradient",
    "h2_gradient_joint": "gradient",
    "H2Objective": "gradient",
    "H2BatchResult": "gradient",
    "reduce_batch": "batch",
    "h2_optimality_residuals": "optimality",
    "interpolation_residuals": "optimality",
}

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


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - static analysis sees the eager imports
    from .balanced import balanced_truncation
    from .batch import reduce_batch
    from .gradient import H2BatchResult, H2Objective, h2_gradient, h2_gradient_batch, h2_gradient_joint
    from .modal import modal_truncation
    from .optimality import h2_optimality_residuals, interpolation_residuals
    from .result import ReductionResult
