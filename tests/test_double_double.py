"""Double-double kernels against exact rational arithmetic (fractions) and their numpy references."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mor_lqo.kernels import double_double_numba as nb
from mor_lqo.kernels import double_double_reference as ref


def _wild(rng, *shape):
    """Entries over 20 orders of magnitude, both signs: products and sums that round a lot."""
    return rng.standard_normal(shape) * 10.0 ** rng.uniform(-10, 10, shape)


def _exact_matmul(Xh, Xl, Y):
    m, k = Xh.shape
    return [[sum((Fraction(Xh[i, t]) + Fraction(Xl[i, t])) * Fraction(Y[t, j]) for t in range(k))
             for j in range(Y.shape[1])] for i in range(m)]


@pytest.mark.parametrize("impl", [nb, ref], ids=["numba", "numpy"])
def test_error_free_transformations_are_exact(impl):
    rng = np.random.default_rng(0)
    a, b = _wild(rng, 200), _wild(rng, 200)
    for x, y in zip(a, b):
        s, e = impl.two_sum(x, y)
        assert Fraction(s) + Fraction(e) == Fraction(x) + Fraction(y) and s == x + y
        p, f = impl.two_prod(x, y)
        assert Fraction(p) + Fraction(f) == Fraction(x) * Fraction(y) and p == x * y


@pytest.mark.parametrize("impl", [nb, ref], ids=["numba", "numpy"])
def test_dd_matmul_matches_the_exact_product(impl):
    rng = np.random.default_rng(1)
    Xh, Y = _wild(rng, 4, 15), _wild(rng, 15, 3)
    # the second half cancels the first to ~1e-16 of the terms: results far smaller than their terms
    Xh, Y = np.hstack([Xh, -Xh]), np.vstack([Y, Y * (1 + 2.0**-52)])
    Xl = Xh * rng.uniform(-1, 1, Xh.shape) * 2.0**-53  # a genuine trailing part
    hi, lo = impl.dd_matmul(Xh, Xl, Y)
    exact = _exact_matmul(Xh, Xl, Y)
    scale = np.abs(Xh) @ np.abs(Y)
    for i in range(4):
        for j in range(3):
            err = abs(Fraction(hi[i, j]) + Fraction(lo[i, j]) - exact[i][j])
            # the pair holds ~106 bits of the result; the accumulation errs at third order in eps
            # of the magnitudes (so a result far smaller than its terms keeps its digits)
            assert err <= Fraction(2.0**-104) * abs(exact[i][j]) + Fraction(1e-40) * Fraction(scale[i, j])
            assert abs(lo[i, j]) <= abs(hi[i, j]) * 2.0**-52  # normalised pair


def test_dd_matmul_numba_and_numpy_agree_bitwise():
    rng = np.random.default_rng(2)
    Xh, Y = _wild(rng, 7, 40), _wild(rng, 40, 5)
    Xl = Xh * 2.0**-60
    for a, b in zip(nb.dd_matmul(Xh, Xl, Y), ref.dd_matmul(Xh, Xl, Y)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", [nb, ref], ids=["numba", "numpy"])
def test_sum_of_squares_and_add(impl):
    rng = np.random.default_rng(3)
    h = _wild(rng, 5, 6)
    g = h * rng.uniform(-1, 1, h.shape) * 2.0**-53
    s, c = impl.dd_sum_of_squares(h, g)
    exact = sum((Fraction(x) + Fraction(y)) ** 2 for x, y in zip(h.ravel(), g.ravel()))
    assert abs(Fraction(s) + Fraction(c) - exact) <= Fraction(1e-30) * exact
    a, b = _wild(rng, 3, 4), _wild(rng, 3, 4)
    hi, lo = impl.dd_add(a, a * 2.0**-60, -a * (1 + 2.0**-50), b * 2.0**-70)
    for i in range(3):
        for j in range(4):
            want = (Fraction(a[i, j]) + Fraction(a[i, j] * 2.0**-60) - Fraction(a[i, j] * (1 + 2.0**-50))
                    + Fraction(b[i, j] * 2.0**-70))
            assert abs(Fraction(hi[i, j]) + Fraction(lo[i, j]) - want) <= Fraction(1e-30) * abs(
                Fraction(a[i, j]))
