r"""Vectorised reduction of many small systems (e.g. the SISO channels of an S4D layer).

:func:`reduce_batch` reduces a list of systems. When they are conjugate-pair LTI systems of one
shape (the Deep-SSM case: ``LQOSystem.conjugate_pairs`` with n stored modes each, real order 2n) the
work is done for all channels at once — fused numba kernels (``nogil``) per chunk of channels and
batched numpy/LAPACK calls on stacked (N, 2n, 2n) arrays, on one thread per core (chunks of at
least 64 channels), with single-threaded BLAS; no Python-level work per channel except building
the returned objects:

* **"bt"** — balanced truncation of the exact real realisation (state ``[Re x; Im x]``, the same
  system as ``sys.realify()``), Gramians from closed forms in half coordinates (docs/theory.md §8.4),
  for channel ``lam (n,)``, ``B (n, m)``, ``C (p, n)``, output factor :math:`\kappa`::

      K_ik = 1/(1 - lam_i conj(lam_k)),  Kt_ik = 1/(1 - lam_i lam_k)
             (continuous: -1/(lam_i + conj(lam_k)),  -1/(lam_i + lam_k))
      P  = (B B^H) o K,        Pt = (B B^T) o Kt
      Qh = (C^T conj(C)) o K,  Qt = (C^T C) o Kt
      P_r = 1/2 [[Re(P + Pt), Im(Pt - P)], [Im(Pt + P), Re(P - Pt)]]
      Q_r = k^2/2 [[Re(Qh + Qt), Im(Qh - Qt)], [-Im(Qt + Qh), Re(Qh - Qt)]]

  (``_realified_gramians`` is the numpy reference of the numba kernel), then square-root BT per
  channel in one fused kernel (:mod:`mor_lqo.kernels.bt_pairs_numba`): one pivoted-Cholesky factor
  P = Z Z^T, the Hankel singular values as square roots of the eigenvalues of Z^T Q Z from one
  tridiagonalisation, which also yields the r dominant eigenvectors (LAPACK ``dsytrd``/``dsterf``/
  ``dstein``/``dormtr`` called from numba), projection. Channels whose sigma_r^2 is below 1e-10
  sigma_1^2 (where squaring the singular values would cost accuracy) take the two-factor path
  (both Cholesky factors, SVD of Z_P^T Z_Q, r dominant singular vectors by shifted inverse
  iteration + Rayleigh–Ritz); ``algorithm="two_factor"`` forces it for all. Then a batched
  eigendecomposition of the (N, r, r) reduced matrices that rewrites every ROM with complex poles
  as a conjugate-pair system (``r/2`` stored modes, same ``scale``), ready for a halved layout.
* **"modal"** — per-channel pair scores (the h2 norm of each real 2-state pair subsystem), top
  ``r/2`` pairs; the error is the norm of the discarded pairs (exact, no cancellation).
* **"h2"** — :func:`mor_lqo.reduction.gradient.h2_gradient_batch` (vectorised BFGS).

Other inputs (dense systems, quadratic outputs, mixed shapes) are reduced one by one with the
single-system reducers; ``result.info["vectorised"]`` says which path was taken.

The h2 errors of the vectorised paths are evaluated from the reduced models as returned (modal
form), with closed Cauchy forms against the conjugation-closed 2n form of each channel.
"""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._validation import check_choice, check_order
from ..errors import (
    NotASystemError,
    OrderError,
    ShapeError,
    UnexpectedOptionError,
    UnknownMethodError,
    UnstableSystemError,
)
from ..kernels.bt_pairs_numba import bt_pairs_one_factor, bt_project_two_factor, gram_factors_two_factor
from ..systems import LQOSystem
from .balanced import HSVSplitWarning, UnstableROMWarning, _single_threaded_blas, balanced_truncation
from .modal import modal_truncation
from .result import ReductionResult

__all__ = ["reduce_batch", "BatchResult", "random_s4d_channels", "bt_pairs_batch"]

_METHODS = {"bt": "bt", "balanced_truncation": "bt", "modal": "modal", "modal_truncation": "modal",
            "h2": "h2", "h2_gradient": "h2"}
_COND_MAX = 1e8  # eigenvector condition above which a reduced channel is kept in real dense form
_SPLIT_RTOL = 1e-8
_ONE_FACTOR_MIN_RATIO = 1e-10  # sigma_r^2 / sigma_1^2 below which the two-factor SVD path is used


