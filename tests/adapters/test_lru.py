"""LRU layouts: lru-pytorch instantiated for real, and the JAX B_re/B_im/C_re/C_im naming."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
LRU = pytest.importorskip("LRU_pytorch").LRU

from mor_lqo.adapters import extract, reduce_state_dict  # noqa: E402
from mor_lqo.errors import OrderError  # noqa: E402
from mor_lqo.systems import LQOSystem  # noqa: E402

IN, OUT, NS, L = 3, 4, 8, 30
F32 = 2e-5


def make(seed=0, n=NS):
    torch.manual_seed(seed)
    return LRU(IN, OUT, n, rmin=0.5, rmax=0.95)


def module_impulse(mod, L=L):
    """(L, out, in): the module's own output on a unit impulse in each input channel."""
    u = torch.zeros(IN, L, IN)
    for i in range(IN):
        u[i, 0, i] = 1.0
    with torch.no_grad():
        y = mod(u)  # (in, L, out)
    return y.permute(1, 2, 0).double().numpy()


def own_modal(sd, k, L=L):
    """Test-side modal truncation of the LRU parameters (no adapter code)."""
    nu, th, ga = (sd[n].double().numpy() for n in ("nu_log", "theta_log", "gamma_log"))
    lam = np.exp(-np.exp(nu) + 1j * np.exp(th))
    B = sd["B"].numpy().astype(np.complex128) * np.exp(ga)[:, None]
    C = sd["C"].numpy().astype(np.complex128)
    s = np.sum(np.abs(C) ** 2, 0) * np.sum(np.abs(B) ** 2, 1) / (1 - np.abs(lam) ** 2)
    keep = np.sort(np.argsort(-s)[:k])
    pw = lam[keep, None] ** np.arange(L)
    h = np.einsum("pn,nl,nm->lpm", C[:, keep], pw, B[keep]).real
    h[0] += sd["D"].double().numpy()
    return h


def test_extract_matches_lru_pytorch():
    mod = make()
    (b,) = extract(mod.state_dict())
    assert b.arch == "lru" and b.name == "" and (b.m, b.p) == (IN, OUT)
    assert b.stored == NS and b.order == 2 * NS and len(b.systems) == 1
    y = module_impulse(mod)
    np.testing.assert_allclose(b.impulse_response(L), y, atol=F32 * np.abs(y).max())


