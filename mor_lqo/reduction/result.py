"""The result object every reducer returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..systems import LQOSystem


@dataclass(frozen=True)
class ReductionResult:
    """Outcome of a model-order reduction.

    Attributes
    ----------
    rom : LQOSystem
        Reduced model: same time domain, sampling time, convention, m and p as the full model;
        ``rom.order`` is the requested real state dimension r.
    h2_error : float
        Absolute h2 error ``||S - S^||`` (``inf`` if the ROM is unstable).
    h2_norm : float
        h2 norm of the full model (so ``relative_error = h2_error / h2_norm``).
    method : str
        Name of the method ("bt", "lqo-bt", "irka", "lqo-irka", "tsia", "lqo-tsia", "h2", "modal").
    converged : bool
        Whether an iterative method met its tolerance (always True for direct methods).
    iterations : int
        Number of iterations (0 for direct methods).
    history : tuple of float
        Per-iteration convergence measure (method specific, documented by each reducer).
    hsv : ndarray or None
        Hankel singular values (balanced truncation).
    error_bound : float or None
        A priori error bound where one exists (LTI BT: ``2 * sum of discarded HSVs``, an H-infinity bound).
    shifts : ndarray or None
        Final interpolation shifts (IRKA-type methods).
    info : Mapping
        Anything else (gradient norm, initial error, ...).
    """

    rom: LQOSystem
    h2_error: float
    h2_norm: float
    method: str
    converged: bool = True
    iterations: int = 0
    history: tuple = ()
    hsv: np.ndarray | None = None
    error_bound: float | None = None
    shifts: np.ndarray | None = None
    info: Mapping = field(default_factory=dict)

    @property
    def relative_error(self) -> float:
        """``h2_error / h2_norm`` of the full model; NaN where undefined (norm 0 or infinite: a
        continuous-time model with D != 0)."""
        if not (0 < self.h2_norm < float("inf")):
            return float("nan")
        return self.h2_error / self.h2_norm

    def __repr__(self) -> str:
        return (f"ReductionResult(method={self.method!r}, r={self.rom.order}, "
                f"h2_error={self.h2_error:.4g}, relative={self.relative_error:.3g}, "
                f"converged={self.converged}, iterations={self.iterations})")
