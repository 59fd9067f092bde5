r"""Parametrisation of a diagonal reduced model by a real vector (docs/theory.md §8, §9).

:class:`_Layout` maps the real parameter vector to stable poles (for *every* parameter value),
input, output and quadratic-output matrices, and back (starting points); :class:`_FullArrays` holds a
full model in conjugation-closed diagonal coordinates with a leading batch axis; :class:`_Modes` is a
reduced model's half (or complex) modes. The conjugate-pair helpers unfold half coordinates into the
conjugation-closed full form and fold full-coordinate gradients back (docs/theory.md §8.3, §8.5).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

_LIFT = 0.5  # starting points: near-real pairs get an angle of at least 0.5 x their decay rate
_NU_SPAN = 14.0 * math.log(10.0)  # nu bounds: decay rates within 1e-14 .. 1e14 of the model's scale


def _nu_bounds(disc: bool, poles: np.ndarray) -> tuple[float, float]:
    """Bounds of ``nu`` (decay rate ``exp(nu)``): fixed in discrete time, relative to the poles' scale else."""
    if disc:
        return (math.log(1e-14), math.log(60.0))
    w = float(max(np.max(np.abs(poles)), 1e-300))
    return (math.log(w) - _NU_SPAN, math.log(w) + _NU_SPAN)


def _safe_log(lam: np.ndarray) -> np.ndarray:
    out = np.zeros(lam.shape, np.complex128)
    nz = lam != 0
    out[nz] = np.log(lam[nz])
    return out


def _herm(X: np.ndarray) -> np.ndarray:
    return (X + np.conj(np.swapaxes(X, -1, -2))) / 2


def _H(X: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(X, -1, -2))


def _upper_half(lam, B, C):
    """Store every conjugate pair by its member with ``Im lam >= 0`` (the same real system).

    ``lam (..., q)``, ``B (..., q, m)``, ``C (..., p, q)``.
    """
    neg = lam.imag < 0
    return (np.where(neg, np.conj(lam), lam), np.where(neg[..., :, None], np.conj(B), B),
            np.where(neg[..., None, :], np.conj(C), C))


def _clip_poles(lam: np.ndarray, margin: float, disc: bool) -> np.ndarray:
    """Move poles that violate the margin onto it (radially / horizontally); the others unchanged."""
    if disc:
        rad = np.abs(lam)
        lim = 1.0 - margin
        return np.where(rad > lim, lam * (lim / np.where(rad > 0, rad, 1.0)), lam)
    return np.where(lam.real > -margin, -margin + 1j * lam.imag, lam)


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

    def start_theta(self, mu: np.ndarray, B: np.ndarray, lift: float = 0.0) -> np.ndarray:
        """Parameter vectors (N, size) with the poles ``mu (N, q)`` and, if optimised, ``B (N, q, m)``.

        The other blocks are zero; ``lift`` as in :meth:`nu_theta`.
        """
        N = mu.shape[0]
        th = np.zeros((N, self.size))
        nu, ang = self.nu_theta(mu, lift=lift)
        th[:, self.slices["nu"]] = nu
        th[:, self.slices["th"]] = ang
        if self.opt_b:
            th[:, self.slices["bre"]] = B.real.reshape(N, -1)
            th[:, self.slices["bim"]] = B.imag.reshape(N, -1)
        return th

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
    """Full-coordinate gradients -> half coordinates (docs/theory.md §8.5 (b))."""
    if not lay.pairs:
        return g_mu, g_B, g_C, g_M
    q = lay.q
    g_mu = g_mu[..., :q] + np.conj(g_mu[..., q:])
    g_B = g_B[..., :q, :] + np.conj(g_B[..., q:, :])
    g_C = (lay.kappa / 2) * (g_C[..., :q] + np.conj(g_C[..., q:]))
    if g_M is not None:
        g_M = (g_M[..., :q, :q] + np.conj(g_M[..., q:, q:])) / 2
    return g_mu, g_B, g_C, g_M
