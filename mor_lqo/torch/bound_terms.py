r"""The Theorem-3 output-error bound as a differentiable torch function of the reduced SSM tensors.

This is a float64 torch transcription of :func:`mor_lqo.deep.bound_taylor.taylor_propagate` together with
the hybrid-point quantities of :func:`mor_lqo.deep.bound_hybrid.hybrid_layer` and the reduced-block
terms of :meth:`mor_lqo.deep.bound.BoundEvaluator.layer_terms` that Theorem 3 uses (docs/bound.md §4.2).
Everything that depends on the original network only (its trajectory on the calibration inputs, the
spectral norms of the post-SSM maps, the LayerNorm caps) is taken from a numpy
:class:`~mor_lqo.deep.bound.BoundEvaluator`; everything that depends on the reduced blocks is computed
here from the compressed model's own SSM tensors (``log_A_real``, ``A_imag``, ``C`` and, for LQO blocks,
``B`` and ``U``/``M``), so autograd gives the gradient of the bound with respect to the parameters the
checkpoint stores. The value equals the numpy bound to rounding (``tests/test_bound_descent.py``); the
numpy evaluator stays the certificate.

Square roots and norms are evaluated as :math:`\sqrt{\max(x, 10^{-300})}` so that their gradients stay
finite where an error is exactly zero (e.g. the remainder entering the first layer); this changes values
by at most :math:`10^{-150}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..deep.bound_taylor import GELU_CURVATURE, SIGMOID_CURVATURE

__all__ = ["TheoremThreeBound", "trainable_keys"]

_TINY = 1e-300
_F64, _C128 = torch.float64, torch.complex128


def trainable_keys(family: str, sd: Mapping[str, np.ndarray], i: int) -> list[str]:
    """State-dict keys of layer ``i``'s reduced block that the descent changes (log_dt and D stay fixed)."""
    if family == "s4d":
        p = f"s4_layers.{i}.kernel."
        return [p + "log_A_real", p + "A_imag", p + "C"]
    p = f"layers.{i}.ssm."
    return [p + k for k in ("log_A_real", "A_imag", "B", "C", "U", "M") if p + k in sd]


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(torch.clamp(x, min=_TINY))


def _norm(x: torch.Tensor) -> torch.Tensor:
    return _sqrt(torch.sum(x * x, dim=-1))


def _norm_c(x: torch.Tensor) -> torch.Tensor:
    return _sqrt(torch.sum(x.real**2 + x.imag**2, dim=-1))


def _complex(x: torch.Tensor) -> torch.Tensor:
    return torch.complex(x[..., 0], x[..., 1])


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_prime(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))) + x * torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    xc = x - x.mean(dim=-1, keepdim=True)
    return xc / torch.sqrt(torch.mean(xc * xc, dim=-1, keepdim=True) + eps) * w + b


def _conv_channels(u: torch.Tensor, kern: torch.Tensor) -> torch.Tensor:
    """Per-channel causal convolution (batch, L, H) * (H, L) -> (batch, L, H) by an FFT of length ≥ 2L."""
    L = u.shape[1]
    n = 1 << int(math.ceil(math.log2(2 * L)))
    spec = torch.fft.rfft(u, n, dim=1) * torch.fft.rfft(kern.T, n, dim=0)[None]
    return torch.fft.irfft(spec, n, dim=1)[:, :L]


