"""Vectorised BFGS: N independent minimisations (one per channel) advanced together.

Each channel has its own dense inverse-Hessian approximation, its own Armijo backtracking and its
own stopping test; a step evaluates the objective only for the channels still active. Used by
:func:`~.batch.h2_gradient_batch`.
"""

from __future__ import annotations

import numpy as np


def _bfgs_batch(fun, x0, lo, hi, gtol, ftol, maxiter, max_step=1.0):
    """Independent BFGS minimisations of N separable objectives, vectorised over the channels.

    ``fun(x (k, d), idx (k,)) -> (f (k,), g (k, d))`` for channels ``idx``. Per-channel Armijo
    backtracking (safeguarded quadratic interpolation), steps capped at ``max_step`` per coordinate
    (0.1 on the first, unscaled step), bound clipping of the iterates, curvature-guarded BFGS updates
    of a dense inverse Hessian per channel. Only the channels still active are evaluated.
    """
    N, d = x0.shape
    x = np.clip(x0, lo, hi)
    f, g = fun(x, np.arange(N))
    H = np.broadcast_to(np.eye(d), (N, d, d)).copy()
    fresh = np.ones(N, bool)
    it = np.zeros(N, int)
    conv = np.max(np.abs(g), axis=1) <= gtol
    active = ~conv & np.isfinite(f)
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xa, fa, ga = x[idx], f[idx], g[idx]
        p, gp = _descent_direction(H, fresh, idx, ga)
        t = _first_step(p, fresh[idx], max_step)
        xn, fn, gn, done = _armijo(fun, idx, xa, fa, ga, p, gp, t, lo, hi)
        failed = idx[~done]
        active[failed] = False
        # no Armijo step although descent was predicted: converged when the predicted decrease is at
        # the rounding level of the (normalised) objective
        conv[failed] |= np.abs(gp[~done]) <= 1e-12 * np.maximum(np.abs(fa[~done]), 1.0)
        ok_idx = idx[done]
        if ok_idx.size:
            _bfgs_update(H, fresh, ok_idx, xn[done] - xa[done], gn[done] - ga[done])
            f_old = f[ok_idx]
            x[ok_idx], f[ok_idx], g[ok_idx] = xn[done], fn[done], gn[done]
            it[ok_idx] += 1
            gmax = np.max(np.abs(g[ok_idx]), axis=1)
            stall = (f_old - f[ok_idx]) <= ftol * np.maximum(np.abs(f[ok_idx]), 1e-300)
            fin = (gmax <= gtol) | stall
            conv[ok_idx[fin]] = True
            active[ok_idx[fin]] = False
    conv |= np.max(np.abs(g), axis=1) <= gtol
    return x, f, g, it, conv


def _descent_direction(H, fresh, idx, ga):
    """Quasi-Newton directions ``p = -H g`` of channels ``idx`` and the slopes ``g . p``.

    A channel whose direction is not a descent direction restarts from ``H = I`` (steepest descent);
    ``H`` and ``fresh`` are updated in place.
    """
    d = ga.shape[1]
    p = -np.einsum("kij,kj->ki", H[idx], ga)
    gp = np.sum(ga * p, axis=1)
    bad = ~(gp < 0)
    if bad.any():
        H[idx[bad]] = np.eye(d)
        fresh[idx[bad]] = True
        p[bad] = -ga[bad]
        gp[bad] = -np.sum(ga[bad] ** 2, axis=1)
    return p, gp


def _first_step(p, fresh, max_step):
    """Initial step lengths: 1, capped at ``max_step`` per coordinate (0.1 without curvature yet)."""
    pmax = np.max(np.abs(p), axis=1)
    t = np.minimum(1.0, max_step / np.maximum(pmax, 1e-300))
    return np.where(fresh, np.minimum(t, 0.1 / np.maximum(pmax, 1e-300)), t)


def _armijo(fun, idx, xa, fa, ga, p, gp, t, lo, hi):
    """Armijo backtracking (at most 60 trials) of channels ``idx`` from ``xa`` along ``p``.

    Returns the accepted points, values, gradients (the start where no step was accepted) and the
    mask of channels with an accepted step.
    """
    xn, fn, gn = xa.copy(), fa.copy(), ga.copy()
    done = np.zeros(idx.size, bool)
    pend = np.arange(idx.size)
    for _ls in range(60):
        trial = np.clip(xa[pend] + t[pend, None] * p[pend], lo, hi)
        ft, gt = fun(trial, idx[pend])
        slope = np.sum(ga[pend] * (trial - xa[pend]), axis=1)
        ok = np.isfinite(ft) & (ft <= fa[pend] + 1e-4 * slope) & (slope < 0)
        acc = pend[ok]
        xn[acc], fn[acc], gn[acc] = trial[ok], ft[ok], gt[ok]
        done[acc] = True
        rej = pend[~ok]
        if rej.size == 0:
            break
        # safeguarded quadratic interpolation of the step, within [0.1 t, 0.5 t]
        tr_, fr_ = t[rej], ft[~ok]
        sl = gp[rej] * tr_
        den = 2.0 * (fr_ - fa[rej] - sl)
        with np.errstate(divide="ignore", invalid="ignore"):
            tq = np.where(np.isfinite(fr_) & (den > 0), -gp[rej] * tr_ ** 2 / den, 0.1 * tr_)
        t[rej] = np.clip(np.nan_to_num(tq, nan=0.1), 0.1 * tr_, 0.5 * tr_)
        pend = rej
    return xn, fn, gn, done


def _bfgs_update(H, fresh, ok_idx, s, y):
    """Curvature-guarded BFGS update of the inverse Hessians ``H[ok_idx]`` (in place).

    ``s``, ``y``: steps and gradient changes. Pairs with ``s . y`` below ``1e-12 |s| |y|`` are
    skipped; a channel's first good pair first scales ``H = (s . y / y . y) I``.
    """
    d = H.shape[1]
    sy = np.sum(s * y, axis=1)
    yy = np.sum(y * y, axis=1)
    good = sy > 1e-12 * np.sqrt(np.sum(s * s, axis=1) * yy)
    Hk = H[ok_idx]
    fr = fresh[ok_idx] & good
    if fr.any():
        Hk[fr] = (sy[fr] / yy[fr])[:, None, None] * np.eye(d)
    gi = np.flatnonzero(good)
    if gi.size:
        Hs, ss, ys, rho = Hk[gi], s[gi], y[gi], 1.0 / sy[gi]
        Hy = np.einsum("kij,kj->ki", Hs, ys)
        yHy = np.sum(ys * Hy, axis=1)
        Hs = (Hs - rho[:, None, None] * (ss[:, :, None] * Hy[:, None, :] + Hy[:, :, None] * ss[:, None, :])
              + ((rho ** 2) * yHy + rho)[:, None, None] * ss[:, :, None] * ss[:, None, :])
        Hk[gi] = Hs
    H[ok_idx] = Hk
    fresh[ok_idx] &= ~good
