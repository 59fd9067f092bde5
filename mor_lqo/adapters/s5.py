r"""S5 layouts: ``s5-pytorch`` (``s5``) and the official JAX/Flax naming given as a flat dict (``s5_jax``).

``s5`` (s5-pytorch 0.2.1, ``S5(H, state_width=P)``; ``S5Block`` nests it as ``s5.seq.``)::

    p.Lambda (P,) complex     p.B (P, H, 2)     p.C (H, P) complex  (bidir: (H, 2P) = [C_fwd | C_bwd])
    p.D (H,)                  p.log_step (P,)   (or (P, 1))

``s5_jax`` (lindermanlab/S5 ``S5SSM``; ``.../seq/``)::

    Lambda_re, Lambda_im (P,)   B (P, H, 2)   C (H, P, 2)  | C1, C2 (H, P, 2) | C (H, 2P, 2)
    D (H,)                      log_step (P, 1)

One MIMO H → H system per layer (current-input recurrence), a step per state:

.. math::

    \Delta = s\,e^{\mathrm{log\_step}},\quad
    \text{zoh: } \bar\Lambda = e^{\Lambda\Delta},\ \bar B = \frac{\bar\Lambda - 1}{\Lambda}\tilde B;\quad
    \text{bilinear: } \bar\Lambda = \frac{1 + \Delta\Lambda/2}{1 - \Delta\Lambda/2},\
    \bar B = \frac{\Delta}{1 - \Delta\Lambda/2}\tilde B,\quad
    y_k = \kappa\,\mathrm{Re}(\tilde C x_k) + D \odot u_k,

with :math:`\kappa = 1` for s5-pytorch (no conjugate halving) and :math:`\kappa = 2` for the JAX code with
``conj_sym=True`` (its default). Bidirectional layers add a reverse scan that *includes* u_k:
:math:`x^b_k = \bar\Lambda x^b_{k+1} + \bar B u_k`, :math:`y \mathrel{+}= \kappa\mathrm{Re}(C_2 x^b)`; the
forward and reverse readouts are reduced jointly (one system with outputs [fwd; bwd]).

Settings (not in the state dict): s5-pytorch ``step_scale=1.0``, ``discretization="zoh"``; JAX
``conj_sym=True``, ``discretization="zoh"``, ``clip_eigs=False``, ``step_rescale=1.0``.

Write-back (§11.4): kept modes keep their Λ and step; new modes get Δ = 1 (``log_step = -log s``) and
Λ from the inverse discretisation; ``B = B̂ / f`` (f the input factor), ``C = Ĉ_s``, ``D`` kept.
Load into ``S5(H, state_width=P')`` (``block_count`` must divide P') / ``init_S5SSM(P=P', ...)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import LayoutError
from ._common import bilinear, c2r, check_stable, f64, inv_disc, match_modes, need, r2c, shape_error
from ._common import zoh as _zoh
from .block import Block, HalfModes, Unit

MULTI = True
SIGN = 0
DEFAULTS = {
    "s5": {"step_scale": 1.0, "discretization": "zoh"},
    "s5_jax": {"conj_sym": True, "discretization": "zoh", "clip_eigs": False, "step_rescale": 1.0},
}


def kappa(block: Block) -> float:
    return block.meta["kappa"]


def find(keys, arch: str) -> list[str]:
    ks = set(keys)
    out = []
    for k in keys:
        if not k.endswith("log_step"):
            continue
        p = k[: -len("log_step")]
        if p and p[-1] not in "./":
            continue
        if arch == "s5" and p + "Lambda" in ks:
            out.append(p)
        elif arch == "s5_jax" and p + "Lambda_re" in ks:
            out.append(p)
    return out


def _disc(A, dt, how):
    if how == "zoh":
        return _zoh(A, dt)
    if how == "bilinear":
        return bilinear(A, dt)
    raise LayoutError(f"unknown S5 discretization {how!r}; known: ('zoh', 'bilinear')")


def extract(sd, prefix: str, arch: str, **settings) -> Block:
    st = {**DEFAULTS[arch], **settings}
    if arch == "s5":
        v = need(sd, prefix, ("Lambda", "B", "C", "D", "log_step"), arch)
        Lam = r2c(v["Lambda"], prefix + "Lambda").reshape(-1)
        Cr = np.asarray(v["C"])
        C = Cr.astype(np.complex128) if np.iscomplexobj(Cr) else r2c(Cr, prefix + "C")
        scale = float(st["step_scale"])
        kap = 1.0
        cplx = {"Lambda": np.iscomplexobj(v["Lambda"]), "C": np.iscomplexobj(Cr)}
        keys = [prefix + k for k in ("Lambda", "B", "C", "D", "log_step")]
    else:
        v = need(sd, prefix, ("Lambda_re", "Lambda_im", "B", "D", "log_step"), arch)
        re = f64(v["Lambda_re"]).reshape(-1)
        if st["clip_eigs"]:
            re = np.minimum(re, -1e-4)
        Lam = re + 1j * f64(v["Lambda_im"]).reshape(-1)
        if prefix + "C1" in sd and prefix + "C2" in sd:
            C = np.concatenate([r2c(sd[prefix + "C1"], prefix + "C1"),
                                r2c(sd[prefix + "C2"], prefix + "C2")], axis=1)
            ckeys = ["C1", "C2"]
        elif prefix + "C" in sd:
            C = r2c(sd[prefix + "C"], prefix + "C")
            ckeys = ["C"]
        else:
            raise LayoutError(f"partial s5_jax layout at {prefix!r}: missing 'C' (or 'C1'/'C2')")
        scale = float(st["step_rescale"])
        kap = 2.0 if st["conj_sym"] else 1.0
        cplx = {}
        keys = [prefix + k for k in ("Lambda_re", "Lambda_im", "B", "D", "log_step", *ckeys)]
    P = Lam.shape[0]
    B = r2c(v["B"], prefix + "B")
    D = f64(v["D"]).reshape(-1)
    log_step_raw = f64(v["log_step"])
    log_step = log_step_raw.reshape(-1)
    if B.ndim != 2 or B.shape[0] != P or log_step.shape != (P,):
        raise shape_error(arch, prefix, f"Lambda ({P},), B {B.shape} (expected ({P}, H)), log_step "
                          f"{log_step_raw.shape}")
    H = B.shape[1]
    if D.shape != (H,) or C.ndim != 2 or C.shape[0] != H or C.shape[1] not in (P, 2 * P):
        raise shape_error(arch, prefix, f"C {C.shape} must be ({H}, {P}) or ({H}, {2 * P}); D "
                          f"{D.shape} ({H},)")
    bidir = C.shape[1] == 2 * P
    dt = scale * np.exp(log_step)
    lam, f = _disc(Lam, dt, st["discretization"])
    Bbar = f[:, None] * B
    if bidir:
        Cs = np.concatenate([C[:, :P], C[:, P:]], axis=0)
        Ds = np.concatenate([np.diag(D), np.zeros((H, H))], axis=0)
    else:
        Cs, Ds = C, np.diag(D)
    hm = HalfModes(lam=lam, B=Bbar, C=Cs, D=Ds, kappa=kap)
    outs = np.arange(H)
    unit = Unit(system=hm.system(), modes=hm, inputs=np.arange(H), outputs=outs,
                bwd_outputs=outs.copy() if bidir else np.zeros(0, dtype=int), bwd_shift=0,
                meta={"Lambda": Lam, "log_step": log_step, "f": f})
    settings_used = dict(st)
    return Block(prefix, arch, [unit], m=H, p=H, keys=keys, settings=settings,
                 meta={"kappa": kap, "P": P, "bidir": bidir, "scale": scale, "st": settings_used,
                       "log_step_shape": log_step_raw.shape, "complex": cplx})


def write_back(block: Block, modes: list[HalfModes], n_stored: int | None = None):
    (u,), (hm,) = block.units, modes
    p = block.name
    st = block.meta["st"]
    idx, cj = match_modes(hm.lam, u.modes.lam)
    hm = hm.conj_modes(cj)
    kept = idx >= 0
    check_stable(hm.lam[~kept], p)  # kept modes are the original's own (S5 stores Lambda freely: trained
    # models can have a slightly unstable mode, which the reducers keep exactly)
    j = np.maximum(idx, 0)
    scale = block.meta["scale"]
    log_step = np.where(kept, u.meta["log_step"][j], -np.log(scale))
    dt = scale * np.exp(log_step)
    Lam_new, f_new = inv_disc(hm.lam, dt, st["discretization"])
    Lam = np.where(kept, u.meta["Lambda"][j], Lam_new)
    f = np.where(kept, u.meta["f"][j], f_new)
    if block.arch == "s5_jax" and st["clip_eigs"] and np.any(Lam.real > -1e-4):
        raise LayoutError(f"{p}: a reduced eigenvalue has Re(Lambda) > -1e-4, which clip_eigs would "
                          "clip (not representable)")
    B = hm.B / f[:, None]
    H = block.m
    n = max(hm.n, n_stored or 0)
    k = n - hm.n
    Lam = np.concatenate([Lam, -np.ones(k)])  # inert: Lambda = -1, B = C = 0
    log_step = np.concatenate([log_step, np.zeros(k)])
    B = np.concatenate([B, np.zeros((k, H))])
    C = np.concatenate([hm.C, np.zeros((hm.p, k))], axis=1)
    Cf, Cb = (C[:H], C[H:]) if block.meta["bidir"] else (C, None)
    ls = log_step.reshape((n, 1) if len(block.meta["log_step_shape"]) == 2 else (n,))
    if block.arch == "s5":
        Cout = Cf if Cb is None else np.concatenate([Cf, Cb], axis=1)
        cx = block.meta["complex"]
        Lam = Lam.astype(np.complex128)
        new = {p + "Lambda": Lam if cx["Lambda"] else c2r(Lam), p + "B": c2r(B),
               p + "C": Cout if cx["C"] else c2r(Cout), p + "log_step": ls}
        return new, {"state_width": n, "state_dim": n}  # S5(state_width=...), S5Block(dim, state_dim)
    new = {p + "Lambda_re": Lam.real, p + "Lambda_im": Lam.imag, p + "B": c2r(B), p + "log_step": ls}
    if p + "C1" in block.keys:
        new[p + "C1"], new[p + "C2"] = c2r(Cf), c2r(Cb)
    elif Cb is not None:
        new[p + "C"] = c2r(np.concatenate([Cf, Cb], axis=1))
    else:
        new[p + "C"] = c2r(Cf)
    return new, {"P": n}
