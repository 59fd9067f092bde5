r"""S4 layouts of state-spaces/s4: v4 diagonal (``s4``), v4 DPLR (``s4_dplr``) and v3 / Liquid-S4 diagonal
(``s4v3``).

**v4 diagonal** (``S4Block`` → ``FFTConv`` → ``SSMKernelDiag``; prefix ``p`` such as ``layer.`` or
``model.layers.0.layer.layer.``)::

    p.D (c', H)   p.kernel.inv_dt (H, 1) | (H, M)   p.kernel.A_real (S, M)   p.kernel.A_imag (S, M)
    p.kernel.B (1, S, M, 2)   p.kernel.C (c_k, H, M, 2)

with c_k = c'·(2 if bidirectional), S = n_ssm (channel h uses row h mod S). Per channel (SIMO, κ = 2):

.. math::

    dt = f_{dt}(\mathrm{inv\_dt})\cdot\mathrm{rate},\quad
    A = -f_{re}(\mathrm{A\_real}) - i\,f_{im}(\mathrm{A\_imag})\ (\textbf{stored A\_imag} = -\mathrm{Im}\,A),

    \text{zoh: } \bar\Lambda = e^{dtA},\ \bar B = B(\bar\Lambda - 1)/A;\quad
    \text{bilinear: } \bar\Lambda = \frac{1 + dtA/2}{1 - dtA/2},\ \bar B = \frac{B\,dt}{1 - dtA/2};\quad
    K_{c,h}[l] = 2\,\mathrm{Re}\sum_n C_{c,h,n}\bar B_{h,n}\bar\Lambda_{h,n}^l .

Bidirectional layers: rows ``C[c':]`` give the reverse kernel, applied strictly anticausally
(``y[t] += sum_{s>=0} k1[s] u[t+1+s]``); forward and reverse rows are reduced jointly.

**v4 DPLR** (``mode='dplr'|'nplr'``): the same keys plus ``p.kernel.P (rank, S, M, 2)`` and the buffer
``p.kernel.l_kernel``. Full conjugate-expanded space (size 2M):
:math:`A_f = \mathrm{diag}([A, \bar A]) - P_f P_f^H`, always bilinear
:math:`dA = (I - \tfrac{dt}{2}A_f)^{-1}(I + \tfrac{dt}{2}A_f)`, :math:`dB = (I - \tfrac{dt}{2}A_f)^{-1} dt B_f`,
and the **stored C is** :math:`\tilde C = (I - dA^{L})^T C` with L = ``l_kernel`` (undone on extraction).
The real dense system (coordinates [Re x; Im x]) is reduced; the write-back is diagonal with P = 0 and
:math:`\tilde C = (1 - \mu^{L}) \hat C_s` (``l_kernel`` kept).

**v3 / Liquid-S4 diagonal** (``S4(..., mode='diag')`` of v3.0.0; prefix ``p``)::

    p.D (c', H)   p.kernel.kernel.log_dt (H,)   p.kernel.kernel.inv_A_real (S, M)
    p.kernel.kernel.A_imag (S, M)   p.kernel.kernel.B (S, M, 2)   p.kernel.kernel.C (c_k, H, M, 2)
    p.kernel.kernel.A (S, M, 2)  (vestigial: never read, but sliced on write-back)

:math:`dt = e^{\mathrm{log\_dt}}`, :math:`A = -e^{\mathrm{inv\_A\_real}} + i\,\mathrm{A\_imag}`, default
``disc='bilinear'``. Liquid-S4 adds no tensors; only its LTI part is extracted.

Settings (not in the state dict, upstream defaults): v4 ``disc='zoh'``, ``dt_transform='exp'`` (the class
default; the repo configs use ``'softplus'``), ``real_transform='exp'``, ``imag_transform='none'``,
``dt_fast=False``, ``bandlimit=None``, ``rate=1.0``; v3 ``disc='bilinear'``, ``rate=1.0``;
``bidirectional`` is inferred from C's and D's first dimensions. ``is_real`` layouts are not supported.

Write-back (§11.4): per-channel tensors (``n_ssm=None``: S' = H), ``inv_dt`` kept (tied) or per mode,
kept modes keep their continuous A (zoh branch), ``D`` kept; inert padding modes have A = -1, B = C = 0.
"""

