"""Numba kernels for triangular Stein–Sylvester equations (the discrete Bartels–Stewart back end).

Reference implementation for the tests: :mod:`mor_lqo.kernels.triangular_reference`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def tri_stein_sylvester(T, S, F):  # pragma: no cover - compiled
    r"""Solve :math:`T Y S^H - Y + F = 0` for upper-triangular complex T (n, n) and S (r, r).

    Column recursion from the last column: with :math:`g = \sum_{j>k} \bar S_{kj} Y_{:,j}`,
    :math:`(\bar S_{kk} T - I) Y_{:,k} = -F_{:,k} - T g`, solved by back substitution.
    Cost O(n^2 r + n r^2), memory O(n) besides Y.
    """
    n, r = F.shape
    Y = np.zeros((n, r), np.complex128)
    g = np.zeros(n, np.complex128)
    rhs = np.zeros(n, np.complex128)
    for k in range(r - 1, -1, -1):
        for i in range(n):
            g[i] = 0.0
        for j in range(k + 1, r):
            s = np.conj(S[k, j])
            if s != 0:
                for i in range(n):
                    g[i] += s * Y[i, j]
        for i in range(n):
            acc = -F[i, k]
            for l in range(i, n):
                acc -= T[i, l] * g[l]
            rhs[i] = acc
        sk = np.conj(S[k, k])
        for i in range(n - 1, -1, -1):
            acc = rhs[i]
            for l in range(i + 1, n):
                acc -= sk * T[i, l] * Y[l, k]
            Y[i, k] = acc / (sk * T[i, i] - 1.0)
    return Y


@njit(cache=True)
def diag_left_sylvester(lam, S, F, discrete):  # pragma: no cover - compiled
    r"""Solve with diagonal left operand: continuous :math:`\Lambda Y + Y S^H + F = 0`,
    discrete :math:`\Lambda Y S^H - Y + F = 0`, S (r, r) upper triangular. Cost O(n r^2)."""
    n, r = F.shape
    Y = np.zeros((n, r), np.complex128)
    for k in range(r - 1, -1, -1):
        sk = np.conj(S[k, k])
        for i in range(n):
            g = 0.0j
            for j in range(k + 1, r):
                g += np.conj(S[k, j]) * Y[i, j]
            if discrete:
                Y[i, k] = (-F[i, k] - lam[i] * g) / (lam[i] * sk - 1.0)
            else:
                Y[i, k] = (-F[i, k] - g) / (lam[i] + sk)
    return Y
