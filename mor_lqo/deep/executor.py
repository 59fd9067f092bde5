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

__all__ = ["available_cores", "make_executor", "run_tasks", "progress_bar"]


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
        return ProcessPoolExecutor(max_workers=n, mp_context=ctx)
    raise ValueError(f"executor must be 'process', 'thread', 'serial' or a concurrent.futures.Executor, got {kind!r}")


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