from __future__ import annotations

import numpy as np

from ..errors import LayoutError
from ..systems import LQOSystem
from ._common import (
    bilinear,
    c2r,
    check_stable,
    f64,
    inv_disc,
    inv_transform,
    match_modes,
    need,
    param_transform,
    r2c,
    shape_error,
    zoh,
)
from .block import Block, HalfModes, Unit

MULTI = True
KAPPA = 2.0
_V4 = {"disc": "zoh", "dt_transform": None, "real_transform": "exp", "imag_transform": "none",
       "dt_fast": False, "bandlimit": None, "rate": 1.0, "bidirectional": None}
DEFAULTS = {
    "s4": dict(_V4),
    "s4_dplr": {k: v for k, v in _V4.items() if k not in ("disc", "bandlimit")},
    "s4v3": {"disc": "bilinear", "rate": 1.0, "bidirectional": None},
}
LEAVES = {
    "s4": ("D", "kernel.inv_dt", "kernel.A_real", "kernel.A_imag", "kernel.B", "kernel.C"),
    "s4_dplr": ("D", "kernel.inv_dt", "kernel.A_real", "kernel.A_imag", "kernel.B", "kernel.C",
                "kernel.P", "kernel.l_kernel"),
    "s4v3": ("D", "kernel.kernel.log_dt", "kernel.kernel.inv_A_real", "kernel.kernel.A_imag",
             "kernel.kernel.B", "kernel.kernel.C", "kernel.kernel.A"),
}
# tolerance on the imaginary residue of the DPLR real coordinates (float64 rounding of dense solves)
REAL_COORD_RTOL = 1e-9


def sign(block: Block) -> int:
    """Stored member of each pair: Im A < 0 when the imag transform needs -Im A > 0 (v4)."""
    st = block.meta["st"]
    if block.arch in ("s4", "s4_dplr") and st["imag_transform"] != "none":
        return -1
    return 0


def find(keys, arch: str) -> list[str]:
    ks = set(keys)
    out = []
    anchor = "kernel.kernel.inv_A_real" if arch == "s4v3" else "kernel.A_real"
    for k in keys:
        if not k.endswith(anchor):
            continue
        p = k[: -len(anchor)]
        if p and p[-1] != ".":
            continue
        if arch == "s4v3":
            out.append(p)
        elif p.endswith("kernel."):
            continue  # v3 names are handled by s4v3
        elif (p + "kernel.P" in ks) == (arch == "s4_dplr"):
            out.append(p)
    return out


def _dt(inv_dt, st):
    x = np.sinh(inv_dt) if st.get("dt_fast") else inv_dt
    return param_transform(x, st["dt_transform"]) * st["rate"]


def _inv_dt(dt, st, where):
    x = inv_transform(dt / st["rate"], st["dt_transform"], where + " dt")
    return np.arcsinh(x) if st.get("dt_fast") else x


