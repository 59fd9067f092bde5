r"""TSIA / LQO-TSIA for sparse systems: two sparse–dense Sylvester solves per iteration.

One iteration from a dense ROM :math:`(\hat A, \hat B, \hat C, \hat M_j)` (the equations of
:func:`mor_lqo.tsia` for the standard form :math:`(E^{-1}A, E^{-1}B)`, multiplied through by E)::

    A X + E X Â^H + B B̂^H = 0                                  (n x r)
    A^H Y + E^H Y Â - C^H Ĉ - 2 sum_j M_j X M̂_j = 0            (n x r)
    (discrete time: A X Â^H - E X + B B̂^H = 0 and A^H Y Â - E^H Y - C^H Ĉ - 2 sum_j M_j X M̂_j = 0)
    V = orth(X),  W = orth(Y),  ROM = (W^H E V)^{-1}(W^H A V, W^H B),  C V,  V^H M_j V,  D^ = D

Both equations are solved column-wise in the Schur basis of the small matrix
(:func:`~mor_lqo.sparse.sylvester.sparse_dense_sylvester`); their shifted pencils
:math:`A + \bar\lambda_kE` coincide, so one sparse factorisation per reduced pole serves both (the
solver keeps r + 1 factorisations during the iteration). Fixed points satisfy the first-order
h2-optimality conditions, i.e. they are the LQO-IRKA fixed points (docs/theory.md §5, §7.4).

Start ``"surrogate"`` (default): the dense :func:`mor_lqo.tsia` on a high-order low-rank (LQO-)BT
surrogate (see :mod:`mor_lqo.sparse.irka`), then sparse iterations until the poles settle.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._validation import check_order
from ..errors import ConvergenceWarning, InvalidArgumentError, SamplingTimeError
from ..reduction.result import ReductionResult
from ..systems import LQOSystem
from .accel import _stable, iterate, step_distance
from .balanced import orthonormal_basis, project
from .gramians import DEFAULT_TOL
from .norms import _check, _dense, h2_error, h2_norm, use_dense
from .sylvester import sparse_dense_stein, sparse_dense_sylvester
from .system import SparseLQOSystem, as_sparse_system

__all__ = ["tsia"]

def tsia_bases(sys: SparseLQOSystem, rom: LQOSystem) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal bases (V, W) of one (LQO-)TSIA step (module docstring; discrete time: Stein–Sylvester)."""
    solve = sparse_dense_stein if sys.is_discrete else sparse_dense_sylvester
    X = solve(sys, rom.A, np.asarray(sys.B) @ rom.B.conj().T)
    F = -(np.asarray(sys.C).conj().T @ rom.C)
    if sys.M is not None and rom.M is not None:
        for Mj, Mh in zip(sys.M, rom.M):
            F = F - 2.0 * ((Mj @ X) @ Mh)
    Y = solve(sys, rom.A, F, adjoint=True)
    return orthonormal_basis(X, "sparse TSIA: the V basis"), orthonormal_basis(Y, "sparse TSIA: the W basis")


def tsia_step(sys: SparseLQOSystem, rom: LQOSystem) -> LQOSystem:
    """One plain (LQO-)TSIA step: the projection onto :func:`tsia_bases`."""
    return project(sys, *tsia_bases(sys, rom))


def surrogate_rom(sys: SparseLQOSystem, r: int, tol: float, maxiter: int) -> tuple[LQOSystem, str]:
    """Dense (LQO-)TSIA on a high-order low-rank BT surrogate (orders within [4r, 10r])."""
    from ..reduction.tsia import tsia as dense_tsia
    from .irka import stable_surrogate

    sur, bt_rom = stable_surrogate(sys, r, tol, maxiter)
    if sur is None:
        return bt_rom, "bt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return dense_tsia(sur, r, tol=1e-10, maxit=200).rom, "surrogate"


