r"""S4D minimal layout (state-spaces/s4 ``models/s4/s4d.py``, ``example.py``).

Keys under a layer prefix ``p`` (H channels, M = d_state/2 stored modes)::

    p.D                 (H,)
    p.kernel.C          (H, M, 2)   view_as_real of complex C
    p.kernel.log_dt     (H,)
    p.kernel.log_A_real (H, M)
    p.kernel.A_imag     (H, M)

Channel h (SISO, :math:`\kappa = 2`, B ≡ 1, ZOH):

.. math::

    dt_h = e^{\mathrm{log\_dt}_h},\quad A_{hn} = -e^{\mathrm{log\_A\_real}_{hn}} + i\,\mathrm{A\_imag}_{hn},\quad
    \bar\Lambda = e^{dt A},\quad \bar B = (\bar\Lambda - 1)/A,\quad
    K_h[l] = 2\,\mathrm{Re}\sum_n C_{hn}\bar B_{hn}\bar\Lambda_{hn}^l .

Write-back (§11.4): ``log_dt`` and ``D`` kept; :math:`A = \log(\mu)/dt` (branch of the original mode
when the mode is kept), ``log_A_real = log(-Re A)``, ``A_imag = Im A``,
``C = Ĉ_s B̂ A / (μ − 1)`` (B folded into C). Channels are padded to a common size with inert modes
(C = 0, A = −1). Load into ``S4D(H, d_state=2 M')``.
"""

from __future__ import annotations

import numpy as np

from ..errors import LayoutError
from ._common import c2r, check_stable, f64, inv_disc, match_modes, need, r2c, shape_error
from .block import Block, HalfModes, Unit

ARCH = "s4d"
KAPPA = 2.0
SIGN = 0
ANCHOR = "kernel.log_A_real"
LEAVES = ("D", "kernel.C", "kernel.log_dt", "kernel.log_A_real", "kernel.A_imag")
DEFAULTS: dict = {}


def find(keys) -> list[str]:
    out = []
    for k in keys:
        if k.endswith(ANCHOR):
            p = k[: -len(ANCHOR)]
            if (p == "" or p.endswith(".")) and not p.endswith("kernel."):
                out.append(p)
    return out


def extract(sd, prefix: str, **settings) -> Block:
    v = need(sd, prefix, LEAVES, ARCH)
    D = f64(v["D"]).reshape(-1)
    C = r2c(v["kernel.C"], prefix + "kernel.C")
    log_dt = f64(v["kernel.log_dt"]).reshape(-1)
    lar = f64(v["kernel.log_A_real"])
    aim = f64(v["kernel.A_imag"])
    if lar.ndim != 2:
        raise shape_error(ARCH, prefix, f"log_A_real must be (H, M), got {lar.shape}")
    H, M = lar.shape
    for name, arr, shp in (("A_imag", aim, (H, M)), ("C", C, (H, M)), ("log_dt", log_dt, (H,)),
                           ("D", D, (H,))):
        if arr.shape != shp:
            raise shape_error(ARCH, prefix, f"{name} has shape {arr.shape}, expected {shp} from "
                              f"log_A_real {lar.shape}")
    dt = np.exp(log_dt)
    A = -np.exp(lar) + 1j * aim
    lam = np.exp(dt[:, None] * A)
    Bbar = (lam - 1) / A
    units = []
    for h in range(H):
        hm = HalfModes(lam=lam[h], B=Bbar[h][:, None], C=C[h][None, :], D=[[D[h]]], kappa=KAPPA)
        units.append(Unit(system=hm.system(), modes=hm, inputs=np.array([h]),
                          outputs=np.array([h]), meta={"A": A[h], "dt": dt[h]}))
    keys = [prefix + leaf for leaf in LEAVES]
    return Block(prefix, ARCH, units, m=H, p=H, keys=keys, settings={},
                 meta={"H": H, "M": M})


def write_back(block: Block, modes: list[HalfModes], n_stored: int | None = None) -> tuple[dict, dict]:
    """New arrays (float64) for the block's keys and the constructor hints (padded to ``n_stored``)."""
    p = block.name
    H = block.meta["H"]
    if len(modes) != H:
        raise LayoutError(f"{p}: expected {H} channel systems, got {len(modes)}")
    Mn = max([hm.n for hm in modes] + [n_stored or 0])
    lar = np.zeros((H, Mn))
    aim = np.zeros((H, Mn))
    C = np.zeros((H, Mn), np.complex128)
    for h, (u, hm) in enumerate(zip(block.units, modes)):
        idx, cj = match_modes(hm.lam, u.modes.lam)
        hm = hm.conj_modes(cj)
        check_stable(hm.lam, f"{p} channel {h}")
        dt = u.meta["dt"]
        ref = np.where(idx >= 0, u.meta["A"][np.maximum(idx, 0)], np.nan)
        A, _ = inv_disc(hm.lam, dt, "zoh", A_ref=ref)
        k = hm.n
        with np.errstate(divide="ignore"):  # a kept unit-circle mode (Re A = 0 to rounding): -inf, as stored
            lar[h, :k] = np.log(np.maximum(-A.real, 0.0))
        aim[h, :k] = A.imag
        C[h, :k] = hm.C[0] * hm.B[:, 0] * A / (hm.lam - 1)  # module: C (mu - 1)/A = C_s B_s
        # inert padding: A = -1 (log_A_real = 0, A_imag = 0), C = 0
    new = {p + "kernel.log_A_real": lar, p + "kernel.A_imag": aim, p + "kernel.C": c2r(C)}
    return new, {"d_state": 2 * Mn}
