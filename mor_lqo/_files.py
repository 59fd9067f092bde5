"""File handling at the edge: atomic outputs (one file: temporary file then rename; a run's outputs: a staged
directory published as a unit) and size-checked ``.npz`` input."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["atomic_output", "available_memory", "format_bytes", "read_npz_checked", "staged_output_dir",
           "check_output_dir", "OutputExistsError"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode() -> int:
    """Permissions a normally created file gets (``mkstemp``'s 0600 is not kept)."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[str]:
    """Yield a temporary path in ``path``'s directory; on success fsync it, give it the usual
    permissions and ``os.replace`` it onto ``path``; on any error remove it and re-raise.

    Readers never see a partially written ``path``; an existing ``path`` is replaced only at the end.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


DEFAULT_MAX_ARRAY_BYTES = 1 << 30  # 1 GiB: calibration data far larger than this is a mistake or an attack


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def format_bytes(n: float) -> str:
    """``n`` bytes in B, KiB, MiB, GiB or TiB with three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"  # pragma: no cover


def read_npz_checked(path: Path, names: tuple[str, ...], max_bytes: int = DEFAULT_MAX_ARRAY_BYTES
                     ) -> dict[str, np.ndarray]:
    """Read the members ``names`` of an ``.npz`` archive, checking sizes before allocating anything.

    Each member's ``.npy`` header is read first: object dtypes (pickles) are refused, the size the
    header declares (``prod(shape) * itemsize``) must match the member's uncompressed size in the zip
    directory, and must not exceed ``max_bytes`` nor half the memory available now. A zip bomb or a
    header claiming 128 GiB is refused in milliseconds. Missing members are simply absent from the result.

    Raises
    ------
    DataFileError
        Unreadable archive, pickled member, inconsistent header, or a member over the limits (the message
        names the member, its declared size and the limit).
    """
    from .errors import DataFileError

    path = Path(path)
    limit = max_bytes
    avail = available_memory()
    if avail is not None:
        limit = min(limit, avail // 2)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: info for info in zf.infolist()}
            for name in names:
                info = members.get(name + ".npy")
                if info is None:
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(fh)
                    if dtype.hasobject:
                        raise DataFileError(f"{path}: member {name!r} holds Python objects (pickle); refused")
                    nbytes = math.prod(shape) * dtype.itemsize
                    if nbytes != info.file_size - fh.tell():
                        raise DataFileError(
                            f"{path}: member {name!r} declares shape {shape} of {dtype} "
                            f"({format_bytes(nbytes)}) but holds {format_bytes(info.file_size - fh.tell())}")
                    if nbytes > limit:
                        raise DataFileError(
                            f"{path}: member {name!r} needs {format_bytes(nbytes)} of memory, over the limit of "
                            f"{format_bytes(limit)} (min of the cap and half the available memory)")
                with zf.open(info) as fh:  # sizes checked: now read it for real
                    out[name] = np.lib.format.read_array(fh, allow_pickle=False)
    except DataFileError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise DataFileError(f"{path}: cannot read the data file ({exc})") from exc
    return out


class OutputExistsError(FileExistsError):
    """The output directory exists and holds something a run may not replace."""


def _is_earlier_output(path: Path, marker: str) -> bool:
    """True if ``path`` holds only the files of an earlier run (its ``report.json`` lists them all)."""
    try:
        report = json.loads((path / "report.json").read_text())
        listed = {Path(str(v)).name for v in report.get("output", {}).values()}
        names = {p.name for p in path.iterdir()}
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(report, dict) and marker in report and names <= listed | {"report.json"}


def check_output_dir(out_dir: Path, force: bool, marker: str = "mor_lqo") -> None:
    """Refuse early an ``out_dir`` that a run could not publish into (see :func:`staged_output_dir`)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise OutputExistsError(f"{out_dir} exists and is not empty; pass --force to replace an earlier "
                                    f"run's outputs, or choose another --out")
        if not _is_earlier_output(out_dir, marker):
            raise OutputExistsError(f"{out_dir} holds files that no earlier run wrote; refusing to replace it "
                                    f"even with --force")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        rc = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    except (OSError, AttributeError):
        return False
    return rc == 0


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``directory`` (serialises publications into it; no lock file)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield
    finally:
        os.close(fd)


def _publish(staging: Path, out_dir: Path, force: bool, marker: str) -> None:
    with _locked(out_dir.parent):
        check_output_dir(out_dir, force, marker)  # again, under the lock: another run may have published
        if out_dir.is_dir() and any(out_dir.iterdir()):
            if _exchange(staging, out_dir):  # staging now holds the earlier outputs
                shutil.rmtree(staging, ignore_errors=True)
                return
            old = Path(tempfile.mkdtemp(prefix="." + out_dir.name + ".", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, old)
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
            return
        os.replace(staging, out_dir)  # absent or empty: one rename


@contextlib.contextmanager
def staged_output_dir(out_dir: Path, force: bool = False, marker: str = "mor_lqo") -> Iterator[Path]:
    """Yield a fresh staging directory; on success publish it as ``out_dir`` in one step.

    All outputs of a run are written into the staging directory (hidden, beside ``out_dir``) and become
    visible together: by one ``rename`` when ``out_dir`` is absent or empty, by an atomic exchange (or,
    where the platform has none, two renames) when ``force`` replaces an earlier run's outputs. A
    non-empty ``out_dir`` is never replaced without ``force``, and never if it holds files that no
    earlier run wrote (its ``report.json``, carrying the key ``marker``, lists every file). Publications
    into the same parent directory are serialised by a lock, so concurrent runs cannot interleave their
    files. On any error or interruption the staging directory is removed and ``out_dir`` is untouched.

    Raises
    ------
    OutputExistsError
        ``out_dir`` is a file, or a non-empty directory that may not be replaced.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    check_output_dir(out_dir, force, marker)
    staging = Path(tempfile.mkdtemp(prefix="." + out_dir.name + ".", suffix=".tmp", dir=out_dir.parent))
    try:
        yield staging
        for f in staging.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(staging, 0o777 & ~_umask())
        _publish(staging, out_dir, force, marker)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
