"""S4 DPLR blocks with the HiPPO-LegS initialisation (the upstream default): strongly non-normal, so the
modes' h2 contributions cancel. Modal truncation must be refused; BT and h2 must return models whose
reported errors are the true errors of the modules' own kernels."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mor_lqo.adapters import reduce_state_dict  # noqa: E402
from mor_lqo.deep.compress import compress, layer_errors  # noqa: E402
from mor_lqo.errors import IllConditionedError  # noqa: E402

from .modules import S4Block  # noqa: E402

H, N2, L = 3, 16, 48  # channels, real state size, sequence length


def _legs_half(n: int):
    """Half (Im > 0) eigen-coordinates of the LegS normal part and its low-rank correction."""
    q = np.arange(n)
    r = np.sqrt(2 * q + 1)
    A = -np.tril(np.outer(r, r), -1) - np.diag(q + 1.0)
    P = np.sqrt(q + 0.5)
    w, V = np.linalg.eig(A + np.outer(P, P))  # -1/2 + skew: normal, eigenvalues -1/2 + i omega
    keep = np.flatnonzero(w.imag > 0)
    Vi = np.linalg.inv(V)[keep]
    return w[keep], Vi @ P, Vi @ r, np.sort(np.linalg.eigvals(A).real)


def legs_block(seed=0):
    torch.manual_seed(seed)
    m = S4Block(H, d_state=N2, mode="dplr", rank=1, seed=seed)
    w, Ph, Bh, _ = _legs_half(N2)
    k = m.layer.kernel
    with torch.no_grad():
        k.A_real.copy_(torch.log(torch.as_tensor(-w.real)).expand_as(k.A_real))
        k.A_imag.copy_(torch.as_tensor(-w.imag).expand_as(k.A_imag))
        k.P.copy_(torch.view_as_real(torch.as_tensor(Ph, dtype=torch.cfloat)).expand_as(k.P))
        k.B.copy_(torch.view_as_real(torch.as_tensor(Bh, dtype=torch.cfloat)).expand_as(k.B))
        k.inv_dt.copy_(torch.log(torch.linspace(0.02, 0.1, H)[:, None]))
    m.layer.ssm_output(torch.zeros(1, H, L))  # sets C~ for the kernel length L, as upstream
    return m


def kernels(m):
    """(H, L) impulse responses of the module, in float64 (LegS is non-normal: float32 kernels lose ~3 digits)."""
    m = m.double()
    u = torch.zeros(1, H, L, dtype=torch.float64)
    u[..., 0] = 1.0
    with torch.no_grad():
        return m.layer.ssm_output(u)[0, 0].numpy()  # D at lag 0 included


def test_legs_twin_is_the_legs_operator():
    from mor_lqo.adapters import extract

    _, _, _, eig_legs = _legs_half(N2)
    np.testing.assert_allclose(eig_legs, -np.arange(N2, 0, -1.0), rtol=1e-8)  # eigenvalues -(1..n)
    (b,) = extract(legs_block().state_dict(), dt_transform="exp")
    assert b.arch == "s4_dplr"


def test_modal_refused_bt_and_h2_report_true_errors():
    m = legs_block()
    sd = m.state_dict()
    with pytest.raises(IllConditionedError, match="non-normal"):
        compress(sd, "modal", order=6, length=L, progress=False, executor="serial", dt_transform="exp")
    with pytest.raises(IllConditionedError, match="non-normal"):
        reduce_state_dict(sd, order=6, dt_transform="exp")  # the adapter's default method is modal
    y0 = kernels(m)
    for method in ("bt", "h2"):
        res = compress(sd, method, order=6, length=L, progress=False, executor="serial", dt_transform="exp")
        (lay,) = res.layers
        assert lay["stored_after"] <= 3
        small = S4Block(H, d_state=2 * lay["stored_after"], mode="dplr", rank=1)
        small.load_state_dict(res.state_dict, strict=True)
        y1 = kernels(small)
        measured = np.linalg.norm(y1 - y0)
        # the twin builds its DFT twiddles in complex64 (kernel agreement ~5e-7): 1e-5 on the error
        assert lay["h2_error_L"] == pytest.approx(measured, rel=1e-5)
        assert lay["rel_h2_error_L"] < 0.5
        # re-measured from the two checkpoints: the same figures (dense units against their realisation)
        again = layer_errors(sd, res.state_dict, length=L, dt_transform="exp")[lay["name"]]
        for key in ("h2_error", "h2_error_L", "rel_h2_error_L"):
            assert again[key] == pytest.approx(lay[key], rel=1e-5), key


def test_cli_compresses_dplr_checkpoints_and_refuses_modal_on_legs(tmp_path, capsys):
    from mor_lqo.cli import main

    torch.save(legs_block().state_dict(), tmp_path / "legs.pt")
    rc = main(["compress", str(tmp_path / "legs.pt"), "--order", "6", "--length", str(L), "--set", "dt_transform=exp",
               "--out",
               str(tmp_path / "out"), "--executor", "serial", "--quiet", "--no-progress", "--no-plot"])
    assert rc == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["layers"][0]["stored_after"] <= 3
    rc = main(["compress", str(tmp_path / "legs.pt"), "--method", "modal", "--order", "6", "--length", str(L),
               "--set", "dt_transform=exp",
               "--out", str(tmp_path / "out2"), "--executor", "serial", "--no-progress"])
    assert rc == 1 and "non-normal" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_cli_requires_the_settings_the_checkpoint_does_not_record(tmp_path, capsys):
    from mor_lqo.cli import main, parse_settings

    torch.save(legs_block().state_dict(), tmp_path / "legs.pt")
    rc = main(["inspect", str(tmp_path / "legs.pt")])
    assert rc == 4 and "dt_transform" in capsys.readouterr().err
    rc = main(["compress", str(tmp_path / "legs.pt"), "--order", "6", "--length", str(L), "--out", str(tmp_path / "o")])
    assert rc == 4 and "--set dt_transform" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["inspect", str(tmp_path / "legs.pt"), "--set", "dt_transform=exp"]) == 0
    assert parse_settings(["a=1", "b=0.5", "c=True", "d=none", "e=softplus"]) == {
        "a": 1, "b": 0.5, "c": True, "d": None, "e": "softplus"}
    assert main(["inspect", str(tmp_path / "legs.pt"), "--set", "novalue"]) == 2
