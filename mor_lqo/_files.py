"""File handling at the edge: atomic outputs (temporary file, then rename) and size-checked ``.npz`` input."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["atomic_output", "available_memory", "read_npz_checked"]


def _default_mode() -> int:
    """Permissions a normally created file gets (``mkstemp``'s 0600 is not kept)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


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


def _format_bytes(n: float) -> str:
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
                            f"({_format_bytes(nbytes)}) but holds {_format_bytes(info.file_size - fh.tell())}")
                    if nbytes > limit:
                        raise DataFileError(
                            f"{path}: member {name!r} needs {_format_bytes(nbytes)} of memory, over the limit of "
                            f"{_format_bytes(limit)} (min of the cap and half the available memory)")
                with zf.open(info) as fh:  # sizes checked: now read it for real
                    out[name] = np.lib.format.read_array(fh, allow_pickle=False)
    except DataFileError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise DataFileError(f"{path}: cannot read the data file ({exc})") from exc
    return out
