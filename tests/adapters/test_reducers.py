"""reduce_state_dict with the package's reducers (bt, h2): strict reload, ROM equality, h2 report."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
mor = pytest.importorskip("mor_lqo")
if not hasattr(mor, "balanced_truncation"):  # pragma: no cover - a build without the reducers
    pytest.skip("mor_lqo reducers not available", allow_module_level=True)

from mor_lqo.adapters import ReducerUnavailableError, extract, reduce_state_dict  # noqa: E402

from . import test_lru, test_s4d  # noqa: E402

F32 = 3e-5


def test_s4d_bt_odd_order_matches_the_rom_and_reports_h2():
    model = test_s4d.make_model(seed=7)
    with torch.no_grad():  # decay fast enough that 1000 lags hold the whole kernel energy
        for layer in model.s4_layers:
            layer.kernel.log_A_real.copy_(torch.log(0.3 + torch.rand_like(layer.kernel.log_A_real)))
            layer.kernel.log_dt.copy_(torch.log(torch.linspace(0.1, 0.4, test_s4d.H)))
    sd = model.state_dict()
    r = 5
    new, rep = reduce_state_dict(sd, order=r, method="bt")
    # orders are budgets: a real pole costs a whole stored slot of the conjugate-halved layout, so order 5
    # allows ceil(5/2) = 3 stored modes (d_state 6, the fewest slots that hold order 5); a channel whose BT
    # at order 5 needs more slots is reduced to the largest order that fits
    d_state = rep[0]["build"]["d_state"]
    assert d_state == 6 and rep[1]["build"]["d_state"] == d_state
    assert all(e["order_after"] <= r for e in rep)
    small = test_s4d.S4Model(d_input=3, d_model=test_s4d.H, n_layers=2, d_state=d_state)
    small.load_state_dict(new, strict=True)
    Llong = 1000

    def fitting_bt(s):
        for q in range(r, 0, -1):
            rom = mor.balanced_truncation(s, q).rom
            if (q + int(np.sum(np.abs(np.linalg.eigvals(rom.A).imag) < 1e-12))) // 2 <= 3:
                return rom
        raise AssertionError

    for i, b in enumerate(extract(sd)):
        roms = [fitting_bt(s) for s in b.systems]
        y = test_s4d.module_impulse(small.s4_layers[i], test_s4d.L)
        exp = np.stack([rom.impulse_response(test_s4d.L)[:, 0, 0] for rom in roms], axis=1)
        np.testing.assert_allclose(y, exp, atol=F32 * np.abs(exp).max())
        # report: h2 error = root-sum-square of per-channel h2 errors of the ROMs ...
        err = np.sqrt(sum(mor.h2_error(s, rom) ** 2 for s, rom in zip(b.systems, roms)))
        np.testing.assert_allclose(rep[i]["h2_error"], err, rtol=1e-8)
        # ... and the l2 norm of the kernel difference of the two modules (independent route)
        yf = test_s4d.module_impulse(model.s4_layers[i], Llong)
        yr = test_s4d.module_impulse(small.s4_layers[i], Llong)
        np.testing.assert_allclose(rep[i]["h2_error"], np.linalg.norm(yf - yr), rtol=1e-4)
        assert rep[i]["rel_h2_error"] == pytest.approx(err / np.linalg.norm(yf), rel=1e-3)


def test_lru_h2_and_unavailable_method():
    mod = test_lru.make(4)
    sd = mod.state_dict()
    new, rep = reduce_state_dict(sd, order=6, method="h2")
    k = rep[0]["build"]["state_features"]
    small = test_lru.LRU(test_lru.IN, test_lru.OUT, k)
    small.load_state_dict(new, strict=True)
    (b,) = extract(new)
    y = test_lru.module_impulse(small)
    np.testing.assert_allclose(b.impulse_response(test_lru.L), y, atol=F32 * np.abs(y).max())
    assert rep[0]["rel_h2_error"] < 1
    with pytest.raises(ReducerUnavailableError, match="no_such_method"):
        reduce_state_dict(sd, order=6, method="no_such_method")
