"""Batched reducer :func:`h2_gradient_batch`: N conjugate-pair channels reduced at once (LTI).

The channels share one :class:`~.layout._Layout`; the closed forms of :mod:`.evaluate` run over the
channel axis, the optimiser is the vectorised BFGS of :mod:`.bfgs_batch`, and the errors reported are
recomputed with the numba Cauchy kernels (docs/theory.md §2.2, §3, §8.4), independently of the
optimiser's closed forms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..._validation import as_float_or_complex, check_dt, check_order
from ...errors import InvalidArgumentError, OrderError, ShapeError, UnknownMethodError, UnstableSystemError
from ._checks import _check_margin, _check_maxiter, _nonneg, _positive
from ._threads import _blas_threads
from .bfgs_batch import _bfgs_batch
from .evaluate import _Evaluator
from .layout import _LIFT, _clip_poles, _FullArrays, _Layout, _nu_bounds, _upper_half
from .modes import _mode_scores
from .starts import _greedy_select


class H2BatchResult(NamedTuple):
    """Result of :func:`h2_gradient_batch` (N channels, q = r/2 stored modes each).

    Attributes
    ----------
    lam : ndarray (N, q) complex
        Reduced stored eigenvalues (one per conjugate pair).
    B : ndarray (N, q, m) complex
        Reduced input matrices (ones for m = 1).
    C : ndarray (N, p, q) complex
        Reduced output matrices (output ``scale * Re(C x)``).
    h2_error : ndarray (N,)
        Absolute h2 error of each channel's real input-output map, recomputed with the numba Cauchy
        kernels (independent of the optimiser's closed forms).
    h2_norm : ndarray (N,)
        h2 norm of each full channel.
    init_error : ndarray (N,)
        Error of the best initial model (modal truncation, greedy modal selection, or the given one);
        ``h2_error <= init_error``.
    grad_norm : ndarray (N,)
        Infinity norm of the gradient of ``J / ||S||^2`` at the returned point.
    iterations : ndarray (N,) int
        BFGS iterations per channel (summed over the starts).
    converged : ndarray (N,) bool
        Gradient tolerance met, or the objective stalled at rounding level.
    scale : float
    dt : float
    """

    lam: np.ndarray
    B: np.ndarray
    C: np.ndarray
    h2_error: np.ndarray
    h2_norm: np.ndarray
    init_error: np.ndarray
    grad_norm: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    scale: float
    dt: float

    @property
    def relative_error(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.h2_error / self.h2_norm


def h2_gradient_batch(lam, B, C, r: int, *, dt: float, scale: float = 2.0, init="auto", tol: float = 1e-9,
                      maxiter: int = 200, margin: float = 0.0, ftol: float = 1e-13,
                      min_ratio: float = 1e-2) -> H2BatchResult:
    r"""Gradient-based h2-optimal reduction of N conjugate-pair channels at once (LTI).

    Channel ``i`` is the real-output system ``x_k = diag(lam[i]) x_{k-1} + B[i] u_k``,
    ``y = scale * Re(C[i] x)`` (discrete, ``dt > 0``) or its continuous analogue (``dt = 0``), i.e.
    ``LQOSystem.conjugate_pairs(lam[i], B[i], C[i], dt=dt, scale=scale)`` of real order ``2 n``.
    Each channel is reduced to real order ``r`` (``r/2`` stored modes) exactly as :func:`h2_gradient`
    does with ``project_c=True`` (same parametrisation, objective and projection of ``C^``), but
    vectorised over channels: the closed forms run as batched numpy kernels and the optimiser is a
    per-channel BFGS (no Python loop over channels).

    Parameters
    ----------
    lam : array_like, shape (N, n)
        Stored stable eigenvalues (``|lam| < 1`` discrete, ``Re lam < 0`` continuous).
    B : array_like, shape (N, n, m) or (N, n)
    C : array_like, shape (N, p, n) or (N, n)
    r : int
        Reduced real order per channel: even, ``2 <= r < 2 n``.
    dt : float
        Sampling time (0 for continuous time); only its positivity matters for the norms.
    scale : float, default 2.0
        Output scale :math:`\kappa` (2 for halved layouts such as S4/S4D, 1 for ``Re(Cx)`` layouts).
    init : {"auto", "modal", "greedy"} or tuple (lam0 (N, q), B0 (N, q, m), C0 (N, p, q))
        Initial half modes: ``"modal"``, dominant modes per channel by their real-output h2 norm;
        ``"greedy"``, modes chosen one by one by the projected error (see :func:`.starts._greedy_select`);
        ``"auto"`` (default), BFGS from both, the better result per channel; or given arrays.
    tol : float
        Gradient tolerance (infinity norm) for the normalised objective ``J / ||S||^2``.
    maxiter : int
        Maximum BFGS iterations per channel.
    margin : float
        Stability margin as in :func:`h2_gradient`.
    ftol : float
        A channel also stops when one iteration lowers ``J/||S||^2`` by less than ``ftol`` relative.

    Returns
    -------
    H2BatchResult
        Reduced ``lam (N, q)``, ``B (N, q, m)`` (ones for m = 1), ``C (N, p, q)``, per-channel errors
        (never worse than the initial model's), norms, gradient norms, iterations and flags.

    Raises
    ------
    OrderError, ShapeError, UnstableSystemError, ValueError
    """
    lam, B, C = _channel_arrays(lam, B, C)
    N, n = lam.shape
    m, p = B.shape[2], C.shape[1]
    dt = check_dt(dt)
    disc = dt > 0
    kappa = _positive(scale, "scale")
    r = check_order(r, 2 * n)
    if r % 2:
        raise OrderError(f"conjugate-pair channels are reduced to conjugate pairs, so r must be even; got r = {r}")
    q = r // 2
    margin = _check_margin(margin, disc)
    tol = _positive(tol, "tol")
    ftol = _positive(ftol, "ftol")
    _check_maxiter(maxiter)
    _check_stable_channels(lam, disc)

    ch = _Channels.of(lam, B, C, kappa, disc)
    lay = _Layout(pairs=True, q=q, m=m, p=p, disc=disc, margin=margin, kappa=kappa, quad=None, project_c=True,
                  nu_bounds=_nu_bounds(disc, lam), min_ratio=_nonneg(min_ratio, "min_ratio"))
    ev = _Evaluator(lay, fa=ch.fa)
    starts = _batch_starts(init, lam, B, C, ch.fa, lay, disc)
    best = None
    for start in starts:
        cur = _run_start(ev, ch, start, tol, ftol, int(maxiter))
        best = cur if best is None else _keep_better(best, cur)
    mu, Bh, Ch, err, err0, gnorm, it, conv = best
    return H2BatchResult(lam=mu, B=Bh, C=Ch, h2_error=err, h2_norm=np.sqrt(ch.nf), init_error=err0,
                         grad_norm=gnorm, iterations=it, converged=conv, scale=kappa, dt=dt)


def _channel_arrays(lam, B, C):
    """Channel arrays as complex ``lam (N, n)``, ``B (N, n, m)``, ``C (N, p, n)`` (2-D B, C: m = p = 1)."""
    lam = as_float_or_complex(lam, "lam").astype(np.complex128)
    B = as_float_or_complex(B, "B").astype(np.complex128)
    C = as_float_or_complex(C, "C").astype(np.complex128)
    if lam.ndim != 2:
        raise ShapeError(f"lam must have shape (N, n), got {lam.shape}")
    N, n = lam.shape
    if B.ndim == 2:
        B = B[:, :, None]
    if C.ndim == 2:
        C = C[:, None, :]
    if B.ndim != 3 or B.shape[:2] != (N, n) or B.shape[2] < 1:
        raise ShapeError(f"B must have shape (N, n, m) = ({N}, {n}, m), got {B.shape}")
    if C.ndim != 3 or C.shape[0] != N or C.shape[2] != n or C.shape[1] < 1:
        raise ShapeError(f"C must have shape (N, p, n) = ({N}, p, {n}), got {C.shape}")
    if N == 0:
        raise ShapeError("no channels")
    return lam, B, C


def _check_stable_channels(lam, disc: bool) -> None:
    """UnstableSystemError unless every channel is asymptotically stable."""
    stab = np.abs(lam) if disc else lam.real
    bad = np.flatnonzero(np.any(stab >= (1.0 if disc else 0.0), axis=1))
    if bad.size:
        raise UnstableSystemError(
            f"{bad.size} channel(s) are not asymptotically stable (first: channel {bad[0]}); "
            f"{'|lam| < 1' if disc else 'Re lam < 0'} is required")


class _Channels(NamedTuple):
    """The full channels in conjugation-closed form, their squared norms, and the batched full arrays."""

    lamF: np.ndarray
    BF: np.ndarray
    CF: np.ndarray
    nf: np.ndarray
    fa: _FullArrays
    kappa: float
    disc: bool

    @classmethod
    def of(cls, lam, B, C, kappa: float, disc: bool) -> _Channels:
        from ...kernels.cauchy import cauchy_norm2

        lamF = np.concatenate([lam, np.conj(lam)], axis=1)
        BF = np.concatenate([B, np.conj(B)], axis=1)
        CF = (kappa / 2) * np.concatenate([C, np.conj(C)], axis=2)
        nf = np.asarray(cauchy_norm2(lamF, BF, CF, disc), float)
        fa = _FullArrays(lamF, BF, CF, None, nf, np.zeros(lam.shape[0]), disc)
        return cls(lamF, BF, CF, nf, fa, kappa, disc)

    def errors(self, mu_, B_, C_) -> np.ndarray:
        """h2 errors (N,) of the reduced half modes ``mu_ (N, q)``, ``B_``, ``C_`` (numba Cauchy kernels)."""
        from ...kernels.cauchy import cauchy_inner, cauchy_norm2

        kappa, disc = self.kappa, self.disc
        lf = np.concatenate([mu_, np.conj(mu_)], axis=1)
        bf = np.concatenate([B_, np.conj(B_)], axis=1)
        cf = (kappa / 2) * np.concatenate([C_, np.conj(C_)], axis=2)
        e2 = self.nf + np.asarray(cauchy_norm2(lf, bf, cf, disc)) - 2 * np.real(
            cauchy_inner(self.lamF, self.BF, self.CF, lf, bf, cf, disc))
        return np.sqrt(np.maximum(e2, 0.0))


def _batch_starts(init, lam, B, C, fa: _FullArrays, lay: _Layout, disc: bool) -> list:
    """Initial half modes ``(lam0 (N, q), B0 (N, q, m), C0 (N, p, q))``, one tuple per start."""
    q = lay.q
    lam_o, B_o, C_o = _upper_half(lam, B, C)  # orient the candidate modes (same system)

    def take(sel):
        sel = np.sort(sel, axis=1)
        return (np.take_along_axis(lam_o, sel, axis=1), np.take_along_axis(B_o, sel[:, :, None], axis=1),
                np.take_along_axis(C_o, sel[:, None, :], axis=2))

    if not isinstance(init, str):
        return [_given_start(init, lam.shape[0], q, B.shape[2], C.shape[1], disc)]
    if init not in ("auto", "modal", "greedy"):
        raise UnknownMethodError(f"init must be 'auto', 'modal', 'greedy' or a tuple (lam0, B0, C0), got {init!r}")
    starts = []
    if init in ("auto", "modal"):
        sc = _mode_scores(lam, B, C, None, disc, pairs=True)
        starts.append(take(np.argsort(-sc, axis=1, kind="stable")[:, :q]))
    if init in ("auto", "greedy"):
        with _blas_threads(small=True):
            starts.append(take(_greedy_select(fa, lay, lam_o, B_o, C_o)))
    return starts


def _given_start(init, N: int, q: int, m: int, p: int, disc: bool):
    """Validate given initial half modes ``(lam0, B0, C0)`` and orient them (``Im lam0 >= 0``)."""
    try:
        lam0, B0, C0 = init
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError("init must be 'auto', 'modal', 'greedy' or a tuple (lam0, B0, C0)") from exc
    lam0 = as_float_or_complex(lam0, "lam0").astype(np.complex128)
    B0 = as_float_or_complex(B0, "B0").astype(np.complex128)
    C0 = as_float_or_complex(C0, "C0").astype(np.complex128)
    if B0.ndim == 2:
        B0 = B0[:, :, None]
    if C0.ndim == 2:
        C0 = C0[:, None, :]
    if lam0.shape != (N, q) or B0.shape != (N, q, m) or C0.shape != (N, p, q):
        raise ShapeError(f"init arrays must have shapes ({N}, {q}), ({N}, {q}, {m}), ({N}, {p}, {q}); "
                         f"got {lam0.shape}, {B0.shape}, {C0.shape}")
    if np.any((np.abs(lam0) if disc else lam0.real) >= (1.0 if disc else 0.0)):
        raise UnstableSystemError("the initial modes must be stable")
    return _upper_half(lam0, B0, C0)


def _run_start(ev: _Evaluator, ch: _Channels, start, tol, ftol, maxiter: int) -> list:
    """BFGS from one start; ``[mu, B, C, error, initial error, gradient norm, iterations, converged]``.

    A channel whose result is worse than its initial model returns the initial model.
    """
    lay = ev.lay
    lam0, B0, C0 = start
    N, q = lam0.shape
    if lay.margin > 0:  # initial poles violating the margin are moved onto it
        lam0 = _clip_poles(lam0, lay.margin, lay.disc)
    th0 = lay.start_theta(lam0, B0, lift=_LIFT)
    if lay.opt_b:
        B0s, C0s = B0, C0
    else:  # state rescaled so that B^ = 1
        B0s, C0s = np.ones((N, q, 1), np.complex128), C0 * B0[:, None, :, 0]
    lo = np.full(lay.size, -np.inf)
    hi = np.full(lay.size, np.inf)
    lo[lay.slices["nu"]], hi[lay.slices["nu"]] = lay.nu_bounds
    norm_f = np.maximum(ch.nf, np.finfo(float).tiny)

    def fun(x, idx):
        J, G, _ = ev(x, idx=idx, grad=True)
        s = norm_f[idx]
        return J / s, G / s[:, None]

    with _blas_threads(small=True):
        x, f, g, it, conv = _bfgs_batch(fun, th0, lo, hi, tol, ftol, maxiter)
    _, _, Ch = ev(x, grad=False)
    mu, _, _, Bh, _, _, _ = ev.unpack(x)
    Bh = np.array(Bh)
    err0 = ch.errors(lam0, B0s, C0s)  # the initial model itself (th0 may have lifted near-real pairs)
    err = ch.errors(mu, Bh, Ch)
    worse = err > err0
    if worse.any():
        mu[worse], Bh[worse], Ch[worse], err[worse] = lam0[worse], B0s[worse], C0s[worse], err0[worse]
    gnorm = np.max(np.abs(g), axis=1) if g.size else np.zeros(N)
    return [mu, Bh, Ch, err, err0, gnorm, it, conv]


def _keep_better(best: list, cur: list) -> list:
    """Per channel, the better of two starts' results (the initial error: the best start's; iterations: summed)."""
    better = cur[3] < best[3]
    for k in range(len(best)):
        if k == 4:  # the guarantee holds against the best initial model
            best[k] = np.minimum(best[k], cur[k])
        elif k == 6:
            best[k] = best[k] + cur[k]  # total iterations over the starts
        else:
            best[k] = np.where(better.reshape((-1,) + (1,) * (best[k].ndim - 1)), cur[k], best[k])
    return best
