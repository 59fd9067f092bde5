r"""Squared h2 errors of LTI pairs without cancellation, from a factor of the error system's Gramian.

The default route (:func:`mor_lqo.norms.h2_error_parts`) evaluates
:math:`\|S\|^2 + \|\hat S\|^2 - 2\,\mathrm{Re}\langle S, \hat S\rangle`: each term is accurate to about
:math:`\varepsilon\|S\|^2`, so errors below :math:`\sqrt\varepsilon\,\|S\|` drown in rounding. Here the
error system :math:`A_e = \mathrm{blkdiag}(A, \hat A)`, :math:`B_e = [B; \hat B]`,
:math:`C_e = [C, -\hat C]` gets a Cholesky factor :math:`P_e = Z Z^T` of its controllability Gramian by
Hammarling's method (never forming :math:`P_e`), and the error is a sum of squares:

* continuous: :math:`\|S - \hat S\|^2 = \|C_e Z\|_F^2`;
* discrete, standard convention (:math:`h_0 = D`, :math:`h_k = C A^{k-1} B`):
  :math:`\|\Delta D\|_F^2 + \|C_e Z\|_F^2`;
* discrete, current convention (:math:`h_0 = CB + D`, :math:`h_k = C A^k B`):
  :math:`\|\Delta D + C_e B_e\|_F^2 + \|C_e A_e Z\|_F^2`.

The entries of :math:`C_e Z` carry absolute errors of about :math:`\varepsilon\|S\|`, so the error is
resolved down to ~:math:`\varepsilon\|S\|` instead of :math:`\sqrt\varepsilon\|S\|`. Complex systems are
realified (:math:`G \mapsto [[\mathrm{Re}\,G, -\mathrm{Im}\,G], [\mathrm{Im}\,G, \mathrm{Re}\,G]]`, whose
squared h2 norm is twice that of :math:`G`). Cost: one Hammarling solve of order n + r (real) or
2(n + r) (complex), so :func:`mor_lqo.norms.h2_error_parts` uses it only for small relative errors.

Below that floor (squared errors under :data:`REFINE_DD_BELOW` of the terms that cancel in
:math:`C_e Z`) iterative refinement in double-double arithmetic follows. With :math:`P_0 = Z Z^T`, the
residual :math:`R = A_e P_0 + P_0 A_e^T + B_e B_e^T` (discrete: :math:`A_e P_0 A_e^T - P_0 + B_e B_e^T`)
is a difference of O(1) terms that cancel to O(ε), so it is formed in double-double
(:mod:`mor_lqo.kernels.double_double_numba`); corrections :math:`\Delta P_i` solve the same equation
with right-hand side R (rounded to double; one Schur form for all steps), R is updated in
double-double after each, and

.. math::

    \|S - \hat S\|^2 = \mathrm{fl}_{dd}\bigl(\|C_e Z\|_F^2\bigr)
        + \sum_i \mathrm{fl}_{dd}\,\mathrm{tr}(C_e \Delta P_i C_e^T)

(discrete: the feed-through term in double-double, and in the current convention the output map
:math:`C_e A_e` in place of :math:`C_e`). Each step gains a factor ~cond·ε; two suffice in practice.
The squared error is then resolved to a few ε² of the cancelling terms instead of a few ε: measured
relative accuracy ≤ 1e-8 at true relative errors of 1e-12 (continuous and discrete, real and complex),
where the plain factored route errs by up to 5 %. Cost: three to five double-double products of order
m = n + r (≈ 1 s each at m = 600 on one core) besides the Hammarling solve, so the step is skipped
above :data:`MAX_REFINED_ORDER`.
"""

from __future__ import annotations

import numpy as np

from .errors import NumericalAccuracyError
from .gramian_factors import _realification, hammarling_factor
from .systems import LQOSystem

__all__ = [
    "h2_error_parts_factored",
    "MAX_FACTORED_ORDER",
    "MAX_REFINED_ORDER",
    "REFINE_DD_BELOW",
]

