"""Discrete time through the Cayley map: Stein Gramians, h2 norms, errors and BT against the dense path."""

from __future__ import annotations

import warnings

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
    cont_rom = mor_lqo.balanced_truncation(advdiff(100).to_dense(), 4).rom
    with pytest.raises(SamplingTimeError):  # a continuous ROM against a discrete system
        h2_inner_parts(s, cont_rom)
    with pytest.raises(SamplingTimeError):  # an initial ROM of another sampling time
        tsia(s, 4, method="lowrank", init=cont_rom)
    with pytest.raises(SamplingTimeError):
        irka(s, 4, method="lowrank", init=cont_rom)
    with pytest.raises(mor_lqo.errors.InvalidArgumentError):  # continuous-time start / shifts inside the disc
        irka(s, 4, method="lowrank", init="logspace")
    with pytest.raises(mor_lqo.errors.InvalidArgumentError):
        irka(s, 2, method="lowrank", init=[0.5, 2.0])
    with pytest.raises(SamplingTimeError):
        h2_error(s, cont_rom, method="lowrank")
    n = 100
    d = np.linspace(-0.9, 0.9, n)
    d[3] = 1.05  # one mode outside the unit disc
    bad = SparseLQOSystem(sp.diags(d).tocsc(), np.ones((n, 1)), np.ones((1, n)), dt=1.0)
    with pytest.raises((UnstableSystemError, mor_lqo.errors.NumericalAccuracyError)):
        h2_norm(bad, method="lowrank", maxiter=60)


def _transfer(sys, z):
    """F(z) = C (zI - A)^{-1} B of a dense system (the discrete transfer function is z F(z))."""
    return sys.C @ np.linalg.solve(z * np.eye(sys.order) - sys.A, sys.B)


@pytest.mark.parametrize("r", [4, 6])
def test_discrete_irka_is_h2_optimal_and_matches_dense(r):
    """Sparse discrete IRKA: the first-order h2 conditions (tangential Hermite interpolation of F at the
    reflected poles 1/lam_i, checked on the dense model) and the dense IRKA's fixed point."""
    c = advdiff(196)
    tau = 1.0 / np.max(np.abs(np.linalg.eigvals(c.to_dense().A)))
    s = SparseLQOSystem((sp.identity(c.n, format="csc") + tau * c.A).tocsc(), c.B, c.C, dt=0.1)
    d = s.to_dense()
    res = irka(s, r, method="lowrank", tol=1e-10)
    assert res.converged and res.info["init"] == "surrogate" and res.rom.dt == 0.1
    lam, S = np.linalg.eig(res.rom.A)
    bt, ct = np.linalg.solve(S, res.rom.B), res.rom.C @ S
    h = 1e-5
    for i, sig in enumerate(1.0 / lam):
        f, fr = _transfer(d, sig), _transfer(res.rom, sig)
        scale = np.linalg.norm(f)
        assert np.linalg.norm((f - fr) @ bt[i]) <= 1e-7 * scale * np.linalg.norm(bt[i])
        assert np.linalg.norm(ct[:, i] @ (f - fr)) <= 1e-7 * scale * np.linalg.norm(ct[:, i])
        df = (_transfer(d, sig + h) - _transfer(d, sig - h)) / (2 * h)
        dfr = (_transfer(res.rom, sig + h) - _transfer(res.rom, sig - h)) / (2 * h)
        assert abs(ct[:, i] @ (df - dfr) @ bt[i]) <= 1e-5 * np.linalg.norm(df) * np.linalg.norm(ct[:, i]) * \
            np.linalg.norm(bt[i])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mor_lqo.errors.ConvergenceWarning)
        ref = mor_lqo.irka(d, r, tol=1e-10, maxit=200)
    assert res.h2_error == pytest.approx(ref.h2_error, rel=1e-9)
    assert res.h2_error == pytest.approx(mor_lqo.h2_error(d, res.rom), rel=1e-8)


def _mild(n=196, **kw):
    """Explicit Euler with tau = 1/max|lam| (the dense IRKA/TSIA converge from their own starts)."""
    c = advdiff(n, **kw)
    tau = 1.0 / np.max(np.abs(np.linalg.eigvals(c.to_dense().A)))
    E = c.E if c.E is not None else sp.identity(c.n, format="csc")
    return SparseLQOSystem((E + tau * c.A).tocsc(), c.B, c.C, c.M, E=c.E, dt=0.1)


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("kw", [{}, {"with_E": True}, {"complex_": True}])
def test_sparse_dense_stein_residual(kw, adjoint, rng):
    from mor_lqo.sparse.sylvester import sparse_dense_stein

    s = _discrete(100, **kw)
    A, E = s.A.toarray(), np.eye(s.n) if s.E is None else s.E.toarray()
    Ah = np.diag([0.5, -0.3, 0.0]) + 0.1 * rng.standard_normal((3, 3))
    Ah[2] = 0.0  # an eigenvalue exactly 0 (LAPACK's Schur form keeps it exact): the -E y = ... column
    F = rng.standard_normal((s.n, 3))
    X = sparse_dense_stein(s, Ah, F, adjoint=adjoint)
    R = (A.conj().T @ X @ Ah - E.conj().T @ X + F) if adjoint else (A @ X @ Ah.conj().T - E @ X + F)
    assert np.linalg.norm(R) <= 1e-11 * np.linalg.norm(F) * max(1.0, np.linalg.norm(X))
    assert not np.iscomplexobj(X) or kw.get("complex_")


@pytest.mark.parametrize("kw", CASES)
def test_discrete_inner_parts_match_dense(kw):
    s = _discrete(**kw)
    d = s.to_dense()
    rom = mor_lqo.balanced_truncation(d, 4).rom
    got, ref = h2_inner_parts(s, rom), mor_lqo.h2_inner_parts(d, rom)
    scale = mor_lqo.h2_norm(d) * mor_lqo.h2_norm(rom)
    assert abs(got.linear - ref.linear) <= 1e-10 * scale and abs(got.quadratic - ref.quadratic) <= 1e-10 * scale
    err = h2_error(s, rom, method="lowrank", route="sylvester")
    assert err == pytest.approx(mor_lqo.h2_error(d, rom), rel=1e-7)


@pytest.mark.parametrize("kw", [{}, {"lqo": True, "with_E": True}])
def test_discrete_tsia_matches_dense(kw):
    """Sparse discrete (LQO-)TSIA: the dense TSIA's fixed point (and, for LTI, the discrete IRKA's)."""
    s = _mild(**kw)
    d = s.to_dense()
    res = tsia(s, 4, method="lowrank", maxit=30)
    assert res.converged and res.rom.dt == 0.1 and res.info["init"] == "surrogate"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mor_lqo.errors.ConvergenceWarning)
        ref = mor_lqo.tsia(d, 4, tol=1e-10, maxit=300)
    assert res.h2_error == pytest.approx(ref.h2_error, rel=1e-9)
    assert mor_lqo.h2_error(res.rom, ref.rom) <= 1e-6 * ref.h2_norm
    if not kw:
        assert res.h2_error == pytest.approx(irka(s, 4, method="lowrank", tol=1e-10).h2_error, rel=1e-9)
