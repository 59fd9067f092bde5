r"""h2 norms, inner products and errors of sparse systems from low-rank factors (never n x n).

::

    ||S||^2    = ||C Z_P||_F^2 + sum_j ||Z_P^H M_j Z_P||_F^2          (P = Z_P Z_P^H, LR-ADI)
    <S, S^>    = Re tr(C X C^^H) + sum_j Re tr(X^H M_j X M^_j)         (A X + E X A^^H + B B^^H = 0)
    ||S - S^|| = sqrt(||S||^2 + ||S^||^2 - 2 <S, S^>)

:math:`\mathrm{tr}(PM_jPM_j) = \|Z_P^HM_jZ_P\|_F^2` for Hermitian :math:`M_j`. The formulas are those
of :mod:`mor_lqo.norms` for the standard form :math:`(E^{-1}A, E^{-1}B, C, M, D)`.

Feed-through: discrete time (:math:`Ex_k = Ax_{k-1} + Bu_k`, the "current" convention, lag-0 kernel
:math:`CE^{-1}B + D`) adds :math:`\mathrm{Re\,tr}(D_1^HD_2) + \mathrm{Re\,tr}((C_1E_1^{-1}B_1)^HD_2) +
\mathrm{Re\,tr}(D_1^H C_2E_2^{-1}B_2)` to the linear part of :math:`\langle\Sigma_1,\Sigma_2\rangle`
(one sparse solve with E, none when E is the identity). Continuous time: the h2 norm of a system with
D != 0 is infinite, the error is finite only when :math:`D = \hat D` (then it is the error of the
strictly proper parts), and inner products with D != 0 raise — as in :mod:`mor_lqo.norms`.

``method="auto"`` uses the dense path (:meth:`SparseLQOSystem.to_dense` and :func:`mor_lqo.h2_norm`)
when ``n <= DENSE_MAX_N`` or A is denser than ``DENSE_MIN_DENSITY`` (and ``n <= DENSE_HARD_MAX``),
and LR-ADI otherwise; ``method="dense"`` / ``"lowrank"`` force a path.
"""

from __future__ import annotations

import numpy as np

from ..errors import (
    InvalidArgumentError,
    NotASystemError,
    NumericalAccuracyError,
    RelativeErrorUndefinedError,
    SamplingTimeError,
    ShapeError,
)
from ..norms import H2Parts, _difference
from ..norms import h2_norm_parts as _dense_norm_parts
from ..systems import LQOSystem
from .estimate import norm_deficit_estimate
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


def _feedthrough_terms(sys: SparseLQOSystem, rom) -> float:
    """D contribution to <sys, rom> in discrete time (``rom``: SparseLQOSystem or dense current-convention
    LQOSystem); the terms of :func:`mor_lqo.norms._feedthrough_terms` with the lag-0 matrix C E^{-1} B."""
    D1, D2 = sys.D, rom.D
    val = float(np.vdot(D1, D2).real)
    if np.any(D1 != 0):
        H2 = rom.lag0_linear() if isinstance(rom, SparseLQOSystem) else rom.C @ rom.B
        val += float(np.vdot(D1, H2).real)
    if np.any(D2 != 0):
        val += float(np.vdot(sys.lag0_linear(), D2).real)
    return val


NORM_ACCURACY = 1e-10  # required relative accuracy of the squared norm, by the deficit estimate
_MIN_TOL = 1e-14  # tightest LR-ADI tolerance tried to meet it


def _factor_parts(sys: SparseLQOSystem, fac) -> tuple[float, float]:
    Z = fac.Z
    lin = float(np.linalg.norm(np.asarray(sys.C) @ Z) ** 2)
    quad = 0.0
    if sys.M is not None:
        for Mj in sys.M:
            quad += float(np.linalg.norm(Z.conj().T @ (Mj @ Z)) ** 2)
    return lin, quad


