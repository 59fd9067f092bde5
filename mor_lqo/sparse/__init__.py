"""Large sparse LTI / LQO systems: low-rank Gramians (LR-ADI), h2 norms and errors, BT and IRKA.

See docs/sparse.md. Continuous time only; D = 0.
"""

from .gramians import controllability_factor, observability_factor
from .lradi import LowRankFactor, compress_columns, lradi, projection_shifts
from .system import ShiftedSolver, SingularPencilError, SparseLQOSystem, as_sparse_system

__all__ = [
    "SparseLQOSystem", "ShiftedSolver", "SingularPencilError", "as_sparse_system",
    "LowRankFactor", "lradi", "projection_shifts", "compress_columns",
    "controllability_factor", "observability_factor",
]