# --------------------------------------------------------------------------------------------- result
class BatchResult(Sequence):
    """Result of :func:`reduce_batch`: a sequence of per-channel :class:`ReductionResult` plus arrays.

    ``result[i].rom``, ``len(result)``, slicing and iteration work as for a list of results. On the
    vectorised paths the per-channel objects are built on first access (cached), so code that only
    uses the stacked arrays pays nothing for them.

    Attributes
    ----------
    method : str
        ``"bt"``, ``"modal"`` or ``"h2"``.
    h2_errors, h2_norms : ndarray (N,)
        Absolute h2 errors (``inf`` for an unstable reduced channel) and full-model norms.
    hsv : ndarray (N, order) or None
        Hankel singular values of every channel (BT only).
    error_bounds : ndarray (N,) or None
        :math:`2\\sum_{k>r}\\sigma_k` per channel (BT only).
    paired : ndarray (N,) bool
        True where the reduced channel is a conjugate-pair system (``lam``, ``B``, ``C`` valid);
        False where it is returned as a real dense system (real reduced poles, odd r, or a (nearly)
        defective reduced matrix).
    lam, B, C : ndarray (N, r/2), (N, r/2, m), (N, p, r/2) or None
        Stored half modes of the conjugate-pair ROMs (NaN rows where ``paired`` is False), in the
        convention of :meth:`LQOSystem.conjugate_pairs` with ``scale``.
    scale : ndarray (N,)
        Output factor :math:`\\kappa` of each channel.
    info : dict
        ``vectorised`` (bool) and method-specific entries.
    """

    def __init__(self, results=None, *, method, h2_errors, h2_norms, hsv=None, error_bounds=None,
                 paired=None, lam=None, B=None, C=None, scale=None, info=None, factory=None):
        if results is None:
            if factory is None:
                raise TypeError("BatchResult needs results or a factory")
            self._items = [None] * len(h2_errors)
        else:
            self._items = list(results)
        self._factory = factory
        self.method = method
        self.h2_errors = np.asarray(h2_errors, float)
        self.h2_norms = np.asarray(h2_norms, float)
        self.hsv = hsv
        self.error_bounds = error_bounds
        n = len(self)
        self.paired = np.zeros(n, bool) if paired is None else np.asarray(paired, bool)
        self.lam, self.B, self.C = lam, B, C
        self.scale = scale
        self.info = {} if info is None else info
        for arr in (self.h2_errors, self.h2_norms, self.hsv, self.error_bounds, self.paired, lam, B, C, scale):
            if isinstance(arr, np.ndarray):  # the lazily built results read these arrays
                arr.setflags(write=False)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        n = len(self._items)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {n} results")
        item = self._items[i]
        if item is None:
            item = self._items[i] = self._factory(i)
        return item

    @property
    def roms(self) -> list:
        """Reduced models, one per channel."""
        return [res.rom for res in self]

    @property
    def relative_errors(self) -> np.ndarray:
        """``h2_errors / h2_norms``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.h2_errors / self.h2_norms

    def __repr__(self) -> str:
        return (f"BatchResult(method={self.method!r}, N={len(self)}, "
                f"mean relative h2 error={np.mean(self.relative_errors):.4g}, "
                f"paired={int(self.paired.sum())}/{len(self)}, "
                f"vectorised={self.info.get('vectorised')})")


# --------------------------------------------------------------------------------------------- kernels
def _kern(l1, l2, discrete: bool, conj: bool = True):
    """Cauchy kernel between the last axes: (..., n1, n2)."""
    a = l1[..., :, None]
    b = np.conj(l2[..., None, :]) if conj else l2[..., None, :]
    if discrete:
        return 1.0 / (1.0 - a * b)
    return -1.0 / (a + b)


def _realified_gramians(lam, B, C, kappa, discrete: bool):
    """Gramians (N, 2n, 2n) of the real realisations ``[Re x; Im x]`` of N conjugate-pair channels."""
    N, n = lam.shape
    K = _kern(lam, lam, discrete)
    Kt = _kern(lam, lam, discrete, conj=False)
    Bt = np.swapaxes(B, 1, 2)
    Ct = np.swapaxes(C, 1, 2)
    P = (B @ Bt.conj()) * K
    Pt = (B @ Bt) * Kt
    Qh = (Ct @ C.conj()) * K
    Qt = (Ct @ C) * Kt
    Pr = np.empty((N, 2 * n, 2 * n))
    Pr[:, :n, :n] = (P.real + Pt.real) / 2
    Pr[:, :n, n:] = (Pt.imag - P.imag) / 2
    Pr[:, n:, :n] = (Pt.imag + P.imag) / 2
    Pr[:, n:, n:] = (P.real - Pt.real) / 2
    k2 = (kappa**2 / 2)[:, None, None]
    Qr = np.empty((N, 2 * n, 2 * n))
    Qr[:, :n, :n] = k2 * (Qh.real + Qt.real)
    Qr[:, :n, n:] = k2 * (Qh.imag - Qt.imag)
    Qr[:, n:, :n] = -k2 * (Qt.imag + Qh.imag)
    Qr[:, n:, n:] = k2 * (Qh.real - Qt.real)
    Pr = (Pr + np.swapaxes(Pr, 1, 2)) / 2
    Qr = (Qr + np.swapaxes(Qr, 1, 2)) / 2
    return Pr, Qr


def _modal_norms(mu, Bz, Cz, discrete):
    """Squared h2 norms (N,) of diagonal systems (mu (N, q), Bz (N, q, m), Cz (N, p, q))."""
    K = _kern(mu, mu, discrete)
    val = np.einsum("npi,npk,nim,nkm,nik->n", Cz, Cz.conj(), Bz, Bz.conj(), K, optimize=True)
    return val.real


def _modal_inner(lf, Bf, Cf, mu, Bz, Cz, discrete):
    """Real inner products (N,) of two diagonal systems (Cauchy cross Gramian)."""
    K = _kern(lf, mu, discrete)
    val = np.einsum("npi,npk,nim,nkm,nik->n", Cf, Cz.conj(), Bf, Bz.conj(), K, optimize=True)
    return val.real


def _half_norms(lam, B, C, kappa, discrete):
    r"""Squared real-input h2 norms (N,) of conjugate-pair channels, docs/theory.md §8.4:
    :math:`(\kappa^2/2)\,\mathrm{Re}[\mathrm{tr}(CPC^H) + \mathrm{tr}(C\tilde P C^T)]`."""
    K = _kern(lam, lam, discrete)
    Kt = _kern(lam, lam, discrete, conj=False)
    t1 = np.einsum("npi,npk,nim,nkm,nik->n", C, C.conj(), B, B.conj(), K, optimize=True)
    t2 = np.einsum("npi,npk,nim,nkm,nik->n", C, C, B, B, Kt, optimize=True)
    return (kappa**2 / 2) * (t1 + t2).real


def _feedthrough(lam, B, C, kappa, D, discrete, conv_current):
    """D contribution to the squared full-model norms (discrete time; inf for continuous D != 0)."""
    N = lam.shape[0]
    dd = np.einsum("npm,npm->n", D.conj(), D).real
    if not discrete:
        return np.where(dd > 0, np.inf, 0.0)
    out = dd.copy()
    if np.any(conv_current):
        CB = kappa[:, None, None] * np.einsum("npi,nim->npm", C, B).real  # lag-0 kernel of the real map
        out = out + np.where(conv_current, 2 * np.einsum("npm,npm->n", CB, D).real, 0.0)
    return out.reshape(N)


# --------------------------------------------------------------------------------------------- BT
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(nt: int) -> ThreadPoolExecutor:
    """A kept thread pool of nt workers (starting threads costs milliseconds on a busy machine).

    Keyed by process id as well: a forked child (process-pool worker) must not reuse the parent's
    pool, whose threads do not exist in the child."""
    key = (os.getpid(), nt)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(nt, thread_name_prefix="mor_lqo_batch")
    return _POOLS[key]


def _nthreads(N: int) -> int:
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        ncpu = os.cpu_count() or 1
    return max(1, min(ncpu, 8, N // 64))


def _bt_chunk_two_factor(lam, B, C, kappa, r, discrete):
    """Two-factor square-root BT (both pivoted-Cholesky factors, SVD of Z_P^T Z_Q) of a chunk."""
    ZP, ZQ, ranks, norm2 = gram_factors_two_factor(lam, B, C, kappa, discrete)
    H = np.swapaxes(ZP, 1, 2) @ ZQ
    s = np.linalg.svd(H, compute_uv=False)
    floor = H.shape[1] * np.finfo(float).eps * s[:, 0]
    bad = ~(s[:, r - 1] > floor)
    if np.any(bad):
        return None, None, None, s, norm2, bad
    Ah, Bh, Ch = bt_project_two_factor(H, s, ZP, ZQ, lam, B, C, kappa, r)
    return Ah, Bh, Ch, s, norm2, bad


def _bt_chunk(lam, B, C, kappa, r, discrete, method="auto"):
    """Square-root BT of a chunk of channels up to the real reduced matrices.

    ``method="auto"``: the one-factor kernel (:mod:`mor_lqo.kernels.bt_pairs_numba`) for every channel
    whose sigma_r^2 > ``_ONE_FACTOR_MIN_RATIO`` sigma_1^2, the two-factor SVD path for the others;
    ``"two_factor"``: the SVD path for all. Returns (Ah, Bh, Ch, hsv, norm2, bad, n_two_factor).
    """
    if method == "two_factor":
        out = _bt_chunk_two_factor(lam, B, C, kappa, r, discrete)
        return (*out, lam.shape[0])
    Ah, Bh, Ch, hsv, norm2, ok = bt_pairs_one_factor(lam, B, C, kappa, r, discrete, _ONE_FACTOR_MIN_RATIO)
    bad = np.zeros(lam.shape[0], bool)
    redo = np.flatnonzero(~ok)
    if redo.size:
        A2, B2, C2, s2, _, bad2 = _bt_chunk_two_factor(lam[redo], B[redo], C[redo], kappa[redo], r, discrete)
        hsv[redo] = s2
        bad[redo] = bad2
        if A2 is not None:
            Ah[redo], Bh[redo], Ch[redo] = A2, B2, C2
    return Ah, Bh, Ch, hsv, norm2, bad, redo.size


def bt_pairs_batch(lam, B, C, r: int, *, discrete: bool, scale=2.0, algorithm: str = "auto") -> dict:
    r"""Balanced truncation of N conjugate-pair channels (arrays in, arrays out).

    Parameters
    ----------
    lam : ndarray (N, n) complex
        Stored stable eigenvalues of each channel.
    B : ndarray (N, n, m)
    C : ndarray (N, p, n)
    r : int
        Reduced real order, ``1 <= r < 2 n``.
    discrete : bool
    scale : float or ndarray (N,)
        Output factor :math:`\kappa` (see :meth:`LQOSystem.conjugate_pairs`).
    algorithm : {"auto", "two_factor"}
        ``"auto"``: one-factor square-root BT (:mod:`mor_lqo.kernels.bt_pairs_numba`: one pivoted
        Cholesky factor, one tridiagonalisation of :math:`Z_P^T Q Z_P`) for every channel with
        :math:`\sigma_r^2 > 10^{-10}\sigma_1^2`, the two-factor path for the others;
        ``"two_factor"``: both Cholesky factors and the SVD of :math:`Z_P^T Z_Q` for every channel
        (Hankel singular values to full relative accuracy down to :math:`\epsilon\sigma_1`; the
        one-factor values have absolute error :math:`\sim\epsilon\sigma_1^2/\sigma_k`).

    Returns
    -------
    dict
        ``A`` (N, r, r), ``B`` (N, r, m), ``C`` (N, p, r): real BT ROMs (balanced coordinates of
        the real realisation); ``hsv`` (N, 2n); ``norm2`` (N,) squared norms of the strictly proper
        full channels; ``paired`` (N,) bool; ``lam_h`` (N, r/2), ``B_h``, ``C_h``: conjugate-pair
        form of the ROMs (NaN where not paired); ``err2`` (N,) squared h2 errors (``inf`` for
        unstable ROMs, NaN where they must be evaluated densely: see ``dense``); ``dense`` (N,)
        bool: channels whose modal form is ill-conditioned; ``stable`` (N,) bool; ``kappa`` (N,);
        ``two_factor`` (int): number of channels reduced by the two-factor path.

    Notes
    -----
    Channels are processed in chunks on ``min(#cores, N // 64)`` threads (numba kernels without
    the GIL, single-threaded BLAS); the result does not depend on the chunking.
    """
    lam = np.ascontiguousarray(lam, np.complex128)
    B = np.ascontiguousarray(B, np.complex128)
    C = np.ascontiguousarray(C, np.complex128)
    N, n = lam.shape
    m, p = B.shape[2], C.shape[1]
    d = 2 * n
    r = check_order(r, d)
    kappa = np.ascontiguousarray(np.broadcast_to(np.asarray(scale, float), (N,)))
    nt = _nthreads(N)
    bounds = np.linspace(0, N, nt + 1).astype(int)
    if algorithm not in ("auto", "two_factor"):
        raise UnknownMethodError(f"algorithm must be 'auto' or 'two_factor', got {algorithm!r}")
    args = [(lam[a:b], B[a:b], C[a:b], kappa[a:b], r, bool(discrete), algorithm)
            for a, b in zip(bounds[:-1], bounds[1:])]
    with _single_threaded_blas():
        if nt == 1:
            parts = [_bt_chunk(*args[0])]
        else:
            parts = list(_pool(nt).map(lambda a: _bt_chunk(*a), args))
    s = np.concatenate([x[3] for x in parts])
    bad = np.flatnonzero(np.concatenate([x[5] for x in parts]))
    if bad.size:
        raise OrderError(
            f"r = {r} exceeds the numerical rank of the Hankel operator of channel(s) "
            f"{bad[:10].tolist()}{' ...' if bad.size > 10 else ''} (sigma_r at rounding level); "
            "reduce those channels to a lower order"
        )
    Ah = np.concatenate([x[0] for x in parts])
    Bh = np.concatenate([x[1] for x in parts])
    Ch = np.concatenate([x[2] for x in parts])
    norm2 = np.concatenate([x[4] for x in parts])
    hsv = s
    if r < d:
        split = np.flatnonzero(s[:, r] >= s[:, r - 1] * (1 - _SPLIT_RTOL))
        if split.size:
            warnings.warn(
                f"r = {r} splits a repeated Hankel singular value in {split.size} channel(s) "
                f"{split[:10].tolist()}; their reduced models are not unique",
                HSVSplitWarning,
                stacklevel=4,
            )

    # re-diagonalise the reduced real models
    mu, X = np.linalg.eig(Ah)
    mu = mu.astype(np.complex128)
    X = X.astype(np.complex128)
    stable = (np.abs(mu) < 1).all(axis=1) if discrete else (mu.real < 0).all(axis=1)
    sv = np.linalg.svd(X, compute_uv=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = sv[:, 0] / sv[:, -1]
    good = np.isfinite(cond) & (cond < _COND_MAX)
    Xs = np.where(good[:, None, None], X, np.eye(r))  # keep solves well defined
    Bz = np.linalg.solve(Xs, Bh.astype(np.complex128))
    Cz = Ch @ Xs
    paired = good & (r % 2 == 0) & (mu.imag != 0).all(axis=1)
    q = r // 2
    lam_h = np.full((N, q), np.nan + 0j)
    B_h = np.full((N, q, m), np.nan + 0j)
    C_h = np.full((N, p, q), np.nan + 0j)
    if q and paired.any():
        lam_h[paired] = mu[paired, 0::2]
        B_h[paired] = Bz[paired, 0::2]
        C_h[paired] = (2 / kappa[paired, None, None]) * Cz[paired][:, :, 0::2]

    # errors of the returned models: ||S||^2 + ||S^||^2 - 2 <S, S^>, conjugation-closed full form
    lf = np.concatenate([lam, lam.conj()], axis=1)
    Bf = np.concatenate([B, B.conj()], axis=1)
    Cf = (kappa[:, None, None] / 2) * np.concatenate([C, C.conj()], axis=2)
    err2 = np.full(N, np.nan)
    ok = good & stable
    if np.any(ok):
        nr = _modal_norms(mu[ok], Bz[ok], Cz[ok], discrete)
        ip = _modal_inner(lf[ok], Bf[ok], Cf[ok], mu[ok], Bz[ok], Cz[ok], discrete)
        err2[ok] = np.maximum(norm2[ok] + nr - 2 * ip, 0.0)
    err2[~stable] = np.inf
    return {"A": Ah, "B": Bh, "C": Ch, "hsv": hsv, "norm2": norm2, "paired": paired, "lam_h": lam_h,
            "B_h": B_h, "C_h": C_h, "err2": err2, "dense": ~good & stable, "stable": stable,
            "kappa": kappa, "two_factor": int(sum(x[6] for x in parts))}


# --------------------------------------------------------------------------------------------- modal
def _pair_scores(lam, B, C, kappa, discrete):
    """h2^2 norms (N, n) of each stored pair's real 2-state subsystem (docs/theory.md §8.4)."""
    c2 = np.sum(np.abs(C) ** 2, axis=1)  # (N, n)
    ctc = np.sum(C * C, axis=1)
    b2 = np.sum(np.abs(B) ** 2, axis=2)
    btb = np.sum(B * B, axis=2)
    if discrete:
        k1 = 1.0 / (1.0 - np.abs(lam) ** 2)
        k2 = 1.0 / (1.0 - lam * lam)
    else:
        k1 = -1.0 / (2 * lam.real)
        k2 = -1.0 / (2 * lam)
    return (kappa[:, None] ** 2 / 2) * (c2 * b2 * k1 + ctc * btb * k2).real


