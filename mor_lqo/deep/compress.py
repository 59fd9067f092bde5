r"""Compress a Deep SSM by reducing the linear systems of its SSM blocks (papers A and B, issue 5).

:func:`compress` takes a numpy reference model (:class:`~mor_lqo.deep.models.S4DModel`,
:class:`~mor_lqo.deep.models.LQOModel`), a state dict or a checkpoint path of any layout the adapter
knows (:mod:`mor_lqo.adapters`), reduces every SSM block, writes the reduced systems back into the
layout's own parametrisation (verified by re-extraction: relative impulse-response mismatch ≤ 1e-8 before
the cast to the checkpoint's dtype) and reports orders, h2 errors (infinite and finite horizon) and
parameter counts. Per-block work is a list of picklable tasks run through a
:class:`concurrent.futures.Executor` (:mod:`mor_lqo.deep.executor`). Methods:

``"modal"``
    Exact modal truncation (a subset of the stored modes; exact write-back in every layout). Modes are
    ranked by their data-weighted kernel energy (S4D) or by the output change their removal causes on
    the calibration data (LQO, :func:`lqo_mode_scores`) when calibration inputs are given, else by their
    (finite-horizon) h2 contribution.
``"bt"``, ``"irka"``, ``"tsia"``
    Balanced truncation / IRKA / TSIA of every unit (LQO variants for quadratic outputs) from
    :mod:`mor_lqo.reduction` (infinite-horizon h2 / Gramians), written back through the unit's modal
    form. A real pole costs a stored slot, so these ROMs may store more modes than ``order/2``. For LQO
    blocks the reduced quadratic readout is re-fitted h2-optimally in the layout's Hermitian form when
    the projected one has :math:`s^T K s` cross terms (:func:`fit_quadratic`).
``"h2"`` (paper B)
    Per-block h2-optimal reduction. With a known sequence length L (``length`` or ``inputs``) every SISO
    channel is fitted in the **finite-horizon** h2 norm over the L lags the network uses (lqo_math.md
    §2.1) — the infinite-horizon norm of trained S4D channels (|λ| up to 0.9995) is dominated by the tail
    beyond L and is the wrong target (8× reduction: 78.9 % accuracy instead of 97.5 %). The fit
    (:func:`fit_finite_horizon`) is variable projection over the poles :math:`e^{-e^\nu + i\theta}`
    (stable, and never slower than the slowest original mode), with ridge-stabilised residues
    (:data:`FIT_RIDGE`), greedy pole insertion from a candidate grid and the original poles,
    Levenberg–Marquardt refinement and one exchange sweep. With calibration ``inputs`` the norm is
    **data weighted**: :math:`\|W_h^{1/2}(g_h - \hat g_h)\|^2` with the lag covariance :math:`W_h` of
    the channel's inputs on the original network (:func:`lag_weights`), i.e. the expected squared SSM
    output error, plus a small identity part (:data:`DATA_RIDGE`). Without a length the
    infinite-horizon :func:`~mor_lqo.reduction.gradient.h2_gradient_batch` is used. MIMO/LQO blocks
    use :func:`~mor_lqo.h2_gradient` (infinite horizon) from the (data-ranked) modal start and keep the
    better of start and result in the finite-horizon error; reduced quadratic readouts are projected
    onto PSD matrices of the layout's rank R (the ``U`` factor).
``"bound"`` (paper A)
    Choose per-layer orders under a parameter budget by greedily minimising the first-order form of
    the output-error bound of :mod:`mor_lqo.deep.bound` (largest bound decrease per parameter), over
    finite-horizon h2-optimal candidates of every layer (the unweighted fits: the bound measures
    channel errors in the plain finite-horizon h2 norm), then refine the blocks on the layer-weighted
    objective :math:`\sum_l w_l J_l` (:math:`w_l` = the bound's layer weights) — jointly with
    :func:`~mor_lqo.reduction.gradient.h2_gradient_joint` for LQO blocks; for per-channel layouts the
    weighted objective separates over channels (disjoint parameters), so the refinement is the
    per-channel finite-horizon fit itself. Needs calibration inputs and a reference model.

Orders are *real* orders per unit (per channel for S4/S4D, per layer for S5/LRU/LQO), i.e. twice the
number of stored complex modes; the layouts store conjugate pairs, so orders are even.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..adapters._common import is_torch_tensor, to_numpy
from ..adapters.block import Block, HalfModes
from ..adapters.io import _View
from ..adapters.io import load as _load_checkpoint
from ..adapters.modal_form import to_half_modes
from ..adapters.reduce import modal_reducer
from ..adapters.registry import extract as _extract_flat
from ..adapters.registry import family
from ..errors import LayoutError, MorLqoError, OrderError, ShapeError
from ..systems import LQOSystem
from .executor import available_cores, make_executor, run_tasks
from .models import LQOModel, S4DModel

__all__ = [
    "METHODS",
    "DEFAULT_METHOD",
    "DEFAULT_RATIO",
    "CompressionResult",
    "compress",
    "parse_ratio",
    "fit_finite_horizon",
    "fit_quadratic",
    "lag_weights",
    "lqo_mode_scores",
    "refit_readout",
]

METHODS = ("modal", "bt", "irka", "tsia", "h2", "bound")
DEFAULT_METHOD = "h2"
DEFAULT_RATIO = Fraction(1, 8)
DATA_RIDGE = 1e-2
"""Identity share of the data weight :math:`W_h/(\\mathrm{tr}\\,W_h/L) + \\rho I` (keeps the plain
finite-horizon error under control in directions the calibration data do not excite)."""
FIT_RIDGE = 1e-4
"""Tikhonov factor of the residue least squares, relative to the largest singular value of the basis:
bounds the residues so that near-cancelling modes cannot appear (they would not survive float32
storage)."""
CHECK_LAGS = 64
WRITEBACK_RTOL = 1e-8
_NU_BOUNDS = (math.log(1e-6), math.log(20.0))  # decay rate e^nu of the fitted poles


class CompressionError(MorLqoError, ValueError):
    """Invalid compression request (method, ratio, budget) or a failed reduction."""


__all__.append("CompressionError")


# ---------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------
@dataclass
class CompressionResult:
    """Outcome of :func:`compress`.

    Attributes
    ----------
    state_dict : Mapping
        The compressed state dict, same structure, array type and dtypes as the input (a flat numpy
        dict when a numpy model was given). The input is never modified.
    model : S4DModel or LQOModel or None
        The compressed numpy reference model, when the layout is one of the reference families.
    method : str
    layers : list of dict
        Per SSM block: ``name``, ``arch``, ``units``, ``order_before``, ``order_after`` (real order per
        unit, maxima), ``stored_before``/``stored_after``, ``h2_error``/``h2_norm``/``rel_h2_error``
        (infinite horizon, root sum of squares over units; None where undefined),
        ``h2_error_L`` (finite horizon ``length``, if known), ``params_before``/``params_after``,
        ``writeback_error``, ``build`` (constructor hints), ``weight`` (bound method).
    params : dict
        ``{"ssm": {"before", "after"}, "total": {"before", "after"}}`` stored scalars.
    length : int or None
        Sequence length used for finite-horizon quantities.
    timings : dict
        Seconds per phase.
    notes : list of str
        Everything the caller should know (fallbacks, projections).
    """

    state_dict: Mapping
    model: Any
    method: str
    layers: list[dict]
    params: dict
    length: int | None = None
    timings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def state_ratio(self) -> float:
        """Total stored state after / before (over all units)."""
        b = sum(lay["stored_before"] * lay["units"] for lay in self.layers)
        a = sum(lay["stored_after"] * lay["units"] for lay in self.layers)
        return a / b if b else 1.0

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no arrays)."""
        def clean(d):
            return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}

        return {"method": self.method, "length": self.length, "params": self.params,
                "state_ratio": self.state_ratio, "layers": [clean(x) for x in self.layers],
                "timings": self.timings, "notes": list(self.notes)}


# ---------------------------------------------------------------------------------------------
# finite-horizon (data-weighted) h2 fit of SISO kernels by variable projection
# ---------------------------------------------------------------------------------------------
def _powers(s: np.ndarray, L: int) -> np.ndarray:
    """exp(s * l) for l < L: (N, k) -> (N, L, k) complex."""
    return np.exp(s[:, None, :] * np.arange(L)[None, :, None])


def _weighted(W: np.ndarray | None, X: np.ndarray) -> np.ndarray:
    """W @ X along the lag axis (axis 1); W None = identity."""
    if W is None:
        return X
    return np.einsum("nij,nj...->ni...", W, X, optimize=True)


def _vp(Phi: np.ndarray, t: np.ndarray, ridge: float):
    """Ridge least squares min ||t - Phi c||^2 + alpha ||c||^2 per row; alpha = (ridge * s_max)^2.

    Returns c (N, d), residual r (N, L), objective f (N,), U (N, L, d) scaled so that
    ``U U^T`` is the (regularised) projector onto the basis.
    """
    U, sv, Vt = np.linalg.svd(Phi, full_matrices=False)
    alpha = (ridge * sv[:, :1]) ** 2 + 1e-300
    filt = sv / (sv * sv + alpha)
    Ut = np.einsum("nlk,nl->nk", U, t)
    c = np.einsum("nkj,nk->nj", Vt, Ut * filt)
    r = t - np.einsum("nlj,nj->nl", Phi, c)
    f = np.sum(r * r, axis=1) + alpha[:, 0] * np.sum(c * c, axis=1)
    return c, r, f, U * np.sqrt(sv * sv / (sv * sv + alpha))[:, None, :]


def _basis(s: np.ndarray, L: int, W) -> tuple[np.ndarray, np.ndarray]:
    pw = _powers(s, L)
    Phi = np.concatenate([pw.real, pw.imag], axis=2)
    return pw, _weighted(W, Phi)