@pytest.mark.parametrize("r", [4, 10])
def test_reduced_dict_loads_strictly_and_matches(r):
    mod = make(1)
    sd = mod.state_dict()
    before = copy.deepcopy(sd)
    new, rep = reduce_state_dict(sd, order=r)
    assert all(torch.equal(before[k], sd[k]) for k in sd)
    assert all(new[k].dtype == sd[k].dtype for k in sd) and new["D"] is sd["D"]
    assert rep[0]["build"] == {"state_features": r // 2} and rep[0]["writeback_error"] < 1e-10
    small = LRU(IN, OUT, r // 2)
    small.load_state_dict(new, strict=True)
    y = module_impulse(small)
    exp = own_modal(sd, r // 2)
    np.testing.assert_allclose(y, exp, atol=F32 * np.abs(exp).max())


def test_identity_round_trip():
    mod = make(2)
    sd = mod.state_dict()
    new, rep = reduce_state_dict(sd, order=2 * NS)
    for k in sd:
        torch.testing.assert_close(new[k], sd[k], rtol=1e-6, atol=1e-6)
    m2 = LRU(IN, OUT, NS)
    m2.load_state_dict(new, strict=True)
    np.testing.assert_allclose(module_impulse(m2), module_impulse(mod), atol=1e-6)


def test_new_modes_from_dense_reducer_including_real_poles():
    """A dense real ROM with a positive and a negative real pole → theta 2 pi and pi, exact."""
    mod = make(3)
    sd = mod.state_dict()

    def reducer(system, r):
        lam, B, C, _, kappa = system.half
        keep = np.argsort(-np.abs(lam))[:1]
        sub = LQOSystem.conjugate_pairs(lam[keep], B[keep], C[:, keep], D=system.D.real,
                                        dt=system.dt, scale=kappa).realify()
        A = np.zeros((4, 4))
        A[:2, :2] = sub.A
        A[2, 2], A[3, 3] = 0.8, -0.6
        Bm = np.vstack([sub.B, np.full((1, IN), 0.2), np.full((1, IN), -0.1)])
        Cm = np.hstack([sub.C, np.full((OUT, 1), 0.5), np.full((OUT, 1), 0.3)])
        T = np.eye(4) + 0.3 * np.random.default_rng(0).standard_normal((4, 4))
        return LQOSystem(A, Bm, Cm, D=system.D.real, dt=system.dt).similarity(T)

    # order 6 allows 3 stored modes (orders are budgets: the two real poles take one slot each)
    new, rep = reduce_state_dict(sd, order=6, method=reducer)
    assert rep[0]["order_after"] == 4 and rep[0]["stored_after"] == 3
    with pytest.raises(OrderError, match="2 stored modes"):
        reduce_state_dict(sd, order=4, method=reducer)  # never over budget, whatever the reducer returns
    th = np.exp(new["theta_log"].double().numpy())
    assert np.isclose(th, np.pi, rtol=1e-6).sum() == 1 and np.isclose(th, 2 * np.pi, rtol=1e-6).sum() == 1
    small = LRU(IN, OUT, 3)
    small.load_state_dict(new, strict=True)
    y = module_impulse(small)
    ref = reducer(extract(sd)[0].systems[0], 4).impulse_response(L)
    np.testing.assert_allclose(y, ref, atol=F32 * np.abs(ref).max())


def jax_flat(seed=0, H=4, N=6):
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.5, 0.95, N)
    p = "params/encoder/layers_0/seq/"
    sd = {
        "params/encoder/encoder/kernel": rng.standard_normal((3, H)).astype(np.float32),
        p + "nu_log": np.log(-np.log(r)).astype(np.float32),
        p + "theta_log": np.log(rng.uniform(0.1, 6.2, N)).astype(np.float32),
        p + "gamma_log": np.log(np.sqrt(1 - r ** 2)).astype(np.float32),
        p + "B_re": rng.standard_normal((N, H)).astype(np.float32),
        p + "B_im": rng.standard_normal((N, H)).astype(np.float32),
        p + "C_re": rng.standard_normal((H, N)).astype(np.float32),
        p + "C_im": rng.standard_normal((H, N)).astype(np.float32),
        p + "D": rng.standard_normal(H).astype(np.float32),
    }
    return sd, p


def jax_run(sd, p, u):
    """minimal-LRU recurrence x_k = lam x_{k-1} + (B*gamma) u_k, y = Re(C x) + D*u (numpy float64)."""
    g = {k[len(p):]: v.astype(np.float64) for k, v in sd.items() if k.startswith(p)}
    lam = np.exp(-np.exp(g["nu_log"]) + 1j * np.exp(g["theta_log"]))
    B = (g["B_re"] + 1j * g["B_im"]) * np.exp(g["gamma_log"])[:, None]
    C = g["C_re"] + 1j * g["C_im"]
    x = np.zeros(lam.shape, complex)
    ys = []
    for uk in u:
        x = lam * x + B @ uk
        ys.append((C @ x).real + g["D"] * uk)
    return np.array(ys)


def test_jax_naming_extract_and_write_back():
    sd, p = jax_flat()
    nested = {"params": {"encoder": {"encoder": {"kernel": sd["params/encoder/encoder/kernel"]},
                                     "layers_0": {"seq": {k[len(p):]: v for k, v in sd.items()
                                                          if k.startswith(p)}}}}}
    for obj in (sd, nested):
        (b,) = extract(obj)
        assert b.arch == "lru_jax" and b.name == p and b.stored == 6
    u = np.random.default_rng(1).standard_normal((25, 4))
    np.testing.assert_allclose(b.apply(u), jax_run(sd, p, u), rtol=1e-12, atol=1e-12)
    new, rep = reduce_state_dict(nested, order=6)
    assert rep[0]["build"] == {"d_hidden": 3}
    seq = new["params"]["encoder"]["layers_0"]["seq"]
    assert seq["B_re"].shape == (3, 4) and seq["B_re"].dtype == np.float32
    flat_new = {p + k: v for k, v in seq.items()}
    (b2,) = extract(new)
    np.testing.assert_allclose(jax_run(flat_new, p, u), b2.apply(u), rtol=1e-5, atol=1e-5)