def _modal_pairs_batch(lam, B, C, kappa, r, discrete):
    if r % 2:
        raise OrderError(f"modal truncation of conjugate-pair channels keeps whole pairs: r must be even, got {r}")
    q = r // 2
    scores = _pair_scores(lam, B, C, kappa, discrete)
    order = np.argsort(-scores, axis=1, kind="stable")
    keep = np.sort(order[:, :q], axis=1)
    drop = np.sort(order[:, q:], axis=1)
    take = np.take_along_axis
    lk, ld = take(lam, keep, 1), take(lam, drop, 1)
    Bk, Bd = take(B, keep[:, :, None], 1), take(B, drop[:, :, None], 1)
    Ck, Cd = take(C, keep[:, None, :], 2), take(C, drop[:, None, :], 2)
    err2 = np.maximum(_half_norms(ld, Bd, Cd, kappa, discrete), 0.0)  # error system = dropped pairs
    norm2 = _half_norms(lam, B, C, kappa, discrete)
    return {"lam_h": lk, "B_h": Bk, "C_h": Ck, "err2": err2, "norm2": norm2, "kept": keep, "scores": scores}


# --------------------------------------------------------------------------------------------- driver
def _stack_pairs(systems: Sequence[LQOSystem]):
    """Stacked half data if all systems are conjugate-pair LTI systems of one shape, else None."""
    halves = [s.half for s in systems]
    if any(h is None for h in halves) or any(s.has_quadratic for s in systems):
        return None
    shapes = {(h[0].shape[0], s.m, s.p, s.is_discrete) for s, h in zip(systems, halves)}
    if len(shapes) != 1:
        return None
    D = np.stack([s.D for s in systems])
    if np.any(np.imag(D)):
        return None
    lam = np.stack([h[0] for h in halves])
    B = np.stack([h[1] for h in halves])
    C = np.stack([h[2] for h in halves])
    kappa = np.array([h[4] for h in halves], float)
    return lam, B, C, kappa, np.real(D), shapes.pop()[3]