MAX_FACTORED_ORDER = 3000  # real order of the error system above which the refinement is skipped
MAX_REFINED_ORDER = 1000  # real order above which the double-double residual step is skipped
REFINEMENT_STEPS = 3  # residual steps of the correction (each gains a factor ~cond * eps)
REFINE_DD_BELOW = 1e-14  # squared error relative to the cancelling terms below which it runs
_DD_ROUNDING = 1e-26  # the refined value's rounding, relative to the cancelling terms (measured floor ~1e-31)


def _dense(sys: LQOSystem) -> np.ndarray:
    return np.diag(sys.lam) if sys.is_diagonal else np.asarray(sys.A)


def h2_error_parts_factored(sys: LQOSystem, rom: LQOSystem) -> tuple[float, float] | None:
    r"""Squared linear and quadratic h2 errors from the error system's Gramian factor.

    The linear part as in the module docstring (with the double-double refinement for LTI pairs); the
    quadratic part :math:`\sum_j \|Z^T M_{e,j} Z\|_F^2` with :math:`M_{e,j} = \mathrm{blkdiag}(M_j,
    -\hat M_j)` (the state Gramian is the same in both discrete conventions), a sum of squares whose
    entries carry absolute errors of about :math:`\varepsilon\|Z\|^2\|M_e\|`. A missing quadratic
    term counts as :math:`M = 0`. Complex systems are realified (:math:`x^HMx = x_r^T R(M) x_r` for
    Hermitian M, and both parts of the realified system are twice the complex ones).

    Returns
    -------
    (linear, quadratic) : tuple of float, or None
        None when the error system is too large (:data:`MAX_FACTORED_ORDER`).
    """
    A1, A2 = _dense(sys), _dense(rom)
    n1, n2 = A1.shape[0], A2.shape[0]
    quadratic = [x.M for x in (sys, rom) if x.M is not None]
    complex_ = any(np.iscomplexobj(X) for X in (A1, A2, sys.B, sys.C, sys.D, rom.B, rom.C, rom.D, *quadratic))
    n_e = (n1 + n2) * (2 if complex_ else 1)
    if n_e > MAX_FACTORED_ORDER:
        return None
    Ae = np.block([[A1, np.zeros((n1, n2))], [np.zeros((n2, n1)), A2]])
    Be = np.vstack([sys.B, rom.B])
    Ce = np.hstack([sys.C, -rom.C])
    dD = np.asarray(sys.D) - np.asarray(rom.D)
    Me = None
    if sys.M is not None or rom.M is not None:
        M1 = sys.M if sys.M is not None else np.zeros((sys.p, n1, n1))
        M2 = rom.M if rom.M is not None else np.zeros((rom.p, n2, n2))
        Me = [np.block([[a, np.zeros((n1, n2))], [np.zeros((n2, n1)), -b]]) for a, b in zip(M1, M2)]
    if complex_:
        Ae, Be, Ce, dD = (_realification(X) for X in (Ae, Be, Ce, dD))
        Me = None if Me is None else [_realification(X) for X in Me]
    Ae, Be, Ce, dD = (np.asarray(X, float) for X in (Ae, Be, Ce, dD))
    Z = hammarling_factor(Ae.T, Be.T, sys.is_discrete).T  # P_e = Z Z^T
    current = sys.is_discrete and sys.convention != "standard"
    G = Ce @ Ae if current else Ce  # the output map that reads the Gramian
    direct = dD + Ce @ Be if current else dD  # the feed-through part (0 in continuous time)
    total = np.sum(direct**2) * sys.is_discrete + np.sum((G @ Z) ** 2)
    magnitude = np.sum((np.abs(G) @ np.abs(Z)) ** 2)  # size of the terms that cancel in G Z
    if Me is None and total < REFINE_DD_BELOW * magnitude and n_e <= MAX_REFINED_ORDER:
        total = _refined(Ae, Be, Ce, dD, Z, sys.is_discrete, current)
        if total < -_DD_ROUNDING * magnitude:
            raise NumericalAccuracyError(f"the refined squared h2 error is {total:.3g} < 0 beyond rounding "
                                         f"({_DD_ROUNDING:.0e} of the cancelling terms {magnitude:.3g})")
        total = max(total, 0.0)  # equal systems: a few eps^2 of the cancelling terms either side of 0
    quad = 0.0 if Me is None else float(sum(np.sum((Z.T @ np.asarray(Mj, float) @ Z) ** 2) for Mj in Me))
    scale = 2 if complex_ else 1
    return float(total / scale), quad / scale


