"""The L-BFGS-B driver of the single-system and joint reducers (scipy), keeping the best point seen."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize

from ...errors import UnstableSystemError


class _Tracker:
    """Wraps ``value_and_grad`` for scipy; remembers the best point ever evaluated."""

    def __init__(self, fun, scale: float):
        self.fun, self.scale = fun, scale
        self.best_f, self.best_x, self.best_g = math.inf, None, None
        self.nfev = 0
        self.last = (None, None)
        self.history: list[float] = []

    def __call__(self, x):
        f, g = self.fun(x)
        f, g = f / self.scale, g / self.scale
        self.nfev += 1
        if not (math.isfinite(f) and np.all(np.isfinite(g))):
            return 1e300, np.zeros_like(x)
        if f < self.best_f:
            self.best_f, self.best_x, self.best_g = f, x.copy(), g.copy()
        self.last = (x.copy(), f)
        return f, g

    def callback(self, xk, *args):
        x, f = self.last
        if x is not None and np.array_equal(x, xk):
            self.history.append(f)


def _lbfgs(fun, x0, bounds, scale, tol, maxiter):
    tr = _Tracker(fun, scale)
    tr(np.asarray(x0, float))  # the initial point is always a candidate
    tr.history.append(tr.best_f)
    if tr.best_x is None:
        raise UnstableSystemError("the objective is not finite at the initial model")
    res = minimize(tr, tr.best_x, jac=True, method="L-BFGS-B", bounds=bounds, callback=tr.callback,
                   options=dict(maxiter=int(maxiter), gtol=tol, ftol=1e-15, maxcor=20, maxls=60))
    return tr, res


def _proj_grad_norm(x, g, bounds) -> float:
    """Infinity norm of the projected gradient (as L-BFGS-B measures it)."""
    gp = g.copy()
    for i, (lo, hi) in enumerate(bounds):
        if lo is not None and x[i] <= lo and g[i] > 0:
            gp[i] = 0.0
        if hi is not None and x[i] >= hi and g[i] < 0:
            gp[i] = 0.0
    return float(np.max(np.abs(gp))) if gp.size else 0.0