def _check_stable_batch(lam, discrete):
    bad = np.flatnonzero((np.abs(lam) >= 1).any(axis=1) if discrete else (lam.real >= 0).any(axis=1))
    if bad.size:
        raise UnstableSystemError(
            f"channel(s) {bad[:10].tolist()}{' ...' if bad.size > 10 else ''} are not asymptotically "
            "stable; reduce_batch needs stable systems"
        )


def _dense_rom(s: LQOSystem, A, B, C) -> LQOSystem:
    D = s.D.real if not np.any(np.imag(s.D)) else s.D
    return LQOSystem._make(A=A, B=B, C=C, D=D, dt=s.dt, convention=s.convention)


def _pair_rom(s: LQOSystem, lam, B, C, kappa) -> LQOSystem:
    return LQOSystem.conjugate_pairs(lam, B, C, D=s.D, dt=s.dt, scale=kappa, convention=s.convention)


def reduce_batch(systems: Sequence[LQOSystem], r: int, method: str = "bt", **kw) -> BatchResult:
    r"""Reduce many small systems to real order r at once.

    Parameters
    ----------
    systems : sequence of LQOSystem
        E.g. the 1024 SISO channels of an S4D layer, each ``LQOSystem.conjugate_pairs(lam_i, B_i,
        C_i, dt=dt_i, scale=2)``. Channels may have different dt (norms do not depend on it); each
        ROM keeps its channel's dt, convention and D. Inputs are never modified.
    r : int
        Reduced real order (the same for every channel), ``1 <= r < order``.
    method : {"bt", "modal", "h2"}
        Balanced truncation, modal truncation (r even for conjugate-pair channels) or gradient-based
        h2-optimal reduction (:func:`mor_lqo.reduction.gradient.h2_gradient_batch`; ``**kw`` are
        passed to it, e.g. ``maxiter``, ``tol``). Aliases: "balanced_truncation",
        "modal_truncation", "h2_gradient".
    **kw
        Method options: ``algorithm="auto"|"two_factor"`` for the vectorised BT path (see
        :func:`bt_pairs_batch`); for the per-system fallback: passed to the single-system reducer.

    Returns
    -------
    BatchResult
        A list of per-channel :class:`ReductionResult` with stacked arrays (``h2_errors``,
        ``h2_norms``, ``hsv``, ``error_bounds``, ``paired``, half modes ``lam``/``B``/``C``); see
        :class:`BatchResult`.

    Notes
    -----
    *Vectorised path* (all systems conjugate-pair LTI systems with the same number of stored modes,
    m, p and time domain): see the module docstring. BT ROMs are rewritten as conjugate-pair systems
    (``r/2`` stored modes) where their poles are complex pairs and the eigenvector matrix is
    well-conditioned (cond < 1e8); otherwise (odd r, real reduced poles) the channel's ROM is the
    real dense BT model (``paired[i] = False``). Single-system :func:`balanced_truncation` of the
    same channel gives the same ROM up to a state transformation (same error).
    *Fallback* (anything else): the single-system reducer per system.

    Raises
    ------
    OrderError
        Invalid r, odd r for modal truncation of conjugate-pair channels, or r above the numerical
        rank of a channel's Hankel operator (BT).
    UnstableSystemError
        If a channel is unstable.
    """
    if isinstance(systems, LQOSystem):
        raise NotASystemError("reduce_batch expects a sequence of systems; use balanced_truncation "
                              "for one")
    systems = list(systems)
    if not systems:
        raise ShapeError("reduce_batch needs at least one system")
    for s in systems:
        if not isinstance(s, LQOSystem):
            raise NotASystemError(f"expected LQOSystem objects, got {type(s).__name__}")
    check_choice(method, sorted(_METHODS), "method")
    method = _METHODS[method]
    for order in {s.order for s in systems}:
        check_order(r, order)
    stacked = _stack_pairs(systems)
    if stacked is None:
        return _loop(systems, r, method, kw)
    lam, B, C, kappa, D, disc = stacked
    _check_stable_batch(lam, disc)
    conv_current = np.array([s.convention == "current" for s in systems])
    fd = _feedthrough(lam, B, C, kappa, D, disc, conv_current)
    with _single_threaded_blas():
        if method == "bt":
            algorithm = kw.pop("algorithm", "auto")
            if kw:
                raise UnexpectedOptionError(f"unexpected options for method 'bt': {sorted(kw)}")
            return _bt_result(systems, r, lam, B, C, kappa, disc, fd, algorithm)
        if method == "modal":
            crit = kw.pop("criterion", "h2")
            if kw or crit != "h2":
                raise UnexpectedOptionError(f"unsupported options for the vectorised modal path: {sorted(kw)} "
                                f"criterion={crit!r}")
            return _modal_result(systems, r, lam, B, C, kappa, disc, fd)
        return _h2_result(systems, r, lam, B, C, kappa, disc, fd, kw)


