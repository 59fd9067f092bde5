r"""Anderson acceleration of projection fixed-point iterations (sparse IRKA / TSIA).

IRKA and TSIA iterate a map of projection subspaces :math:`(\mathcal V, \mathcal W) \mapsto
(\mathcal V', \mathcal W')`; the ROM depends only on the subspaces. On convection-dominated models the
map contracts slowly (AdvecDiff LQO, r = 10: the shift change falls by a factor of about 0.94 per
iteration), so plain iteration needs hundreds of steps. Here the iterate is the pair of orthonormal
bases; the image bases are rotated onto the current ones (orthogonal Procrustes, so that the residual
:math:`F(X) = G(X)U - X` measures the subspace change), and Anderson mixing of depth ``depth``
(Walker–Ni 2011) combines the last residuals. The mixed bases are re-orthonormalised.

The convergence decision is not affected by the mixing: the reducers measure the change of the ROM
under one *plain* step from the current ROM (the relative h2 distance, :func:`step_distance`) and
return the plainly projected ROM, exactly as without acceleration.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import (
    NumericalAccuracyError,
    ProjectionBreakdownError,
    RelativeErrorUndefinedError,
    UnstableSystemError,
)
from ..norms import _without_d, h2_error
from ..systems import LQOSystem
from .balanced import orthonormal_basis, project
from .system import SparseLQOSystem

__all__ = ["Anderson", "align", "iterate", "step_distance"]


def align(G: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``G @ U`` with U unitary minimising :math:`\\|GU - X\\|_F` (orthogonal Procrustes)."""
    U, _, Vh = np.linalg.svd(G.conj().T @ X)
    return G @ (U @ Vh)


class Anderson:
    """Anderson mixing (type II) for the fixed point of a map of stacked basis pairs.

    Parameters
    ----------
    depth : int
        Number of previous residual differences kept.
    """

    def __init__(self, depth: int = 5):
        self.depth = depth
        self._dx, self._df = [], []
        self._x = self._f = None

    def reset(self) -> None:
        """Forget the history (the next step is a plain step)."""
        self._dx, self._df = [], []
        self._x = self._f = None

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Next iterate from the current point ``x`` and its image ``g`` (same shape, aligned).

        Returns
        -------
        numpy.ndarray
            :math:`x + f - (\\Delta X + \\Delta F)\\gamma`, :math:`\\gamma` the least-squares solution of
            :math:`\\Delta F\\gamma \\approx f`, f = g - x; the plain step g without history.
        """
        x, f = x.ravel(), (g - x).ravel()
        if self._x is not None:
            self._dx.append(x - self._x)
            self._df.append(f - self._f)
            if len(self._dx) > self.depth:
                self._dx.pop(0)
                self._df.pop(0)
        self._x, self._f = x, f
        if not self._df:
            return g
        DF, DX = np.column_stack(self._df), np.column_stack(self._dx)
        gamma = np.linalg.lstsq(DF, f, rcond=1e-12)[0]
        return (x + f - (DX + DF) @ gamma).reshape(g.shape)


def step_distance(new: LQOSystem, old: LQOSystem) -> float:
    r"""Relative h2 distance :math:`\|\hat\Sigma_{new} - \hat\Sigma_{old}\| / \|\hat\Sigma_{new}\|` of two
    ROMs (dense, order r each); ``inf`` when either is unstable.

    The convergence measure of the sparse IRKA / TSIA: unlike the change of the poles or of the modal
    residues it does not depend on the parametrisation, so modes that carry no energy (e.g. the trailing
    modes of a ROM whose Hankel singular values fall to the rounding level, whose poles are not
    determined) cannot hold the iteration up, and ill-conditioned eigenvectors do not inflate it. The
    feed-through is left out (both ROMs carry the system's D; in continuous time it would make the norm
    infinite). A pair whose distance cannot be evaluated counts as not converged.
    """
    try:
        return float(h2_error(_without_d(new), _without_d(old), relative=True))
    except (UnstableSystemError, RelativeErrorUndefinedError, NumericalAccuracyError):
        return float("inf")


def _stable(poles: np.ndarray, disc: bool) -> bool:
    return bool(np.all(np.abs(poles) < 1) if disc else np.all(poles.real < 0))


def iterate(sys: SparseLQOSystem, rom: LQOSystem, bases: Callable, change: Callable, *, tol: float,
            maxit: int, depth: int = 5):
    """Projection fixed-point iteration with Anderson mixing of the bases.

    Parameters
    ----------
    sys : SparseLQOSystem
    rom : LQOSystem
        Start ROM.
    bases : callable
        ``bases(rom) -> (V, W)``, orthonormal projection bases of one plain step from ``rom``.
    change : callable
        ``change(new_rom, old_rom) -> float``, the convergence measure of one plain step.
    tol : float
        Converged when ``change`` of a plain step is below ``tol`` and its ROM is stable.
    maxit : int
        Maximal number of steps (one ``bases`` call each).
    depth : int
        Anderson depth; 0 gives the plain iteration. An unstable or degenerate mixed ROM discards the
        history and takes the plain step instead.

    Returns
    -------
    rom : LQOSystem
        The ROM of the last plain step.
    changes : list of float
        ``change`` per step.
    converged : bool
    restarts : int
        Number of discarded histories.
    """
    disc = sys.is_discrete
    acc, x, changes, restarts, plain = Anderson(depth), None, [], 0, rom
    for _ in range(maxit):
        V, W = bases(rom)
        plain = project(sys, V, W)
        poles = np.linalg.eigvals(plain.A)
        changes.append(change(plain, rom))
        if changes[-1] < tol and _stable(poles, disc):
            return plain, changes, True, restarts
        r, g = V.shape[1], np.hstack([V, W])
        if depth > 0 and x is not None:
            g = np.hstack([align(V, x[:, :r]), align(W, x[:, r:])])
            try:
                y = acc.step(x, g)
                y = np.hstack([orthonormal_basis(y[:, :r], "mixed V"), orthonormal_basis(y[:, r:], "mixed W")])
                mixed = project(sys, y[:, :r], y[:, r:])
                if _stable(np.linalg.eigvals(mixed.A), disc):
                    x, rom = y, mixed
                    continue
            except (ProjectionBreakdownError, np.linalg.LinAlgError, ValueError):
                pass
            acc.reset()
            restarts += 1
        x, rom = g, plain
    return plain, changes, False, restarts
