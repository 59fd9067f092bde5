r"""DSS layout (ag1988/dss standalone ``DSS``; Gupta et al. 2022).

Keys under a prefix ``p`` (H channels, N stored modes **shared by all channels**)::

    p.D (c', H)   p.kernel.log_dt (H, 2) [dt_re, dt_im] | (H,)   p.kernel.W (c_k, H, N, 2)
    p.kernel.Lambda (N, 2)                                   version 'softmax' | 'clip'
    p.kernel.Lambda_log_neg_re (N,), p.kernel.Lambda_im (N,)     version 'exp'
    p.kernel.Lambda_log_neg_re (N,), p.kernel.Lambda_log_im (N,) version 'exp-re-im'

Per channel h (SISO/SIMO, :math:`\kappa = 1`, **no factor 2**):

.. math::

    dt\Lambda_{h,n} = dt^{re}_h \mathrm{Re}\Lambda_n + i\,dt^{im}_h \mathrm{Im}\Lambda_n,\quad
    \bar\lambda = e^{dt\Lambda},\quad K_{c,h}[l] = \mathrm{Re}\sum_n W_{c,h,n}\, q_{h,n}\,\bar\lambda_{h,n}^l,

with :math:`q = (\bar\lambda - 1)/(\Lambda(\bar\lambda^L - 1))` for 'softmax' (normalised over the kernel
length L, evaluated as upstream: reciprocal :math:`\bar x/(|x|^2 + \epsilon)` and the overflow-safe form
for Re Λ > 0) and :math:`q = (\bar\lambda - 1)/\Lambda` for 'exp' and 'clip'. The 'softmax' kernel is LTI
only for a fixed L, which must be given (``L=...``).

Reduction: Λ is shared across channels while dt is per channel, so per-channel reductions (BT, h2, ...)
cannot be written into the DSS class; only **joint shared-mode selection** (``method="modal"``) is
written back: rows of Λ and ``W[..., idx, :]`` are sliced (exact; q of a kept mode does not depend on the
others), ``log_dt`` and ``D`` kept. For other reductions convert to an S4 per-channel layout
(``SSMKernelDiag(disc='dss', n_ssm=None)``).

Settings: ``version`` (inferred from the keys except 'softmax' vs 'clip', default 'softmax'), ``L``
(required for 'softmax'), ``max_real_Lambda=1e-4`` (clip), ``epsilon=1e-7`` (softmax reciprocal),
``bidirectional`` (inferred from W's and D's first dimensions).
"""

from __future__ import annotations

import numpy as np

from ..errors import LayoutError, OrderError
from ._common import f64, need, r2c, shape_error, to_numpy
from .block import Block, HalfModes, Unit

KAPPA = 1.0
SIGN = 0
DEFAULTS = {"version": None, "L": None, "max_real_Lambda": 1e-4, "epsilon": 1e-7,
            "bidirectional": None}
VERSIONS = ("softmax", "clip", "exp", "exp-re-im")


def find(keys) -> list[str]:
    ks = set(keys)
    out = []
    for k in keys:
        if k.endswith("kernel.W"):
            p = k[: -len("kernel.W")]
            if (p == "" or p.endswith(".")) and (p + "kernel.Lambda" in ks
                                                  or p + "kernel.Lambda_log_neg_re" in ks):
                out.append(p)
    return out


