"""Plain-numpy references for :mod:`mor_lqo.kernels.double_double_numba` (vectorised over the output;
used by the tests)."""

from __future__ import annotations

import numpy as np

_SPLITTER = 134217729.0  # 2**27 + 1


def two_sum(a, b):
    """Elementwise ``s + e == a + b`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def two_prod(a, b):
    """Elementwise ``p + e == a * b`` exactly (Dekker)."""
    p = a * b
    t = _SPLITTER * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLITTER * b
    bh = t - (t - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def dd_matmul(X_hi, X_lo, Y):
    """``(X_hi + X_lo) @ Y`` in double-double, one inner index at a time over the whole output."""
    s = np.zeros((X_hi.shape[0], Y.shape[1]))
    c = np.zeros_like(s)  # O(eps) terms
    d = np.zeros_like(s)  # O(eps^2) terms
    for t in range(X_hi.shape[1]):
        p, e = two_prod(X_hi[:, t:t + 1], Y[t:t + 1, :])
        s, f = two_sum(s, p)
        q, g = two_prod(X_lo[:, t:t + 1], Y[t:t + 1, :])
        c, f2 = two_sum(c, f)
        c, e2 = two_sum(c, e)
        c, q2 = two_sum(c, q)
        d += (f2 + e2) + (q2 + g)
    h, g = two_sum(s, c)
    return two_sum(h, g + d)


def dd_sum_of_squares(hi, lo):
    """Sum of ``(hi + lo)**2`` over all entries, sequentially accumulated in double-double."""
    s = c = 0.0
    for h, g in zip(np.ravel(hi), np.ravel(lo)):
        p, e = two_prod(h, h)
        s, f = two_sum(s, p)
        c += (f + e) + g * (2.0 * h + g)
    return two_sum(s, c)


def dd_add(a_hi, a_lo, b_hi, b_lo):
    """Elementwise double-double sum."""
    s, e = two_sum(a_hi, b_hi)
    return two_sum(s, e + (a_lo + b_lo))
