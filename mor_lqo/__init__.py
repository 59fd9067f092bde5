"""mor_lqo: model-order reduction of LTI and linear-quadratic-output systems, and Deep-SSM compression.

Core objects and functions::

    LQOSystem, LTISystem                      immutable system objects (systems.py)
    lyapunov, sylvester, stein, stein_sylvester   matrix equations (equations.py)
    h2_norm, h2_inner, h2_error               h2 quantities (norms.py)
    h2_error_grad                             squared error and its gradient (gradients.py)
    hankel_singular_values                    (gramians.py)
    mor_lqo.sparse                            large sparse systems, low-rank Gramians (docs/sparse.md)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import errors

# Public names are imported on first access (PEP 562): ``import mor_lqo`` stays cheap and numba,
# scipy.optimize and the reducers are loaded only by the code that uses them.
_LAZY = {
    "Diagonal": "equations", "lyapunov": "equations", "stein": "equations",
    "stein_sylvester": "equations", "sylvester": "equations",
    "H2Gradient": "gradients", "h2_error_grad": "gradients",
    "controllability_gramian": "gramians", "cross_gramian": "gramians",
    "hankel_singular_values": "gramians", "observability_gramian": "gramians",
    "H2Parts": "norms", "h2_error": "norms", "h2_error_parts": "norms", "h2_inner": "norms",
    "h2_inner_parts": "norms", "h2_norm": "norms", "h2_norm_parts": "norms",
    "ReductionResult": "reduction", "balanced_truncation": "reduction", "h2_gradient": "reduction",
    "h2_gradient_batch": "reduction", "h2_optimality_residuals": "reduction",
    "interpolation_residuals": "reduction", "irka": "reduction", "modal_truncation": "reduction",
    "reduce_batch": "reduction", "tsia": "reduction",
    "LQOSystem": "systems", "LTISystem": "systems",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        try:  # submodules (mor_lqo.reduction, mor_lqo.adapters, ...)
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - static analysis sees the eager imports
    from .equations import Diagonal, lyapunov, stein, stein_sylvester, sylvester
    from .gradients import H2Gradient, h2_error_grad
    from .gramians import (
        controllability_gramian,
        cross_gramian,
        hankel_singular_values,
        observability_gramian,
    )
    from .norms import (
        H2Parts,
        h2_error,
        h2_error_parts,
        h2_inner,
        h2_inner_parts,
        h2_norm,
        h2_norm_parts,
    )
    from .reduction import (
        ReductionResult,
        balanced_truncation,
        h2_gradient,
        h2_gradient_batch,
        h2_optimality_residuals,
        interpolation_residuals,
        irka,
        modal_truncation,
        reduce_batch,
        tsia,
    )
    from .systems import LQOSystem, LTISystem

__version__ = "0.1.0"

__all__ = [
    "LQOSystem",
    "LTISystem",
    "errors",
    "Diagonal",
    "lyapunov",
    "sylvester",
    "stein",
    "stein_sylvester",
    "h2_norm",
    "h2_norm_parts",
    "h2_inner",
    "h2_inner_parts",
    "h2_error",
    "h2_error_parts",
    "H2Parts",
    "h2_error_grad",
    "H2Gradient",
    "controllability_gramian",
    "observability_gramian",
    "cross_gramian",
    "hankel_singular_values",
    "ReductionResult",
    "balanced_truncation",
    "modal_truncation",
    "irka",
    "tsia",
    "h2_gradient",
    "h2_gradient_batch",
    "reduce_batch",
    "h2_optimality_residuals",
    "interpolation_residuals",
    "__version__",
]
