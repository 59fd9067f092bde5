r"""Gradient-based h2-optimal reduction to a **diagonal** reduced model (lqo_math.md §4, §7.6, §8, §9).

The reduced model is parametrised so that it is stable for *every* parameter vector
(lqo_math.md §9), with an optional stability margin :math:`\delta`:

.. math::

    \text{discrete:}\quad \hat\lambda_k = (1-\delta)\,\exp(-e^{\nu_k} + i\theta_k), \qquad
    \text{continuous:}\quad \hat\lambda_k = -\delta - e^{\nu_k} + i\theta_k,

with the argument :math:`\theta_k` (discrete) or imaginary part (continuous) of a conjugate pair kept
at least ``min_ratio`` times the decay rate :math:`e^{\nu_k}` away from the real axis (discrete:
:math:`\theta = \epsilon + (\pi - 2\epsilon)\,\sigma(\varphi)`, continuous:
:math:`\theta = \epsilon + e^\varphi`, :math:`\epsilon = \texttt{min\_ratio}\cdot e^\nu` (discrete:
:math:`\texttt{min\_ratio}\, e^\nu/(1+e^\nu)`); complex ROMs use :math:`\theta` itself). The
squared error :math:`J = \|\Sigma - \hat\Sigma\|_{h2}^2` is minimised with L-BFGS on the real
parameter vector, using analytic gradients (the Wilson/Gramian gradients of :mod:`mor_lqo.gradients`
specialised to diagonal models, with the chain rules of lqo_math.md §4/§9).

Structure of the reduced model
------------------------------
* **Real-output full models** (:meth:`LQOSystem.conjugate_pairs` systems, and real systems): the ROM is
  a ``conjugate_pairs`` system with ``r/2`` stored half modes :math:`(\hat\lambda_k, \hat b_k, \hat c_k)`
  and the full model's output scale :math:`\kappa` (2.0 for real systems), so it can be written back
  into a halved Deep-SSM layout. ``r`` must be even (:class:`OrderError` otherwise). The objective is
  the exact error of the **real** input-output map, evaluated on the conjugation-closed forms
  (lqo_math.md §8.3); half-coordinate gradients are :math:`g_k + \overline{g_{k'}}` (§8.5 (b)).
* **Complex full models** (complex data without conjugate-pair structure): complex diagonal ROM of
  order ``r`` (complex norm).
* **Quadratic outputs**: the reduced quadratic output :math:`\hat M_j` is a Hermitian matrix on the
  stored (half) state. ``quadratic="hermitian"`` (default) parametrises it by its ``q**2`` real
  entries (diagonal, real and imaginary parts of the strict upper triangle); ``quadratic="psd"`` uses
  the factor :math:`\hat M_j = \hat U_j^H \hat U_j` (:math:`\hat U_j` square, so every PSD matrix is
  reachable; :math:`\nabla_{\hat U} J = 2 \hat U \nabla_{\hat M} J`), which keeps energy readouts
  non-negative. The Hermitian choice is the default because it is the larger feasible set (its optimum
  is never worse) and it represents projected initial models exactly. For conjugate pairs,
  :math:`\hat M_f = \tfrac12\,\mathrm{blkdiag}(\hat M, \overline{\hat M})` (the layout's form), so for
  *real* LQO full models the ROM's quadratic part is restricted to that form.
* **Variable projection** (``project_c=True``, default): for fixed poles and input matrix the error is
  a convex quadratic in :math:`\hat C`, minimised in closed form by :math:`\hat C_f = C X \hat P^{-1}`
  (the condition :math:`\hat C \hat P = C X` of lqo_math.md §5; the minimiser is automatically
  conjugation-closed). By the envelope theorem the gradient of the reduced objective is the partial
  gradient. With one input (SISO channels) the input matrix is fixed to ``b_k = 1`` (any nonzero value
  is absorbed into :math:`\hat c_k` and :math:`\hat M`), so an S4D channel reduced to ``r`` real states
  is an optimisation over ``r`` real numbers (the poles).
* D is kept (``D^ = D``); it cancels in the error in both discrete conventions.

The optimiser keeps the best parameter vector it ever evaluated, runs from every initial model
(modal truncation, greedy modal selection by the projected error, balanced truncation; near-real pairs
are split at the start because the objective is even in the angle at a real pair), and the result is
never worse than the best initial model.

Limitations: a conjugate-pair slot holds a complex pair (or one real pole), never two distinct real
poles, so for real full models whose best real ROM has real poles a real BT ROM can be better than any
conjugate-pair ROM (S4D-type channels are not affected in practice). The objective is non-convex; the
result is a local minimum (first-order conditions checked in ``info``).

Batched channels
----------------
:func:`h2_gradient_batch` reduces N conjugate-pair channels (arrays ``lam (N, n)``, ``B (N, n, m)``,
``C (N, p, n)``) with the same closed forms vectorised over the channel axis and a per-channel BFGS
(dense ``d x d`` inverse-Hessian per channel, per-channel Armijo backtracking), without a Python loop
over channels.

Joint weighted objectives
-------------------------
:class:`H2Objective` exposes ``value_and_grad(theta)``, ``pack(rom)`` and ``unpack(theta)`` so that a
caller can minimise a weighted sum :math:`\sum_l w_l J_l` over several blocks;
:func:`h2_gradient_joint` does that with L-BFGS.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize

from .._validation import as_float_or_complex, check_dt, check_order
from ..errors import (
    ComplexSystemError,
    ConvergenceWarning,
    OrderError,
    ShapeError,
    UnstableSystemError,
)
from ..gradients import h2_error_grad
from ..gramians import (
    check_stable,
    controllability_gramian,
    cross_gramian,
    observability_gramian,
    psd_factor,
)
from ..norms import h2_error, h2_norm, h2_norm_parts
from ..systems import LQOSystem
from .result import ReductionResult

__all__ = [
    "H2Objective",
    "H2BatchResult",
    "h2_gradient",
    "h2_gradient_batch",
    "h2_gradient_joint",
]

_NEAR_ONE = 0.1  # |1 - z| below which discrete Cauchy denominators use -expm1(log z)
_RCOND = 1e-13  # relative eigenvalue cut-off of the pseudo-inverse in the variable projection
_LIFT = 0.5  # starting points: near-real pairs get an angle of at least 0.5 x their decay rate
_NU_SPAN = 14.0 * math.log(10.0)  # nu bounds: decay rates within 1e-14 .. 1e14 of the model's scale


class _NoLimit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _blas_threads(sys=None, small: bool = False):
    """Single-threaded BLAS for the many tiny products of small problems (threadpoolctl, if installed).

    Threaded BLAS on matrices of a few dozen entries costs far more in synchronisation than it saves,
    and is pathological on loaded machines (measured 10-50x slower).
    """
    if not small and sys is not None and not (sys.is_diagonal or sys.order <= 256):
        return _NoLimit()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return _NoLimit()
    return threadpool_limits(limits=1, user_api="blas")


# ----------------------------------------------------------------------------------------------------
# Cauchy kernels (batched over a leading axis)
# ----------------------------------------------------------------------------------------------------
def _cauchy(a: np.ndarray, b: np.ndarray, disc: bool, la=None, lb=None) -> np.ndarray:
    r"""``K[..., i, k]``: :math:`1/(1 - a_i \bar b_k)` (discrete) or :math:`-1/(a_i + \bar b_k)`.

    In discrete time entries with :math:`|1 - a_i \bar b_k| < 0.1` are evaluated as
    :math:`-1/\mathrm{expm1}(\log a_i + \overline{\log b_k})` when the logarithms ``la``, ``lb`` are given
    (relative accuracy for poles close to the unit circle, lqo_math.md §2.2).
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


def _safe_log(lam: np.ndarray) -> np.ndarray:
    out = np.zeros(lam.shape, np.complex128)
    nz = lam != 0
    out[nz] = np.log(lam[nz])
    return out


def _herm(X: np.ndarray) -> np.ndarray:
    return (X + np.conj(np.swapaxes(X, -1, -2))) / 2


def _H(X: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(X, -1, -2))


# ----------------------------------------------------------------------------------------------------
# full model data and ROM layout
# ----------------------------------------------------------------------------------------------------
class _FullArrays:
    """Full model in (conjugation-closed) diagonal coordinates, with a leading batch axis."""

    __slots__ = ("lam", "logl", "B", "C", "M", "nf_lin", "nf_quad", "disc")

    def __init__(self, lam, B, C, M, nf_lin, nf_quad, disc):
        self.lam = np.ascontiguousarray(lam, np.complex128)
        self.logl = _safe_log(self.lam) if disc else None
        self.B = np.ascontiguousarray(B, np.complex128)
        self.C = np.ascontiguousarray(C, np.complex128)
        self.M = None if M is None else np.ascontiguousarray(M, np.complex128)
        self.nf_lin = np.asarray(nf_lin, float)
        self.nf_quad = np.asarray(nf_quad, float)
        self.disc = disc

    def take(self, idx) -> _FullArrays:
        new = object.__new__(_FullArrays)
        new.lam = self.lam[idx]
        new.logl = None if self.logl is None else self.logl[idx]
        new.B = self.B[idx]
        new.C = self.C[idx]
        new.M = None if self.M is None else self.M[idx]
        new.nf_lin = self.nf_lin[idx]
        new.nf_quad = self.nf_quad[idx]
        new.disc = self.disc
        return new


