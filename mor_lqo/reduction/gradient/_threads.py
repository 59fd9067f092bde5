"""BLAS thread limits for the many tiny matrix products of the gradient reducers."""

from __future__ import annotations


class _NoLimit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _blas_threads(sys=None, small: bool = False):
    """Single-threaded BLAS for the many tiny products of small problems (threadpoolctl, if installed).

    Threaded BLAS on matrices of a few dozen entries costs far more in synchronisation than it saves,
    and is pathological on loaded machines (measured 10-50x slower).
    """
    if not small and sys is not None and not (sys.is_diagonal or sys.order <= 256):
        return _NoLimit()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return _NoLimit()
    return threadpool_limits(limits=1, user_api="blas")
