"""SparseLQOSystem validation, dense conversion and the shifted sparse solver."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mor_lqo
from mor_lqo.errors import (
    DTypeError,
    NonFiniteError,
    NotASystemError,
    NotHermitianError,
    SamplingTimeError,
    ShapeError,
    SymmetrizationWarning,
)
from mor_lqo.sparse import SingularPencilError, SparseLQOSystem, use_dense

from .models import advdiff


def _small(n=30):
    A = sp.diags(-np.arange(1.0, n + 1)).tocsc()
    return A, np.ones((n, 1)), np.ones((1, n))


def test_shapes_and_values_are_validated():
    A, B, C = _small()
    with pytest.raises(ShapeError):
        SparseLQOSystem(A, B[:-1], C)
    with pytest.raises(ShapeError):
        SparseLQOSystem(A, B, C[:, :-1])
    with pytest.raises(ShapeError):
        SparseLQOSystem(A, B, C, E=sp.identity(29))
    with pytest.raises(ShapeError):
        SparseLQOSystem(sp.random(30, 29, 0.1), B, C)
    with pytest.raises(ShapeError):
        SparseLQOSystem(A, B)  # no output
    with pytest.raises(ShapeError):
        SparseLQOSystem(A, B, np.ones((2, 30)), [sp.identity(30)])
    bad = A.copy()
    bad.data[0] = np.nan
    with pytest.raises(NonFiniteError):
        SparseLQOSystem(bad, B, C)
    with pytest.raises(NonFiniteError):
        SparseLQOSystem(A, B * np.inf, C)
    with pytest.raises(DTypeError):
        SparseLQOSystem(A, np.array([["a"]] * 30), C)
    with pytest.raises(SamplingTimeError):
        SparseLQOSystem(A, B, C, dt=-0.1)
    assert SparseLQOSystem(A, B, C, dt=0.1).is_discrete


def test_quadratic_outputs_are_symmetrised_or_rejected():
    A, B, C = _small()
    M = sp.random(30, 30, 0.2, random_state=0).tocsc()
    with pytest.warns(SymmetrizationWarning):
        s = SparseLQOSystem(A, B, C, M)
    assert abs(s.M[0] - s.M[0].T).max() == 0
    with pytest.raises(NotHermitianError):
        SparseLQOSystem(A, B, C, (1j * M).tocsc() + M)


def test_to_dense_and_from_dense_roundtrip():
    s = advdiff(81, with_E=True, lqo=True)
    d = s.to_dense()
    Ed = s.E.toarray()
    np.testing.assert_allclose(Ed @ d.A, s.A.toarray(), atol=1e-9 * abs(s.A).max())
    np.testing.assert_allclose(Ed @ d.B, s.B, atol=1e-12)
    back = SparseLQOSystem.from_dense(d)
    np.testing.assert_allclose(back.A.toarray(), d.A)
    assert back.M is not None and len(back.M) == s.p
    with pytest.raises(NotASystemError):
        SparseLQOSystem.from_dense("x")
    disc = SparseLQOSystem.from_dense(mor_lqo.LTISystem(0.5 * np.eye(2), np.ones(2), np.ones(2), dt=1.0))
    assert disc.dt == 1.0 and disc.to_dense().dt == 1.0
    with_d = SparseLQOSystem.from_dense(mor_lqo.LTISystem(-np.eye(2), np.ones(2), np.ones(2), D=1.0))
    assert with_d.D.tolist() == [[1.0]] and with_d.to_dense().D.tolist() == [[1.0]]


def test_singular_descriptor_matrix_raises():
    A, B, C = _small()
    E = sp.diags(np.r_[0.0, np.ones(29)]).tocsc()
    s = SparseLQOSystem(A, B, C, E=E)
    with pytest.raises(SingularPencilError):
        s.to_dense()
    zero = SparseLQOSystem(sp.csc_matrix((30, 30)), B, C)  # A + 0 E = 0 is singular
    with pytest.raises(SingularPencilError):
        zero.solver().solve(0.0, np.ones((30, 1)))


@pytest.mark.parametrize("complex_", [False, True])
def test_shifted_solver_matches_dense_solves(complex_):
    s = advdiff(64, complex_=complex_, with_E=True)
    A, E = s.A.toarray(), s.E.toarray()
    R = np.random.default_rng(0).standard_normal((s.n, 2))
    sol = s.solver()
    for p in (-3.0, -2.0 + 5.0j, -2.0 - 5.0j):
        X = sol.solve(p, R)
        np.testing.assert_allclose((A + p * E) @ X, R, atol=1e-10)
        Y = sol.solve(p, R, adjoint=True)
        np.testing.assert_allclose((A.conj().T + p * E.conj().T) @ Y, R, atol=1e-10)
    if not complex_:  # the factorisation of -2+5j serves -2-5j (conjugate trick)
        assert sol.n_factorizations == 2


def test_auto_choice_threshold():
    s = advdiff(100)
    assert use_dense(s, "auto")
    assert not use_dense(s, "lowrank")
    A, B, C = _small(3000)
    assert not use_dense(SparseLQOSystem(A, B, C), "auto")
    assert use_dense(SparseLQOSystem(A, B, C), "dense")
    from mor_lqo.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        use_dense(s, "fast")
