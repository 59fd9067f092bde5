"""Small sparse test models (n ~ 300-600) for tests/sparse."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mor_lqo.sparse import SparseLQOSystem


def heat2d(N: int, m: int = 1, p: int = 1):
    """2-D heat equation, 5-point stencil, n = N^2 (symmetric, real spectrum)."""
    h = 1.0 / (N + 1)
    T = sp.diags([-2 * np.ones(N), np.ones(N - 1), np.ones(N - 1)], [0, 1, -1]) / h**2
    I = sp.identity(N)
    A = (sp.kron(T, I) + sp.kron(I, T)).tocsc()
    rng = np.random.default_rng(1)
    return A, rng.random((N * N, m)), rng.random((p, N * N)) / (N * N)


def advdiff(n: int = 400, seed: int = 0, complex_=False, with_E=False, lqo=False, m=2, p=2):
    """Non-normal sparse matrix with complex eigenvalues: a 1-D convection-diffusion operator plus a
    sparse skew perturbation; optional diagonal mass matrix E and sparse quadratic outputs M_j."""
    rng = np.random.default_rng(seed)
    h = 1.0 / (n + 1)
    T = sp.diags([-2 * np.ones(n), 1.4 * np.ones(n - 1), 0.6 * np.ones(n - 1)], [0, 1, -1]) / h**2
    K = sp.random(n, n, density=3.0 / n, random_state=seed, data_rvs=rng.standard_normal)
    A = (T * 1e-4 + 30.0 * (K - K.T) - 1.0 * sp.identity(n)).tocsc()
    if complex_:
        A = (A + 2j * sp.diags(rng.standard_normal(n))).tocsc()
    B = rng.standard_normal((n, m))
    C = rng.standard_normal((p, n))
    E = sp.diags(1.0 + rng.random(n)).tocsc() if with_E else None
    M = None
    if lqo:
        x = np.linspace(0, 1, n)
        M = [sp.diags(np.exp(-((x - 0.3 - 0.4 * j) ** 2) / 0.01)).tocsc() for j in range(p)]
    if complex_:
        B = B + 1j * rng.standard_normal((n, m))
    return SparseLQOSystem(A, B, C, M, E=E)
