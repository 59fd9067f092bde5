"""mor_lqo: model-order reduction of LTI and linear-quadratic-output systems, and Deep-SSM compression.

Core objects and functions::

    LQOSystem, LTISystem                      immutable system objects (systems.py)
    lyapunov, sylvester, stein, stein_sylvester   matrix equations (equations.py)
    h2_norm, h2_inner, h2_error               h2 quantities (norms.py)
    h2_error_grad                             squared error and its gradient (gradients.py)
    hankel_singular_values                    (gramians.py)
"""

from __future__ import annotations

from . import errors
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
