"""Every input error is a specific MorLqoError subclass whose message names the argument.

Each case is a bad call of a public function; the test checks the exact error class (and that it is
a MorLqoError and still the matching built-in, ValueError or TypeError) and a word of the message.
"""

from __future__ import annotations

import numpy as np
import pytest

import mor_lqo as ml
from mor_lqo import LQOSystem
from mor_lqo.errors import (
    DTypeError,
    InvalidArgumentError,
    MorLqoError,
    NonFiniteError,
    NotASystemError,
    OrderError,
    SamplingTimeError,
    ShapeError,
    UnexpectedOptionError,
    UnknownMethodError,
)

NAN, INF = float("nan"), float("inf")
_rng = np.random.default_rng(0)
A = -np.eye(4) + 0.1 * _rng.standard_normal((4, 4))
B = _rng.standard_normal((4, 1))
C = _rng.standard_normal((1, 4))
S = LQOSystem(A, B, C)
SD = LQOSystem(np.diag([0.5, 0.4, -0.3, 0.2]), B, C, dt=1.0)
SD2 = LQOSystem(np.diag([0.5, 0.4, -0.3, 0.2]), B, C, dt=2.0)
PAIRS = [LQOSystem.conjugate_pairs(np.array([0.5 + 0.1j, 0.3 - 0.2j, 0.1j]), np.ones((3, 1)),
                                   np.ones((1, 3)), dt=1.0)]

