"""Input validation helpers shared by the system classes and the solvers."""

from __future__ import annotations

import numbers

import numpy as np

from .errors import (
    DTypeError,
    InvalidArgumentError,
    NonFiniteError,
    NotASystemError,
    SamplingTimeError,
    ShapeError,
    UnknownMethodError,
)

CONVENTIONS = ("current", "standard")


def as_float_or_complex(x, name: str, *, copy: bool = True) -> np.ndarray:
    """Return ``x`` as a float64 or complex128 array, never casting complex to real.

    Integer and boolean arrays are converted to float64 explicitly (benchmark files store matrices as
    ``uint16``; scipy solvers can silently return garbage for integer input). ``float16/32`` are
    promoted to float64, ``complex64`` to complex128.

    Raises
    ------
    DTypeError
        For non-numeric dtypes (object, strings, ...).
    NonFiniteError
        If any entry is NaN or infinite.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - defensive
        raise DTypeError(f"{name}: cannot convert {type(x).__name__} to an array") from exc
    kind = arr.dtype.kind
    if kind in "biu":
        arr = arr.astype(np.float64)
    elif kind == "f":
        arr = arr.astype(np.float64, copy=copy)
    elif kind == "c":
        arr = arr.astype(np.complex128, copy=copy)
    else:
        raise DTypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{name} contains NaN or infinite entries")
    return arr


def as_input_matrix(B, n: int) -> np.ndarray:
    """B as a float64/complex128 (n, m >= 1) array (a 1-D array means m = 1); ``ShapeError`` otherwise."""
    B = as_float_or_complex(B, "B")
    if B.ndim == 1:
        B = B.reshape(-1, 1)
    if B.ndim != 2 or B.shape[0] != n or B.shape[1] < 1:
        raise ShapeError(f"B must have shape (n, m) = ({n}, m >= 1), got {B.shape}")
    return B


def as_output_matrix(C, n: int) -> np.ndarray:
    """C as a float64/complex128 (p >= 1, n) array (a 1-D array means p = 1); ``ShapeError`` otherwise."""
    C = as_float_or_complex(C, "C")
    if C.ndim == 1:
        C = C.reshape(1, -1)
    if C.ndim != 2 or C.shape[1] != n or C.shape[0] < 1:
        raise ShapeError(f"C must have shape (p, n) = (p >= 1, {n}), got {C.shape}")
    return C


def as_feedthrough(D, p: int, m: int) -> np.ndarray:
    """Feed-through D as a (p, m) float64/complex128 array (a scalar only when p = m = 1).

    Raises
    ------
    ShapeError
        Any other shape.
    """
    D = as_float_or_complex(D, "D")
    if D.ndim == 0 and p == 1 and m == 1:
        D = D.reshape(1, 1)
    if D.shape != (p, m):
        raise ShapeError(f"D must have shape (p, m) = ({p}, {m}), got {D.shape}")
    return D


def check_dt(dt) -> float:
    """Validate a sampling time: 0 for continuous time, a positive finite float for discrete time."""
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real):
        raise DTypeError(f"dt must be a real number (0 for continuous time), got {dt!r}")
    dt = float(dt)
    if not np.isfinite(dt) or dt < 0:
        raise SamplingTimeError(f"dt must be 0 (continuous) or a positive finite sampling time, "
                                f"got {dt}")
    return dt


def check_convention(convention, name: str = "convention") -> str:
    """Validate a discrete-time index convention (``"current"`` or ``"standard"``)."""
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        raise SamplingTimeError(f"{name} must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def check_system(obj, name: str = "sys"):
    """Raise :class:`NotASystemError` unless ``obj`` is an :class:`~mor_lqo.LQOSystem`."""
    from .systems import LQOSystem

    if not isinstance(obj, LQOSystem):
        raise NotASystemError(f"{name} must be an LQOSystem, got {type(obj).__name__}")
    return obj


def check_choice(value, choices, name: str):
    """Raise :class:`UnknownMethodError` unless ``value`` is one of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        raise UnknownMethodError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_tolerance(tol, name: str = "tol") -> float:
    """A positive finite real number (a convergence tolerance)."""
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (np.isfinite(tol) and tol > 0):
        raise InvalidArgumentError(f"{name} must be a positive finite number, got {tol!r}")
    return float(tol)


def check_count(k, name: str = "maxit") -> int:
    """A non-negative integer (an iteration limit)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative integer, got {k!r}")
    return int(k)


def check_order(r, order: int) -> int:
    """Validate a reduced order ``1 <= r < order`` and return it as int."""
    from .errors import OrderError

    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise OrderError(f"reduced order must be an integer, got {r!r}")
    r = int(r)
    if r < 1 or r >= order:
        raise OrderError(f"reduced order must satisfy 1 <= r < {order} (the full order), got r = {r}")
    return r


def require_ndim(arr: np.ndarray, ndim: int, name: str) -> np.ndarray:
    if arr.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    return arr


def readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr
