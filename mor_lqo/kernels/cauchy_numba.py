"""Numba kernels for Cauchy-type sums of diagonal systems (streaming, O(n(m+p)) memory).

These kernels evaluate, without forming any n1 x n2 matrix,

.. math::

    S = \\sum_{i,k} K_{ik} \\, (b^{(1)}_i \\cdot \\overline{b^{(2)}_k}) \\,
        (c^{(1)}_i \\cdot \\overline{c^{(2)}_k})

with the Cauchy kernel ``K`` of :mod:`mor_lqo.kernels.cauchy`. They are private: call them only through
:func:`mor_lqo.kernels.cauchy.cauchy_inner` / :func:`~mor_lqo.kernels.cauchy.cauchy_norm2`, which validate
the inputs and build the packed float64 arrays described below. The kernels perform **no** checks
(stability, finiteness, shapes): a vanishing denominator gives ``inf``/``nan``.

Packed input layout (all float64, C-contiguous; a leading batch axis ``N`` for the batched kernels).
Every array has ``PAD`` extra columns at the end: factors ``U = V = 0`` there, and eigenvalues with a
finite kernel against any mode (``0`` in discrete time, ``-1e150`` in continuous time), so the
vectorised block loops can run over whole multiples of ``PAD`` without scalar remainders and the
padding adds exact zeros.

``lam`` : (6, n + PAD)
    rows ``Re lam, Im lam, Re lam**L, Im lam**L, Re log lam, Im log lam``; the powers are only read in
    the finite-horizon mode, the logarithms in discrete time (zeros otherwise).
``U`` : (2, q1, n + PAD), ``V`` : (2, q2, n + PAD)
    real and imaginary parts of the per-mode factors. Two forms are supported:

    * *Kronecker form* (``q2 == 0``): ``U[:, a*p + b, i] = B[i, a] * C[b, i]`` (``q1 = m p``); the pair
      weight is ``U_i . conj(U_k)``.
    * *two-dot form* (``q2 > 0``): ``U = B^T`` (``q1 = m``), ``V = C`` (``q2 = p``); the pair weight is
      ``(U_i . conj(U_k)) (V_i . conj(V_k))``.

Numerics: every row ``i`` is processed in blocks of ``BLOCK`` columns. A block first writes the kernel
values ``K_ik`` (complex division written as ``conj(w)/|w|^2``), then reduces them with the factors; only
these block reductions are compiled with the ``reassoc`` fast-math flag (so that LLVM may vectorise
them with several partial sums: IEEE semantics otherwise, no ``nnan``/``ninf``/``arcp``/``afn``). Block
sums are added to the row sum, and row sums to the total, with Neumaier compensated summation, in
functions compiled without fast-math flags. Row results are reduced in a fixed order, so results do not
depend on the number of threads. ``error_model="numpy"`` (division by zero gives ``inf``/``nan`` rather
than raising) removes the zero-check branch that would otherwise prevent vectorising the divisions.
The ``conj(w)/|w|^2`` form assumes ``1e-150 < |w| < 1e150`` (no scaling against under/overflow).

Kernels: ``inner_single`` / ``norm2_single`` parallelise one system over rows (the Hermitian norm over
row pairs ``(t, n-1-t)``, which balances the triangle), ``inner_batched`` / ``norm2_batched`` over the
batch axis; each has a ``*_serial`` twin with the same rounding, used by the dispatch layer for small
work, where starting a parallel region costs more than it saves.

Discrete time, infinite horizon: ``1 - lam1_i conj(lam2_k)`` has an absolute rounding error ~eps, so
where ``|1 - z| < tau`` (``tau = NEAR_ONE_TAU_INF``, 1e-3) the kernel is recomputed as
``-1 / expm1(w)``, ``w = log lam1_i + conj(log lam2_k)``: the complex logarithm resolves
``log|lam|`` to full relative accuracy near the unit circle (e.g. ``K_ii = 1 / (1 - |lam|^2)`` to
~1e-16 instead of ~eps / (1 - |lam|^2)).

Finite horizon ``L`` (discrete time): ``K = (1 - z**L) / (1 - z)`` with ``z = lam1_i conj(lam2_k)`` and
``z**L = lam1_i**L conj(lam2_k**L)`` from the precomputed powers. Where ``|1 - z| < tau`` this quotient
cancels catastrophically (``z**L`` and ``z`` are rounded independently), so it is replaced by
``expm1(L w) / expm1(w)`` with ``w = log lam1_i + conj(log lam2_k)`` (imaginary part wrapped into
``(-pi, pi]``), which is a smooth function of the single rounded quantity ``w`` and tends to ``L`` for
``w -> 0`` (e.g. the diagonal of a unit-circle mode).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba import uint64 as _u

#: Columns per block (the per-thread scratch is ``7 * BLOCK`` float64).
BLOCK = 256
#: Zero-weight padding columns at the end of every packed array (see the module docstring); block
#: lengths are rounded up to a multiple of PAD. BLOCK must be a multiple of PAD.
PAD = 16
#: Systems per chunk in the lane layout (batches of small systems).
LANES = 128
#: Rows (or row pairs) handed to one parallel task.
ROW_CHUNK = 8

MODE_CONTINUOUS = 0
MODE_DISCRETE = 1
MODE_HORIZON = 2

_REASSOC = {"reassoc"}
_TWO_PI = 2.0 * math.pi


# ----------------------------------------------------------------------------------------------------
# scalar helpers (no fast-math flags)
# ----------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _nadd(s, c, x):
    """Neumaier step: add ``x`` to the compensated pair ``(s, c)``."""
    t = s + x
    if abs(s) >= abs(x):
        c += (s - t) + x
    else:
        c += (x - t) + s
    return t, c


@njit(cache=True, error_model="numpy")
def _expm1c(x, y):
    """``exp(x + iy) - 1`` as ``(re, im)``, accurate for small arguments."""
    h = math.sin(0.5 * y)
    return math.expm1(x) * math.cos(y) - 2.0 * h * h, math.exp(x) * math.sin(y)


@njit(cache=True, error_model="numpy")
def _wrap_pi(wi):
    """``wi`` in (-2 pi, 2 pi] wrapped into (-pi, pi] (difference of two principal arguments)."""
    if wi > math.pi:
        return wi - _TWO_PI
    if wi < -math.pi:
        return wi + _TWO_PI
    return wi


@njit(cache=True, error_model="numpy")
def _k_near_one(L, wr, wi):
    """``(1 - e^{Lw}) / (1 - e^{w})`` for small ``w = wr + i wi`` (imag wrapped to (-pi, pi])."""
    wi = _wrap_pi(wi)
    if abs(wr) + abs(wi) < 1e-150:
        return float(L), 0.0
    dr, di = _expm1c(wr, wi)
    nr, ni = _expm1c(L * wr, L * wi)
    inv = 1.0 / (dr * dr + di * di)
    return (nr * dr + ni * di) * inv, (ni * dr - nr * di) * inv


@njit(cache=True, error_model="numpy")
def _k_inf_near_one(wr, wi):
    """``1 / (1 - e^{w})`` for small ``w = wr + i wi`` (imag wrapped to (-pi, pi])."""
    dr, di = _expm1c(wr, _wrap_pi(wi))
    inv = 1.0 / (dr * dr + di * di)
    return -dr * inv, di * inv


@njit(cache=True, error_model="numpy")
def _k_diag(mode, L, tau2, ar, ai, pr, pi_, sr):
    """Real kernel value ``K_ii`` of a mode ``lam = ar + i ai`` with itself (Hermitian norms).

    ``pr + i pi_ = lam**L`` (finite horizon) and ``sr = Re log lam`` (discrete time, near the unit
    circle) are only read where needed.
    """
    if mode == MODE_CONTINUOUS:
        return -1.0 / (2.0 * ar)
    a2 = ar * ar + ai * ai
    x = 1.0 - a2
    if mode == MODE_DISCRETE:
        if x * x < tau2:
            kr, _ = _k_inf_near_one(2.0 * sr, 0.0)
            return kr
        return 1.0 / x
    if x * x < tau2:
        kr, _ = _k_near_one(L, 2.0 * sr, 0.0)
        return kr
    return (1.0 - (pr * pr + pi_ * pi_)) / x


# ----------------------------------------------------------------------------------------------------
# block helpers
# ----------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _kblock(mode, L, tau2, lam1, i, lam2, k0, nb, buf):
    """Write ``K[i, k0:k0+nb]`` into ``buf[0, :nb] + 1j * buf[1, :nb]``.

    The vectorised loops only count the near-one entries (``|1 - z|^2 < tau2``, discrete time); the
    rare blocks that contain some are then patched by :func:`_kblock_fix`.
    """
    ar = lam1[0, i]
    ai = lam1[1, i]
    if mode == MODE_CONTINUOUS:
        # K = -1 / (a + conj b) = -conj(x) / |x|^2
        for j in range(nb):
            k = _u(k0 + j)
            jj = _u(j)
            xr = ar + lam2[0, k]
            xi = ai - lam2[1, k]
            inv = 1.0 / (xr * xr + xi * xi)
            buf[0, jj] = -xr * inv
            buf[1, jj] = xi * inv
        return
    cnt = 0
    if mode == MODE_DISCRETE:
        # K = 1 / (1 - a conj b) = conj(x) / |x|^2
        for j in range(nb):
            k = _u(k0 + j)
            jj = _u(j)
            br = lam2[0, k]
            bi = lam2[1, k]
            xr = 1.0 - (ar * br + ai * bi)
            xi = ar * bi - ai * br
            d2 = xr * xr + xi * xi
            inv = 1.0 / d2
            buf[0, jj] = xr * inv
            buf[1, jj] = -xi * inv
            cnt += d2 < tau2
    else:
        # K = (1 - z^L) conj(x) / |x|^2
        apr = lam1[2, i]
        api = lam1[3, i]
        for j in range(nb):
            k = _u(k0 + j)
            jj = _u(j)
            br = lam2[0, k]
            bi = lam2[1, k]
            pr = lam2[2, k]
            pi_ = lam2[3, k]
            xr = 1.0 - (ar * br + ai * bi)
            xi = ar * bi - ai * br
            d2 = xr * xr + xi * xi
            nr = 1.0 - (apr * pr + api * pi_)
            ni = apr * pi_ - api * pr
            inv = 1.0 / d2
            buf[0, jj] = (nr * xr + ni * xi) * inv
            buf[1, jj] = (ni * xr - nr * xi) * inv
            cnt += d2 < tau2
    if cnt > 0:
        _kblock_fix(mode, L, tau2, lam1, i, lam2, k0, nb, buf)


@njit(cache=True, error_model="numpy")
def _near_one(mode, L, wr, wi):
    """Near-one kernel value from ``w = log lam1_i + conj(log lam2_k)`` (discrete time)."""
    if mode == MODE_DISCRETE:
        return _k_inf_near_one(wr, wi)
    return _k_near_one(L, wr, wi)


@njit(cache=True, error_model="numpy")
def _kblock_fix(mode, L, tau2, lam1, i, lam2, k0, nb, buf):
    """Replace the near-one entries of a block (same ``|1 - z|^2`` arithmetic as :func:`_kblock`)."""
    ar = lam1[0, i]
    ai = lam1[1, i]
    for j in range(nb):
        br = lam2[0, k0 + j]
        bi = lam2[1, k0 + j]
        xr = 1.0 - (ar * br + ai * bi)
        xi = ar * bi - ai * br
        if xr * xr + xi * xi < tau2:
            buf[0, j], buf[1, j] = _near_one(mode, L, lam1[4, i] + lam2[4, k0 + j], lam1[5, i] - lam2[5, k0 + j])


@njit(cache=True, fastmath=_REASSOC, error_model="numpy")
def _dot_kconj(buf, F, a, k0, nb):
    """``sum_j K_j conj(F[a, k0 + j])`` with ``K`` in ``buf[0:2]``."""
    yr = 0.0
    yi = 0.0
    for j in range(nb):
        k = _u(k0 + j)
        jj = _u(j)
        kr = buf[0, jj]
        ki = buf[1, jj]
        fr = F[0, a, k]
        fi = F[1, a, k]
        yr += kr * fr + ki * fi
        yi += ki * fr - kr * fi
    return yr, yi


@njit(cache=True, error_model="numpy")
def _axpy_conj(gr, gi, F, a, k0, nb, buf, row):
    """``buf[row:row+2, :nb] += g * conj(F[a, k0:k0+nb])``."""
    for j in range(nb):
        k = _u(k0 + j)
        jj = _u(j)
        fr = F[0, a, k]
        fi = F[1, a, k]
        buf[row, jj] += gr * fr + gi * fi
        buf[row + 1, jj] += gi * fr - gr * fi


@njit(cache=True, fastmath=_REASSOC, error_model="numpy")
def _dot_kuv(buf, nb):
    """``sum_j K_j u_j v_j`` with ``K, u, v`` in rows ``0:2, 3:5, 5:7`` of ``buf``."""
    sr = 0.0
    si = 0.0
    for j in range(nb):
        jj = _u(j)
        kr = buf[0, jj]
        ki = buf[1, jj]
        ur = buf[3, jj]
        ui = buf[4, jj]
        vr = buf[5, jj]
        vi = buf[6, jj]
        wr = ur * vr - ui * vi
        wi = ur * vi + ui * vr
        sr += kr * wr - ki * wi
        si += kr * wi + ki * wr
    return sr, si


@njit(cache=True, error_model="numpy")
def _row(mode, L, tau2, lam1, U1, V1, i, lam2, U2, V2, k0, k1, buf):
    """Compensated ``sum_{k0 <= k < k1} K_ik w_ik`` for one row ``i``; returns ``(re, im)``."""
    q1 = U1.shape[1]
    q2 = V1.shape[1]
    sr = 0.0
    cr = 0.0
    si = 0.0
    ci = 0.0
    for b0 in range(k0, k1, BLOCK):
        # padded to a multiple of PAD: no scalar remainder loops; the padding columns have zero
        # weight and finite K, so they add exact zeros
        nb = min(BLOCK, (k1 - b0 + PAD - 1) // PAD * PAD)
        _kblock(mode, L, tau2, lam1, i, lam2, b0, nb, buf)
        tr = 0.0
        ti = 0.0
        if q2 == 0:
            for a in range(q1):
                yr, yi = _dot_kconj(buf, U2, a, b0, nb)
                gr = U1[0, a, i]
                gi = U1[1, a, i]
                tr += gr * yr - gi * yi
                ti += gr * yi + gi * yr
        else:
            for r in range(3, 7):
                for j in range(nb):
                    buf[r, j] = 0.0
            for a in range(q1):
                _axpy_conj(U1[0, a, i], U1[1, a, i], U2, a, b0, nb, buf, 3)
            for b in range(q2):
                _axpy_conj(V1[0, b, i], V1[1, b, i], V2, b, b0, nb, buf, 5)
            tr, ti = _dot_kuv(buf, nb)
        sr, cr = _nadd(sr, cr, tr)
        si, ci = _nadd(si, ci, ti)
    return sr + cr, si + ci


@njit(cache=True, error_model="numpy")
def _self_weight(U, V, i):
    """Real pair weight ``w_ii`` of mode ``i`` with itself."""
    q1 = U.shape[1]
    q2 = V.shape[1]
    su = 0.0
    for a in range(q1):
        su += U[0, a, i] * U[0, a, i] + U[1, a, i] * U[1, a, i]
    if q2 == 0:
        return su
    sv = 0.0
    for b in range(q2):
        sv += V[0, b, i] * V[0, b, i] + V[1, b, i] * V[1, b, i]
    return su * sv


@njit(cache=True, error_model="numpy")
def _norm_row(mode, L, tau2, lam, U, V, i, buf):
    """Row ``i`` of the Hermitian sum: ``w_ii K_ii + 2 Re sum_{k > i} K_ik w_ik``."""
    n = lam.shape[1] - PAD
    off, _ = _row(mode, L, tau2, lam, U, V, i, lam, U, V, i + 1, n, buf)
    kii = _k_diag(mode, L, tau2, lam[0, i], lam[1, i], lam[2, i], lam[3, i], lam[4, i])
    return kii * _self_weight(U, V, i) + 2.0 * off


# ----------------------------------------------------------------------------------------------------
# chunk / system workers shared by the parallel and the serial kernels
# ----------------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _inner_rows(mode, L, tau2, lam1, U1, V1, lam2, U2, V2, r0, r1, rows):
    """Rows ``r0 <= i < r1`` of the inner product into ``rows[i] = (re, im)``."""
    buf = np.empty((7, BLOCK))
    n2 = lam2.shape[1] - PAD
    for i in range(r0, r1):
        r, s = _row(mode, L, tau2, lam1, U1, V1, i, lam2, U2, V2, 0, n2, buf)
        rows[i, 0] = r
        rows[i, 1] = s


@njit(cache=True, error_model="numpy")
def _norm_tasks(mode, L, tau2, lam, U, V, t0, t1, rows):
    """Row pairs ``(t, n-1-t)`` for ``t0 <= t < t1`` (each pair costs about n kernel values)."""
    buf = np.empty((7, BLOCK))
    n = lam.shape[1] - PAD
    for t in range(t0, t1):
        rows[t] = _norm_row(mode, L, tau2, lam, U, V, t, buf)
        i2 = n - 1 - t
        if i2 != t:
            rows[i2] = _norm_row(mode, L, tau2, lam, U, V, i2, buf)


@njit(cache=True, error_model="numpy")
def _sum_rows2(rows):
    sr = 0.0
    cr = 0.0
    si = 0.0
    ci = 0.0
    for i in range(rows.shape[0]):
        sr, cr = _nadd(sr, cr, rows[i, 0])
        si, ci = _nadd(si, ci, rows[i, 1])
    return sr + cr, si + ci


@njit(cache=True, error_model="numpy")
def _sum_rows1(rows):
    s = 0.0
    c = 0.0
    for i in range(rows.shape[0]):
        s, c = _nadd(s, c, rows[i])
    return s + c


@njit(cache=True, error_model="numpy")
def _inner_system(mode, L, tau2, lam1, U1, V1, lam2, U2, V2, buf):
    """Whole inner product of one pair of systems, serially; returns ``(re, im)``."""
    n1 = lam1.shape[1] - PAD
    n2 = lam2.shape[1] - PAD
    sr = 0.0
    cr = 0.0
    si = 0.0
    ci = 0.0
    for i in range(n1):
        r, q = _row(mode, L, tau2, lam1, U1, V1, i, lam2, U2, V2, 0, n2, buf)
        sr, cr = _nadd(sr, cr, r)
        si, ci = _nadd(si, ci, q)
    return sr + cr, si + ci


@njit(cache=True, error_model="numpy")
def _norm_system(mode, L, tau2, lam, U, V, buf):
    """Whole Hermitian sum of one system, serially."""
    acc = 0.0
    comp = 0.0
    for i in range(lam.shape[1] - PAD):
        acc, comp = _nadd(acc, comp, _norm_row(mode, L, tau2, lam, U, V, i, buf))
    return acc + comp


@njit(parallel=True, cache=True, error_model="numpy")
def inner_single(mode, L, tau2, lam1, U1, V1, lam2, U2, V2):
    """``sum_{i,k} K_ik w_ik`` of one pair of systems, parallel over rows; returns ``(re, im)``."""
    n1 = lam1.shape[1] - PAD
    rows = np.zeros((n1, 2))
    nch = (n1 + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(nch):
        r0 = c * ROW_CHUNK
        _inner_rows(mode, L, tau2, lam1, U1, V1, lam2, U2, V2, r0, min(n1, r0 + ROW_CHUNK), rows)
    return _sum_rows2(rows)


@njit(cache=True, error_model="numpy")
def inner_single_serial(mode, L, tau2, lam1, U1, V1, lam2, U2, V2):
    """Serial :func:`inner_single` (same rounding: rows are reduced in the same order)."""
    n1 = lam1.shape[1] - PAD
    rows = np.zeros((n1, 2))
    _inner_rows(mode, L, tau2, lam1, U1, V1, lam2, U2, V2, 0, n1, rows)
    return _sum_rows2(rows)


@njit(parallel=True, cache=True, error_model="numpy")
def norm2_single(mode, L, tau2, lam, U, V):
    """Hermitian ``sum_{i,k} K_ik w_ik`` (real) of one system, parallel over row pairs."""
    n = lam.shape[1] - PAD
    rows = np.zeros(n)
    ntask = (n + 1) // 2
    nch = (ntask + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(nch):
        t0 = c * ROW_CHUNK
        _norm_tasks(mode, L, tau2, lam, U, V, t0, min(ntask, t0 + ROW_CHUNK), rows)
    return _sum_rows1(rows)


@njit(cache=True, error_model="numpy")
def norm2_single_serial(mode, L, tau2, lam, U, V):
    """Serial :func:`norm2_single` (same rounding)."""
    n = lam.shape[1] - PAD
    rows = np.zeros(n)
    _norm_tasks(mode, L, tau2, lam, U, V, 0, (n + 1) // 2, rows)
    return _sum_rows1(rows)


@njit(parallel=True, cache=True, error_model="numpy")
def inner_batched(mode, L, tau2, lam1, U1, V1, lam2, U2, V2):
    """Batched :func:`inner_single`, parallel over the batch axis; returns ``(N, 2)``."""
    nsys = lam1.shape[0]
    out = np.zeros((nsys, 2))
    for s in prange(nsys):
        buf = np.empty((7, BLOCK))
        r, q = _inner_system(mode, L, tau2, lam1[s], U1[s], V1[s], lam2[s], U2[s], V2[s], buf)
        out[s, 0] = r
        out[s, 1] = q
    return out


@njit(cache=True, error_model="numpy")
def inner_batched_serial(mode, L, tau2, lam1, U1, V1, lam2, U2, V2):
    """Serial :func:`inner_batched`."""
    nsys = lam1.shape[0]
    out = np.zeros((nsys, 2))
    buf = np.empty((7, BLOCK))
    for s in range(nsys):
        r, q = _inner_system(mode, L, tau2, lam1[s], U1[s], V1[s], lam2[s], U2[s], V2[s], buf)
        out[s, 0] = r
        out[s, 1] = q
    return out


@njit(parallel=True, cache=True, error_model="numpy")
def norm2_batched(mode, L, tau2, lam, U, V):
    """Batched :func:`norm2_single`, parallel over the batch axis; returns ``(N,)``."""
    nsys = lam.shape[0]
    out = np.zeros(nsys)
    for s in prange(nsys):
        buf = np.empty((7, BLOCK))
        out[s] = _norm_system(mode, L, tau2, lam[s], U[s], V[s], buf)
    return out


@njit(cache=True, error_model="numpy")
def norm2_batched_serial(mode, L, tau2, lam, U, V):
    """Serial :func:`norm2_batched`."""
    nsys = lam.shape[0]
    out = np.zeros(nsys)
    buf = np.empty((7, BLOCK))
    for s in range(nsys):
        out[s] = _norm_system(mode, L, tau2, lam[s], U[s], V[s], buf)
    return out
