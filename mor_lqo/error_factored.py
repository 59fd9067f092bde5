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
"""

from __future__ import annotations

import numpy as np

from .gramian_factors import _realification, hammarling_factor
from .systems import LQOSystem

__all__ = ["h2_error_squared_factored", "MAX_FACTORED_ORDER"]

MAX_FACTORED_ORDER = 3000  # real order of the error system above which the refinement is skipped


def _dense(sys: LQOSystem) -> np.ndarray:
    return np.diag(sys.lam) if sys.is_diagonal else np.asarray(sys.A)


def h2_error_squared_factored(sys: LQOSystem, rom: LQOSystem) -> float | None:
    """Squared linear h2 error of two LTI systems from the error system's Gramian factor.

    Returns None where this route does not apply (quadratic outputs, error system too large).
    The systems must be stable and compatible (checked by the caller).
    """
    if sys.M is not None or rom.M is not None:
        return None
    A1, A2 = _dense(sys), _dense(rom)
    complex_ = any(np.iscomplexobj(X) for X in (A1, A2, sys.B, sys.C, sys.D, rom.B, rom.C, rom.D))
    n_e = (A1.shape[0] + A2.shape[0]) * (2 if complex_ else 1)
    if n_e > MAX_FACTORED_ORDER:
        return None
    Ae = np.block([[A1, np.zeros((A1.shape[0], A2.shape[0]))], [np.zeros((A2.shape[0], A1.shape[0])), A2]])
    Be = np.vstack([sys.B, rom.B])
    Ce = np.hstack([sys.C, -rom.C])
    dD = np.asarray(sys.D) - np.asarray(rom.D)
    if complex_:
        Ae, Be, Ce, dD = (_realification(X) for X in (Ae, Be, Ce, dD))
    Ae, Be, Ce, dD = (np.asarray(X, float) for X in (Ae, Be, Ce, dD))
    Z = hammarling_factor(Ae.T, Be.T, sys.is_discrete).T  # P_e = Z Z^T
    if not sys.is_discrete:
        total = np.sum((Ce @ Z) ** 2)
    elif sys.convention == "standard":
        total = np.sum(dD**2) + np.sum((Ce @ Z) ** 2)
    else:
        total = np.sum((dD + Ce @ Be) ** 2) + np.sum((Ce @ (Ae @ Z)) ** 2)
    return float(total / 2 if complex_ else total)
