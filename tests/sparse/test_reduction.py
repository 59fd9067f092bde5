"""Low-rank BT / LQO-BT and sparse IRKA against the dense reducers of mor_lqo."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mor_lqo
from mor_lqo.errors import InvalidArgumentError, OrderError
from mor_lqo.sparse import SparseLQOSystem, balanced_truncation, irka

from .models import advdiff, heat2d


@pytest.mark.parametrize("kw", [{}, {"with_E": True}, {"lqo": True}, {"lqo": True, "with_E": True},
                                {"complex_": True}])
def test_bt_matches_dense(kw):
    s = advdiff(289, **kw)
    d = s.to_dense()
    res = balanced_truncation(s, 8, method="lowrank")
    ref = mor_lqo.balanced_truncation(d, 8)
    assert res.method == ("lqo-bt" if kw.get("lqo") else "bt")
    assert res.rom.order == 8 and res.rom.is_complex == bool(kw.get("complex_"))
    # the two ROMs realise the same map up to the Gramian accuracy (relative residual 1e-10)
    assert mor_lqo.h2_error(res.rom, ref.rom) <= 1e-7 * ref.h2_norm
    np.testing.assert_allclose(res.hsv[:8], ref.hsv[:8], rtol=1e-7)
    assert res.h2_error == pytest.approx(ref.h2_error, rel=1e-5)
    assert res.h2_norm == pytest.approx(ref.h2_norm, rel=1e-9)
    assert res.info["residual_P"] <= 1e-10 and res.info["residual_Q"] <= 1e-10


def test_bt_auto_uses_dense_for_small_systems_and_validates_order():
    s = advdiff(100)
    res = balanced_truncation(s, 4)
    assert "residual_P" not in res.info  # dense reducer
    with pytest.raises(OrderError):
        balanced_truncation(s, 0, method="lowrank")
    A, B, C = heat2d(12)
    with pytest.raises(OrderError):  # SISO heat: Hankel singular values reach rounding long before r = 60
        balanced_truncation(SparseLQOSystem(A, B, C), 60, method="lowrank")


@pytest.mark.parametrize("init", ["surrogate", "logspace"])
@pytest.mark.parametrize("kw", [{}, {"with_E": True}])
def test_irka_matches_dense(init, kw):
    s = advdiff(289, **kw)
    d = s.to_dense()
    res = irka(s, 4, method="lowrank", init=init, maxit=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mor_lqo.irka(d, 4)
    assert res.converged and res.method == "irka"
    assert not res.rom.is_complex
    # converged IRKA ROMs agree to O(shift tolerance 1e-6) in the relative h2 distance
    assert mor_lqo.h2_error(res.rom, ref.rom) <= 1e-5 * ref.h2_norm
    assert res.h2_error == pytest.approx(ref.h2_error, rel=1e-4)
    # first-order H2 optimality: right tangential interpolation H(s_i) b_i = H^(s_i) b_i at the mirrored
    # poles s_i = -lam_i with the residue directions b_i (checked with dense solves)
    lam, S = np.linalg.eig(res.rom.A)
    bt = np.linalg.solve(S, res.rom.B)
    for i in range(2):
        sg = -lam[i]
        H = d.C @ np.linalg.solve(sg * np.eye(d.n) - d.A, d.B @ bt[i])
        Hr = res.rom.C @ np.linalg.solve(sg * np.eye(4) - res.rom.A, res.rom.B @ bt[i])
        assert np.linalg.norm(H - Hr) <= 1e-5 * np.linalg.norm(H)


def test_irka_nonconvergence_returns_stable_surrogate_start():
    s = advdiff(289)  # r = 6: the sparse iteration oscillates on this non-normal model
    with pytest.warns(mor_lqo.errors.ConvergenceWarning, match="start ROM"):
        res = irka(s, 6, method="lowrank", maxit=5)
    assert not res.converged and res.rom.is_stable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mor_lqo.irka(s.to_dense(), 6)
    assert res.h2_error <= 1.01 * ref.h2_error


def test_irka_with_shifts_and_errors():
    s = advdiff(196)
    res = irka(s, 4, method="lowrank", init=np.array([10.0, 100.0, 1000.0, 5000.0]), maxit=100)
    assert res.converged
    with pytest.raises(InvalidArgumentError):
        irka(s, 4, method="lowrank", init=np.array([-1.0, 1.0, 2.0, 3.0]))
    with pytest.raises(InvalidArgumentError):
        irka(s, 4, method="lowrank", init=np.array([1.0 + 1j, 2.0, 3.0, 4.0]))
    with pytest.raises(OrderError):
        irka(s, s.n, method="lowrank")


@pytest.mark.parametrize("kw", [{}, {"lqo": True}, {"lqo": True, "with_E": True}])
@pytest.mark.parametrize("r", [4, 8])
def test_tsia_matches_dense(kw, r):
    from mor_lqo.sparse import tsia

    s = advdiff(289, **kw)
    d = s.to_dense()
    res = tsia(s, r, method="lowrank")
    ref = mor_lqo.tsia(d, r)
    assert res.converged and ref.converged
    assert res.method == ("lqo-tsia" if kw.get("lqo") else "tsia")
    # same fixed point: ROM distance at the pole tolerance, errors equal to ~1e-10 relative
    assert mor_lqo.h2_error(res.rom, ref.rom) <= 1e-6 * ref.h2_norm
    assert res.h2_error == pytest.approx(ref.h2_error, rel=1e-8)
    # first-order optimality conditions checked by the dense core
    assert max(mor_lqo.h2_optimality_residuals(d, res.rom)) < 1e-5


def test_sylvester_adjoint_residual():
    from mor_lqo.sparse import sparse_dense_sylvester

    s = advdiff(196, with_E=True)
    rom = mor_lqo.balanced_truncation(s.to_dense(), 5).rom
    F = np.random.default_rng(0).standard_normal((s.n, 5))
    Y = sparse_dense_sylvester(s, rom.A, F, adjoint=True)
    A, E = s.A.toarray(), s.E.toarray()
    assert np.linalg.norm(A.T @ Y + E.T @ Y @ rom.A + F) <= 1e-10 * np.linalg.norm(F)
