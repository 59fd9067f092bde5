r"""Joint reduction of several blocks: L-BFGS-B on a weighted sum :math:`\sum_l w_l J_l` of objectives.

Each block keeps its own :class:`~.objective.H2Objective` (system, order, weight, parametrisation);
the joint parameter vector is the concatenation of the blocks' vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import InvalidArgumentError
from ...systems import LQOSystem
from ._checks import _positive
from .lbfgs import _lbfgs, _proj_grad_norm
from .objective import H2Objective


def h2_gradient_joint(objectives: Sequence[H2Objective], inits: Sequence[LQOSystem], *, tol: float = 1e-9,
                      maxiter: int = 500) -> tuple[list[LQOSystem], dict]:
    r"""Minimise a weighted sum :math:`\sum_l w_l J_l` of several blocks' objectives jointly (L-BFGS).

    Parameters
    ----------
    objectives : sequence of H2Objective
        One per block, each with its own weight :math:`w_l`.
    inits : sequence of LQOSystem
        Initial reduced models (packed with each objective's :meth:`H2Objective.pack`).
    tol, maxiter
        As in :func:`h2_gradient`; the gradient is that of the sum divided by
        :math:`\sum_l w_l \|\Sigma_l\|^2`.

    Returns
    -------
    roms : list of LQOSystem
        Reduced models at the best joint point found (never worse in the weighted sum than the start).
    info : dict
        ``objective`` (weighted sum), ``initial_objective``, ``converged``, ``iterations``, ``grad_norm``.
    """
    if len(objectives) != len(inits) or not objectives:
        raise InvalidArgumentError("give one initial model per objective (and at least one)")
    thetas = [o.pack(rom) for o, rom in zip(objectives, inits)]
    cuts = np.cumsum([0] + [t.size for t in thetas])
    bounds = [b for o in objectives for b in o.bounds]

    def fun(x):
        f, g = 0.0, np.empty_like(x)
        for o, a, b in zip(objectives, cuts[:-1], cuts[1:]):
            fo, go = o.value_and_grad(x[a:b])
            f += fo
            g[a:b] = go
        return f, g

    scale = sum(o.weight * max(o.norm2, np.finfo(float).tiny) for o in objectives)
    tr, res = _lbfgs(fun, np.concatenate(thetas), bounds, scale, _positive(tol, "tol"), maxiter)
    x = tr.best_x
    roms = [o.unpack(x[a:b]) for o, a, b in zip(objectives, cuts[:-1], cuts[1:])]
    gnorm = _proj_grad_norm(x, tr.best_g, bounds)
    return roms, dict(objective=tr.best_f * scale, initial_objective=tr.history[0] * scale,
                      converged=bool(res.success) or gnorm <= tol, iterations=int(res.nit), grad_norm=gnorm)