def _strict_parts(sys: SparseLQOSystem, tol: float, maxiter: int, settle: float | None,
                  info: dict | None, accuracy: float | None = None) -> H2Parts:
    """Low-rank squared h2 norm of the strictly proper part (D ignored).

    With ``accuracy``, the LR-ADI tolerance is lowered (by at least 100, to ten times below the
    proportional guess ``tol * accuracy / estimate``) until the deficit estimate
    (:func:`~mor_lqo.sparse.estimate.norm_deficit_estimate`) is at most ``accuracy`` times the value.
    """
    key = ("norm_parts", float(tol), int(maxiter), settle, accuracy)
    if key in sys._cache:  # the estimate and the tolerance search run once per system and setting
        parts, details = sys._cache[key]
        if info is not None:
            info.update(details)
        return parts
    t = tol
    while True:
        fac = controllability_factor(sys, tol=t, maxiter=maxiter, monitor_rtol=settle)
        lin, quad = _factor_parts(sys, fac)
        estimate = float("nan")
        if accuracy is None:
            break
        estimate = norm_deficit_estimate(sys, fac, maxiter=maxiter) / max(lin + quad, np.finfo(float).tiny)
        if estimate <= accuracy:
            break
        if t <= _MIN_TOL:
            raise NumericalAccuracyError(
                f"the low-rank h2 norm is not accurate to {accuracy:.1e}: its estimated relative deficit is "
                f"{estimate:.2e} at LR-ADI tolerance {t:.0e} (pass a larger accuracy, or accuracy=None)")
        # the deficit scales roughly like the residual: aim a factor 10 below the target, at least / 100
        t = max(min(t / 100, t * accuracy / estimate / 10), _MIN_TOL)
    details = {"residual": fac.residual, "iterations": fac.iterations, "rank": fac.Z.shape[1], "tol": t,
               "error_estimate": estimate, "factorizations": sys.lyap_system().solver().n_factorizations}
    sys._cache[key] = (H2Parts(lin, quad), details)
    if info is not None:
        info.update(details)
    return H2Parts(lin, quad)


def h2_norm_parts(sys, *, method: str = "auto", tol: float = DEFAULT_TOL, maxiter: int = 500,
                  info: dict | None = None, settle: float | None = None,
                  accuracy: float | None = NORM_ACCURACY) -> H2Parts:
    r"""Squared h2 norm split into the linear part :math:`\|CZ_P\|_F^2` (+ D terms) and the quadratic part.

    Parameters
    ----------
    sys : SparseLQOSystem or LQOSystem
    method : {"auto", "dense", "lowrank"}
    tol, maxiter
        LR-ADI relative residual tolerance and step limit (low-rank path).
    info : dict, optional
        Filled with ``method``, and on the low-rank path ``residual`` (achieved relative Lyapunov
        residual), ``iterations``, ``rank``, ``factorizations``, ``tol`` (the LR-ADI tolerance
        finally used) and ``error_estimate`` (estimated relative deficit of the squared norm).
    accuracy : float or None
        Required relative accuracy of the squared norm (low-rank path). The residual tolerance alone
        does not bound the error on non-normal operators, so the deficit of the squared norm is
        estimated a posteriori (:func:`~mor_lqo.sparse.estimate.norm_deficit_estimate`, a coarse dual
        LR-ADI that reuses the factorisations) and ``tol`` is lowered until the estimate is
        at most ``accuracy`` (by at least 100 per round, to ten times below the proportional guess
        ``tol * accuracy / estimate``). None: no estimate (``tol`` alone).

    Returns
    -------
    H2Parts
        ``linear`` includes, in discrete time, the feed-through terms
        :math:`2\,\mathrm{Re\,tr}((CE^{-1}B)^HD) + \|D\|_F^2` (module docstring). A continuous-time
        system with D != 0 gives ``H2Parts(inf, 0)`` as :func:`mor_lqo.h2_norm_parts` (on the low-rank
        path without computing a Gramian, so its stability is then not checked).

    Raises
    ------
    NumericalAccuracyError, UnstableSystemError
        LR-ADI did not reach ``tol``, or ``accuracy`` was not met at tolerance 1e-14 (never a silently
        inaccurate norm).
    """
    sys = _check(sys)
    dense = use_dense(sys, method)
    if info is not None:
        info["method"] = "dense" if dense else "lowrank"
    if dense:
        return _dense_norm_parts(_dense(sys))
    sys = as_sparse_system(sys)
    if not sys.is_discrete and sys.has_feedthrough:
        return H2Parts(np.inf, 0.0)
    lin, quad = _strict_parts(sys, tol, maxiter, settle, info, accuracy)
    if sys.is_discrete:
        lin += _feedthrough_terms(sys, sys)
    return H2Parts(max(lin, 0.0), max(quad, 0.0))


