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


@njit(cache=True)
def _blocks(T):  # pragma: no cover - compiled
    """Start indices and sizes (1 or 2) of the diagonal blocks of a real quasi-triangular T."""
    n = T.shape[0]
    start = np.empty(n, np.int64)
    size = np.empty(n, np.int64)
    nb, i = 0, 0
    while i < n:
        start[nb] = i
        if i + 1 < n and T[i + 1, i] != 0.0:
            size[nb] = 2
            i += 2
        else:
            size[nb] = 1
            i += 1
        nb += 1
    return start[:nb], size[:nb]


@njit(cache=True)
def _solve_small(K, b, m):  # pragma: no cover - compiled
    """Solve K[:m, :m] x = b[:m] in place (Gaussian elimination, partial pivoting; m <= 4)."""
    for c in range(m):
        piv = c
        for i in range(c + 1, m):
            if abs(K[i, c]) > abs(K[piv, c]):
                piv = i
        if piv != c:
            for j in range(m):
                K[c, j], K[piv, j] = K[piv, j], K[c, j]
            b[c], b[piv] = b[piv], b[c]
        for i in range(c + 1, m):
            f = K[i, c] / K[c, c]
            for j in range(c, m):
                K[i, j] -= f * K[c, j]
            b[i] -= f * b[c]
    for c in range(m - 1, -1, -1):
        acc = b[c]
        for j in range(c + 1, m):
            acc -= K[c, j] * b[j]
        b[c] = acc / K[c, c]


@njit(cache=True)
def tri_stein_sylvester_real(T, S, F):  # pragma: no cover - compiled
    r"""Solve :math:`T Y S^T - Y + F = 0` for real upper quasi-triangular T (n, n), S (r, r).

    Real arithmetic throughout (real Schur forms with 2x2 blocks for complex pairs). Column blocks
    K of S from the last: with :math:`G = \sum_{J>K} Y_{:,J} S_{KJ}^T` and, for row blocks I of T
    from the last, :math:`h = \sum_{L>I} T_{IL} Y_{LK}`, the block :math:`Y_{IK}` (at most 2x2)
    solves :math:`(S_{KK}\otimes T_{II} - I)\,\mathrm{vec}\,Y_{IK} =
    \mathrm{vec}(-F_{IK} - (TG)_I - h\,S_{KK}^T)` (column-major vec). Cost O(n^2 r + n r^2).
    """
    n, r = F.shape
    Y = np.zeros((n, r))
    ts, tz = _blocks(T)
    ss, sz = _blocks(S)
    K = np.empty((4, 4))
    b = np.empty(4)
    h = np.empty((2, 2))
    G = np.empty((n, 2))
    for kb in range(ss.shape[0] - 1, -1, -1):
        k0, q = ss[kb], sz[kb]
        G[:, :] = 0.0
        for j in range(k0 + q, r):
            for c in range(q):
                s = S[k0 + c, j]
                if s != 0.0:
                    for i in range(n):
                        G[i, c] += Y[i, j] * s
        for ib in range(ts.shape[0] - 1, -1, -1):
            i0, p = ts[ib], tz[ib]
            for a in range(p):
                for c in range(q):
                    acc = 0.0
                    for L in range(i0, n):  # (T G)_I
                        acc += T[i0 + a, L] * G[L, c]
                    h[a, c] = 0.0
                    for L in range(i0 + p, n):
                        h[a, c] += T[i0 + a, L] * Y[L, k0 + c]
                    b[c * p + a] = -F[i0 + a, k0 + c] - acc
            for a in range(p):
                for c in range(q):
                    for e in range(q):
                        b[c * p + a] -= h[a, e] * S[k0 + c, k0 + e]
            # K = S_KK kron T_II - I  (column-major vec)
            for c in range(q):
                for e in range(q):
                    for a in range(p):
                        for d in range(p):
                            K[c * p + a, e * p + d] = S[k0 + c, k0 + e] * T[i0 + a, i0 + d]
            for j in range(p * q):
                K[j, j] -= 1.0
            _solve_small(K, b, p * q)
            for c in range(q):
                for a in range(p):
                    Y[i0 + a, k0 + c] = b[c * p + a]
    return Y
