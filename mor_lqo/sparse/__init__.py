"""Large sparse LTI / LQO systems: low-rank Gramians (LR-ADI), h2 norms and errors, BT and IRKA.

See docs/sparse.md. Continuous and discrete time (E x_k = A x_{k-1} + B u_k), optional feed-through D.
"""

from .balanced import balanced_truncation
from .gramians import controllability_factor, observability_factor
from .irka import irka
from .lradi import LowRankFactor, compress_columns, lradi, projection_shifts
from .norms import DENSE_MAX_N, error_system, h2_error, h2_inner_parts, h2_norm, h2_norm_parts, use_dense
from .optimality import h2_optimality_residuals
from .sylvester import sparse_dense_sylvester
from .system import ShiftedSolver, SingularPencilError, SparseLQOSystem, as_sparse_system
from .tsia import tsia

__all__ = [
    "SparseLQOSystem", "ShiftedSolver", "SingularPencilError", "as_sparse_system",
    "LowRankFactor", "lradi", "projection_shifts", "compress_columns",
    "controllability_factor", "observability_factor",
    "h2_norm", "h2_norm_parts", "h2_inner_parts", "h2_error", "error_system", "use_dense", "DENSE_MAX_N",
    "sparse_dense_sylvester", "balanced_truncation", "irka", "tsia", "h2_optimality_residuals",
]