class _Layout:
    """Real parameter vector of a diagonal ROM.

    ``theta = [nu (q), theta (q), Re b (q m), Im b (q m), Re c (p q), Im c (p q), quadratic (p q^2 or 2 p q^2)]``
    where the b block is present only when ``opt_b`` and the c block only without variable projection.
    """

    def __init__(self, *, pairs, q, m, p, disc, margin, kappa, quad, project_c, nu_bounds, min_ratio):
        self.pairs, self.q, self.m, self.p = bool(pairs), int(q), int(m), int(p)
        self.min_ratio = float(min_ratio)
        self.disc, self.margin, self.kappa = bool(disc), float(margin), float(kappa)
        self.quad, self.project_c = quad, bool(project_c)
        self.opt_b = not (project_c and m == 1)
        self.nu_bounds = nu_bounds
        sizes = [("nu", q), ("th", q)]
        if self.opt_b:
            sizes += [("bre", q * m), ("bim", q * m)]
        if not self.project_c:
            sizes += [("cre", p * q), ("cim", p * q)]
        if quad == "hermitian":
            sizes += [("M", p * q * q)]
        elif quad == "psd":
            sizes += [("M", 2 * p * q * q)]
        self.slices = {}
        start = 0
        for name, size in sizes:
            self.slices[name] = slice(start, start + size)
            start += size
        self.size = start
        self.iu = np.triu_indices(q, 1)
        self.log_scale = math.log1p(-self.margin) if self.disc else 0.0

    @property
    def r_full(self) -> int:
        return 2 * self.q if self.pairs else self.q

    # -- poles ---------------------------------------------------------------------------------------
    def _eps(self, e):
        """Minimum angle (discrete) / |Im| (continuous) of a conjugate pair and its d/dnu."""
        if self.disc:  # eps' = ratio * e / (1 + e): ~ ratio * (1 - |lam|) for slow modes, <= ratio
            return self.min_ratio * e / (1 + e), self.min_ratio * e / (1 + e) ** 2
        return self.min_ratio * e, self.min_ratio * e

    def poles(self, th):
        """Poles ``mu`` (N, q), ``log mu`` (discrete) and the derivatives d mu / d nu, d mu / d phi.

        Complex ROMs: phi = theta (the argument / imaginary part). Conjugate pairs: the argument is
        kept inside ``[eps', pi - eps']`` (discrete: ``theta = eps' + (pi - 2 eps') sigmoid(phi)``) or
        above ``eps'`` (continuous: ``theta = eps' + exp(phi)``), with ``eps' = min_ratio * exp(nu)``
        (discrete: ``min_ratio * e / (1 + e)``), so that a pair never becomes (numerically) confluent.
        """
        nu = th[:, self.slices["nu"]]
        ph = th[:, self.slices["th"]]
        e = np.exp(nu)
        if self.pairs:
            eps, deps = self._eps(e)
            if self.disc:
                sg = 0.5 * (1.0 + np.tanh(0.5 * ph))  # stable sigmoid
                ang = eps + (np.pi - 2 * eps) * sg
                dang_dnu = deps * (1 - 2 * sg)
                dang_dph = (np.pi - 2 * eps) * sg * (1 - sg)
            else:
                eph = np.exp(ph)
                ang = eps + eph
                dang_dnu, dang_dph = deps, eph
        else:
            ang, dang_dnu, dang_dph = ph, 0.0, 1.0
        if self.disc:
            logmu = (self.log_scale - e) + 1j * ang
            mu = np.exp(logmu)
            return mu, logmu, mu * (-e + 1j * dang_dnu), 1j * mu * dang_dph
        mu = (-(self.margin + e)) + 1j * ang
        return mu, None, -e + 1j * dang_dnu, 1j * dang_dph + 0 * mu

    def nu_theta(self, mu: np.ndarray, lift: float = 0.0):
        """Inverse map of :meth:`poles` (nu clipped into its bounds); ``mu`` (N, q).

        For pairs the orientation is dropped (|arg|, |Im|) and a real or (numerically) confluent pair
        starts at twice the minimum angle. ``lift > 0`` raises the angle of near-real pairs to at least
        ``lift * exp(nu)`` (discrete: at most pi/2): the objective is even in the angle at a real pair,
        so an optimiser started there cannot split it (used for starting points only).
        """
        lo, hi = self.nu_bounds
        if self.disc:
            with np.errstate(divide="ignore"):
                s = self.log_scale - np.log(np.abs(mu))
        else:
            s = -mu.real - self.margin
        s = np.clip(np.where(np.isfinite(s), s, math.exp(hi)), math.exp(lo), math.exp(hi))
        nu = np.log(s)
        if not self.pairs:
            return nu, (np.angle(mu) if self.disc else mu.imag)
        eps, _ = self._eps(s)
        if self.disc:
            span = np.pi - 2 * eps
            ang = np.abs(np.angle(mu))
            if lift:
                ang = np.where(ang < np.pi / 2, np.maximum(ang, np.minimum(lift * s, np.pi / 2)), ang)
            sg = np.clip((ang - eps) / span, eps / span, 1 - eps / span)
            return nu, np.log(sg) - np.log1p(-sg)
        ang = np.maximum(np.abs(mu.imag), lift * s)
        return nu, np.log(np.maximum(ang - eps, eps))

    # -- quadratic part ------------------------------------------------------------------------------
    def quad_matrix(self, th):
        """(M (N, p, q, q) Hermitian, U or None)."""
        N, p, q = th.shape[0], self.p, self.q
        v = th[:, self.slices["M"]]
        if self.quad == "hermitian":
            v = v.reshape(N, p, q * q)
            t = len(self.iu[0])
            H = np.zeros((N, p, q, q), np.complex128)
            d = np.arange(q)
            H[..., d, d] = v[..., :q]
            off = v[..., q:q + t] + 1j * v[..., q + t:]
            H[..., self.iu[0], self.iu[1]] = off
            H[..., self.iu[1], self.iu[0]] = np.conj(off)
            return H, None
        v = v.reshape(N, 2, p, q, q)
        U = v[:, 0] + 1j * v[:, 1]
        return _herm(_H(U) @ U), U

    def quad_params(self, H: np.ndarray):
        """Hermitian (N, p, q, q) -> parameters (N, size_M)."""
        N, q = H.shape[0], self.q
        if self.quad == "hermitian":
            d = np.arange(q)
            off = H[..., self.iu[0], self.iu[1]]
            return np.concatenate([H[..., d, d].real, off.real, off.imag], axis=-1).reshape(N, -1)
        w, V = np.linalg.eigh(_herm(H))
        U = np.sqrt(np.maximum(w, 0.0))[..., :, None] * _H(V)
        return np.stack([U.real, U.imag], axis=1).reshape(N, -1)

    def quad_grad(self, G: np.ndarray, U):
        """Hermitian gradient G (N, p, q, q) -> parameter gradient (N, size_M)."""
        N, q = G.shape[0], self.q
        if self.quad == "hermitian":
            d = np.arange(q)
            off = G[..., self.iu[0], self.iu[1]]
            return np.concatenate([G[..., d, d].real, 2 * off.real, 2 * off.imag], axis=-1).reshape(N, -1)
        gU = 2 * U @ G
        return np.stack([gU.real, gU.imag], axis=1).reshape(N, -1)


class _Modes(NamedTuple):
    """Half (or complex) modes of a diagonal ROM: lam (q,), B (q, m), C (p, q), M (p, q, q) or None."""

    lam: np.ndarray
    B: np.ndarray
    C: np.ndarray
    M: np.ndarray | None
    exact: bool


# ----------------------------------------------------------------------------------------------------
# objective: closed forms for diagonal full models (batched), core solvers for dense ones
# ----------------------------------------------------------------------------------------------------
def _to_full(lay: _Layout, mu, logmu, Bh):
    if not lay.pairs:
        return mu, logmu, Bh
    mu_f = np.concatenate([mu, np.conj(mu)], axis=-1)
    logmu_f = None if logmu is None else np.concatenate([logmu, np.conj(logmu)], axis=-1)
    return mu_f, logmu_f, np.concatenate([Bh, np.conj(Bh)], axis=-2)


def _c_full(lay: _Layout, Ch):
    if not lay.pairs:
        return Ch
    return (lay.kappa / 2) * np.concatenate([Ch, np.conj(Ch)], axis=-1)


def _m_full(lay: _Layout, Mh):
    if Mh is None or not lay.pairs:
        return Mh
    q = lay.q
    Mf = np.zeros(Mh.shape[:-2] + (2 * q, 2 * q), np.complex128)
    Mf[..., :q, :q] = Mh / 2
    Mf[..., q:, q:] = np.conj(Mh) / 2
    return Mf


def _fold(lay: _Layout, g_mu, g_B, g_C, g_M):
    """Full-coordinate gradients -> half coordinates (lqo_math.md §8.5 (b))."""
    if not lay.pairs:
        return g_mu, g_B, g_C, g_M
    q = lay.q
    g_mu = g_mu[..., :q] + np.conj(g_mu[..., q:])
    g_B = g_B[..., :q, :] + np.conj(g_B[..., q:, :])
    g_C = (lay.kappa / 2) * (g_C[..., :q] + np.conj(g_C[..., q:]))
    if g_M is not None:
        g_M = (g_M[..., :q, :q] + np.conj(g_M[..., q:, q:])) / 2
    return g_mu, g_B, g_C, g_M


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
        MX = np.einsum("njab,nbc->njac", fa.M, X)
        XMX = np.einsum("nar,njac->njrc", np.conj(X), MX)
        PM = np.einsum("nab,njbc->njac", Ph, M_f)
        J = J + fa.nf_quad + np.einsum("njab,njba->n", PM, PM).real - 2 * np.einsum(
            "njrc,njcr->n", XMX, M_f).real
    if not grad:
        return J, Ch, None
    R = np.einsum("npi,npk->nik", np.conj(fa.C), C_f)
    Rt = np.einsum("npi,npk->nik", np.conj(C_f), C_f)
    if M_f is not None:
        R = R + 2 * np.einsum("njac,njcd->nad", MX, M_f)
        Rt = Rt + 2 * np.einsum("njab,njbd->nad", M_f, PM)
    Y = -R * np.conj(Kx)
    Qt = Rt * np.conj(Kr)
    Yc = np.conj(Y)
    if disc:
        g_mu = 2 * (np.einsum("nkj,nj,njk->nk", Qt, mu_f, Ph) + np.einsum("nik,ni,nik->nk", Yc, fa.lam, X))
    else:
        g_mu = 2 * (np.einsum("nkj,njk->nk", Qt, Ph) + np.einsum("nik,nik->nk", Yc, X))
    g_B = 2 * (Qt @ B_f + np.einsum("nik,nim->nkm", Yc, fa.B))
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


