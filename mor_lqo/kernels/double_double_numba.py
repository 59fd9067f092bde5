r"""Double-double (about 32 significant digits) matrix products for residual refinement (numba).

A double-double number is an unevaluated sum ``hi + lo`` of two doubles with ``|lo| <= ulp(hi) / 2``.
Products of doubles are made exact by Dekker's splitting (:func:`two_prod`), sums by Knuth's
:func:`two_sum`; a dot product accumulates its leading parts exactly and the rounding errors in a
second double, so

.. math::

    \Bigl|\mathrm{fl}_{dd}\Bigl(\sum_k x_k y_k\Bigr) - \sum_k x_k y_k\Bigr|
    \lesssim k\,\varepsilon^2 \sum_k |x_k y_k| + \varepsilon^2\Bigl|\sum_k x_k y_k\Bigr|,

about ``1e-29`` relative to the magnitudes for ``k`` up to a few thousand — enough to form residuals of
equations that were solved to double precision. Plain-numpy references (vectorised over the output,
same operations, used by the tests) are in :mod:`mor_lqo.kernels.double_double_reference`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_SPLITTER = 134217729.0  # 2**27 + 1 (Dekker)


@njit(cache=True, inline="always")
def two_sum(a: float, b: float) -> tuple[float, float]:
    """``s + e == a + b`` exactly, ``s = fl(a + b)`` (Knuth)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@njit(cache=True, inline="always")
def two_prod(a: float, b: float) -> tuple[float, float]:
    """``p + e == a * b`` exactly, ``p = fl(a * b)`` (Dekker; no overflow for ``|a|, |b| < 1e300``)."""
    p = a * b
    t = _SPLITTER * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLITTER * b
    bh = t - (t - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


@njit(cache=True)
def dd_matmul(X_hi: np.ndarray, X_lo: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(X_hi + X_lo) @ Y`` in double-double: ``X_hi @ Y`` exactly accumulated, ``X_lo @ Y`` in double.

    Parameters
    ----------
    X_hi, X_lo : ndarray (m, k), float64
    Y : ndarray (k, n), float64

    Returns
    -------
    hi, lo : ndarray (m, n), float64, the product's leading and trailing parts
    """
    m, k = X_hi.shape
    n = Y.shape[1]
    Yt = np.ascontiguousarray(Y.T)
    hi = np.empty((m, n))
    lo = np.empty((m, n))
    for i in range(m):
        xh = X_hi[i]
        xl = X_lo[i]
        for j in range(n):
            y = Yt[j]
            s = 0.0  # leading sum, exact up to the errors collected in c
            c = 0.0  # O(eps) terms: product and sum errors, X_lo @ Y
            d = 0.0  # O(eps^2) terms: the rounding errors of c's own products and sums
            for t in range(k):
                p, e = two_prod(xh[t], y[t])
                s, f = two_sum(s, p)
                q, g = two_prod(xl[t], y[t])
                c, f2 = two_sum(c, f)
                c, e2 = two_sum(c, e)
                c, q2 = two_sum(c, q)
                d += (f2 + e2) + (q2 + g)
            h, g = two_sum(s, c)
            hi[i, j], lo[i, j] = two_sum(h, g + d)
    return hi, lo


@njit(cache=True)
def dd_sum_of_squares(hi: np.ndarray, lo: np.ndarray) -> tuple[float, float]:
    r""":math:`\sum_{ij} (hi_{ij} + lo_{ij})^2` in double-double (any shape, flattened)."""
    h = hi.ravel()
    g = lo.ravel()
    s = 0.0
    c = 0.0
    for t in range(h.size):
        p, e = two_prod(h[t], h[t])
        s, f = two_sum(s, p)
        c += (f + e) + g[t] * (2.0 * h[t] + g[t])
    return two_sum(s, c)


@njit(cache=True)
def dd_add(a_hi: np.ndarray, a_lo: np.ndarray, b_hi: np.ndarray, b_lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise ``(a_hi + a_lo) + (b_hi + b_lo)`` in double-double (same-shape 2-D arrays)."""
    m, n = a_hi.shape
    hi = np.empty((m, n))
    lo = np.empty((m, n))
    for i in range(m):
        for j in range(n):
            s, e = two_sum(a_hi[i, j], b_hi[i, j])
            hi[i, j], lo[i, j] = two_sum(s, e + (a_lo[i, j] + b_lo[i, j]))
    return hi, lo