def _common(sd, prefix, arch, st):
    """Parse D, C, dt (H, M), A (S, M), B (S, M), rows; shape checks; bidirectional inference."""
    v = need(sd, prefix, LEAVES[arch], arch)
    if arch == "s4v3":
        kk = "kernel.kernel."
        dt = np.exp(f64(v[kk + "log_dt"])) * st["rate"]
        if dt.ndim != 1:
            raise shape_error(arch, prefix, f"log_dt must be (H,), got {dt.shape}")
        dt = dt[:, None]
        Are = -np.exp(f64(v[kk + "inv_A_real"]))
        Aim = f64(v[kk + "A_imag"])
        B = r2c(v[kk + "B"], prefix + kk + "B")
        C = r2c(v[kk + "C"], prefix + kk + "C")
    else:
        kk = "kernel."
        inv_dt = f64(v[kk + "inv_dt"])
        if inv_dt.ndim != 2:
            raise shape_error(arch, prefix, f"inv_dt must be (H, 1) or (H, M), got {inv_dt.shape}")
        dt = _dt(inv_dt, st)
        Are = -param_transform(f64(v[kk + "A_real"]), st["real_transform"])
        Aim = -param_transform(f64(v[kk + "A_imag"]), st["imag_transform"])
        Braw = np.asarray(v[kk + "B"])
        if Braw.ndim != 4 or Braw.shape[0] != 1:
            raise shape_error(arch, prefix, f"B must be (1, S, M, 2), got {Braw.shape}")
        B = r2c(Braw[0], prefix + kk + "B")
        C = r2c(v[kk + "C"], prefix + kk + "C")
    D = f64(v["D"])
    if Are.ndim != 2:
        raise shape_error(arch, prefix, f"A_real must be (S, M), got {Are.shape}")
    S, M = Are.shape
    if Aim.shape != (S, M) or B.shape != (S, M):
        raise shape_error(arch, prefix, f"A_real {Are.shape}, A_imag {Aim.shape}, B {B.shape} "
                          f"(complex) must all be (S, M) = {(S, M)}")
    if C.ndim != 3 or C.shape[2] != M:
        raise shape_error(arch, prefix, f"C {C.shape} (complex) must be (c, H, M={M})")
    ck, H = C.shape[:2]
    if D.ndim != 2 or D.shape[1] != H:
        raise shape_error(arch, prefix, f"D {D.shape} must be (channels, H={H})")
    if H % S:
        raise shape_error(arch, prefix, f"n_ssm = {S} must divide H = {H}")
    if dt.shape[0] != H or dt.shape[1] not in (1, M):
        raise shape_error(arch, prefix, f"dt {dt.shape} must be ({H}, 1) or ({H}, {M})")
    cd = D.shape[0]
    bid = st.get("bidirectional")
    if ck == 2 * cd:
        inferred = True
    elif ck == cd:
        inferred = False
    else:
        raise shape_error(arch, prefix, f"C has {ck} channel rows and D {cd}: expected equal or twice")
    if bid is not None and bool(bid) != inferred:
        raise LayoutError(f"{prefix}: bidirectional={bid} contradicts the shapes (C {ck} rows, D {cd})")
    A = Are + 1j * Aim
    return dict(D=D, C=C, dt=np.broadcast_to(dt, (H, M)).copy(), tied=dt.shape[1] == 1, A=A, B=B,
                S=S, M=M, H=H, cd=cd, bidir=inferred)


def _unit_io(h, H, cd, bidir):
    outs = np.arange(cd) * H + h
    return np.array([h]), outs, (outs.copy() if bidir else np.zeros(0, dtype=int))


def extract(sd, prefix: str, arch: str, **settings) -> Block:
    st = {**DEFAULTS[arch], **settings}
    if arch in ("s4", "s4_dplr") and st["dt_transform"] is None:
        raise LayoutError(
            f"{prefix or '<root>'}: S4 blocks need the setting dt_transform, which the state dict does not record "
            "and which changes the model (the class default is 'exp', the state-spaces configs use 'softplus'): "
            "pass dt_transform=... (command line: --set dt_transform=softplus), or compress the module itself with "
            "mor_lqo.torch.compress, which reads it")
    if arch == "s4_dplr":
        st["disc"] = "bilinear"
    if arch == "s4" and prefix + "kernel.A_imag" not in sd and prefix + "kernel.A_real" in sd:
        raise LayoutError(f"{prefix}: S4 is_real layouts (no A_imag) are not supported")
    g = _common(sd, prefix, arch, st)
    H, M, S, cd = g["H"], g["M"], g["S"], g["cd"]
    C, D = g["C"], g["D"]
    units = []
    if arch == "s4_dplr":
        units = _extract_dplr(sd, prefix, st, g)
    else:
        if st.get("bandlimit") is not None:
            freqs = g["dt"] / st["rate"] * np.abs(g["A"][np.arange(H) % S].imag) / (2 * np.pi)
            C = C * (freqs < st["bandlimit"] * 0.5)[None]
        disc = {"zoh": zoh, "bilinear": bilinear}.get(st["disc"])
        if disc is None:
            raise LayoutError(f"{prefix}: unsupported disc {st['disc']!r}; supported: zoh, bilinear "
                              "('dss' depends on the kernel length and is not supported)")
        for h in range(H):
            s = h % S
            A = g["A"][s]
            lam, f = disc(A, g["dt"][h])
            Dh = D[:, h]
            if g["bidir"]:
                Dh = np.concatenate([Dh, np.zeros(cd)])
            hm = HalfModes(lam=lam, B=(f * g["B"][s])[:, None], C=C[:, h, :], D=Dh[:, None],
                           kappa=KAPPA)
            ins, outs, bwd = _unit_io(h, H, cd, g["bidir"])
            units.append(Unit(system=hm.system(), modes=hm, inputs=ins, outputs=outs,
                              bwd_outputs=bwd, bwd_shift=1,
                              meta={"A": A, "dt": g["dt"][h], "row": s}))
    keys = [prefix + leaf for leaf in LEAVES[arch]]
    rank = np.shape(sd[prefix + "kernel.P"])[0] if arch == "s4_dplr" else 0
    return Block(prefix, arch, units, m=H, p=cd * H, keys=keys, settings=settings,
                 meta={"st": st, "H": H, "M": M, "S": S, "cd": cd, "bidir": g["bidir"],
                       "tied": g["tied"], "rank": rank})


