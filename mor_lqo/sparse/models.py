r"""Sparse benchmark models of any size: the 2-D heat equation and the AdvecDiff LQO model.

* :func:`heat2d`: :math:`\dot x = \Delta x + Bu` on the unit square, Dirichlet boundary, 5-point
  stencil on an N x N grid (n = N^2), inputs: indicator functions of m strips of the lower half,
  outputs: averages over p strips of the upper half.
* :func:`advecdiff_lqo`: the 1-D advection–diffusion LQO benchmark of Reiter, Pontes Duff, Gosea,
  Gugercin (arXiv:2405.05951) for any number of grid points ``nx``: upwind advection (speed 1),
  diffusion 0.01, grid width h = 1/nx, Dirichlet inflow and Neumann outflow inputs, output
  :math:`y = -h\sum_i x_i + (h/2)\sum_i x_i^2` (its constant offset is not part of the input–output
  map). With ``nx = 300`` it reproduces ``tests/data/AdvecDiff_n300.mat`` exactly (tests/sparse).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .system import SparseLQOSystem

__all__ = ["heat2d", "advecdiff_lqo"]


def heat2d(N: int, m: int = 1, p: int = 1) -> SparseLQOSystem:
    """2-D heat equation with n = N^2 states, m inputs and p outputs (module docstring)."""
    h = 1.0 / (N + 1)
    T = sp.diags([-2 * np.ones(N), np.ones(N - 1), np.ones(N - 1)], [0, 1, -1]) / h**2
    I = sp.identity(N)
    A = (sp.kron(T, I) + sp.kron(I, T)).tocsc()
    x = (np.arange(N) + 1) * h
    X, Y = np.meshgrid(x, x, indexing="ij")
    B = np.stack([((X > 0.1 + 0.8 * k / m) & (X < 0.1 + 0.8 * (k + 1) / m) & (Y < 0.5)).ravel() * 1.0
                  for k in range(m)], 1)
    C = np.stack([((X > 0.1 + 0.8 * k / p) & (X < 0.1 + 0.8 * (k + 1) / p) & (Y > 0.5)).ravel() * 1.0
                  for k in range(p)], 0)
    C /= C.sum(axis=1, keepdims=True)
    return SparseLQOSystem(A, B, C)


def advecdiff_lqo(nx: int, nu: float = 0.01, speed: float = 1.0) -> SparseLQOSystem:
    """AdvecDiff LQO model with n = nx states, m = 2 inputs, one linear-quadratic output."""
    h = 1.0 / nx
    d, lo = nu / h**2, nu / h**2 + speed / h
    main = np.full(nx, -2 * nu / h**2 - speed / h)
    main[-1] = -lo  # Neumann outflow
    A = sp.diags([main, np.full(nx - 1, lo), np.full(nx - 1, d)], [0, -1, 1], format="csc")
    B = np.zeros((nx, 2))
    B[0, 0] = lo  # Dirichlet inflow
    B[-1, 1] = 1.0 / h  # Neumann flux
    C = np.full((1, nx), -h)
    M = sp.identity(nx, format="csc") * (h / 2)
    return SparseLQOSystem(A, B, C, [M])
