"""Single-system gradient reducer :func:`h2_gradient`: starts, L-BFGS-B runs, result and its checks.

Every initial model (:mod:`.starts`) is clipped to the margin, evaluated and optimised; the best run
is kept, never worse than the best initial model, and its first-order stationarity is measured with
the core gradient of :mod:`mor_lqo.gradients` (docs/theory.md §4, §5), independently of the closed
forms the optimiser used.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ...errors import ConvergenceWarning, UnstableSystemError
from ...gradients import h2_error_grad
from ...norms import h2_error, h2_norm
from ...systems import LQOSystem
from ..result import ReductionResult
from ._checks import _check_maxiter, _positive
from ._threads import _blas_threads
from .layout import _LIFT, _fold, _Layout
from .lbfgs import _lbfgs, _proj_grad_norm
from .modes import _clip_to_margin
from .objective import H2Objective, _without_d
from .starts import _init_candidates


def h2_gradient(sys: LQOSystem, r: int, *, init="auto", weight: float = 1.0, tol: float = 1e-9,
                maxiter: int = 500, margin: float = 0.0, quadratic: str = "hermitian",
                project_c: bool = True, scale: float | None = None, min_ratio: float = 1e-2,
                multistart: bool = True) -> ReductionResult:
    r"""Gradient-based h2-optimal reduction to a diagonal, stable reduced model.

    Minimises :math:`J = \|\Sigma - \hat\Sigma\|_{h2}^2` (continuous: :math:`\mathcal H_2`) over diagonal
    ROMs with the stability-guaranteeing parametrisation of :mod:`mor_lqo.reduction.gradient`, by L-BFGS-B on the
    real parameter vector of :class:`H2Objective` with analytic gradients.

    Parameters
    ----------
    sys : LQOSystem
        Stable full model: dense or diagonal, LTI or LQO, real, complex, or ``conjugate_pairs``.
    r : int
        Reduced real order, ``1 <= r < sys.order``; even for real-output full models.
    init : {"auto", "modal", "greedy", "bt"} or ReductionResult or LQOSystem
        Initial model. ``"modal"``: dominant modes (exact modal truncation, pairs ranked by their
        real-output h2 norm); ``"greedy"`` (diagonal LTI full models): modal truncation with the modes
        chosen one at a time by the projected error (:func:`.starts._greedy_select`); ``"bt"``: balanced
        truncation (:func:`mor_lqo.balanced_truncation`, or a local square-root BT when that is
        unavailable), diagonalised; ``"auto"``: all that apply (see ``multistart``). A given model
        of order r is diagonalised (real models into conjugate pairs; two real eigenvalues cannot form
        a pair and are merged approximately, ``info["init_exact"]`` is then False).
    weight : float, default 1.0
        Positive factor of the objective. It does not change the minimiser of a single block (the
        optimiser works on :math:`J/\|\Sigma\|^2`); ``info["objective"]`` is ``weight * J``.
    tol : float, default 1e-9
        Projected-gradient tolerance (infinity norm) for the normalised objective :math:`J/\|\Sigma\|^2`.
    maxiter : int, default 500
        Maximum number of L-BFGS iterations.
    margin : float, default 0.0
        Stability margin :math:`\delta`: every ROM pole satisfies :math:`|\hat\lambda| \le 1-\delta`
        (discrete) or :math:`\mathrm{Re}\,\hat\lambda \le -\delta` (continuous).
    quadratic : {"hermitian", "psd"}
        Reduced quadratic output: Hermitian :math:`\hat M_j` (default) or :math:`\hat U_j^H\hat U_j`.
    project_c : bool, default True
        Variable projection of :math:`\hat C` (see :mod:`mor_lqo.reduction.gradient`).
    scale : float, optional
        Output scale of the conjugate-pair ROM of a *real* full model (default 2.0).
    min_ratio : float, default 1e-2
        Conjugate pairs keep an angle (discrete) or :math:`|\mathrm{Im}\,\hat\lambda|` (continuous) of at
        least ``min_ratio`` times their decay rate :math:`e^\nu`. Without it, the optimum of a
        conjugate-pair ROM can lie on the boundary where a pair merges into a double real pole with
        :math:`|\hat c| \to \infty` (the layout cannot store two distinct real poles in one slot); the
        bound keeps :math:`\hat c` within about ``1/min_ratio`` of its natural size. 0 disables it.
        Complex ROMs are not affected.
    multistart : bool, default True
        Run L-BFGS from every initial model (``"auto"``: modal, greedy, BT) and keep the best result;
        False: only from the one with the lowest projected objective.

    Returns
    -------
    ReductionResult
        ``rom``: ``LQOSystem.conjugate_pairs`` (real-output full models; same scale) or complex
        ``LQOSystem.diagonal``, with :math:`\hat D = D`; ``h2_error`` recomputed by
        :func:`mor_lqo.h2_error` (independent of the objective's closed forms); ``method="h2"``;
        ``converged`` (L-BFGS-B success), ``iterations``, ``history`` (relative error per iteration).
        ``info``: ``init`` (the start that gave the result), ``best_init`` and ``init_error`` (the
        best initial model and its h2 error: the result is never worse), ``init_errors`` (every
        candidate; ``"<name>+diag"`` after diagonalisation when that changed it, ``"<name>+proj"`` at
        the optimiser's start: C^ projected, near-real pairs split), ``init_exact``, ``starts``,
        ``grad_norm`` (projected gradient of :math:`J/\|\Sigma\|^2` in the internal parameters),
        ``stationarity`` (core-gradient measure, see :func:`_stationarity`), ``objective``
        (``weight * J``), ``nfev``, ``message``, ``weight``, ``margin``, ``quadratic``, ``project_c``.

    Raises
    ------
    OrderError
        ``r < 1``, ``r >= order``, or odd ``r`` for real-output full models.
    UnstableSystemError
        Unstable full model.
    ValueError
        Invalid ``weight``, ``margin``, ``tol``, ``maxiter``, ``init`` or ``quadratic``.
    """
    obj = H2Objective(sys, r, weight=weight, margin=margin, quadratic=quadratic, project_c=project_c,
                      scale=scale, min_ratio=min_ratio)
    with _blas_threads(sys):
        return _h2_gradient(sys, obj, init, tol, maxiter, multistart)


def _h2_gradient(sys, obj, init, tol, maxiter, multistart) -> ReductionResult:
    tol = _positive(tol, "tol")
    _check_maxiter(maxiter)
    lay = obj.layout
    norm2 = obj.norm2
    scale_f = max(norm2, np.finfo(float).tiny)

    cands, notes = _init_candidates(sys, obj.r, init, obj)
    starts, init_errors = _prepare_starts(sys, obj, cands, notes)
    i_best0 = int(np.argmin([t[3] for t in starts]))
    _, name_i, rom0, err0, _, exact0 = starts[i_best0]  # the best initial model (the guarantee)

    bounds = obj.bounds
    name0, tr, res = _run_starts(obj, starts if multistart else starts[:1], bounds, scale_f, tol, maxiter)
    theta = tr.best_x
    rom = obj.unpack(theta)
    err = h2_error(sys, rom)
    reverted = False
    if err > err0:  # never worse than the initialisation (guards rounding in the last digits)
        rom, err, reverted = rom0, err0, True
    gnorm = _proj_grad_norm(theta, tr.best_g, bounds)
    if not reverted and not rom.is_stable():  # pragma: no cover - excluded by the parametrisation
        raise UnstableSystemError("internal error: the reduced model is unstable")
    converged = bool(res.success) or gnorm <= tol
    if not converged:
        warnings.warn(f"h2_gradient stopped before meeting tol={tol:g} ({res.message}); the best "
                      f"iterate is returned (projected gradient {gnorm:.3g})", ConvergenceWarning, stacklevel=3)
    info = dict(
        init=name0, best_init=name_i, init_error=err0, init_errors=init_errors, init_exact=exact0,
        starts=len(starts) if multistart else 1,
        grad_norm=gnorm, stationarity=_stationarity(sys, rom, lay, norm2),
        objective=obj.weight * tr.best_f * scale_f, h2_error_objective=math.sqrt(max(tr.best_f * scale_f, 0.0)),
        nfev=tr.nfev, message=str(res.message), weight=obj.weight, margin=lay.margin,
        quadratic=lay.quad, project_c=lay.project_c, reverted_to_init=reverted, parameters=lay.size,
    )
    hist = tuple(math.sqrt(max(f, 0.0)) for f in tr.history)
    # discrete time: the full model's own norm (with D); continuous time with D != 0 the norm is
    # infinite, and that of the strictly proper part (D cancels in the error) is reported instead
    full_norm = h2_norm(sys) if (sys.is_discrete or not np.any(sys.D)) else math.sqrt(norm2)
    return ReductionResult(rom=rom, h2_error=err, h2_norm=full_norm, method="h2", converged=converged,
                           iterations=int(res.nit), history=hist, info=info)


def _prepare_starts(sys, obj: H2Objective, cands, notes):
    """Clip the initial models to the margin and evaluate them; sorted by their projected objective.

    Returns ``starts``, tuples ``(J/w at the optimiser's start, name, rom, h2 error, modes, exact)``,
    and ``init_errors`` (``info["init_errors"]`` of :func:`h2_gradient`).
    """
    lay, norm2 = obj.layout, obj.norm2
    init_errors: dict = dict(notes)
    starts = []
    for name, modes, raw_err in cands:
        modes = _clip_to_margin(modes, lay)
        rom0 = obj._rom_from_modes(modes)
        err0 = h2_error(sys, rom0)
        init_errors[name] = err0 if raw_err is None else raw_err
        if raw_err is not None and not math.isclose(err0, raw_err, rel_tol=1e-6, abs_tol=1e-12 * math.sqrt(norm2)):
            init_errors[name + "+diag"] = err0
        th0 = obj._theta_from_modes(modes, lift=_LIFT)
        f0 = obj.value(th0) / obj.weight
        init_errors[name + "+proj"] = math.sqrt(max(f0, 0.0))
        exact = modes.exact and (raw_err is None or err0 <= raw_err * (1 + 1e-6) + 1e-12 * math.sqrt(norm2))
        starts.append((f0, name, rom0, err0, modes, exact))
    starts.sort(key=lambda t: t[0])
    return starts, init_errors


def _run_starts(obj: H2Objective, starts, bounds, scale_f, tol, maxiter):
    """L-BFGS-B from every start; the run with the lowest objective (its pair orientation restored)."""
    best = None
    for _f0, name, _, _, modes, _ in starts:
        th0 = obj._theta_from_modes(modes, lift=_LIFT)  # (re)sets the pair orientation of LQO models
        tr, res = _lbfgs(obj.value_and_grad, th0, bounds, obj.weight * scale_f, tol, maxiter)
        if best is None or tr.best_f < best[1].best_f:
            best = (name, tr, res, None if obj._ev.signs is None else obj._ev.signs.copy())
    name0, tr, res, signs = best
    obj._ev.signs = signs
    return name0, tr, res


def _stationarity(sys: LQOSystem, rom: LQOSystem, lay: _Layout, norm2: float) -> float:
    r"""Scale-free stationarity measure from the *core* gradient (independent of the closed forms).

    :math:`\max(|\partial J/\partial\nu|, |\partial J/\partial\theta|, \|\nabla_{\hat B}\|\|\hat B\|,
    \|\nabla_{\hat C}\|\|\hat C\|, \|\nabla_{\hat M}\|\|\hat M\|) / \|\Sigma\|^2` over all ROM entries.
    """
    g = h2_error_grad(_without_d(sys), _without_d(rom))
    gM = g.M
    g_mu, g_B, g_C, g_M = _fold(lay, g.lam[None], g.B[None], g.C[None], None if gM is None else gM[None])
    if lay.pairs:
        mu, Bh, Ch, Mh, _ = rom.half
    else:
        mu, Bh, Ch, Mh = rom.lam, rom.B, rom.C, rom.M
    if lay.disc:
        dnu = -(-np.log(np.abs(mu)) + lay.log_scale) * mu
        dth = 1j * mu
    else:
        dnu = (mu.real + lay.margin) + 0j
        dth = np.ones_like(mu)
    vals = [np.abs((np.conj(g_mu[0]) * dnu).real), np.abs((np.conj(g_mu[0]) * dth).real),
            [np.linalg.norm(g_B) * np.linalg.norm(Bh)], [np.linalg.norm(g_C) * np.linalg.norm(Ch)]]
    if g_M is not None and Mh is not None:
        vals.append([np.linalg.norm(g_M) * np.linalg.norm(Mh)])
    return float(max(np.max(v) for v in vals)) / max(norm2, np.finfo(float).tiny)
