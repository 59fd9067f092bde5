r"""Gramians of LTI and LQO systems (docs/theory.md §2, §3) and Hankel singular values.

::

    continuous:  A P + P A^H + B B^H = 0        A^H Q + Q A + C^H C + sum_j M_j P M_j = 0
    discrete:    A P A^H - P + B B^H = 0        A^H Q A - Q + C^H C + sum_j M_j P M_j = 0
    cross:       A X + X Â^H + B B̂^H = 0       (discrete: A X Â^H - X + B B̂^H = 0)

All results are cached on the immutable system objects, so norms, errors, gradients and balanced
truncation share one Schur factorisation and one Gramian per system.
"""

from __future__ import annotations

import numpy as np

from .equations import Factor, solve_factored, tri_solve
from .errors import UnstableSystemError
from .systems import LQOSystem


def _memo(sys: LQOSystem, key, fn):
    cache = sys._cache
    if key not in cache:
        cache[key] = fn()
    return cache[key]


def schur_factor(sys: LQOSystem, complex_form: bool = False) -> Factor:
    """Cached Schur factor of ``sys.A`` (eigenvalues for diagonal systems).

    ``complex_form=True`` returns the complex triangular form (needed by discrete-time solvers).
    """
    from .equations import factor

    if sys.is_diagonal:
        return _memo(sys, "factor", lambda: Factor(lam=sys.lam))
    f = _memo(sys, "factor", lambda: factor(sys.A))
    if complex_form:
        return _memo(sys, "factor_c", f.complex)
    return f


def adjoint_factor(f: Factor) -> Factor:
    r"""Factor of :math:`A^H` from that of A without refactoring.

    With the flip J, :math:`A^H = U T^H U^H = (UJ)(J T^H J)(UJ)^H` and :math:`J T^H J` is again
    upper (quasi-)triangular in Schur canonical form.
    """
    if f.is_diagonal:
        return Factor(lam=np.conj(f.lam))
    return Factor(T=np.ascontiguousarray(f.T.conj().T[::-1, ::-1]),
                  U=np.ascontiguousarray(f.U[:, ::-1]))


def _schur_eigvals(f: Factor) -> np.ndarray:
    if f.is_diagonal:
        return f.lam
    T = f.T
    if np.iscomplexobj(T):
        return np.diag(T)
    n = T.shape[0]
    lam = np.diag(T).astype(np.complex128)
    i = 0
    while i < n - 1:
        if T[i + 1, i] != 0:
            a, b, c, d = T[i, i], T[i, i + 1], T[i + 1, i], T[i + 1, i + 1]
            tr, det = (a + d) / 2, a * d - b * c
            disc = np.sqrt(complex(tr * tr - det))
            lam[i], lam[i + 1] = tr + disc, tr - disc
            i += 2
        else:
            i += 1
    return lam


MARGINAL = 8 * np.finfo(float).eps  # eigenvalues this close to the stability boundary count as on it


def check_stable(sys: LQOSystem, what: str = "h2 norm") -> None:
    r"""Raise :class:`UnstableSystemError` unless ``sys`` is asymptotically stable to working precision.

    Discrete time needs :math:`\rho(A) < 1 - 8\varepsilon`, continuous time
    :math:`\max \mathrm{Re}\,\lambda < -8\varepsilon \max|\lambda|`: an eigenvalue within rounding of
    the boundary (e.g. ``exp(i theta)`` from a decay rate ``-exp(-inf)``) has an h2 norm of order
    ``1/eps`` or infinity, and any error reported against it would be meaningless.
    """

    def compute():
        lam = _schur_eigvals(schur_factor(sys))
        if sys.is_discrete:
            return float(np.max(np.abs(lam))), 1.0 - MARGINAL
        return float(np.max(lam.real)), -MARGINAL * float(np.max(np.abs(lam)))

    s, limit = _memo(sys, "abscissa_limit", compute)
    if not s < limit:
        bound = "spectral radius" if sys.is_discrete else "spectral abscissa"
        where = "on the unit circle to working precision" if sys.is_discrete and s < 1 else \
            "on the imaginary axis to working precision" if not sys.is_discrete and s < 0 else ""
        raise UnstableSystemError(
            f"the {what} needs an asymptotically stable system; {bound} = {s!r} "
            f"({'must be < 1' if sys.is_discrete else 'must be < 0'}{'; ' + where if where else ''})"
        )


def _hermitian(X: np.ndarray) -> np.ndarray:
    return (X + X.conj().T) / 2


def _factor_for(sys: LQOSystem) -> Factor:
    return schur_factor(sys)  # real Schur form for real systems, also in discrete time


