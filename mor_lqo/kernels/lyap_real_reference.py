"""Plain numpy reference for :mod:`mor_lqo.kernels.lyap_real_numba` (used by the tests): the Kronecker
form of the equations, solved densely (small sizes only)."""

from __future__ import annotations

import numpy as np


def tri_lyap_sym_real(T, F, discrete):
    r"""X with :math:`T X + X T^T + F = 0` (continuous) or :math:`T X T^T - X + F = 0` (discrete)."""
    n = T.shape[0]
    eye = np.eye(n)
    # vec(T X B) = (B^T kron T) vec X, column-major vec
    K = np.kron(T, T) - np.eye(n * n) if discrete else np.kron(eye, T) + np.kron(T, eye)
    return np.linalg.solve(K, -np.asarray(F).reshape(-1, order="F")).reshape(n, n, order="F")