def _bt_result(systems, r, lam, B, C, kappa, disc, fd, algorithm="auto") -> BatchResult:
    out = bt_pairs_batch(lam, B, C, r, discrete=disc, scale=kappa, algorithm=algorithm)
    N = len(systems)
    err2 = out["err2"]
    for i in np.flatnonzero(out["dense"]):  # (nearly) defective reduced matrix: exact dense error
        from ..norms import h2_error

        rom = _dense_rom(systems[i], out["A"][i], out["B"][i], out["C"][i])
        err2[i] = h2_error(systems[i], rom) ** 2
    if not out["stable"].all():
        warnings.warn(f"{int((~out['stable']).sum())} reduced channel(s) are unstable (h2 error inf)",
                      UnstableROMWarning, stacklevel=3)
    errs = np.sqrt(err2)
    norms = np.sqrt(out["norm2"] + fd)
    hsv = out["hsv"]
    bounds = 2 * np.sum(hsv[:, r:], axis=1)
    paired = out["paired"]

    def build(i: int) -> ReductionResult:
        s = systems[i]
        if paired[i]:
            rom = _pair_rom(s, out["lam_h"][i], out["B_h"][i], out["C_h"][i], kappa[i])
        else:
            rom = _dense_rom(s, out["A"][i], out["B"][i], out["C"][i])
        return ReductionResult(rom=rom, h2_error=float(errs[i]), h2_norm=float(norms[i]), method="bt",
                               hsv=hsv[i], error_bound=float(bounds[i]),
                               info={"batch_index": i, "paired": bool(paired[i])})

    return BatchResult(None, method="bt", h2_errors=errs, h2_norms=norms, hsv=hsv,
                       error_bounds=bounds, paired=paired, lam=out["lam_h"], B=out["B_h"],
                       C=out["C_h"], scale=kappa, factory=build,
                       info={"vectorised": True, "N": N, "two_factor": out["two_factor"]})


