"""Plain numpy/scipy references for :mod:`mor_lqo.kernels.triangular_numba` (used by the tests)."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla


def tri_stein_sylvester(T, S, F):
    r"""Solve :math:`T Y S^H - Y + F = 0` column by column with scipy triangular solves."""
    n, r = F.shape
    Y = np.zeros((n, r), np.complex128)
    for k in range(r - 1, -1, -1):
        g = Y[:, k + 1:] @ np.conj(S[k, k + 1:])
        rhs = -F[:, k] - T @ g
        Y[:, k] = sla.solve_triangular(np.conj(S[k, k]) * T - np.eye(n), rhs)
    return Y


def diag_left_sylvester(lam, S, F, discrete):
    r"""Dense reference: builds diag(lam) and solves the Kronecker system (small sizes only)."""
    n, r = F.shape
    A = np.diag(lam)
    I_n, I_r = np.eye(n), np.eye(r)
    # vec(A Y B) = (B^T kron A) vec(Y) with column-major vec
    SH = np.conj(S).T
    if discrete:
        K = np.kron(SH.T, A) - np.kron(I_r, I_n)
    else:
        K = np.kron(I_r, A) + np.kron(SH.T, I_n)
    y = np.linalg.solve(K, -F.reshape(-1, order="F"))
    return y.reshape(n, r, order="F")


def tri_stein_sylvester_real(T, S, F):
    r"""Dense reference for real :math:`T Y S^T - Y + F = 0`: the Kronecker system (small sizes)."""
    n, r = F.shape
    K = np.kron(S, T) - np.eye(n * r)
    y = np.linalg.solve(K, -F.reshape(-1, order="F"))
    return y.reshape(n, r, order="F")
