"""Closed-form (Cauchy-type) Gramians, inner products and h2 norms of diagonal systems.

For diagonal systems ``A1 = diag(lam1)`` (order n1) and ``A2 = diag(lam2)`` (order n2) the cross Gramian
``X`` (``A1 X A2^H - X + B1 B2^H = 0`` in discrete time, ``A1 X + X A2^H + B1 B2^H = 0`` in continuous
time) is the Cauchy-type matrix

.. math::

    X = (B_1 B_2^H) \\odot K, \\qquad
    K_{ik} = \\begin{cases}
        -1 / (\\lambda^{(1)}_i + \\overline{\\lambda^{(2)}_k}) & \\text{continuous} \\\\
        1 / (1 - \\lambda^{(1)}_i \\overline{\\lambda^{(2)}_k}) & \\text{discrete} \\\\
        (1 - z_{ik}^L) / (1 - z_{ik}), \\; z_{ik} = \\lambda^{(1)}_i \\overline{\\lambda^{(2)}_k}
            & \\text{discrete, horizon } L
    \\end{cases}

(the horizon kernel is ``sum_{t<L} z**t``, with limit ``L`` at ``z = 1``; it is the Gramian of the lags
``0..L-1`` only, see docs/theory.md §2.1). The LTI inner product of the two systems is

.. math::

    \\operatorname{tr}(C_1 X C_2^H) = \\sum_{i,k} K_{ik}\\,
        (B_1[i,:] \\cdot \\overline{B_2[k,:]})\\, (C_1[:,i] \\cdot \\overline{C_2[:,k]}),

and ``cauchy_norm2`` is its Hermitian special case ``Re tr(C P C^H)``, the squared h2 (H2) norm of the
LTI part. :func:`cauchy_inner` and :func:`cauchy_norm2` stream this double sum with numba kernels
(:mod:`mor_lqo.kernels.cauchy_numba`) in O(n1 n2 (m + p)) time and O(n (m + p)) extra memory;
:func:`cauchy_matrix` and :func:`cross_gramian_diag` form the explicit n1 x n2 matrices with numpy.

Stability is **not** checked here: these kernels are deliberately dumb and fast. A vanishing
denominator (``lam1_i + conj(lam2_k) = 0``, or ``lam1_i conj(lam2_k) = 1`` without a horizon) yields
``inf``/``nan``, and unstable modes yield finite but meaningless numbers (except with a horizon, where
the truncated sums are meaningful for any modes). Callers must check stability first and raise
:class:`mor_lqo.errors.UnstableSystemError`.

Accuracy: the streamed sums agree with the explicit-K reference to ~1e-15 relative for
well-conditioned data (blocked, compensated summation, see :mod:`.cauchy_numba`). Terms with
``lam1_i conj(lam2_k)`` close to 1 are inherently sensitive: ``1 - lam1_i conj(lam2_k)`` carries an
absolute rounding error ~eps, i.e. a relative error ~eps / (1 - |lam|^2) in both implementations (e.g.
~1e-9 relative disagreement for modes 1e-8 from the unit circle). The finite-horizon kernel evaluates
that region as ``expm1(L w) / expm1(w)`` and stays accurate there.

Batching: every function accepts either single systems (``lam (n,)``, ``B (n, m)``, ``C (p, n)``) or
batches with one leading axis (``lam (N, n)``, ``B (N, n, m)``, ``C (N, p, n)``, the same ``N`` for all
arguments); results then carry the leading ``N``.

Dtypes: integer/boolean inputs are converted to float64 explicitly, float16/32/64 and complex64/128 are
evaluated in complex128 (real inputs give a result with zero imaginary part up to rounding). Extended
precision inputs (``longdouble``/``clongdouble``), which numba does not support, fall back to the numpy
reference and are evaluated in extended precision. Inputs are never modified.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import DTypeError, NonFiniteError, ShapeError
from . import cauchy_reference as _ref
from .cauchy_reference import NEAR_ONE_TAU, NEAR_ONE_TAU_INF

__all__ = ["cauchy_matrix", "cross_gramian_diag", "cauchy_inner", "cauchy_norm2"]

_EXTENDED = {np.dtype(np.longdouble), np.dtype(np.clongdouble)} - {
    np.dtype(np.float64),
    np.dtype(np.complex128),
}


# ----------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------
def _as_numeric(x, name: str) -> np.ndarray:
    """``x`` as an array of a numeric dtype (ints/bools -> float64); never copies float/complex data."""
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind in "biu":
        arr = arr.astype(np.float64)
    elif kind not in "fc":
        raise DTypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{name} contains NaN or infinite entries")
    return arr


def _check_flags(discrete, horizon) -> int | None:
    if not isinstance(discrete, (bool, np.bool_)):
        raise TypeError(f"discrete must be a bool, got {discrete!r}")
    if horizon is None:
        return None
    if isinstance(horizon, (bool, np.bool_)) or not isinstance(horizon, numbers.Integral):
        raise TypeError(f"horizon must be a positive integer or None, got {horizon!r}")
    if not discrete:
        raise ValueError("a finite horizon is only defined for discrete-time systems")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return int(horizon)


def _batch_of(lam: np.ndarray, name: str) -> int | None:
    if lam.ndim == 1:
        return None
    if lam.ndim == 2:
        return lam.shape[0]
    raise ShapeError(f"{name} must have shape (n,) or (N, n), got {lam.shape}")


def _check_system(lam, B, C, tag: str, batch: int | None):
    """Check ``lam (..., n)``, ``B (..., n, m)``, ``C (..., p, n)``; return ``(n, m, p)``."""
    lead = () if batch is None else (batch,)
    nd = len(lead)
    if lam.ndim != nd + 1 or lam.shape[:nd] != lead:
        raise ShapeError(f"lam{tag} must have shape {lead + ('n',)}, got {lam.shape}")
    n = lam.shape[-1]
    if B.ndim != nd + 2 or B.shape[:nd] != lead or B.shape[nd] != n:
        raise ShapeError(f"B{tag} must have shape {lead + (n, 'm')}, got {B.shape}")
    if C.ndim != nd + 2 or C.shape[:nd] != lead or C.shape[-1] != n:
        raise ShapeError(f"C{tag} must have shape {lead + ('p', n)}, got {C.shape}")
    return n, B.shape[-1], C.shape[-2]


def _is_extended(*arrays: np.ndarray) -> bool:
    return any(a.dtype in _EXTENDED for a in arrays)


def _c128(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.complex128)


# ----------------------------------------------------------------------------------------------------
# packing for the numba kernels
# ----------------------------------------------------------------------------------------------------
def _ipow(lam: np.ndarray, L: int) -> np.ndarray:
    """``lam**L`` elementwise by binary powering (exact zeros, relative error O(L eps))."""
    result = np.ones_like(lam)
    base = lam.copy()
    e = L
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        while True:
            if e & 1:
                result = result * base
            e >>= 1
            if not e:
                break
            base = base * base
    return result


#: Zero-weight padding columns expected by the numba kernels (``cauchy_numba.PAD``; checked there).
_PAD = 16
#: Eigenvalue used in the padding columns in continuous time: ``-1 / (lam_i - 1e150)`` is finite
#: (and tiny) for every mode; in discrete time the padding eigenvalue 0 gives ``K = 1``.
_PAD_LAM_CONTINUOUS = -1e150


def _pack_lam(lam: np.ndarray, discrete: bool, horizon: int | None, rmin: float) -> np.ndarray:
    """``(..., n)`` complex -> ``(..., 6, n + PAD)`` float64 (see :mod:`.cauchy_numba`)."""
    n = lam.shape[-1]
    out = np.zeros(lam.shape[:-1] + (6, n + _PAD))
    out[..., 0, :n] = lam.real
    out[..., 1, :n] = lam.imag
    if not discrete:
        out[..., 0, n:] = _PAD_LAM_CONTINUOUS
    if horizon is not None:
        p = _ipow(lam, horizon)
        out[..., 2, :n] = p.real
        out[..., 3, :n] = p.imag
    if discrete:
        s = _safe_log(lam, rmin)
        out[..., 4, :n] = s.real
        out[..., 5, :n] = s.imag
    return out


def _safe_log(lam: np.ndarray, rmin: float) -> np.ndarray:
    """Complex log where ``|lam| >= rmin``, 0 elsewhere (never read there, see :func:`_log_radius`)."""
    s = np.zeros_like(lam)
    mask = np.abs(lam) >= rmin
    if np.any(mask):
        s[mask] = np.log(lam[mask])
    return s


def _log_radius(tau: float, partner: np.ndarray) -> float:
    """Smallest ``|lam_i|`` that can be in a near-one pair ``|1 - lam_i conj(lam_k)| < tau``.

    ``|lam_i| |lam_k| >= |z| > 1 - tau`` with ``|lam_k| <= max |partner|``; the logarithms (a complex
    log per mode is expensive) are only needed for modes at least this large.
    """
    amax = float(np.max(np.abs(partner), initial=0.0))
    return np.inf if amax == 0.0 else (1.0 - tau) / amax * (1.0 - 1e-9)


def _use_kron(m: int, p: int) -> bool:
    """Kronecker factors (m p per mode) are cheaper than two dot products unless m, p >= 3."""
    return m * p <= m + p + 2


def _split(F: np.ndarray) -> np.ndarray:
    """complex ``(..., q, n)`` -> float64 ``(..., 2, q, n + PAD)``, zero padding columns."""
    out = np.zeros(F.shape[:-2] + (2, F.shape[-2], F.shape[-1] + _PAD))
    out[..., 0, :, : F.shape[-1]] = F.real
    out[..., 1, :, : F.shape[-1]] = F.imag
    return out


def _pack_factors(B: np.ndarray, C: np.ndarray, kron: bool):
    """Per-mode factors ``(U, V)`` for ``B (..., n, m)``, ``C (..., p, n)`` (padded)."""
    n = B.shape[-2]
    if kron:
        # F[..., a*p + b, i] = B[..., i, a] * C[..., b, i]
        F = np.swapaxes(B, -1, -2)[..., :, None, :] * C[..., None, :, :]
        F = F.reshape(F.shape[:-3] + (-1, n))
        return _split(F), np.zeros(B.shape[:-2] + (2, 0, n + _PAD))
    return _split(np.swapaxes(B, -1, -2)), _split(C)


def _tau2(horizon: int | None) -> float:
    """Squared near-one threshold of the discrete kernels (unused in continuous time)."""
    return (NEAR_ONE_TAU_INF if horizon is None else NEAR_ONE_TAU) ** 2


def _mode(discrete: bool, horizon: int | None) -> int:
    from . import cauchy_numba as nb

    if not discrete:
        return nb.MODE_CONTINUOUS
    return nb.MODE_DISCRETE if horizon is None else nb.MODE_HORIZON


#: Below this much work (kernel values times per-pair cost) the serial kernels are used: starting a
#: parallel region costs tens of microseconds (far more on an oversubscribed machine).
SERIAL_WORK = 1 << 22

_SERIAL_ONLY = False


def use_serial_kernels(flag: bool = True) -> None:
    """Use the serial kernels only (set in the workers of a process pool).

    A worker forked from a process whose OpenMP runtime already ran threads (numba's ``omp`` threading
    layer, or PyTorch) can hang in its first parallel region; the pool supplies the parallelism anyway.
    """
    global _SERIAL_ONLY
    _SERIAL_ONLY = bool(flag)


def _serial(work: int) -> bool:
    return _SERIAL_ONLY or work < SERIAL_WORK


def _work(pairs: int, m: int, p: int, kron: bool) -> int:
    """Work estimate: kernel values times the per-pair cost (factor products + division)."""
    return pairs * ((m * p if kron else m + p + 2) + 3)


def _run_single(kernels, work: int, *args):
    parallel, serial = kernels
    return serial(*args) if _serial(work) else parallel(*args)


def _use_lanes(batch: int, row_len: float, qcost: int) -> bool:
    """Lane layout (loops over systems innermost) for many systems with short rows.

    Measured model (ns per kernel value, one core): lanes ~ 1.2 + 0.95 q, rows ~ 0.5 q + 125 / row
    length (the per-row set-up cost of the row layout).
    """
    return batch >= 16 and 0.45 * qcost + 1.2 < 125.0 / max(row_len, 1.0)


def _pack_lanes(lam, B, C, discrete: bool, horizon: int | None, kron: bool, rmin: float):
    """Lane layout ``lam (6, n, N)``, ``U (2, q1, n, N)``, ``V (2, q2, n, N)`` of a batch."""
    from . import cauchy_lanes_numba as nl

    N, n = lam.shape
    m, p = B.shape[-1], C.shape[-2]
    Lp = np.zeros((6, n, N))
    nl.lanes_split(lam, Lp[0:2])
    if horizon is not None:
        nl.lanes_split(_ipow(lam, horizon), Lp[2:4])
    if discrete:
        nl.lanes_split(_safe_log(lam, rmin), Lp[4:6])
    U = np.empty((2, m * p if kron else m, n, N))
    V = np.empty((2, 0 if kron else p, n, N))
    nl.lanes_factors(B, C, kron, U, V)
    return Lp, U, V


def _run_batched(single, batched, batch: int, work: int, args):
    """Dispatch a batch in the row layout: serial / batch-parallel kernel, or one kernel per system.

    ``args = (mode, L, tau2, arrays...)``; ``work`` is the work of one system. Returns a list with
    either one batched result or one result per system.
    """
    import numba

    head, arrays = args[:3], args[3:]
    if _serial(batch * work):
        return [batched[1](*head, *arrays)]
    if batch >= 4 * numba.get_num_threads() or work < (1 << 16):
        return [batched[0](*head, *arrays)]
    return [_run_single(single, work, *head, *(a[s] for a in arrays)) for s in range(batch)]


# ----------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------
def cauchy_matrix(lam1, lam2, discrete: bool, horizon: int | None = None) -> np.ndarray:
    """Explicit Cauchy matrix of two diagonal systems.

    Parameters
    ----------
    lam1 : array_like, shape (n1,) or (N, n1)
        Eigenvalues of the first system.
    lam2 : array_like, shape (n2,) or (N, n2)
        Eigenvalues of the second system (same batch shape as ``lam1``).
    discrete : bool
        Discrete time (``K = 1 / (1 - lam1_i conj(lam2_k))``) or continuous time
        (``K = -1 / (lam1_i + conj(lam2_k))``).
    horizon : int, optional
        Sequence length ``L >= 1`` (discrete time only): ``K = (1 - z**L) / (1 - z)``,
        ``z = lam1_i conj(lam2_k)``, i.e. ``sum_{t<L} z**t``.

    Returns
    -------
    K : ndarray, shape (n1, n2) or (N, n1, n2)
        Complex (complex128, or clongdouble for extended-precision input).

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError
        On bad shapes, non-numeric or non-finite input.

    Notes
    -----
    Memory is O(n1 n2): use it for n x r matrices. Stability is not checked (division by zero gives
    ``inf``/``nan`` with numpy's warning).
    """
    horizon = _check_flags(discrete, horizon)
    lam1 = _as_numeric(lam1, "lam1")
    lam2 = _as_numeric(lam2, "lam2")
    b1 = _batch_of(lam1, "lam1")
    b2 = _batch_of(lam2, "lam2")
    if b1 != b2:
        raise ShapeError(f"lam1 and lam2 must have the same batch shape, got {lam1.shape}, {lam2.shape}")
    if not _is_extended(lam1, lam2):
        lam1 = lam1.astype(np.complex128, copy=False)
        lam2 = lam2.astype(np.complex128, copy=False)
    else:
        lam1 = lam1.astype(np.clongdouble, copy=False)
        lam2 = lam2.astype(np.clongdouble, copy=False)
    return _ref.cauchy_matrix_ref(lam1, lam2, bool(discrete), horizon)


def cross_gramian_diag(lam1, B1, lam2, B2, discrete: bool, horizon: int | None = None) -> np.ndarray:
    """Cross Gramian ``X = (B1 B2^H) * K`` of two diagonal systems.

    ``X`` solves ``A1 X A2^H - X + B1 B2^H = 0`` (discrete), ``A1 X + X A2^H + B1 B2^H = 0``
    (continuous) with ``A1 = diag(lam1)``, ``A2 = diag(lam2)``; with a horizon it is
    ``sum_{t<L} A1^t B1 B2^H (A2^H)^t``. With ``lam2 = lam1``, ``B2 = B1`` it is the controllability
    Gramian ``P``.

    Parameters
    ----------
    lam1 : array_like, shape (n1,) or (N, n1)
    B1 : array_like, shape (n1, m) or (N, n1, m)
    lam2 : array_like, shape (n2,) or (N, n2)
    B2 : array_like, shape (n2, m) or (N, n2, m)
    discrete : bool
    horizon : int, optional
        Sequence length ``L >= 1`` (discrete time only).

    Returns
    -------
    X : ndarray, shape (n1, n2) or (N, n1, n2), complex

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError
    """
    horizon = _check_flags(discrete, horizon)
    lam1 = _as_numeric(lam1, "lam1")
    lam2 = _as_numeric(lam2, "lam2")
    B1 = _as_numeric(B1, "B1")
    B2 = _as_numeric(B2, "B2")
    batch = _batch_of(lam1, "lam1")
    lead = () if batch is None else (batch,)
    nd = len(lead)
    if lam2.ndim != nd + 1 or lam2.shape[:nd] != lead:
        raise ShapeError(f"lam2 must have shape {lead + ('n2',)}, got {lam2.shape}")
    for name, B, lam in (("B1", B1, lam1), ("B2", B2, lam2)):
        if B.ndim != nd + 2 or B.shape[:nd] != lead or B.shape[nd] != lam.shape[-1]:
            raise ShapeError(f"{name} must have shape {lead + (lam.shape[-1], 'm')}, got {B.shape}")
    if B1.shape[-1] != B2.shape[-1]:
        raise ShapeError(f"B1 and B2 must have the same number of inputs, got {B1.shape}, {B2.shape}")
    ctype = np.clongdouble if _is_extended(lam1, lam2, B1, B2) else np.complex128
    return _ref.cross_gramian_ref(
        lam1.astype(ctype, copy=False),
        B1.astype(ctype, copy=False),
        lam2.astype(ctype, copy=False),
        B2.astype(ctype, copy=False),
        bool(discrete),
        horizon,
    )


def cauchy_inner(lam1, B1, C1, lam2, B2, C2, discrete: bool, horizon: int | None = None):
    """LTI inner product ``tr(C1 X C2^H)`` of two diagonal systems, streamed (no n1 x n2 matrix).

    .. math::

        \\sum_{i,k} K_{ik} (B_1[i,:] \\cdot \\overline{B_2[k,:]}) (C_1[:,i] \\cdot \\overline{C_2[:,k]})

    with the Cauchy kernel ``K`` of :func:`cauchy_matrix`. The h2 inner product of the LTI parts is
    ``Re`` of this value.

    Parameters
    ----------
    lam1 : array_like, shape (n1,) or (N, n1)
    B1 : array_like, shape (n1, m) or (N, n1, m)
    C1 : array_like, shape (p, n1) or (N, p, n1)
    lam2 : array_like, shape (n2,) or (N, n2)
    B2 : array_like, shape (n2, m) or (N, n2, m)
    C2 : array_like, shape (p, n2) or (N, p, n2)
    discrete : bool
    horizon : int, optional
        Sequence length ``L >= 1`` (discrete time only): truncate the lags to ``0..L-1``.

    Returns
    -------
    complex or ndarray of shape (N,), complex
        (complex128, or clongdouble for extended-precision input).

    Raises
    ------
    ShapeError
        Inconsistent shapes (orders, m, p or batch sizes).
    DTypeError, NonFiniteError
        Non-numeric or non-finite input.

    Notes
    -----
    Cost O(n1 n2 min(m p, m + p)), extra memory O((n1 + n2)(m + p)). Single systems are parallelised
    over the rows ``i``, batches over the batch axis (or per system when there are few large ones).
    Stability is not checked (see the module docstring).
    """
    horizon = _check_flags(discrete, horizon)
    arrs = [
        _as_numeric(x, name)
        for x, name in ((lam1, "lam1"), (B1, "B1"), (C1, "C1"), (lam2, "lam2"), (B2, "B2"), (C2, "C2"))
    ]
    lam1, B1, C1, lam2, B2, C2 = arrs
    batch = _batch_of(lam1, "lam1")
    n1, m1, p1 = _check_system(lam1, B1, C1, "1", batch)
    n2, m2, p2 = _check_system(lam2, B2, C2, "2", batch)
    if m1 != m2 or p1 != p2:
        raise ShapeError(f"both systems need the same inputs/outputs, got m = {m1}, {m2} and p = {p1}, {p2}")
    if _is_extended(*arrs):
        arrs = [a.astype(np.clongdouble, copy=False) for a in arrs]
        val = _ref.cauchy_inner_ref(*arrs, bool(discrete), horizon)
        return val if batch is not None else val[()]
    lead = () if batch is None else (batch,)
    if 0 in (n1, n2, m1, p1) or batch == 0:
        val = np.zeros(lead, dtype=np.complex128)
        return val if batch is not None else val[()]

    from . import cauchy_lanes_numba as nl
    from . import cauchy_numba as nb

    lam1, B1, C1, lam2, B2, C2 = (_c128(a) for a in arrs)
    kron = _use_kron(m1, p1)
    mode = _mode(bool(discrete), horizon)
    Lh = 0 if horizon is None else horizon
    tau2 = _tau2(horizon)
    work = _work(n1 * n2, m1, p1, kron)
    r1 = _log_radius(np.sqrt(tau2), lam2)
    r2 = _log_radius(np.sqrt(tau2), lam1)
    if batch is not None and _use_lanes(batch, n2, m1 * p1 if kron else m1 + p1 + 2):
        A1 = _pack_lanes(lam1, B1, C1, bool(discrete), horizon, kron, r1)
        A2 = _pack_lanes(lam2, B2, C2, bool(discrete), horizon, kron, r2)
        kern = nl.inner_lanes_serial if _serial(batch * work) else nl.inner_lanes
        out = kern(mode, Lh, tau2, *A1, *A2)
        return out[:, 0] + 1j * out[:, 1]
    L1 = _pack_lam(lam1, bool(discrete), horizon, r1)
    L2 = _pack_lam(lam2, bool(discrete), horizon, r2)
    U1, V1 = _pack_factors(B1, C1, kron)
    U2, V2 = _pack_factors(B2, C2, kron)
    args = (mode, Lh, tau2, L1, U1, V1, L2, U2, V2)
    single = (nb.inner_single, nb.inner_single_serial)
    if batch is None:
        re, im = _run_single(single, work, *args)
        return complex(re, im)
    parts = _run_batched(single, (nb.inner_batched, nb.inner_batched_serial), batch, work, args)
    if len(parts) == 1:
        out = parts[0]
        return out[:, 0] + 1j * out[:, 1]
    return np.array([complex(re, im) for re, im in parts])


def cauchy_norm2(lam, B, C, discrete: bool, horizon: int | None = None):
    """Squared h2 (H2) norm ``tr(C P C^H)`` of the diagonal LTI system ``(diag(lam), B, C)``.

    Equals ``Re cauchy_inner(lam, B, C, lam, B, C, ...)``, but uses the Hermitian symmetry of the summand
    (diagonal plus twice the real part of the strict upper triangle), so it does half the work.

    .. math::

        \\|\\Sigma\\|^2 = \\sum_i K_{ii} \\|B_i\\|^2 \\|C_{:,i}\\|^2
            + 2 \\operatorname{Re} \\sum_{i<k} K_{ik} (B_i \\cdot \\overline{B_k})
              (C_{:,i} \\cdot \\overline{C_{:,k}})

    Parameters
    ----------
    lam : array_like, shape (n,) or (N, n)
        Eigenvalues (stable: ``Re lam < 0`` continuous, ``|lam| < 1`` discrete; not checked).
    B : array_like, shape (n, m) or (N, n, m)
    C : array_like, shape (p, n) or (N, p, n)
    discrete : bool
    horizon : int, optional
        Sequence length ``L >= 1`` (discrete time only): ``sum_{t<L} ||C A^t B||_F^2``, finite for
        any modes.

    Returns
    -------
    float or ndarray of shape (N,), float64
        (longdouble for extended-precision input).

    Raises
    ------
    ShapeError, DTypeError, NonFiniteError

    Notes
    -----
    Cost O(n^2 min(m p, m + p) / 2), extra memory O(n (m + p)): n = 16384 with p = 8 needs a few MB.
    Stability is not checked (see the module docstring).
    """
    horizon = _check_flags(discrete, horizon)
    lam = _as_numeric(lam, "lam")
    B = _as_numeric(B, "B")
    C = _as_numeric(C, "C")
    batch = _batch_of(lam, "lam")
    n, m, p = _check_system(lam, B, C, "", batch)
    if _is_extended(lam, B, C):
        lam, B, C = (a.astype(np.clongdouble, copy=False) for a in (lam, B, C))
        val = _ref.cauchy_norm2_ref(lam, B, C, bool(discrete), horizon)
        return val if batch is not None else val[()]
    lead = () if batch is None else (batch,)
    if 0 in (n, m, p) or batch == 0:
        val = np.zeros(lead)
        return val if batch is not None else float(val)

    from . import cauchy_lanes_numba as nl
    from . import cauchy_numba as nb

    lam, B, C = (_c128(a) for a in (lam, B, C))
    kron = _use_kron(m, p)
    mode = _mode(bool(discrete), horizon)
    Lh = 0 if horizon is None else horizon
    tau2 = _tau2(horizon)
    work = _work(n * (n + 1) // 2, m, p, kron)
    r1 = _log_radius(np.sqrt(tau2), lam)
    if batch is not None and _use_lanes(batch, n / 2, m * p if kron else m + p + 2):
        A = _pack_lanes(lam, B, C, bool(discrete), horizon, kron, r1)
        kern = nl.norm2_lanes_serial if _serial(batch * work) else nl.norm2_lanes
        return kern(mode, Lh, tau2, *A)
    Lp = _pack_lam(lam, bool(discrete), horizon, r1)
    U, V = _pack_factors(B, C, kron)
    args = (mode, Lh, tau2, Lp, U, V)
    single = (nb.norm2_single, nb.norm2_single_serial)
    if batch is None:
        return float(_run_single(single, work, *args))
    parts = _run_batched(single, (nb.norm2_batched, nb.norm2_batched_serial), batch, work, args)
    return parts[0] if len(parts) == 1 else np.array(parts, dtype=np.float64)