def _extract_dplr(sd, prefix, st, g):
    H, M, S, cd = g["H"], g["M"], g["S"], g["cd"]
    if not g["tied"]:
        raise LayoutError(f"{prefix}: DPLR with untied dt (dt_tie=False) is not supported")
    Praw = np.asarray(sd[prefix + "kernel.P"])
    P = r2c(Praw, prefix + "kernel.P")
    if P.ndim != 3 or P.shape[1:] != (S, M):
        raise shape_error("s4_dplr", prefix, f"P {Praw.shape} must be (rank, {S}, {M}, 2)")
    Lk = int(np.asarray(sd[prefix + "kernel.l_kernel"]).reshape(-1)[0]) if np.size(
        sd[prefix + "kernel.l_kernel"]) else 0
    n2 = 2 * M
    I2 = np.eye(n2)
    W = np.block([[np.eye(M), 1j * np.eye(M)], [np.eye(M), -1j * np.eye(M)]])  # x_f = W [Re x; Im x]
    Wi = np.linalg.inv(W)
    units = []
    for h in range(H):
        s = h % S
        dt = g["dt"][h, 0]
        A = g["A"][s]
        Pf = np.concatenate([P[:, s], P[:, s].conj()], axis=1)  # (rank, 2M)
        Af = np.diag(np.concatenate([A, A.conj()])) - Pf.T @ Pf.conj()
        Bf = np.concatenate([g["B"][s], g["B"][s].conj()])
        left = I2 - dt / 2 * Af
        dA = np.linalg.solve(left, I2 + dt / 2 * Af)
        dB = np.linalg.solve(left, dt * Bf)
        Ct = np.concatenate([g["C"][:, h], g["C"][:, h].conj()], axis=1)  # (c_k, 2M)
        if Lk > 0:
            dAL = np.linalg.matrix_power(dA, Lk)
            Cf = np.linalg.solve((I2 - dAL).T, Ct.T).T
        else:
            Cf = Ct
        Ar, Br, Cr = Wi @ dA @ W, Wi @ dB, Cf @ W
        scale = max(np.abs(Ar).max(), 1.0)
        for name, x, sc in (("A", Ar, scale), ("B", Br, np.abs(Br).max()), ("C", Cr, np.abs(Cr).max())):
            if np.abs(x.imag).max(initial=0) > REAL_COORD_RTOL * max(sc, 1e-300):
                raise LayoutError(f"{prefix} channel {h}: DPLR real coordinates of {name} are not real "
                                  "(the stored tensors are not conjugate-symmetric)")
        Dh = g["D"][:, h]
        if g["bidir"]:
            Dh = np.concatenate([Dh, np.zeros(cd)])
        sys_ = LQOSystem(Ar.real, Br.real[:, None], Cr.real, D=Dh[:, None], dt=1.0)
        ins, outs, bwd = _unit_io(h, H, cd, g["bidir"])
        units.append(Unit(system=sys_, modes=None, inputs=ins, outputs=outs, bwd_outputs=bwd,
                          bwd_shift=1, meta={"dt": g["dt"][h], "row": s, "l_kernel": Lk,
                                             "A": np.full(M, np.nan + 0j)}))
    return units