def controllability_gramian_schur(sys: LQOSystem) -> tuple[np.ndarray, Factor]:
    r"""Controllability Gramian in Schur coordinates: :math:`\tilde P = U^H P U` and the factor used."""
    check_stable(sys, "controllability Gramian")
    f = _factor_for(sys)

    def compute():
        if f.is_diagonal:
            return _hermitian(solve_factored(f, f, sys.B @ sys.B.conj().T, sys.is_discrete))
        UB = f.U.conj().T @ sys.B
        Pt = tri_solve(f.T, f.T, UB @ UB.conj().T, sys.is_discrete)
        if not np.iscomplexobj(f.T) and np.iscomplexobj(Pt):
            Pt = Pt.real
        return _hermitian(Pt)

    return _memo(sys, "P_schur", compute), f


def controllability_gramian(sys: LQOSystem) -> np.ndarray:
    r"""P with :math:`A P + P A^H + BB^H = 0` (continuous) / :math:`A P A^H - P + BB^H = 0` (discrete)."""
    Pt, f = controllability_gramian_schur(sys)

    def compute():
        if f.is_diagonal:
            return Pt
        P = f.U @ Pt @ f.U.conj().T
        if not sys.is_complex:
            P = P.real
        return _hermitian(P)

    return _memo(sys, "P", compute)


def quadratic_weight(sys: LQOSystem, P: np.ndarray | None = None) -> np.ndarray:
    r""":math:`\sum_j M_j P M_j` (zero matrix for LTI systems)."""
    if sys.M is None:
        return np.zeros((sys.n, sys.n), sys.dtype)
    if P is None:
        P = controllability_gramian(sys)
    return (sys.M @ P @ sys.M).sum(axis=0)


def observability_gramian(sys: LQOSystem) -> np.ndarray:
    r"""LQO observability Gramian Q:
    :math:`A^H Q + Q A + C^H C + \sum_j M_j P M_j = 0` (discrete: :math:`A^H Q A - Q + \dots`).

    For LTI systems (M = None) this is the ordinary observability Gramian.
    """
    check_stable(sys, "observability Gramian")

    def compute():
        f = adjoint_factor(_factor_for(sys))
        R = sys.C.conj().T @ sys.C
        if sys.M is not None:
            R = R + quadratic_weight(sys)
        Q = solve_factored(f, f, R, sys.is_discrete)
        if not sys.is_complex and np.iscomplexobj(Q):
            Q = Q.real
        return _hermitian(Q)

    return _memo(sys, "Q", compute)


def cross_gramian(sys: LQOSystem, rom: LQOSystem) -> np.ndarray:
    r"""X (n, r) with :math:`A X + X \hat A^H + B \hat B^H = 0` (discrete: :math:`A X \hat A^H - X + B\hat B^H = 0`)."""
    sys.compatible_with(rom)
    fa, fb = _factor_for(sys), _factor_for(rom)
    X = solve_factored(fa, fb, sys.B @ rom.B.conj().T, sys.is_discrete)
    if not (sys.is_complex or rom.is_complex) and np.iscomplexobj(X):
        X = X.real
    return X


def psd_factor(X: np.ndarray, rtol: float = 0.0) -> np.ndarray:
    r"""Factor Z with :math:`X \approx Z Z^H` from an eigendecomposition (never fails).

    Eigenvalues below ``rtol * max eigenvalue`` (and all negative ones, which are rounding noise for
    a PSD Gramian) are dropped. Returns Z of shape (n, k), k = numerical rank.
    """
    w, V = np.linalg.eigh(_hermitian(X))
    wmax = max(float(w[-1]), 0.0)
    keep = w > max(rtol * wmax, 0.0)
    if not np.any(keep):
        return np.zeros((X.shape[0], 1), X.dtype)
    return V[:, keep] * np.sqrt(w[keep])


def hankel_singular_values(sys: LQOSystem) -> np.ndarray:
    r"""Hankel singular values :math:`\sigma_i = \sqrt{\lambda_i(PQ)}` in decreasing order.

    For LQO systems the LQO observability Gramian (with :math:`\sum M_j P M_j`) is used
    (Benner–Goyal–Pontes Duff). Computed by the square-root method: singular values of
    :math:`Z_P^H Z_Q` with the factors of :func:`mor_lqo.gramian_factors.gramian_factors` (Hammarling
    factors for real dense systems, accurate also for strongly non-normal ``A``; docs/numerics.md).
    """
    from ._validation import check_system
    from .gramian_factors import gramian_factors

    ZP, ZQ = gramian_factors(check_system(sys))
    s = np.linalg.svd(ZP.conj().T @ ZQ, compute_uv=False)
    out = np.zeros(sys.n)
    out[: min(len(s), sys.n)] = s[: sys.n]
    return out


__all__ = [
    "controllability_gramian",
    "observability_gramian",
    "cross_gramian",
    "hankel_singular_values",
    "psd_factor",
    "schur_factor",
    "adjoint_factor",
    "check_stable",
    "quadratic_weight",
]