def _modal_result(systems, r, lam, B, C, kappa, disc, fd) -> BatchResult:
    out = _modal_pairs_batch(lam, B, C, kappa, r, disc)
    errs = np.sqrt(out["err2"])
    norms = np.sqrt(out["norm2"] + fd)

    def build(i: int) -> ReductionResult:
        rom = _pair_rom(systems[i], out["lam_h"][i], out["B_h"][i], out["C_h"][i], kappa[i])
        return ReductionResult(rom=rom, h2_error=float(errs[i]), h2_norm=float(norms[i]), method="modal",
                               info={"batch_index": i, "kept": out["kept"][i], "paired": True})

    return BatchResult(None, method="modal", h2_errors=errs, h2_norms=norms,
                       paired=np.ones(len(systems), bool), lam=out["lam_h"], B=out["B_h"], C=out["C_h"],
                       scale=kappa, factory=build,
                       info={"vectorised": True, "kept": out["kept"], "scores": out["scores"]})


def _h2_result(systems, r, lam, B, C, kappa, disc, fd, kw) -> BatchResult:
    try:
        from .gradient import h2_gradient_batch
    except ImportError as exc:  # pragma: no cover - depends on the gradient module
        raise NotImplementedError("method='h2' needs mor_lqo.reduction.gradient.h2_gradient_batch") from exc
    if not np.all(kappa == kappa[0]):
        return _loop(systems, r, "h2", kw)
    res = h2_gradient_batch(lam, B, C, r, dt=1.0 if disc else 0.0, scale=float(kappa[0]), **kw)
    errs = np.asarray(res.h2_error, float)
    norms = np.sqrt(_half_norms(lam, B, C, kappa, disc) + fd)
    conv = np.asarray(res.converged, bool)
    its = np.asarray(res.iterations, int)

    def build(i: int) -> ReductionResult:
        rom = _pair_rom(systems[i], res.lam[i], res.B[i], res.C[i], kappa[i])
        return ReductionResult(rom=rom, h2_error=float(errs[i]), h2_norm=float(norms[i]), method="h2",
                               converged=bool(conv[i]), iterations=int(its[i]),
                               info={"batch_index": i, "paired": True, "init_error": float(res.init_error[i]),
                                     "grad_norm": float(res.grad_norm[i])})

    return BatchResult(None, method="h2", h2_errors=errs, h2_norms=norms,
                       paired=np.ones(len(systems), bool), lam=res.lam, B=res.B, C=res.C, scale=kappa,
                       factory=build, info={"vectorised": True, "converged": conv, "iterations": its})


