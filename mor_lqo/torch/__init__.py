"""Compress the SSM blocks of torch modules: :func:`compress` (``mor_lqo.torch.compress(module, calibration)``);
prune the states of input-dependent Mamba mixers from data: :func:`prune_states`; minimise the output-error
bound of a compressed reference model over all its reduced blocks jointly: :func:`minimise_bound`.

This subpackage imports torch; the rest of mor_lqo never does. See docs/adapters.md, "Compressing a torch
module".
"""

from __future__ import annotations

from .api import TorchCompressionResult, compress
from .bound_descent import BoundDescentResult, minimise_bound
from .mamba import prune_states
from .modules import find_blocks, unwrap
from .rebuild import count_parameters

__all__ = ["compress", "TorchCompressionResult", "find_blocks", "unwrap", "count_parameters", "prune_states",
           "minimise_bound", "BoundDescentResult"]
