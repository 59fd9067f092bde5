"""Shared pytest configuration: hypothesis profiles and small system factories."""

from __future__ import annotations

import os
from pathlib import Path

# numba's OpenMP layer spins between parallel regions; on a shared 2-core machine that costs 20-40 ms
# per region. Passive waiting keeps the many small parallel calls of the suite cheap.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The suite is many small dense solves: one BLAS thread avoids oversubscription on 2-core machines
# (numba's own thread pool is unaffected).
try:
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(os.environ.get("MOR_LQO_TEST_BLAS_THREADS", "1")))
except ImportError:  # pragma: no cover
    pass

# The AdvecDiff LQO benchmark (n = 300), in the repository: tests/data/README.md (source, licence)
ADVECDIFF = Path(__file__).resolve().parent / "data" / "AdvecDiff_n300.mat"


def random_stable(n, m, p, *, discrete, complex_=False, rng, radius=0.9, shift=0.5):
    """Random dense stable (A, B, C): spectral radius <= radius (discrete) or abscissa <= -shift."""
    A = rng.standard_normal((n, n))
    if complex_:
        A = A + 1j * rng.standard_normal((n, n))
    lam = np.linalg.eigvals(A)
    if discrete:
        A = A * (radius / np.max(np.abs(lam)))
    else:
        A = A - (np.max(lam.real) + shift) * np.eye(n)
    B = rng.standard_normal((n, m))
    C = rng.standard_normal((p, n))
    if complex_:
        B = B + 1j * rng.standard_normal((n, m))
        C = C + 1j * rng.standard_normal((p, n))
    return A, B, C


def random_sym(p, n, rng, complex_=False):
    M = rng.standard_normal((p, n, n))
    if complex_:
        M = M + 1j * rng.standard_normal((p, n, n))
    return (M + np.conj(np.swapaxes(M, 1, 2))) / 2


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
