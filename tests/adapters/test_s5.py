"""S5 layouts: s5-pytorch instantiated for real (incl. bidirectional, S5Block), official JAX naming."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
s5 = pytest.importorskip("s5")

from mor_lqo.adapters import extract, reduce_state_dict  # noqa: E402

H, P, L = 4, 8, 24
F32 = 3e-5


def make(seed=0, P=P, bidir=False, block=False):
    torch.manual_seed(seed)
    if block:
        return s5.S5Block(H, P, bidir=bidir)
    m = s5.S5(H, state_width=P, bidir=bidir)
    with torch.no_grad():  # varied steps so that kept and new modes differ
        m.seq.log_step.copy_(torch.log(torch.linspace(0.05, 0.5, P)))
    return m


def module_response(m, L=L):
    """(L, H_out, H_in) response of the S5 layer to a unit impulse at time t0 = L//2 in each channel."""
    u = torch.zeros(H, L, H)
    for i in range(H):
        u[i, L // 2, i] = 1.0
    with torch.no_grad():
        y = m(u)
    return y.permute(1, 2, 0).double().numpy()


def block_response(b, L=L):
    """The same from the extracted block: causal h at t >= t0, anticausal g at t < t0."""
    h = b.impulse_response(L)
    y = np.zeros((L, b.p, b.m))
    t0 = L // 2
    y[t0:] = h[: L - t0]
    g = b.anticausal_response(L)
    if g is not None:
        for j in range(t0):
            y[t0 - 1 - j] += g[j]
    return y


@pytest.mark.parametrize("bidir", [False, True])
def test_extract_matches_s5_pytorch(bidir):
    m = make(bidir=bidir)
    (b,) = extract(m.state_dict())
    assert b.arch == "s5" and b.name == "seq." and b.bidirectional == bidir
    assert b.stored == P and b.order == 2 * P and (b.m, b.p) == (H, H)
    y = module_response(m)
    np.testing.assert_allclose(block_response(b), y, atol=F32 * np.abs(y).max())


@pytest.mark.parametrize("bidir", [False, True])
def test_reduce_loads_strictly_and_identity(bidir):
    m = make(1, bidir=bidir)
    sd = m.state_dict()
    before = copy.deepcopy(sd)
    new, rep = reduce_state_dict(sd, order=6)
    assert all(torch.equal(before[k], sd[k]) for k in sd)
    assert rep[0]["build"] == {"state_width": 3, "state_dim": 3} and rep[0]["writeback_error"] < 1e-10
    assert new["seq.Lambda"].dtype == torch.complex64 and new["seq.C"].dtype == torch.complex64
    small = s5.S5(H, state_width=3, bidir=bidir)
    small.load_state_dict(new, strict=True)
    (b,) = extract(new)
    y = module_response(small)
    np.testing.assert_allclose(block_response(b), y, atol=F32 * np.abs(y).max())
    # kept modes are original modes with their own Lambda and log_step
    lam0 = sd["seq.Lambda"].numpy()
    assert all(np.any(lam0 == z) for z in new["seq.Lambda"].numpy())
    # identity
    new2, _ = reduce_state_dict(sd, order=2 * P)
    for k in sd:
        torch.testing.assert_close(new2[k], sd[k], rtol=1e-6, atol=1e-6)


def test_s5block_prefix_and_dense_reducer():
    m = make(2, block=True)
    sd = m.state_dict()
    (b,) = extract(sd)
    assert b.name == "s5.seq."
    full = b.systems[0]

    def reducer(system, r):
        # a real dense ROM: realified 2 dominant modes, similarity transformed (new Lambda, Delta = 1)
        lam, B, C, _, kappa = system.half
        keep = np.argsort(-np.abs(lam))[:2]
        from mor_lqo.systems import LQOSystem
        sub = LQOSystem.conjugate_pairs(lam[keep], B[keep], C[:, keep], D=system.D.real,
                                        dt=system.dt, scale=kappa).realify()
        T = np.eye(4) + 0.3 * np.random.default_rng(0).standard_normal((4, 4))
        return sub.similarity(T)

    new, rep = reduce_state_dict(sd, order=4, method=reducer)
    assert rep[0]["stored_after"] == 2
    small = s5.S5Block(H, 2, bidir=False)
    small.load_state_dict(new, strict=True)
    ref = reducer(full, 4).impulse_response(L)
    y = module_response(small.s5)
    np.testing.assert_allclose(y[L // 2:], ref[: L - L // 2], atol=F32 * np.abs(ref).max())


def jax_flat(seed=0, conj_sym=True, bidir=False, Pj=6):
    rng = np.random.default_rng(seed)
    p = "params/encoder/layers_0/seq/"
    sd = {
        p + "Lambda_re": -rng.uniform(0.1, 1.0, Pj).astype(np.float32),
        p + "Lambda_im": rng.uniform(-5, 5, Pj).astype(np.float32),
        p + "B": rng.standard_normal((Pj, H, 2)).astype(np.float32),
        p + "D": rng.standard_normal(H).astype(np.float32),
        p + "log_step": np.log(rng.uniform(0.01, 0.3, (Pj, 1))).astype(np.float32),
        "params/decoder/kernel": rng.standard_normal((H, 10)).astype(np.float32),
    }
    if bidir:
        sd[p + "C1"] = rng.standard_normal((H, Pj, 2)).astype(np.float32)
        sd[p + "C2"] = rng.standard_normal((H, Pj, 2)).astype(np.float32)
    else:
        sd[p + "C"] = rng.standard_normal((H, Pj, 2)).astype(np.float32)
    return sd, p


def jax_apply(sd, p, u, kappa, disc="zoh"):
    """S5SSM.apply in numpy float64 (explicit recurrences, reverse scan includes u_k)."""
    g = {k[len(p):]: v.astype(np.float64) for k, v in sd.items() if k.startswith(p)}
    Lam = g["Lambda_re"] + 1j * g["Lambda_im"]
    B = g["B"][..., 0] + 1j * g["B"][..., 1]
    step = np.exp(g["log_step"][:, 0])
    if disc == "zoh":
        lb = np.exp(Lam * step)
        Bb = ((lb - 1) / Lam)[:, None] * B
    else:
        bl = 1 / (1 - step / 2 * Lam)
        lb = bl * (1 + step / 2 * Lam)
        Bb = (bl * step)[:, None] * B
    T = u.shape[0]
    xs = np.zeros((T, lb.size), complex)
    x = np.zeros(lb.size, complex)
    for k in range(T):
        x = lb * x + Bb @ u[k]
        xs[k] = x
    if "C1" in g:
        C1 = g["C1"][..., 0] + 1j * g["C1"][..., 1]
        C2 = g["C2"][..., 0] + 1j * g["C2"][..., 1]
        xb = np.zeros((T, lb.size), complex)
        x = np.zeros(lb.size, complex)
        for k in reversed(range(T)):
            x = lb * x + Bb @ u[k]
            xb[k] = x
        y = kappa * (xs @ C1.T + xb @ C2.T).real
    else:
        C = g["C"][..., 0] + 1j * g["C"][..., 1]
        y = kappa * (xs @ C.T).real
    return y + g["D"] * u


@pytest.mark.parametrize("conj_sym,bidir,disc", [(True, False, "zoh"), (False, True, "zoh"),
                                                  (True, True, "bilinear")])
def test_jax_naming(conj_sym, bidir, disc):
    sd, p = jax_flat(conj_sym=conj_sym, bidir=bidir)
    kappa = 2.0 if conj_sym else 1.0
    (b,) = extract(sd, conj_sym=conj_sym, discretization=disc)
    assert b.arch == "s5_jax" and b.bidirectional == bidir
    u = np.random.default_rng(1).standard_normal((20, H))
    np.testing.assert_allclose(b.apply(u), jax_apply(sd, p, u, kappa, disc), rtol=1e-11, atol=1e-11)
    new, rep = reduce_state_dict(sd, order=4, conj_sym=conj_sym, discretization=disc)
    assert rep[0]["build"] == {"P": 2}
    assert new[p + "log_step"].shape == (2, 1) and new[p + "B"].shape == (2, H, 2)
    assert new["params/decoder/kernel"] is sd["params/decoder/kernel"]
    (b2,) = extract(new, conj_sym=conj_sym, discretization=disc)
    np.testing.assert_allclose(jax_apply(new, p, u, kappa, disc), b2.apply(u), rtol=1e-5, atol=1e-5)
    new2, _ = reduce_state_dict(sd, order=12, conj_sym=conj_sym, discretization=disc)
    for k in sd:
        np.testing.assert_allclose(new2[k], sd[k], rtol=1e-6, atol=1e-6)


def test_unknown_setting_is_rejected():
    sd, _ = jax_flat()
    with pytest.raises(TypeError, match="unknown setting"):
        extract(sd, conj_symm=True)
