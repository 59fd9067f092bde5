"""``mor-lqo compress`` on checkpoints of the real upstream S5 and LRU packages (complex parameters).

These once crashed in the numpy safetensors writer (complex64 unsupported). Oracle: the upstream module
itself — the written file (of the input's kind) is read by ``torch.load(weights_only=True)`` or the
``safetensors`` package, loaded *strictly* into a freshly
built smaller upstream module, and that module's impulse response differs from the original's by the
h2 error the report states (finite horizon, to float32 accuracy).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st_torch = pytest.importorskip("safetensors.torch")

from mor_lqo.cli import EXIT_OK, main  # noqa: E402

L = 64


def _impulse(mod, m: int, call) -> np.ndarray:
    """(L, p, m) response of a (batch, L, m) -> (batch, L, p) module to unit impulses at time 0."""
    u = torch.zeros(m, L, m)
    u[torch.arange(m), 0, torch.arange(m)] = 1.0
    with torch.no_grad():
        y = call(mod, u)
    return y.permute(1, 2, 0).double().numpy()


def _compress(path, out, method):
    assert main(["compress", str(path), "--method", method, "--order", "4", "--length", str(L), "--out", str(out),
                 "--no-progress", "--no-plot", "--quiet"]) == EXIT_OK
    (ckpt,) = out.glob("*_compressed.*")  # the input's kind: .pt stays .pt (weights_only), safetensors stays
    new = torch.load(ckpt, weights_only=True) if ckpt.suffix == ".pt" else st_torch.load_file(str(ckpt))
    return new, json.loads((out / "report.json").read_text())


def _check(big, small, new_sd, report, m, call):
    small.load_state_dict(new_sd, strict=True)
    h, hr = _impulse(big, m, call), _impulse(small, m, call)
    (layer,) = report["layers"]
    err = np.sqrt(np.sum((h - hr) ** 2))
    # the report's finite-horizon error is the true error of the written float32 model (float32 rounding)
    assert abs(err - layer["h2_error_L"]) <= 1e-4 * np.sqrt(np.sum(h**2)) + 1e-3 * err


@pytest.mark.parametrize("method", ["modal", "h2"])
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_s5_pytorch(tmp_path, method, fmt):
    s5 = pytest.importorskip("s5")
    torch.manual_seed(0)
    H, P = 6, 12
    big = s5.S5(H, state_width=P, bidir=False)
    sd = {k: v.contiguous() for k, v in big.state_dict().items()}
    path = tmp_path / f"s5.{fmt}"
    torch.save(sd, path) if fmt == "pt" else st_torch.save_file(sd, str(path))
    new_sd, report = _compress(path, tmp_path / "out", method)
    assert new_sd["seq.Lambda"].dtype == torch.complex64 and new_sd["seq.Lambda"].shape == (2,)
    _check(big, s5.S5(H, state_width=2, bidir=False), new_sd, report, H, lambda mod, u: mod(u))


@pytest.mark.parametrize("method", ["modal", "h2"])
def test_lru_pytorch(tmp_path, method):
    LRU = pytest.importorskip("LRU_pytorch").LRU
    torch.manual_seed(1)
    m, p, n = 3, 4, 10
    big = LRU(m, p, n, rmin=0.5, rmax=0.95)
    path = tmp_path / "lru.safetensors"
    st_torch.save_file({k: v.contiguous() for k, v in big.state_dict().items()}, str(path))
    new_sd, report = _compress(path, tmp_path / "out", method)
    _check(big, LRU(m, p, 2), new_sd, report, m, lambda mod, u: mod(u))