def h2_norm(sys, *, method: str = "auto", tol: float = DEFAULT_TOL, maxiter: int = 500,
            info: dict | None = None, accuracy: float | None = NORM_ACCURACY) -> float:
    r"""h2 norm :math:`\sqrt{\mathrm{tr}(CPC^H) + \sum_j\mathrm{tr}(PM_jPM_j)}` of a sparse system.

    See :func:`h2_norm_parts` for the parameters; ``inf`` for a continuous-time system with D != 0
    (as :func:`mor_lqo.h2_norm`). On the low-rank path the squared norm is accurate to ``accuracy``
    (default 1e-10 relative) by an a-posteriori estimate (docs/sparse.md); the LR-ADI residual ``tol``
    alone is not enough on non-normal operators.
    """
    return float(np.sqrt(h2_norm_parts(sys, method=method, tol=tol, maxiter=maxiter, info=info,
                                       accuracy=accuracy).total))


def _check_rom(sys, rom):
    if not isinstance(rom, LQOSystem):
        raise NotASystemError(f"rom must be a dense LQOSystem, got {type(rom).__name__}")
    if rom.dt != sys.dt:
        raise SamplingTimeError(f"sampling times differ: system dt = {sys.dt}, reduced model dt = {rom.dt}")
    if rom.is_discrete and rom.convention != "current":
        raise SamplingTimeError(f"different time-index conventions: 'current' (sparse systems) and "
                                f"{rom.convention!r} (reduced model)")
    if rom.m != sys.m or rom.p != sys.p:
        raise ShapeError(f"input/output sizes differ: ({sys.m}, {sys.p}) vs ({rom.m}, {rom.p})")


def h2_inner_parts(sys, rom: LQOSystem) -> H2Parts:
    r"""Inner product :math:`\langle\Sigma,\hat\Sigma\rangle` (linear, quadratic) via the n x r cross Gramian.

    :math:`AX + EX\hat A^H + B\hat B^H = 0` (:func:`~mor_lqo.sparse.sylvester.sparse_dense_sylvester`;
    discrete time :math:`AX\hat A^H - EX + B\hat B^H = 0`, :func:`~mor_lqo.sparse.sylvester.sparse_dense_stein`),
    then :math:`\mathrm{Re\,tr}(CX\hat C^H)` and :math:`\sum_j\mathrm{Re\,tr}(X^HM_jX\hat M_j)`;
    discrete time adds the feed-through terms to the linear part (module docstring).

    Raises
    ------
    ShapeError
        Continuous time with D != 0 or :math:`\hat D` != 0 (as :func:`mor_lqo.norms.h2_inner_parts`:
        the h2 norm of a system with feed-through is infinite), or different m, p.
    SamplingTimeError
        Different sampling times, or a discrete ROM in the "standard" convention.
    """
    sys = as_sparse_system(_check(sys))
    _check_rom(sys, rom)
    from ..gramians import check_stable

    check_stable(rom, "h2 inner product")
    if not sys.is_discrete and (sys.has_feedthrough or np.any(rom.D != 0)):
        raise ShapeError("continuous-time h2 inner products need D = 0 (the H2 norm of a system with "
                         "feed-through is infinite)")
    lin, quad = _inner_strict(sys, rom)
    if sys.is_discrete:
        lin += _feedthrough_terms(sys, rom)
    return H2Parts(lin, quad)


def _inner_strict(sys: SparseLQOSystem, rom: LQOSystem) -> H2Parts:
    """Inner product of the strictly proper parts (D ignored) via the n x r cross Gramian."""
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
    :math:`[C, -\hat C]`, :math:`\mathrm{blkdiag}(M_j, -\hat M_j)`, :math:`D - \hat D`: its output is
    :math:`y - \hat y` (same sampling time; discrete time: both in the "current" convention).
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
    return SparseLQOSystem(A, B, C, M, E=E, dt=sys.dt, D=np.asarray(sys.D) - rom.D)