def tsia(sys, r: int, *, init="surrogate", tol: float = 1e-8, maxit: int = 20, method: str = "auto",
         lr_tol: float = DEFAULT_TOL, maxiter: int = 500, compute_error: bool = True,
         accelerate: int = 5) -> ReductionResult:
    r"""(LQO-)TSIA for sparse LTI and LQO systems with sparse shifted solves.

    Parameters
    ----------
    sys : SparseLQOSystem or LQOSystem
        Asymptotically stable, continuous or discrete time; with or without quadratic outputs.
    r : int
        Reduced order.
    init : "surrogate" or LQOSystem
        Start: dense TSIA on a low-rank BT surrogate (default), or a given dense ROM of order r.
    tol : float
        Stop when one plain step changes the ROM by less than ``tol`` in the relative h2 distance
        (:func:`~mor_lqo.sparse.accel.step_distance`) and its ROM is stable.
    maxit : int
        Maximal number of sparse iterations (each: r sparse factorisations, 2r solves).
    method : {"auto", "dense", "lowrank"}
        ``"auto"``: the dense :func:`mor_lqo.tsia` for small systems.
    lr_tol, maxiter
        LR-ADI tolerance / step limit (surrogate, norm and error).
    compute_error : bool
        Compute the exact h2 error of the ROM (:func:`mor_lqo.sparse.h2_error`).
    accelerate : int
        Anderson depth of the mixing of the projection bases (:mod:`mor_lqo.sparse.accel`); 0: plain
        iteration. The stopping test is always taken on one plain step, whose ROM is returned.

    Returns
    -------
    ReductionResult
        ``method``: ``"tsia"`` / ``"lqo-tsia"``; ``history``: relative h2 step distance per sparse iteration;
        ``info``: ``init``, ``factorizations``, ``time_init``, ``time_iterations``,
        ``anderson_restarts``.

    Warns
    -----
    ConvergenceWarning
        Not converged in ``maxit`` sparse iterations; the (stable) start ROM is then returned if the
        last iterate is unstable.
    """
    sys = _check(sys)
    r = check_order(r, sys.n if isinstance(sys, SparseLQOSystem) else sys.order)
    if use_dense(sys, method):
        from ..reduction.tsia import tsia as dense_tsia

        return dense_tsia(_dense(sys), r, tol=tol, maxit=max(maxit, 100))
    sys = as_sparse_system(sys)
    t0 = time.perf_counter()
    if isinstance(init, LQOSystem):
        if init.order != r:
            raise InvalidArgumentError(f"the initial ROM has order {init.order}, expected {r}")
        if init.dt != sys.dt:
            raise SamplingTimeError(f"the initial ROM has dt = {init.dt}, the system dt = {sys.dt}")
        rom, label = init, "rom"
    elif isinstance(init, str) and init == "surrogate":
        rom, label = surrogate_rom(sys, r, lr_tol, maxiter)
    else:
        raise InvalidArgumentError(f"init must be 'surrogate' or a dense ROM of order r, got {init!r}")
    t1 = time.perf_counter()
    solver = sys.solver()
    solver.max_cached = max(solver.max_cached, r + 1)
    start = rom
    rom, changes, converged, restarts = iterate(sys, rom, lambda x: tsia_bases(sys, x), step_distance, tol=tol,
                                                maxit=maxit, depth=accelerate)
    poles = np.linalg.eigvals(rom.A)
    solver.max_cached = 2
    solver.clear()
    t2 = time.perf_counter()
    if not converged:
        warnings.warn(f"sparse TSIA: relative h2 step {changes[-1] if changes else np.nan:.3g} > tol {tol:.3g} "
                      f"after {maxit} iterations", ConvergenceWarning, stacklevel=2)
        if not _stable(poles, sys.is_discrete) and _stable(np.linalg.eigvals(start.A), sys.is_discrete):
            rom = start
    err = h2_error(sys, rom, method="lowrank", maxiter=maxiter) if compute_error else float("nan")
    lqo = sys.M is not None
    info = {"init": label, "factorizations": solver.n_factorizations, "time_init": t1 - t0,
            "time_iterations": t2 - t1, "anderson_restarts": restarts}
    return ReductionResult(rom=rom, h2_error=err, h2_norm=h2_norm(sys, method="lowrank", tol=lr_tol, maxiter=maxiter),
                           method="lqo-tsia" if lqo else "tsia", converged=converged, iterations=len(changes),
                           history=tuple(changes), info=info)
