"""The sparse benchmark models: the AdvecDiff generator reproduces the published n = 300 data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io as sio
from conftest import ADVECDIFF

import mor_lqo
from mor_lqo.sparse import h2_norm
from mor_lqo.sparse.models import advecdiff_lqo, heat2d


def test_advecdiff_generator_reproduces_published_data():
    d = sio.loadmat(ADVECDIFF)
    s = advecdiff_lqo(300)
    np.testing.assert_allclose(s.A.toarray(), d["A"], rtol=1e-13, atol=1e-10)
    np.testing.assert_allclose(s.B, d["B"].astype(float), rtol=1e-13)
    np.testing.assert_allclose(s.C, d["Clin"], rtol=1e-13)
    np.testing.assert_allclose(s.M[0].toarray(), d["Mquad"], rtol=1e-13, atol=1e-16)


def test_advecdiff_lowrank_norm_matches_dense():
    s = advecdiff_lqo(300)
    dense = mor_lqo.LQOSystem(s.A.toarray(), s.B, s.C, M=s.M_dense())
    assert h2_norm(s, method="lowrank") == pytest.approx(mor_lqo.h2_norm(dense), rel=1e-9)


def test_heat2d_shapes():
    s = heat2d(10, m=3, p=2)
    assert (s.n, s.m, s.p) == (100, 3, 2)
    np.testing.assert_allclose(s.C.sum(axis=1), 1.0)
