r"""h2 norms, inner products and errors of LTI and LQO systems (docs/theory.md §2–§3).

::

    ||S||^2      = tr(C P C^H) + sum_j tr(P M_j P M_j)                       (P-form)
    <S, S^>      = Re tr(C X C^^H) + sum_j Re tr(M_j X M^_j X^H)             (X: n x r cross Gramian)
    ||S - S^||^2 = ||S||^2 + ||S^||^2 - 2 <S, S^>                          (never the (n+r) system)

Discrete time adds the feed-through: in the *standard* convention D acts alone at lag 0
(``+ ||D||_F^2``), in the *current-input* convention it adds to the lag-0 kernel ``CB + D``
(``+ 2 Re tr((CB)^H D) + ||D||_F^2``). In continuous time the H2 norm is infinite when D != 0.

For real-output systems built with :meth:`LQOSystem.conjugate_pairs` every quantity is the norm of
the real input-output map (the conjugation-closed 2n form has real kernels).

Rounding floor: the error is a difference of O(||S||^2) numbers, so squared errors below about
``eps * ||S||^2`` are noise; they are clamped at 0 before the square root.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import (
    InvalidArgumentError,
    NotASystemError,
    NumericalAccuracyError,
    RelativeErrorUndefinedError,
    ShapeError,
)
from .gramians import (
    _memo,
    check_stable,
    controllability_gramian,
    controllability_gramian_schur,
    cross_gramian,
    schur_factor,
)
from .systems import LQOSystem


class H2Parts(NamedTuple):
    """Squared h2 quantities split into the linear part (incl. D) and the quadratic part."""

    linear: float
    quadratic: float

    @property
    def total(self) -> float:
        return self.linear + self.quadratic


def _check_system(sys) -> LQOSystem:
    if not isinstance(sys, LQOSystem):
        raise NotASystemError(f"expected an LQOSystem, got {type(sys).__name__}")
    return sys


def _feedthrough_terms(s1: LQOSystem, s2: LQOSystem) -> float:
    """D contribution to <s1, s2> in discrete time (see module docstring)."""
    D1, D2 = s1.D, s2.D
    val = np.vdot(D1, D2).real
    if s1.convention == "current":
        val += np.vdot(s1.C @ s1.B, D2).real + np.vdot(D1, s2.C @ s2.B).real
    return float(val)


def _lin_inner_diag(s1: LQOSystem, s2: LQOSystem) -> float:
    try:
        from .kernels.cauchy import cauchy_inner
    except ImportError:  # pragma: no cover - kernels module missing
        cauchy_inner = None
    if cauchy_inner is not None:
        val = cauchy_inner(s1.lam, s1.B, s1.C, s2.lam, s2.B, s2.C, s1.is_discrete)
        return float(np.real(val))
    X = cross_gramian(s1, s2)  # pragma: no cover
    return float(np.real(np.vdot(s2.C, s1.C @ X)))  # pragma: no cover


SYM_KERNEL_MAX = 150  # real orders up to which the symmetric triangular kernel beats the blocked solver


def _stability_from(sys: LQOSystem, lam: np.ndarray) -> None:
    """Cache the stability data of check_stable from eigenvalues already at hand."""
    from .gramians import MARGINAL

    if sys.is_discrete:
        val = float(np.max(np.abs(lam))), 1.0 - MARGINAL
    else:
        val = float(np.max(lam.real)), -MARGINAL * float(np.max(np.abs(lam)))
    _memo(sys, "abscissa_limit", lambda: val)


def _real_lti_dense(sys: LQOSystem) -> bool:
    return sys.M is None and not sys.is_diagonal and not sys.is_complex and 0 < sys.n <= SYM_KERNEL_MAX


def _h2_linear_real(sys: LQOSystem) -> float | None:
    r"""tr(C̃ P̃ C̃^T) for a real dense LTI system by the symmetric triangular kernel; P̃ in Schur coordinates.

    Without a cached Schur factor and for n <= :data:`~mor_lqo.equations.THIN_SCHUR_MAX`, the Schur
    form comes from :func:`~mor_lqo.equations.thin_schur` on W = [B^T; C] (no n x n Schur vectors),
    and its eigenvalues feed the stability check. Returns None where the route does not apply.
    """
    from .equations import THIN_SCHUR_MAX, thin_schur
    from .kernels.lyap_real_numba import tri_lyap_sym_real

    m = sys.m
    if "factor" in sys._cache or sys.n > THIN_SCHUR_MAX or 2 * (m + sys.p) > sys.n:
        check_stable(sys)
        f = schur_factor(sys)
        T, Bt, Ct = f.T, f.U.T @ sys.B, sys.C @ f.U
    else:
        out = thin_schur(sys.A, np.vstack([sys.B.T, sys.C]))
        if out is None:  # pragma: no cover - fallback of thin_schur
            return None
        T, Z, lam = out
        _stability_from(sys, lam)
        check_stable(sys)
        Bt, Ct = Z[:m].T, Z[m:]
    Pt = tri_lyap_sym_real(T, Bt @ Bt.T, sys.is_discrete)
    return float(np.vdot(Ct, Ct @ Pt))


def h2_norm_parts(sys: LQOSystem) -> H2Parts:
    """Squared h2 norm split into linear (incl. D in discrete time) and quadratic parts."""
    sys = _check_system(sys)
    if "h2parts" in sys._cache:
        return sys._cache["h2parts"]
    lin = None
    if _real_lti_dense(sys) and (sys.is_discrete or not np.any(sys.D != 0)):
        lin = _h2_linear_real(sys)
    check_stable(sys)

    def compute():
        if not sys.is_discrete and np.any(sys.D != 0):
            return H2Parts(np.inf, 0.0)
        if lin is not None:
            lin_ = lin
        elif sys.M is None and sys.is_diagonal:
            lin_ = _lin_inner_diag(sys, sys)
        else:
            Pt, f = controllability_gramian_schur(sys)
            Ct = sys.C if f.is_diagonal else sys.C @ f.U
            lin_ = float(np.real(np.vdot(Ct, Ct @ Pt)))
        quad = 0.0
        if sys.M is not None:
            P = controllability_gramian(sys)
            PM = np.einsum("ab,jbc->jac", P, sys.M)
            quad = float(np.real(np.einsum("jab,jba->", PM, PM)))
        if sys.is_discrete:
            lin_ += _feedthrough_terms(sys, sys)
        return H2Parts(max(lin_, 0.0), max(quad, 0.0))

    return _memo(sys, "h2parts", compute)


def h2_norm(sys: LQOSystem) -> float:
    r"""h2 norm :math:`\|\Sigma\|_{h2}` (continuous: :math:`\mathcal H_2`) of an LTI or LQO system.

    Raises
    ------
    UnstableSystemError
        If the system is not asymptotically stable.
    """
    return float(np.sqrt(h2_norm_parts(sys).total))


def h2_inner_parts(sys1: LQOSystem, sys2: LQOSystem) -> H2Parts:
    """Inner product split into linear (incl. D) and quadratic parts."""
    sys1, sys2 = _check_system(sys1), _check_system(sys2)
    sys1.compatible_with(sys2)
    check_stable(sys1)
    check_stable(sys2)
    if not sys1.is_discrete and (np.any(sys1.D != 0) or np.any(sys2.D != 0)):
        raise ShapeError(
            "continuous-time h2 inner products need D = 0 (the H2 norm of a system with "
            "feed-through is infinite)"
        )
    if sys1.M is None and sys2.M is None and sys1.is_diagonal and sys2.is_diagonal:
        lin, quad = _lin_inner_diag(sys1, sys2), 0.0
    else:
        X = cross_gramian(sys1, sys2)
        lin = float(np.real(np.vdot(sys2.C, sys1.C @ X)))
        quad = 0.0
        if sys1.M is not None and sys2.M is not None:
            quad = float(np.real(np.vdot(X, (sys1.M @ X @ sys2.M).sum(axis=0))))
    if sys1.is_discrete:
        lin += _feedthrough_terms(sys1, sys2)
    return H2Parts(lin, quad)


def h2_inner(sys1: LQOSystem, sys2: LQOSystem) -> float:
    r"""Real h2 inner product :math:`\langle\Sigma_1, \Sigma_2\rangle` via the n x r cross Gramian.

    :math:`\mathrm{Re\,tr}(C_1 X C_2^H) + \sum_j \mathrm{Re\,tr}(M_{1,j} X M_{2,j} X^H)` (+ D terms
    in discrete time). Symmetric in its arguments.
    """
    return h2_inner_parts(sys1, sys2).total


def h2_error_parts(sys: LQOSystem, rom: LQOSystem) -> H2Parts:
    """Squared h2 error split into linear and quadratic parts (each clamped at 0)."""
    sys, rom = _check_system(sys), _check_system(rom)
    sys.compatible_with(rom)
    if not sys.is_discrete and np.any(sys.D != rom.D):
        return H2Parts(np.inf, 0.0)
    if not sys.is_discrete and (np.any(sys.D != 0)):
        # D cancels in the error; evaluate the strictly proper parts.
        sys = _without_d(sys)
        rom = _without_d(rom)
    # full Schur factors first: the inner product needs them, and the norms then reuse them
    check_stable(sys)
    check_stable(rom)
    n_full, n_rom = h2_norm_parts(sys), h2_norm_parts(rom)
    inner = h2_inner_parts(sys, rom)
    lin = n_full.linear + n_rom.linear - 2 * inner.linear
    quad = n_full.quadratic + n_rom.quadratic - 2 * inner.quadratic
    small_quad = quad < REFINE_BELOW * (n_full.quadratic + n_rom.quadratic)
    if lin < REFINE_BELOW * (n_full.linear + n_rom.linear) or (sys.M is not None and small_quad):
        from .error_factored import h2_error_parts_factored

        refined = h2_error_parts_factored(sys, rom)  # cancellation-free
        if refined is not None:
            return H2Parts(*refined)
    lin = _difference(n_full.linear, n_rom.linear, inner.linear, "linear")
    quad = _difference(n_full.quadratic, n_rom.quadratic, inner.quadratic, "quadratic")
    return H2Parts(lin, quad)


REFINE_BELOW = 1e-8  # relative squared error (rel. error 1e-4) below which the cancellation-free route is used
_ROUNDING = 256 * np.finfo(float).eps


def _difference(a: float, b: float, inner: float, part: str) -> float:
    """``a + b - 2 inner`` (a squared error); a negative value beyond rounding is an error, not 0."""
    d = a + b - 2 * inner
    if d < -_ROUNDING * (abs(a) + abs(b) + 2 * abs(inner)) or not np.isfinite(d):
        raise NumericalAccuracyError(
            f"the {part} squared h2 error evaluates to {d:.3g} (norms {a:.3g}, {b:.3g}, inner {inner:.3g}): "
            "the reduced model is too ill-conditioned for its error to be computed")
    return max(d, 0.0)


def _without_d(sys: LQOSystem) -> LQOSystem:
    def build():
        return LQOSystem._make(A=None if sys.is_diagonal else sys.A, lam=sys.lam, B=sys.B,
                               C=sys.C, M=sys.M, D=None, dt=sys.dt, convention=sys.convention,
                               half=sys.half)

    return _memo(sys, "without_d", build)


def h2_error(sys: LQOSystem, rom: LQOSystem, relative: bool = False) -> float:
    r"""h2 error :math:`\|\Sigma - \hat\Sigma\|_{h2}` via n x r Sylvester / Stein–Sylvester equations.

    Parameters
    ----------
    sys, rom : LQOSystem
        Same time domain, sampling time, convention and input/output sizes.
    relative : bool
        Divide by :math:`\|\Sigma\|_{h2}`.

    Raises
    ------
    RelativeErrorUndefinedError
        ``relative=True`` with a reference of infinite (continuous, D != 0) or zero h2 norm.
    NumericalAccuracyError
        The squared error evaluates to a negative number beyond rounding (ill-conditioned ROM).

    Notes
    -----
    The full model's norm is cached on ``sys``, so repeated errors against many ROMs cost one
    n x r solve each. Relative squared errors (linear or quadratic part) below :data:`REFINE_BELOW`
    are recomputed from a factor of the error system's Gramian (:mod:`mor_lqo.error_factored`),
    resolving errors down to ~1e-15 ||S|| for LTI pairs (double-double refinement, docs/numerics.md)
    and to ~1e-13 ||S|| for LQO pairs (plain factor).
    """
    if not isinstance(relative, (bool, np.bool_)):
        raise InvalidArgumentError(f"relative must be True or False, got {relative!r}")
    e = float(np.sqrt(h2_error_parts(sys, rom).total))
    if relative:
        nrm = h2_norm(sys)
        if not np.isfinite(nrm):
            raise RelativeErrorUndefinedError(
                "relative h2 error undefined: a continuous-time system with D != 0 has an infinite h2 norm "
                "(divide h2_error(sys, rom) by the norm of the strictly proper part if that is what you need)")
        if nrm == 0:
            raise RelativeErrorUndefinedError("relative h2 error undefined: the reference system has h2 norm 0")
        e /= nrm
    return e


__all__ = [
    "H2Parts",
    "h2_norm",
    "h2_norm_parts",
    "h2_inner",
    "h2_inner_parts",
    "h2_error",
    "h2_error_parts",
]
