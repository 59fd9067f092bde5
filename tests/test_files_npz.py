"""Size-checked ``.npz`` input (``mor_lqo._files.read_npz_checked``) and the CLI's use of it.

Oracle: ``numpy.load`` for valid archives (identical arrays); hostile archives are built byte by byte
(a header that claims 128 GiB over 8 bytes of data, a compressed run of zeros far larger than the
limit, a pickled member) and must be refused before anything of their declared size is allocated.
"""

from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

from mor_lqo._files import read_npz_checked
from mor_lqo.cli import EXIT_FILE, main
from mor_lqo.errors import DataFileError, MorLqoError


def _npy_header(shape, dtype="<f8") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip_member(path, name: str, header: bytes, payload_chunks, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as zf, zf.open(name + ".npy", "w", force_zip64=True) as fh:
        fh.write(header)
        for chunk in payload_chunks:
            fh.write(chunk)


@pytest.mark.parametrize("savez", [np.savez, np.savez_compressed])
def test_valid_archives_read_like_numpy(tmp_path, savez):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    y = np.arange(3)
    f = np.asfortranarray(rng.standard_normal((4, 3)))
    path = tmp_path / "d.npz"
    savez(path, x=x, y=y, f=f, empty=np.zeros((0, 4)))
    got = read_npz_checked(path, ("x", "y", "f", "empty", "absent"))
    assert sorted(got) == ["empty", "f", "x", "y"]
    with np.load(path) as ref:
        for k in got:
            assert got[k].dtype == ref[k].dtype
            np.testing.assert_array_equal(got[k], ref[k])


def test_header_claiming_128_gib_is_refused_without_allocating(tmp_path):
    path = tmp_path / "liar.npz"
    _zip_member(path, "x", _npy_header((1 << 34,)), [bytes(8)])  # 2**34 float64 = 128 GiB declared
    tracemalloc.start()
    with pytest.raises(DataFileError, match=r"declares shape .*\(128 GiB\) but holds 8 B"):
        read_npz_checked(path, ("x",))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20  # nothing near the declared size was allocated


def test_zip_bomb_is_refused_before_decompression(tmp_path):
    path = tmp_path / "bomb.npz"
    n = 32 << 20  # 32 Mi float64 = 256 MiB of zeros, ~256 KiB compressed; the limit below is 1 MiB
    _zip_member(path, "x", _npy_header((n,)), [bytes(16 << 20)] * 16, compress=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(DataFileError, match="needs 256 MiB of memory, over the limit of 1 MiB"):
        read_npz_checked(path, ("x",), max_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20  # zipfile's read-ahead only, nothing near the 256 MiB declared
    small = tmp_path / "zeros.npz"
    np.savez_compressed(small, x=np.zeros(1 << 16))
    assert read_npz_checked(small, ("x",), max_bytes=1 << 20)["x"].shape == (1 << 16,)  # within the limit


def test_pickled_and_corrupt_members_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataFileError, match="Python objects"):
        read_npz_checked(path, ("x",))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataFileError, match="cannot read"):
        read_npz_checked(junk, ("x",))
    assert issubclass(DataFileError, MorLqoError)


def test_cli_refuses_hostile_data_with_one_line(tmp_path, capsys):
    from deep_builders import s4d_sd

    from mor_lqo.adapters import save

    ckpt = save(s4d_sd(np.random.default_rng(1), H=2, M=(4,)), tmp_path / "m.safetensors")
    path = tmp_path / "liar.npz"
    _zip_member(path, "x", _npy_header((1 << 34,)), [bytes(8)])
    assert main(["compress", str(ckpt), "--data", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == EXIT_FILE
    err = capsys.readouterr().err
    assert "declares shape" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