CASES = {
    # constructors: sampling time, convention, shapes, entries, dtypes
    "dt negative": (lambda: LQOSystem(A, B, C, dt=-1.0), SamplingTimeError, "dt"),
    "dt nan": (lambda: LQOSystem(A, B, C, dt=NAN), SamplingTimeError, "dt"),
    "dt inf": (lambda: LQOSystem(A, B, C, dt=INF), SamplingTimeError, "dt"),
    "dt string": (lambda: LQOSystem(A, B, C, dt="1"), DTypeError, "dt"),
    "convention unknown": (lambda: LQOSystem(A, B, C, dt=1.0, convention="later"),
                           SamplingTimeError, "convention"),
    "convention not str": (lambda: LQOSystem(A, B, C, dt=1.0, convention=1),
                           SamplingTimeError, "convention"),
    "A not square": (lambda: LQOSystem(A[:3], B, C), ShapeError, "A"),
    "B wrong rows": (lambda: LQOSystem(A, B[:3], C), ShapeError, "B"),
    "C wrong columns": (lambda: LQOSystem(A, B, C[:, :3]), ShapeError, "C"),
    "D wrong shape": (lambda: LQOSystem(A, B, C, D=np.ones((2, 2))), ShapeError, "D"),
    "A nan": (lambda: LQOSystem(A * NAN, B, C), NonFiniteError, "A"),
    "B inf": (lambda: LQOSystem(A, B * INF, C), NonFiniteError, "B"),
    "A strings": (lambda: LQOSystem(np.full((4, 4), "x"), B, C), DTypeError, "A"),
    "lam 2-d": (lambda: LQOSystem.diagonal(np.ones((2, 2)), B[:2], C[:, :2]), ShapeError, "lam"),
    "lam nan": (lambda: LQOSystem.diagonal([NAN, -1.0], B[:2], C[:, :2]), NonFiniteError, "lam"),
    "pairs scale 0": (lambda: LQOSystem.conjugate_pairs([0.5j], [[1.0]], [[1.0]], dt=1.0, scale=0),
                      InvalidArgumentError, "scale"),
    "pairs scale nan": (lambda: LQOSystem.conjugate_pairs([0.5j], [[1.0]], [[1.0]], dt=1.0,
                                                          scale=NAN), InvalidArgumentError, "scale"),
    "with_convention": (lambda: SD.with_convention("x"), SamplingTimeError, "convention"),
    "from_control": (lambda: LQOSystem.from_control("ss"), NotASystemError, "StateSpace"),
    "compatible_with": (lambda: S.compatible_with("x"), NotASystemError, "LQOSystem"),
    "project shape": (lambda: S.project(np.ones((3, 2))), ShapeError, "V"),
    # simulation
    "simulate u nan": (lambda: SD.simulate(np.full((5, 1), NAN)), NonFiniteError, "u"),
    "simulate u shape": (lambda: SD.simulate(np.ones((5, 3))), ShapeError, "u"),
    "simulate convention": (lambda: SD.simulate(np.ones((5, 1)), convention="x"),
                            SamplingTimeError, "convention"),
    "simulate t discrete": (lambda: SD.simulate(np.ones((3, 1)), t=[0, 1, 2]),
                            InvalidArgumentError, "t"),
    "simulate no t": (lambda: S.simulate(np.ones((5, 1))), InvalidArgumentError, "t"),
    "simulate t uneven": (lambda: S.simulate(np.ones((3, 1)), t=[0, 2, 3]), InvalidArgumentError, "t"),
    "simulate t decreasing": (lambda: S.simulate(np.ones((3, 1)), t=[2, 1, 0]),
                              InvalidArgumentError, "t"),
    "simulate t nan": (lambda: S.simulate(np.ones((3, 1)), t=[0, NAN, 1]), NonFiniteError, "t"),
    # norms and equations
    "h2_norm not a system": (lambda: ml.h2_norm("sys"), NotASystemError, "LQOSystem"),
    "h2_error dt mismatch": (lambda: ml.h2_error(SD, SD2), SamplingTimeError, "sampling"),
    "h2_error cont/disc": (lambda: ml.h2_error(S, SD), SamplingTimeError, "discrete"),
    "h2_error_grad mismatch": (lambda: ml.h2_error_grad(S, SD), SamplingTimeError, "discrete"),
    "lyapunov not square": (lambda: ml.lyapunov(np.ones((2, 3)), np.ones((2, 2))), ShapeError, "square"),
    "lyapunov nan": (lambda: ml.lyapunov(np.eye(2) * NAN, np.ones((2, 2))), NonFiniteError, "A"),
    "lyapunov rhs shape": (lambda: ml.lyapunov(-np.eye(2), np.ones((3, 3))), ShapeError, "right-hand"),
    # reducers: orders, tolerances, iteration limits, method names, shifts
    "bt r = 0": (lambda: ml.balanced_truncation(S, 0), OrderError, "order"),
    "bt r float": (lambda: ml.balanced_truncation(S, 2.5), OrderError, "order"),
    "bt r nan": (lambda: ml.balanced_truncation(S, NAN), OrderError, "order"),
    "modal r = n": (lambda: ml.modal_truncation(S, 4), OrderError, "order"),
    "modal criterion": (lambda: ml.modal_truncation(S, 2, criterion="l1"), UnknownMethodError,
                        "criterion"),
    "modal not a system": (lambda: ml.modal_truncation(None, 2), NotASystemError, "LQOSystem"),
    "irka not a system": (lambda: ml.irka([1], 2), NotASystemError, "LQOSystem"),
    "irka tol nan": (lambda: ml.irka(S, 2, tol=NAN), InvalidArgumentError, "tol"),
    "irka tol negative": (lambda: ml.irka(S, 2, tol=-1.0), InvalidArgumentError, "tol"),
    "irka tol string": (lambda: ml.irka(S, 2, tol="1e-6"), InvalidArgumentError, "tol"),
    "irka maxit negative": (lambda: ml.irka(S, 2, maxit=-1), InvalidArgumentError, "maxit"),
    "irka maxit float": (lambda: ml.irka(S, 2, maxit=2.5), InvalidArgumentError, "maxit"),
    "irka init name": (lambda: ml.irka(S, 2, init="random"), UnknownMethodError, "init"),
    "irka init type": (lambda: ml.irka(S, 2, init=3), NotASystemError, "init"),
    "irka shifts nan": (lambda: ml.irka(S, 2, shifts=[NAN, 1.0]), InvalidArgumentError, "shifts"),
    "irka shifts left": (lambda: ml.irka(S, 2, shifts=[-1.0, 1.0]), InvalidArgumentError, "shifts"),
    "irka shifts count": (lambda: ml.irka(S, 2, shifts=[1.0]), ShapeError, "shifts"),
    "irka shifts in disc": (lambda: ml.irka(SD, 2, shifts=[0.5, 2.0]), InvalidArgumentError, "shifts"),
    "tsia tol nan": (lambda: ml.tsia(S, 2, tol=NAN), InvalidArgumentError, "tol"),
    "tsia maxit negative": (lambda: ml.tsia(S, 2, maxit=-3), InvalidArgumentError, "maxit"),
    "tsia init name": (lambda: ml.tsia(S, 2, init="x"), UnknownMethodError, "init"),
    "residuals not a system": (lambda: ml.h2_optimality_residuals(S, "rom"), NotASystemError, "rom"),
    # batch
    "batch method": (lambda: ml.reduce_batch(PAIRS, 2, method="svd"), UnknownMethodError, "method"),
    "batch one system": (lambda: ml.reduce_batch(S, 2), NotASystemError, "sequence"),
    "batch not systems": (lambda: ml.reduce_batch(["x"], 2), NotASystemError, "LQOSystem"),
    "batch empty": (lambda: ml.reduce_batch([], 2), ShapeError, "at least one"),
    "batch order": (lambda: ml.reduce_batch(PAIRS, 0), OrderError, "order"),
    "batch bt options": (lambda: ml.reduce_batch(PAIRS, 2, method="bt", tol=1.0),
                         UnexpectedOptionError, "options"),
    "batch algorithm": (lambda: ml.reduce_batch(PAIRS, 2, method="bt", algorithm="x"),
                        UnknownMethodError, "algorithm"),
    # reducers and norms given something that is not a system, or options of the wrong kind
    "bt not a system": (lambda: ml.balanced_truncation("x", 2), NotASystemError, "LQOSystem"),
    "hsv not a system": (lambda: ml.hankel_singular_values("x"), NotASystemError, "LQOSystem"),
    "h2_gradient not a system": (lambda: ml.h2_gradient("x", 2), NotASystemError, "LQOSystem"),
    "h2_gradient tol text": (lambda: ml.h2_gradient(S, 2, tol="a"), InvalidArgumentError, "tol"),
    "h2_gradient maxiter negative": (lambda: ml.h2_gradient(S, 2, maxiter=-1), InvalidArgumentError, "maxiter"),
    "h2_gradient init name": (lambda: ml.h2_gradient(S, 2, init="zz"), UnknownMethodError, "init"),
    "h2_error relative text": (lambda: ml.h2_error(S, S, relative="x"), InvalidArgumentError, "relative"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_specific_morlqo_error(name):
    call, cls, word = CASES[name]
    with pytest.raises(cls) as info:
        call()
    err = info.value
    assert type(err) is cls, f"{name}: got {type(err).__name__}, expected exactly {cls.__name__}"
    assert isinstance(err, MorLqoError) and isinstance(err, (ValueError, TypeError))
    assert word.lower() in str(err).lower(), f"{name}: message {str(err)!r} does not name {word!r}"
