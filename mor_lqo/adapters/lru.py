r"""LRU layouts (Orvieto et al. 2023): ``lru-pytorch`` / forgi86 and the JAX (minimal-LRU) naming.

``lru`` (lru-pytorch 0.1.3, ``LRU(in_features, out_features, state_features=N)``)::

    p.nu_log (N,)  p.theta_log (N,)  p.gamma_log (N,)
    p.B (N, in) complex      p.C (out, N) complex      p.D (out, in)

``lru_jax`` (minimal-LRU ``LRU(d_hidden=N, d_model=H)``, paper appendix naming)::

    p/nu_log (N,)  p/theta_log (N,)  p/gamma_log (N,)
    p/B_re, p/B_im (N, H)    p/C_re, p/C_im (H, N)    p/D (H,)  (diagonal)

One MIMO system per layer, :math:`\kappa = 1`, already discrete:

.. math::

    \lambda = e^{-e^{\nu} + i e^{\theta}},\quad \tilde B = B \odot e^{\gamma},\quad
    x_k = \lambda \odot x_{k-1} + \tilde B u_k,\quad y_k = \mathrm{Re}(C x_k) + D u_k .

Write-back (§11.4): kept modes keep their own ``nu_log``/``theta_log``/``gamma_log`` (so the identity
round trip reproduces the parameters); new modes get ``nu_log = log(-log|mu|)``,
``theta_log = log(arg mu mod 2 pi)`` (a real positive mu takes the phase 2 pi, i.e. exactly real in exact
arithmetic), ``gamma_log = log sqrt(1 - |mu|^2)`` and ``B = B̂ / gamma``; ``C = Ĉ_s`` (2Ĉ for pairs, Ĉ for
real modes); ``D`` kept. Load into ``LRU(in, out, state_features=r')`` / ``LRU(d_hidden=r')``.
"""

from __future__ import annotations

import numpy as np

from ..errors import LayoutError
from ._common import check_stable, f64, match_modes, need, r2c, shape_error
from .block import Block, HalfModes, Unit

MULTI = True
KAPPA = 1.0
SIGN = 0
ANCHOR = "nu_log"
LEAVES = {
    "lru": ("nu_log", "theta_log", "gamma_log", "B", "C", "D"),
    "lru_jax": ("nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D"),
}
DEFAULTS: dict = {"lru": {}, "lru_jax": {}}


def find(keys, arch: str) -> list[str]:
    ks = set(keys)
    out = []
    for k in keys:
        if not k.endswith(ANCHOR):
            continue
        p = k[: -len(ANCHOR)]
        if p and p[-1] not in "./":
            continue
        jax = p + "B_re" in ks
        if (arch == "lru_jax") == jax:
            out.append(p)
    return out


def _complex_param(x, name):
    a = np.asarray(x)
    if np.iscomplexobj(a):
        return a.astype(np.complex128)
    if a.ndim == 3 and a.shape[-1] == 2:
        return r2c(a, name)
    raise LayoutError(f"{name}: expected a complex tensor (or its view_as_real), got {a.dtype} "
                      f"{a.shape}")


def extract(sd, prefix: str, arch: str) -> Block:
    v = need(sd, prefix, LEAVES[arch], arch)
    nu = f64(v["nu_log"]).reshape(-1)
    th = f64(v["theta_log"]).reshape(-1)
    ga = f64(v["gamma_log"]).reshape(-1)
    N = nu.shape[0]
    if arch == "lru":
        B = _complex_param(v["B"], prefix + "B")
        C = _complex_param(v["C"], prefix + "C")
        D = f64(v["D"])
    else:
        B = f64(v["B_re"]) + 1j * f64(v["B_im"])
        C = f64(v["C_re"]) + 1j * f64(v["C_im"])
        D = f64(v["D"])
    if th.shape != (N,) or ga.shape != (N,):
        raise shape_error(arch, prefix, f"nu_log {nu.shape}, theta_log {th.shape}, gamma_log {ga.shape}")
    if B.ndim != 2 or B.shape[0] != N or C.ndim != 2 or C.shape[1] != N:
        raise shape_error(arch, prefix, f"B {B.shape} must be (N={N}, in) and C {C.shape} (out, N)")
    m, p = B.shape[1], C.shape[0]
    if arch == "lru_jax":
        if D.shape != (p,) or p != m:
            raise shape_error(arch, prefix, f"D {D.shape} must be ({p},) with H = in = out")
        Dm = np.diag(D)
    else:
        if D.shape != (p, m):
            raise shape_error(arch, prefix, f"D {D.shape} must be (out, in) = {(p, m)}")
        Dm = D
    lam = np.exp(-np.exp(nu) + 1j * np.exp(th))
    gamma = np.exp(ga)
    hm = HalfModes(lam=lam, B=B * gamma[:, None], C=C, D=Dm, kappa=KAPPA)
    unit = Unit(system=hm.system(), modes=hm, inputs=np.arange(m), outputs=np.arange(p),
                meta={"nu": nu, "theta": th, "gamma": ga})
    keys = [prefix + leaf for leaf in LEAVES[arch]]
    return Block(prefix, arch, [unit], m=m, p=p, keys=keys, meta={"N": N})


def write_back(block: Block, modes: list[HalfModes], n_stored: int | None = None):
    (u,), (hm,) = block.units, modes
    p = block.name
    idx, cj = match_modes(hm.lam, u.modes.lam)
    hm = hm.conj_modes(cj)
    check_stable(hm.lam, p)
    if np.any(hm.lam == 0):
        raise LayoutError(f"{p}: an eigenvalue 0 is not representable in the LRU layout (nu = inf)")
    kept = idx >= 0
    j = np.maximum(idx, 0)
    mag = np.abs(hm.lam)
    ang = np.mod(np.angle(hm.lam), 2 * np.pi)
    ang = np.where(ang == 0, 2 * np.pi, ang)  # real positive: phase 2 pi (exp(theta) must be > 0)
    nu = np.where(kept, u.meta["nu"][j], np.log(-np.log(mag)))
    th = np.where(kept, u.meta["theta"][j], np.log(ang))
    ga = np.where(kept, u.meta["gamma"][j], np.log(np.sqrt(1 - mag ** 2)))
    B = hm.B / np.exp(ga)[:, None]
    C = hm.C
    n = max(hm.n, n_stored or 0)
    k = n - hm.n
    if k:  # inert modes: lambda = exp(-1 + i), B = C = 0
        nu = np.concatenate([nu, np.zeros(k)])
        th = np.concatenate([th, np.zeros(k)])
        ga = np.concatenate([ga, np.zeros(k)])
        B = np.concatenate([B, np.zeros((k, B.shape[1]))])
        C = np.concatenate([C, np.zeros((C.shape[0], k))], axis=1)
    new = {p + "nu_log": nu, p + "theta_log": th, p + "gamma_log": ga}
    if block.arch == "lru":
        new[p + "B"], new[p + "C"] = B, C
        return new, {"state_features": n}
    new[p + "B_re"], new[p + "B_im"] = B.real, B.imag
    new[p + "C_re"], new[p + "C_im"] = C.real, C.imag
    return new, {"d_hidden": n}