def extract(sd, prefix: str, **settings) -> Block:
    st = {**DEFAULTS, **settings}
    v = need(sd, prefix, ("D", "kernel.log_dt", "kernel.W"), "dss")
    kk = prefix + "kernel."
    if kk + "Lambda" in sd:
        version = st["version"] or "softmax"
        if version not in ("softmax", "clip"):
            raise LayoutError(f"{prefix}: key 'kernel.Lambda' means version 'softmax' or 'clip', "
                              f"got version={version!r}")
        lam_keys = ["kernel.Lambda"]
        Lr = f64(sd[kk + "Lambda"])
        if Lr.ndim != 2 or Lr.shape[1] != 2:
            raise shape_error("dss", prefix, f"Lambda {Lr.shape} must be (N, 2)")
        re, im = Lr[:, 0], Lr[:, 1]
        if version == "clip":
            re = np.minimum(re, st["max_real_Lambda"])
    else:
        re = -np.exp(f64(sd[kk + "Lambda_log_neg_re"]).reshape(-1))
        if kk + "Lambda_im" in sd:
            version, im = "exp", f64(sd[kk + "Lambda_im"]).reshape(-1)
            lam_keys = ["kernel.Lambda_log_neg_re", "kernel.Lambda_im"]
        elif kk + "Lambda_log_im" in sd:
            version, im = "exp-re-im", np.exp(f64(sd[kk + "Lambda_log_im"]).reshape(-1))
            lam_keys = ["kernel.Lambda_log_neg_re", "kernel.Lambda_log_im"]
        else:
            raise LayoutError(f"partial dss layout at {prefix!r}: 'Lambda_log_neg_re' without "
                              "'Lambda_im' / 'Lambda_log_im'")
        if st["version"] not in (None, version):
            raise LayoutError(f"{prefix}: the keys mean version {version!r}, got {st['version']!r}")
    Lam = re + 1j * im
    N = Lam.shape[0]
    W = r2c(v["kernel.W"], kk + "W")
    D = f64(v["D"])
    log_dt = f64(v["kernel.log_dt"])
    if W.ndim != 3 or W.shape[2] != N:
        raise shape_error("dss", prefix, f"W {W.shape} (complex) must be (c, H, N={N})")
    ck, H = W.shape[:2]
    if log_dt.shape == (H,):
        dre = dim = np.exp(log_dt)
    elif log_dt.shape == (H, 2):
        dre, dim = np.exp(log_dt[:, 0]), np.exp(log_dt[:, 1])
    else:
        raise shape_error("dss", prefix, f"log_dt {log_dt.shape} must be ({H},) or ({H}, 2)")
    if D.ndim != 2 or D.shape[1] != H or ck not in (D.shape[0], 2 * D.shape[0]):
        raise shape_error("dss", prefix, f"D {D.shape} must be (c, {H}) with W rows {ck} = c or 2c")
    cd = D.shape[0]
    bidir = ck == 2 * cd
    if st["bidirectional"] is not None and bool(st["bidirectional"]) != bidir:
        raise LayoutError(f"{prefix}: bidirectional={st['bidirectional']} contradicts the shapes")
    dtL = dre[:, None] * Lam.real[None] + 1j * dim[:, None] * Lam.imag[None]  # (H, N)
    lam = np.exp(dtL)
    if version == "softmax":
        if st["L"] is None:
            raise LayoutError(f"{prefix}: DSS 'softmax' kernels depend on the kernel length; pass L=...")
        Lk = int(st["L"])
        gt0 = Lam.real > 0
        dneg = dtL * np.where(gt0, -1, 1)
        num = np.exp(dneg) - 1
        x = (np.exp(dneg * Lk) - 1) * Lam[None]
        r = x.conj() / (x * x.conj() + st["epsilon"])
        q = num * r * np.where(gt0, np.exp(-dtL * (Lk - 1)), 1)
    else:
        q = (lam - 1) / Lam[None]
    units = []
    for h in range(H):
        Dh = D[:, h] if not bidir else np.concatenate([D[:, h], np.zeros(cd)])
        hm = HalfModes(lam=lam[h], B=q[h][:, None], C=W[:, h, :], D=Dh[:, None], kappa=KAPPA)
        outs = np.arange(cd) * H + h
        units.append(Unit(system=hm.system(), modes=hm, inputs=np.array([h]), outputs=outs,
                          bwd_outputs=outs.copy() if bidir else np.zeros(0, dtype=int),
                          bwd_shift=1))
    keys = [prefix + k for k in ["D", "kernel.log_dt", "kernel.W", *lam_keys]]
    return Block(prefix, "dss", units, m=H, p=cd * H, keys=keys, settings=settings,
                 meta={"version": version, "N": N, "lam_keys": lam_keys, "L": st["L"],
                       "arrays": {k: sd[prefix + k] for k in ["kernel.W", *lam_keys]}},
                 notes=["DSS shares Lambda across channels: only shared-mode selection is written back"])


def write_back(block: Block, modes, n_stored=None):  # pragma: no cover - reduce_block is used
    raise LayoutError("DSS blocks are reduced by shared-mode selection (reduce_block)")


def reduce_block(block: Block, r: int, method, horizon=None):
    """Joint shared-mode selection: keep the r/2 modes with the largest summed h2 contribution."""
    p = block.name
    if method != "modal":
        raise LayoutError(
            f"{p}: DSS shares Lambda across the H channels while dt is per channel, so per-channel "
            f"reductions (method={method!r}) cannot be written into the DSS class; use "
            "method='modal' (joint shared-mode selection) or convert the layer to the S4 "
            "SSMKernelDiag(disc='dss', n_ssm=None) layout"
        )
    if r % 2:
        raise OrderError(f"{p}: DSS stores complex modes (real order 2 each); the order must be even, "
                         f"got {r}")
    N = block.meta["N"]
    k = min(r // 2, N)
    hz = horizon
    if hz is None and any(np.any(np.abs(u.modes.lam) >= 1) for u in block.units):
        hz = block.meta["L"]
        if hz is None:
            raise LayoutError(f"{p}: modes with |lambda| >= 1: pass horizon=... for the ranking")
    score = np.zeros(N)
    for u in block.units:
        s = u.modes.h2_contributions(hz)
        tot = s.sum()
        score += s / tot if np.isfinite(tot) and tot > 0 else s
    idx = np.sort(np.argsort(-score, kind="stable")[:k])
    modes = [u.modes.select(idx) for u in block.units]
    new = {}
    for leaf, arr in block.meta["arrays"].items():
        a = np.asarray(to_numpy(arr), dtype=np.float64)
        new[p + leaf] = a[..., idx, :] if leaf == "kernel.W" else a[idx]
    return new, modes, {"d_state": k}, {"selected": idx.tolist()}