def _lm(t: np.ndarray, s: np.ndarray, W, iters: int, ridge: float, nu_lo: np.ndarray, ftol: float = 1e-7):
    """Levenberg–Marquardt on the log-poles s = -e^nu + i theta (variable projection, Kaufman Jacobian).

    ``nu_lo`` (N,) bounds the decay rates from below (no pole slower than the slowest original mode).
    """
    N, L = t.shape
    k = s.shape[1]
    lo = nu_lo[:, None]
    nu = np.clip(np.log(np.clip(-s.real, 1e-300, None)), lo, _NU_BOUNDS[1])
    th = s.imag.copy()
    lv = np.arange(L)[None, :, None]

    def ev(nu_, th_, rows):
        s_ = -np.exp(nu_) + 1j * th_
        pw_, Phi_ = _basis(s_, L, None if W is None else W[rows])
        c_, r_, f_, U_ = _vp(Phi_, t[rows], ridge)
        return pw_, c_, r_, f_, U_

    pw, c, r, f, U = ev(nu, th, slice(None))
    lam = np.full(N, 1e-2)
    active = np.ones(N, bool)
    stall = np.zeros(N, int)
    for _ in range(iters):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        a, b = c[idx, :k], c[idx, k:]
        lp = lv * pw[idx]
        e = np.exp(nu[idx])[:, None, :]
        dnu = -e * (lp.real * a[:, None, :] + lp.imag * b[:, None, :])
        dth = -lp.imag * a[:, None, :] + lp.real * b[:, None, :]
        Dm = _weighted(None if W is None else W[idx], np.concatenate([dnu, dth], axis=2))
        Ui = U[idx]
        J = -(Dm - np.einsum("nlk,nmk,nmj->nlj", Ui, Ui, Dm, optimize=True))
        g = np.einsum("nlj,nl->nj", J, r[idx])
        A = np.einsum("nli,nlj->nij", J, J)
        dg = np.einsum("nii->ni", A)
        reg = lam[idx, None, None] * (np.eye(2 * k)[None] * (dg[:, :, None] + 1e-12 * dg.max(axis=1)[:, None, None]
                                                               + 1e-300))
        try:
            step = -np.linalg.solve(A + reg, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / (dg + 1e-300)
        nu_n = np.clip(nu[idx] + step[:, :k], lo[idx], _NU_BOUNDS[1])
        th_n = th[idx] + step[:, k:]
        pw_n, c_n, r_n, f_n, U_n = ev(nu_n, th_n, idx)
        ok = np.isfinite(f_n) & (f_n < f[idx])
        rel = (f[idx] - f_n) / np.maximum(f[idx], 1e-300)
        ii = idx[ok]
        nu[ii], th[ii], pw[ii], c[ii] = nu_n[ok], th_n[ok], pw_n[ok], c_n[ok]
        r[ii], f[ii], U[ii] = r_n[ok], f_n[ok], U_n[ok]
        lam[idx] = np.where(ok, lam[idx] / 3.0, lam[idx] * 4.0)
        small = ok & (rel < ftol)
        stall[idx] = np.where(small | ~ok, stall[idx] + 1, 0)
        active[idx] = (lam[idx] < 1e10) & (stall[idx] < 4)
    return -np.exp(nu) + 1j * th, c, f


def _candidate_grid(L: int) -> np.ndarray:
    """Shared log-pole candidates: decay rates 1e-4..3 (log-spaced) x angles (0, pi]."""
    g = np.logspace(-4, math.log10(3.0), 16)
    a = np.linspace(math.pi / (2 * L), math.pi, min(36, max(24, L)))
    return (-g[:, None] + 1j * a[None, :]).ravel()


class _Candidates:
    """Candidate basis columns for the greedy insertion, with their Gram matrices.

    ``shared`` log-poles (G,) are common to all rows: without weights their columns (G, L, 2) and Gram
    matrices are computed once; ``rows`` log-poles (N, n) are per row. Weighted columns are per row and
    cached when small.
    """

    _CACHE_MAX = 3e7  # floats

    def __init__(self, shared: np.ndarray, rows: np.ndarray | None, W, N: int, L: int):
        self.W, self.N, self.L = W, N, L
        self.blocks: list = []
        if W is None:
            Phi = self._cols(shared[None])[0]  # (G, L, 2)
            self.blocks.append(("shared", shared, Phi, np.einsum("gla,glb->gab", Phi, Phi)))
        else:
            chunk = max(1, int(self._CACHE_MAX // max(1, N * L * 2)))
            for g0 in range(0, shared.size, chunk):
                cs = np.broadcast_to(shared[g0 : g0 + chunk], (N, min(chunk, shared.size - g0)))
                self.blocks.append(("rows", cs, None, None) if shared.size > chunk else self._row_block(cs))
        if rows is not None and rows.size:
            self.blocks.append(self._row_block(rows))

    def _cols(self, cs: np.ndarray) -> np.ndarray:
        pw = np.exp(cs[..., None] * np.arange(self.L))  # (..., g, L)
        return np.stack([pw.real, pw.imag], axis=-1)

    def _row_block(self, cs: np.ndarray):
        Phi = self._cols(cs)  # (N, g, L, 2)
        if self.W is not None:
            Phi = np.einsum("nij,ngjc->ngic", self.W, Phi, optimize=True)
        return ("rows", cs, Phi, np.einsum("ngla,nglb->ngab", Phi, Phi))

    def __iter__(self):
        for blk in self.blocks:
            yield blk if blk[2] is not None else self._row_block(blk[1])


def _insert(t, W, s_cur, cands: _Candidates):
    r"""Best new log-pole per row among the candidates given the current poles (greedy insertion).

    The gain of a candidate pair of columns :math:`\Phi` is :math:`v^T (\Phi^T P_\perp \Phi)^{-1} v`,
    :math:`v = \Phi^T r`, with r the residual of the current basis Q: the decrease of the least-squares
    residual when the pair is added.
    """
    N, L = t.shape
    if s_cur.shape[1]:
        _, Phi = _basis(s_cur, L, W)
        Q, _ = np.linalg.qr(Phi)
        r = t - np.einsum("nlk,nk->nl", Q, np.einsum("nlk,nl->nk", Q, t))
    else:
        r, Q = t, None
    best = np.full(N, -np.inf)
    choice = np.zeros(N, np.complex128)
    rows = np.arange(N)
    for kind, cs, Phi, gram in cands:
        if kind == "shared":  # Phi (G, L, 2), gram (G, 2, 2)
            v = np.einsum("gla,nl->nga", Phi, r)
            gram = np.broadcast_to(gram, (N,) + gram.shape)
            if Q is not None:
                A = np.einsum("nlk,gla->ngka", Q, Phi, optimize=True)
                gram = gram - np.einsum("ngka,ngkb->ngab", A, A)
            csn = np.broadcast_to(cs, (N, cs.size))
        else:
            v = np.einsum("ngla,nl->nga", Phi, r)
            if Q is not None:
                A = np.einsum("nlk,ngla->ngka", Q, Phi, optimize=True)
                gram = gram - np.einsum("ngka,ngkb->ngab", A, A)
            csn = cs
        g11, g12, g22 = gram[..., 0, 0], gram[..., 0, 1], gram[..., 1, 1]
        reg = 1e-10 * np.abs(g11 + g22) + 1e-300
        g11, g22 = g11 + reg, g22 + reg
        det = g11 * g22 - g12 * g12
        v1, v2 = v[..., 0], v[..., 1]
        with np.errstate(divide="ignore", invalid="ignore"):  # v^T G^{-1} v of the 2 x 2 Gram matrices
            gain = (g22 * v1 * v1 - 2 * g12 * v1 * v2 + g11 * v2 * v2) / det
        gain = np.where(np.isfinite(gain) & (det > 0), gain, -np.inf)
        j = np.argmax(gain, axis=1)
        gb = gain[rows, j]
        upd = gb > best
        best = np.where(upd, gb, best)
        choice = np.where(upd, csn[rows, j], choice)
    return choice


def fit_finite_horizon(t: np.ndarray, q: int, *, W: np.ndarray | None = None, init: np.ndarray | None = None,
                       init_score: np.ndarray | None = None, kappa: float = 2.0, iters: int = 120,
                       ridge: float = FIT_RIDGE, return_path: bool = False, sweep: bool = True):
    r"""Finite-horizon (optionally weighted) h2-optimal conjugate-pair fit of real SISO kernels.

    Minimises, per row n, :math:`\|W_n (t_n - \hat t_n)\|^2 + \alpha\|c\|^2` over
    :math:`\hat t_n[l] = \kappa\,\mathrm{Re}\sum_{k<q} \hat c_k \mu_k^l` (l < L) with stable poles
    :math:`\mu_k = e^{-e^{\nu_k} + i\theta_k}`: variable projection for the residues, greedy pole
    insertion over a candidate grid (plus the ``init`` poles) with Levenberg–Marquardt refinement after
    every insertion, one exchange sweep (each pole re-inserted given the others), and the best of that
    and an LM run from the dominant ``init`` poles.

    Parameters
    ----------
    t : ndarray, shape (N, L)
        Target kernels (without the feed-through D, which the reduced model keeps).
    q : int
        Number of conjugate pairs (real order 2q).
    W : ndarray, shape (N, L, L), optional
        Square roots of the lag weights (identity = plain finite-horizon h2).
    init : ndarray, shape (N, n), optional
        Candidate poles (e.g. the original modes, |mu| < 1); the q with the largest finite-horizon
        contribution (``init_score``, default: their finite-horizon decay sums) also start a second LM
        run. No fitted pole decays slower than the slowest of them (so the reduced model is never closer
        to marginal stability than the original).
    init_score : ndarray, shape (N, n), optional
        Ranking of the ``init`` poles (e.g. their modal h2 contributions).
    kappa : float
        Output factor of the stored residues.
    return_path : bool
        Also return the greedy solutions for every order 2, 4, ..., 2q (list of (lam, C, f)).
    sweep : bool
        Run the exchange sweep (skipped for the candidate ladders of ``method="bound"``).

    Returns
    -------
    lam : ndarray (N, q) complex, Im >= 0
    C : ndarray (N, q) complex, so that :math:`\hat t[l] = \kappa\,\mathrm{Re}\sum_k C_k \mu_k^l`
    f : ndarray (N,)
        Final (regularised) objective.
    """
    t = np.asarray(t, np.float64)
    N, L = t.shape
    tw = _weighted(W, t)
    nu_lo = np.full(N, _NU_BOUNDS[0])
    if init is not None:  # no reduced pole slower than the slowest original mode of the row
        a = np.abs(np.asarray(init, np.complex128))
        ok = (a > 0) & (a < 1)
        slow = np.where(ok, -np.log(np.where(ok, a, 0.5)), np.inf).min(axis=1)
        nu_lo = np.where(np.isfinite(slow), np.log(np.maximum(slow, math.exp(_NU_BOUNDS[0]))), nu_lo)
    grid = _candidate_grid(L)
    s_rows = None
    s_init = None
    if init is not None:
        init = np.asarray(init, np.complex128)
        ok = (np.abs(init) > 0) & (np.abs(init) < 1)
        s_o = np.where(ok, np.log(np.where(ok, init, 0.5)), np.log(0.5))
        s_o = np.where(s_o.imag < 0, np.conj(s_o), s_o)
        s_o = s_o.real + 1j * np.maximum(s_o.imag, math.pi / (4 * L))
        s_rows = s_o
        if init.shape[1] >= q:
            a = np.abs(init) ** 2
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(np.isclose(a, 1.0), float(L), (1 - a**L) / (1 - a))
            score = np.where(ok, g if init_score is None else np.asarray(init_score, float), -1.0)
            sel = np.argsort(-score, axis=1, kind="stable")[:, :q]
            s_init = np.take_along_axis(s_o, sel, axis=1)
    cset = _Candidates(grid, s_rows, W, N, L)
    s_cur = np.zeros((N, 0), np.complex128)
    path = []
    f = np.sum(tw * tw, axis=1)
    c = np.zeros((N, 0))
    for k in range(1, q + 1):
        new = _insert(tw, W, s_cur, cset)
        new = np.maximum(new.real, -np.exp(_NU_BOUNDS[1])) + 1j * new.imag
        new = np.minimum(new.real, -np.exp(nu_lo)) + 1j * new.imag
        s_cur = np.concatenate([s_cur, new[:, None]], axis=1)
        s_cur, c, f = _lm(tw, s_cur, W, iters if k == q else max(10, iters // 8), ridge, nu_lo)
        if return_path:
            path.append(_to_modes(s_cur, c, kappa) + (f.copy(),))
    for j in range(q if q > 1 and sweep else 0):  # one exchange sweep: re-insert each pole given the others
        rest = np.delete(s_cur, j, axis=1)
        new = _insert(tw, W, rest, cset)
        new = np.minimum(np.maximum(new.real, -np.exp(_NU_BOUNDS[1])), -np.exp(nu_lo)) + 1j * new.imag
        s2, c2, f2 = _lm(tw, np.concatenate([rest, new[:, None]], axis=1), W, max(10, iters // 8), ridge, nu_lo)
        better = f2 < f * (1 - 1e-12)
        s_cur = np.where(better[:, None], s2, s_cur)
        c = np.where(better[:, None], c2, c)
        f = np.where(better, f2, f)
    if q > 1 and sweep:
        s_cur, c, f = _lm(tw, s_cur, W, iters, ridge, nu_lo)
    if s_init is not None:  # never worse than the dominant-mode start: LM from it where it is better
        _, Phi0 = _basis(s_init, L, W)
        f0 = _vp(Phi0, tw, ridge)[2]
        rows = np.flatnonzero(f0 < f)
        s2, c2, f2 = s_cur.copy(), c.copy(), f.copy()
        if rows.size:
            s2[rows], c2[rows], f2[rows] = _lm(tw[rows], s_init[rows], None if W is None else W[rows], iters,
                                               ridge, nu_lo[rows])
        better = f2 < f
        s_cur = np.where(better[:, None], s2, s_cur)
        c = np.where(better[:, None], c2, c)
        f = np.where(better, f2, f)
        if return_path:
            path[-1] = _to_modes(s_cur, c, kappa) + (f.copy(),)
    lam, C = _to_modes(s_cur, c, kappa)
    return (lam, C, f, path) if return_path else (lam, C, f)


def _to_modes(s: np.ndarray, c: np.ndarray, kappa: float):
    k = s.shape[1]
    mu = np.exp(s)
    C = (c[:, :k] - 1j * c[:, k:]) / kappa
    neg = mu.imag < 0
    return np.where(neg, mu.conj(), mu), np.where(neg, C.conj(), C)


# ---------------------------------------------------------------------------------------------
# unit-level reduction (runs in workers)
# ---------------------------------------------------------------------------------------------
def _siso_arrays(modes: Sequence[HalfModes]):
    lam = np.stack([hm.lam for hm in modes])
    B = np.stack([hm.B[:, 0] for hm in modes])
    C = np.stack([hm.C[0] for hm in modes])
    return lam, B, C


def _is_siso_batch(modes: Sequence[HalfModes]) -> bool:
    return (len({hm.n for hm in modes}) == 1 and all(hm.m == 1 and hm.p == 1 and hm.M is None for hm in modes)
            and len({hm.kappa for hm in modes}) == 1)


def _siso_kernels(modes: Sequence[HalfModes], L: int, with_d: bool = False) -> np.ndarray:
    """(N, L) real kernels kappa Re(sum C B lam^l) (+ D at lag 0)."""
    n = max(hm.n for hm in modes)
    N = len(modes)
    lam = np.zeros((N, n), np.complex128)
    cb = np.zeros((N, n), np.complex128)
    for i, hm in enumerate(modes):
        lam[i, : hm.n] = hm.lam
        cb[i, : hm.n] = hm.C[0] * hm.B[:, 0] * hm.kappa
    K = np.einsum("nk,nkl->nl", cb, np.power(lam[:, :, None], np.arange(L))).real
    if with_d:
        K[:, 0] += np.array([hm.D[0, 0] for hm in modes])
    return K


def _psd_project(M: np.ndarray, rank: int | None) -> tuple[np.ndarray, bool]:
    """Nearest PSD matrices of rank <= ``rank`` (eigen-truncation), and whether anything changed."""
    out = np.empty_like(M)
    changed = False
    for j in range(M.shape[0]):
        Mj = 0.5 * (M[j] + M[j].conj().T)
        w, V = np.linalg.eigh(Mj)
        keep = np.clip(w, 0.0, None)
        if rank is not None and np.count_nonzero(keep > 0) > rank:
            order = np.argsort(-keep)
            keep[order[rank:]] = 0.0
        tol = 1e-12 * max(np.max(np.abs(w)), 1e-300)
        if np.any(np.abs(keep - w) > tol):
            changed = True
        out[j] = (V * keep) @ V.conj().T
    return out, changed


def _hermitian_basis(q: int) -> np.ndarray:
    """Real basis E_a (q^2, q, q) of the Hermitian q x q matrices: diagonal, Re and Im of the upper triangle."""
    E = []
    for k in range(q):
        e = np.zeros((q, q), np.complex128)
        e[k, k] = 1
        E.append(e)
    iu = np.triu_indices(q, 1)
    for k, l_ in zip(*iu):
        e = np.zeros((q, q), np.complex128)
        e[k, l_] = e[l_, k] = 1
        E.append(e)
    for k, l_ in zip(*iu):
        e = np.zeros((q, q), np.complex128)
        e[k, l_], e[l_, k] = 1j, -1j
        E.append(e)
    return np.array(E)


def _cauchy(l1: np.ndarray, l2: np.ndarray, horizon: int | None) -> np.ndarray:
    """sum_t (l1_i conj(l2_k))^t (finite horizon if given)."""
    from ..kernels.cauchy import cauchy_matrix

    return np.asarray(cauchy_matrix(l1, l2, True, horizon))


def fit_quadratic(full: HalfModes, red: HalfModes, horizon: int | None = None) -> np.ndarray:
    r"""h2-optimal Hermitian quadratic readout :math:`\hat M_j` of ``red``'s stored state for ``full``'s.

    Minimises the (finite-horizon) h2 error of the *real* quadratic kernels
    :math:`\mathrm{Re}[(\Lambda^{i_1}B)^H M_j (\Lambda^{i_2}B)]` over Hermitian :math:`\hat M_j`
    (lqo_math.md §8.4 with the non-conjugated Gramians), i.e. the normal equations
    :math:`G\theta_j = g_j` of a convex quadratic in the real parameters of :math:`\hat M_j`.
    """
    q = red.n
    E = _hermitian_basis(q)
    Kc = _cauchy(red.lam, red.lam, horizon)
    Kn = _cauchy(red.lam, red.lam.conj(), horizon)
    P = (red.B @ red.B.conj().T) * Kc
    S = (red.B @ red.B.T) * Kn
    X = (full.B @ red.B.conj().T) * _cauchy(full.lam, red.lam, horizon)
    Xt = (full.B @ red.B.T) * _cauchy(full.lam, red.lam.conj(), horizon)
    # G_ab = 1/2 Re[tr(P E_a P E_b) + tr(S^H E_a S E_b^T)]
    PEP = np.einsum("ik,akl,lj->aij", P, E, P, optimize=True)
    SES = np.einsum("ki,akl,lj->aij", S.conj(), E, S, optimize=True)
    G = 0.5 * (np.einsum("aij,bji->ab", PEP, E, optimize=True).real
               + np.einsum("aij,bij->ab", SES, E, optimize=True).real)
    M = full.M
    Z = np.einsum("ia,jik,kb->jab", X.conj(), M, X, optimize=True)
    Zt = np.einsum("ia,jik,kb->jab", Xt.conj(), M, Xt, optimize=True)
    g = 0.5 * (np.einsum("jab,cba->jc", Z, E, optimize=True).real + np.einsum("jab,cab->jc", Zt, E, optimize=True).real)
    theta = np.linalg.lstsq(G, g.T, rcond=1e-12)[0].T  # (p, q^2)
    return np.einsum("ja,akl->jkl", theta, E)


def _strip_m(rom: LQOSystem) -> LQOSystem:
    return LQOSystem(rom.A, rom.B, rom.C, D=rom.D, dt=rom.dt, convention=rom.convention)


def _rom_to_modes(rom, full: HalfModes, kappa: float, sign: int, rank: int | None, horizon,
                  notes: list) -> HalfModes:
    """Stored half modes of a reducer's ROM; quadratic outputs re-fitted / projected into the layout's form."""
    rom = getattr(rom, "rom", rom)
    if full.M is None:
        return to_half_modes(rom, kappa, sign)
    try:
        hm = to_half_modes(rom, kappa, sign)
    except LayoutError:
        hm = None
    if hm is None or hm.M is None:
        lin = to_half_modes(_strip_m(rom), kappa, sign)
        hm = replace(lin, M=fit_quadratic(full, lin, horizon))
        notes.append("quadratic readout re-fitted in the layout's Hermitian form (h2-optimal for the method's poles)")
    M, changed = _psd_project(hm.M, rank)
    if changed:
        notes.append(f"reduced quadratic readout projected onto PSD matrices of rank <= {rank}")
    return replace(hm, M=M)


def _single_blas():
    """Single-threaded BLAS inside a task (threadpoolctl, if installed): the work is many small batched
    products, and the tasks themselves run in parallel."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _reduce_task(task: dict) -> dict:
    """Worker entry point: reduce the units of one chunk (picklable, top level)."""
    with _single_blas():
        return _reduce_task_impl(task)


def _reduce_task_impl(task: dict) -> dict:
    method, r = task["method"], int(task["r"])
    modes: list[HalfModes] = task["modes"]
    dts: list[float] = task["dt"]
    kappa, sign, rank = task["kappa"], task["sign"], task.get("rank")
    L = task.get("length")
    W = task.get("weights")
    opts = task.get("options") or {}
    notes: list[str] = []
    out: list[HalfModes | None] = [None] * len(modes)
    todo = [i for i, hm in enumerate(modes) if r < hm.real_order]
    for i, hm in enumerate(modes):
        if out[i] is None and i not in todo:
            out[i] = hm
    t0 = time.perf_counter()
    if todo:
        sub = [modes[i] for i in todo]
        if r % 2:
            raise OrderError(f"conjugate-pair layouts need even real orders, got {r}")
        scores = task.get("scores")
        if method == "modal":
            if scores is not None:
                red = [_select_by_score(hm, r, scores[i]) for hm, i in zip(sub, todo)]
            elif W is not None and _is_siso_batch(sub):
                red = [_select_by_score(hm, r, sc) for hm, sc in zip(sub, _weighted_mode_scores(sub, W[todo], L))]
            else:
                red = [modal_reducer(hm, r, L) for hm in sub]
        elif method in ("h2", "bound") and not _is_siso_batch(sub):
            red = [_mimo_h2(hm, r, dts[i], None if scores is None else scores[i], kappa, sign, rank, L, opts, notes)
                   for hm, i in zip(sub, todo)]
        elif method in ("h2", "bound") and _is_siso_batch(sub):
            lam, B, C = _siso_arrays(sub)
            if L is not None:
                t = _siso_kernels(sub, L)
                Wt = None if W is None else W[todo]
                sc = (_weighted_mode_scores(sub, Wt, L) if Wt is not None
                      else _weighted_mode_scores(sub, np.broadcast_to(np.eye(L), (len(sub), L, L)), L))
                mu, Ch, _ = fit_finite_horizon(t, r // 2, W=Wt, init=lam, init_score=sc, kappa=sub[0].kappa,
                                               iters=opts.get("iters", 60))
                red = [HalfModes(lam=mu[j], B=np.ones((r // 2, 1)), C=Ch[j][None, :], D=hm.D, kappa=hm.kappa)
                       for j, hm in enumerate(sub)]
            else:
                from ..reduction.gradient import h2_gradient_batch

                res = h2_gradient_batch(lam, B[:, :, None], C[:, None, :], r, dt=dts[todo[0]] or 1.0,
                                        scale=sub[0].kappa, tol=opts.get("tol", 1e-7),
                                        maxiter=opts.get("maxiter", 100))
                red = [HalfModes(lam=res.lam[j], B=res.B[j], C=res.C[j], D=hm.D, kappa=hm.kappa)
                       for j, hm in enumerate(sub)]
        else:
            import mor_lqo

            fn = {"bt": mor_lqo.balanced_truncation, "irka": mor_lqo.irka, "tsia": mor_lqo.tsia,
                  "h2": mor_lqo.h2_gradient, "bound": mor_lqo.h2_gradient}[method]
            red = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for j, hm in enumerate(sub):
                    sys_ = hm.system(dt=dts[todo[j]])
                    kw = {"multistart": False} if method in ("h2", "bound") else {}
                    rom = fn(sys_, r, **kw)
                    red.append(_rom_to_modes(rom, hm, kappa, sign, rank, L, notes))
        for i, hm in zip(todo, red):
            out[i] = hm
    errs = _unit_errors(modes, out, dts, L)
    return {"modes": out, "notes": sorted(set(notes)), "seconds": time.perf_counter() - t0, **errs}


def _select_by_score(hm: HalfModes, r: int, score: np.ndarray) -> HalfModes:
    """Exact modal truncation keeping the r/2 stored modes with the largest ``score``."""
    k = max(1, r // 2)
    if k >= hm.n:
        return hm
    keep = np.sort(np.argsort(-np.asarray(score), kind="stable")[:k])
    return hm.select(keep)


def _weighted_mode_scores(modes: Sequence[HalfModes], W: np.ndarray, L: int) -> np.ndarray:
    """Data-weighted energy ||W_h k_{h,a}||^2 of every mode's kernel (N, n) (SISO channels)."""
    lam, B, C = _siso_arrays(modes)
    kap = modes[0].kappa
    K = kap * (C * B)[:, :, None] * np.power(lam[:, :, None], np.arange(L))  # (N, n, L) complex
    Kr = _weighted(W, np.moveaxis(K.real, 1, 2))  # (N, L, n)
    return np.sum(Kr * Kr, axis=1)


def lqo_mode_scores(model: LQOModel, i: int, U: np.ndarray) -> np.ndarray:
    r"""Output energy that removing each mode of LQO layer i changes on the layer inputs ``U``.

    For mode a: :math:`\sum \|\Delta y\|^2` with :math:`\Delta y_j = \mathrm{Re}(C_{ja}x_a)
    + 2\mathrm{Re}(\bar x_a (M_j x)_a) - |x_a|^2 M_{j,aa}` (exact change of the block output when
    :math:`x_a` is removed from the state), summed over the calibration data.
    """
    s = model.ssm_params(i)
    X = model.states(i, U)  # (B, L, P)
    C, M = s["C"], s["M"]
    P = X.shape[-1]
    score = np.zeros(P)
    for a0 in range(0, P, 8):
        a = np.arange(a0, min(P, a0 + 8))
        xa = X[..., a]  # (B, L, k)
        MX = np.einsum("jpq,blq->blpj", M[:, a, :], X, optimize=True)  # (B, L, k, H)
        d = (xa[..., None] * C[:, a].T[None, None]).real
        d += 2 * (xa.conj()[..., None] * MX).real
        d -= (np.abs(xa) ** 2)[..., None] * np.diagonal(M, axis1=1, axis2=2)[:, a].T.real[None, None]
        score[a] = np.sum(d * d, axis=(0, 1, 3))
    return score


def refit_readout(full: HalfModes, red: HalfModes, horizon: int, rank: int | None = None) -> HalfModes:
    r"""Finite-horizon h2-optimal readouts for fixed reduced poles and input matrix (MIMO blocks).

    :math:`\hat C` minimises :math:`\sum_{i<L}\|h_1(i) - \hat h_1(i)\|_F^2` of the real linear Markov
    parameters (least squares, shared design over the outputs); :math:`\hat M_j` minimises the
    finite-horizon quadratic-kernel error (:func:`fit_quadratic`) and is then projected onto PSD matrices
    of rank ≤ ``rank`` (the layout's factor).
    """
    L = int(horizon)
    pw = np.power(full.lam[:, None], np.arange(L))
    h = full.kappa * np.einsum("jp,pl,pm->ljm", full.C, pw, full.B, optimize=True).real  # (L, p, m)
    G = np.power(red.lam[:, None], np.arange(L))[:, :, None] * red.B[:, None, :]  # (q, L, m)
    F = red.kappa * np.concatenate([G.real, -G.imag], axis=0).reshape(2 * red.n, -1).T  # (L m, 2q)
    Y = h.transpose(0, 2, 1).reshape(-1, h.shape[1])  # (L m, p)
    th = np.linalg.lstsq(F, Y, rcond=1e-10)[0]
    out = replace(red, C=(th[: red.n] + 1j * th[red.n :]).T)
    if full.M is not None:
        M, _ = _psd_project(fit_quadratic(full, out, horizon=L), rank)
        out = replace(out, M=M)
    return out


def _mimo_h2(hm: HalfModes, r: int, dt: float, score, kappa, sign, rank, L, opts, notes) -> HalfModes:
    """MIMO/LQO block: h2_gradient from the (data-ranked) modal start with finite-horizon h2-optimal
    readouts (when L is known); the better of start and result in the finite-horizon error."""
    import mor_lqo

    start = _select_by_score(hm, r, score) if score is not None else modal_reducer(hm, r, L)
    if L is not None:
        refit = refit_readout(hm, start, L, rank)
        if _unit_errors([hm], [refit], [dt], L)["h2_error_L"][0] <= _unit_errors([hm], [start], [dt], L)[
                "h2_error_L"][0]:
            start = refit
            notes.append(f"modal start with finite-horizon (L={L}) h2-optimal readouts C, M")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mor_lqo.h2_gradient(hm.system(dt=dt), r, init=start.system(dt=dt), multistart=False,
                                      maxiter=opts.get("maxiter", 40), tol=opts.get("tol", 1e-7))
        red = _rom_to_modes(res, hm, kappa, sign, rank, L, notes)
    except MorLqoError as exc:
        notes.append(f"h2_gradient failed ({exc}); modal start kept")
        return start
    if L is not None:
        e0 = _unit_errors([hm], [start], [dt], L)["h2_error_L"][0]
        e1 = _unit_errors([hm], [red], [dt], L)["h2_error_L"][0]
        if not e1 <= e0:
            notes.append("h2_gradient did not lower the finite-horizon error; modal start kept")
            return start
    return red


def _unit_errors(full: Sequence[HalfModes], red: Sequence[HalfModes], dts, L: int | None) -> dict:
    """Per-unit h2 errors (infinite horizon; finite horizon L if given) and norms of the real maps."""
    from ..kernels.cauchy import cauchy_inner, cauchy_norm2

    N = len(full)
    e_inf = np.full(N, np.nan)
    n_inf = np.full(N, np.nan)
    e_L = np.full(N, np.nan) if L is not None else None
    n_L = np.full(N, np.nan) if L is not None else None
    siso = all(hm.m == 1 and hm.p == 1 and hm.M is None for hm in list(full) + list(red))
    if siso:
        def closed(hms):
            n = max(hm.n for hm in hms)
            lam = np.zeros((N, 2 * n), np.complex128)
            B = np.zeros((N, 2 * n, 1), np.complex128)
            C = np.zeros((N, 1, 2 * n), np.complex128)
            for i, hm in enumerate(hms):
                k = hm.n
                lam[i, :k], lam[i, n : n + k] = hm.lam, hm.lam.conj()
                B[i, :k, 0], B[i, n : n + k, 0] = hm.B[:, 0], hm.B[:, 0].conj()
                C[i, 0, :k], C[i, 0, n : n + k] = hm.kappa / 2 * hm.C[0], hm.kappa / 2 * hm.C[0].conj()
            return lam, B, C
        stable = all(np.all(np.abs(hm.lam) < 1) for hm in list(full) + list(red))
        if stable:
            lf, Bf, Cf = closed(full)
            lr, Br, Cr = closed(red)
            nf = np.asarray(cauchy_norm2(lf, Bf, Cf, True), float)
            nr = np.asarray(cauchy_norm2(lr, Br, Cr, True), float)
            ip = np.real(np.asarray(cauchy_inner(lf, Bf, Cf, lr, Br, Cr, True)))
            e_inf = np.sqrt(np.maximum(nf + nr - 2 * ip, 0.0))
            n_inf = np.sqrt(nf)
            e_inf[[i for i in range(N) if full[i] is red[i]]] = 0.0  # unchanged units: exactly 0
        if L is not None:
            kf = _siso_kernels(full, L)
            kr = _siso_kernels(red, L)
            e_L = np.linalg.norm(kf - kr, axis=1)
            n_L = np.linalg.norm(kf + np.array([[hm.D[0, 0]] + [0] * (L - 1) for hm in full]), axis=1)
    else:
        import mor_lqo

        from .bound import lqo_block_h2_errors

        for i, (f_, r_) in enumerate(zip(full, red)):
            try:
                sf, sr = f_.system(dt=dts[i]), r_.system(dt=dts[i])
                e_inf[i] = float(mor_lqo.h2_error(sf, sr)) if f_ is not r_ else 0.0
                n_inf[i] = float(mor_lqo.h2_norm(sf))
            except MorLqoError:
                pass
            if L is not None:
                pf = _params(f_)
                lin, quad = lqo_block_h2_errors(pf, _params(r_), L)
                e_L[i] = math.hypot(lin[-1], quad)
                lin0, quad0 = lqo_block_h2_errors(pf, _params(replace(f_, C=0 * f_.C, D=0 * f_.D, M=None
                                                                     if f_.M is None else 0 * f_.M)), L)
                n_L[i] = math.hypot(lin0[-1], quad0)
    return {"h2_error": e_inf, "h2_norm": n_inf, "h2_error_L": e_L, "h2_norm_L": n_L}


def _params(hm: HalfModes) -> dict:
    """HalfModes in the ``ssm_params`` format of :mod:`mor_lqo.deep.bound`."""
    return {"Lambda_bar": hm.lam, "B_bar": hm.B, "C": hm.C, "D": hm.D, "M": hm.M, "kappa": hm.kappa}


# ---------------------------------------------------------------------------------------------
# inputs, orders, parameter counts
# ---------------------------------------------------------------------------------------------
def parse_ratio(value) -> Fraction:
    """A state ratio in (0, 1] from a number or a string such as ``"1/32"``, ``"0.125"`` or ``"32x"``.

    Raises
    ------
    CompressionError
        If the value is not a number in (0, 1] (``"32x"`` means 1/32).
    """
    try:
        if isinstance(value, str):
            v = value.strip().lower()
            if v.endswith("x"):
                fr = 1 / Fraction(v[:-1])
            else:
                fr = Fraction(v)
        elif isinstance(value, (bool, np.bool_)):
            raise TypeError
        else:
            if not math.isfinite(float(value)):
                raise ValueError
            fr = Fraction(value).limit_denominator(1 << 20)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise CompressionError(f"ratio must be a number in (0, 1] such as 1/32, 0.125 or '32x', got {value!r}") from exc
    if not 0 < fr <= 1:
        raise CompressionError(f"ratio must be in (0, 1] (the fraction of the SSM state kept), got {value!r}")
    return fr


def _even_order(x: float, full: int) -> int:
    r = max(2, 2 * int(round(x / 2)))
    return min(r, full)


def _flat_input(obj):
    """(original mapping or None, flat numpy dict, numpy model class or None, source path or None)."""
    if isinstance(obj, (S4DModel, LQOModel)):
        return None, obj.state_dict(), type(obj), None
    if isinstance(obj, (str, Path)):
        ck = _load_checkpoint(obj)
        return ck, dict(ck), None, getattr(ck, "source", None)
    if isinstance(obj, Mapping):
        view = _View(obj)
        return obj, {k: np.asarray(to_numpy(v)) for k, v in view.flat.items()}, None, None
    raise TypeError(f"expected an S4DModel/LQOModel, a state dict or a checkpoint path, got {type(obj).__name__}")


def _reference_model(flat: Mapping[str, np.ndarray], blocks: Sequence[Block], cls=None):
    """The numpy reference model of a flat state dict (None if the layout is not a reference family)."""
    archs = {b.arch for b in blocks}
    cands = [cls] if cls is not None else ([S4DModel] if archs == {"s4d"} else [LQOModel] if archs == {"lqo"} else [])
    for c in cands:
        try:
            return c.from_state_dict(flat)
        except (LayoutError, ShapeError):
            return None
    return None


def _like(orig, new: np.ndarray):
    """``new`` in the array type, dtype and device of ``orig``."""
    if is_torch_tensor(orig):
        import torch

        return torch.from_numpy(np.ascontiguousarray(new)).to(dtype=orig.dtype, device=orig.device)
    return np.asarray(new).astype(np.asarray(orig).dtype)


def _n(values) -> int:
    return int(sum(int(np.prod(np.shape(v))) for v in values))


def _param_model(block: Block, flat: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """(fixed, per stored mode) SSM parameters of a block, from exact write-backs of 1 and 2 modes."""
    fam = family(block.arch)
    if fam.reduce_block is not None or any(u.modes is None for u in block.units) or block.stored < 2:
        before = _n(flat[k] for k in block.keys)
        return 0.0, before / max(block.stored, 1)
    sizes = []
    for k in (1, 2):
        modes = [u.modes.select(np.arange(k)) for u in block.units]
        arrays, _ = fam.write_back(block, modes, None)
        sizes.append(_n(arrays.get(key, flat[key]) for key in block.keys))
    per = sizes[1] - sizes[0]
    return float(sizes[0] - per), float(per)


# ---------------------------------------------------------------------------------------------
# data weights (per-channel layouts of the reference models)
# ---------------------------------------------------------------------------------------------
def lag_weights(U: np.ndarray, rho: float = DATA_RIDGE) -> np.ndarray:
    r"""Square roots of the normalised lag covariances of per-channel inputs.

    :math:`W_h[i, j] = \frac1B\sum_b\sum_{k \ge \max(i,j)} U_{b,k-i,h} U_{b,k-j,h}` is the matrix with
    :math:`\mathbb E\sum_k |((g - \hat g) * U_h)_k|^2 = e^T W_h e` (e the kernel error over L lags); the
    returned matrices are :math:`(W_h/(\mathrm{tr}\,W_h/L) + \rho I)^{1/2}`, shape (H, L, L).
    """
    U = np.asarray(U, np.float64)
    B_, L, H = U.shape
    W = np.zeros((H, L, L))
    for d in range(L):
        prod = np.einsum("bsh,bsh->sh", U[:, d:, :], U[:, : L - d, :]) / B_  # s = 0 .. L-1-d
        cs = np.cumsum(prod, axis=0)  # cs[m] = sum_{s<=m}
        i = np.arange(L - d)
        vals = cs[L - 1 - i - d]  # W[i, i + d] = sum_{s <= L-1-i-d}
        W[:, i, i + d] = vals.T
        W[:, i + d, i] = vals.T
    tr = np.trace(W, axis1=1, axis2=2) / L
    W = W / np.where(tr > 0, tr, 1.0)[:, None, None] + rho * np.eye(L)[None]
    w, V = np.linalg.eigh(W)
    return np.einsum("hik,hk,hjk->hij", V, np.sqrt(np.clip(w, 0, None)), V)


# ---------------------------------------------------------------------------------------------
# write-back and verification
# ---------------------------------------------------------------------------------------------
def _kernels_of(modes: Sequence[HalfModes], Lc: int) -> np.ndarray:
    """Linear Markov parameters (N, Lc, p, m) of units (all with the same p, m), padded."""
    n = max(hm.n for hm in modes)
    N, p, m = len(modes), modes[0].p, modes[0].m
    lam = np.zeros((N, n), np.complex128)
    B = np.zeros((N, n, m), np.complex128)
    C = np.zeros((N, p, n), np.complex128)
    for i, hm in enumerate(modes):
        lam[i, : hm.n], B[i, : hm.n], C[i, :, : hm.n] = hm.lam, hm.B, hm.C * hm.kappa
    pw = np.power(lam[:, :, None], np.arange(Lc))  # (N, n, Lc)
    K = np.einsum("npk,nkl,nkm->nlpm", C, pw, B, optimize=True).real
    K[:, 0] += np.stack([hm.D for hm in modes])
    return K


def _verify_block(block: Block, flat64: dict, arrays: dict, modes: Sequence[HalfModes]) -> float:
    """Max relative mismatch between the reduced units and the re-extracted written arrays."""
    fam = family(block.arch)
    tmp = dict(flat64)
    tmp.update(arrays)
    nb = fam.extract(tmp, block.name, **block.settings)
    got = [u.modes if u.modes is not None else None for u in nb.units]
    if any(g is None for g in got) or len(got) != len(modes):
        return float("nan")
    worst = 0.0
    groups: dict[tuple, list[int]] = {}
    for i, hm in enumerate(modes):
        groups.setdefault((hm.p, hm.m), []).append(i)
    for idx in groups.values():
        ref = _kernels_of([modes[i] for i in idx], CHECK_LAGS)
        new = _kernels_of([got[i] for i in idx], CHECK_LAGS)
        old = _kernels_of([block.units[i].modes for i in idx], CHECK_LAGS)
        scale = np.maximum(np.linalg.norm(ref.reshape(len(idx), -1), axis=1),
                           np.linalg.norm(old.reshape(len(idx), -1), axis=1))
        err = np.linalg.norm((new - ref).reshape(len(idx), -1), axis=1) / np.maximum(scale, 1e-300)
        worst = max(worst, float(np.max(err)))
    rng = np.random.default_rng(0)
    for i, hm in enumerate(modes):
        if hm.M is not None or got[i].M is not None:
            u = rng.standard_normal((8, hm.m))  # quadratic outputs on a random input (exact recurrences)
            a, b = _quad_response(hm, u), _quad_response(got[i], u)
            ref_ = max(np.linalg.norm(a), np.linalg.norm(_quad_response(block.units[i].modes, u)), 1e-300)
            worst = max(worst, float(np.linalg.norm(a - b) / ref_))
    return worst


def _quad_response(hm: HalfModes, u: np.ndarray) -> np.ndarray:
    """Quadratic outputs x_k^H M_j x_k (T, p) of the stored state for an input sequence u (T, m)."""
    if hm.M is None:
        return np.zeros((u.shape[0], hm.p))
    x = np.zeros(hm.n, np.complex128)
    out = np.empty((u.shape[0], hm.p))
    for k in range(u.shape[0]):
        x = hm.lam * x + hm.B @ u[k]
        out[k] = np.einsum("p,jpq,q->j", x.conj(), hm.M, x).real
    return out


# ---------------------------------------------------------------------------------------------
# the main entry point
# ---------------------------------------------------------------------------------------------
def _resolve_executor(executor, work: float):
    """(executor or None, owned) from the user's argument."""
    if isinstance(executor, Executor):
        return executor, False
    if executor is None:
        if work < 5e6 or available_cores() < 2:
            return None, False
        return make_executor("process"), True
    if isinstance(executor, str):
        return make_executor(executor), True
    raise TypeError(f"executor must be None, 'process', 'thread', 'serial' or a concurrent.futures.Executor, "
                    f"got {type(executor).__name__}")


def _block_tasks(block: Block, r: int, method: str, length, weights, n_chunks: int, options,
                 scores=None) -> list[dict]:
    fam = family(block.arch)
    units = block.units
    chunks = [np.arange(len(units))]
    if len(units) >= 2 * n_chunks and n_chunks > 1:
        chunks = [c for c in np.array_split(np.arange(len(units)), n_chunks) if c.size]
    rank = block.meta.get("R") if block.arch == "lqo" else None
    tasks = []
    for c in chunks:
        tasks.append({
            "block": block.name, "chunk": c, "method": method, "r": r,
            "modes": [units[i].modes for i in c], "dt": [float(units[i].system.dt) for i in c],
            "kappa": fam.kappa(block), "sign": fam.sign(block), "rank": rank, "length": length,
            "weights": None if weights is None else weights[c], "options": options,
            "scores": None if scores is None else [scores[i] for i in c],
        })
    return tasks


def compress(model_or_state_dict, method: str = DEFAULT_METHOD, ratio=None, order=None, budget=None, *,
             arch: str = "auto", inputs=None, length: int | None = None, executor=None, progress: bool = True,
             options: Mapping[str, Any] | None = None, **settings) -> CompressionResult:
    r"""Reduce every SSM block of a Deep SSM and write the reduced systems back into its layout.

    Parameters
    ----------
    model_or_state_dict : S4DModel, LQOModel, Mapping or path
        A numpy reference model, a (flat / nested / prefixed) state dict of numpy arrays or torch
        tensors, or a checkpoint file (loaded safely with :func:`mor_lqo.adapters.load`).
    method : {"modal", "bt", "irka", "tsia", "h2", "bound"}
        See the module docstring.
    ratio : float or str, optional
        Fraction of the SSM state kept per unit (``1/32``, ``"1/32"``, ``"32x"``): real order
        ``round(ratio * order)`` rounded to an even number ≥ 2. For ``"bound"`` the parameter budget is
        the same fraction of the reducible SSM parameters.
    order : int, sequence or mapping, optional
        Real order per unit: one for all blocks, one per block, or ``{block name: order}`` (blocks not
        listed are kept). Must be even (conjugate pairs).
    budget : int, optional
        Maximum number of SSM parameters after compression (``"bound"``: allocated by the bound; other
        methods: the largest uniform ratio that fits).
    arch : str
        Layout (``"auto"`` detects it; see :data:`mor_lqo.adapters.KNOWN`).
    inputs : array_like, optional
        Calibration sequences (batch, L[, d_in]) for the reference models: they set the sequence length
        (finite-horizon h2), the data weights of ``"h2"`` and the bound of ``"bound"``. Labels are never
        used.
    length : int, optional
        Sequence length without calibration data (finite-horizon h2 of ``"h2"`` / ``"modal"``).
    executor : None, "process", "thread", "serial" or concurrent.futures.Executor
        Where the per-block tasks run. None: a process pool over the available cores when the work
        is large, else in-process. A given Executor is used as it is (not shut down).
    progress : bool
        Show a tqdm progress bar (stderr).
    options : mapping, optional
        Method options (``iters`` for the finite-horizon fit, ``tol``/``maxiter`` for the gradient
        reducers, ``rho`` for the data weights).
    **settings
        Layout settings not stored in the checkpoint (see :func:`mor_lqo.adapters.extract`).

    Returns
    -------
    CompressionResult

    Raises
    ------
    CompressionError
        Unknown method, invalid or conflicting ratio / order / budget, or a budget below the minimum.
    LayoutError, CheckpointError
        Unknown layout / unreadable checkpoint, or a reduced model that cannot be written back.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if method not in METHODS:
        raise CompressionError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    given = [v is not None for v in (ratio, order, budget)]
    if sum(given) > 1:
        raise CompressionError("give at most one of ratio, order and budget")
    if not any(given):
        ratio = DEFAULT_RATIO
    options = dict(options or {})
    orig, flat, cls, _src = _flat_input(model_or_state_dict)
    flat64 = {k: (v.astype(np.complex128) if np.iscomplexobj(v) else np.asarray(v, np.float64))
              for k, v in flat.items()}
    blocks = _extract_flat(flat, arch, **settings)
    lti = [b for b in blocks if b.lti]
    if not lti:
        raise LayoutError("no LTI SSM block to reduce (input-dependent layouts such as Mamba are not supported "
                          "by compress; use mor_lqo.adapters.reduce_state_dict with method='index')")
    ref = _reference_model(flat, blocks, cls)
    notes: list[str] = []
    x_cal = None
    if inputs is not None:
        if ref is None:
            raise CompressionError("calibration inputs need a reference model layout (s4d or lqo)")
        x_cal = ref._prepare_input(inputs)
        if length is not None and int(length) != x_cal.shape[1]:
            raise CompressionError(f"length={length} differs from the inputs' length {x_cal.shape[1]}")
        length = int(x_cal.shape[1])
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
            raise CompressionError(f"length must be a positive integer, got {length!r}")
        length = int(length)
    timings["load"] = time.perf_counter() - t_start

    # -- orders ------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    pm = None
    if method == "bound":
        if ref is None:
            raise CompressionError("method='bound' needs a reference model (s4d or lqo layout)")
        if x_cal is None:
            raise CompressionError("method='bound' needs calibration inputs (inputs=...) to evaluate the bound")
        if order is not None:
            raise CompressionError("method='bound' allocates the orders itself: give ratio or budget, not order")
    if order is not None:
        orders = _orders_from(order, lti)
    elif ratio is not None and method != "bound":
        fr = parse_ratio(ratio)
        orders = {b.name: _even_order(float(fr) * b.order, b.order) for b in lti}
    else:
        pm = {b.name: _param_model(b, flat) for b in lti}
        if budget is None:  # bound with a ratio: the same fraction of the reducible parameters
            fr = parse_ratio(ratio)
            budget = sum(f + float(fr) * p * b.stored for b in lti for f, p in [pm[b.name]])
        budget = _check_budget(budget, lti, pm)
        if method != "bound":
            orders = _uniform_for_budget(budget, lti, pm)
        else:
            orders = None
    timings["orders"] = time.perf_counter() - t0

    # -- calibration data: lag weights (per-channel layouts) / mode scores (LQO) ----------------------------
    weights: dict[str, np.ndarray] = {}
    scores: dict[str, list] = {}
    if x_cal is not None and method in ("h2", "modal", "bound"):
        t0 = time.perf_counter()
        rho = float(options.get("rho", DATA_RIDGE))
        _, trace = ref.forward(x_cal, return_layer_inputs=True)
        for i, (b, tr) in enumerate(zip(blocks, trace)):
            if isinstance(ref, S4DModel) and method != "bound":
                weights[b.name] = lag_weights(tr["input"], rho)
            elif isinstance(ref, LQOModel):
                scores[b.name] = [lqo_mode_scores(ref, i, tr["input"])]
        timings["calibration"] = time.perf_counter() - t0

    # -- reduce -----------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    ex, owned = _resolve_executor(executor, _work(lti, method))
    n_chunks = getattr(ex, "_max_workers", None) or (available_cores() if ex is not None else 1)
    bound_info = None
    try:
        if method == "bound":
            orders, results, bound_info = _bound_method(ref, lti, x_cal, budget, pm, ex, progress, options,
                                                        scores)
        else:
            tasks = []
            for b in lti:
                r = orders.get(b.name)
                if r is None:
                    continue
                tasks += _block_tasks(b, r, method, length, weights.get(b.name), n_chunks, options,
                                      scores.get(b.name))
            outs = run_tasks(_reduce_task, tasks, ex, progress, desc=f"mor-lqo {method}")
            results = _collect(tasks, outs)
    finally:
        if owned and ex is not None:
            ex.shutdown(wait=True)
    timings["reduce"] = time.perf_counter() - t0

    # -- write back, verify ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    new_flat = dict(_View(orig).flat) if orig is not None else dict(flat)
    layers = []
    for b in lti:
        res = results.get(b.name)
        fam = family(b.arch)
        entry = {"name": b.name, "arch": b.arch, "units": len(b.units), "order_before": b.order,
                 "stored_before": b.stored, "params_before": _n(flat[k] for k in b.keys)}
        if res is None:
            entry.update(order_after=b.order, stored_after=b.stored, params_after=entry["params_before"],
                         h2_error=0.0, h2_norm=None, rel_h2_error=0.0, h2_error_L=0.0 if length else None,
                         writeback_error=0.0, build={})
            layers.append(entry)
            continue
        modes = res["modes"]
        arrays, build = fam.write_back(b, modes, None)
        werr = _verify_block(b, flat64, arrays, modes)
        if not np.isfinite(werr) or werr > WRITEBACK_RTOL:
            raise LayoutError(f"{b.name}: write-back verification failed (relative impulse-response mismatch "
                              f"{werr:.3g} > {WRITEBACK_RTOL:g})")
        for k, v in arrays.items():
            if k not in flat:
                raise LayoutError(f"internal: write-back produced unknown key {k!r}")
            new_flat[k] = _like(new_flat[k], v)
        e, nrm = res["h2_error"], res["h2_norm"]
        have = np.all(np.isfinite(e))
        entry.update(
            order_after=max(hm.real_order for hm in modes), stored_after=max(hm.n for hm in modes),
            params_after=_n(new_flat[k] for k in b.keys),
            h2_error=float(np.sqrt(np.sum(e**2))) if have else None,
            h2_norm=float(np.sqrt(np.sum(nrm**2))) if have else None,
            writeback_error=werr, build=build,
        )
        entry["rel_h2_error"] = (entry["h2_error"] / entry["h2_norm"] if have and entry["h2_norm"] else None)
        if res.get("h2_error_L") is not None:
            eL, nL = res["h2_error_L"], res["h2_norm_L"]
            entry["h2_error_L"] = float(np.sqrt(np.sum(eL**2)))
            entry["rel_h2_error_L"] = float(np.sqrt(np.sum(eL**2) / max(np.sum(nL**2), 1e-300)))
        if bound_info is not None and b.name in bound_info.get("weights", {}):
            entry["weight"] = bound_info["weights"][b.name]
        notes += [f"{b.name}: {n}" for n in res.get("notes", [])]
        layers.append(entry)
    timings["write_back"] = time.perf_counter() - t0

    view_out = _View(orig).rebuild(new_flat) if orig is not None else new_flat
    new_np = {k: np.asarray(to_numpy(v)) for k, v in new_flat.items()}
    model = _reference_model(new_np, blocks, cls) if ref is not None else None
    ssm_b = sum(x["params_before"] for x in layers)
    ssm_a = sum(x["params_after"] for x in layers)
    tot_b = _n(flat.values())
    tot_a = _n(new_np.values())
    timings["total"] = time.perf_counter() - t_start
    params = {"ssm": {"before": ssm_b, "after": ssm_a}, "total": {"before": tot_b, "after": tot_a}}
    out = CompressionResult(state_dict=view_out, model=model, method=method, layers=layers, params=params,
                            length=length, timings=timings, notes=notes)
    if bound_info is not None:
        out.notes.append(f"bound allocation: orders {bound_info['orders']}, bound {bound_info['value']:.4g}")
    if length is not None and method in ("h2", "bound") and any(len(b.units) > 1 for b in lti):
        out.notes.append(f"per-channel blocks were fitted in the finite-horizon h2 norm over the first {length} lags"
                         + (" (weighted by the calibration inputs)" if weights else "")
                         + "; the kernels beyond that horizon are not controlled (h2_error is the infinite-horizon "
                           "error, h2_error_L the finite-horizon one)")
    return out


def _work(blocks, method) -> float:
    w = sum(len(b.units) * b.order**2 for b in blocks)
    return w * (0.05 if method == "modal" else 1.0)


def _collect(tasks: Sequence[dict], outs: Sequence[dict]) -> dict[str, dict]:
    """Merge chunk results per block (unit order restored)."""
    res: dict[str, dict] = {}
    for t, o in zip(tasks, outs):
        d = res.setdefault(t["block"], {"parts": []})
        d["parts"].append((t["chunk"], o))
    final = {}
    for name, d in res.items():
        n = sum(c.size for c, _ in d["parts"])
        modes: list = [None] * n
        keys = ("h2_error", "h2_norm", "h2_error_L", "h2_norm_L")
        arr = {k: np.full(n, np.nan) for k in keys}
        notes = []
        has_L = True
        for c, o in d["parts"]:
            for j, i in enumerate(c):
                modes[i] = o["modes"][j]
            for k in keys:
                if o.get(k) is None:
                    if k.endswith("_L"):
                        has_L = False
                    continue
                arr[k][c] = o[k]
            notes += o["notes"]
        final[name] = {"modes": modes, "notes": sorted(set(notes)), **{k: arr[k] for k in keys[:2]},
                       "h2_error_L": arr["h2_error_L"] if has_L else None,
                       "h2_norm_L": arr["h2_norm_L"] if has_L else None}
    return final


def _orders_from(order, blocks: Sequence[Block]) -> dict[str, int]:
    names = [b.name for b in blocks]
    if isinstance(order, Mapping):
        unknown = set(order) - set(names)
        if unknown:
            raise CompressionError(f"order names unknown blocks {sorted(unknown)}; blocks: {names}")
        raw = dict(order)
    elif isinstance(order, (list, tuple, np.ndarray)):
        if len(order) != len(blocks):
            raise CompressionError(f"order has {len(order)} entries for {len(blocks)} blocks")
        raw = dict(zip(names, order))
    else:
        raw = {n: order for n in names}
    out = {}
    full = {b.name: b.order for b in blocks}
    for n, r in raw.items():
        if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 1:
            raise CompressionError(f"order must be a positive integer (real order per unit), got {r!r} for {n}")
        if r % 2:
            raise CompressionError(f"order {r} for {n} is odd; the layouts store conjugate pairs, so the real "
                                   "order must be even")
        out[n] = min(int(r), full[n])
    return out


def _check_budget(budget, blocks, pm) -> float:
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not math.isfinite(budget) or budget <= 0:
        raise CompressionError(f"budget must be a positive number of SSM parameters, got {budget!r}")
    minimum = sum(pm[b.name][0] + pm[b.name][1] for b in blocks)
    if budget < minimum:
        raise CompressionError(f"budget {budget:g} is below the minimum {minimum:g} SSM parameters (one conjugate "
                               "pair per unit in every block)")
    return float(budget)


def _uniform_for_budget(budget: float, blocks, pm) -> dict[str, int]:
    """The largest common stored count (capped per block) whose SSM parameters fit the budget."""
    best = 1
    for k in range(1, max(b.stored for b in blocks) + 1):
        cost = sum(pm[b.name][0] + pm[b.name][1] * min(k, b.stored) for b in blocks)
        if cost <= budget + 1e-9:
            best = k
    return {b.name: min(2 * best, b.order) for b in blocks}


# ---------------------------------------------------------------------------------------------
# paper A: allocate orders by the bound, refine on the layer-weighted objective
# ---------------------------------------------------------------------------------------------
def _ladder_task(task: dict) -> dict:
    """Worker: reduced units for every candidate order (finite-horizon fits / modal ranking)."""
    with _single_blas():
        return _ladder_task_impl(task)


def _ladder_task_impl(task: dict) -> dict:
    modes: list[HalfModes] = task["modes"]
    L = task["length"]
    cands = sorted(task["candidates"])
    out: dict[int, list[HalfModes]] = {}
    if _is_siso_batch(modes):
        lam, _, _ = _siso_arrays(modes)
        t = _siso_kernels(modes, L)
        qmax = max(c // 2 for c in cands if c < modes[0].real_order) if any(
            c < modes[0].real_order for c in cands) else 0
        if qmax:
            _, _, _, path = fit_finite_horizon(t, qmax, init=lam, kappa=modes[0].kappa, return_path=True,
                                               iters=task.get("options", {}).get("iters", 60), sweep=False)
            for c in cands:
                if c < modes[0].real_order:
                    mu, Ch, _ = path[c // 2 - 1]
                    q = c // 2
                    out[c] = [HalfModes(lam=mu[j], B=np.ones((q, 1)), C=Ch[j][None, :], D=hm.D, kappa=hm.kappa)
                              for j, hm in enumerate(modes)]
    else:
        sc = task.get("scores")
        for c in cands:
            if c < max(hm.real_order for hm in modes):
                out[c] = [_select_by_score(hm, c, sc[j]) if sc is not None else modal_reducer(hm, c, L)
                          for j, hm in enumerate(modes)]
    for c in cands:
        out.setdefault(c, list(modes))
    return {"ladder": out}


def _layer_params(modes: Sequence[HalfModes], siso: bool) -> dict:
    """Reduced SSM parameters of one layer in the ``ssm_params`` format of the numpy models."""
    if not siso:
        (hm,) = modes
        return {"Lambda_bar": hm.lam, "B_bar": hm.B, "C": hm.C, "D": np.diag(hm.D) if hm.D.ndim == 2 and
                hm.D.shape[0] == hm.D.shape[1] and np.count_nonzero(hm.D - np.diag(np.diag(hm.D))) == 0 else hm.D,
                "M": hm.M if hm.M is not None else np.zeros((hm.p, hm.n, hm.n), np.complex128), "kappa": hm.kappa}
    n = max(hm.n for hm in modes)
    H = len(modes)
    lam = np.zeros((H, n), np.complex128)
    B = np.zeros((H, n), np.complex128)
    C = np.zeros((H, n), np.complex128)
    for h, hm in enumerate(modes):
        lam[h, : hm.n], B[h, : hm.n], C[h, : hm.n] = hm.lam, hm.B[:, 0], hm.C[0]
    return {"Lambda_bar": lam, "B_bar": B, "C": C, "D": np.array([hm.D[0, 0] for hm in modes]),
            "kappa": modes[0].kappa}


def _bound_method(ref, blocks, x_cal, budget, pm, ex, progress, options, scores):
    from .bound import BoundEvaluator

    ev = BoundEvaluator(ref, inputs=x_cal)
    L = ev.L
    siso = isinstance(ref, S4DModel)
    # candidate orders: all even orders up to 16, then a geometric ladder
    # candidate orders: even orders up to 16, then a geometric ladder, capped at 4x the budget's average
    per_total = sum(pm[b.name][1] for b in blocks)
    k_avg = max(1.0, (budget - sum(pm[b.name][0] for b in blocks)) / max(per_total, 1e-300))
    cap = max(8, int(4 * 2 * k_avg))
    cands = {}
    for b in blocks:
        full = b.order
        if siso:
            c = [r for r in range(2, min(full, 17), 2)] + [r for r in (20, 24, 32, 48, 64, 96, 128, 192, 256)
                                                           if r < full]
        else:  # MIMO blocks: every candidate costs a block h2 evaluation, use a coarser ladder
            c = [r for r in (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if r < full]
        c = [r for r in c if r <= cap]
        cands[b.name] = sorted(set(c)) + ([full] if cost_full_ok(pm[b.name], b, budget) else [])
    tasks = []
    for b in blocks:
        tasks.append({"block": b.name, "modes": [u.modes for u in b.units], "length": L,
                      "candidates": cands[b.name], "options": options, "scores": scores.get(b.name)})
    outs = run_tasks(_ladder_task, tasks, ex, progress, desc="mor-lqo bound: candidates")
    ladders = {t["block"]: o["ladder"] for t, o in zip(tasks, outs)}
    terms = {}
    for i, b in enumerate(blocks):
        for c in cands[b.name]:
            terms[(b.name, c)] = ev.layer_terms(i, _layer_params(ladders[b.name][c], siso))

    def cost(name, r):
        f, per = pm[name]
        return f + per * (r // 2)

    cur = {b.name: cands[b.name][0] for b in blocks}
    spent = sum(cost(n, r) for n, r in cur.items())
    def objective(sel):
        return float(np.max(ev.propagate([terms[(bb.name, sel[bb.name])] for bb in blocks], linear=True)))

    value = objective(cur)
    while True:
        best = None
        for b in blocks:
            for c in cands[b.name]:
                if c <= cur[b.name]:
                    continue
                dc = cost(b.name, c) - cost(b.name, cur[b.name])
                if spent + dc > budget + 1e-9:
                    continue
                trial = dict(cur)
                trial[b.name] = c
                v = objective(trial)
                gain = (value - v) / max(dc, 1e-300)
                if v < value and (best is None or gain > best[0]):
                    best = (gain, b.name, c, v, dc)
        if best is None:
            break
        _, name, c, value, dc = best
        cur[name] = c
        spent += dc
    orders = dict(cur)
    res_bound = ev.evaluate(None, [b.name for b in blocks], terms=[terms[(b.name, orders[b.name])] for b in blocks])
    weights = {b.name: lb.weight for b, lb in zip(blocks, res_bound.layers)}  # first-order layer weights
    # refinement at the chosen orders
    results = {}
    if siso:
        rtasks = []
        for b in blocks:
            rtasks += _block_tasks(b, orders[b.name], "h2", L, None, 1, options)
        outs = run_tasks(_reduce_task, rtasks, ex, progress, desc="mor-lqo bound: refine")
        results = _collect(rtasks, outs)
        # never worse than the ladder candidate (finite-horizon error per channel)
        for b in blocks:
            res = results[b.name]
            lad = ladders[b.name][orders[b.name]]
            e_lad = np.linalg.norm(_siso_kernels([u.modes for u in b.units], L) - _siso_kernels(lad, L), axis=1)
            worse = res["h2_error_L"] > e_lad
            if np.any(worse):
                res["modes"] = [lad[j] if w else m_ for j, (w, m_) in enumerate(zip(worse, res["modes"]))]
                errs = _unit_errors([u.modes for u in b.units], res["modes"], [u.system.dt for u in b.units], L)
                res.update(errs)
    else:
        results = _refine_joint(blocks, orders, ladders, weights, L, options)
    info = {"orders": orders, "value": res_bound.value, "linearised": value, "weights": weights,
            "budget": budget, "spent": spent}
    return orders, results, info


def cost_full_ok(pm_b, block: Block, budget: float) -> bool:
    """Whether keeping the block at full order can fit in the budget at all."""
    return pm_b[0] + pm_b[1] * block.stored <= budget


def _refine_joint(blocks, orders, ladders, weights, L, options) -> dict:
    """Joint L-BFGS refinement of MIMO/LQO blocks on sum_l w_l J_l (h2_gradient_joint)."""
    from ..reduction.gradient import H2Objective, h2_gradient_joint

    objs, inits, idx = [], [], []
    for b in blocks:
        r = orders[b.name]
        (u,) = b.units
        if r >= b.order:
            continue
        hm0 = refit_readout(u.modes, ladders[b.name][r][0], L, b.meta.get("R"))
        if _unit_errors([u.modes], [hm0], [u.system.dt], L)["h2_error_L"][0] <= _unit_errors(
                [u.modes], [ladders[b.name][r][0]], [u.system.dt], L)["h2_error_L"][0]:
            ladders[b.name][r] = [hm0]
        hm0 = ladders[b.name][r][0]
        w = max(float(weights.get(b.name, 1.0)), 1e-12)
        objs.append(H2Objective(u.system, r, weight=w))
        inits.append(hm0.system(dt=u.system.dt))
        idx.append(b)
    results = {}
    if objs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            roms, _info = h2_gradient_joint(objs, inits, tol=options.get("tol", 1e-7),
                                            maxiter=options.get("maxiter", 40))
    else:
        roms = []
    for b in blocks:
        (u,) = b.units
        fam = family(b.arch)
        notes: list[str] = []
        if b in idx:
            rom = roms[idx.index(b)]
            hm = _rom_to_modes(rom, u.modes, fam.kappa(b), fam.sign(b), b.meta.get("R"), L, notes)
            # never worse than the modal start (finite-horizon error)
            e_new = _unit_errors([u.modes], [hm], [u.system.dt], L)
            start = ladders[b.name][orders[b.name]][0]
            e_old = _unit_errors([u.modes], [start], [u.system.dt], L)
            if not e_new["h2_error_L"][0] <= e_old["h2_error_L"][0]:
                hm, errs = start, e_old
                notes.append("joint refinement did not lower the finite-horizon error; modal candidate kept")
            else:
                errs = e_new
        else:
            hm = u.modes
            errs = _unit_errors([u.modes], [hm], [u.system.dt], L)
        results[b.name] = {"modes": [hm], "notes": notes, **errs}
    return results
