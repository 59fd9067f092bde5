"""Executors and progress bars for the per-block work of :func:`mor_lqo.deep.compress.compress`.

The per-block reductions are independent, picklable tasks. They run through any
:class:`concurrent.futures.Executor` — by default a process pool over the available cores (``fork``
start method where available, so workers start in milliseconds), or in-process when the work is small.
A dask cluster works through ``distributed.Client(...).get_executor()``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any

__all__ = ["available_cores", "make_executor", "run_tasks", "progress_bar", "shutdown_executor", "as_executor",
           "executor_workers"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def available_cores() -> int:
    """CPU cores this process may use (affinity mask where supported)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def make_executor(kind: str = "process", max_workers: int | None = None) -> Executor | None:
    """A new executor: ``"process"`` (process pool), ``"thread"`` or ``"serial"`` (None = in-process).

    Parameters
    ----------
    kind : {"process", "thread", "serial"}
    max_workers : int, optional
        Default: :func:`available_cores`.
    """
    n = max_workers or available_cores()
    if kind == "serial" or n <= 1:
        return None
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=n)
    if kind == "process":
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods and sys.platform != "darwin" else None)
        return ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init)
    raise ValueError(f"executor must be 'process', 'thread', 'serial' or a concurrent.futures.Executor, got {kind!r}")


def as_executor(obj: Any) -> Any:
    """``obj`` itself, or the ``concurrent.futures`` executor of a dask.distributed ``Client``."""
    if not isinstance(obj, Executor) and callable(getattr(obj, "get_executor", None)):
        return obj.get_executor()
    return obj


def executor_workers(executor: Executor | None) -> int:
    """How many tasks ``executor`` runs at once: a pool's ``max_workers``, the total threads of a dask
    cluster's workers, else the local cores (1 without an executor)."""
    if executor is None:
        return 1
    n = getattr(executor, "_max_workers", None)
    client = getattr(executor, "_client", None)
    if n is None and client is not None and callable(getattr(client, "nthreads", None)):
        try:
            n = sum(client.nthreads().values())
        except Exception:  # noqa: BLE001 - a cluster that cannot tell: fall back to the local cores
            n = None
    return max(1, int(n or available_cores()))


def _worker_init() -> None:
    """Process-pool worker initializer: die with the parent, serial numba kernels (no OpenMP regions in a
    forked child, whose parent's OpenMP runtime may hold threads it cannot use: a hang)."""
    _die_with_parent()
    from ..kernels.cauchy import use_serial_kernels

    use_serial_kernels()


def _die_with_parent() -> None:
    """Worker initializer: ask the kernel to send SIGTERM to this worker when its parent dies (Linux).

    A parent killed by a signal it does not handle (SIGKILL, or SIGTERM in a plain script) cannot shut
    its pool down; without this its workers would finish their task, holding the caller's stdout/stderr.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the pool's own shutdown still works
        pass


def shutdown_executor(executor: Executor, abort: bool) -> None:
    """Shut an executor down; with ``abort`` cancel what is pending and stop running workers at once.

    ``abort`` is for interrupted runs (KeyboardInterrupt, SIGTERM turned into an exception, a failed
    task): a process pool's workers are terminated rather than waited for, so nothing outlives the call.
    """
    if not abort:
        executor.shutdown(wait=True)
        return
    workers = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
    for proc in workers:
        proc.join(timeout=5)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on stderr (a silent stand-in when disabled or tqdm is missing)."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="task", leave=False, file=sys.stderr, dynamic_ncols=True)


def run_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], executor: Executor | None = None,
              progress: bool = True, desc: str = "reducing") -> list[Any]:
    """Run ``fn(task)`` for every task (in order of the results list), through ``executor`` if given.

    Exceptions raised by a task are re-raised here (with the pending tasks cancelled).
    """
    results: list[Any] = [None] * len(tasks)
    bar = progress_bar(len(tasks), desc, progress)
    try:
        if executor is None:
            for i, t in enumerate(tasks):
                results[i] = fn(t)
                bar.update(1)
            return results
        futures = {executor.submit(fn, t): i for i, t in enumerate(tasks)}
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return results
    finally:
        bar.close()
