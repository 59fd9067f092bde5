r"""MNIST-1D data and the bundled reference models.

* :func:`load_test_split` — the bundled MNIST-1D test split (1000 × 40, float32; labels uint8), the
  last 20 % of ``mnist1d.data.make_dataset(get_dataset_args())`` (seed 42, default arguments).
* :func:`generate_mnist1d` — regenerate the full dataset locally with the ``mnist1d`` package (never
  downloads; the package's own ``get_dataset`` would try to download a pickle first).
* :func:`load_bundled_model` — the trained reference models shipped in ``mor_lqo/data``
  (``"s4d"`` → :class:`~mor_lqo.deep.models.S4DModel`, ``"lqo"`` → :class:`~mor_lqo.deep.models.LQOModel`).
* :func:`read_safetensors` / :func:`write_safetensors` — a small numpy-only reader/writer of the
  safetensors format (no dependency on the ``safetensors`` package; files are interchangeable).

None of these functions import torch.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

__all__ = [
    "BUNDLED_MODELS",
    "TEST_SPLIT_FILE",
    "MODELS_JSON",
    "data_path",
    "load_test_split",
    "generate_mnist1d",
    "bundled_model_path",
    "load_bundled_model",
    "bundled_models_info",
    "read_safetensors",
    "write_safetensors",
]

BUNDLED_MODELS: dict[str, str] = {"s4d": "s4d_mnist1d.safetensors", "lqo": "lqo_mnist1d.safetensors"}
"""Bundled model name -> file name in ``mor_lqo/data``."""
TEST_SPLIT_FILE = "mnist1d_test.npz"
MODELS_JSON = "models.json"


def data_path(name: str = "") -> Path:
    """Path of a file in the package data folder ``mor_lqo/data``."""
    root = Path(str(resources.files("mor_lqo"))) / "data"
    return root / name if name else root


# ---------------------------------------------------------------------------------------------
# MNIST-1D
# ---------------------------------------------------------------------------------------------
def load_test_split() -> tuple[np.ndarray, np.ndarray]:
    """Bundled MNIST-1D test split.

    Returns
    -------
    x : ndarray, shape (1000, 40), float32
        Sequences (dataset-wide standardised as by ``mnist1d``).
    y : ndarray, shape (1000,), int64
        Labels 0..9.
    """
    path = data_path(TEST_SPLIT_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"bundled test split not found at {path}")
    with np.load(path) as f:
        return f["x"].astype(np.float32), f["y"].astype(np.int64)


def generate_mnist1d(seed: int = 42, **overrides: Any) -> dict[str, np.ndarray]:
    """Generate MNIST-1D locally with the ``mnist1d`` package (no download).

    Calls ``mnist1d.data.make_dataset(args)`` with ``get_dataset_args()`` (5000 samples, 80 % train,
    length 40) updated by ``seed`` and ``overrides``. The global ``random``/``numpy.random`` states,
    which ``mnist1d`` reseeds, are restored afterwards.

    Returns
    -------
    dict with ``x`` (4000, 40) float32, ``y`` (4000,) int64, ``x_test`` (1000, 40) float32,
    ``y_test`` (1000,) int64 (sizes for the defaults).

    Raises
    ------
    ImportError
        If ``mnist1d`` is not installed (``pip install mnist1d``).
    """
    import random

    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("generate_mnist1d needs the 'mnist1d' package: pip install mnist1d") from exc
    args = get_dataset_args(as_dict=True)
    args.update(seed=seed, **overrides)
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        ds = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return {
        "x": np.asarray(ds["x"], dtype=np.float32),
        "y": np.asarray(ds["y"], dtype=np.int64),
        "x_test": np.asarray(ds["x_test"], dtype=np.float32),
        "y_test": np.asarray(ds["y_test"], dtype=np.int64),
    }


# ---------------------------------------------------------------------------------------------
# safetensors (numpy only)
# ---------------------------------------------------------------------------------------------
_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
    "C64": np.complex64,
}
_ST_NAMES = {np.dtype(v).str: k for k, v in _ST_DTYPES.items()}
_ST_MAX_HEADER = 100_000_000  # the safetensors package's own header-size limit (bytes)


def _st_entry(path: Path, key: str, info: Any) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """Validated ``(dtype, shape, start, end)`` of one safetensors header entry."""
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise CheckpointError(f"{path}: entry {key!r} must have 'dtype', 'shape' and 'data_offsets'")
    name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(name, str) or name not in _ST_DTYPES:
        raise CheckpointError(f"{path}: entry {key!r} has an unsupported dtype {name!r} "
                              f"(supported without torch: {', '.join(_ST_DTYPES)})")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise CheckpointError(f"{path}: entry {key!r} has a malformed shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise CheckpointError(f"{path}: entry {key!r} has malformed data_offsets {offsets!r}")
    dt = np.dtype(_ST_DTYPES[name]).newbyteorder("<")
    if offsets[1] - offsets[0] != dt.itemsize * math.prod(shape):
        raise CheckpointError(f"{path}: entry {key!r}: data_offsets span {offsets[1] - offsets[0]} bytes, "
                              f"shape {shape} of {name} needs {dt.itemsize * math.prod(shape)}")
    return dt, tuple(shape), offsets[0], offsets[1]


def _st_header(path: Path, data: bytes) -> tuple[dict[str, Any], dict[str, str], int]:
    """Parse and validate the header: ``(entries, metadata, body offset)``.

    The checks are those of the ``safetensors`` package: an 8-byte little-endian header length within
    the file and its limit, a UTF-8 JSON object, string-to-string metadata, and entries whose byte
    ranges tile the data section exactly (no gaps, no overlaps, nothing after the last tensor).
    """
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(len(data) - 8, _ST_MAX_HEADER):
        raise CheckpointError(f"{path}: header length {n} exceeds the file size or the header limit")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: malformed safetensors header (not UTF-8 JSON)") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: malformed safetensors header (not a JSON object)")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CheckpointError(f"{path}: __metadata__ must map strings to strings")
    entries = {key: _st_entry(path, key, info) for key, info in header.items()}
    end = 0
    for key, (_, _, start, stop) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if start != end:
            raise CheckpointError(f"{path}: entry {key!r} starts at byte {start}, expected {end} "
                                  f"(gap or overlap in the data section)")
        end = stop
    if end != len(data) - 8 - n:
        raise CheckpointError(f"{path}: the data section holds {len(data) - 8 - n} bytes, the header describes "
                              f"{end} (truncated or padded file)")
    return entries, meta, 8 + n


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file into ``({key: ndarray}, metadata)`` without torch.

    The header is validated as strictly as the ``safetensors`` package does (see :func:`_st_header`);
    ``C64`` (complex64) is supported, ``BF16``/``F8`` types are refused (numpy has no such dtype).

    Raises
    ------
    CheckpointError
        If the file is truncated, its header is malformed, or a dtype is unsupported.
    """
    path = Path(path)
    data = path.read_bytes()
    entries, meta, body0 = _st_header(path, data)
    body = memoryview(data)[body0:]
    out: dict[str, np.ndarray] = {}
    for key, (dt, shape, start, end) in entries.items():
        out[key] = np.frombuffer(body[start:end], dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    return out, dict(meta)


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``{key: ndarray}`` (numeric dtypes) as a safetensors file (keys sorted, C order)."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        name = _ST_NAMES.get(arr.dtype.newbyteorder("<").str if arr.dtype.byteorder == ">" else arr.dtype.str)
        if name is None:
            raise TypeError(f"{key}: dtype {arr.dtype} is not supported by safetensors")
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[key] = {"dtype": name, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------------
# bundled models
# ---------------------------------------------------------------------------------------------
def bundled_model_path(name: str = "s4d") -> Path:
    """Path of a bundled model file (``name`` in :data:`BUNDLED_MODELS`)."""
    if name not in BUNDLED_MODELS:
        raise ValueError(f"unknown bundled model {name!r}; choose one of {sorted(BUNDLED_MODELS)}")
    return data_path(BUNDLED_MODELS[name])


def bundled_models_info() -> dict[str, Any]:
    """Contents of ``mor_lqo/data/models.json`` (configs, seeds, accuracies, training times)."""
    path = data_path(MODELS_JSON)
    return json.loads(path.read_text()) if path.is_file() else {}


def load_bundled_model(name: str = "s4d"):
    """Load a bundled trained model as its numpy class (``"s4d"`` or ``"lqo"``)."""
    from .models import LQOModel, S4DModel

    path = bundled_model_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"bundled model {name!r} not found at {path}")
    sd, _ = read_safetensors(path)
    return (S4DModel if name == "s4d" else LQOModel).from_state_dict(sd)
