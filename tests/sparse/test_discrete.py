"""Discrete time through the Cayley map: Stein Gramians, h2 norms, errors and BT against the dense path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mor_lqo
from mor_lqo.errors import SamplingTimeError, UnstableSystemError
from mor_lqo.gramians import controllability_gramian
from mor_lqo.reduction.balanced import _observability_gramian
from mor_lqo.sparse import (
    SparseLQOSystem,
    balanced_truncation,
    controllability_factor,
    h2_error,
    h2_inner_parts,
    h2_norm,
    irka,
    observability_factor,
    tsia,
)

from .models import advdiff


def _discrete(n=196, **kw):
    """Explicit-Euler discretisation E x_k = (E + tau A) x_{k-1} + B u_k of the test model (|lam| < 1)."""
    c = advdiff(n, **kw)
    lam = np.linalg.eigvals(c.to_dense().A)
    tau = 1.5 / np.max(np.abs(lam))
    E = c.E if c.E is not None else sp.identity(c.n, format="csc")
    return SparseLQOSystem((E + tau * c.A).tocsc(), c.B, c.C, c.M, E=c.E, dt=0.1)


CASES = [{}, pytest.param({"lqo": True}, marks=pytest.mark.slow), {"lqo": True, "with_E": True}, {"complex_": True}]


@pytest.mark.parametrize("kw", CASES)
def test_stein_gramians_and_norm_match_dense(kw):
    s = _discrete(**kw)
    d = s.to_dense()
    assert d.is_discrete and max(abs(np.linalg.eigvals(d.A))) < 1
    P = controllability_gramian(d)
    Z = controllability_factor(s).Z
    assert np.linalg.norm(Z @ Z.conj().T - P, 2) <= 1e-8 * np.linalg.norm(P, 2)
    Q = _observability_gramian(d)
    E = np.eye(s.n) if s.E is None else s.E.toarray()
    ZQ = observability_factor(s).Z
    assert np.linalg.norm(E.T @ ZQ @ ZQ.conj().T @ E - Q, 2) <= 1e-8 * np.linalg.norm(Q, 2)
    assert h2_norm(s, method="lowrank") == pytest.approx(mor_lqo.h2_norm(d), rel=1e-9)


@pytest.mark.parametrize("kw", CASES[:3])
def test_discrete_bt_and_error_match_dense(kw):
    s = _discrete(**kw)
    d = s.to_dense()
    res = balanced_truncation(s, 6, method="lowrank")
    ref = mor_lqo.balanced_truncation(d, 6)
    assert res.rom.is_discrete and res.rom.dt == 0.1
    assert mor_lqo.h2_error(res.rom, ref.rom) <= 1e-7 * ref.h2_norm
    assert res.h2_error == pytest.approx(ref.h2_error, rel=1e-8)
    assert h2_error(s, ref.rom, method="lowrank") == pytest.approx(ref.h2_error, rel=1e-8)


def test_discrete_restrictions_and_instability():
    s = _discrete(100)
    rom = mor_lqo.balanced_truncation(s.to_dense(), 4).rom
    with pytest.raises(SamplingTimeError):
        h2_inner_parts(s, rom)
    with pytest.raises(SamplingTimeError):
        irka(s, 4, method="lowrank")
    with pytest.raises(SamplingTimeError):
        tsia(s, 4, method="lowrank")
    cont = advdiff(100)
    with pytest.raises(SamplingTimeError):
        h2_error(s, mor_lqo.balanced_truncation(cont.to_dense(), 4).rom, method="lowrank")
    n = 100
    d = np.linspace(-0.9, 0.9, n)
    d[3] = 1.05  # one mode outside the unit disc
    bad = SparseLQOSystem(sp.diags(d).tocsc(), np.ones((n, 1)), np.ones((1, n)), dt=1.0)
    with pytest.raises((UnstableSystemError, mor_lqo.errors.NumericalAccuracyError)):
        h2_norm(bad, method="lowrank", maxiter=60)