# ----------------------------------------------------------------------------------------------------
# initial models: modal truncation, balanced truncation, diagonalisation of a given ROM
# ----------------------------------------------------------------------------------------------------
def _mode_scores(lam, Bm, Cm, Mm, disc, pairs: bool = False):
    """Per-mode h2^2 of ``c b^T / (z - lam)`` (+ its diagonal quadratic term), lqo_math.md §7.6.

    ``pairs``: the real-map norm of the pair ``c b^T/(z - lam) + conj`` (up to the common factor
    ``kappa^2 / 2``), which adds the non-conjugated term ``Re[(c^T c)(b^T b) / (1 - lam^2)]`` (§8.4).
    """
    k = 1.0 / (1.0 - np.abs(lam) ** 2) if disc else 1.0 / (-2.0 * lam.real)
    b2 = np.sum(np.abs(Bm) ** 2, axis=-1)
    s = np.sum(np.abs(Cm) ** 2, axis=-2) * b2 * k
    if pairs:
        kt = 1.0 / (1.0 - lam ** 2) if disc else -1.0 / (2.0 * lam)
        s = s + np.real(np.sum(Cm ** 2, axis=-2) * np.sum(Bm ** 2, axis=-1) * kt)
    if Mm is not None:
        d = np.arange(lam.shape[-1])
        s = s + np.sum(np.abs(Mm[..., d, d]) ** 2, axis=-2) * (b2 * k) ** 2
    return s


def _modal_data(A, B, C, M):
    """Eigen-decomposition (w, V^-1 B, C V, V^H M V) of a dense model."""
    w, V = np.linalg.eig(A)
    Bm = np.linalg.solve(V, B)
    Cm = C @ V
    Mm = None if M is None else _herm(np.einsum("na,jnk,kb->jab", np.conj(V), M, V))
    return w, Bm, Cm, Mm


def _degenerate_pair(a: complex, disc: bool) -> complex:
    """A real mode stored in a conjugate-pair slot: nudge it off the real axis (J is even in theta)."""
    a = float(np.real(a))
    eps = 1e-3 * (1.0 - abs(a) if disc else abs(a)) or 1e-6
    return complex(a, eps)


def _modes_from_real(A, B, C, M, q, kappa, disc, select: bool) -> _Modes:
    """Conjugate-pair half modes of a real model: its pairs (Im > 0 representatives) and real modes.

    ``select``: keep the ``q`` dominant units (modal truncation); else represent the whole (order 2q)
    model, merging real eigenvalues pairwise into complex pairs (then inexact).
    """
    w, Bm, Cm, Mm = _modal_data(A, B, C, M)
    cpx = np.flatnonzero(w.imag > 0)
    rea = np.flatnonzero(w.imag == 0)
    lam_u, B_u, C_u, units = [], [], [], []
    for i in cpx:
        units.append(("c", i))
    for i in rea:
        units.append(("r", i))
    exact = True
    if select:
        sc1 = _mode_scores(w, Bm, Cm, Mm, disc)
        sc2 = 2 * _mode_scores(w, Bm, Cm, Mm, disc, pairs=True)
        sc = np.array([sc2[i] if t == "c" else sc1[i] for t, i in units])
        order = np.argsort(-sc, kind="stable")[:q]
        units = [units[j] for j in sorted(order)]
        exact = all(t == "c" for t, _ in units)
        slots = [[u] for u in units]
    else:
        slots = [[u] for u in units if u[0] == "c"]
        reals = sorted((u for u in units if u[0] == "r"), key=lambda u: w[u[1]].real)
        for j in range(0, len(reals) - 1, 2):
            slots.append([reals[j], reals[j + 1]])
            exact = False
        if len(slots) != q:  # pragma: no cover - a real matrix of order 2q always gives q slots
            raise ShapeError("cannot represent this real model as conjugate pairs")
    idx = []
    for slot in slots:
        if len(slot) == 1 and slot[0][0] == "c":
            i = slot[0][1]
            lam_u.append(w[i])
            B_u.append(Bm[i])
            C_u.append(2.0 / kappa * Cm[:, i])
            idx.append(i)
        elif len(slot) == 1:
            i = slot[0][1]
            lam_u.append(_degenerate_pair(w[i], disc))
            B_u.append(Bm[i])
            C_u.append(Cm[:, i] / kappa)
            idx.append(i)
        else:
            (_, i), (_, k) = slot
            a1, a2 = w[i].real, w[k].real
            lam_u.append(complex((a1 + a2) / 2, max(abs(a1 - a2) / 2, 1e-6 * max(abs(a1), 1e-300))))
            B_u.append(Bm[i])
            C_u.append(Cm[:, i] / kappa)
            idx.append(i)
    idx = np.array(idx)
    H = None
    if Mm is not None:
        # x^T M x in modal coordinates; a conjugate-pair slot keeps z^H H z with H = 2 (V^H M V)[rep, rep]
        # (real-real entries: factor 1). The (rep, partner) blocks cannot be represented and are dropped.
        H = 2 * Mm[:, idx[:, None], idx[None, :]]
        real_slot = np.array([s[0][0] == "r" for s in slots])
        H[:, real_slot[:, None] & real_slot[None, :]] /= 2
        partner = np.array([int(np.argmin(np.abs(w - np.conj(w[i])))) for i in idx])
        dropped = np.linalg.norm(Mm[:, idx[:, None], partner[None, :]])
        if real_slot.any() or dropped > 1e-12 * max(np.linalg.norm(Mm), np.finfo(float).tiny):
            exact = False
    return _Modes(np.array(lam_u, np.complex128), np.array(B_u, np.complex128).reshape(q, -1),
                  np.array(C_u, np.complex128).reshape(q, -1).T, H, exact)


def _modes_from_complex(A, B, C, M, q, disc, select: bool) -> _Modes:
    w, Bm, Cm, Mm = _modal_data(A, B, C, M)
    idx = np.arange(len(w))
    if select:
        idx = np.sort(np.argsort(-_mode_scores(w, Bm, Cm, Mm, disc), kind="stable")[:q])
    H = None if Mm is None else Mm[:, idx[:, None], idx[None, :]]
    return _Modes(w[idx], Bm[idx], Cm[:, idx], H, True)


def _modal_modes(sys: LQOSystem, lay: _Layout) -> _Modes:
    """Modal truncation (dominant modes by h2 contribution) in the ROM's structure."""
    q = lay.q
    if sys.half is not None:
        lam, B, C, M, kappa = sys.half
        sc = _mode_scores(lam, B, C, M, lay.disc, pairs=True)
        idx = np.sort(np.argsort(-sc, kind="stable")[:q])
        H = None if M is None else M[:, idx[:, None], idx[None, :]]
        return _Modes(lam[idx], B[idx], C[:, idx] * (kappa / lay.kappa), H, True)
    if sys.is_diagonal and lay.pairs is False:
        lam, B, C, M = sys.lam, sys.B, sys.C, sys.M
        sc = _mode_scores(lam, B, C, M, lay.disc)
        idx = np.sort(np.argsort(-sc, kind="stable")[:q])
        H = None if M is None else M[:, idx[:, None], idx[None, :]]
        return _Modes(lam[idx].astype(np.complex128), B[idx].astype(np.complex128),
                      C[:, idx].astype(np.complex128), H, True)
    if lay.pairs:
        return _modes_from_real(sys.A, sys.B, sys.C, sys.M, q, lay.kappa, lay.disc, select=True)
    return _modes_from_complex(sys.A, sys.B, sys.C, sys.M, q, lay.disc, select=True)


def _modes_of_rom(rom: LQOSystem, lay: _Layout) -> _Modes:
    """Diagonalise a given reduced model into the ROM structure (exactly, where representable)."""
    if rom.order != lay.r_full:
        raise OrderError(f"the initial model has order {rom.order}, expected r = {lay.r_full}")
    if lay.pairs:
        if rom.half is not None:
            lam, B, C, M, kappa = rom.half
            return _Modes(lam.copy(), B.copy(), C * (kappa / lay.kappa), None if M is None else M.copy(), True)
        if rom.is_complex:
            raise ComplexSystemError(
                "the full model has real outputs, so the initial model must too (a real system or a "
                "conjugate_pairs system); got a complex-output system"
            )
        return _modes_from_real(rom.A, rom.B, rom.C, rom.M, lay.q, lay.kappa, lay.disc, select=False)
    if rom.is_diagonal:
        M = None if rom.M is None else rom.M.astype(np.complex128)
        return _Modes(rom.lam.astype(np.complex128), rom.B.astype(np.complex128),
                      rom.C.astype(np.complex128), M, True)
    return _modes_from_complex(rom.A, rom.B, rom.C, rom.M, lay.q, lay.disc, select=False)


def _clip_to_margin(modes: _Modes, lay: _Layout) -> _Modes:
    """Move initial poles that violate the margin onto it (radially / horizontally); else unchanged."""
    lam = modes.lam
    if lay.margin == 0.0:
        return modes
    if lay.disc:
        rad = np.abs(lam)
        lim = 1.0 - lay.margin
        lam = np.where(rad > lim, lam * (lim / np.where(rad > 0, rad, 1.0)), lam)
    else:
        lam = np.where(lam.real > -lay.margin, -lay.margin + 1j * lam.imag, lam)
    if np.array_equal(lam, modes.lam):
        return modes
    return modes._replace(lam=lam, exact=False)


def _local_bt(sys: LQOSystem, r: int) -> LQOSystem:
    """Square-root (LQO-)balanced truncation with eigen-based Gramian factors (fallback only)."""
    S = sys.realify() if sys.half is not None else sys
    ZP = psd_factor(controllability_gramian(S))
    ZQ = psd_factor(observability_gramian(S))
    U, s, Vh = np.linalg.svd(_H(ZQ) @ ZP)
    if len(s) < r or s[r - 1] <= 1e-14 * s[0]:
        raise OrderError(f"balanced truncation: only {int(np.sum(s > 1e-14 * s[0]))} nonzero HSVs for r = {r}")
    sr = 1.0 / np.sqrt(s[:r])
    V = ZP @ _H(Vh)[:, :r] * sr
    W = ZQ @ U[:, :r] * sr
    return S.project(V, W)


