"""The package's LQO Deep-SSM layout (``<layer>.ssm.`` keys with quadratic readout U)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tm = pytest.importorskip("mor_lqo.deep.torch_models")

from mor_lqo.adapters import extract, reduce_state_dict  # noqa: E402
from mor_lqo.errors import LayoutError  # noqa: E402
from mor_lqo.systems import LQOSystem  # noqa: E402

H, P, R, L = 4, 6, 2, 20
F32 = 3e-5


def make(seed=0, n_modes=P, rank=R):
    torch.manual_seed(seed)
    m = tm.LQOModel(d_input=2, d_output=3, d_model=H, n_layers=2, n_modes=n_modes, rank=rank)
    with torch.no_grad():
        for layer in m.layers:
            s = layer.ssm
            s.log_A_real.copy_(torch.log(0.05 + torch.rand(n_modes)))
            s.A_imag.copy_(torch.randn(n_modes) * 3)
            s.log_dt.fill_(np.log(0.3))
    return m


def run_ssm(ssm, u):
    """Module output (linear incl. D u, quadratic) for u (L, H), float64 numpy."""
    with torch.no_grad():
        y, lin, quad = ssm(torch.as_tensor(u, dtype=torch.float32)[None], return_parts=True)
    return y[0].double().numpy(), lin[0].double().numpy()


def test_extract_matches_module_linear_and_quadratic():
    m = make()
    blocks = extract(m.state_dict())
    assert [b.name for b in blocks] == ["layers.0.ssm.", "layers.1.ssm."]
    for b, layer in zip(blocks, m.layers):
        assert b.arch == "lqo" and (b.m, b.p) == (H, H) and b.stored == P
        (s,) = b.systems
        assert s.M is not None and s.is_discrete and abs(s.dt - 0.3) < 1e-6
        # linear part on unit impulses (one per input channel)
        for i in range(H):
            u = np.zeros((L, H))
            u[0, i] = 1.0
            _, lin = run_ssm(layer.ssm, u)
            ref = b.impulse_response(L)[:, :, i]
            np.testing.assert_allclose(lin, ref, atol=F32 * np.abs(ref).max())
        u = np.random.default_rng(0).standard_normal((L, H))
        y, _ = run_ssm(layer.ssm, u)
        np.testing.assert_allclose(s.simulate(u), y, atol=F32 * np.abs(y).max())


def test_modal_reduction_slices_modes_and_loads_strictly():
    m = make(1)
    sd = m.state_dict()
    before = copy.deepcopy(sd)
    new, rep = reduce_state_dict(sd, order=6)
    assert all(torch.equal(before[k], sd[k]) for k in sd)
    assert rep[0]["build"] == {"n_modes": 3, "rank": R} and rep[0]["writeback_error"] < 1e-10
    small = tm.LQOModel(d_input=2, d_output=3, d_model=H, n_layers=2, n_modes=3, rank=R)
    small.load_state_dict(new, strict=True)
    u = np.random.default_rng(1).standard_normal((L, H))
    for i in range(2):
        p = f"layers.{i}.ssm."
        # the kept modes are original modes: find them and slice the original module by hand
        lar0 = sd[p + "log_A_real"].numpy()
        idx = [int(np.flatnonzero(lar0 == v)[0]) for v in new[p + "log_A_real"].numpy()]
        ref = tm.LQOSSM(H, 3, R)
        with torch.no_grad():
            ref.log_A_real.copy_(sd[p + "log_A_real"][idx])
            ref.A_imag.copy_(sd[p + "A_imag"][idx])
            ref.log_dt.copy_(sd[p + "log_dt"])
            ref.B.copy_(sd[p + "B"][idx])
            ref.C.copy_(sd[p + "C"][:, idx])
            ref.U.copy_(sd[p + "U"][:, :, idx])
            ref.D.copy_(sd[p + "D"])
        y_ref, _ = run_ssm(ref, u)
        y, _ = run_ssm(small.layers[i].ssm, u)
        np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
        # and the reduced model's own simulation
        (s,) = extract(new)[i].systems
        np.testing.assert_allclose(s.simulate(u), y, atol=F32 * np.abs(y).max())


def test_identity_round_trip():
    m = make(2)
    sd = m.state_dict()
    new, rep = reduce_state_dict(sd, order=2 * P)
    for k in sd:
        torch.testing.assert_close(new[k], sd[k], rtol=1e-6, atol=1e-6)


def _dense_rom(system, rank_boost=False, cross=False):
    """Real dense ROM from 2 kept modes (similarity-transformed); quadratic part optionally altered."""
    lam, B, C, M, kappa = system.half
    keep = np.argsort(-np.abs(lam))[:2]
    M2 = M[:, keep][:, :, keep]
    if rank_boost:  # full rank 2 M_j from a rank-1 U_j: still representable with R = 2
        M2 = M2 + np.eye(2)[None]
    sub = LQOSystem.conjugate_pairs(lam[keep], B[keep], C[:, keep], M=M2, D=system.D.real,
                                    dt=system.dt, scale=kappa).realify()
    Mr = sub.M.copy()
    if cross:  # a real symmetric perturbation that is not of the form [[X, -Y], [Y, X]]
        Mr[:, 0, 0] += 1.0
    T = np.eye(4) + 0.2 * np.random.default_rng(3).standard_normal((4, 4))
    return LQOSystem(sub.A, sub.B, sub.C, M=Mr, D=system.D.real, dt=system.dt).similarity(T)


def test_dense_rom_is_refactored_into_U():
    m = make(3, rank=2)
    sd = m.state_dict()
    new, rep = reduce_state_dict(sd, order=4, method=lambda s, r: _dense_rom(s, rank_boost=True))
    assert rep[0]["writeback_error"] < 1e-9
    small = tm.LQOModel(d_input=2, d_output=3, d_model=H, n_layers=2, n_modes=2, rank=2)
    small.load_state_dict(new, strict=True)
    u = np.random.default_rng(4).standard_normal((L, H))
    rom = _dense_rom(extract(sd)[0].systems[0], rank_boost=True)
    y, _ = run_ssm(small.layers[0].ssm, u)
    np.testing.assert_allclose(y, rom.simulate(u), atol=F32 * np.abs(y).max())


def test_unrepresentable_quadratic_outputs_are_refused():
    sd = make(4, rank=1).state_dict()
    with pytest.raises(LayoutError, match="rank 2 > R = 1"):
        reduce_state_dict(sd, order=4, method=lambda s, r: _dense_rom(s, rank_boost=True))
    with pytest.raises(LayoutError, match="conjugate"):
        reduce_state_dict(sd, order=4, method=lambda s, r: _dense_rom(s, cross=True))
