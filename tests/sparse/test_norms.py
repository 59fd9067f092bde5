"""h2 norms, inner products and errors from low-rank factors against the dense mor_lqo functions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mor_lqo
from mor_lqo.errors import NotASystemError, RelativeErrorUndefinedError, SamplingTimeError, ShapeError
from mor_lqo.norms import h2_inner_parts as dense_inner_parts
from mor_lqo.sparse import (
    SparseLQOSystem,
    error_system,
    h2_error,
    h2_inner_parts,
    h2_norm,
    h2_norm_parts,
    sparse_dense_sylvester,
)

from .models import advdiff, heat2d

CASES = [{}, {"with_E": True}, {"lqo": True}, {"lqo": True, "with_E": True}, {"complex_": True}]


@pytest.mark.parametrize("kw", CASES)
def test_h2_norm_matches_dense(kw):
    s = advdiff(324, **kw)
    info = {}
    lr = h2_norm_parts(s, method="lowrank", info=info)
    de = mor_lqo.h2_norm_parts(s.to_dense())
    assert info["method"] == "lowrank" and info["residual"] <= 1e-10
    # relative residual 1e-10 -> the squared norm is accurate to ~1e-10 (x operator conditioning)
    assert lr.linear == pytest.approx(de.linear, rel=1e-8)
    assert lr.quadratic == pytest.approx(de.quadratic, rel=1e-8, abs=1e-12 * de.linear)
    assert h2_norm(s, method="lowrank") == pytest.approx(mor_lqo.h2_norm(s.to_dense()), rel=1e-8)
    # auto picks the dense path at this size and gives the same number
    assert h2_norm(s) == pytest.approx(mor_lqo.h2_norm(s.to_dense()), rel=1e-13)


def test_lqo_norm_equals_tr_BQB():
    """Second route: ||S||^2 = tr(B^H Q B) with the low-rank LQO observability Gramian."""
    from mor_lqo.sparse import observability_factor

    s = advdiff(324, lqo=True, with_E=True)
    fq = observability_factor(s, tol=1e-11)
    via_q = np.linalg.norm(fq.Z.conj().T @ s.B) ** 2
    assert via_q == pytest.approx(h2_norm_parts(s, method="lowrank", tol=1e-11).total, rel=1e-8)


@pytest.mark.slow
def test_h2_norm_matches_pymor():
    pymor_iosys = pytest.importorskip("pymor.models.iosys")
    A, B, C = heat2d(25, m=2, p=2)
    fom = pymor_iosys.LTIModel.from_matrices(A, B, C)
    assert h2_norm(SparseLQOSystem(A, B, C), method="lowrank") == pytest.approx(fom.h2_norm(), rel=1e-8)


@pytest.mark.parametrize("kw", CASES)
def test_sylvester_and_inner_product(kw):
    s = advdiff(289, **kw)
    rom = mor_lqo.balanced_truncation(s.to_dense(), 6).rom
    X = sparse_dense_sylvester(s, rom.A, np.asarray(s.B) @ rom.B.conj().T)
    A, E = s.A.toarray(), (np.eye(s.n) if s.E is None else s.E.toarray())
    R = A @ X + E @ X @ rom.A.conj().T + s.B @ rom.B.conj().T
    assert np.linalg.norm(R) <= 1e-10 * np.linalg.norm(s.B @ rom.B.conj().T)
    if not kw.get("complex_"):
        assert np.isrealobj(X)
    lr = h2_inner_parts(s, rom)
    de = dense_inner_parts(s.to_dense(), rom)
    assert lr.linear == pytest.approx(de.linear, rel=1e-9)
    assert lr.quadratic == pytest.approx(de.quadratic, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("route", ["error-system", "sylvester"])
def test_h2_error_matches_dense(kw, route):
    s = advdiff(289, **kw)
    d = s.to_dense()
    rom = mor_lqo.balanced_truncation(d, 8).rom
    nrm = mor_lqo.h2_norm(d)
    ref = mor_lqo.h2_error(d, rom)
    e = h2_error(s, rom, method="lowrank", route=route)
    # error-system route: no cancellation; sylvester route: absolute accuracy ~ sqrt(tol) ||S||
    tol_abs = 1e-8 * nrm if route == "error-system" else 1e-5 * nrm
    assert abs(e - ref) <= tol_abs
    rel = h2_error(s, rom, method="lowrank", relative=True)
    assert rel == pytest.approx(ref / nrm, rel=1e-6)


def test_small_error_is_resolved_by_error_system():
    A, B, C = heat2d(20)
    s = SparseLQOSystem(A, B, C)
    d = s.to_dense()
    rom = mor_lqo.balanced_truncation(d, 10).rom
    ref = mor_lqo.h2_error(d, rom, relative=True)  # ~1e-8: the cancellation-free dense route
    e = h2_error(s, rom, method="lowrank", relative=True)
    assert ref < 1e-6
    assert e == pytest.approx(ref, rel=1e-2)


def test_error_system_structure():
    s = advdiff(100, lqo=True, with_E=True)
    rom = mor_lqo.balanced_truncation(s.to_dense(), 4).rom
    es = error_system(s, rom)
    assert es.n == s.n + 4 and es.M is not None and es.E is not None
    np.testing.assert_allclose(es.C[:, s.n:], -rom.C)


def test_norm_errors():
    s = advdiff(100)
    rom = mor_lqo.balanced_truncation(s.to_dense(), 4).rom
    with pytest.raises(NotASystemError):
        h2_norm("x")
    with pytest.raises(NotASystemError):
        h2_error(s, s, method="lowrank")
    with pytest.raises(SamplingTimeError):
        h2_error(s, mor_lqo.LTISystem(0.5 * np.eye(2), np.ones((2, 2)), np.ones((2, 2)), dt=1.0), method="lowrank")
    with pytest.raises(ShapeError):
        h2_error(s, mor_lqo.LTISystem(-np.eye(2), np.ones((2, 1)), np.ones((2, 2))), method="lowrank")
    rom_d = mor_lqo.LTISystem(rom.A, rom.B, rom.C, D=np.ones((2, 2)))
    with pytest.raises(ShapeError):  # continuous time with a feed-through: as the dense h2_inner_parts
        h2_inner_parts(s, rom_d)
    assert h2_error(s, rom_d, method="lowrank") == np.inf == mor_lqo.h2_error(s.to_dense(), rom_d)
    z = SparseLQOSystem(sp.diags(-np.arange(1.0, 11)).tocsc(), np.zeros((10, 1)), np.ones((1, 10)))
    with pytest.raises(RelativeErrorUndefinedError):
        h2_error(z, mor_lqo.LTISystem(-np.eye(1), np.ones((1, 1)), np.ones((1, 1))), method="lowrank", relative=True)
