"""load / save: formats, nesting, prefixes, malicious pickles, corrupt files, atomic and safe writes."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mor_lqo.adapters import extract, load, reduce_state_dict, save  # noqa: E402
from mor_lqo.errors import CheckpointError, LayoutError  # noqa: E402

from .test_s4d import make_model  # noqa: E402


@pytest.fixture
def sd():
    return make_model(d_state=8).state_dict()


def test_torch_formats_nested_and_prefixed(tmp_path, sd):
    for name, obj in [("a.pt", sd), ("b.pth", {"model": sd, "acc": 0.9, "epoch": 3}),
                      ("c.ckpt", {"state_dict": {"module." + k: v for k, v in sd.items()},
                                  "optimizer_states": [], "epoch": 1})]:
        path = tmp_path / name
        torch.save(obj, path)
        out = load(path)
        assert out.source == str(path.resolve())
        assert set(out) == set(sd)
        for k in sd:
            assert isinstance(out[k], np.ndarray) and out[k].dtype == np.float32
            np.testing.assert_array_equal(out[k], sd[k].numpy())
        assert [b.name for b in extract(path)] == ["s4_layers.0.", "s4_layers.1."]


def test_safetensors_npz_round_trip_and_complex(tmp_path, sd):
    mixed = dict(sd)
    mixed["x.Lambda"] = torch.randn(3, dtype=torch.complex64)
    for ext in (".safetensors", ".npz", ".pt"):
        p = save(mixed, tmp_path / f"m{ext}")
        out = load(p)
        assert out["x.Lambda"].dtype == np.complex64
        for k in mixed:
            np.testing.assert_array_equal(out[k], mixed[k].numpy())
    # numpy input to safetensors
    p = save({k: v.numpy() for k, v in sd.items()}, tmp_path / "n.safetensors")
    assert set(load(p)) == set(sd)


def test_in_memory_inputs(sd):
    out = load({"model": sd})
    assert set(out) == set(sd) and out.source is None
    out2 = load({k: v.numpy() for k, v in sd.items()})
    assert set(out2) == set(sd)
    bf = load({"w": torch.ones(2, dtype=torch.bfloat16)})
    assert bf["w"].dtype == np.float32


MALICIOUS = """
import os, pickle, sys, torch
marker = sys.argv[1]
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + marker,))
torch.save({"w": torch.ones(2), "evil": Evil()}, sys.argv[2])
with open(sys.argv[3], "wb") as fh:
    pickle.dump({"w": Evil()}, fh)
"""


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    pt, raw = tmp_path / "evil.pt", tmp_path / "evil.ckpt"
    script = tmp_path / "mk.py"
    script.write_text(MALICIOUS)
    subprocess.run([sys.executable, str(script), str(marker), str(pt), str(raw)], check=True)
    assert not marker.exists()
    for path in (pt, raw):
        with pytest.raises(CheckpointError, match="refused") as ei:
            load(path)
        assert str(path) in str(ei.value)
        assert not marker.exists()
    with pytest.raises(CheckpointError):
        extract(pt)
    assert not marker.exists()


def test_npz_with_pickled_objects_is_refused(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="pickled"):
        load(p)


@pytest.mark.parametrize("ext", [".pt", ".safetensors", ".npz"])
def test_truncated_and_corrupt_files(tmp_path, sd, ext):
    good = save(sd, tmp_path / f"good{ext}")
    data = good.read_bytes()
    trunc = tmp_path / f"trunc{ext}"
    trunc.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / f"garbage{ext}"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    for path in (trunc, garbage):
        with pytest.raises(CheckpointError) as ei:
            load(path)
        assert str(path) in str(ei.value)


def test_missing_and_unknown_extension(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load(tmp_path / "nope.pt")
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(CheckpointError, match="extension"):
        load(p)


def test_save_is_safe_and_atomic(tmp_path, sd, monkeypatch):
    src = save(sd, tmp_path / "in.pt")
    loaded = load(src)
    new, _ = reduce_state_dict(loaded, order=4)
    assert new.source == loaded.source
    with pytest.raises(CheckpointError, match="input checkpoint"):
        save(new, src)
    with pytest.raises(CheckpointError, match="input checkpoint"):
        save(new, src, overwrite=True)
    # a path that resolves to the input through a symlink / relative parts
    link = tmp_path / "link.pt"
    os.symlink(src, link)
    with pytest.raises(CheckpointError, match="input checkpoint"):
        save(new, link, overwrite=True)
    with pytest.raises(CheckpointError, match="input checkpoint"):
        save(dict(new), tmp_path / "sub" / ".." / "in.pt", overwrite=True)
    out = save(new, tmp_path / "out.pt")
    with pytest.raises(CheckpointError, match="exists"):
        save(new, out)
    save(new, out, overwrite=True)
    # a failing write leaves neither a partial target nor a temporary file behind
    import safetensors.numpy

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save(dict(loaded), tmp_path / "fail.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["in.pt", "link.pt", "out.pt"]


def test_unknown_layout_message():
    with pytest.raises(LayoutError, match=r"no SSM block.*known layouts: s4d, s4"):
        extract({"encoder.weight": np.ones((2, 2)), "decoder.bias": np.ones(2)})
    with pytest.raises(LayoutError, match="SSM-like keys.*foo.log_dt"):
        extract({"foo.log_dt": np.ones(2)})
    with pytest.raises(LayoutError, match="unknown layout"):
        extract({"a": np.ones(1)}, arch="s6")
    with pytest.raises(LayoutError, match="the 'lru' layout"):
        extract(make_model(d_state=8).state_dict(), arch="lru")
    with pytest.raises(CheckpointError, match="mapping"):
        extract([("a", np.ones(2))])


def test_zip_named_pt_with_bad_member(tmp_path):
    p = tmp_path / "bad.pt"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", b"garbage")
    with pytest.raises(CheckpointError):
        load(p)


def test_safetensors_round_trip_without_the_safetensors_package(tmp_path, monkeypatch):
    """The core install has no safetensors package: save/load fall back to the numpy codec."""
    import builtins

    import numpy as np

    from mor_lqo import adapters

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError("no safetensors")
        return real_import(name, *args, **kwargs)

    sd = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5, -2.0])}
    monkeypatch.setattr(builtins, "__import__", fake_import)
    path = tmp_path / "x.safetensors"
    adapters.save(sd, path)
    back = adapters.load(path)
    monkeypatch.setattr(builtins, "__import__", real_import)
    from safetensors.numpy import load_file  # the real package reads the fallback's file

    for src in (back, load_file(str(path))):
        assert set(src) == set(sd)
        for k in sd:
            assert src[k].dtype == sd[k].dtype
            np.testing.assert_array_equal(src[k], sd[k])


def test_saved_file_has_umask_permissions(tmp_path):
    import os
    import stat

    import numpy as np

    from mor_lqo import adapters

    p = adapters.save({"w": np.ones(3)}, tmp_path / "w.npz")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~mask
