r"""Two-sided iteration (TSIA) and LQO-TSIA, continuous and discrete time (docs/theory.md §5, §7.4).

One iteration, starting from a reduced model :math:`(\hat A, \hat B, \hat C, \hat M_j)` of order r::

    continuous:  A X + X Â^H + B B̂^H = 0                 A^H Y + Y Â - C^H Ĉ - 2 sum_j M_j X M̂_j = 0
    discrete:    A X Â^H - X + B B̂^H = 0                 A^H Y Â - Y - C^H Ĉ - 2 sum_j M_j X M̂_j = 0
    V = orth(X),  W = orth(Y),  E = W^H V
    Â <- E^{-1} W^H A V,  B̂ <- E^{-1} W^H B,  Ĉ <- C V,  M̂_j <- V^H M_j V      (D unchanged)

X and Y are n x r (Stein–)Sylvester solutions that reuse the full model's cached Schur factor
(:func:`mor_lqo.gramians.schur_factor`), so an iteration costs O(n^2 r) (plus O(p n^2 r) for the
quadratic terms) after the one-off O(n^3) factorisation. The iteration runs in the Schur
coordinates of A (real Schur form for real continuous systems, complex Schur form for complex
systems; the ROM is coordinate-free), which saves the n x n products with the Schur vectors in every
step; real discrete systems (whose Stein solver needs the complex Schur form) and diagonal systems
stay in their own coordinates, so real systems always get real bases and real ROMs. Conjugate-pair
(Deep-SSM) systems are reduced through their exact real realisation. Fixed points satisfy the first-order
h2-optimality conditions of §5 (checked by :func:`mor_lqo.reduction.optimality.h2_optimality_residuals`).

The same machinery (:class:`_TwoSided`) drives :func:`mor_lqo.irka`: IRKA's shifted solves
:math:`(\sigma_k I - A)^{-1} B b_k` span the same space as X computed with the ROM in modal
coordinates, so IRKA and TSIA produce the same iterates in exact arithmetic and differ in how they
are initialised, parametrised (shifts and tangential directions) and stopped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from .._validation import check_count, check_order, check_system, check_tolerance
from ..equations import Factor, factor, solve_factored, tri_solve
from ..errors import (
    ConvergenceWarning,
    NotASystemError,
    OrderError,
    ProjectionBreakdownError,
    ShapeError,
    UnknownMethodError,
    UnstableSystemError,
)
from ..gramians import _memo, adjoint_factor, check_stable, schur_factor
from ..norms import h2_error, h2_norm, h2_norm_parts
from ..systems import LQOSystem
from .result import ReductionResult

__all__ = ["tsia"]

_EPS = np.finfo(float).eps
_COND_MAX = 1e12  # largest acceptable condition number of W^H V (and of modal transformations)


# ----------------------------------------------------------------------------------------- helpers
def work_system(sys: LQOSystem) -> tuple[LQOSystem, bool]:
    """System the iterations run on: the exact real realisation of a conjugate-pair system.

    Conjugate-pair (Deep-SSM) systems are complex but have real input-output maps; reducing their
    real realisation (cached on ``sys``, shared with balanced truncation) gives a real ROM.
    """
    if sys.is_complex and sys.half is not None and not np.any(np.imag(sys.D)):
        return _memo(sys, "realified", sys.realify), True
    return sys, False


def _real_part(X: np.ndarray, what: str) -> np.ndarray:
    """Real part of a result that is real in exact arithmetic (real data solved in complex form)."""
    if not np.iscomplexobj(X):
        return X
    scale = max(float(np.max(np.abs(X))), np.finfo(float).tiny)
    imag = float(np.max(np.abs(X.imag)))
    if imag > 1e-6 * scale:  # pragma: no cover - would indicate a bug upstream
        raise RuntimeError(f"{what}: expected a real result, imaginary part {imag / scale:.2e}")
    return np.ascontiguousarray(X.real)


def orth(X: np.ndarray) -> np.ndarray:
    """Orthonormal basis of range(X) (economic Householder QR), shape (n, r)."""
    Q, _ = sla.qr(X, mode="economic", check_finite=False)
    return Q


def _lyap_small(fb: Factor, F: np.ndarray, disc: bool) -> np.ndarray:
    X = solve_factored(fb, fb, F, disc)
    return (X + X.conj().T) / 2


def pole_change(new: np.ndarray, old: np.ndarray, discrete: bool) -> float:
    """Distance between two pole (or shift) sets, after optimal matching.

    Continuous time: :math:`\\max_k |\\lambda_k - \\lambda'_k| / |\\lambda'_k|` (relative);
    discrete time: :math:`\\max_k |\\lambda_k - \\lambda'_k|` (poles lie in the unit disc, whose
    radius is the natural scale; this also covers poles at 0).
    """
    new, old = np.asarray(new, complex), np.asarray(old, complex)
    if new.shape != old.shape:
        return float("inf")
    if not (np.all(np.isfinite(new)) and np.all(np.isfinite(old))):
        return float("inf")
    scale = np.ones(old.shape) if discrete else np.maximum(np.abs(old), np.finfo(float).tiny)
    cost = np.abs(new[:, None] - old[None, :]) / scale[None, :]
    from scipy.optimize import linear_sum_assignment  # lazy: scipy.optimize is slow to import

    i, j = linear_sum_assignment(cost)
    return float(np.max(cost[i, j])) if cost.size else 0.0


def is_stable_poles(lam: np.ndarray, discrete: bool) -> bool:
    lam = np.asarray(lam)
    return bool(np.all(np.abs(lam) < 1.0)) if discrete else bool(np.all(lam.real < 0.0))


@dataclass
class Realisation:
    """A reduced model in the realisation used by one two-sided step.

    ``fb`` is the factor of Â (Schur or diagonal); B̂, Ĉ, M̂ are in the same coordinates.
    """

    fb: Factor
    B: np.ndarray
    C: np.ndarray
    M: np.ndarray | None
    poles: np.ndarray
    stable: bool


def realisation_of(rom: LQOSystem) -> Realisation:
    """Schur-based realisation of a ROM (the TSIA step): Â = Z T Z^H, data mapped by Z."""
    disc = rom.is_discrete
    if rom.is_diagonal:
        fb = Factor(lam=rom.lam)
        lam = rom.lam
        return Realisation(fb, rom.B, rom.C, rom.M, lam, is_stable_poles(lam, disc))
    fb = factor(rom.A)
    from ..gramians import _schur_eigvals

    lam = _schur_eigvals(fb)
    return Realisation(fb, rom.B, rom.C, rom.M, lam, is_stable_poles(lam, disc))


@dataclass
class Step:
    """Output of one two-sided step for a reduced model."""

    X: np.ndarray
    Y: np.ndarray
    tail: float  # ||S^||^2 - 2 <S, S^> (D excluded), nan if the ROM is unstable
    MX: list = field(default_factory=list)


def project(s: LQOSystem, V: np.ndarray, W: np.ndarray) -> LQOSystem:
    r"""Petrov–Galerkin ROM :math:`(E^{-1}W^HAV,\ E^{-1}W^HB,\ CV,\ V^HM_jV,\ D)`, :math:`E = W^HV`.

    Same as :meth:`LQOSystem.project` but with matrix products only (no 3-operand einsum) and a
    tighter singularity check.

    Raises
    ------
    ShapeError
        If :math:`W^H V` is numerically singular (condition number > 1e12).
    """
    E = W.conj().T @ V
    cond = np.linalg.cond(E)
    if not np.isfinite(cond) or cond > _COND_MAX:
        raise ShapeError(f"W^H V is numerically singular (condition number {cond:.2e})")
    AV = s.lam[:, None] * V if s.is_diagonal else s.A @ V
    WH = W.conj().T
    r = V.shape[1]
    AB = np.linalg.solve(E, np.concatenate([WH @ AV, WH @ s.B], axis=1))
    Ah, Bh = AB[:, :r], AB[:, r:]
    Ch = s.C @ V
    Mh = None
    if s.M is not None:
        Mh = np.stack([V.conj().T @ (Mj @ V) for Mj in s.M])
        Mh = (Mh + np.conj(np.swapaxes(Mh, 1, 2))) / 2
    return LQOSystem._make(A=Ah, B=Bh, C=Ch, M=Mh, D=s.D, dt=s.dt, convention=s.convention)


class _TwoSided:
    """Shared engine of TSIA and IRKA: two-sided solves, error monitoring and projection.

    Parameters
    ----------
    sys : LQOSystem
        Full model (validated, stable). Conjugate-pair systems are replaced by their real realisation.
    """

    def __init__(self, sys: LQOSystem):
        check_system(sys)
        self.orig = sys
        work, self.realified = work_system(sys)
        check_stable(work, "h2-optimal reduction")
        self.sys = work
        self.disc = work.is_discrete
        self.real = not work.is_complex
        self.fa = schur_factor(work, complex_form=self.disc)
        self.fa_adj = adjoint_factor(self.fa)
        self.norm = h2_norm(sys)
        self.norm2_nod = _norm2_without_d(sys)
        # Work in Schur coordinates (A = U T U^H) whenever the Schur form has the system's own
        # arithmetic (real Schur for real continuous systems, complex Schur for complex systems):
        # the ROM is coordinate-free, and the n x n products with U are saved in every step.
        # Real discrete systems need the complex Schur form, whose coordinates would make the
        # bases complex, so they (and diagonal systems) stay in the original coordinates.
        self.schur = (not work.is_diagonal) and (not self.disc or work.is_complex)
        if self.schur:
            T, U = self.fa.T, self.fa.U
            self.T = T
            self.T_adj = np.ascontiguousarray(T.conj().T[::-1, ::-1])
            UH = U.conj().T
            Ms = None
            if work.M is not None:
                Ms = np.stack([UH @ Mj @ U for Mj in work.M])
                Ms = (Ms + np.conj(np.swapaxes(Ms, 1, 2))) / 2
            self.ws = LQOSystem._make(A=T, B=UH @ work.B, C=work.C @ U, M=Ms, D=work.D,
                                      dt=work.dt, convention=work.convention)
        else:
            self.ws = work

    # -------------------------------------------------------------- solves
    def _tri(self, T: np.ndarray, fb: Factor, F: np.ndarray) -> np.ndarray:
        """Solve T Y + Y Â^H + F = 0 (discrete: T Y Â^H - Y + F = 0), T upper (quasi-)triangular."""
        cplx = np.iscomplexobj(T)
        if fb.is_diagonal:
            S, Z, G = np.diag(fb.lam), None, F
        else:
            if (cplx or self.disc) and fb.is_real:
                fb = fb.complex()
            S, Z = fb.T, fb.U
            G = F @ Z
        Y = tri_solve(T, S, G, self.disc)
        return Y if Z is None else Y @ Z.conj().T

    def solve_x(self, fb: Factor, F: np.ndarray) -> np.ndarray:
        """X with A X + X Â^H + F = 0 (discrete: A X Â^H - X + F = 0), in working coordinates."""
        if self.schur:
            return self._tri(self.T, fb, F)
        X = solve_factored(self.fa, fb, F, self.disc)
        return _real_part(X, "two-sided solve") if self.real else X

    def solve_y(self, fb: Factor, F: np.ndarray) -> np.ndarray:
        """Y with A^H Y + Y Â + F = 0 (discrete: A^H Y Â - Y + F = 0), in working coordinates."""
        fadj = adjoint_factor(fb)
        if self.schur:  # flip J: (J T^H J)(J Y) + (J Y) Â + J F = 0
            return self._tri(self.T_adj, fadj, F[::-1])[::-1]
        Y = solve_factored(self.fa_adj, fadj, F, self.disc)
        return _real_part(Y, "two-sided solve") if self.real else Y

    def step(self, rz: Realisation, need_y: bool = True) -> Step:
        """Cross Gramian X, adjoint Y (factor 2 on the quadratic term) and the tail of the ROM.

        Everything is in the working coordinates (Schur coordinates of A where possible).
        """
        s = self.ws
        X = self.solve_x(rz.fb, s.B @ rz.B.conj().T)
        R = s.C.conj().T @ rz.C
        MX = []
        inner_q = 0.0
        if s.M is not None:
            MX = [Mj @ X for Mj in s.M]
            if rz.M is not None:
                for j, Mj_X in enumerate(MX):
                    R = R + 2 * (Mj_X @ rz.M[j])
                    inner_q += float(np.real(np.sum((X.conj().T @ Mj_X) * rz.M[j].T)))
        Y = self.solve_y(rz.fb, -R) if need_y else None
        tail = float("nan")
        if rz.stable:
            Ph = _lyap_small(rz.fb, rz.B @ rz.B.conj().T, self.disc)
            nr = float(np.real(np.trace(rz.C @ Ph @ rz.C.conj().T)))
            if rz.M is not None:
                PM = np.einsum("ab,jbc->jac", Ph, rz.M)
                nr += float(np.real(np.einsum("jab,jba->", PM, PM)))
            inner = float(np.real(np.trace(s.C @ X @ rz.C.conj().T))) + inner_q
            tail = nr - 2 * inner
        return Step(X, Y, tail, MX)

    def rel_error(self, tail: float) -> float:
        """Relative h2 error from a tail (inf for unstable ROMs)."""
        if not np.isfinite(tail):
            return float("inf")
        if self.norm == 0:
            return float("nan")
        return float(np.sqrt(max(self.norm2_nod + tail, 0.0)) / self.norm)

    def project(self, V: np.ndarray, W: np.ndarray) -> LQOSystem:
        """Petrov–Galerkin ROM of the working system, see :func:`project`."""
        return project(self.ws, V, W)

    def result(self, rom, method, converged, iterations, history, shifts=None, info=None):
        """Assemble a :class:`ReductionResult` with the authoritative :func:`h2_error`."""
        try:
            err = h2_error(self.orig, rom)
        except UnstableSystemError:
            err = float("inf")
        return ReductionResult(rom=rom, h2_error=err, h2_norm=self.norm, method=method,
                               converged=converged, iterations=iterations,
                               history=tuple(history), shifts=shifts, info=dict(info or {}))


def _norm2_without_d(sys: LQOSystem) -> float:
    """Squared h2 norm of the strictly proper part (D excluded); D is shared by every ROM."""
    if not np.any(sys.D != 0):
        return h2_norm_parts(sys).total
    if sys.is_discrete:
        total = h2_norm_parts(sys).total
        D = sys.D
        dterm = float(np.real(np.vdot(D, D)))
        if sys.convention == "current":
            dterm += 2 * float(np.real(np.vdot(sys.C @ sys.B, D)))
        return total - dterm
    # continuous time with D != 0: the H2 norm is infinite, the error uses the D-free system
    from ..norms import _without_d

    return h2_norm_parts(_without_d(sys)).total


def check_rom(sys: LQOSystem, rom: LQOSystem, r: int, what: str) -> None:
    """Validate a user-supplied initial reduced model."""
    if not isinstance(rom, LQOSystem):
        raise NotASystemError(f"{what} must be an LQOSystem or a string, got {type(rom).__name__}")
    sys.compatible_with(rom)
    if rom.order != r:
        raise OrderError(f"{what} has order {rom.order}, but r = {r} was requested")
    work, _ = work_system(sys)
    if rom.is_complex and not work.is_complex:
        raise ShapeError(f"{what} is complex but the system has a real realisation; pass a real ROM")


def bt_rom(sys: LQOSystem, r: int) -> LQOSystem:
    """Balanced-truncation ROM (the team's :func:`~mor_lqo.balanced_truncation`, else a local one)."""
    try:
        from .balanced import balanced_truncation

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return balanced_truncation(sys, r).rom
    except NotImplementedError:  # pragma: no cover - only while BT was a placeholder
        return _local_bt(sys, r)


def _local_bt(sys: LQOSystem, r: int) -> LQOSystem:  # pragma: no cover - fallback
    from ..gramians import controllability_gramian, observability_gramian, psd_factor

    work, _ = work_system(sys)
    ZP = psd_factor(controllability_gramian(work))
    ZQ = psd_factor(observability_gramian(work))
    U, s, Yh = np.linalg.svd(ZP.conj().T @ ZQ, full_matrices=False)
    isq = 1.0 / np.sqrt(s[:r])
    return work.project((ZP @ U[:, :r]) * isq, (ZQ @ Yh[:r].conj().T) * isq)


def dominant_rom(sys: LQOSystem, r: int) -> LQOSystem:
    r"""Modal truncation to the r modes with the largest linear h2 contribution.

    Score of mode k (residue :math:`c_k b_k`): :math:`\|c_k\|^2\|b_k\|^2/(-2\,\mathrm{Re}\,\lambda_k)`
    (continuous) or :math:`/(1-|\lambda_k|^2)` (discrete), plus the diagonal quadratic term
    :math:`\sum_j |(X^H M_j X)_{kk}|^2 \|b_k\|^4 /(\ldots)^2`. Conjugate pairs are kept together for
    real systems (the ROM is then real). Needs an eigendecomposition of A (O(n^3), diagonal: free).
    """
    work, _ = work_system(sys)
    disc = work.is_discrete
    if work.is_diagonal:
        lam = work.lam
        Xe = None
        Bm, Cm = work.B, work.C
    else:
        lam, Xe = np.linalg.eig(work.A)
        Bm = np.linalg.solve(Xe, work.B)
        Cm = work.C @ Xe
    den = (1 - np.abs(lam) ** 2) if disc else (-2 * lam.real)
    bn = np.sum(np.abs(Bm) ** 2, axis=1)
    score = np.sum(np.abs(Cm) ** 2, axis=0) * bn / den
    if work.M is not None:
        if Xe is None:
            mdiag = np.abs(np.einsum("jkk->jk", work.M)) ** 2
        else:
            mdiag = np.abs(np.einsum("nk,jnl,lk->jk", Xe.conj(), work.M, Xe)) ** 2
        score = score + np.sum(mdiag, axis=0) * bn**2 / den**2
    order = np.argsort(-score, kind="stable")
    if work.is_complex:
        keep = order[:r]
        return _modal_subsystem(work, lam, Xe, keep)
    # real system: keep conjugate pairs together
    keep: list[int] = []
    used = np.zeros(lam.size, bool)
    for k in order:
        if used[k]:
            continue
        if lam[k].imag == 0:
            if len(keep) < r:
                keep.append(k)
                used[k] = True
        else:
            partner = _partner(lam, k, used)
            if len(keep) + 2 <= r:
                keep += [k, partner]
                used[k] = used[partner] = True
        if len(keep) == r:
            break
    if len(keep) < r:  # only pairs left and one slot: cannot fill with a real mode
        raise OrderError(f"cannot pick {r} dominant real modes (conjugate pairs); try r +/- 1")
    return _modal_subsystem(work, lam, Xe, np.array(keep))


def _partner(lam, k, used):
    cand = np.where(~used)[0]
    cand = cand[cand != k]
    return int(cand[np.argmin(np.abs(lam[cand] - np.conj(lam[k])))])


def _modal_subsystem(work: LQOSystem, lam, Xe, keep) -> LQOSystem:
    """Project onto the eigenvectors ``keep`` (real basis for real systems).

    Diagonal systems (``Xe is None``): the eigenvectors are unit vectors, so both bases are the
    coordinate selection ``keep`` — O(n r) memory and O(n r^2) work, never an n x n identity.
    """
    if Xe is None:
        Sel = np.zeros((work.n, len(keep)))
        Sel[np.asarray(keep), np.arange(len(keep))] = 1.0
        return project(work, orth(Sel), orth(Sel))
    V = Xe[:, keep]
    if not work.is_complex:
        cols = []
        seen = set()
        for k in keep:
            if k in seen:
                continue
            v = Xe[:, k]
            if lam[k].imag == 0:
                cols.append(v.real)
                seen.add(k)
            else:
                cols += [v.real, v.imag]
                seen.add(k)
                seen.add(_partner_in(lam, keep, k))
        V = np.column_stack(cols)
    # left eigenvectors span: rows keep of Xe^{-1}, i.e. conj of Xe^{-T} e_keep (one LU, no inverse)
    Sel = np.zeros((work.n, len(keep)))
    Sel[np.asarray(keep), np.arange(len(keep))] = 1.0
    Wl = np.linalg.solve(Xe.T, Sel).conj()
    if not work.is_complex:
        cols, seen = [], set()
        for idx, k in enumerate(keep):
            if k in seen:
                continue
            w = Wl[:, idx]
            if lam[k].imag == 0:
                cols.append(w.real)
                seen.add(k)
            else:
                cols += [w.real, w.imag]
                seen.add(k)
                seen.add(_partner_in(lam, keep, k))
        Wl = np.column_stack(cols)
    return project(work, orth(V), orth(Wl))


def _partner_in(lam, keep, k):
    others = [j for j in keep if j != k]
    return int(others[np.argmin(np.abs(lam[others] - np.conj(lam[k])))])


def initial_rom(sys: LQOSystem, r: int, init, what: str = "init") -> tuple[LQOSystem, str]:
    """Resolve an ``init`` argument into a ROM (order r) and a label."""
    if init is None or (isinstance(init, str) and init in ("auto", "bt")):
        return bt_rom(sys, r), "bt"
    if isinstance(init, str):
        if init == "dominant":
            return dominant_rom(sys, r), "dominant"
        raise UnknownMethodError(f"{what} must be 'auto', 'bt', 'dominant' or an LQOSystem, "
                                 f"got {init!r}")
    check_rom(sys, init, r, what)
    return init, "user"


# ----------------------------------------------------------------------------------------- TSIA
def tsia(sys: LQOSystem, r: int, *, init=None, tol: float = 1e-8, maxit: int = 100) -> ReductionResult:
    r"""Two-sided iteration (TSIA / LQO-TSIA) for h2-optimal reduction, continuous or discrete.

    Parameters
    ----------
    sys : LQOSystem
        Asymptotically stable full model (order n), LTI or LQO, continuous (dt = 0) or discrete,
        real, complex, or a conjugate-pair (Deep-SSM) system (reduced through its real realisation).
    r : int
        Reduced order, ``1 <= r < n``.
    init : {None, "auto", "bt", "dominant"} or LQOSystem
        Initial reduced model. ``None``/``"auto"``/``"bt"``: (LQO) balanced truncation;
        ``"dominant"``: modal truncation to the r modes with the largest h2 contribution; an
        :class:`LQOSystem` of order r (stable, compatible with ``sys``).
    tol : float, default 1e-8
        Stop when the relative change of the ROM poles between two iterates (optimal matching;
        absolute change in discrete time, see :func:`pole_change`) falls below ``tol``. This is a
        first-order measure: the first-order optimality residuals (§5) are then O(tol).
    maxit : int, default 100
        Maximum number of iterations.

    Returns
    -------
    ReductionResult
        ``method``: ``"tsia"`` or ``"lqo-tsia"``. ``history``: relative h2 error of every iterate
        (index 0: the initial ROM). ``info``: ``"pole_change"`` (per iteration), ``"init"``,
        ``"initial_error"``, ``"best_iteration"``, ``"realified"``.

    Warns
    -----
    ConvergenceWarning
        If ``tol`` is not met within ``maxit`` iterations, if an iterate is unstable at the end, or if
        the projection breaks down (:math:`W^HV` singular). The ROM returned is then the *best* stable
        iterate by h2 error (never worse than the initial ROM), and ``converged`` is False.

    Notes
    -----
    Per iteration (§7.4): :math:`X` from :math:`AX + X\hat A^H + B\hat B^H = 0` (discrete:
    :math:`AX\hat A^H - X + B\hat B^H = 0`), :math:`Y` from
    :math:`A^HY + Y\hat A - C^H\hat C - 2\sum_j M_jX\hat M_j = 0` (discrete:
    :math:`A^HY\hat A - Y - \dots = 0`), :math:`V = \mathrm{orth}(X)`, :math:`W = \mathrm{orth}(Y)`,
    Petrov–Galerkin ROM with :math:`\hat M_j = V^HM_jV`. The h2 error of every iterate is obtained
    from the same X at no extra cost (tail form, §3). Neither stability nor monotone decrease is
    guaranteed by TSIA; stability is checked at every step. Real systems give real ROMs; D is kept.

    Raises
    ------
    OrderError
        If ``r`` is invalid or the initial ROM has the wrong order.
    UnstableSystemError
        If ``sys`` or the initial ROM is unstable.
    """
    check_system(sys)
    r = check_order(r, sys.order)
    _check_tol(tol, maxit)
    eng = _TwoSided(sys)
    rom, label = initial_rom(sys, r, init)
    if not rom.is_stable():
        raise UnstableSystemError("the initial reduced model of TSIA must be asymptotically stable")
    method = "lqo-tsia" if eng.sys.has_quadratic else "tsia"

    roms, errors, changes = [], [], []
    converged = False
    breakdown = None
    rz = realisation_of(rom)
    it = 0
    while True:
        st = eng.step(rz)
        roms.append(rom)
        errors.append(eng.rel_error(st.tail))
        if converged or it >= maxit:
            break
        try:
            new = eng.project(orth(st.X), orth(st.Y))
        except (ShapeError, np.linalg.LinAlgError) as exc:
            breakdown = str(exc)
            break
        it += 1
        new_rz = realisation_of(new)
        changes.append(pole_change(new_rz.poles, rz.poles, eng.disc))
        rom, rz = new, new_rz
        if changes[-1] < tol:
            converged = True
    return _finish(eng, roms, errors, changes, converged, it, breakdown, method,
                   {"init": label}, maxit, tol)


def _check_tol(tol, maxit):
    check_tolerance(tol, "tol")
    check_count(maxit, "maxit")


def _finish(eng, roms, errors, changes, converged, it, breakdown, method, info, maxit, tol,
            shifts_of=None, first_is_rom=True, change_key="pole_change"):
    """Pick the returned iterate, emit warnings, build the result."""
    errs = np.array(errors, float)
    final = len(roms) - 1
    final_ok = np.isfinite(errs[final])
    reason = None
    if breakdown is not None:
        reason = f"the projection broke down ({breakdown})"
    elif not converged:
        reason = f"the tolerance {tol:g} was not met in {maxit} iterations"
    elif not final_ok:
        reason = "the converged reduced model is unstable"
    if reason is None:
        pick = final
    else:
        finite = [k for k in range(len(roms)) if np.isfinite(errs[k])]
        if not finite:
            raise ProjectionBreakdownError(
                f"{method}: no stable reduced model was produced ({reason}); try another init"
            )
        pick = min(finite, key=lambda k: errs[k])
        warnings.warn(
            f"{method}: {reason}; returning the best stable iterate (iteration {pick}, relative "
            f"h2 error {errs[pick]:.3e}, last change {changes[-1] if changes else np.nan:.2e})",
            ConvergenceWarning,
            stacklevel=3,
        )
        converged = False
    rom = roms[pick]
    info = dict(info)
    info.update({change_key: tuple(changes), "best_iteration": int(pick),
                 "initial_error": float(errs[0]) if first_is_rom else None,
                 "realified": eng.realified})
    shifts = shifts_of(rom) if shifts_of is not None else None
    return eng.result(rom, method, converged, it, errors, shifts=shifts, info=info)
