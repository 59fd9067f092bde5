r"""IRKA and LQO-IRKA for sparse systems: one sparse factorisation per interpolation point, reused.

Iteration (Gugercin–Antoulas–Beattie 2008, tangential form; LQO: the quadratic tangents of the dense
LQO-IRKA)::

    A^ = S diag(lam) S^{-1},  sigma_i = -conj(lam_i) (continuous) or 1/conj(lam_i) (discrete),
    b_i = (S^{-1} B^)_i,  c_i = (C^ S)_{:,i},  q^(j) = S^H M^_j S
    v_i = (sigma_i E - A)^{-1} B conj(b_i),
    w_i = (sigma_i E - A)^{-H} (C^H c_i + 2 sum_{k,j} q^(j)_{ki} M_j v_k)
    V = orth[v_i],  W = orth[w_i],  ROM = (W^H E V)^{-1} (W^H A V, W^H B),  C V,  V^H M_j V

(the v_i with the scaling of TSIA's cross Gramian in modal coordinates, since they enter the quadratic
term; see :func:`_bases`). For real systems the conjugate pairs make -conj(lam) and -lam the same set;
complex systems need the conjugate.

Discrete time (:math:`Ex_k = Ax_{k-1} + Bu_k`, :math:`y_k = Cx_k`): the transfer function is
:math:`zF(z)` with :math:`F(z) = C(zE - A)^{-1}B`, and :math:`|zF(z)| = |F(z)|` on the unit circle, so
its h2-optimal ROMs are those of F, whose first-order conditions are tangential Hermite interpolation at
the reflections :math:`1/\bar{\hat\lambda}_i` of the reduced poles; the projection above interpolates
F (and so zF) there, and the projected ROM keeps the convention.

Feed-through: the ROM keeps it (:math:`\hat D = D`, as the dense :func:`mor_lqo.irka`), so D cancels in
the error (in discrete time it also cancels in the lag-0 term :math:`CE^{-1}B + D - \hat C\hat B - \hat D`)
and the iteration is that of the strictly proper part, in continuous time too (where the h2 norm of a
system with D != 0 is infinite, the error stays finite).

Both solves of a shift use the same sparse LU of :math:`A - \sigma_iE` (the adjoint one with
``trans='H'``); for real systems a conjugate pair of shifts costs one complex factorisation and
contributes the real and imaginary parts of its solves, so V, W and the ROM stay real.

Starts: ``"surrogate"`` (default) runs the dense :func:`mor_lqo.irka` on a high-order low-rank BT
surrogate (square-root BT from the LR-ADI factors, of the order at which the Hankel singular values
fall below 1e-12 relative, kept within [4r, 10r]) and then iterates on the sparse model from the
surrogate's converged shifts, which typically needs 1–4 sparse iterations; ``"logspace"``: real
shifts spread over the range of Ritz values; an array of shifts (Re > 0, conjugation-closed for real
systems); or a dense ROM.

The sparse iteration mixes the projection bases of the last steps (Anderson, :mod:`mor_lqo.sparse.accel`;
``accelerate=0``: plain iteration) and stops when one plain step changes the ROM by less than ``tol`` in the relative h2
distance.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._validation import check_order
from ..errors import ConvergenceWarning, InvalidArgumentError, ProjectionBreakdownError, SamplingTimeError
from ..reduction.irka import shifts_from_poles
from ..reduction.result import ReductionResult
from ..systems import LQOSystem
from .accel import _stable, iterate, step_distance
from .balanced import balanced_truncation, orthonormal_basis
from .gramians import DEFAULT_TOL
from .lradi import _initial_shifts
from .norms import _check, _dense, h2_error, h2_norm, use_dense
from .system import SparseLQOSystem, as_sparse_system

__all__ = ["irka"]

_SURROGATE_RTOL = 1e-12  # surrogate order: Hankel singular values above this (relative), within [4r, 10r]


def _bases(sys: SparseLQOSystem, rom: LQOSystem):
    r"""(LQO-)IRKA bases: the columns of TSIA's cross Gramians in the ROM's modal coordinates.

    With :math:`\hat A = S\Lambda S^{-1}`, :math:`b = S^{-1}\hat B`, :math:`c = \hat C S` and
    :math:`q^{(j)} = S^H\hat M_j S`, the columns of :math:`X' = XS^{-H}` and :math:`Y' = YS` are

    * continuous: :math:`(A + \bar\lambda_k E)x'_k = -B\bar b_k`,
      :math:`(A + \bar\lambda_k E)^H y'_k = C^H c_k + 2\sum_{i,j} q^{(j)}_{ik} M_j x'_i`;
    * discrete: :math:`(\bar\lambda_k A - E)x'_k = -B\bar b_k`, :math:`(\lambda_k A^H - E^H)y'_k =` the
      same right-hand side;

    i.e. shifted solves at the reflections :math:`-\bar\lambda_k` (:math:`1/\bar\lambda_k`) of the
    reduced poles, both sides with the same factorisation. The x'_i enter the quadratic term with their
    true scaling; the y'_k only through their span.
    """
    lam, S = np.linalg.eig(rom.A)
    Sinv = np.linalg.inv(S)
    bt, ct = Sinv @ rom.B, rom.C @ S  # (r, m), (p, r)
    disc = sys.is_discrete
    if disc and np.any(lam == 0):
        raise ProjectionBreakdownError("sparse IRKA: a reduced pole at 0 (interpolation point at infinity)")
    sigma = 1.0 / np.conj(lam) if disc else -np.conj(lam)  # interpolation points
    shift = -sigma  # solver.solve(p, .) solves (A + pE) x = .
    real = not sys.is_complex and not rom.is_complex
    solver = sys.solver()
    B, CH = np.asarray(sys.B), np.asarray(sys.C).conj().T
    reps = [i for i in range(lam.size) if not (real and lam[i].imag < 0)]  # one of each conjugate pair
    X = np.zeros((sys.n, lam.size), complex)
    for i in reps:
        x = -solver.solve(shift[i], B @ np.conj(bt[i])[:, None])[:, 0]
        X[:, i] = x * sigma[i] if disc else x  # discrete: (conj(lam) A - E)^{-1} = sigma (A - sigma E)^{-1}
        if real and lam[i].imag > 0:
            X[:, np.argmin(np.abs(lam - np.conj(lam[i])))] = np.conj(X[:, i])
    # quadratic tangents (p, r, r); a start from shifts has none yet (they start at zero)
    Q = None if sys.M is None or rom.M is None else np.stack([S.conj().T @ Mj @ S for Mj in rom.M])
    V, W = [], []
    for k in reps:
        rhs = CH @ ct[:, k]
        if Q is not None:
            rhs = rhs + 2 * sum(Mj @ (X @ Q[j][:, k]) for j, Mj in enumerate(sys.M))
        w = solver.solve(np.conj(shift[k]), rhs[:, None], adjoint=True)[:, 0]
        if real and lam[k].imag > 0:
            V += [X[:, k].real, X[:, k].imag]
            W += [w.real, w.imag]
        elif real:
            V.append(X[:, k].real)
            W.append(w.real)
        else:
            V.append(X[:, k])
            W.append(w)
    V, W = np.column_stack(V), np.column_stack(W)
    if V.shape[1] != rom.order:
        raise ProjectionBreakdownError("sparse IRKA: the reduced poles are not conjugation-closed")
    return orthonormal_basis(V, "sparse IRKA: the V basis"), orthonormal_basis(W, "sparse IRKA: the W basis"), sigma


def _mirrored_shifts(poles: np.ndarray, disc: bool) -> np.ndarray:
    """Interpolation points of the ROM poles, unstable poles mirrored into the admissible region
    (continuous: Re σ > 0; discrete: an unstable pole itself, |σ| > 1)."""
    if disc:
        return np.where(np.abs(poles) < 1, shifts_from_poles(poles, True), poles)
    new = shifts_from_poles(poles, False)
    return np.where(new.real > 0, new, -np.conj(new))


def stable_surrogate(sys: SparseLQOSystem, r: int, tol: float, maxiter: int):
    """High-order low-rank (LQO-)BT surrogate and the order-r BT ROM.

    The order is where the computed Hankel singular values fall below :data:`_SURROGATE_RTOL`, kept
    within [4r, 10r] and below the numerical rank; trailing singular values are limited by the LR-ADI
    accuracy and can make a very high-order BT unstable, so the order is reduced (x 3/4) until the
    surrogate is stable. Returns ``(None, bt_rom)`` if no order above r gives a stable surrogate.
    """
    bt = balanced_truncation(sys, r, method="lowrank", tol=tol, maxiter=maxiter, compute_error=False)
    k = int(np.sum(bt.hsv > bt.hsv.size * np.finfo(float).eps * bt.hsv[0]))  # numerical rank (BT's floor)
    k_acc = int(np.sum(bt.hsv > _SURROGATE_RTOL * bt.hsv[0]))
    rs = min(max(4 * r, k_acc + 1), 10 * r, k, sys.n - 1)
    while rs > r:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sur = balanced_truncation(sys, rs, method="lowrank", tol=tol, maxiter=maxiter, compute_error=False).rom
        if _stable(np.linalg.eigvals(sur.A), sys.is_discrete):
            return sur, bt.rom
        rs = (3 * rs) // 4
    return None, bt.rom


def _initial_rom(sys: SparseLQOSystem, r: int, init, tol: float, maxiter: int) -> tuple[LQOSystem, str]:
    from ..reduction.irka import irka as dense_irka

    if isinstance(init, LQOSystem):
        if init.order != r:
            raise InvalidArgumentError(f"the initial ROM has order {init.order}, expected {r}")
        return init, "rom"
    if isinstance(init, str) and init == "surrogate":
        sur, bt_rom = stable_surrogate(sys, r, tol, maxiter)
        if sur is None:
            return bt_rom, "bt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return dense_irka(sur, r, tol=1e-8, maxit=200, init="bt").rom, "surrogate"
    if isinstance(init, str) and init == "logspace":
        if sys.is_discrete:
            raise InvalidArgumentError("init='logspace' is for continuous time; use 'surrogate', shifts or a ROM")
        ritz, _ = _initial_shifts(sys, np.asarray(sys.B)[:, :4], False, 6, npow=4, cap=48)
        mags = np.abs(ritz) if ritz.size else np.array([1.0])
        sig = np.logspace(np.log10(mags.min()), np.log10(mags.max()), r)
    else:
        sig = np.asarray(init, dtype=complex).ravel()
        admissible = np.abs(sig) > 1 if sys.is_discrete else sig.real > 0
        if sig.size != r or not np.all(admissible) or not np.all(np.isfinite(sig)):
            raise InvalidArgumentError("init must be 'surrogate', 'logspace', a dense ROM of order r, or r "
                                       "finite shifts with positive real parts (discrete time: outside the "
                                       "closed unit disc)")
        if not sys.is_complex and not np.allclose(np.sort_complex(sig), np.sort_complex(sig.conj())):
            raise InvalidArgumentError("shifts of a real system must be conjugation-closed")
    lam = 1.0 / np.conj(sig) if sys.is_discrete else -np.asarray(sig, dtype=complex)
    rng = np.random.default_rng(0)
    Bt = np.ones((r, sys.m)) if sys.m == 1 else rng.standard_normal((r, sys.m))
    Ct = np.ones((sys.p, r)) if sys.p == 1 else rng.standard_normal((sys.p, r))
    if not sys.is_complex:
        from ..reduction.irka import _real_blocks

        A0, _ = _real_blocks(lam)
        return LQOSystem(A0, Bt, Ct, D=sys.D, dt=sys.dt), "logspace" if isinstance(init, str) else "shifts"
    return LQOSystem(np.diag(lam), Bt.astype(complex), Ct.astype(complex), D=sys.D, dt=sys.dt), "shifts"


def irka(sys, r: int, *, init="surrogate", tol: float = 1e-6, maxit: int = 50, method: str = "auto",
         lr_tol: float = DEFAULT_TOL, maxiter: int = 500, compute_error: bool = True,
         accelerate: int = 5) -> ReductionResult:
    r"""IRKA and LQO-IRKA for sparse systems with sparse shifted solves (:func:`_bases`).

    Parameters
    ----------
    sys : SparseLQOSystem or LQOSystem
        Asymptotically stable LTI or LQO system, continuous or discrete time, real or complex.
    r : int
        Reduced order.
    init : {"surrogate", "logspace"}, array of r shifts, or LQOSystem
        Start (module docstring).
    tol : float
        Stop when one plain step changes the ROM by less than ``tol`` in the relative h2 distance
        (:func:`~mor_lqo.sparse.accel.step_distance`) and its ROM is stable.
    maxit : int
        Maximal number of sparse iterations (each costs one factorisation per shift or conjugate pair).
    method : {"auto", "dense", "lowrank"}
        ``"auto"``: dense :func:`mor_lqo.irka` for small systems (:func:`~mor_lqo.sparse.norms.use_dense`).
    lr_tol, maxiter
        LR-ADI tolerance / step limit (surrogate start and h2 error).
    compute_error : bool
        Compute the exact h2 error of the final ROM (:func:`mor_lqo.sparse.h2_error`).
    accelerate : int
        Anderson depth of the mixing of the projection bases (:mod:`mor_lqo.sparse.accel`); 0: plain
        iteration. The stopping test is always taken on one plain step, whose ROM is returned.

    Returns
    -------
    ReductionResult
        ``method="irka"`` (``"lqo-irka"`` with a quadratic output), ``shifts`` (final interpolation
        points), ``history``: relative h2 step distance per
        iteration, ``info``: ``init``, ``factorizations``, ``time_init``, ``time_iterations``,
        ``anderson_restarts``.

    Warns
    -----
    ConvergenceWarning
        ``tol`` not met in ``maxit`` iterations (``converged=False``); with a surrogate / BT start the
        (stable) start ROM is then returned, else the last iterate (its h2 error is computed, so an
        unstable one raises :class:`~mor_lqo.errors.UnstableSystemError` when ``compute_error``).
    """
    sys = _check(sys)
    r = check_order(r, sys.n if isinstance(sys, SparseLQOSystem) else sys.order)
    if use_dense(sys, method):
        from ..reduction.irka import irka as dense_irka

        return dense_irka(_dense(sys), r, tol=tol, maxit=maxit)
    sys = as_sparse_system(sys)
    disc = sys.is_discrete
    if isinstance(init, LQOSystem) and init.dt != sys.dt:
        raise SamplingTimeError(f"the initial ROM has dt = {init.dt}, the system dt = {sys.dt}")
    t0 = time.perf_counter()
    rom, label = _initial_rom(sys, r, init, lr_tol, maxiter)
    t1 = time.perf_counter()
    start = rom

    rom, changes, converged, restarts = iterate(sys, rom, lambda x: _bases(sys, x)[:2], step_distance, tol=tol,
                                                maxit=maxit, depth=accelerate)
    sigma = _mirrored_shifts(np.linalg.eigvals(rom.A), disc)
    t2 = time.perf_counter()
    if not converged:
        fallback = label in ("surrogate", "bt") and _stable(np.linalg.eigvals(start.A), disc)
        warnings.warn(f"sparse IRKA: relative h2 step {changes[-1]:.3g} > tol {tol:.3g} after {maxit} iterations"
                      + ("; returning the (stable) start ROM from the surrogate" if fallback else ""),
                      ConvergenceWarning, stacklevel=2)
        if fallback:
            rom, sigma = start, shifts_from_poles(np.linalg.eigvals(start.A), disc)
    err = h2_error(sys, rom, method="lowrank", maxiter=maxiter) if compute_error else float("nan")
    info = {"init": label, "factorizations": sys.solver().n_factorizations, "time_init": t1 - t0,
            "time_iterations": t2 - t1, "anderson_restarts": restarts}
    nrm = h2_norm(sys, method="lowrank", tol=lr_tol, maxiter=maxiter)
    method = "irka" if sys.M is None else "lqo-irka"
    return ReductionResult(rom=rom, h2_error=err, h2_norm=nrm, method=method, converged=converged,
                           iterations=len(changes), history=tuple(changes), shifts=sigma, info=info)
