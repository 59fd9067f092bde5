"""Method options of :func:`~mor_lqo.deep.compress.compress`: the known keys, their meaning and their checks.

A misspelt key (``errorguard``) or a value of the wrong kind (``iters=-3``, ``error_guard="no"``) is a
:class:`~mor_lqo.deep.compress.CompressionError` naming the key, never a silently ignored setting.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

from .constants import CompressionError

__all__ = ["OPTIONS", "check_options"]


def _int_at_least(lo: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, Integral) and not isinstance(v, bool) and v >= lo


def _positive(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _non_negative(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _stall(v: Any) -> bool:
    return v is None or (isinstance(v, (tuple, list)) and len(v) == 2 and _int_at_least(1)(v[0])
                         and _non_negative(v[1]))


#: key -> (what it sets, what it must be, check)
OPTIONS: dict[str, tuple[str, str, Callable[[Any], bool]]] = {
    "iters": ("iterations of the finite-horizon fit of SISO channels", "an integer >= 0", _int_at_least(0)),
    "tol": ("stopping tolerance of the gradient reducers", "a positive number", _positive),
    "maxiter": ("iteration limit of the gradient reducers", "an integer >= 1", _int_at_least(1)),
    "rho": ("ridge of the data weights (relative)", "a number >= 0", _non_negative),
    "data_iters": ("L-BFGS iterations of the data-weighted fit of MIMO/LQO units", "an integer >= 0",
                   _int_at_least(0)),
    "data_stall": ("stop the data-weighted fit once J fell by less than the fraction r over k iterations",
                   "None or a pair (k >= 1, r >= 0)", _stall),
    "allocate": ("orders of MIMO/LQO blocks: uniform or split by the data", "'uniform' or 'data'",
                 lambda v: v in ("uniform", "data")),
    "error_guard": ("bound method: admit only splits whose calibration error is at most the uniform one's",
                    "True or False", lambda v: isinstance(v, bool)),
}


def check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate method options; returns them as a new dict (the argument is not modified).

    Parameters
    ----------
    options : mapping or None
        ``{key: value}`` with keys from :data:`OPTIONS`.

    Returns
    -------
    dict

    Raises
    ------
    CompressionError
        If ``options`` is not a mapping, a key is unknown (the message suggests the closest known key)
        or a value is not of the kind its key needs.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise CompressionError(f"options must be a mapping of option names to values, got {type(options).__name__}")
    out = dict(options)
    for key, value in out.items():
        if key not in OPTIONS:
            close = difflib.get_close_matches(str(key), OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CompressionError(f"unknown option {key!r}{hint}; known options: {', '.join(OPTIONS)}")
        _, kind, ok = OPTIONS[key]
        if not ok(value):
            raise CompressionError(f"option {key!r} must be {kind}, got {value!r}")
    return out
