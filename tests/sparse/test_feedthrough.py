"""Feed-through D of sparse systems against the dense package on ``to_dense()`` (the oracle)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import mor_lqo
from mor_lqo.errors import (
    ConvergenceWarning,
    DTypeError,
    NonFiniteError,
    RelativeErrorUndefinedError,
    SamplingTimeError,
    ShapeError,
)
from mor_lqo.sparse import (
    SparseLQOSystem,
    balanced_truncation,
    error_system,
    h2_error,
    h2_inner_parts,
    h2_norm,
    h2_norm_parts,
    irka,
    tsia,
)

from .models import advdiff

CASES = [{}, {"with_E": True}, {"complex_": True, "with_E": True}, {"lqo": True, "with_E": True}]


def _feedthrough(p, m, complex_=False, seed=7, scale=1.0):
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((p, m))
    if complex_:
        D = D + 1j * rng.standard_normal((p, m))
    return scale * D


def _with_d(s: SparseLQOSystem, D) -> SparseLQOSystem:
    return SparseLQOSystem(s.A, s.B, s.C, s.M, E=s.E, dt=s.dt, D=D)


def _discrete(n=144, tau_factor=1.5, **kw):
    """Explicit Euler E x_k = (E + tau A) x_{k-1} + B u_k + D u_k of the test model (|lam| < 1), with a D
    scaled so that the cross term 2 Re tr((C E^{-1} B)^H D) is a visible part of the squared norm."""
    c = advdiff(n, **kw)
    tau = tau_factor / np.max(np.abs(np.linalg.eigvals(c.to_dense().A)))
    E = c.E if c.E is not None else sp.identity(c.n, format="csc")
    s = SparseLQOSystem((E + tau * c.A).tocsc(), c.B, c.C, c.M, E=c.E, dt=0.1)
    H0 = s.lag0_linear()
    D = _feedthrough(s.p, s.m, kw.get("complex_", False), scale=np.linalg.norm(H0) / np.sqrt(s.p * s.m))
    return _with_d(s, D + H0)  # correlated with H0: the cross term matters


# ------------------------------------------------------------------ construction
def test_d_is_validated_copied_and_typed():
    c = advdiff(100)
    D = np.array([[1.0, 2.0], [3.0, 4.0]])
    s = _with_d(c, D)
    D[0, 0] = 99.0  # the system keeps its own copy
    assert s.D[0, 0] == 1.0 and not s.D.flags.writeable and s.has_feedthrough
    assert not c.has_feedthrough and c.D.shape == (2, 2) and not np.any(c.D)
    for bad in (np.ones((2, 3)), np.ones(2), np.ones((3, 2)), 1.0):
        with pytest.raises(ShapeError):
            _with_d(c, bad)
    with pytest.raises(NonFiniteError):
        _with_d(c, np.array([[np.nan, 0.0], [0.0, 0.0]]))
    with pytest.raises(NonFiniteError):
        _with_d(c, np.array([[np.inf, 0.0], [0.0, 0.0]]))
    with pytest.raises(DTypeError):
        _with_d(c, np.array([["a", "b"], ["c", "d"]]))
    Dc = np.array([[1.0 + 2.0j, 0.0], [0.0, 1.0]])
    Dc0 = Dc.copy()
    sc = _with_d(c, Dc)  # complex D makes the system complex, never cast to real
    assert sc.is_complex and sc.D.dtype == np.complex128 and sc.D[0, 0] == 1.0 + 2.0j
    assert sc.A.dtype == np.complex128 and np.array_equal(Dc, Dc0)
    siso = SparseLQOSystem(c.A, c.B[:, 0], c.C[0], D=2.5)  # a scalar for p = m = 1, as the dense package
    assert siso.D.shape == (1, 1) and siso.D[0, 0] == 2.5


@pytest.mark.parametrize("dt", [0.0, 0.1])
def test_to_dense_from_dense_roundtrip_and_lag0(dt):
    s = _discrete(100, with_E=True) if dt else _with_d(advdiff(100, with_E=True), _feedthrough(2, 2))
    d = s.to_dense()
    np.testing.assert_array_equal(d.D, s.D)
    assert d.dt == dt and d.convention == "current"
    back = SparseLQOSystem.from_dense(d)
    np.testing.assert_array_equal(back.D, s.D)
    assert back.dt == dt and back.E is None
    if dt:
        # h_0 = C E^{-1} B + D: the dense current-convention impulse response
        np.testing.assert_allclose(d.impulse_response(2)[0], s.lag0_linear() + s.D, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(s.lag0_linear(), d.C @ d.B, rtol=1e-10, atol=1e-15)
        std = d.with_convention("standard")
        with pytest.raises(SamplingTimeError):  # D enters the lag-0 kernel differently there
            SparseLQOSystem.from_dense(std)
        nod = mor_lqo.LQOSystem(d.A, d.B, d.C, dt=dt, convention="standard")
        assert not SparseLQOSystem.from_dense(nod).has_feedthrough  # D = 0: same h2 quantities


def test_lyap_system_and_error_system_handle_d():
    s = _discrete(100, with_E=True)
    assert not s.lyap_system().has_feedthrough  # Gramians only
    rom = mor_lqo.LQOSystem(0.5 * np.eye(2), np.ones((2, 2)), np.ones((2, 2)), D=np.eye(2), dt=0.1)
    es = error_system(s, rom)
    np.testing.assert_array_equal(es.D, s.D - rom.D)
    assert es.dt == 0.1


# ------------------------------------------------------------------ discrete-time norms and errors
@pytest.mark.parametrize("kw", CASES)
def test_discrete_norms_match_dense(kw):
    s = _discrete(**kw)
    d = s.to_dense()
    lr, de = h2_norm_parts(s, method="lowrank"), mor_lqo.h2_norm_parts(d)
    cross = 2 * np.vdot(d.C @ d.B, d.D).real
    assert abs(cross) > 1e-2 * de.total  # the lag-0 cross term is tested, not negligible
    assert lr.linear == pytest.approx(de.linear, rel=1e-8)
    assert lr.quadratic == pytest.approx(de.quadratic, rel=1e-8, abs=1e-12 * de.linear)
    assert h2_norm(s, method="lowrank") == pytest.approx(mor_lqo.h2_norm(d), rel=1e-8)
    # a ROM with its own D^ (and C^ B^ != 0): inner product and both error routes
    rom = mor_lqo.balanced_truncation(d, 4).rom
    rom = mor_lqo.LQOSystem(rom.A, rom.B, rom.C, rom.M, D=0.5 * rom.D + 0.1, dt=rom.dt)
    got, ref = h2_inner_parts(s, rom), mor_lqo.h2_inner_parts(d, rom)
    scale = mor_lqo.h2_norm(d) * mor_lqo.h2_norm(rom)
    assert abs(got.linear - ref.linear) <= 1e-9 * scale and abs(got.quadratic - ref.quadratic) <= 1e-9 * scale
    e_ref = mor_lqo.h2_error(d, rom)
    for route in ("error-system", "sylvester"):
        assert h2_error(s, rom, method="lowrank", route=route) == pytest.approx(e_ref, rel=1e-8)
    rel = h2_error(s, rom, method="lowrank", relative=True)
    assert rel == pytest.approx(mor_lqo.h2_error(d, rom, relative=True), rel=1e-8)
    # the dense path (auto at this size) is the dense function (on its own cached copy of to_dense())
    assert h2_error(s, rom) == pytest.approx(mor_lqo.h2_error(d, rom), rel=1e-12)


def test_discrete_error_with_equal_d_is_the_strictly_proper_error():
    s = _discrete(100, with_E=True)
    rom = mor_lqo.balanced_truncation(s.to_dense(), 4).rom  # D^ = D
    np.testing.assert_array_equal(rom.D, s.D)
    s0 = _with_d(s, None)
    rom0 = mor_lqo.LQOSystem(rom.A, rom.B, rom.C, dt=rom.dt)
    assert h2_error(s, rom, method="lowrank") == pytest.approx(h2_error(s0, rom0, method="lowrank"), rel=1e-10)


def test_discrete_standard_convention_rom_is_rejected():
    s = _discrete(100)
    rom = mor_lqo.LQOSystem(0.5 * np.eye(2), np.ones((2, 2)), np.ones((2, 2)), D=np.eye(2), dt=0.1,
                            convention="standard")
    for route in ("error-system", "sylvester"):
        with pytest.raises(SamplingTimeError):
            h2_error(s, rom, method="lowrank", route=route)
    with pytest.raises(SamplingTimeError):  # the dense package says the same
        mor_lqo.h2_error(s.to_dense(), rom)


# ------------------------------------------------------------------ continuous time: infinite H2 norm
@pytest.mark.parametrize("complex_", [False, True])
def test_continuous_d_infinite_norm_and_errors_as_dense(complex_):
    D = _feedthrough(2, 2, complex_)
    s = _with_d(advdiff(144, with_E=True, complex_=complex_), D)
    d = s.to_dense()
    D_before, B_before = s.D.copy(), np.array(s.B)
    assert h2_norm(s, method="lowrank") == np.inf == mor_lqo.h2_norm(d)
    assert h2_norm_parts(s, method="lowrank") == mor_lqo.h2_norm_parts(d)
    base = mor_lqo.balanced_truncation(d, 4).rom
    np.testing.assert_array_equal(base.D, D)  # dense BT keeps D
    other = mor_lqo.LQOSystem(base.A, base.B, base.C, D=D + 1.0)
    other_D = other.D.copy()
    with pytest.raises(ShapeError) as exc_sparse:
        h2_inner_parts(s, base)
    with pytest.raises(ShapeError) as exc_dense:
        mor_lqo.h2_inner_parts(d, base)
    assert str(exc_sparse.value) == str(exc_dense.value)
    for route in ("error-system", "sylvester"):
        # D != D^: infinite error (no exception), as the dense h2_error
        assert h2_error(s, other, method="lowrank", route=route) == np.inf == mor_lqo.h2_error(d, other)
        # D = D^: the finite error of the strictly proper parts
        e = h2_error(s, base, method="lowrank", route=route)
        tol = 1e-8 if route == "error-system" else 1e-5
        assert e == pytest.approx(mor_lqo.h2_error(d, base), rel=tol)
        for rom in (base, other):
            with pytest.raises(RelativeErrorUndefinedError) as exc_sparse:
                h2_error(s, rom, method="lowrank", route=route, relative=True)
            with pytest.raises(RelativeErrorUndefinedError) as exc_dense:
                mor_lqo.h2_error(d, rom, relative=True)
            assert str(exc_sparse.value) == str(exc_dense.value)
    # D = 0 and D^ != 0: an infinite error, also relative to the (finite) norm
    s0 = _with_d(s, None)
    for route in ("error-system", "sylvester"):
        for relative in (False, True):
            got = h2_error(s0, other, method="lowrank", route=route, relative=relative)
            assert got == np.inf == mor_lqo.h2_error(s0.to_dense(), other, relative=relative)
    # nothing was modified
    np.testing.assert_array_equal(s.D, D_before)
    np.testing.assert_array_equal(s.B, B_before)
    np.testing.assert_array_equal(other.D, other_D)
    np.testing.assert_array_equal(base.D, D)


# ------------------------------------------------------------------ reducers keep D
@pytest.mark.parametrize("kw", [{}, {"complex_": True, "with_E": True}])
def test_continuous_reducers_keep_d(kw):
    D = _feedthrough(2, 2, kw.get("complex_", False))
    s = _with_d(advdiff(100, **kw), D)
    d = s.to_dense()
    for reducer in (balanced_truncation, irka, tsia):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = reducer(s, 4, method="lowrank")
        assert res.converged  # the stopping test leaves D out (the continuous norm would be infinite)
        np.testing.assert_array_equal(res.rom.D, D)
        assert res.h2_norm == np.inf and np.isnan(res.relative_error)
        assert np.isfinite(res.h2_error)
        assert res.h2_error == pytest.approx(mor_lqo.h2_error(d, res.rom), rel=1e-7)
        # the reduction concerns the strictly proper part: the same ROM as without D
        ref = reducer(_with_d(s, None), 4, method="lowrank")
        assert mor_lqo.h2_error(mor_lqo.LQOSystem(res.rom.A, res.rom.B, res.rom.C), ref.rom) <= 1e-7 * ref.h2_norm


@pytest.mark.parametrize("kw", [{}, {"lqo": True, "with_E": True}])
def test_discrete_reducers_keep_d_as_dense(kw):
    s = _discrete(144, tau_factor=1.0, **kw)
    d = s.to_dense()
    nrm = mor_lqo.h2_norm(d)
    dense_bt = mor_lqo.balanced_truncation(d, 4)
    np.testing.assert_array_equal(dense_bt.rom.D, d.D)  # the dense reducers keep D^ = D (also in discrete time)
    for reducer in (balanced_truncation, irka, tsia):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = reducer(s, 4, method="lowrank")
        assert res.converged
        np.testing.assert_array_equal(res.rom.D, s.D)
        assert res.rom.dt == 0.1 and res.rom.convention == "current"
        assert res.h2_norm == pytest.approx(nrm, rel=1e-8)
        assert res.h2_error == pytest.approx(mor_lqo.h2_error(d, res.rom), rel=1e-7)
    res = balanced_truncation(s, 4, method="lowrank")
    assert res.h2_error == pytest.approx(dense_bt.h2_error, rel=1e-7)
