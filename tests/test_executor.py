"""The process pool of :mod:`mor_lqo.deep.executor`: workers run the serial numba kernels.

A worker forked from a parent whose OpenMP runtime already ran threads (PyTorch, or numba's own ``omp``
layer) can hang in its first parallel region; the workers therefore use the serial kernels, which give
the same values.
"""

from __future__ import annotations

import numpy as np

from mor_lqo.deep.executor import make_executor
from mor_lqo.kernels import cauchy


def _worker_state_and_value(seed: int):
    rng = np.random.default_rng(seed)
    n = 1200  # above the serial threshold: the parent runs the parallel kernel
    lam = -rng.uniform(0.1, 2.0, n) + 1j * rng.uniform(-5, 5, n)
    B, C = rng.standard_normal((n, 2)), rng.standard_normal((2, n))
    return cauchy._SERIAL_ONLY, complex(np.asarray(cauchy.cauchy_norm2(lam, B, C, False)))


def test_process_pool_workers_use_serial_kernels():
    pool = make_executor("process", max_workers=2)
    try:
        flag, value = pool.submit(_worker_state_and_value, 3).result(timeout=300)
    finally:
        pool.shutdown()
    assert flag is True and cauchy._SERIAL_ONLY is False  # the parent keeps its parallel kernels
    parent_flag, parent_value = _worker_state_and_value(3)
    assert parent_flag is False
    assert abs(value - parent_value) <= 1e-12 * abs(parent_value)  # serial and parallel sums agree
