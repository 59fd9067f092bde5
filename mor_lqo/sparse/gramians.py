r"""Low-rank Gramian factors of sparse LTI / LQO systems (cached on the system).

.. math::

    P = Z_P Z_P^H:\quad A P E^H + E P A^H + B B^H = 0,

    Q = Z_Q Z_Q^H:\quad A^H Q E + E^H Q A + C^H C + \sum_j M_j P M_j = 0.

P is the controllability Gramian of the standard form :math:`(E^{-1}A, E^{-1}B)`; :math:`E^HQE` is
the (LQO) observability Gramian of the standard form, so :math:`\|\Sigma\|^2 = \mathrm{tr}(CPC^H) +
\sum_j\mathrm{tr}(PM_jPM_j) = \mathrm{tr}(B^HQB)` exactly as in :mod:`mor_lqo.norms`. Discrete-time
systems (Stein equations) are solved through the Cayley map, :meth:`SparseLQOSystem.lyap_system`.

The LQO right-hand side is low rank: :math:`C^HC + \sum_j M_jZ_PZ_P^HM_j = GG^H` with
:math:`G = [C^H, M_1Z_P, \dots, M_pZ_P]`, column-compressed (:func:`~mor_lqo.sparse.lradi.compress_columns`)
before the ADI iteration, dropping directions below ``tol / 10`` relative (a perturbation of the
right-hand side ten times below the accepted residual). Its accuracy is limited by that of
:math:`Z_P`, which is therefore computed with a tolerance 10x tighter than requested.
"""

from __future__ import annotations

import numpy as np

from .lradi import LowRankFactor, compress_columns, lradi, require_converged
from .system import SparseLQOSystem

__all__ = ["controllability_factor", "observability_factor", "DEFAULT_TOL"]

DEFAULT_TOL = 1e-10  # relative Lyapunov residual


def _key(name, tol, maxiter):
    return (name, float(tol), int(maxiter))


def controllability_factor(sys: SparseLQOSystem, *, tol: float = DEFAULT_TOL, maxiter: int = 500,
                           check: bool = True, monitor_rtol: float | None = None) -> LowRankFactor:
    r"""Low-rank factor of the controllability Gramian, :math:`AZZ^HE^H + EZZ^HA^H + BB^H \approx 0`.

    Parameters
    ----------
    sys : SparseLQOSystem
    tol : float
        Relative residual tolerance :math:`\|\mathcal R\|_2 \le \mathrm{tol}\,\|B^HB\|_2`.
    maxiter : int
        Maximal number of ADI steps.
    check : bool
        Raise if the tolerance is not met (:func:`~mor_lqo.sparse.lradi.require_converged`).
    monitor_rtol : float, optional
        Also require :math:`\|CZ\|_F^2` to have settled to this relative level (``monitor`` of
        :func:`~mor_lqo.sparse.lradi.lradi`).

    Returns
    -------
    LowRankFactor
        ``Z`` (n, k); ``residual`` is the achieved relative residual.
    """
    sys = sys.lyap_system()  # discrete time: the Cayley-transformed pencil
    key = _key("ZP", tol, maxiter) + ((monitor_rtol,) if monitor_rtol is not None else ())
    if key not in sys._cache:
        mon = {} if monitor_rtol is None else {"monitor": np.asarray(sys.C), "monitor_rtol": monitor_rtol}
        sys._cache[key] = lradi(sys, np.asarray(sys.B), tol=tol, maxiter=maxiter, **mon)
    fac = sys._cache[key]
    return require_converged(fac, "controllability Gramian") if check else fac


def lqo_rhs(sys: SparseLQOSystem, ZP: np.ndarray | None, rtol: float | None = None) -> np.ndarray:
    r"""Compressed factor G of :math:`C^HC + \sum_j M_jZ_PZ_P^HM_j \approx GG^H`, shape (n, k').

    Eigenvalues of :math:`G^HG` below ``rtol`` times the largest are dropped, i.e. the right-hand side
    changes by at most ``rtol`` relative (in the 2-norm); see :func:`compress_columns`.
    """
    cols = [np.asarray(sys.C).conj().T]
    if sys.M is not None:
        cols += [Mj @ ZP for Mj in sys.M]
    G = np.concatenate(cols, axis=1)
    return compress_columns(G, rtol)


def _shared_shifts(sys: SparseLQOSystem):
    """Conjugates of the cyclic shifts of a cached controllability factor (their LU factors serve the
    adjoint solves too: ``(A^H + conj(p) E^H) = (A + p E)^H``), else ``"cyclic"``."""
    for key, fac in sys._cache.items():
        if isinstance(key, tuple) and key[0] == "ZP" and fac.cycle.size and not fac.switched:
            return np.conj(fac.cycle)
    return "cyclic"


def observability_factor(sys: SparseLQOSystem, *, tol: float = DEFAULT_TOL, maxiter: int = 500,
                         check: bool = True, p_tol: float | None = None) -> LowRankFactor:
    r"""Low-rank factor of the (LQO) observability Gramian.

    :math:`A^HQE + E^HQA + C^HC + \sum_jM_jPM_j = 0`, :math:`Q \approx ZZ^H`, with P from
    :func:`controllability_factor` (computed with ``p_tol``, default ``tol / 10``) for LQO systems. If a cyclic
    controllability factor is cached, its (conjugated) shifts are reused, and with them its sparse
    factorisations.

    Returns
    -------
    LowRankFactor
        Relative residual measured against :math:`\|G^HG\|_2`, G the compressed right-hand-side factor.
    """
    sys = sys.lyap_system()  # discrete time: the Cayley-transformed pencil
    p_tol = tol / 10 if p_tol is None else p_tol
    key = _key("ZQ", tol, maxiter) + ((p_tol,) if sys.M is not None else ())
    if key not in sys._cache:
        ZP = None
        if sys.M is not None:
            ZP = controllability_factor(sys, tol=p_tol, maxiter=maxiter).Z
        G = lqo_rhs(sys, ZP, tol / 10 if ZP is not None else None)
        sys._cache[key] = lradi(sys, G, adjoint=True, tol=tol, maxiter=maxiter, shifts=_shared_shifts(sys),
                                fallback=True)
    fac = sys._cache[key]
    what = "LQO observability Gramian" if sys.M is not None else "observability Gramian"
    return require_converged(fac, what) if check else fac
