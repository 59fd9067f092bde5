r"""The objective :math:`J = \|\Sigma - \hat\Sigma\|_{h2}^2` and its parameter gradient, batched.

For diagonal full models :math:`J` and its gradients with respect to the (full-coordinate) poles,
:math:`\hat B`, :math:`\hat C` and :math:`\hat M` are closed forms in Cauchy matrices
(docs/theory.md §2.2, §3, §4), evaluated for a whole batch of systems at once; dense full models go
through the core Sylvester/Stein solvers (:func:`mor_lqo.gradients.h2_error_grad`). With variable
projection :math:`\hat C` is eliminated by its closed-form optimum (:func:`_project_c`).
:class:`_Evaluator` adds the chain rule from the full-coordinate gradients to the real parameter
vector of a :class:`~.layout._Layout` (half coordinates, docs/theory.md §8.5; stable pole maps, §9).
"""

from __future__ import annotations

import numpy as np

from ...gradients import h2_error_grad
from ...gramians import cross_gramian
from ...systems import LQOSystem
from .layout import _H, _c_full, _fold, _FullArrays, _herm, _Layout, _m_full, _to_full

_NEAR_ONE = 0.1  # |1 - z| below which discrete Cauchy denominators use -expm1(log z)
_RCOND = 1e-13  # relative eigenvalue cut-off of the pseudo-inverse in the variable projection


def _cauchy(a: np.ndarray, b: np.ndarray, disc: bool, la=None, lb=None) -> np.ndarray:
    r"""``K[..., i, k]``: :math:`1/(1 - a_i \bar b_k)` (discrete) or :math:`-1/(a_i + \bar b_k)`.

    In discrete time entries with :math:`|1 - a_i \bar b_k| < 0.1` are evaluated as
    :math:`-1/\mathrm{expm1}(\log a_i + \overline{\log b_k})` when the logarithms ``la``, ``lb`` are given
    (relative accuracy for poles close to the unit circle, docs/theory.md §2.2).
    """
    bc = np.conj(b)[..., None, :]
    if not disc:
        return -1.0 / (a[..., :, None] + bc)
    den = 1.0 - a[..., :, None] * bc
    if la is not None and lb is not None:
        near = np.abs(den.real) + np.abs(den.imag) < _NEAR_ONE
        if near.any():
            idx = np.nonzero(near)
            lb_c = np.conj(lb)
            den[idx] = -np.expm1(la[idx[:-1]] + lb_c[idx[:-2] + idx[-1:]])
    return 1.0 / den


def _project_c(lay: _Layout, Ph, CX):
    r"""Half-coordinate :math:`\hat C` minimising the error for fixed poles and B: :math:`\hat C_f = C X \hat P^+`."""
    w, V = np.linalg.eigh(Ph)
    cut = _RCOND * np.maximum(w[..., -1:], 0.0)
    inv = np.where(w > cut, 1.0 / np.where(w > cut, w, 1.0), 0.0)
    Cf = ((CX @ V) * inv[..., None, :]) @ _H(V)
    if not lay.pairs:
        return Cf
    q = lay.q
    return (Cf[..., :q] + np.conj(Cf[..., q:])) / lay.kappa


def _eval_diag(fa: _FullArrays, lay: _Layout, mu_f, logmu_f, B_f, Ch, Mh, grad: bool):
    """J (N,) and full-coordinate gradients for a diagonal full model (closed Cauchy forms)."""
    disc = fa.disc
    Kx = _cauchy(fa.lam, mu_f, disc, fa.logl, logmu_f)  # (N, n, r)
    Kr = _cauchy(mu_f, mu_f, disc, logmu_f, logmu_f)  # (N, r, r)
    X = (fa.B @ _H(B_f)) * Kx
    Ph = _herm((B_f @ _H(B_f)) * Kr)
    CX = fa.C @ X  # (N, p, r)
    if Ch is None:
        Ch = _project_c(lay, Ph, CX)
    C_f = _c_full(lay, Ch)
    CP = C_f @ Ph
    J = fa.nf_lin + np.einsum("npk,npk->n", np.conj(C_f), CP).real - 2 * np.einsum(
        "npk,npk->n", np.conj(C_f), CX).real
    M_f = _m_full(lay, Mh)
    if M_f is not None:
        MX = fa.M @ X[:, None]  # (N, p, n, r); matmul (BLAS) rather than einsum throughout
        XMX = _H(X)[:, None] @ MX
        PM = Ph[:, None] @ M_f
        J = J + fa.nf_quad + np.einsum("njab,njba->n", PM, PM).real - 2 * np.einsum(
            "njrc,njcr->n", XMX, M_f).real
    if not grad:
        return J, Ch, None
    R = _H(fa.C) @ C_f
    Rt = _H(C_f) @ C_f
    if M_f is not None:
        R = R + 2 * np.sum(MX @ M_f, axis=1)
        Rt = Rt + 2 * np.sum(M_f @ PM, axis=1)
    Y = -R * np.conj(Kx)
    Qt = Rt * np.conj(Kr)
    Yc = np.conj(Y)
    if disc:
        g_mu = 2 * (np.einsum("nkj,nj,njk->nk", Qt, mu_f, Ph) + np.einsum("nik,ni,nik->nk", Yc, fa.lam, X))
    else:
        g_mu = 2 * (np.einsum("nkj,njk->nk", Qt, Ph) + np.einsum("nik,nik->nk", Yc, X))
    g_B = 2 * (Qt @ B_f + _H(Y) @ fa.B)
    g_C = 2 * (CP - CX)
    g_M = None
    if M_f is not None:
        g_M = _herm(2 * (PM @ Ph[:, None] - XMX))
    return J, Ch, (g_mu, g_B, g_C, g_M)