def write_back(block: Block, modes: list[HalfModes], n_stored: int | None = None):
    st, p, arch = block.meta["st"], block.name, block.arch
    H, S = block.meta["H"], block.meta["S"]
    if len(modes) != H:
        raise LayoutError(f"{p}: expected {H} channel systems, got {len(modes)}")
    if arch == "s4" and S < H and all(hm is u.modes for hm, u in zip(modes, block.units)) and (
            not n_stored or n_stored <= block.meta["M"]):
        return {}, {"d_state": 2 * block.meta["M"], "n_ssm": S}  # identity: keep the sharing
    Mn = max([hm.n for hm in modes] + [n_stored or 0])
    ck = modes[0].p
    disc = st["disc"]
    sgn = sign(block)
    Are = -np.ones((H, Mn))  # inert: A = -1
    Aim = np.zeros((H, Mn))
    Bc = np.zeros((H, Mn), np.complex128)
    Cc = np.zeros((ck, H, Mn), np.complex128)
    dts = np.zeros((H, Mn))
    for h, (u, hm) in enumerate(zip(block.units, modes)):
        if u.modes is not None:
            idx, cj = match_modes(hm.lam, u.modes.lam)
            if sgn == 0:
                hm = hm.conj_modes(cj)
            ref = np.where(idx >= 0, u.meta["A"][np.maximum(idx, 0)], np.nan)
        else:
            idx = np.full(hm.n, -1)
            ref = None
        if sgn:
            hm = hm.conj_modes(np.sign(hm.lam.imag) == -sgn)
        check_stable(hm.lam, f"{p} channel {h}")
        dt_row = u.meta["dt"]
        if block.meta["tied"]:
            dt = np.full(hm.n, dt_row[0])
        else:
            dt_new = np.exp(np.mean(np.log(dt_row)))
            dt = np.where(idx >= 0, dt_row[np.maximum(idx, 0)], dt_new)
        A, f = inv_disc(hm.lam, dt, disc, A_ref=ref)
        k = hm.n
        Are[h, :k], Aim[h, :k] = A.real, A.imag
        Bc[h, :k] = hm.B[:, 0] / f
        Cc[:, h, :k] = hm.C
        if arch == "s4_dplr" and u.meta["l_kernel"] > 0:
            Cc[:, h, :k] *= 1 - hm.lam ** u.meta["l_kernel"]
        dts[h, :k] = dt
        dts[h, k:] = dt_row[0]
    new = {}
    if arch == "s4v3":
        kk = p + "kernel.kernel."
        new[kk + "inv_A_real"] = np.log(-Are)
        new[kk + "A_imag"] = Aim
        new[kk + "B"] = c2r(Bc)
        new[kk + "C"] = c2r(Cc)
        new[kk + "A"] = c2r(Are + 1j * Aim)
        return new, {"d_state": 2 * Mn, "n_ssm": None}
    kk = p + "kernel."
    if np.any(Are >= 0):
        raise LayoutError(f"{p}: a reduced mode has Re A >= 0 (not representable)")
    new[kk + "A_real"] = inv_transform(-Are, st["real_transform"], p + " A_real")
    new[kk + "A_imag"] = inv_transform(-Aim, st["imag_transform"], p + " A_imag") if (
        st["imag_transform"] == "none") else _imag_inv(-Aim, st["imag_transform"], p, Mn, modes)
    new[kk + "B"] = c2r(Bc)[None]
    new[kk + "C"] = c2r(Cc)
    if not block.meta["tied"]:
        new[kk + "inv_dt"] = _inv_dt(dts, st, p)
    if arch == "s4_dplr":
        new[kk + "P"] = np.zeros((block.meta["rank"], H, Mn, 2))
    return new, {"d_state": 2 * Mn, "n_ssm": None}


def _imag_inv(y, transform, p, Mn, modes):
    """Inverse imag transform; padded inert slots (y == 0) get the transform's value for 1."""
    y = y.copy()
    for h, hm in enumerate(modes):
        y[h, hm.n:] = 1.0
    return inv_transform(y, transform, p + " A_imag")

