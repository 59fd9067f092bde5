r"""IRKA and LQO-IRKA: iterative rational Krylov algorithm, continuous and discrete time.

Continuous time (Gugercin–Antoulas–Beattie; docs/theory.md §6, §7.3, §7.5). With the current reduced
poles :math:`\hat\lambda_k`, right tangents :math:`b_k` and left tangents :math:`c_k`::

    σ_k = -conj(λ̂_k)                               (mirror images in the imaginary axis)
    V_k = (σ_k I - A)^{-1} B b_k
    W_k = (σ_k I - A)^{-H} (C^H c_k + 2 sum_i sum_j (q_{k,i})_j M_j V_i)     (LQO-IRKA)
    ROM = Petrov–Galerkin projection onto orth(V), orth(W);  M̂_j = V^H M_j V
    Â = X_r diag(λ̂) X_r^{-1}:  b_k^H = row k of X_r^{-1} B̂,  c_k = column k of Ĉ X_r,
                                (q_{k,i})_j = (X_r^H M̂_j X_r)_{ik}

Discrete time (Van Dooren–Gallivan–Absil; Bunse-Gerstner et al.): the mirror images are in the unit
circle, σ_k = 1/conj(λ̂_k), with resolvents of :math:`G_a(z) = C(zI - A)^{-1}B`. The columns are
computed in the scaled form :math:`V_k = (I - \overline{\hat\lambda_k} A)^{-1} B b_k`
(:math:`= \overline{\hat\lambda_k}^{-1}(\sigma_k I - A)^{-1}Bb_k`, finite also for
:math:`\hat\lambda_k = 0`) and :math:`W_k = (I - \hat\lambda_k A^H)^{-1}(\dots)`.

**Discrete LQO-IRKA [derived here].** Writing the ROM in modal coordinates turns the two-sided
(Stein–)Sylvester equations of TSIA (§7.4) column by column into exactly these shifted solves:
with :math:`X' = X X_r^{-H}` the equation :math:`AX\hat A^H - X + B\hat B^H = 0` becomes
:math:`(I - \overline{\hat\lambda_k}A)x'_k = B b_k`, and with :math:`Y' = -Y X_r` the adjoint equation
:math:`A^HY\hat A - Y - C^H\hat C - 2\sum_j M_jX\hat M_j = 0` becomes
:math:`(I - \hat\lambda_k A^H) y'_k = C^H c_k + 2\sum_{i,j}(q_{k,i})_j M_j x'_i`
(continuous time identically with :math:`\sigma_k I - A`). So (LQO-)IRKA and (LQO-)TSIA generate
the same iterates, and IRKA's fixed points satisfy the first-order conditions of §5 in both time
domains; the tests verify this with :func:`~mor_lqo.reduction.optimality.h2_optimality_residuals`,
and the §6 interpolation conditions at 1/conj(λ̂) for LTI systems.

Implementation: all r shifted solves of one side are a single n x r triangular (Stein–)Sylvester
solve with the full model's cached Schur factor (and the full model's Schur coordinates), so an
iteration costs O(n^2 r) after one O(n^3) Schur factorisation. The reduced side uses the Schur form
of Â — the same spaces as the modal (eigenvector) form, without its ill-conditioning for larger r
(on AdvecDiff the eigenvector form stalls at shift changes ~1e-5 for r >= 24, the Schur form
converges to 1e-8). Only when the ROM has unstable poles is the modal form used, to mirror them.
For real systems the shifts are closed under conjugation and the bases real (a conjugate pair of
columns is replaced by its real and imaginary parts), so the ROM is real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from .._validation import check_order, check_system
from ..equations import Factor
from ..errors import (
    InvalidArgumentError,
    ProjectionBreakdownError,
    ShapeError,
    UnstableSystemError,
)
from ..systems import LQOSystem
from .result import ReductionResult  # noqa: F401  (return type)
from .tsia import (
    Realisation,
    _check_tol,
    _finish,
    _TwoSided,
    dominant_rom,
    initial_rom,
    is_stable_poles,
    pole_change,
    realisation_of,
)

__all__ = ["irka"]

_EPS = np.finfo(float).eps
_MODAL_COND_MAX = 1e10  # eigenvector conditioning above which the Schur (TSIA) step is used


def _mirror(lam: np.ndarray, disc: bool) -> np.ndarray:
    """Reflect unstable poles into the stability region (mirror image), keep stable ones."""
    lam = np.array(lam, dtype=complex)
    if disc:
        bad = np.abs(lam) > 1
        lam[bad] = 1 / np.conj(lam[bad])
    else:
        bad = lam.real > 0
        lam[bad] = -np.conj(lam[bad])
    return lam


def shifts_from_poles(lam: np.ndarray, disc: bool) -> np.ndarray:
    r"""Interpolation points of stable poles: :math:`-\bar\lambda` (continuous), :math:`1/\bar\lambda`
    (discrete; ``inf`` for :math:`\lambda = 0`)."""
    lam = np.asarray(lam, complex)
    if not disc:
        return -np.conj(lam)
    out = np.full(lam.shape, np.inf + 0j)
    nz = lam != 0
    out[nz] = 1 / np.conj(lam[nz])
    return out


def _poles_from_shifts(sigma: np.ndarray, disc: bool) -> np.ndarray:
    sigma = np.asarray(sigma, complex)
    if not disc:
        return -np.conj(sigma)
    out = np.zeros(sigma.shape, complex)
    fin = np.isfinite(sigma)
    out[fin] = 1 / np.conj(sigma[fin])
    return out


def _real_blocks(lam: np.ndarray) -> tuple[np.ndarray, list]:
    """Block-diagonal real form of conjugation-closed representatives.

    ``lam`` holds one representative per real pole or conjugate pair (Im >= 0). Returns the r x r
    matrix with 1x1 blocks [λ] and 2x2 blocks [[α, β], [-β, α]] (standard Schur form) and the list
    of (start, size) of the blocks.
    """
    size = sum(1 if z.imag == 0 else 2 for z in lam)
    T = np.zeros((size, size))
    blocks, i = [], 0
    for z in lam:
        if z.imag == 0:
            T[i, i] = z.real
            blocks.append((i, 1))
            i += 1
        else:
            a, b = z.real, z.imag
            T[i:i + 2, i:i + 2] = [[a, b], [-b, a]]
            blocks.append((i, 2))
            i += 2
    return T, blocks


def _representatives(lam: np.ndarray, atol: float = 0.0):
    """One index per real value and per conjugate pair (the member with Im > 0), in input order.

    Values with ``|Im| <= atol * max|lam|`` count as real. Returns ``(reps, partner)`` or None if
    ``lam`` is not closed under conjugation to that tolerance (``atol = 0``: exactly, as LAPACK
    returns the eigenvalues of real matrices).
    """
    r = lam.size
    scale = max(float(np.max(np.abs(lam[np.isfinite(lam)]), initial=0.0)), 1e-300)
    finite = np.isfinite(lam)
    cost = np.abs(np.where(finite, lam, 0)[:, None] - np.conj(np.where(finite, lam, 0))[None, :])
    cost[~finite, :] = np.inf
    cost[:, ~finite] = np.inf
    cost[np.ix_(~finite, ~finite)] = 0.0
    from scipy.optimize import linear_sum_assignment  # lazy: scipy.optimize is slow to import

    i, j = linear_sum_assignment(cost)
    partner = np.empty(r, int)
    partner[i] = j
    if r and np.max(cost[i, j]) > atol * scale:
        return None
    is_real = (np.abs(lam.imag) <= atol * scale) | ~finite
    reps = [k for k in range(r) if is_real[k] or lam[k].imag > 0]
    ncomplex = sum(1 for k in reps if not is_real[k])
    if len(reps) + ncomplex != r:
        return None
    return reps, partner


def modal_realisation(rom: LQOSystem, real: bool) -> tuple[Realisation, np.ndarray] | None:
    r"""Modal realisation of a ROM for the IRKA step, with unstable poles mirrored.

    Returns ``(realisation, poles)`` where ``poles`` are the (mirrored) poles used, or None if Â is
    (numerically) defective or a real ROM does not have exact conjugate pairs.

    Complex ROMs: :math:`\mathrm{diag}(\hat\lambda), X_r^{-1}\hat B, \hat C X_r, X_r^H\hat M_jX_r`.
    Real ROMs: the real block form with :math:`T_r = [\ldots, \mathrm{Re}\,x_k, \mathrm{Im}\,x_k,
    \ldots]` (one eigenvector per pair), :math:`\hat A T_r = T_r\,\mathrm{blkdiag}([[α, β], [-β, α]])`.
    """
    disc = rom.is_discrete
    lam, Xr = np.linalg.eig(rom.A)
    if not np.all(np.isfinite(lam)):
        return None
    if real:
        rep = _representatives(lam)
        if rep is None:
            return None
        reps, _ = rep
        cols = []
        for k in reps:
            if lam[k].imag == 0:
                cols.append(Xr[:, k].real)
            else:
                cols += [Xr[:, k].real, Xr[:, k].imag]
        Tr = np.column_stack(cols)
        if np.linalg.cond(Tr) > _MODAL_COND_MAX:
            return None
        used = _mirror(lam[reps], disc)
        used = np.where(lam[reps].imag == 0, used.real, used)
        S, _ = _real_blocks(used)
        B = np.linalg.solve(Tr, rom.B)
        C = rom.C @ Tr
        M = None if rom.M is None else np.stack([Tr.T @ Mj @ Tr for Mj in rom.M])
        poles = np.concatenate([used[[k]] if used[k].imag == 0 else [used[k], np.conj(used[k])]
                                for k in range(len(used))])
        fb = Factor(T=S, U=np.eye(S.shape[0]))
    else:
        if np.linalg.cond(Xr) > _MODAL_COND_MAX:
            return None
        used = _mirror(lam, disc)
        B = np.linalg.solve(Xr, rom.B)
        C = rom.C @ Xr
        M = None if rom.M is None else np.stack([Xr.conj().T @ Mj @ Xr for Mj in rom.M])
        poles = used
        fb = Factor(lam=used)
    stable = is_stable_poles(lam, disc)
    return Realisation(fb, B, C, M, poles, stable), poles


def _next_realisation(rom: LQOSystem, real: bool):
    """Realisation for the next step and the (mirrored) poles that define its shifts.

    Stable ROMs: Schur form of Â (the shifted solves of all r shifts as one triangular Sylvester
    solve; no eigenvector matrix, which becomes ill-conditioned for larger r). ROMs with unstable
    poles: modal form with those poles mirrored (falls back to the Schur form if Â is defective).
    """
    rz = realisation_of(rom)
    if rz.stable:
        return rz, rz.poles
    mod = modal_realisation(rom, real)
    if mod is None:
        rz = realisation_of(rom)
        return rz, rz.poles
    return mod


def _shift_realisation(eng: _TwoSided, sigma, b, c) -> tuple[Realisation, np.ndarray]:
    """Realisation of the interpolation data (σ, b, c) (no quadratic tangents) for the first step."""
    disc, real = eng.disc, eng.real
    lam = _poles_from_shifts(sigma, disc)
    Bm = np.conj(b)  # row k = b_k^H, so that column k of B Bm^H is B b_k
    Cm = c.T  # column k = c_k
    if not real:
        return Realisation(Factor(lam=lam), Bm, Cm, None, lam, False), lam
    reps, _ = _representatives(sigma, atol=1e-10)
    lam_r = lam[reps]
    lam_r = np.where(np.abs(lam_r.imag) == 0, lam_r.real, lam_r)
    S, blocks = _real_blocks(lam_r)
    rr = S.shape[0]
    Br = np.zeros((rr, b.shape[1]))
    Cr = np.zeros((c.shape[1], rr))
    for k, (i, size) in zip(reps, blocks):
        if size == 1:
            Br[i] = b[k].real
            Cr[:, i] = c[k].real
        else:  # K = [[1, 1], [i, -i]] maps the complex pair to the real block (see module notes)
            Br[i], Br[i + 1] = 2 * b[k].real, 2 * b[k].imag
            Cr[:, i], Cr[:, i + 1] = c[k].real, c[k].imag
    return Realisation(Factor(T=S, U=np.eye(rr)), Br, Cr, None, lam, False), lam


def _check_shifts(eng: _TwoSided, shifts, directions, r: int):
    disc, real = eng.disc, eng.real
    s = eng.sys
    sigma = np.asarray(shifts, dtype=complex).ravel()
    if sigma.size != r:
        raise ShapeError(f"shifts must have r = {r} entries, got {sigma.size}")
    if np.any(np.isnan(sigma)):
        raise InvalidArgumentError("shifts contain NaN")
    if disc:
        if np.any(np.abs(sigma) <= 1):
            raise InvalidArgumentError("discrete-time IRKA shifts must lie outside the closed unit disc "
                             "(they are mirror images 1/conj(lam) of stable reduced poles; "
                             "inf stands for a reduced pole at 0)")
    else:
        if np.any(~np.isfinite(sigma)) or np.any(sigma.real <= 0):
            raise InvalidArgumentError("continuous-time IRKA shifts must be finite with positive real part "
                             "(mirror images -conj(lam) of stable reduced poles)")
    if directions is None:
        b, c = _default_directions(r, s.m, s.p)
    else:
        try:
            b, c = directions
        except (TypeError, ValueError) as exc:
            raise ShapeError("directions must be a pair (b, c) of arrays (r, m) and (r, p)") from exc
        b = np.asarray(b, dtype=complex).reshape(r, -1) if np.ndim(b) < 2 else np.asarray(b, complex)
        c = np.asarray(c, dtype=complex).reshape(r, -1) if np.ndim(c) < 2 else np.asarray(c, complex)
        if b.shape != (r, s.m) or c.shape != (r, s.p):
            raise ShapeError(f"directions must have shapes ({r}, {s.m}) and ({r}, {s.p}), got "
                             f"{b.shape} and {c.shape}")
        if not (np.all(np.isfinite(b)) and np.all(np.isfinite(c))):
            raise InvalidArgumentError("directions contain NaN or inf")
    if real:
        rep = _representatives(sigma, atol=1e-10)
        if rep is None:
            raise InvalidArgumentError("a real system needs shifts closed under complex conjugation")
        reps, partner = rep
        for k in range(r):
            j = partner[k]
            bk, ck = b[k], c[k]
            if sigma[k].imag == 0 or j == k:
                if np.any(np.abs(bk.imag) > 1e-10 * max(np.max(np.abs(bk)), 1)) or np.any(
                        np.abs(ck.imag) > 1e-10 * max(np.max(np.abs(ck)), 1)):
                    raise InvalidArgumentError("a real system needs real tangential directions at real shifts")
            elif not (np.allclose(b[j], np.conj(bk), rtol=1e-10, atol=0)
                      and np.allclose(c[j], np.conj(ck), rtol=1e-10, atol=0)):
                raise InvalidArgumentError("a real system needs conjugate directions at conjugate shifts")
        sigma = sigma.copy()
        sigma[np.abs(sigma.imag) <= 1e-10 * np.abs(sigma)] = sigma[
            np.abs(sigma.imag) <= 1e-10 * np.abs(sigma)].real
    return sigma, b, c


def _default_directions(r, m, p):
    rng = np.random.default_rng(0)
    b = np.ones((r, 1)) if m == 1 else rng.standard_normal((r, m))
    c = np.ones((r, 1)) if p == 1 else rng.standard_normal((r, p))
    return b.astype(complex), c.astype(complex)


def _logspace_shifts(eng: _TwoSided, r: int) -> np.ndarray:
    r"""Distinct real shifts spread logarithmically over the decay rates of A's modes.

    Continuous time: :math:`\sigma_k` log-spaced between :math:`\min|\lambda(A)|` and
    :math:`\max|\lambda(A)|`. Discrete time: the same for the rates :math:`-\log|\lambda|`
    (the continuous-time decay rates times dt; moduli below 1e-3 count as 1e-3), so the reduced
    poles :math:`e^{-\rho_k}` are distinct even when many eigenvalues of A are (numerically) 0 —
    repeated shifts would make the first projection singular. Uses the cached Schur factor.
    """
    from ..gramians import _schur_eigvals

    mag = np.abs(_schur_eigvals(eng.fa))
    if eng.disc:
        rate = -np.log(np.clip(mag, 1e-3, 1 - 1e-12))
        lo = max(float(np.min(rate)), 1e-12)
        hi = max(float(np.max(rate)), 2 * lo)
        return np.exp(np.logspace(np.log10(lo), np.log10(hi), r))  # = 1 / pole
    lo = max(float(np.min(mag)), 1e-12)
    hi = max(float(np.max(mag)), 2 * lo)
    return np.logspace(np.log10(lo), np.log10(hi), r)


def _basis(X: np.ndarray, name: str) -> np.ndarray:
    """Orthonormal basis of range(X); ShapeError if the columns are linearly dependent to rounding
    (repeated shifts and directions give identical columns, and QR would fill in arbitrary ones)."""
    Q, R = sla.qr(X, mode="economic", check_finite=False)
    d = np.abs(np.diag(R))
    if d.size and not np.min(d) > X.shape[0] * _EPS * np.max(d):
        raise ShapeError(f"the shifted solves spanning {name} are linearly dependent "
                         f"(rank-deficient basis: min/max |R_kk| = {np.min(d) / np.max(d):.1e})")
    return Q


@dataclass
class _Start:
    """Where an IRKA run starts: a realisation, its poles, and the ROM it came from (if any)."""

    rz: Realisation
    used: np.ndarray
    rom: LQOSystem | None
    label: str


@dataclass
class _Run:
    """Iterates of one IRKA run (``roms[k]`` has relative error ``errors[k]``)."""

    roms: list
    errors: list
    changes: list
    converged: bool
    iterations: int
    breakdown: str | None
    mirrored: int

    def failure(self) -> str | None:
        """Why this run needs a restart: a breakdown, or no stable iterate at all."""
        if self.breakdown is not None:
            return f"the projection broke down ({self.breakdown})"
        if not self.has_stable():
            return "no iterate was stable"
        return None

    def has_stable(self) -> bool:
        return bool(np.any(np.isfinite(self.errors)))


def _resolve_init(eng: _TwoSided, init, shifts, lqo: bool):
    if shifts is not None:
        return "shifts"
    if isinstance(init, str) and init == "auto":
        if lqo:
            return "bt"
        return "dominant" if (eng.sys.is_diagonal or eng.realified) else "logspace"
    return init


def _start(eng: _TwoSided, sys: LQOSystem, r: int, init, shifts, directions) -> _Start:
    """Initial realisation from shifts (user or logspace) or from an initial ROM."""
    if isinstance(init, str) and init in ("shifts", "logspace"):
        if init == "logspace":
            shifts = _logspace_shifts(eng, r)
        sigma, b, c = _check_shifts(eng, shifts, directions, r)
        rz, used = _shift_realisation(eng, sigma, b, c)
        return _Start(rz, used, None, init)
    if isinstance(init, str) and init == "dominant":
        rom, label = dominant_rom(sys, r), "dominant"
    else:
        rom, label = initial_rom(sys, r, init)
    if not rom.is_stable():
        raise UnstableSystemError("the initial reduced model of IRKA must be asymptotically stable")
    rz, used = _next_realisation(rom, eng.real)
    return _Start(rz, used, rom, label)


def _attempt(eng: _TwoSided, sys: LQOSystem, r: int, init, shifts, directions, tol, maxit):
    """Start and iterate; returns ``(start, run, failure reason or None)``.

    An unstable built-in start (BT or dominant modes that lost stability to rounding) is a failure
    to restart from, not an error of the (stable) input; an unstable user ROM raises.
    """
    try:
        start = _start(eng, sys, r, init, shifts, directions)
    except UnstableSystemError as exc:
        if not isinstance(init, str):
            raise
        return None, None, f"the {init!r} start is unstable ({exc})"
    run = _iterate(eng, start, tol, maxit)
    return start, run, run.failure()


def _iterate(eng: _TwoSided, start: _Start, tol: float, maxit: int) -> _Run:
    """The IRKA fixed-point iteration: shifted solves, projection, new shifts, until tol or maxit.

    Every ROM whose shifted solves were computed is recorded with its relative error (``inf`` if
    unstable); a breakdown (non-finite solves, W^H V singular) stops the run and is recorded.
    """
    run = _Run([], [], [], False, 0, None, 0)
    rz, used, rom = start.rz, start.used, start.rom
    while True:
        st = eng.step(rz)
        if rom is not None:
            run.roms.append(rom)
            run.errors.append(eng.rel_error(st.tail) if rz.stable else float("inf"))
        if run.converged or run.iterations >= maxit:
            return run
        if not (np.all(np.isfinite(st.X)) and np.all(np.isfinite(st.Y))):
            run.breakdown = "non-finite shifted solves"
            return run
        try:
            new = eng.project(_basis(st.X, "V"), _basis(st.Y, "W"))
        except (ShapeError, np.linalg.LinAlgError) as exc:
            run.breakdown = str(exc)
            return run
        run.iterations += 1
        new_rz, new_used = _next_realisation(new, eng.real)
        run.mirrored += int(not new_rz.stable)
        run.changes.append(pole_change(new_used, used, eng.disc))
        rom, rz, used = new, new_rz, new_used
        run.converged = run.changes[-1] < tol


def irka(sys: LQOSystem, r: int, *, shifts=None, directions=None, tol: float = 1e-6,
         maxit: int = 100, init="auto") -> ReductionResult:
    r"""IRKA / LQO-IRKA: h2-optimal reduction by iterated (tangential) Hermite interpolation.

    Parameters
    ----------
    sys : LQOSystem
        Asymptotically stable full model (order n): LTI or LQO, continuous (dt = 0) or discrete
        (either convention), real, complex, or conjugate-pair (reduced through its real realisation).
    r : int
        Reduced order, ``1 <= r < n``.
    shifts : array_like, shape (r,), optional
        Initial interpolation points σ_k. Continuous: Re σ_k > 0; discrete: |σ_k| > 1 (``inf``
        allowed: a reduced pole at 0). Real systems need conjugation-closed shifts. Overrides
        ``init``.
    directions : tuple (b, c), optional
        Initial right (r, m) and left (r, p) tangential directions for ``shifts`` (real systems:
        conjugate directions at conjugate shifts). Default: ones for m = 1 / p = 1, else seeded
        standard normal. Quadratic (LQO) tangents start at zero.
    tol : float, default 1e-6
        Stop when the relative change of the shifts between two iterations, after optimal matching,
        is below ``tol`` (discrete time: the absolute change of the reduced poles, which lie in the
        unit disc). The first-order optimality residuals are then O(tol).
    maxit : int, default 100
        Maximum number of iterations.
    init : {"auto", "bt", "dominant", "logspace"} or LQOSystem
        Initialisation when ``shifts`` is None. ``"bt"``: (LQO) balanced truncation (O(n^3));
        ``"dominant"``: the r modes with the largest h2 contribution (eigendecomposition of A, free
        for diagonal systems); ``"logspace"``: real shifts spread logarithmically over the spectrum
        of A (cheap); an LQOSystem: an initial ROM of order r. ``"auto"``: ``"bt"`` for LQO systems,
        ``"dominant"`` for diagonal (and conjugate-pair) LTI systems, ``"logspace"`` otherwise.

    Returns
    -------
    ReductionResult
        ``method``: ``"irka"`` or ``"lqo-irka"``; ``shifts``: final interpolation points (mirror
        images of the ROM poles); ``history``: relative h2 error of every iterate (a ROM built from
        initial shifts counts as iteration 1; an initial ROM is iteration 0); ``info``:
        ``"shift_change"`` per iteration, ``"init"``, ``"best_iteration"``, ``"mirrored"`` (number
        of iterations in which unstable ROM poles were mirrored); after a restart also
        ``"restarted_from"`` (``"bt"`` or ``"logspace"``) and ``"restart_reason"``.

    Warns
    -----
    ConvergenceWarning
        If ``tol`` is not met in ``maxit`` iterations, the final ROM is unstable, or the projection
        breaks down; ``converged`` is then False and the best stable iterate (by h2 error) is
        returned.

    Raises
    ------
    OrderError
        If ``r`` is invalid or an initial ROM has the wrong order.
    UnstableSystemError
        If ``sys`` or a user-supplied initial ROM is unstable.
    ProjectionBreakdownError
        If the projection breaks down (or no iterate is stable) and the restart from balanced
        truncation fails as well.
    ValueError, ShapeError
        For shifts outside the admissible region, shifts/directions that are not conjugation-closed
        for a real system, or arrays of the wrong shape.

    Notes
    -----
    **Unstable ROMs.** If an iterate has unstable poles, their shifts are reflected into the
    admissible region (continuous: :math:`|\mathrm{Re}\,\hat\lambda| + i\,\mathrm{Im}\,\hat\lambda`;
    discrete: :math:`\hat\lambda` itself instead of :math:`1/\bar{\hat\lambda}`), as in pyMOR's
    ``force_sigma_in_rhp``; the unstable iterate has h2 error ``inf`` and is never returned.
    If Â is (numerically) defective, no pole can be mirrored; the Schur form is used as is.
    **Restart.** If a run from shifts, ``"dominant"``, ``"logspace"`` or a user ROM breaks down
    (:math:`W^HV` numerically singular, linearly dependent shifted solves, non-finite solves) or
    produces no stable iterate, IRKA restarts once from balanced truncation, which is stable for a
    stable system, and records this in ``info``; it therefore never fails where ``init="bt"``
    succeeds. A BT start that is itself unstable (rounding) restarts from ``"logspace"`` shifts; a
    BT start that breaks down later returns its best stable iterate (BT at worst).
    **Relation to TSIA.** In exact arithmetic IRKA and :func:`~mor_lqo.tsia` produce the same
    iterates from the same ROM (see the module notes); IRKA adds the shift parametrisation (initial
    shifts and directions, cheap initialisations), mirroring of unstable poles and the shift-based
    stopping rule.
    """
    check_system(sys)
    r = check_order(r, sys.order)
    _check_tol(tol, maxit)
    eng = _TwoSided(sys)
    lqo = eng.sys.has_quadratic
    method = "lqo-irka" if lqo else "irka"
    init = _resolve_init(eng, init, shifts, lqo)
    start, run, reason = _attempt(eng, sys, r, init, shifts, directions, tol, maxit)
    label = start.label if start is not None else init
    info = {"init": label}
    if reason is not None and (label != "bt" or run is None or not run.has_stable()):
        # one restart: from balanced truncation (stable for a stable system), or from logspace
        # shifts when BT itself was the start that failed (a stable BT start is kept instead)
        fallback = "logspace" if label == "bt" else "bt"
        info.update(restarted_from=fallback, restart_reason=reason)
        start, run, again = _attempt(eng, sys, r, fallback, None, None, tol, maxit)
        if run is None or not run.roms:
            raise ProjectionBreakdownError(f"{method}: {reason}, and the restart from {fallback} "
                                           f"failed ({again})")
    info["mirrored"] = run.mirrored

    def shifts_of(final_rom):
        return shifts_from_poles(np.linalg.eigvals(final_rom.A), eng.disc)

    return _finish(eng, run.roms, run.errors, run.changes, run.converged, run.iterations,
                   run.breakdown, method, info, maxit, tol, shifts_of=shifts_of,
                   first_is_rom=start.rom is not None, change_key="shift_change")
