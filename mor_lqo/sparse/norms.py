r"""h2 norms, inner products and errors of sparse systems from low-rank factors (never n x n).

::

    ||S||^2    = ||C Z_P||_F^2 + sum_j ||Z_P^H M_j Z_P||_F^2          (P = Z_P Z_P^H, LR-ADI)
    <S, S^>    = Re tr(C X C^^H) + sum_j Re tr(X^H M_j X M^_j)         (A X + E X A^^H + B B^^H = 0)
    ||S - S^|| = sqrt(||S||^2 + ||S^||^2 - 2 <S, S^>)

:math:`\mathrm{tr}(PM_jPM_j) = \|Z_P^HM_jZ_P\|_F^2` for Hermitian :math:`M_j`. The formulas are those
of :mod:`mor_lqo.norms` for the standard form :math:`(E^{-1}A, E^{-1}B, C, M)`.

``method="auto"`` uses the dense path (:meth:`SparseLQOSystem.to_dense` and :func:`mor_lqo.h2_norm`)
when ``n <= DENSE_MAX_N`` or A is denser than ``DENSE_MIN_DENSITY`` (and ``n <= DENSE_HARD_MAX``),
and LR-ADI otherwise; ``method="dense"`` / ``"lowrank"`` force a path.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError, NotASystemError, RelativeErrorUndefinedError, SamplingTimeError, ShapeError
from ..norms import H2Parts, _difference
from ..norms import h2_norm_parts as _dense_norm_parts
from ..systems import LQOSystem
from .gramians import DEFAULT_TOL, controllability_factor
from .sylvester import sparse_dense_stein, sparse_dense_sylvester
from .system import SparseLQOSystem, as_sparse_system

__all__ = ["h2_norm", "h2_norm_parts", "h2_inner_parts", "h2_error", "error_system", "use_dense", "DENSE_MAX_N"]

DENSE_MAX_N = 2000  # dense Schur solves (O(n^3)) are faster than LR-ADI below this order
DENSE_MIN_DENSITY = 0.05  # matrices with more nonzeros than this fraction are treated as dense ...
DENSE_HARD_MAX = 8000  # ... up to this order


def use_dense(sys, method: str) -> bool:
    """Whether ``method`` ("auto", "dense", "lowrank") selects the dense path for ``sys``."""
    if method not in ("auto", "dense", "lowrank"):
        raise InvalidArgumentError(f"method must be 'auto', 'dense' or 'lowrank', got {method!r}")
    if method != "auto":
        return method == "dense"
    if isinstance(sys, LQOSystem):
        return True
    return sys.n <= DENSE_MAX_N or (sys.density > DENSE_MIN_DENSITY and sys.n <= DENSE_HARD_MAX)


def _check(sys):
    if not isinstance(sys, (SparseLQOSystem, LQOSystem)):
        raise NotASystemError(f"expected a SparseLQOSystem or LQOSystem, got {type(sys).__name__}")
    return sys


def _dense(sys):
    if isinstance(sys, LQOSystem):
        return sys
    if "dense" not in sys._cache:
        sys._cache["dense"] = sys.to_dense()
    return sys._cache["dense"]


def h2_norm_parts(sys, *, method: str = "auto", tol: float = DEFAULT_TOL, maxiter: int = 500,
                  info: dict | None = None, settle: float | None = None) -> H2Parts:
    r"""Squared h2 norm split into the linear part :math:`\|CZ_P\|_F^2` and the quadratic part.

    Parameters
    ----------
    sys : SparseLQOSystem or LQOSystem
    method : {"auto", "dense", "lowrank"}
    tol, maxiter
        LR-ADI relative residual tolerance and step limit (low-rank path).
    info : dict, optional
        Filled with ``method``, and on the low-rank path ``residual`` (achieved relative Lyapunov
        residual), ``iterations``, ``rank`` and ``factorizations``.

    Raises
    ------
    NumericalAccuracyError, UnstableSystemError
        LR-ADI did not reach ``tol`` (never a silently inaccurate norm).
    """
    sys = _check(sys)
    dense = use_dense(sys, method)
    if info is not None:
        info["method"] = "dense" if dense else "lowrank"
    if dense:
        return _dense_norm_parts(_dense(sys))
    sys = as_sparse_system(sys)
    fac = controllability_factor(sys, tol=tol, maxiter=maxiter, monitor_rtol=settle)
    Z = fac.Z
    lin = float(np.linalg.norm(np.asarray(sys.C) @ Z) ** 2)
    quad = 0.0
    if sys.M is not None:
        for Mj in sys.M:
            quad += float(np.linalg.norm(Z.conj().T @ (Mj @ Z)) ** 2)
    if info is not None:
        info.update(residual=fac.residual, iterations=fac.iterations, rank=Z.shape[1],
                    factorizations=sys.lyap_system().solver().n_factorizations)
    return H2Parts(lin, quad)


def h2_norm(sys, *, method: str = "auto", tol: float = DEFAULT_TOL, maxiter: int = 500,
            info: dict | None = None) -> float:
    r"""h2 norm :math:`\sqrt{\mathrm{tr}(CPC^H) + \sum_j\mathrm{tr}(PM_jPM_j)}` of a sparse system.

    See :func:`h2_norm_parts` for the parameters. The relative error of the squared norm is of the
    order of the LR-ADI residual ``tol`` times the conditioning of the Lyapunov operator; the
    default ``tol = 1e-10`` gives ~1e-10 relative on the benchmark problems (docs/sparse.md).
    """
    return float(np.sqrt(h2_norm_parts(sys, method=method, tol=tol, maxiter=maxiter, info=info).total))


def _check_rom(sys, rom):
    if not isinstance(rom, LQOSystem):
        raise NotASystemError(f"rom must be a dense LQOSystem, got {type(rom).__name__}")
    if rom.dt != sys.dt:
        raise SamplingTimeError(f"sampling times differ: system dt = {sys.dt}, reduced model dt = {rom.dt}")
    if rom.m != sys.m or rom.p != sys.p:
        raise ShapeError(f"input/output sizes differ: ({sys.m}, {sys.p}) vs ({rom.m}, {rom.p})")
    if np.any(rom.D != 0):
        raise ShapeError("continuous-time h2 inner products need D = 0 (the reduced model has D != 0)")


def h2_inner_parts(sys, rom: LQOSystem) -> H2Parts:
    r"""Inner product :math:`\langle\Sigma,\hat\Sigma\rangle` (linear, quadratic) via the n x r cross Gramian.

    :math:`AX + EX\hat A^H + B\hat B^H = 0` (:func:`~mor_lqo.sparse.sylvester.sparse_dense_sylvester`;
    discrete time :math:`AX\hat A^H - EX + B\hat B^H = 0`, :func:`~mor_lqo.sparse.sylvester.sparse_dense_stein`),
    then :math:`\mathrm{Re\,tr}(CX\hat C^H)` and :math:`\sum_j\mathrm{Re\,tr}(X^HM_jX\hat M_j)`.
    """
    sys = as_sparse_system(_check(sys))
    _check_rom(sys, rom)
    from ..gramians import check_stable

    check_stable(rom, "h2 inner product")
    solve = sparse_dense_stein if sys.is_discrete else sparse_dense_sylvester
    X = solve(sys, rom.A, np.asarray(sys.B) @ rom.B.conj().T)
    lin = float(np.real(np.vdot(rom.C, np.asarray(sys.C) @ X)))
    quad = 0.0
    if sys.M is not None and rom.M is not None:
        for Mj, Mh in zip(sys.M, rom.M):
            quad += float(np.real(np.vdot(X, (Mj @ X) @ Mh)))
    return H2Parts(lin, quad)


def error_system(sys: SparseLQOSystem, rom: LQOSystem) -> SparseLQOSystem:
    r"""The sparse error system :math:`\Sigma - \hat\Sigma` of order n + r.

    :math:`\mathrm{blkdiag}(A, \hat A)`, :math:`\mathrm{blkdiag}(E, I)`, :math:`[B; \hat B]`,
    :math:`[C, -\hat C]`, :math:`\mathrm{blkdiag}(M_j, -\hat M_j)`: its output is :math:`y - \hat y`
    (same sampling time).
    """
    import scipy.sparse as sp

    _check_rom(sys, rom)
    r = rom.order
    A = sp.block_diag([sys.A, sp.csc_matrix(rom.A)], format="csc")
    E = None if sys.E is None else sp.block_diag([sys.E, sp.identity(r)], format="csc")
    B = np.vstack([np.asarray(sys.B), rom.B])
    C = np.hstack([np.asarray(sys.C), -rom.C])
    M = None
    if sys.M is not None or rom.M is not None:
        Ms = sys.M if sys.M is not None else [sp.csc_matrix((sys.n, sys.n))] * sys.p
        Mh = rom.M if rom.M is not None else np.zeros((sys.p, r, r))
        M = [sp.block_diag([Mj, sp.csc_matrix(-Mr)], format="csc") for Mj, Mr in zip(Ms, Mh)]
    return SparseLQOSystem(A, B, C, M, E=E, dt=sys.dt)


ERROR_TOL = 1e-12  # LR-ADI tolerance of h2_error (extra cyclic-shift steps cost solves, not factorisations)
ERROR_SETTLE = 1e-10  # ... and the squared error must have settled to this relative level


def h2_error(sys, rom: LQOSystem, *, relative: bool = False, method: str = "auto",
             tol: float = ERROR_TOL, maxiter: int = 500, route: str = "error-system") -> float:
    r"""h2 error :math:`\|\Sigma - \hat\Sigma\|` of a dense reduced model against a sparse system.

    Parameters
    ----------
    sys : SparseLQOSystem or LQOSystem
    rom : LQOSystem
        Continuous-time, D = 0, same m and p.
    relative : bool
        Divide by :math:`\|\Sigma\|`.
    method : {"auto", "dense", "lowrank"}
        Dense path for small systems (``"auto"``, see :func:`use_dense`).
    route : {"error-system", "sylvester"}
        Low-rank path. ``"error-system"`` (default): LR-ADI for the controllability Gramian of the
        (n + r) error system :func:`error_system`, :math:`\|\Sigma-\hat\Sigma\|^2 = \|C_eZ_e\|_F^2 +
        \sum_j\|Z_e^HM_{e,j}Z_e\|_F^2` — a sum of non-negative terms, free of cancellation, so small
        errors are resolved. ``"sylvester"``: :math:`\|\Sigma\|^2 + \|\hat\Sigma\|^2 - 2\langle\Sigma,
        \hat\Sigma\rangle` with the n x r cross Gramian (one factorisation per reduced pole); squared
        errors below about ``tol * ||S||^2`` are then not resolved.
    tol, maxiter
        LR-ADI tolerance and step limit. The error-system route measures the residual relative to
        :math:`\|[B;\hat B]\|_2^2`, not to the (small) error; it therefore also iterates until the
        squared error has settled (the last shift cycle adds at most :data:`ERROR_SETTLE` = 1e-10 of
        it), which resolves small errors (tests/sparse).

    Raises
    ------
    NumericalAccuracyError
        The squared error is negative beyond rounding (sylvester route), or LR-ADI did not converge.
    RelativeErrorUndefinedError
        ``relative=True`` and the norm of ``sys`` is 0.
    """
    sys = _check(sys)
    if route not in ("error-system", "sylvester"):
        raise InvalidArgumentError(f"route must be 'error-system' or 'sylvester', got {route!r}")
    if use_dense(sys, method):
        from ..norms import h2_error as _dense_error

        return _dense_error(_dense(sys), rom, relative=relative)
    sys = as_sparse_system(sys)
    _check_rom(sys, rom)
    from ..gramians import check_stable

    check_stable(rom, "h2 error")
    if route == "error-system":
        e = float(np.sqrt(h2_norm_parts(error_system(sys, rom), method="lowrank", tol=tol, maxiter=maxiter,
                                        settle=ERROR_SETTLE).total))
    else:
        full = h2_norm_parts(sys, method="lowrank", tol=tol, maxiter=maxiter)
        red = _dense_norm_parts(rom)
        inner = h2_inner_parts(sys, rom)
        lin = _difference(full.linear, red.linear, inner.linear, "linear")
        quad = _difference(full.quadratic, red.quadratic, inner.quadratic, "quadratic")
        e = float(np.sqrt(lin + quad))
    if relative:
        nrm = h2_norm(sys, method="lowrank", tol=tol, maxiter=maxiter)
        if nrm == 0:
            raise RelativeErrorUndefinedError("relative h2 error undefined: the reference system has h2 norm 0")
        e /= nrm
    return e