def _sens(kern: torch.Tensor, kern_cs: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Lemma 3: min of Young's inequality (causal Toeplitz product) and Cauchy–Schwarz, per time step."""
    L = d.shape[-1]
    i = torch.arange(L)
    lag = i[:, None] - i[None, :]
    T = torch.where(lag >= 0, kern[torch.clamp(lag, min=0)], torch.zeros((), dtype=kern.dtype))
    young = d @ T.T
    cs = kern_cs[None, :] * _sqrt(torch.cumsum(d * d, dim=-1))
    return torch.minimum(young, cs)


def _smooth(fprime, curvature, S, rho):
    quad = _norm(S * S) + 2.0 * torch.amax(torch.abs(S), dim=-1) * rho + rho * rho
    return fprime * S, torch.amax(torch.abs(fprime), dim=-1) * rho + 0.5 * curvature * quad


def _layer_norm_step(pre0, S, rho, gamma, eps):
    H = pre0.shape[-1]
    c0 = pre0 - pre0.mean(dim=-1, keepdim=True)
    var0 = torch.mean(c0 * c0, dim=-1, keepdim=True)
    s0 = torch.sqrt(var0 + eps)
    PS = S - S.mean(dim=-1, keepdim=True)
    lin = (PS - c0 * (torch.sum(c0 * PS, dim=-1, keepdim=True) / (H * s0 * s0))) / s0
    delta = _norm(PS) + rho
    smin2 = torch.clamp(_sqrt(var0[..., 0]) - delta / math.sqrt(H), min=0.0) ** 2 + eps
    gmax = float(torch.max(torch.abs(gamma)))
    rem = gmax * (rho / s0[..., 0] + 3.0 * delta * delta / (math.sqrt(H) * smin2))
    return gamma * lin, rem


def _states(lam: torch.Tensor, Bb: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Diagonal recursion :math:`x_k = \\lambda x_{k-1} + \\bar B u_k` (batch, L, P), zero initial state."""
    bu = u.to(_C128) @ Bb.T
    xk = torch.zeros((u.shape[0], lam.shape[0]), dtype=_C128)
    out = []
    for k in range(u.shape[1]):
        xk = lam * xk + bu[:, k]
        out.append(xk)
    return torch.stack(out, dim=1)


class TheoremThreeBound:
    r"""Per-sequence Theorem-3 bound of a compressed network as a torch function of its SSM tensors.

    Parameters
    ----------
    ev : BoundEvaluator
        A-posteriori evaluator of the original model on the calibration inputs.
    compressed_sd : mapping of str to ndarray
        State dict of the compressed numpy model; its tensors other than the trainable ones
        (:func:`trainable_keys`) are held fixed.

    Notes
    -----
    ``__call__(params, idx)`` takes ``params`` (a dict of float64 tensors keyed like the state dict) and
    sequence indices ``idx`` into the calibration batch and returns the bound per sequence, shape
    ``(len(idx),)``.
    """

    def __init__(self, ev, compressed_sd: Mapping[str, np.ndarray]):
        if ev.kind != "a-posteriori":
            raise ValueError("the bound descent needs an a-posteriori evaluator (calibration inputs)")
        self.ev = ev
        self.family = ev.family
        self.sd = {k: torch.as_tensor(np.asarray(v, np.float64)) for k, v in compressed_sd.items()}
        self._W = [self._post_weights(i) for i in range(ev.n_layers)]
        self._ln = [tuple(torch.as_tensor(a) for a in ev._ln_params(i)) for i in range(ev.n_layers)]

    def _post_weights(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.family == "s4d":
            W = self.sd[f"s4_layers.{i}.output_linear.0.weight"][:, :, 0]
            return W, self.sd[f"s4_layers.{i}.output_linear.0.bias"]
        return self.sd[f"layers.{i}.out.weight"], self.sd[f"layers.{i}.out.bias"]

    def _get(self, params: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
        return params[key] if key in params else self.sd[key]

    # -- reduced blocks --------------------------------------------------------------------------------
    def _s4d_kernel(self, params, i: int) -> torch.Tensor:
        p = f"s4_layers.{i}."
        dt = torch.exp(self.sd[p + "kernel.log_dt"])
        A = torch.complex(-torch.exp(self._get(params, p + "kernel.log_A_real")),
                          self._get(params, p + "kernel.A_imag"))
        dtA = dt[:, None] * A
        coef = _complex(self._get(params, p + "kernel.C")) * (torch.exp(dtA) - 1.0) / A
        lags = torch.arange(self.ev.L, dtype=_F64)
        K = 2.0 * torch.einsum("hn,hnl->hl", coef, torch.exp(dtA[:, :, None] * lags)).real
        return torch.cat([K[:, :1] + self.sd[p + "D"][:, None], K[:, 1:]], dim=1)

    def _lqo_block(self, params, i: int) -> dict[str, torch.Tensor]:
        p = f"layers.{i}.ssm."
        dt = torch.exp(self.sd[p + "log_dt"][0])
        lam_c = torch.complex(-torch.exp(self._get(params, p + "log_A_real")), self._get(params, p + "A_imag"))
        lam = torch.exp(dt * lam_c)
        Bb = ((lam - 1.0) / lam_c)[:, None] * _complex(self._get(params, p + "B"))
        out = {"lam": lam, "Bb": Bb, "C": _complex(self._get(params, p + "C")), "D": self.sd[p + "D"]}
        if p + "U" in self.sd:
            U = _complex(self._get(params, p + "U"))
            out["U"], out["M"] = U, torch.einsum("hrp,hrq->hpq", torch.conj(U), U)
        else:
            M = _complex(self._get(params, p + "M"))
            out["U"], out["M"] = None, 0.5 * (M + torch.conj(M.transpose(-1, -2)))
        L = self.ev.L
        pw = torch.exp(torch.log(lam)[None, :] * torch.arange(L, dtype=_F64)[:, None])  # (L, P): lam**l
        beta = torch.linalg.matrix_norm(pw[:, :, None] * Bb[None], ord=2)
        out["beta"], out["beta_cs"] = beta, _sqrt(torch.cumsum(beta * beta, dim=0))
        mu = _sqrt(torch.sum(torch.linalg.matrix_norm(out["M"], ord=2) ** 2))
        out["mu"] = mu
        if out["U"] is not None:
            out["mu2"] = torch.minimum(mu, torch.linalg.matrix_norm(out["M"].sum(dim=0), ord=2) * (1.0 + 1e-12))
        else:
            out["mu2"] = mu
        out["dmax"] = float(torch.max(torch.abs(out["D"]))) if out["D"].numel() else 0.0
        return out

    # -- layers ------------------------------------------------------------------------------------------
    def _s4d_layer(self, i, kern, U, S, rho):
        H = self.ev.H
        W, b = self._W[i]
        c = self.ev._post[i]
        yhat = _conv_channels(U, kern)
        Z = _gelu(yhat) @ W.T + b
        a, gate = Z[..., :H], Z[..., H:]
        pre = U + a * torch.sigmoid(gate)
        gam = torch.amax(torch.abs(kern), dim=0)
        gam_cs = torch.amax(_sqrt(torch.cumsum(kern * kern, dim=1)), dim=0)
        S1, r1 = _conv_channels(S, kern), _sens(gam, gam_cs, rho)
        S2, r2 = _smooth(_gelu_prime(yhat), GELU_CURVATURE, S1, r1)
        Sz = S2 @ W.T
        Sa, Sg = Sz[..., :H], Sz[..., H:]
        ra, rg = c["Wa"] * r2, c["Wb"] * r2
        sig = torch.sigmoid(gate)
        dsig = sig * (1.0 - sig)
        S_v = Sa * sig + a * dsig * Sg
        amax = torch.amax
        cross = 0.25 * (_norm(Sa * Sg) + amax(torch.abs(Sa), dim=-1) * rg + ra * amax(torch.abs(Sg), dim=-1) + ra * rg)
        curv = (_norm(a * Sg * Sg) + 2.0 * amax(torch.abs(a * Sg), dim=-1) * rg
                + amax(torch.abs(a), dim=-1) * rg * rg)
        r_v = (amax(sig, dim=-1) * ra + cross + amax(torch.abs(a * dsig), dim=-1) * rg
               + 0.5 * SIGMOID_CURVATURE * curv)
        return pre, S + S_v, rho + r_v

    def _lqo_layer(self, i, blk, U, S, rho):
        W, b = self._W[i]
        x0 = _states(blk["lam"], blk["Bb"], U)
        C, D, M, Uf = blk["C"], blk["D"], blk["M"], blk["U"]
        if Uf is not None:
            ux = torch.einsum("blp,hrp->blhr", x0, Uf)
            quad0 = torch.sum(ux.real**2 + ux.imag**2, dim=-1)
            X = torch.einsum("blhr,hrp->blhp", torch.conj(ux), Uf)
        else:
            X = torch.einsum("blp,hpq->blhq", torch.conj(x0), M)
            quad0 = torch.einsum("blhq,blq->blh", X, x0).real
        yhat = (x0 @ C.T).real + quad0 + U * D
        K = C[None, None] + 2.0 * X  # (b, L, H, P); ||K||_2^2 from the smaller Gram matrix
        Kh = torch.conj(K.transpose(-1, -2))
        top = torch.linalg.eigvalsh(K @ Kh if K.shape[-2] <= K.shape[-1] else Kh @ K)[..., -1]
        knorm = torch.sqrt(torch.clamp(top, min=0.0) * (1.0 + 1e-12) + 1e-300)
        pre = U + yhat @ W.T + b
        dS = _states(blk["lam"], blk["Bb"], S)
        if Uf is not None:
            w = torch.einsum("blp,hrp->blhr", dS, Uf)
            cross = torch.sum(torch.conj(ux) * w, dim=-1)
            quad = torch.sum(w.real**2 + w.imag**2, dim=-1)
        else:
            cross = torch.einsum("blp,hpq,blq->blh", torch.conj(x0), M, dS)
            quad = torch.einsum("blp,hpq,blq->blh", torch.conj(dS), M, dS).real
        S_y = (dS @ C.T).real + S * D + 2.0 * cross.real + quad
        xi = _sens(blk["beta"], blk["beta_cs"], rho)
        r_y = knorm * xi + blk["dmax"] * rho + 2.0 * blk["mu"] * _norm_c(dS) * xi + blk["mu2"] * xi * xi
        return pre, S + S_y @ W.T, rho + self.ev._post[i]["Wout"] * r_y

    def __call__(self, params: Mapping[str, torch.Tensor], idx: Sequence[int] | np.ndarray) -> torch.Tensor:
        ev = self.ev
        idx = np.asarray(idx)
        S = torch.zeros((idx.size, ev.L, ev.H), dtype=_F64)
        rho = torch.zeros((idx.size, ev.L), dtype=_F64)
        for i in range(ev.n_layers):
            st = ev._stats[i]
            U = torch.as_tensor(st["U"][idx])
            if self.family == "s4d":
                pre, S_pre, r_pre = self._s4d_layer(i, self._s4d_kernel(params, i), U, S, rho)
            else:
                pre, S_pre, r_pre = self._lqo_layer(i, self._lqo_block(params, i), U, S, rho)
            gam, bet = self._ln[i]
            E_signal = _layer_norm(pre, gam, bet, ev.eps) - torch.as_tensor(st["Y"][idx])
            S_ln, r_ln = _layer_norm_step(pre, S_pre, r_pre, gam, ev.eps)
            S, rho = E_signal + S_ln, r_ln
            cap = torch.as_tensor(st["ycap"][idx])
            over = _norm(S) + rho >= cap
            S = torch.where(over[..., None], torch.zeros((), dtype=_F64), S)
            rho = torch.where(over, cap, rho)
        Wd = self.sd["decoder.weight"]
        return _norm(S.mean(dim=1) @ Wd.T) + ev.dec_norm * rho.mean(dim=1)

