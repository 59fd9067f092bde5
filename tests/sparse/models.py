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
    """2-D convection-diffusion on an N x N grid (n = N^2 rounded down), central differences with cell
    Peclet number 2 in x, so the operator is non-normal with complex eigenvalues; optional diagonal
    mass matrix E, sparse quadratic outputs M_j (Gaussian weights) and a complex perturbation."""
    rng = np.random.default_rng(seed)
    N = int(np.sqrt(n))
    n = N * N
    h = 1.0 / (N + 1)
    L = sp.diags([-2 * np.ones(N), np.ones(N - 1), np.ones(N - 1)], [0, 1, -1]) / h**2
    D = sp.diags([np.ones(N - 1), -np.ones(N - 1)], [1, -1]) / (2 * h)
    I = sp.identity(N)
    c = 4.0 / h  # cell Peclet number c h / 2 = 2
    A = (sp.kron(L, I) + sp.kron(I, L) - c * sp.kron(I, D)).tocsc()
    if complex_:
        A = (A + 1j * 50.0 * sp.diags(rng.standard_normal(n))).tocsc()
    B = rng.standard_normal((n, m))
    C = rng.standard_normal((p, n)) / n
    E = sp.diags(1.0 + rng.random(n)).tocsc() if with_E else None
    M = None
    if lqo:
        x = np.tile(np.linspace(0, 1, N), N)
        M = [sp.diags(np.exp(-((x - 0.3 - 0.4 * j) ** 2) / 0.01) / n).tocsc() for j in range(p)]
    if complex_:
        B = B + 1j * rng.standard_normal((n, m))
    return SparseLQOSystem(A, B, C, M, E=E)