def _bt_rom(sys: LQOSystem, r: int) -> LQOSystem:
    from .balanced import balanced_truncation

    try:
        res = balanced_truncation(sys, r)
    except NotImplementedError:
        return _local_bt(sys, r)
    return res.rom if isinstance(res, ReductionResult) else res


# ----------------------------------------------------------------------------------------------------
# public objective
# ----------------------------------------------------------------------------------------------------
def _check_system(sys) -> LQOSystem:
    if not isinstance(sys, LQOSystem):
        raise TypeError(f"expected an LQOSystem, got {type(sys).__name__}")
    check_stable(sys)
    return sys


def _positive(x, name) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {x!r}")
    return float(x)


def _nonneg(x, name) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {x!r}")
    return float(x)


def _check_margin(margin, disc: bool) -> float:
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number, got {margin!r}")
    margin = float(margin)
    if margin < 0 or (disc and margin >= 1):
        raise ValueError(f"margin must satisfy 0 <= margin{' < 1' if disc else ''}, got {margin}")
    return margin


def _without_d(sys: LQOSystem) -> LQOSystem:
    return LQOSystem._make(A=None if sys.is_diagonal else sys.A, lam=sys.lam, B=sys.B, C=sys.C, M=sys.M,
                           D=None, dt=sys.dt, convention=sys.convention, half=sys.half)


