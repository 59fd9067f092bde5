r"""The package's own LQO Deep-SSM layout (:mod:`mor_lqo.deep`, ``LQOSSM``).

Keys under a prefix ``p`` = ``<layer>.ssm.`` (H channels, P stored modes, rank R)::

    p.log_A_real (P,)   p.A_imag (P,)   p.log_dt (1,)
    p.B (P, H, 2)       p.C (H, P, 2)   p.U (H, R, P, 2)   (or p.M (H, P, P, 2), Hermitian)
    p.D (H,)

One MIMO H → H LQO system per layer, :math:`\kappa = 1`, ZOH with one scalar step:

.. math::

    \Lambda = -e^{\mathrm{log\_A\_real}} + i\,\mathrm{A\_imag},\quad \bar\Lambda = e^{\Delta\Lambda},\quad
    \bar B = \frac{\bar\Lambda - 1}{\Lambda} B,\quad
    y_j = \mathrm{Re}(C_j x_k) + x_k^H M_j x_k + D_j u_j,\quad M_j = U_j^H U_j,

i.e. ``LQOSystem.conjugate_pairs(Λ̄, B̄, C, M=M, D=diag(D), dt=Δ, scale=1)``.

Write-back: ``log_dt`` and ``D`` kept; :math:`\Lambda = \log(\mu)/\Delta` (the original branch for kept
modes), ``B = B̂ Λ/(μ − 1)``, ``C = Ĉ_s``; ``U``: columns sliced when the reduction is a mode selection
(exact, same factor), else :math:`\hat M_j = \hat U_j^H \hat U_j` by an eigen-factorisation with the
same rank R (LayoutError if :math:`\hat M_j` is not positive semidefinite or has rank > R).
Load into ``LQOSSM(H, n_modes=P', rank=R)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import LayoutError
from ._common import c2r, check_stable, f64, inv_disc, match_modes, need, r2c, shape_error
from .block import Block, HalfModes, Unit

MULTI = False
KAPPA = 1.0
SIGN = 0
ANCHOR = "ssm.log_A_real"
BASE = ("log_A_real", "A_imag", "log_dt", "B", "C", "D")
DEFAULTS: dict = {}
# relative eigenvalue threshold of the PSD / rank test of reduced quadratic outputs
PSD_RTOL = 1e-9


def find(keys) -> list[str]:
    out = []
    for k in keys:
        if k.endswith(ANCHOR):
            p = k[: -len("log_A_real")]
            if p == "ssm." or p.endswith(".ssm."):
                out.append(p)
    return out


def extract(sd, prefix: str) -> Block:
    v = need(sd, prefix, BASE, "lqo")
    if prefix + "U" in sd:
        qkey = "U"
    elif prefix + "M" in sd:
        qkey = "M"
    else:
        raise LayoutError(f"partial lqo layout at {prefix!r}: missing 'U' (or 'M')")
    lar = f64(v["log_A_real"]).reshape(-1)
    aim = f64(v["A_imag"]).reshape(-1)
    log_dt = f64(v["log_dt"]).reshape(-1)
    B = r2c(v["B"], prefix + "B")
    C = r2c(v["C"], prefix + "C")
    Q = r2c(sd[prefix + qkey], prefix + qkey)
    D = f64(v["D"]).reshape(-1)
    P = lar.shape[0]
    if aim.shape != (P,) or log_dt.shape != (1,):
        raise shape_error("lqo", prefix, f"log_A_real {lar.shape}, A_imag {aim.shape}, log_dt "
                          f"{log_dt.shape} (expected (P,), (P,), (1,))")
    if B.ndim != 2 or B.shape[0] != P:
        raise shape_error("lqo", prefix, f"B {B.shape + (2,)} must be (P={P}, H, 2)")
    H = B.shape[1]
    if C.shape != (H, P) or D.shape != (H,):
        raise shape_error("lqo", prefix, f"C {C.shape} must be ({H}, {P}) and D {D.shape} ({H},)")
    if qkey == "U":
        if Q.ndim != 3 or Q.shape[0] != H or Q.shape[2] != P:
            raise shape_error("lqo", prefix, f"U {Q.shape} must be ({H}, R, {P})")
        M = np.einsum("jra,jrb->jab", Q.conj(), Q)
        R = Q.shape[1]
    else:
        if Q.shape != (H, P, P):
            raise shape_error("lqo", prefix, f"M {Q.shape} must be ({H}, {P}, {P})")
        if np.max(np.abs(Q - np.conj(np.swapaxes(Q, 1, 2))), initial=0) > 1e-6 * max(
                np.max(np.abs(Q), initial=0), 1e-300):
            raise LayoutError(f"{prefix}M is not Hermitian")
        M = (Q + np.conj(np.swapaxes(Q, 1, 2))) / 2
        R = None
    dt = float(np.exp(log_dt[0]))
    A = -np.exp(lar) + 1j * aim
    lam = np.exp(dt * A)
    Bbar = ((lam - 1) / A)[:, None] * B
    hm = HalfModes(lam=lam, B=Bbar, C=C, D=np.diag(D), kappa=KAPPA, M=M)
    unit = Unit(system=hm.system(dt=dt), modes=hm, inputs=np.arange(H), outputs=np.arange(H),
                meta={"A": A, "dt": dt, "Q": Q, "qkey": qkey})
    keys = [prefix + k for k in BASE] + [prefix + qkey]
    return Block(prefix, "lqo", [unit], m=H, p=H, keys=keys, meta={"P": P, "R": R, "qkey": qkey})


def _factor(M: np.ndarray, R: int, where: str) -> np.ndarray:
    """U (H, R, P') with U_j^H U_j = M_j (eigen-factor), LayoutError if not PSD or rank > R."""
    H, P, _ = M.shape
    U = np.zeros((H, R, P), np.complex128)
    for j in range(H):
        w, V = np.linalg.eigh(M[j])
        tol = PSD_RTOL * max(np.max(np.abs(w), initial=0.0), 1e-300)
        if w.min(initial=0.0) < -tol:
            raise LayoutError(f"{where}: reduced M_{j} is not positive semidefinite (eigenvalue "
                              f"{w.min():.3g}); it cannot be written as U^H U")
        pos = w > tol
        if np.count_nonzero(pos) > R:
            raise LayoutError(f"{where}: reduced M_{j} has rank {np.count_nonzero(pos)} > R = {R}; "
                              "the layout's U factor cannot hold it")
        wp, Vp = w[pos], V[:, pos]
        U[j, : wp.size] = np.sqrt(wp)[:, None] * Vp.conj().T
    return U


def write_back(block: Block, modes: list[HalfModes], n_stored: int | None = None):
    (u,), (hm,) = block.units, modes
    p = block.name
    idx, cj = match_modes(hm.lam, u.modes.lam)
    hm = hm.conj_modes(cj)
    check_stable(hm.lam, p)
    dt = u.meta["dt"]
    ref = np.where(idx >= 0, u.meta["A"][np.maximum(idx, 0)], np.nan)
    A, _ = inv_disc(hm.lam, dt, "zoh", A_ref=ref)
    B = hm.B * (A / (hm.lam - 1))[:, None]
    C = hm.C
    H = block.m
    Mhat = hm.M if hm.M is not None else np.zeros((H, hm.n, hm.n), np.complex128)
    Q0 = u.meta["Q"]
    if block.meta["qkey"] == "U":
        R = block.meta["R"]
        sliced = None
        if np.all(idx >= 0) and not cj.any() and len(set(idx.tolist())) == idx.size:
            cand = Q0[:, :, idx]
            Mc = np.einsum("jra,jrb->jab", cand.conj(), cand)
            if np.allclose(Mc, Mhat, rtol=1e-12, atol=1e-12 * max(np.abs(Mhat).max(initial=0), 1e-300)):
                sliced = cand
        Q = sliced if sliced is not None else _factor(Mhat, R, p)
    else:
        Q = Mhat
    n = max(hm.n, n_stored or 0)
    k = n - hm.n
    lar = np.concatenate([np.log(-A.real), np.zeros(k)])  # inert: Lambda = -1
    aim = np.concatenate([A.imag, np.zeros(k)])
    B = np.concatenate([B, np.zeros((k, H))])
    C = np.concatenate([C, np.zeros((H, k))], axis=1)
    if block.meta["qkey"] == "U":
        Q = np.concatenate([Q, np.zeros(Q.shape[:2] + (k,))], axis=2)
        build = {"n_modes": n, "rank": block.meta["R"]}
    else:
        Qp = np.zeros((H, n, n), np.complex128)
        Qp[:, : hm.n, : hm.n] = Q
        Q = Qp
        build = {"n_modes": n}
    new = {p + "log_A_real": lar, p + "A_imag": aim, p + "B": c2r(B), p + "C": c2r(C),
           p + block.meta["qkey"]: c2r(Q)}
    return new, build
