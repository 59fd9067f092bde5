r"""Numba kernel for the symmetric real quasi-triangular Lyapunov and Stein equations.

Reference implementation for the tests: :mod:`mor_lqo.kernels.lyap_real_reference`.

For a real upper quasi-triangular ``T`` (n, n) in real Schur form (1x1 and 2x2 diagonal blocks) and
a symmetric ``F`` (n, n) the kernel returns the symmetric :math:`X` with

.. math::

    T X + X T^T + F = 0 \quad\text{(continuous)}, \qquad T X T^T - X + F = 0 \quad\text{(discrete)}.

Bartels–Stewart by column blocks K from the last, computing only the rows :math:`I \le K` of each
column block (the others are known by symmetry) and mirroring every computed block at once, so all
inner loops run along rows of C-ordered arrays. Continuous, with :math:`G_{IK} = F_{IK} +
\sum_{J>K} (X_{IJ} T_{KJ}^T + T_{IJ} X_{JK})`, row blocks :math:`I = K, K-1, \dots`:
:math:`T_{II} X_{IK} + X_{IK} T_{KK}^T = -G_{IK} - \sum_{I<L\le K} T_{IL} X_{LK}`. Discrete, with
:math:`V_L = \sum_{J>K} X_{LJ} T_{KJ}^T` (plus :math:`X_{LK} T_{KK}^T` for :math:`L > K`) and
:math:`Z_I = F_{IK} + \sum_{L\ge I} T_{IL} V_L`:
:math:`T_{II} X_{IK} T_{KK}^T - X_{IK} = -Z_I - (\sum_{I<L\le K} T_{IL} X_{LK}) T_{KK}^T`.
Each block is a Kronecker system of order at most 4 (Gaussian elimination with partial pivoting).
Cost about :math:`n^3/2` (continuous) and :math:`n^3` (discrete) multiply-adds, half to two thirds of
the general Sylvester solvers on the same equation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .triangular_numba import _blocks, _solve_small


@njit(cache=True, fastmath={"reassoc", "contract"})
def tri_lyap_sym_real(T, F, discrete):  # pragma: no cover - compiled
    r"""Symmetric X (n, n) with :math:`T X + X T^T + F = 0` (continuous) or :math:`T X T^T - X + F = 0`
    (discrete), T real upper quasi-triangular (real Schur form), F symmetric (only used as given)."""
    n = T.shape[0]
    X = np.zeros((n, n))
    st, sz = _blocks(T)
    nb = st.shape[0]
    G = np.zeros((2, n))  # G[c, r]: right-hand side of column k0 + c, row r
    V = np.zeros((2, n))  # discrete: V[c, L] = (X T_K^T)[L, c]
    Kmat = np.empty((4, 4))
    b = np.empty(4)
    s = np.empty((2, 2))
    for kb in range(nb - 1, -1, -1):
        k0, q = st[kb], sz[kb]
        ke = k0 + q
        # rows ke: of X are complete (computed columns, mirrored), so the sums over j > K run as
        # axpy updates along rows; row kc is still zero at columns < ke.
        for c in range(q):
            kc = k0 + c
            if not discrete:
                for r in range(ke):
                    acc = F[r, kc]
                    for j in range(ke, n):
                        acc += T[r, j] * X[kc, j]
                    G[c, r] = acc
                for j in range(ke, n):
                    t = T[kc, j]
                    for r in range(ke):
                        G[c, r] += t * X[j, r]
            else:
                for L in range(n):
                    V[c, L] = 0.0
                for j in range(ke, n):
                    t = T[kc, j]
                    for L in range(n):
                        V[c, L] += t * X[j, L]
                for L in range(ke, n):  # + X_LK T_KK^T for L > K (X_LK = X_KL^T known)
                    for e in range(q):
                        V[c, L] += X[k0 + e, L] * T[kc, k0 + e]
                for r in range(ke):
                    acc = F[r, kc]
                    l0 = r - 1 if r > 0 and T[r, r - 1] != 0.0 else r  # second row of a 2x2 block
                    for L in range(l0, n):
                        acc += T[r, L] * V[c, L]
                    G[c, r] = acc
        for ib in range(kb, -1, -1):
            i0, p = st[ib], sz[ib]
            for a in range(p):
                for c in range(q):
                    acc = 0.0
                    for L in range(i0 + p, ke):  # in-pass blocks I < L <= K (mirrored rows of X)
                        acc += T[i0 + a, L] * X[k0 + c, L]
                    s[a, c] = acc
            for a in range(p):
                for c in range(q):
                    acc = -G[c, i0 + a]
                    if discrete:
                        for e in range(q):
                            acc -= s[a, e] * T[k0 + c, k0 + e]
                    else:
                        acc -= s[a, c]
                    b[c * p + a] = acc
            if p == 1 and q == 1:  # 1x1 blocks: a division
                if discrete:
                    v = b[0] / (T[i0, i0] * T[k0, k0] - 1.0)
                else:
                    v = b[0] / (T[i0, i0] + T[k0, k0])
                X[i0, k0] = v
                X[k0, i0] = v
                continue
            for c in range(q):  # column-major vec: continuous I kron T_II + T_KK kron I, discrete T_KK kron T_II - I
                for e in range(q):
                    for a in range(p):
                        for d in range(p):
                            if discrete:
                                v = T[k0 + c, k0 + e] * T[i0 + a, i0 + d]
                            else:
                                v = (T[i0 + a, i0 + d] if c == e else 0.0) + (T[k0 + c, k0 + e] if a == d else 0.0)
                            Kmat[c * p + a, e * p + d] = v
            if discrete:
                for j in range(p * q):
                    Kmat[j, j] -= 1.0
            _solve_small(Kmat, b, p * q)
            if ib == kb:  # diagonal block: symmetric up to rounding
                for a in range(p):
                    for c in range(q):
                        v = 0.5 * (b[c * p + a] + b[a * p + c])
                        X[i0 + a, k0 + c] = v
            else:
                for a in range(p):
                    for c in range(q):
                        v = b[c * p + a]
                        X[i0 + a, k0 + c] = v
                        X[k0 + c, i0 + a] = v
    return X
