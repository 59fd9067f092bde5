"""Plain numpy/scipy reference for :mod:`mor_lqo.kernels.hammarling_numba` (used by the tests).

The same column recursion, written with scipy triangular solves and a QR factorisation of the stacked
``[R_2; v]`` instead of the Givens update.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla


def tri_hammarling(T, R, discrete):
    r"""Upper-triangular U with :math:`X = U^H U` solving :math:`T^H X + X T + R^H R = 0` (continuous)
    or :math:`T^H X T - X + R^H R = 0` (discrete) for upper-triangular T, R (n, n)."""
    n = T.shape[0]
    R = np.array(R, np.complex128)
    U = np.zeros((n, n), np.complex128)
    for i in range(n):
        lam, rho = T[i, i], R[i, i]
        delta = 1.0 - abs(lam) ** 2 if discrete else -2.0 * lam.real
        if not delta > 0:
            raise ValueError("unstable diagonal entry of the Schur form")
        mu = abs(rho) / np.sqrt(delta)
        alpha = np.sqrt(delta) * (rho / abs(rho) if abs(rho) > 0 else 1.0)
        U[i, i] = mu
        if i == n - 1:
            break
        t, r, T2 = T[i, i + 1:], R[i, i + 1:], T[i + 1:, i + 1:]
        m = n - i - 1
        if discrete:  # u (conj(lam) T2 - I) = -conj(lam) mu t - conj(alpha) r
            Mh = (np.conj(lam) * T2 - np.eye(m)).conj().T
            u = sla.solve_triangular(Mh, (-np.conj(lam) * mu * t - np.conj(alpha) * r).conj(), lower=True).conj()
            v = lam * r - alpha * (mu * t + u @ T2)
        else:  # u (T2 + conj(lam) I) = -mu t - conj(alpha) r
            Mh = (T2 + np.conj(lam) * np.eye(m)).conj().T
            u = sla.solve_triangular(Mh, (-mu * t - np.conj(alpha) * r).conj(), lower=True).conj()
            v = r - alpha * u
        U[i, i + 1:] = u
        R[i + 1:, i + 1:] = np.linalg.qr(np.vstack([R[i + 1:, i + 1:], v[None, :]]), mode="r")
    return U
