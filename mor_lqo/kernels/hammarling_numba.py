r"""Numba kernel of Hammarling's method on a complex triangular Schur form.

Reference implementation for the tests: :mod:`mor_lqo.kernels.hammarling_reference`.

Given upper-triangular complex :math:`T` (n, n) (stable: :math:`\mathrm{Re}\,t_{ii} < 0`, or
:math:`|t_{ii}| < 1` in discrete time) and upper-triangular :math:`R` (n, n), the kernel returns the
upper-triangular :math:`U` with :math:`X = U^H U` solving

.. math::

    T^H X + X T + R^H R = 0 \quad\text{(continuous)}, \qquad
    T^H X T - X + R^H R = 0 \quad\text{(discrete)},

without forming :math:`X`. Partition :math:`T = [[\lambda, t], [0, T_2]]`,
:math:`R = [[\rho, r], [0, R_2]]`, :math:`U = [[\mu, u], [0, U_2]]` (scalars :math:`\lambda, \rho, \mu`,
rows :math:`t, r, u`). With :math:`\delta = -2\,\mathrm{Re}\,\lambda` (continuous) or
:math:`1 - |\lambda|^2` (discrete), :math:`\mu = |\rho| / \sqrt\delta \ge 0` and
:math:`\alpha = \sqrt\delta\,\rho/|\rho|` (:math:`\sqrt\delta` for :math:`\rho = 0`), so that
:math:`\rho = \alpha\mu` and :math:`|\alpha|^2 = \delta`:

* continuous: :math:`u\,(T_2 + \bar\lambda I) = -\mu t - \bar\alpha r` and :math:`v = r - \alpha u`;
* discrete: :math:`u\,(\bar\lambda T_2 - I) = -\bar\lambda\mu t - \bar\alpha r`,
  :math:`w = \mu t + u T_2` and :math:`v = \lambda r - \alpha w`;

and the trailing block solves the same equation with :math:`T_2` and the triangular factor of
:math:`R_2^H R_2 + v^H v` (a Givens update of :math:`R_2` by the row :math:`v`). Each step costs
O(n²): O(n³) in all, with no 2x2 blocks (complex Schur form).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _givens_update(R, v, i0):  # pragma: no cover - compiled
    r"""Triangular factor of :math:`R^H R + v^H v` in place (rows/columns ``i0:`` of upper-triangular R).

    Complex rotations :math:`[[c, s], [-\bar s, c]]` (c real) zero ``v`` entry by entry.
    """
    n = R.shape[0]
    for j in range(i0, n):
        b = v[j]
        if b == 0:
            continue
        a = R[j, j]
        aa, ab = abs(a), abs(b)
        nrm = math.hypot(aa, ab)
        if aa == 0.0:
            c = 0.0
            s = np.conj(b) / ab
            R[j, j] = ab
        else:
            ph = a / aa
            c = aa / nrm
            s = ph * np.conj(b) / nrm
            R[j, j] = ph * nrm
        v[j] = 0.0
        for k in range(j + 1, n):
            x, y = R[j, k], v[k]
            R[j, k] = c * x + s * y
            v[k] = c * y - np.conj(s) * x


@njit(cache=True)
def tri_hammarling(T, R, discrete):  # pragma: no cover - compiled
    r"""Upper-triangular U with :math:`X = U^H U`, :math:`T^H X + X T + R^H R = 0` (continuous) or
    :math:`T^H X T - X + R^H R = 0` (discrete); T, R (n, n) complex upper triangular (R is not modified).

    Raises ValueError if a diagonal entry of T is not stable (:math:`\delta \le 0`).
    """
    n = T.shape[0]
    R = R.copy()
    U = np.zeros((n, n), np.complex128)
    b = np.zeros(n, np.complex128)
    u = np.zeros(n, np.complex128)
    v = np.zeros(n, np.complex128)
    for i in range(n):
        lam = T[i, i]
        if discrete:
            delta = 1.0 - (lam.real * lam.real + lam.imag * lam.imag)
        else:
            delta = -2.0 * lam.real
        if not delta > 0.0:
            raise ValueError("unstable diagonal entry of the Schur form")
        sd = math.sqrt(delta)
        rho = R[i, i]
        arho = abs(rho)
        mu = arho / sd
        alpha = sd * (rho / arho) if arho > 0.0 else sd + 0.0j
        U[i, i] = mu
        cl, ca = np.conj(lam), np.conj(alpha)
        # right-hand side b of the row system u M = b, M = T2 + conj(lam) I or conj(lam) T2 - I
        for j in range(i + 1, n):
            if discrete:
                b[j] = -cl * mu * T[i, j] - ca * R[i, j]
            else:
                b[j] = -mu * T[i, j] - ca * R[i, j]
        # forward substitution on the rows of M (row access: b_k -= u_j M_jk for k > j)
        for j in range(i + 1, n):
            if discrete:
                uj = b[j] / (cl * T[j, j] - 1.0)
                f = cl * uj
            else:
                uj = b[j] / (T[j, j] + cl)
                f = uj
            u[j] = uj
            U[i, j] = uj
            if f != 0:
                for k in range(j + 1, n):
                    b[k] -= f * T[j, k]
        if discrete:  # w = mu t + u T2 (accumulated in b), v = lam r - alpha w
            for j in range(i + 1, n):
                b[j] = mu * T[i, j]
            for j in range(i + 1, n):
                uj = u[j]
                if uj != 0:
                    for k in range(j, n):
                        b[k] += uj * T[j, k]
            for j in range(i + 1, n):
                v[j] = lam * R[i, j] - alpha * b[j]
        else:
            for j in range(i + 1, n):
                v[j] = R[i, j] - alpha * u[j]
        _givens_update(R, v, i + 1)
    return U
