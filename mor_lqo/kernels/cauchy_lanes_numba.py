"""Numba kernels for Cauchy-type sums over *batches of small* diagonal systems (lane layout).

The innermost loops run over the systems of a batch (the lanes), so the per-row costs of the row
layout in :mod:`mor_lqo.kernels.cauchy_numba` (loop set-up, short vector loops) disappear. The sums,
kernels and numerics (near-one recomputation, finite horizon, compensated summation) are those
documented in :mod:`mor_lqo.kernels.cauchy_numba`, whose scalar helpers these kernels share. Private:
call them through :func:`mor_lqo.kernels.cauchy.cauchy_inner` / :func:`~mor_lqo.kernels.cauchy.cauchy_norm2`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba import uint64 as _u

from .cauchy_numba import LANES, MODE_CONTINUOUS, MODE_DISCRETE, _k_diag, _nadd, _near_one  # noqa: F401


# ----------------------------------------------------------------------------------------------------
# lane layout for batches of small systems: the innermost loops run over systems (lanes), so the
# per-row costs of the row layout (loop set-up, short vector loops) disappear. Arrays carry the batch
# axis last: lam (6, n, N), U (2, q1, n, N), V (2, q2, n, N) (no padding). Buffer rows: 0-1 K,
# 2 |1 - z|^2, 3-4 w (or u), 5-6 v, 7-8 row sum, 9-12 compensated totals (re, comp, im, comp).
# ----------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _lanes_pair_dot(X1, X2, i, k, s0, ns, buf, row):
    """``buf[row:row + 2, :ns] = X1[:, :, i] . conj(X2[:, :, k])`` of the systems ``s0 .. s0 + ns - 1``."""
    for j in range(ns):
        jj = _u(j)
        buf[row, jj] = 0.0
        buf[row + 1, jj] = 0.0
    for a in range(X1.shape[1]):
        for j in range(ns):
            jj = _u(j)
            s = _u(s0 + j)
            gr = X1[0, a, i, s]
            gi = X1[1, a, i, s]
            fr = X2[0, a, k, s]
            fi = X2[1, a, k, s]
            buf[row, jj] += gr * fr + gi * fi
            buf[row + 1, jj] += gi * fr - gr * fi


@njit(cache=True, error_model="numpy")
def _lanes_weight(U1, V1, i, U2, V2, k, s0, ns, buf):
    """``buf[3:5, :ns] = w_ik`` of the systems ``s0 .. s0 + ns - 1``."""
    _lanes_pair_dot(U1, U2, i, k, s0, ns, buf, 3)
    if V1.shape[1] == 0:
        return
    _lanes_pair_dot(V1, V2, i, k, s0, ns, buf, 5)
    for j in range(ns):
        jj = _u(j)
        ur = buf[3, jj]
        ui = buf[4, jj]
        vr = buf[5, jj]
        vi = buf[6, jj]
        buf[3, jj] = ur * vr - ui * vi
        buf[4, jj] = ur * vi + ui * vr


@njit(cache=True, error_model="numpy")
def _lanes_kacc(mode, L, tau2, lam1, i, lam2, k, s0, ns, buf):
    """``buf[7:9, :ns] += K_ik w_ik`` (``w`` from :func:`_lanes_weight`).

    Near-one lanes (discrete time) are skipped in the vectorised loop and added by
    :func:`_lanes_fix`.
    """
    if mode == MODE_CONTINUOUS:
        for j in range(ns):
            jj = _u(j)
            s = _u(s0 + j)
            xr = lam1[0, i, s] + lam2[0, k, s]
            xi = lam1[1, i, s] - lam2[1, k, s]
            inv = 1.0 / (xr * xr + xi * xi)
            kr = -xr * inv
            ki = xi * inv
            wr = buf[3, jj]
            wi = buf[4, jj]
            buf[7, jj] += kr * wr - ki * wi
            buf[8, jj] += kr * wi + ki * wr
        return
    cnt = 0
    if mode == MODE_DISCRETE:
        for j in range(ns):
            jj = _u(j)
            s = _u(s0 + j)
            ar = lam1[0, i, s]
            ai = lam1[1, i, s]
            br = lam2[0, k, s]
            bi = lam2[1, k, s]
            xr = 1.0 - (ar * br + ai * bi)
            xi = ar * bi - ai * br
            d2 = xr * xr + xi * xi
            inv = 1.0 / d2
            kr = xr * inv
            ki = -xi * inv
            wr = buf[3, jj]
            wi = buf[4, jj]
            tr = kr * wr - ki * wi
            ti = kr * wi + ki * wr
            near = d2 < tau2
            cnt += near
            buf[7, jj] += 0.0 if near else tr
            buf[8, jj] += 0.0 if near else ti
    else:
        for j in range(ns):
            jj = _u(j)
            s = _u(s0 + j)
            ar = lam1[0, i, s]
            ai = lam1[1, i, s]
            br = lam2[0, k, s]
            bi = lam2[1, k, s]
            apr = lam1[2, i, s]
            api = lam1[3, i, s]
            pr = lam2[2, k, s]
            pi_ = lam2[3, k, s]
            xr = 1.0 - (ar * br + ai * bi)
            xi = ar * bi - ai * br
            d2 = xr * xr + xi * xi
            nr = 1.0 - (apr * pr + api * pi_)
            ni = apr * pi_ - api * pr
            inv = 1.0 / d2
            kr = (nr * xr + ni * xi) * inv
            ki = (ni * xr - nr * xi) * inv
            wr = buf[3, jj]
            wi = buf[4, jj]
            tr = kr * wr - ki * wi
            ti = kr * wi + ki * wr
            near = d2 < tau2
            cnt += near
            buf[7, jj] += 0.0 if near else tr
            buf[8, jj] += 0.0 if near else ti
    if cnt > 0:
        _lanes_fix(mode, L, tau2, lam1, i, lam2, k, s0, ns, buf)


@njit(cache=True, error_model="numpy")
def _lanes_fix(mode, L, tau2, lam1, i, lam2, k, s0, ns, buf):
    """Add the near-one lanes skipped by :func:`_lanes_kacc`."""
    for j in range(ns):
        s = s0 + j
        ar = lam1[0, i, s]
        ai = lam1[1, i, s]
        br = lam2[0, k, s]
        bi = lam2[1, k, s]
        xr = 1.0 - (ar * br + ai * bi)
        xi = ar * bi - ai * br
        if xr * xr + xi * xi < tau2:
            kr, ki = _near_one(mode, L, lam1[4, i, s] + lam2[4, k, s], lam1[5, i, s] - lam2[5, k, s])
            wr = buf[3, j]
            wi = buf[4, j]
            buf[7, j] += kr * wr - ki * wi
            buf[8, j] += kr * wi + ki * wr


@njit(cache=True, error_model="numpy")
def _inner_lanes_chunk(mode, L, tau2, lam1, U1, V1, lam2, U2, V2, s0, s1, out):
    """Inner products of the systems ``s0 <= s < s1`` into ``out[s] = (re, im)``."""
    n1 = lam1.shape[1]
    n2 = lam2.shape[1]
    ns = s1 - s0
    buf = np.zeros((13, LANES))
    for i in range(n1):
        for j in range(ns):
            buf[7, j] = 0.0
            buf[8, j] = 0.0
        for k in range(n2):
            _lanes_weight(U1, V1, i, U2, V2, k, s0, ns, buf)
            _lanes_kacc(mode, L, tau2, lam1, i, lam2, k, s0, ns, buf)
        for j in range(ns):
            buf[9, j], buf[10, j] = _nadd(buf[9, j], buf[10, j], buf[7, j])
            buf[11, j], buf[12, j] = _nadd(buf[11, j], buf[12, j], buf[8, j])
    for j in range(ns):
        out[s0 + j, 0] = buf[9, j] + buf[10, j]
        out[s0 + j, 1] = buf[11, j] + buf[12, j]


@njit(cache=True, error_model="numpy")
def _norm_lanes_chunk(mode, L, tau2, lam, U, V, s0, s1, out):
    """Hermitian sums of the systems ``s0 <= s < s1`` into ``out[s]``."""
    n = lam.shape[1]
    q1 = U.shape[1]
    q2 = V.shape[1]
    ns = s1 - s0
    buf = np.zeros((13, LANES))
    for i in range(n):
        for j in range(ns):
            buf[7, j] = 0.0
            buf[8, j] = 0.0
        for k in range(i + 1, n):
            _lanes_weight(U, V, i, U, V, k, s0, ns, buf)
            _lanes_kacc(mode, L, tau2, lam, i, lam, k, s0, ns, buf)
        for j in range(ns):
            s = s0 + j
            su = 0.0
            for a in range(q1):
                su += U[0, a, i, s] * U[0, a, i, s] + U[1, a, i, s] * U[1, a, i, s]
            if q2 > 0:
                sv = 0.0
                for b in range(q2):
                    sv += V[0, b, i, s] * V[0, b, i, s] + V[1, b, i, s] * V[1, b, i, s]
                su *= sv
            kii = _k_diag(mode, L, tau2, lam[0, i, s], lam[1, i, s], lam[2, i, s], lam[3, i, s], lam[4, i, s])
            buf[9, j], buf[10, j] = _nadd(buf[9, j], buf[10, j], kii * su + 2.0 * buf[7, j])
    for j in range(ns):
        out[s0 + j] = buf[9, j] + buf[10, j]


@njit(cache=True, error_model="numpy")
def lanes_split(x, dst):
    """``dst[0] + 1j dst[1] = x.T`` for ``x (N, n)`` complex, ``dst (2, n, N)`` (blocked transpose)."""
    nsys, n = x.shape
    for s0 in range(0, nsys, 64):
        s1 = min(nsys, s0 + 64)
        for i in range(n):
            for s in range(s0, s1):
                v = x[s, i]
                dst[0, i, s] = v.real
                dst[1, i, s] = v.imag


@njit(cache=True, error_model="numpy")
def lanes_factors(B, C, kron, U, V):
    """Lane-layout factors from ``B (N, n, m)``, ``C (N, p, n)`` (see :func:`_lanes_weight`).

    ``kron``: ``U[:, a p + b, i, s] = B[s, i, a] C[s, b, i]``; otherwise ``U[:, a, i, s] = B[s, i, a]``
    and ``V[:, b, i, s] = C[s, b, i]``.
    """
    nsys, n, m = B.shape
    p = C.shape[1]
    for s0 in range(0, nsys, 64):
        s1 = min(nsys, s0 + 64)
        for i in range(n):
            for a in range(m):
                for s in range(s0, s1):
                    bv = B[s, i, a]
                    if kron:
                        for b in range(p):
                            v = bv * C[s, b, i]
                            U[0, a * p + b, i, s] = v.real
                            U[1, a * p + b, i, s] = v.imag
                    else:
                        U[0, a, i, s] = bv.real
                        U[1, a, i, s] = bv.imag
            if not kron:
                for b in range(p):
                    for s in range(s0, s1):
                        v = C[s, b, i]
                        V[0, b, i, s] = v.real
                        V[1, b, i, s] = v.imag


@njit(parallel=True, cache=True, error_model="numpy")
def inner_lanes(mode, L, tau2, lam1, U1, V1, lam2, U2, V2):
    """Batched inner products in the lane layout, parallel over chunks of ``LANES`` systems."""
    nsys = lam1.shape[2]
    out = np.zeros((nsys, 2))
    nch = (nsys + LANES - 1) // LANES
    for c in prange(nch):
        s0 = c * LANES
        _inner_lanes_chunk(mode, L, tau2, lam1, U1, V1, lam2, U2, V2, s0, min(nsys, s0 + LANES), out)
    return out


@njit(cache=True, error_model="numpy")
def inner_lanes_serial(mode, L, tau2, lam1, U1, V1, lam2, U2, V2):
    """Serial :func:`inner_lanes`."""
    nsys = lam1.shape[2]
    out = np.zeros((nsys, 2))
    for s0 in range(0, nsys, LANES):
        _inner_lanes_chunk(mode, L, tau2, lam1, U1, V1, lam2, U2, V2, s0, min(nsys, s0 + LANES), out)
    return out


@njit(parallel=True, cache=True, error_model="numpy")
def norm2_lanes(mode, L, tau2, lam, U, V):
    """Batched Hermitian sums in the lane layout, parallel over chunks of ``LANES`` systems."""
    nsys = lam.shape[2]
    out = np.zeros(nsys)
    nch = (nsys + LANES - 1) // LANES
    for c in prange(nch):
        s0 = c * LANES
        _norm_lanes_chunk(mode, L, tau2, lam, U, V, s0, min(nsys, s0 + LANES), out)
    return out


@njit(cache=True, error_model="numpy")
def norm2_lanes_serial(mode, L, tau2, lam, U, V):
    """Serial :func:`norm2_lanes`."""
    nsys = lam.shape[2]
    out = np.zeros(nsys)
    for s0 in range(0, nsys, LANES):
        _norm_lanes_chunk(mode, L, tau2, lam, U, V, s0, min(nsys, s0 + LANES), out)
    return out


# ----------------------------------------------------------------------------------------------------
# public kernels: parallel versions and serial versions (for small work, where starting a parallel
# region costs more than it saves, in particular on busy machines)
# ----------------------------------------------------------------------------------------------------