class H2Objective:
    r"""Weighted squared h2 error :math:`w\,\|\Sigma - \hat\Sigma(\vartheta)\|_{h2}^2` of a diagonal ROM.

    Parameters
    ----------
    sys : LQOSystem
        Full model (stable; dense or diagonal; LTI or LQO; real, complex or conjugate pairs).
    r : int
        Reduced (real) order. Even for real-output full models (conjugate-pair ROM with ``r/2`` modes).
    weight : float, default 1.0
        Positive factor :math:`w` multiplying the objective and its gradient.
    margin : float, default 0.0
        Stability margin :math:`\delta` (``|lam| <= 1 - delta`` or ``Re lam <= -delta``).
    quadratic : {"hermitian", "psd"}
        Parametrisation of the reduced quadratic output (ignored for LTI full models).
    project_c : bool, default True
        Eliminate :math:`\hat C` by its closed-form optimum (variable projection); else it is a parameter.
    scale : float, optional
        Output scale :math:`\kappa` of the conjugate-pair ROM of a *real* full model (default 2.0);
        conjugate-pair full models impose their own.

    Notes
    -----
    The parameter vector ``theta`` (real, length :attr:`size`) is
    ``[nu (q), phi (q), Re B^, Im B^ (q m each; only if optimised), Re C^, Im C^ (p q each; only
    without projection), quadratic parameters]`` with ``q = r/2`` (pairs) or ``r``. The poles are
    :math:`(1-\delta)\exp(-e^{\nu} + i\theta)` (discrete) or :math:`-\delta - e^\nu + i\theta` with
    :math:`\theta = \varphi` (complex ROMs) or the bounded angle map of the module docstring (pairs;
    the stored member has :math:`\mathrm{Im}\,\hat\lambda > 0`, or the orientation fixed by
    :meth:`pack` for LQO models, whose quadratic coupling depends on it).
    With ``project_c`` and one input, ``B^`` is fixed to ones. Hermitian quadratic parameters per
    output: the ``q`` diagonal entries, then real and imaginary parts of the strict upper triangle
    (row-major); PSD: real and imaginary parts of the square factor ``U``.

    A joint weighted objective over blocks is the sum of ``value_and_grad`` over the blocks'
    slices of a concatenated parameter vector (see :func:`h2_gradient_joint`).
    """

    def __init__(self, sys: LQOSystem, r: int, *, weight: float = 1.0, margin: float = 0.0,
                 quadratic: str = "hermitian", project_c: bool = True, scale: float | None = None,
                 min_ratio: float = 1e-2):
        sys = _check_system(sys)
        self.sys = sys
        pairs = sys.half is not None or not sys.is_complex
        r = check_order(r, sys.order)
        if pairs and r % 2:
            raise OrderError(
                f"real-output systems are reduced to conjugate pairs, so r must be even; got r = {r}"
            )
        if quadratic not in ("hermitian", "psd"):
            raise ValueError(f"quadratic must be 'hermitian' or 'psd', got {quadratic!r}")
        self.weight = _positive(weight, "weight")
        disc = sys.is_discrete
        margin = _check_margin(margin, disc)
        if sys.half is not None:
            kappa = sys.half[4]
            if scale is not None and float(scale) != kappa:
                raise ValueError(f"scale={scale} differs from the conjugate-pair full model's scale {kappa}")
        else:
            kappa = 2.0 if scale is None else _positive(scale, "scale")
        self.r = r
        q = r // 2 if pairs else r
        poles = sys.poles()
        if disc:
            nu_b = (math.log(1e-14), math.log(60.0))
        else:
            w = float(max(np.max(np.abs(poles)), 1e-300))
            nu_b = (math.log(w) - _NU_SPAN, math.log(w) + _NU_SPAN)
        quad = quadratic if sys.M is not None else None
        self.layout = _Layout(pairs=pairs, q=q, m=sys.m, p=sys.p, disc=disc, margin=margin, kappa=kappa,
                              quad=quad, project_c=project_c, nu_bounds=nu_b,
                              min_ratio=_nonneg(min_ratio, "min_ratio"))
        self._nod = _without_d(sys)
        parts = h2_norm_parts(self._nod)
        self.norm2 = float(parts.total)
        if sys.is_diagonal:
            fa = _FullArrays(sys.lam[None], sys.B[None], sys.C[None], None if sys.M is None else sys.M[None],
                             [parts.linear], [parts.quadratic], disc)
            self._ev = _Evaluator(self.layout, fa=fa)
        else:
            self._ev = _Evaluator(self.layout, sys_nod=self._nod)

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Length of the parameter vector."""
        return self.layout.size

    @property
    def bounds(self) -> list[tuple[float | None, float | None]]:
        """L-BFGS-B bounds (only the ``nu`` entries are bounded, to keep ``exp(nu)`` finite)."""
        b = [(None, None)] * self.size
        for i in range(*self.layout.slices["nu"].indices(self.size)):
            b[i] = self.layout.nu_bounds
        return b

    # -- conversion ----------------------------------------------------------------------------------
    def _theta_from_modes(self, modes: _Modes, lift: float = 0.0) -> np.ndarray:
        lay = self.layout
        lam, B, C, M = (np.array(x, np.complex128) if x is not None else None for x in modes[:4])
        if lay.quad is not None and M is None:
            M = np.zeros((lay.p, lay.q, lay.q), np.complex128)
        if lay.pairs:
            neg = lam.imag < 0
            if lay.quad is None:  # LTI: swap the stored member of the pair -> Im lam >= 0 (same system)
                lam, B, C = np.where(neg, np.conj(lam), lam), np.where(neg[:, None], np.conj(B), B), np.where(
                    neg[None, :], np.conj(C), C)
            else:  # the quadratic coupling fixes the orientation: remember it
                self._ev.signs = np.where(neg, -1.0, 1.0)
        if not lay.opt_b:  # rescale the state so that B^ = 1: C^ <- C^ D, M^ <- D^H M^ D, D = diag(b)
            d = B[:, 0].copy()
            zero = d == 0
            C = C * d[None, :]
            if M is not None:
                M = np.conj(d)[None, :, None] * M * d[None, None, :]
            C[:, zero] = 0
            if M is not None:
                M[:, zero, :] = 0
                M[:, :, zero] = 0
        th = np.zeros(lay.size)
        nu, ang = lay.nu_theta(lam[None], lift=lift if lay.pairs else 0.0)
        th[lay.slices["nu"]] = nu[0]
        th[lay.slices["th"]] = ang[0]
        if lay.opt_b:
            th[lay.slices["bre"]] = B.real.ravel()
            th[lay.slices["bim"]] = B.imag.ravel()
        if not lay.project_c:
            th[lay.slices["cre"]] = C.real.ravel()
            th[lay.slices["cim"]] = C.imag.ravel()
        if lay.quad is not None:
            th[lay.slices["M"]] = lay.quad_params(_herm(M)[None])[0]
        return th

    def pack(self, rom: LQOSystem) -> np.ndarray:
        """Parameter vector of a reduced model of order ``r`` (diagonalised first if necessary).

        Poles outside the margin are moved onto it; with a PSD parametrisation, negative eigenvalues
        of an indefinite :math:`\\hat M` are clipped. ``C^`` is dropped when it is projected.
        """
        if not isinstance(rom, LQOSystem):
            raise TypeError(f"expected an LQOSystem, got {type(rom).__name__}")
        self.sys.compatible_with(rom)
        return self._theta_from_modes(_modes_of_rom(rom, self.layout))

    def _check_theta(self, theta) -> np.ndarray:
        th = np.asarray(theta, dtype=float)
        if th.shape != (self.size,):
            raise ShapeError(f"theta must have shape ({self.size},), got {th.shape}")
        if not np.all(np.isfinite(th)):
            raise ValueError("theta contains NaN or infinite entries")
        return th

    def modes(self, theta) -> _Modes:
        """Half (or complex) modes ``(lam, B, C, M)`` of the ROM at ``theta`` (C projected if enabled)."""
        th = self._check_theta(theta)[None]
        _, _, Ch = self._ev(th, grad=False)
        mu, _, _, Bh, _, Mh, _ = self._ev.unpack(th)
        return _Modes(mu[0], np.array(Bh[0]), Ch[0], None if Mh is None else Mh[0], True)

    def _rom_from_modes(self, modes: _Modes) -> LQOSystem:
        lay, sys = self.layout, self.sys
        kw = dict(D=sys.D, dt=sys.dt, convention=sys.convention)
        M = None if (modes.M is None or sys.M is None) else _herm(modes.M)
        if lay.pairs:
            return LQOSystem.conjugate_pairs(modes.lam, modes.B, modes.C, M=M, scale=lay.kappa, **kw)
        return LQOSystem.diagonal(modes.lam, modes.B, modes.C, M=M, **kw)

    def unpack(self, theta) -> LQOSystem:
        """Reduced model at ``theta``: ``conjugate_pairs`` (scale kappa) or complex diagonal, D^ = D."""
        return self._rom_from_modes(self.modes(theta))

    # -- evaluation ----------------------------------------------------------------------------------
    def value(self, theta) -> float:
        """:math:`w J(\\vartheta)` (unclamped squared error times the weight)."""
        J, _, _ = self._ev(self._check_theta(theta)[None], grad=False)
        return self.weight * float(J[0])

    def value_and_grad(self, theta) -> tuple[float, np.ndarray]:
        """:math:`w J(\\vartheta)` and its gradient with respect to the real parameter vector."""
        J, G, _ = self._ev(self._check_theta(theta)[None], grad=True)
        return self.weight * float(J[0]), self.weight * G[0]


# ----------------------------------------------------------------------------------------------------
# optimiser
# ----------------------------------------------------------------------------------------------------
class _Tracker:
    """Wraps ``value_and_grad`` for scipy; remembers the best point ever evaluated."""

    def __init__(self, fun, scale: float):
        self.fun, self.scale = fun, scale
        self.best_f, self.best_x, self.best_g = math.inf, None, None
        self.nfev = 0
        self.last = (None, None)
        self.history: list[float] = []

    def __call__(self, x):
        f, g = self.fun(x)
        f, g = f / self.scale, g / self.scale
        self.nfev += 1
        if not (math.isfinite(f) and np.all(np.isfinite(g))):
            return 1e300, np.zeros_like(x)
        if f < self.best_f:
            self.best_f, self.best_x, self.best_g = f, x.copy(), g.copy()
        self.last = (x.copy(), f)
        return f, g

    def callback(self, xk, *args):
        x, f = self.last
        if x is not None and np.array_equal(x, xk):
            self.history.append(f)


def _lbfgs(fun, x0, bounds, scale, tol, maxiter):
    tr = _Tracker(fun, scale)
    tr(np.asarray(x0, float))  # the initial point is always a candidate
    tr.history.append(tr.best_f)
    if tr.best_x is None:
        raise UnstableSystemError("the objective is not finite at the initial model")
    res = minimize(tr, tr.best_x, jac=True, method="L-BFGS-B", bounds=bounds, callback=tr.callback,
                   options=dict(maxiter=int(maxiter), gtol=tol, ftol=1e-15, maxcor=20, maxls=60))
    return tr, res


def _proj_grad_norm(x, g, bounds) -> float:
    """Infinity norm of the projected gradient (as L-BFGS-B measures it)."""
    gp = g.copy()
    for i, (lo, hi) in enumerate(bounds):
        if lo is not None and x[i] <= lo and g[i] > 0:
            gp[i] = 0.0
        if hi is not None and x[i] >= hi and g[i] < 0:
            gp[i] = 0.0
    return float(np.max(np.abs(gp))) if gp.size else 0.0


def _stationarity(sys: LQOSystem, rom: LQOSystem, lay: _Layout, norm2: float) -> float:
    r"""Scale-free stationarity measure from the *core* gradient (independent of this module's forms).

    :math:`\max(|\partial J/\partial\nu|, |\partial J/\partial\theta|, \|\nabla_{\hat B}\|\|\hat B\|,
    \|\nabla_{\hat C}\|\|\hat C\|, \|\nabla_{\hat M}\|\|\hat M\|) / \|\Sigma\|^2` over all ROM entries.
    """
    g = h2_error_grad(_without_d(sys), _without_d(rom))
    gM = g.M
    g_mu, g_B, g_C, g_M = _fold(lay, g.lam[None], g.B[None], g.C[None], None if gM is None else gM[None])
    if lay.pairs:
        mu, Bh, Ch, Mh, _ = rom.half
    else:
        mu, Bh, Ch, Mh = rom.lam, rom.B, rom.C, rom.M
    if lay.disc:
        dnu = -(-np.log(np.abs(mu)) + lay.log_scale) * mu
        dth = 1j * mu
    else:
        dnu = (mu.real + lay.margin) + 0j
        dth = np.ones_like(mu)
    vals = [np.abs((np.conj(g_mu[0]) * dnu).real), np.abs((np.conj(g_mu[0]) * dth).real),
            [np.linalg.norm(g_B) * np.linalg.norm(Bh)], [np.linalg.norm(g_C) * np.linalg.norm(Ch)]]
    if g_M is not None and Mh is not None:
        vals.append([np.linalg.norm(g_M) * np.linalg.norm(Mh)])
    return float(max(np.max(v) for v in vals)) / max(norm2, np.finfo(float).tiny)


def _greedy_select(fa: _FullArrays, lay: _Layout, lam, B, C, chunk_rows: int = 8192) -> np.ndarray:
    """Greedy forward selection of ``lay.q`` modes per system by the projected objective.

    Step k adds, for every system, the candidate mode (one of its own ``n`` modes, as in modal
    truncation) that minimises the error of the ROM made of the k selected poles with the optimal
    ``C^`` (variable projection) -- a cheap, much better-informed ranking than per-mode scores.
    ``fa`` has one row per system; ``lam (N, n)``, ``B (N, n, m)``, ``C (N, p, n)`` are the candidate
    (half) modes, oriented with ``Im lam >= 0`` for pairs. Returns indices ``(N, q)``.
    """
    N, n = lam.shape
    q = lay.q
    sel = np.zeros((N, 0), int)
    per = max(1, chunk_rows // max(n, 1))
    for k in range(1, q + 1):
        lay_k = _Layout(pairs=lay.pairs, q=k, m=lay.m, p=lay.p, disc=lay.disc, margin=lay.margin,
                        kappa=lay.kappa, quad=None, project_c=True, nu_bounds=lay.nu_bounds,
                        min_ratio=lay.min_ratio)
        J = np.empty((N, n))
        for a in range(0, N, per):
            rows = np.arange(a, min(N, a + per))
            nr = rows.size
            idx = np.concatenate([np.repeat(sel[rows][:, None, :], n, axis=1),
                                  np.broadcast_to(np.arange(n)[None, :, None], (nr, n, 1))], axis=2)
            idx = idx.reshape(nr * n, k)
            own = np.repeat(rows, n)
            lam_c = lam[own[:, None], idx]
            th = np.zeros((nr * n, lay_k.size))
            nu, ang = lay_k.nu_theta(lam_c, lift=_LIFT if lay.pairs else 0.0)
            th[:, lay_k.slices["nu"]] = nu
            th[:, lay_k.slices["th"]] = ang
            if lay_k.opt_b:
                Bc = B[own[:, None], idx]
                th[:, lay_k.slices["bre"]] = Bc.real.reshape(nr * n, -1)
                th[:, lay_k.slices["bim"]] = Bc.imag.reshape(nr * n, -1)
            ev = _Evaluator(lay_k, fa=fa.take(own))
            Jc, _, _ = ev(th, grad=False)
            J[rows] = Jc.reshape(nr, n)
        J[np.arange(N)[:, None], sel] = np.inf
        J[~np.isfinite(J)] = np.inf
        sel = np.concatenate([sel, np.argmin(J, axis=1)[:, None]], axis=1)
    return sel


def _greedy_modes(sys: LQOSystem, obj: H2Objective) -> _Modes:
    """Greedy modal selection (:func:`_greedy_select`) for a diagonal LTI full model."""
    lay = obj.layout
    if sys.half is not None:
        lam, B, C, _, kappa = sys.half
        C = C * (kappa / lay.kappa)
    else:
        lam, B, C = sys.lam.astype(np.complex128), sys.B.astype(np.complex128), sys.C.astype(np.complex128)
    if lay.pairs:
        neg = lam.imag < 0
        lam, B, C = np.where(neg, np.conj(lam), lam), np.where(neg[:, None], np.conj(B), B), np.where(
            neg[None, :], np.conj(C), C)
    sel = np.sort(_greedy_select(obj._ev.fa, lay, lam[None], B[None], C[None])[0])
    return _Modes(lam[sel], B[sel], C[:, sel], None, True)


def _init_candidates(sys, r, init, obj: H2Objective):
    """List of (name, modes, raw_error) initial models."""
    lay = obj.layout
    cands, notes = [], {}
    if isinstance(init, ReductionResult):
        init = init.rom
    if isinstance(init, LQOSystem):
        sys.compatible_with(init)
        return [("given", _modes_of_rom(init, lay), h2_error(sys, init))], notes
    if not isinstance(init, str) or init not in ("auto", "modal", "greedy", "bt"):
        raise ValueError(
            f"init must be 'auto', 'modal', 'greedy', 'bt', a ReductionResult or an LQOSystem, got {init!r}")
    if init in ("auto", "modal"):
        cands.append(("modal", _modal_modes(sys, lay), None))
    greedy_ok = (sys.is_diagonal and sys.M is None and obj._ev.fa is not None
                 and (sys.half is not None or lay.pairs is False))
    if init == "greedy" and not greedy_ok:
        raise ValueError("init='greedy' needs a diagonal LTI full model (complex or conjugate pairs)")
    if init == "greedy" or (init == "auto" and greedy_ok and sys.order * lay.q <= 20000):
        g = _greedy_modes(sys, obj)
        def key(x):
            return np.sort_complex(x.real + 1j * np.abs(x.imag)) if lay.pairs else np.sort_complex(x)

        if not any(np.array_equal(key(g.lam), key(c[1].lam)) for c in cands):
            cands.append(("greedy", g, None))
    if init in ("auto", "bt"):
        try:
            bt = _bt_rom(sys, r)
            cands.append(("bt", _modes_of_rom(bt, lay), h2_error(sys, bt)))
        except Exception as exc:  # a failing BT must not break the gradient method in "auto" mode
            if init == "bt":
                raise
            notes["bt"] = f"{type(exc).__name__}: {exc}"
    return cands, notes


def h2_gradient(sys: LQOSystem, r: int, *, init="auto", weight: float = 1.0, tol: float = 1e-9,
                maxiter: int = 500, margin: float = 0.0, quadratic: str = "hermitian",
                project_c: bool = True, scale: float | None = None, min_ratio: float = 1e-2,
                multistart: bool = True) -> ReductionResult:
    r"""Gradient-based h2-optimal reduction to a diagonal, stable reduced model.

    Minimises :math:`J = \|\Sigma - \hat\Sigma\|_{h2}^2` (continuous: :math:`\mathcal H_2`) over diagonal
    ROMs with the stability-guaranteeing parametrisation of the module docstring, by L-BFGS-B on the
    real parameter vector of :class:`H2Objective` with analytic gradients.

    Parameters
    ----------
    sys : LQOSystem
        Stable full model: dense or diagonal, LTI or LQO, real, complex, or ``conjugate_pairs``.
    r : int
        Reduced real order, ``1 <= r < sys.order``; even for real-output full models.
    init : {"auto", "modal", "greedy", "bt"} or ReductionResult or LQOSystem
        Initial model. ``"modal"``: dominant modes (exact modal truncation, pairs ranked by their
        real-output h2 norm); ``"greedy"`` (diagonal LTI full models): modal truncation with the modes
        chosen one at a time by the projected error (:func:`_greedy_select`); ``"bt"``: balanced
        truncation (:func:`mor_lqo.balanced_truncation`, or a local square-root BT when that is
        unavailable), diagonalised; ``"auto"``: all that apply (see ``multistart``). A given model
        of order r is diagonalised (real models into conjugate pairs; two real eigenvalues cannot form
        a pair and are merged approximately, ``info["init_exact"]`` is then False).
    weight : float, default 1.0
        Positive factor of the objective. It does not change the minimiser of a single block (the
        optimiser works on :math:`J/\|\Sigma\|^2`); ``info["objective"]`` is ``weight * J``.
    tol : float, default 1e-9
        Projected-gradient tolerance (infinity norm) for the normalised objective :math:`J/\|\Sigma\|^2`.
    maxiter : int, default 500
        Maximum number of L-BFGS iterations.
    margin : float, default 0.0
        Stability margin :math:`\delta`: every ROM pole satisfies :math:`|\hat\lambda| \le 1-\delta`
        (discrete) or :math:`\mathrm{Re}\,\hat\lambda \le -\delta` (continuous).
    quadratic : {"hermitian", "psd"}
        Reduced quadratic output: Hermitian :math:`\hat M_j` (default) or :math:`\hat U_j^H\hat U_j`.
    project_c : bool, default True
        Variable projection of :math:`\hat C` (module docstring).
    scale : float, optional
        Output scale of the conjugate-pair ROM of a *real* full model (default 2.0).
    min_ratio : float, default 1e-2
        Conjugate pairs keep an angle (discrete) or :math:`|\mathrm{Im}\,\hat\lambda|` (continuous) of at
        least ``min_ratio`` times their decay rate :math:`e^\nu`. Without it, the optimum of a
        conjugate-pair ROM can lie on the boundary where a pair merges into a double real pole with
        :math:`|\hat c| \to \infty` (the layout cannot store two distinct real poles in one slot); the
        bound keeps :math:`\hat c` within about ``1/min_ratio`` of its natural size. 0 disables it.
        Complex ROMs are not affected.
    multistart : bool, default True
        Run L-BFGS from every initial model (``"auto"``: modal, greedy, BT) and keep the best result;
        False: only from the one with the lowest projected objective.

    Returns
    -------
    ReductionResult
        ``rom``: ``LQOSystem.conjugate_pairs`` (real-output full models; same scale) or complex
        ``LQOSystem.diagonal``, with :math:`\hat D = D`; ``h2_error`` recomputed by
        :func:`mor_lqo.h2_error` (independent of the objective's closed forms); ``method="h2"``;
        ``converged`` (L-BFGS-B success), ``iterations``, ``history`` (relative error per iteration).
        ``info``: ``init`` (the start that gave the result), ``best_init`` and ``init_error`` (the
        best initial model and its h2 error: the result is never worse), ``init_errors`` (every
        candidate; ``"<name>+diag"`` after diagonalisation when that changed it, ``"<name>+proj"`` at
        the optimiser's start: C^ projected, near-real pairs split), ``init_exact``, ``starts``,
        ``grad_norm`` (projected gradient of :math:`J/\|\Sigma\|^2` in the internal parameters),
        ``stationarity`` (core-gradient measure, see :func:`_stationarity`), ``objective``
        (``weight * J``), ``nfev``, ``message``, ``weight``, ``margin``, ``quadratic``, ``project_c``.

    Raises
    ------
    OrderError
        ``r < 1``, ``r >= order``, or odd ``r`` for real-output full models.
    UnstableSystemError
        Unstable full model.
    ValueError
        Invalid ``weight``, ``margin``, ``tol``, ``maxiter``, ``init`` or ``quadratic``.
    """
    obj = H2Objective(sys, r, weight=weight, margin=margin, quadratic=quadratic, project_c=project_c,
                      scale=scale, min_ratio=min_ratio)
    with _blas_threads(sys):
        return _h2_gradient(sys, obj, init, tol, maxiter, multistart)


def _h2_gradient(sys, obj, init, tol, maxiter, multistart) -> ReductionResult:
    tol = _positive(tol, "tol")
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0:
        raise ValueError(f"maxiter must be a non-negative integer, got {maxiter!r}")
    lay = obj.layout
    norm2 = obj.norm2
    scale_f = max(norm2, np.finfo(float).tiny)

    cands, notes = _init_candidates(sys, obj.r, init, obj)
    init_errors: dict = dict(notes)
    starts = []
    for name, modes, raw_err in cands:
        modes = _clip_to_margin(modes, lay)
        rom0 = obj._rom_from_modes(modes)
        err0 = h2_error(sys, rom0)
        init_errors[name] = err0 if raw_err is None else raw_err
        if raw_err is not None and not math.isclose(err0, raw_err, rel_tol=1e-6, abs_tol=1e-12 * math.sqrt(norm2)):
            init_errors[name + "+diag"] = err0
        th0 = obj._theta_from_modes(modes, lift=_LIFT)
        f0 = obj.value(th0) / obj.weight
        init_errors[name + "+proj"] = math.sqrt(max(f0, 0.0))
        exact = modes.exact and (raw_err is None or err0 <= raw_err * (1 + 1e-6) + 1e-12 * math.sqrt(norm2))
        starts.append((f0, name, rom0, err0, modes, exact))
    starts.sort(key=lambda t: t[0])
    i_best0 = int(np.argmin([t[3] for t in starts]))
    _, name_i, rom0, err0, _, exact0 = starts[i_best0]  # the best initial model (the guarantee)

    bounds = obj.bounds
    best = None
    for _f0, name, _, _, modes, _ in (starts if multistart else starts[:1]):
        th0 = obj._theta_from_modes(modes, lift=_LIFT)  # (re)sets the pair orientation of LQO models
        tr, res = _lbfgs(lambda x: obj.value_and_grad(x), th0, bounds, obj.weight * scale_f, tol, maxiter)
        if best is None or tr.best_f < best[1].best_f:
            best = (name, tr, res, None if obj._ev.signs is None else obj._ev.signs.copy())
    name0, tr, res, signs = best
    obj._ev.signs = signs
    theta = tr.best_x
    rom = obj.unpack(theta)
    err = h2_error(sys, rom)
    reverted = False
    if err > err0:  # never worse than the initialisation (guards rounding in the last digits)
        rom, err, reverted = rom0, err0, True
    gnorm = _proj_grad_norm(theta, tr.best_g, bounds)
    if not reverted and not rom.is_stable():  # pragma: no cover - excluded by the parametrisation
        raise UnstableSystemError("internal error: the reduced model is unstable")
    converged = bool(res.success) or gnorm <= tol
    if not converged:
        warnings.warn(f"h2_gradient stopped before meeting tol={tol:g} ({res.message}); the best "
                      f"iterate is returned (projected gradient {gnorm:.3g})", ConvergenceWarning, stacklevel=3)
    info = dict(
        init=name0, best_init=name_i, init_error=err0, init_errors=init_errors, init_exact=exact0,
        starts=len(starts) if multistart else 1,
        grad_norm=gnorm, stationarity=_stationarity(sys, rom, lay, norm2),
        objective=obj.weight * tr.best_f * scale_f, h2_error_objective=math.sqrt(max(tr.best_f * scale_f, 0.0)),
        nfev=tr.nfev, message=str(res.message), weight=obj.weight, margin=lay.margin,
        quadratic=lay.quad, project_c=lay.project_c, reverted_to_init=reverted, parameters=lay.size,
    )
    hist = tuple(math.sqrt(max(f, 0.0)) for f in tr.history)
    # discrete time: the full model's own norm (with D); continuous time with D != 0 the norm is
    # infinite, and that of the strictly proper part (D cancels in the error) is reported instead
    full_norm = h2_norm(sys) if (sys.is_discrete or not np.any(sys.D)) else math.sqrt(norm2)
    return ReductionResult(rom=rom, h2_error=err, h2_norm=full_norm, method="h2", converged=converged,
                           iterations=int(res.nit), history=hist, info=info)


def h2_gradient_joint(objectives: Sequence[H2Objective], inits: Sequence[LQOSystem], *, tol: float = 1e-9,
                      maxiter: int = 500) -> tuple[list[LQOSystem], dict]:
    r"""Minimise a weighted sum :math:`\sum_l w_l J_l` of several blocks' objectives jointly (L-BFGS).

    Parameters
    ----------
    objectives : sequence of H2Objective
        One per block, each with its own weight :math:`w_l`.
    inits : sequence of LQOSystem
        Initial reduced models (packed with each objective's :meth:`H2Objective.pack`).
    tol, maxiter
        As in :func:`h2_gradient`; the gradient is that of the sum divided by
        :math:`\sum_l w_l \|\Sigma_l\|^2`.

    Returns
    -------
    roms : list of LQOSystem
        Reduced models at the best joint point found (never worse in the weighted sum than the start).
    info : dict
        ``objective`` (weighted sum), ``initial_objective``, ``converged``, ``iterations``, ``grad_norm``.
    """
    if len(objectives) != len(inits) or not objectives:
        raise ValueError("give one initial model per objective (and at least one)")
    thetas = [o.pack(rom) for o, rom in zip(objectives, inits)]
    cuts = np.cumsum([0] + [t.size for t in thetas])
    bounds = [b for o in objectives for b in o.bounds]

    def fun(x):
        f, g = 0.0, np.empty_like(x)
        for o, a, b in zip(objectives, cuts[:-1], cuts[1:]):
            fo, go = o.value_and_grad(x[a:b])
            f += fo
            g[a:b] = go
        return f, g

    scale = sum(o.weight * max(o.norm2, np.finfo(float).tiny) for o in objectives)
    tr, res = _lbfgs(fun, np.concatenate(thetas), bounds, scale, _positive(tol, "tol"), maxiter)
    x = tr.best_x
    roms = [o.unpack(x[a:b]) for o, a, b in zip(objectives, cuts[:-1], cuts[1:])]
    gnorm = _proj_grad_norm(x, tr.best_g, bounds)
    return roms, dict(objective=tr.best_f * scale, initial_objective=tr.history[0] * scale,
                      converged=bool(res.success) or gnorm <= tol, iterations=int(res.nit), grad_norm=gnorm)


# ----------------------------------------------------------------------------------------------------
# batched channels
# ----------------------------------------------------------------------------------------------------
class H2BatchResult(NamedTuple):
    """Result of :func:`h2_gradient_batch` (N channels, q = r/2 stored modes each).

    Attributes
    ----------
    lam : ndarray (N, q) complex
        Reduced stored eigenvalues (one per conjugate pair).
    B : ndarray (N, q, m) complex
        Reduced input matrices (ones for m = 1).
    C : ndarray (N, p, q) complex
        Reduced output matrices (output ``scale * Re(C x)``).
    h2_error : ndarray (N,)
        Absolute h2 error of each channel's real input-output map, recomputed with the numba Cauchy
        kernels (independent of the optimiser's closed forms).
    h2_norm : ndarray (N,)
        h2 norm of each full channel.
    init_error : ndarray (N,)
        Error of the best initial model (modal truncation, greedy modal selection, or the given one);
        ``h2_error <= init_error``.
    grad_norm : ndarray (N,)
        Infinity norm of the gradient of ``J / ||S||^2`` at the returned point.
    iterations : ndarray (N,) int
        BFGS iterations per channel (summed over the starts).
    converged : ndarray (N,) bool
        Gradient tolerance met, or the objective stalled at rounding level.
    scale : float
    dt : float
    """

    lam: np.ndarray
    B: np.ndarray
    C: np.ndarray
    h2_error: np.ndarray
    h2_norm: np.ndarray
    init_error: np.ndarray
    grad_norm: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    scale: float
    dt: float

    @property
    def relative_error(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.h2_error / self.h2_norm


def _bfgs_batch(fun, x0, lo, hi, gtol, ftol, maxiter, max_step=1.0):
    """Independent BFGS minimisations of N separable objectives, vectorised over the channels.

    ``fun(x (k, d), idx (k,)) -> (f (k,), g (k, d))`` for channels ``idx``. Per-channel Armijo
    backtracking (safeguarded quadratic interpolation), steps capped at ``max_step`` per coordinate
    (0.1 on the first, unscaled step), bound clipping of the iterates, curvature-guarded BFGS updates
    of a dense inverse Hessian per channel. Only the channels still active are evaluated.
    """
    N, d = x0.shape
    x = np.clip(x0, lo, hi)
    f, g = fun(x, np.arange(N))
    H = np.broadcast_to(np.eye(d), (N, d, d)).copy()
    fresh = np.ones(N, bool)
    it = np.zeros(N, int)
    conv = np.max(np.abs(g), axis=1) <= gtol
    active = ~conv & np.isfinite(f)
    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xa, fa, ga = x[idx], f[idx], g[idx]
        p = -np.einsum("kij,kj->ki", H[idx], ga)
        gp = np.sum(ga * p, axis=1)
        bad = ~(gp < 0)
        if bad.any():
            H[idx[bad]] = np.eye(d)
            fresh[idx[bad]] = True
            p[bad] = -ga[bad]
            gp[bad] = -np.sum(ga[bad] ** 2, axis=1)
        pmax = np.max(np.abs(p), axis=1)
        t = np.minimum(1.0, max_step / np.maximum(pmax, 1e-300))
        t = np.where(fresh[idx], np.minimum(t, 0.1 / np.maximum(pmax, 1e-300)), t)
        xn, fn, gn = xa.copy(), fa.copy(), ga.copy()
        done = np.zeros(idx.size, bool)
        pend = np.arange(idx.size)
        for _ls in range(60):
            trial = np.clip(xa[pend] + t[pend, None] * p[pend], lo, hi)
            ft, gt = fun(trial, idx[pend])
            slope = np.sum(ga[pend] * (trial - xa[pend]), axis=1)
            ok = np.isfinite(ft) & (ft <= fa[pend] + 1e-4 * slope) & (slope < 0)
            acc = pend[ok]
            xn[acc], fn[acc], gn[acc] = trial[ok], ft[ok], gt[ok]
            done[acc] = True
            rej = pend[~ok]
            if rej.size == 0:
                break
            # safeguarded quadratic interpolation of the step, within [0.1 t, 0.5 t]
            tr_, fr_ = t[rej], ft[~ok]
            sl = gp[rej] * tr_
            den = 2.0 * (fr_ - fa[rej] - sl)
            with np.errstate(divide="ignore", invalid="ignore"):
                tq = np.where(np.isfinite(fr_) & (den > 0), -gp[rej] * tr_ ** 2 / den, 0.1 * tr_)
            t[rej] = np.clip(np.nan_to_num(tq, nan=0.1), 0.1 * tr_, 0.5 * tr_)
            pend = rej
        failed = idx[~done]
        active[failed] = False
        # no Armijo step although descent was predicted: converged when the predicted decrease is at
        # the rounding level of the (normalised) objective
        conv[failed] |= np.abs(gp[~done]) <= 1e-12 * np.maximum(np.abs(fa[~done]), 1.0)
        ok_idx = idx[done]
        if ok_idx.size:
            s = xn[done] - xa[done]
            y = gn[done] - ga[done]
            sy = np.sum(s * y, axis=1)
            yy = np.sum(y * y, axis=1)
            good = sy > 1e-12 * np.sqrt(np.sum(s * s, axis=1) * yy)
            Hk = H[ok_idx]
            fr = fresh[ok_idx] & good
            if fr.any():
                Hk[fr] = (sy[fr] / yy[fr])[:, None, None] * np.eye(d)
            gi = np.flatnonzero(good)
            if gi.size:
                Hs, ss, ys, rho = Hk[gi], s[gi], y[gi], 1.0 / sy[gi]
                Hy = np.einsum("kij,kj->ki", Hs, ys)
                yHy = np.sum(ys * Hy, axis=1)
                Hs = (Hs - rho[:, None, None] * (ss[:, :, None] * Hy[:, None, :] + Hy[:, :, None] * ss[:, None, :])
                      + ((rho ** 2) * yHy + rho)[:, None, None] * ss[:, :, None] * ss[:, None, :])
                Hk[gi] = Hs
            H[ok_idx] = Hk
            fresh[ok_idx] &= ~good
            f_old = f[ok_idx]
            x[ok_idx], f[ok_idx], g[ok_idx] = xn[done], fn[done], gn[done]
            it[ok_idx] += 1
            gmax = np.max(np.abs(g[ok_idx]), axis=1)
            stall = (f_old - f[ok_idx]) <= ftol * np.maximum(np.abs(f[ok_idx]), 1e-300)
            fin = (gmax <= gtol) | stall
            conv[ok_idx[fin]] = True
            active[ok_idx[fin]] = False
    conv |= np.max(np.abs(g), axis=1) <= gtol
    return x, f, g, it, conv


def h2_gradient_batch(lam, B, C, r: int, *, dt: float, scale: float = 2.0, init="auto", tol: float = 1e-9,
                      maxiter: int = 200, margin: float = 0.0, ftol: float = 1e-13,
                      min_ratio: float = 1e-2) -> H2BatchResult:
    r"""Gradient-based h2-optimal reduction of N conjugate-pair channels at once (LTI).

    Channel ``i`` is the real-output system ``x_k = diag(lam[i]) x_{k-1} + B[i] u_k``,
    ``y = scale * Re(C[i] x)`` (discrete, ``dt > 0``) or its continuous analogue (``dt = 0``), i.e.
    ``LQOSystem.conjugate_pairs(lam[i], B[i], C[i], dt=dt, scale=scale)`` of real order ``2 n``.
    Each channel is reduced to real order ``r`` (``r/2`` stored modes) exactly as :func:`h2_gradient`
    does with ``project_c=True`` (same parametrisation, objective and projection of ``C^``), but
    vectorised over channels: the closed forms run as batched numpy kernels and the optimiser is a
    per-channel BFGS (no Python loop over channels).

    Parameters
    ----------
    lam : array_like, shape (N, n)
        Stored stable eigenvalues (``|lam| < 1`` discrete, ``Re lam < 0`` continuous).
    B : array_like, shape (N, n, m) or (N, n)
    C : array_like, shape (N, p, n) or (N, n)
    r : int
        Reduced real order per channel: even, ``2 <= r < 2 n``.
    dt : float
        Sampling time (0 for continuous time); only its positivity matters for the norms.
    scale : float, default 2.0
        Output scale :math:`\kappa` (2 for halved layouts such as S4/S4D, 1 for ``Re(Cx)`` layouts).
    init : {"auto", "modal", "greedy"} or tuple (lam0 (N, q), B0 (N, q, m), C0 (N, p, q))
        Initial half modes: ``"modal"``, dominant modes per channel by their real-output h2 norm;
        ``"greedy"``, modes chosen one by one by the projected error (see :func:`_greedy_select`);
        ``"auto"`` (default), BFGS from both, the better result per channel; or given arrays.
    tol : float
        Gradient tolerance (infinity norm) for the normalised objective ``J / ||S||^2``.
    maxiter : int
        Maximum BFGS iterations per channel.
    margin : float
        Stability margin as in :func:`h2_gradient`.
    ftol : float
        A channel also stops when one iteration lowers ``J/||S||^2`` by less than ``ftol`` relative.

    Returns
    -------
    H2BatchResult
        Reduced ``lam (N, q)``, ``B (N, q, m)`` (ones for m = 1), ``C (N, p, q)``, per-channel errors
        (never worse than the initial model's), norms, gradient norms, iterations and flags.

    Raises
    ------
    OrderError, ShapeError, UnstableSystemError, ValueError
    """
    lam = as_float_or_complex(lam, "lam").astype(np.complex128)
    B = as_float_or_complex(B, "B").astype(np.complex128)
    C = as_float_or_complex(C, "C").astype(np.complex128)
    if lam.ndim != 2:
        raise ShapeError(f"lam must have shape (N, n), got {lam.shape}")
    N, n = lam.shape
    if B.ndim == 2:
        B = B[:, :, None]
    if C.ndim == 2:
        C = C[:, None, :]
    if B.ndim != 3 or B.shape[:2] != (N, n) or B.shape[2] < 1:
        raise ShapeError(f"B must have shape (N, n, m) = ({N}, {n}, m), got {B.shape}")
    if C.ndim != 3 or C.shape[0] != N or C.shape[2] != n or C.shape[1] < 1:
        raise ShapeError(f"C must have shape (N, p, n) = ({N}, p, {n}), got {C.shape}")
    if N == 0:
        raise ShapeError("no channels")
    m, p = B.shape[2], C.shape[1]
    dt = check_dt(dt)
    disc = dt > 0
    kappa = _positive(scale, "scale")
    r = check_order(r, 2 * n)
    if r % 2:
        raise OrderError(f"conjugate-pair channels are reduced to conjugate pairs, so r must be even; got r = {r}")
    q = r // 2
    margin = _check_margin(margin, disc)
    tol = _positive(tol, "tol")
    ftol = _positive(ftol, "ftol")
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0:
        raise ValueError(f"maxiter must be a non-negative integer, got {maxiter!r}")
    stab = np.abs(lam) if disc else lam.real
    bad = np.flatnonzero(np.any(stab >= (1.0 if disc else 0.0), axis=1))
    if bad.size:
        raise UnstableSystemError(
            f"{bad.size} channel(s) are not asymptotically stable (first: channel {bad[0]}); "
            f"{'|lam| < 1' if disc else 'Re lam < 0'} is required")

    from ..kernels.cauchy import cauchy_inner, cauchy_norm2

    lamF = np.concatenate([lam, np.conj(lam)], axis=1)
    BF = np.concatenate([B, np.conj(B)], axis=1)
    CF = (kappa / 2) * np.concatenate([C, np.conj(C)], axis=2)
    nf = np.asarray(cauchy_norm2(lamF, BF, CF, disc), float)
    fa = _FullArrays(lamF, BF, CF, None, nf, np.zeros(N), disc)
    if disc:
        nu_b = (math.log(1e-14), math.log(60.0))
    else:
        w = float(max(np.max(np.abs(lam)), 1e-300))
        nu_b = (math.log(w) - _NU_SPAN, math.log(w) + _NU_SPAN)
    lay = _Layout(pairs=True, q=q, m=m, p=p, disc=disc, margin=margin, kappa=kappa, quad=None, project_c=True,
                  nu_bounds=nu_b, min_ratio=_nonneg(min_ratio, "min_ratio"))
    ev = _Evaluator(lay, fa=fa)

    # -- initial half modes ----------------------------------------------------------------------------
    neg = lam.imag < 0  # orient the candidate modes (same system)
    lam_o = np.where(neg, np.conj(lam), lam)
    B_o = np.where(neg[:, :, None], np.conj(B), B)
    C_o = np.where(neg[:, None, :], np.conj(C), C)

    def take(sel):
        sel = np.sort(sel, axis=1)
        return (np.take_along_axis(lam_o, sel, axis=1), np.take_along_axis(B_o, sel[:, :, None], axis=1),
                np.take_along_axis(C_o, sel[:, None, :], axis=2))

    starts = []
    if isinstance(init, str):
        if init not in ("auto", "modal", "greedy"):
            raise ValueError(f"init must be 'auto', 'modal', 'greedy' or a tuple (lam0, B0, C0), got {init!r}")
        if init in ("auto", "modal"):
            sc = _mode_scores(lam, B, C, None, disc, pairs=True)
            starts.append(take(np.argsort(-sc, axis=1, kind="stable")[:, :q]))
        if init in ("auto", "greedy"):
            with _blas_threads(small=True):
                starts.append(take(_greedy_select(fa, lay, lam_o, B_o, C_o)))
    else:
        try:
            lam0, B0, C0 = init
        except (TypeError, ValueError) as exc:
            raise ValueError("init must be 'auto', 'modal', 'greedy' or a tuple (lam0, B0, C0)") from exc
        lam0 = as_float_or_complex(lam0, "lam0").astype(np.complex128)
        B0 = as_float_or_complex(B0, "B0").astype(np.complex128)
        C0 = as_float_or_complex(C0, "C0").astype(np.complex128)
        if B0.ndim == 2:
            B0 = B0[:, :, None]
        if C0.ndim == 2:
            C0 = C0[:, None, :]
        if lam0.shape != (N, q) or B0.shape != (N, q, m) or C0.shape != (N, p, q):
            raise ShapeError(f"init arrays must have shapes ({N}, {q}), ({N}, {q}, {m}), ({N}, {p}, {q}); "
                             f"got {lam0.shape}, {B0.shape}, {C0.shape}")
        if np.any((np.abs(lam0) if disc else lam0.real) >= (1.0 if disc else 0.0)):
            raise UnstableSystemError("the initial modes must be stable")
        n0 = lam0.imag < 0
        starts.append((np.where(n0, np.conj(lam0), lam0), np.where(n0[:, :, None], np.conj(B0), B0),
                       np.where(n0[:, None, :], np.conj(C0), C0)))
    norm_f = np.maximum(nf, np.finfo(float).tiny)

    def fun(x, idx):
        J, G, _ = ev(x, idx=idx, grad=True)
        s = norm_f[idx]
        return J / s, G / s[:, None]

    # -- independent error evaluation (numba Cauchy kernels) ---------------------------------------------
    def errors(mu_, B_, C_):
        lf = np.concatenate([mu_, np.conj(mu_)], axis=1)
        bf = np.concatenate([B_, np.conj(B_)], axis=1)
        cf = (kappa / 2) * np.concatenate([C_, np.conj(C_)], axis=2)
        e2 = nf + np.asarray(cauchy_norm2(lf, bf, cf, disc)) - 2 * np.real(cauchy_inner(lamF, BF, CF, lf, bf, cf, disc))
        return np.sqrt(np.maximum(e2, 0.0))

    lo = np.full(lay.size, -np.inf)
    hi = np.full(lay.size, np.inf)
    lo[lay.slices["nu"]], hi[lay.slices["nu"]] = nu_b
    best = None
    for lam0, B0, C0 in starts:
        if margin > 0:  # initial poles violating the margin are moved onto it
            if disc:
                rad = np.abs(lam0)
                lam0 = np.where(rad > 1 - margin, lam0 * ((1 - margin) / np.maximum(rad, 1e-300)), lam0)
            else:
                lam0 = np.where(lam0.real > -margin, -margin + 1j * lam0.imag, lam0)
        th0 = np.zeros((N, lay.size))
        nu0, ang0 = lay.nu_theta(lam0, lift=_LIFT)
        th0[:, lay.slices["nu"]] = nu0
        th0[:, lay.slices["th"]] = ang0
        if lay.opt_b:
            th0[:, lay.slices["bre"]] = B0.real.reshape(N, -1)
            th0[:, lay.slices["bim"]] = B0.imag.reshape(N, -1)
            B0s, C0s = B0, C0
        else:  # state rescaled so that B^ = 1
            B0s, C0s = np.ones((N, q, 1), np.complex128), C0 * B0[:, None, :, 0]
        with _blas_threads(small=True):
            x, f, g, it, conv = _bfgs_batch(fun, th0, lo, hi, tol, ftol, int(maxiter))
        _, _, Ch = ev(x, grad=False)
        mu, _, _, Bh, _, _, _ = ev.unpack(x)
        Bh = np.array(Bh)
        err0 = errors(lam0, B0s, C0s)  # the initial model itself (th0 may have lifted near-real pairs)
        err = errors(mu, Bh, Ch)
        worse = err > err0
        if worse.any():
            mu[worse], Bh[worse], Ch[worse], err[worse] = lam0[worse], B0s[worse], C0s[worse], err0[worse]
        gnorm = np.max(np.abs(g), axis=1) if g.size else np.zeros(N)
        cur = [mu, Bh, Ch, err, err0, gnorm, it, conv]
        if best is None:
            best = cur
        else:
            better = cur[3] < best[3]
            for k in range(len(best)):
                if k == 4:  # the guarantee holds against the best initial model
                    best[k] = np.minimum(best[k], cur[k])
                elif k == 6:
                    best[k] = best[k] + cur[k]  # total iterations over the starts
                else:
                    best[k] = np.where(better.reshape((-1,) + (1,) * (best[k].ndim - 1)), cur[k], best[k])
    mu, Bh, Ch, err, err0, gnorm, it, conv = best
    return H2BatchResult(lam=mu, B=Bh, C=Ch, h2_error=err, h2_norm=np.sqrt(nf), init_error=err0,
                         grad_norm=gnorm, iterations=it, converged=conv, scale=kappa, dt=dt)
