"""Input validation helpers shared by the system classes and the solvers."""

from __future__ import annotations

import numbers

import numpy as np

from .errors import DTypeError, NonFiniteError, ShapeError


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


def check_dt(dt) -> float:
    """Validate a sampling time: 0 for continuous time, a positive finite float for discrete time."""
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real):
        raise DTypeError(f"dt must be a real number (0 for continuous time), got {dt!r}")
    dt = float(dt)
    if not np.isfinite(dt) or dt < 0:
        raise ValueError(f"dt must be 0 (continuous) or a positive finite sampling time, got {dt}")
    return dt


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
