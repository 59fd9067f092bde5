"""The numpy-only safetensors reader (core install, no ``safetensors`` package) against the package.

Oracle: the ``safetensors`` package itself. Every file below — valid ones of each dtype and malformed
ones built byte by byte — must be accepted by both readers with identical arrays and metadata, or refused
by both (ours with a :class:`CheckpointError`, never an ``AttributeError``/``TypeError``).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from mor_lqo.deep import read_safetensors, write_safetensors
from mor_lqo.errors import CheckpointError

st_numpy = pytest.importorskip("safetensors.numpy")


def _file(header: object, body: bytes = b"", raw_header: bytes | None = None) -> bytes:
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


GOOD = {
    "plain": _file({"a": _entry()}, bytes(8)),
    "two tensors": _file({"a": _entry(), "b": _entry("I64", (1,), (8, 16))}, bytes(16)),
    "metadata": _file({"__metadata__": {"k": "v"}, "a": _entry()}, bytes(8)),
    "empty tensor": _file({"a": _entry("F64", (0, 3), (0, 0))}),
    "scalar": _file({"a": _entry("F64", (), (0, 8))}, bytes(8)),
    "complex64": _file({"a": _entry("C64", (2,), (0, 16))}, bytes(16)),
    "uint16": _file({"a": _entry("U16", (3,), (0, 6))}, bytes(6)),
    "extra field (ignored, as the package does)": _file({"a": {**_entry(), "x": 1}}, bytes(8)),
}

BAD = {
    "short file": b"\x01\x02",
    "header past the end": struct.pack("<Q", 1000) + b"{}",
    "not json": _file(None, raw_header=b"{nope"),
    "not utf-8": _file(None, raw_header=b'{"\xff": 1}'),
    "json list": _file([1, 2]),
    "entry not a dict": _file({"a": 3}, bytes(8)),
    "missing shape": _file({"a": {"dtype": "F32", "data_offsets": [0, 8]}}, bytes(8)),
    "unknown dtype": _file({"a": _entry("Q7")}, bytes(8)),
    "negative shape": _file({"a": _entry(shape=(-2,))}, bytes(8)),
    "float shape": _file({"a": _entry(shape=(2.0,))}, bytes(8)),
    "string shape": _file({"a": _entry(shape="2")}, bytes(8)),
    "offsets reversed": _file({"a": _entry(offsets=(8, 0))}, bytes(8)),
    "offsets one value": _file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8]}}, bytes(8)),
    "size mismatch": _file({"a": _entry(offsets=(0, 4))}, bytes(4)),
    "truncated body": _file({"a": _entry()}, bytes(4)),
    "trailing bytes": _file({"a": _entry()}, bytes(12)),
    "gap": _file({"a": _entry(), "b": _entry(offsets=(12, 20))}, bytes(20)),
    "overlap": _file({"a": _entry(), "b": _entry(offsets=(4, 12))}, bytes(12)),
    "metadata not strings": _file({"__metadata__": {"k": 1}, "a": _entry()}, bytes(8)),
    "metadata a list": _file({"__metadata__": ["k"], "a": _entry()}, bytes(8)),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_valid_files_read_like_the_package(tmp_path, name):
    path = tmp_path / "x.safetensors"
    path.write_bytes(GOOD[name])
    ours, meta = read_safetensors(path)
    theirs = st_numpy.load_file(str(path))
    assert sorted(ours) == sorted(theirs)
    for k in ours:
        assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape
        np.testing.assert_array_equal(ours[k], theirs[k])
    assert meta == json.loads(GOOD[name][8:8 + struct.unpack("<Q", GOOD[name][:8])[0]]).get("__metadata__", {})


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_files_refused_like_the_package(tmp_path, name):
    path = tmp_path / "x.safetensors"
    path.write_bytes(BAD[name])
    with pytest.raises(Exception):  # noqa: B017 - the package raises its own SafetensorError types
        st_numpy.load_file(str(path))
    with pytest.raises(CheckpointError):
        read_safetensors(path)


def test_complex64_written_by_us_loads_in_the_package(tmp_path):
    rng = np.random.default_rng(0)
    t = {"lam": (rng.standard_normal(5) + 1j * rng.standard_normal(5)).astype(np.complex64),
         "w": rng.standard_normal((2, 3)).astype(np.float32)}
    path = tmp_path / "c.safetensors"
    write_safetensors(path, t, {"k": "v"})
    back = st_numpy.load_file(str(path))
    for k in t:
        assert back[k].dtype == t[k].dtype
        np.testing.assert_array_equal(back[k], t[k])
    ours, meta = read_safetensors(path)
    np.testing.assert_array_equal(ours["lam"], t["lam"])
    assert meta == {"k": "v"}


def test_unsupported_dtype_named_on_write(tmp_path):
    with pytest.raises(TypeError, match="complex128"):
        write_safetensors(tmp_path / "x.safetensors", {"a": np.zeros(2, np.complex128)})