def _refined(Ae, Be, Ce, dD, Z, discrete: bool, current: bool) -> float:
    r"""The squared error after double-double residual refinement of :math:`P_e = Z Z^T` (module docstring).

    All arguments real: Ae (m, m), Be (m, p), Ce (q, m), dD (q, p), Z (m, m).
    """
    from .equations import factor, lyapunov, stein
    from .kernels.double_double_numba import dd_add, dd_matmul, dd_sum_of_squares

    zero = np.zeros_like
    W = dd_matmul(Ae, zero(Ae), Z)  # A_e Z
    BB = dd_matmul(Be, zero(Be), np.ascontiguousarray(Be.T))
    if discrete:  # R = (A_e Z)(A_e Z)^T - Z Z^T + B_e B_e^T
        WW = dd_matmul(W[0], W[1], np.ascontiguousarray(W[0].T))
        WW = dd_add(*WW, W[0] @ W[1].T, zero(Z))
        ZZ = dd_matmul(-Z, zero(Z), np.ascontiguousarray(Z.T))
        R = dd_add(*dd_add(*WW, *ZZ), *BB)
    else:  # R = (A_e Z) Z^T + Z (A_e Z)^T + B_e B_e^T
        X = dd_matmul(W[0], W[1], np.ascontiguousarray(Z.T))
        R = dd_add(*dd_add(*X, X[0].T.copy(), X[1].T.copy()), *BB)
    steps = []
    schur = factor(Ae)  # one Schur form for all steps
    for i in range(REFINEMENT_STEPS):  # iterative refinement: each solve is accurate to ~cond * eps
        step = stein(schur, R[0] + R[1]) if discrete else lyapunov(schur, R[0] + R[1])
        step = (step + step.T) / 2  # exactly symmetric: the update below uses step A^T = (A step)^T
        steps.append(step)  # kept apart: their sum in double would round at eps * |step|
        if i == REFINEMENT_STEPS - 1 or np.max(np.abs(step)) <= 1e-8 * np.max(np.abs(steps[0])):
            break  # last step, or converged: further steps change the error by far less than rounding
        # residual of P_0 + sum(steps), updated in double-double
        AS = dd_matmul(Ae, zero(Ae), step)
        if discrete:
            R = dd_add(*dd_add(*R, *dd_matmul(AS[0], AS[1], np.ascontiguousarray(Ae.T))), -step, zero(step))
        else:
            R = dd_add(*dd_add(*R, *AS), AS[0].T.copy(), AS[1].T.copy())
    if current:  # output map C_e A_e and first Markov parameter dD + C_e B_e, both in double-double
        G = dd_matmul(Ce, zero(Ce), Ae)
        CB = dd_matmul(Ce, zero(Ce), Be)
        direct = dd_add(*CB, dD, zero(dD))
    else:
        G = (Ce, zero(Ce))
        direct = (dD, zero(dD))
    GZ = dd_matmul(G[0], G[1], Z)
    s, c = dd_sum_of_squares(*GZ)
    if discrete:
        s2, c2 = dd_sum_of_squares(*direct)
        s, c = s + s2, c + c2
    # tr(G dP G^T) for each step: O(eps) relative to the cancelling terms, itself a cancelling sum
    for step in steps:
        GdP = dd_matmul(G[0], G[1], step)
        t, d = dd_matmul(GdP[0].reshape(1, -1), GdP[1].reshape(1, -1), G[0].reshape(-1, 1))
        c = c + (t[0, 0] + d[0, 0])
    return s + c
