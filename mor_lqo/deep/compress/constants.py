"""Settings shared by the compression modules: method names, defaults, ridges, tolerances, the error class."""

from __future__ import annotations

import math
from fractions import Fraction

from ...errors import MorLqoError

METHODS = ("modal", "bt", "irka", "tsia", "h2", "bound")


DEFAULT_METHOD = "h2"


DEFAULT_RATIO = Fraction(1, 8)


DATA_RIDGE = 1e-2


DATA_FIT_ITERS = 200  # L-BFGS iterations of the data-weighted joint fit of MIMO/LQO units
# ... stopped earlier once J has decreased by less than 0.1 % over 20 iterations (relative error ~0.05 %)
DATA_FIT_STALL = (20, 1e-3)


FIT_RIDGE = 1e-4


CHECK_LAGS = 64


WRITEBACK_RTOL = 1e-8


_NU_BOUNDS = (math.log(1e-6), math.log(20.0))  # decay rate e^nu of the fitted poles


class CompressionError(MorLqoError, ValueError):
    """Invalid compression request (method, ratio, budget) or a failed reduction."""