def _loop(systems, r, method, kw) -> BatchResult:
    """Per-system fallback for inputs the vectorised kernels do not cover."""
    if method == "bt":
        results = [balanced_truncation(s, r, **kw) for s in systems]
    elif method == "modal":
        results = [modal_truncation(s, r, **kw) for s in systems]
    else:
        from .gradient import h2_gradient

        results = [h2_gradient(s, r, **kw) for s in systems]
    errs = np.array([x.h2_error for x in results])
    norms = np.array([x.h2_norm for x in results])
    hsv = None
    bounds = None
    if method == "bt" and len({len(x.hsv) for x in results}) == 1:
        hsv = np.stack([x.hsv for x in results])
        if all(x.error_bound is not None for x in results):
            bounds = np.array([x.error_bound for x in results])
    paired = np.array([x.rom.half is not None for x in results])
    return BatchResult(results, method=method, h2_errors=errs, h2_norms=norms, hsv=hsv,
                       error_bounds=bounds, paired=paired, info={"vectorised": False})


# --------------------------------------------------------------------------------------------- data
def random_s4d_channels(N: int, n: int = 32, *, m: int = 1, p: int = 1, seed=0, scale: float = 2.0,
                        dt_range=(1e-3, 1e-1), noise: float = 0.1) -> list[LQOSystem]:
    r"""S4D-like test channels (ZOH-discretised S4D-Lin initialisation with random C).

    ``lam_c = -exp(log(0.5) + noise * N(0, 1)) + i pi k`` (k = 0..n-1), ``dt = exp(U(log dt_min,
    log dt_max))`` per channel, ``lam = exp(dt lam_c)``, ``B = (lam - 1)/lam_c`` (ZOH of B = 1),
    ``C`` complex normal; ``LQOSystem.conjugate_pairs(lam, B, C, dt=dt, scale=scale)`` (real order
    2n, discrete, current-input convention).
    """
    rng = np.random.default_rng(seed)
    out = []
    k = np.arange(n)
    for _ in range(N):
        lam_c = -np.exp(np.log(0.5) + noise * rng.standard_normal(n)) + 1j * np.pi * k
        dt = float(np.exp(rng.uniform(np.log(dt_range[0]), np.log(dt_range[1]))))
        lam = np.exp(dt * lam_c)
        Bc = np.ones((n, m))
        Bd = ((lam - 1) / lam_c)[:, None] * Bc
        C = (rng.standard_normal((p, n)) + 1j * rng.standard_normal((p, n))) / np.sqrt(2)
        out.append(LQOSystem.conjugate_pairs(lam, Bd, C, dt=dt, scale=scale))
    return out