def _eval_dense(sys_nod: LQOSystem, lay: _Layout, mu_f, B_f, Ch, Mh, grad: bool):
    """Same as :func:`_eval_diag` (batch of one) for a dense full model, through the core solvers."""
    kw = dict(dt=sys_nod.dt, convention=sys_nod.convention)
    if Ch is None:
        rom_b = LQOSystem.diagonal(mu_f[0], B_f[0], C=np.zeros((lay.p, lay.r_full)), **kw)
        X = cross_gramian(sys_nod, rom_b)
        Kr = _cauchy(mu_f, mu_f, lay.disc)
        Ph = _herm((B_f @ _H(B_f)) * Kr)
        Ch = _project_c(lay, Ph, (sys_nod.C @ X)[None])
    M_f = _m_full(lay, Mh)
    rom = LQOSystem.diagonal(mu_f[0], B_f[0], _c_full(lay, Ch)[0], M=None if M_f is None else M_f[0], **kw)
    g = h2_error_grad(sys_nod, rom)
    J = np.array([g.J])
    if not grad:
        return J, Ch, None
    gM = None if g.M is None else g.M[None]
    return J, Ch, (g.lam[None], g.B[None], g.C[None], gM)


class _Evaluator:
    """Objective J(theta) and its parameter gradient, batched over a leading axis."""

    def __init__(self, lay: _Layout, fa: _FullArrays | None = None, sys_nod: LQOSystem | None = None):
        self.lay, self.fa, self.sys_nod = lay, fa, sys_nod
        self.b_fixed = np.ones((lay.q, lay.m), np.complex128)
        self.signs: np.ndarray | None = None  # orientation (sign of Im) of each stored pair, LQO only

    def unpack(self, th):
        lay = self.lay
        N = th.shape[0]
        mu, logmu, dnu, dph = lay.poles(th)
        if lay.pairs and self.signs is not None:  # stored orientation of each pair (LQO only)
            neg = self.signs < 0
            mu, dnu, dph = np.where(neg, np.conj(mu), mu), np.where(neg, np.conj(dnu), dnu), np.where(
                neg, np.conj(dph), dph)
            if logmu is not None:
                logmu = np.where(neg, np.conj(logmu), logmu)
        if lay.opt_b:
            Bh = (th[:, lay.slices["bre"]] + 1j * th[:, lay.slices["bim"]]).reshape(N, lay.q, lay.m)
        else:
            Bh = np.broadcast_to(self.b_fixed, (N, lay.q, lay.m))
        Ch = None
        if not lay.project_c:
            Ch = (th[:, lay.slices["cre"]] + 1j * th[:, lay.slices["cim"]]).reshape(N, lay.p, lay.q)
        Mh = U = None
        if lay.quad is not None:
            Mh, U = lay.quad_matrix(th)
        return mu, logmu, (dnu, dph), Bh, Ch, Mh, U

    def __call__(self, th, idx=None, grad=True, c_half=None):
        """Return (J (N,), dJ/dtheta (N, d) or None, C_half (N, p, q))."""
        lay = self.lay
        mu, logmu, dmu, Bh, Ch, Mh, U = self.unpack(th)
        if c_half is not None:
            Ch = c_half
        mu_f, logmu_f, B_f = _to_full(lay, mu, logmu, Bh)
        if self.fa is not None:
            fa = self.fa if idx is None else self.fa.take(idx)
            J, Ch, gr = _eval_diag(fa, lay, mu_f, logmu_f, B_f, Ch, Mh, grad)
        else:
            J, Ch, gr = _eval_dense(self.sys_nod, lay, mu_f, B_f, Ch, Mh, grad)
        if not grad:
            return J, None, Ch
        g_mu, g_B, g_C, g_M = _fold(lay, *gr)
        G = np.empty(th.shape)
        gc = np.conj(g_mu)
        G[:, lay.slices["nu"]] = (gc * dmu[0]).real
        G[:, lay.slices["th"]] = (gc * dmu[1]).real
        if lay.opt_b:
            G[:, lay.slices["bre"]] = g_B.real.reshape(th.shape[0], -1)
            G[:, lay.slices["bim"]] = g_B.imag.reshape(th.shape[0], -1)
        if not lay.project_c:
            G[:, lay.slices["cre"]] = g_C.real.reshape(th.shape[0], -1)
            G[:, lay.slices["cim"]] = g_C.imag.reshape(th.shape[0], -1)
        if lay.quad is not None:
            G[:, lay.slices["M"]] = lay.quad_grad(g_M, U)
        return J, G, Ch