ERROR_TOL = 1e-12  # LR-ADI tolerance of h2_error (extra cyclic-shift steps cost solves, not factorisations)
ERROR_SETTLE = 1e-10  # ... and the squared error must have settled to this relative level
ERROR_ACCURACY = 1e-6  # estimated relative deficit of the squared error (error accurate to ~5e-7 relative)


def h2_error(sys, rom: LQOSystem, *, relative: bool = False, method: str = "auto",
             tol: float = ERROR_TOL, maxiter: int = 500, route: str = "error-system") -> float:
    r"""h2 error :math:`\|\Sigma - \hat\Sigma\|` of a dense reduced model against a sparse system.

    Parameters
    ----------
    sys : SparseLQOSystem or LQOSystem
    rom : LQOSystem
        Same sampling time (discrete time: "current" convention), m and p; any :math:`\hat D`.
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
        it), which resolves small errors (tests/sparse), and until the a-posteriori deficit estimate of
        the squared error is at most :data:`ERROR_ACCURACY` = 1e-6 of it (:func:`h2_norm_parts`).

    Returns
    -------
    float
        Discrete time: the feed-through enters through the lag-0 kernels (module docstring; the error
        system carries :math:`D - \hat D`). Continuous time, as :func:`mor_lqo.h2_error`: ``inf`` if
        :math:`D \ne \hat D`; if :math:`D = \hat D \ne 0` the (finite) error of the strictly proper parts.

    Raises
    ------
    NumericalAccuracyError
        The squared error is negative beyond rounding (sylvester route), or LR-ADI did not converge.
    RelativeErrorUndefinedError
        ``relative=True`` and the norm of ``sys`` is 0, or infinite (continuous time with D != 0).
    """
    sys = _check(sys)
    if route not in ("error-system", "sylvester"):
        raise InvalidArgumentError(f"route must be 'error-system' or 'sylvester', got {route!r}")
    if use_dense(sys, method):
        from ..norms import h2_error as _dense_error

        return _dense_error(_dense(sys), rom, relative=relative)
    sys = as_sparse_system(sys)
    _check_rom(sys, rom)
    d_differs = not sys.is_discrete and bool(np.any(sys.D != rom.D))
    if d_differs and not relative:
        return float("inf")  # as mor_lqo.h2_error: the error has a feed-through, its H2 norm is infinite
    from ..gramians import check_stable

    check_stable(rom, "h2 error")
    if relative and not sys.is_discrete and sys.has_feedthrough:
        raise RelativeErrorUndefinedError(
            "relative h2 error undefined: a continuous-time system with D != 0 has an infinite h2 norm "
            "(divide h2_error(sys, rom) by the norm of the strictly proper part if that is what you need)")
    if d_differs:  # D = 0, D^ != 0: an infinite error relative to a finite norm
        e = float("inf")
    elif route == "error-system":
        e = float(np.sqrt(h2_norm_parts(error_system(sys, rom), method="lowrank", tol=tol, maxiter=maxiter,
                                        settle=ERROR_SETTLE, accuracy=ERROR_ACCURACY).total))
    else:
        e = _error_sylvester(sys, rom, tol, maxiter)
    if relative:
        nrm = h2_norm(sys, method="lowrank", tol=tol, maxiter=maxiter)
        if nrm == 0:
            raise RelativeErrorUndefinedError("relative h2 error undefined: the reference system has h2 norm 0")
        e /= nrm
    return e


def _error_sylvester(sys: SparseLQOSystem, rom: LQOSystem, tol: float, maxiter: int) -> float:
    """``sqrt(||S||^2 + ||S^||^2 - 2 <S, S^>)`` (continuous time with D = D^: of the strictly proper parts)."""
    if sys.is_discrete:
        full = h2_norm_parts(sys, method="lowrank", tol=tol, maxiter=maxiter)
        red, inner = _dense_norm_parts(rom), h2_inner_parts(sys, rom)
    else:  # D = D^ here: the feed-through cancels
        from ..norms import _without_d

        full = _strict_parts(sys, tol, maxiter, None, None, NORM_ACCURACY)
        red, inner = _dense_norm_parts(_without_d(rom)), _inner_strict(sys, rom)
    lin = _difference(full.linear, red.linear, inner.linear, "linear")
    quad = _difference(full.quadratic, red.quadratic, inner.quadratic, "quadratic")
    return float(np.sqrt(lin + quad))
