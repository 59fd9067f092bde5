r"""A-posteriori output-error bound with first-order Taylor models (docs/bound.md §4.2, Theorem 3).

Theorems 1 and 2 propagate *norms* of the error through every layer and multiply them by worst-case
sensitivities (≈ 100–300 per layer on trained models, where the actual amplification is ≈ 1). Here the
error of every layer input is carried as a **Taylor model**

.. math::

    \hat u^{(l)}_k - u^{(l)}_k = S^{(l)}_k + R^{(l)}_k, \qquad \|R^{(l)}_k\|_2 \le \rho^{(l)}_k ,

with a computed signal :math:`S^{(l)}` (batch, L, H) and a bound :math:`\rho^{(l)}` (batch, L) of the
remainder. Through the reduced layer :math:`\hat\Phi_l` at the original input (the hybrid point of
§4.1): :math:`\hat u^{(l+1)} - u^{(l+1)} = E^{(l)} + [\hat\Phi_l(u + S + R) - \hat\Phi_l(u)]`, where the
injection :math:`E^{(l)} = \hat\Phi_l(u) - \Phi_l(u)` is a computed signal and the bracket is pushed
through the layer's elementary maps one at a time: a linear map acts on S exactly and on R through its
norm; a smooth map f at the base value x gives :math:`f(x + \Delta) - f(x) = f'(x)S + [f'(x)R + r]`
with the Taylor remainder :math:`|r| \le \tfrac12 \sup|f''|\,\Delta^2`. The constants:

* GELU: :math:`\sup|\mathrm{GELU}''| = 2\varphi(0) = \sqrt{2/\pi}` (:math:`\mathrm{GELU}'' = \varphi(x)(2 - x^2)`);
* sigmoid: :math:`\sup|\sigma''| = 1/(6\sqrt3)`, and :math:`|\sigma(g + \delta) - \sigma(g)| \le |\delta|/4`
  for the GLU cross term :math:`\Delta a \odot (\sigma(g + \Delta g) - \sigma(g))`;
* LayerNorm :math:`q(c) = c/s(c)`, :math:`s(c) = (\|c\|^2/H + \epsilon)^{1/2}` on the centred vector:
  :math:`\|q'(c)\|_2 = 1/s(c)` and :math:`\|q''(c)[h, h]\| \le 6\|h\|^2/(\sqrt H\, s(c)^2)` (from
  :math:`q = c\,\phi(\|c\|^2)`, :math:`\|c\| \le \sqrt H s`), with s bounded below on the segment as in §3;
* LQO block: :math:`\Delta y = \mathrm{Re}(\hat C\Delta x) + D\Delta u + 2\mathrm{Re}(x^H\hat M_j\Delta x)
  + \Delta x^H\hat M_j\Delta x` exactly, :math:`\Delta x = d_S + d_R` with the state responses to S
  (computed) and R (norm :math:`\le \xi`, Lemma 3): the part in :math:`d_S` alone is the signal, the rest
  is at most :math:`\|K_k\|\xi + \max|D|\rho + 2\mu\|d_S\|\xi + \mu_2\xi^2` (§4.1).

Where :math:`\|S_k\| + \rho_k` exceeds the LayerNorm cap of §3 the time step is reset to
:math:`S_k = 0`, :math:`\rho_k = ` cap (still a valid model). The bound is
:math:`\|W_{dec}\,\tfrac1L\sum_k S^{(N)}_k\| + \|W_{dec}\|_2\,\tfrac1L\sum_k \rho^{(N)}_k`: it equals the
first-order (linearised) error plus second-order terms, so it is tight when the errors are small and
never uses the compressed network's own trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr

from .bound_hybrid import causal_conv_channels

__all__ = ["taylor_propagate", "GELU_CURVATURE", "SIGMOID_CURVATURE"]

GELU_CURVATURE = math.sqrt(2.0 / math.pi)  # sup |GELU''| = 2 phi(0)
SIGMOID_CURVATURE = 1.0 / (6.0 * math.sqrt(3.0))  # sup |sigma''|


def _gelu_prime(x: np.ndarray) -> np.ndarray:
    return ndtr(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _norm(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x, axis=-1)


def _smooth(fprime: np.ndarray, curvature: float, S: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Elementwise smooth map at the base point: :math:`(f'S,\ \max|f'|\rho + \tfrac12 c\,
    (\|S^2\| + 2\|S\|_\infty\rho + \rho^2))` (signal, remainder bound per time step)."""
    quad = _norm(S * S) + 2.0 * np.max(np.abs(S), axis=-1) * rho + rho * rho
    return fprime * S, np.max(np.abs(fprime), axis=-1) * rho + 0.5 * curvature * quad


def _layer_norm_step(pre0: np.ndarray, S: np.ndarray, rho: np.ndarray, gamma: np.ndarray, eps: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm at the base pre-norm values ``pre0``: (signal, remainder bound) of its change."""
    H = pre0.shape[-1]
    c0 = pre0 - np.mean(pre0, axis=-1, keepdims=True)
    var0 = np.mean(c0 * c0, axis=-1, keepdims=True)
    s0 = np.sqrt(var0 + eps)
    PS = S - np.mean(S, axis=-1, keepdims=True)
    lin = (PS - c0 * (np.sum(c0 * PS, axis=-1, keepdims=True) / (H * s0 * s0))) / s0
    delta = _norm(PS) + rho
    smin2 = np.maximum(np.sqrt(var0[..., 0]) - delta / math.sqrt(H), 0.0) ** 2 + eps
    gmax = float(np.max(np.abs(gamma)))
    rem = gmax * (rho / s0[..., 0] + 3.0 * delta * delta / (math.sqrt(H) * smin2))
    return gamma * lin, rem


def _s4d_block(ev, i: int, hy: Mapping[str, Any], t: Mapping[str, Any], kern: np.ndarray, S: np.ndarray,
               rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S4D layer without its LayerNorm: signal and remainder of the pre-norm change."""
    from .bound import _sens

    H, sd = ev.H, ev.model._sd
    W = sd[f"s4_layers.{i}.output_linear.0.weight"][:, :, 0].astype(np.float64)
    b = sd[f"s4_layers.{i}.output_linear.0.bias"].astype(np.float64)
    c = ev._post[i]
    S1, r1 = causal_conv_channels(S, kern), _sens(t["gamma"], t["gamma_cs"], rho)
    S2, r2 = _smooth(_gelu_prime(hy["yhat"]), GELU_CURVATURE, S1, r1)
    Z = _gelu(hy["yhat"]) @ W.T + b
    a0, g0 = Z[..., :H], Z[..., H:]
    Sz = S2 @ W.T
    Sa, Sg = Sz[..., :H], Sz[..., H:]
    ra, rg = c["Wa"] * r2, c["Wb"] * r2
    sig = _sigmoid(g0)
    dsig = sig * (1.0 - sig)
    S_v = Sa * sig + a0 * dsig * Sg
    cross = 0.25 * (_norm(Sa * Sg) + np.max(np.abs(Sa), axis=-1) * rg + ra * np.max(np.abs(Sg), axis=-1) + ra * rg)
    a_sg = np.abs(a0 * Sg)
    curv = _norm(a0 * Sg * Sg) + 2.0 * np.max(a_sg, axis=-1) * rg + np.max(np.abs(a0), axis=-1) * rg * rg
    r_v = (np.max(sig, axis=-1) * ra + cross + np.max(np.abs(a0 * dsig), axis=-1) * rg
           + 0.5 * SIGMOID_CURVATURE * curv)
    return S + S_v, rho + r_v


def _gelu(x: np.ndarray) -> np.ndarray:
    from .models import gelu

    return gelu(x)


def _states(lam: np.ndarray, Bb: np.ndarray, u: np.ndarray) -> np.ndarray:
    bu = u.astype(np.complex128) @ Bb.T
    x = np.empty_like(bu)
    xk = np.zeros((u.shape[0], lam.size), np.complex128)
    for k in range(u.shape[1]):
        xk = lam * xk + bu[:, k]
        x[:, k] = xk
    return x


def _lqo_block(ev, i: int, hy: Mapping[str, Any], t: Mapping[str, Any], red: Mapping[str, Any], S: np.ndarray,
               rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LQO layer without its LayerNorm: signal and remainder of the pre-norm change."""
    from .bound import _sens
    from .bound_hybrid import _mu2

    lam = np.asarray(red["Lambda_bar"], np.complex128)
    Bb = np.asarray(red["B_bar"], np.complex128)
    C = np.asarray(red["C"], np.complex128)
    D = np.asarray(red["D"], np.float64)
    M = np.asarray(red["M"], np.complex128)
    Uf = None if red.get("U") is None else np.asarray(red["U"], np.complex128)
    x0, dS = hy["states"], _states(lam, Bb, S)
    if Uf is not None:
        v0 = np.einsum("blp,hrp->blhr", x0, Uf)
        w = np.einsum("blp,hrp->blhr", dS, Uf)
        cross = np.sum(np.conj(v0) * w, axis=-1)
        quad = np.sum(w.real**2 + w.imag**2, axis=-1)
    else:
        cross = np.einsum("blp,hpq,blq->blh", np.conj(x0), M, dS)
        quad = np.einsum("blp,hpq,blq->blh", np.conj(dS), M, dS).real
    S_y = (dS @ C.T).real + S * D + 2.0 * cross.real + quad
    xi = _sens(t["beta"], t["beta_cs"], rho)
    r_y = (hy["knorm"] * xi + hy["dmax"] * rho + 2.0 * t["mu"] * _norm(dS) * xi
           + _mu2(red, t["mu"]) * xi * xi)
    W = ev.model._sd[f"layers.{i}.out.weight"].astype(np.float64)
    return S + S_y @ W.T, rho + ev._post[i]["Wout"] * r_y


def taylor_propagate(ev, terms: Sequence[Mapping[str, Any]], hybrid: Sequence[Mapping[str, Any]],
                     reduced: Sequence[Mapping[str, Any]], kernels: Sequence[np.ndarray | None]) -> np.ndarray:
    r"""Per-sample bound of Theorem 3 (module docstring).

    Parameters
    ----------
    ev : BoundEvaluator
        A-posteriori evaluator of the original model.
    terms, hybrid : sequences of dict
        Per layer: :meth:`BoundEvaluator.layer_terms` and :func:`~mor_lqo.deep.bound_hybrid.hybrid_layer`
        (with its base-point values ``"yhat"``/``"states"``, ``"pre"``, ``"E_signal"``).
    reduced : sequence of mapping
        Reduced SSM parameters per layer.
    kernels : sequence of ndarray or None
        S4D: reduced kernels (H, L) with D at lag 0.

    Returns
    -------
    ndarray, shape (batch,)
    """
    nb = ev._stats[0]["xstd"].shape[0]
    S = np.zeros((nb, ev.L, ev.H))
    rho = np.zeros((nb, ev.L))
    for i, (t, hy, red, kern) in enumerate(zip(terms, hybrid, reduced, kernels)):
        if ev.family == "s4d":
            S_pre, r_pre = _s4d_block(ev, i, hy, t, kern, S, rho)
        else:
            S_pre, r_pre = _lqo_block(ev, i, hy, t, red, S, rho)
        gam, _ = ev._ln_params(i)
        S_ln, r_ln = _layer_norm_step(hy["pre"], S_pre, r_pre, gam, ev.eps)
        S, rho = hy["E_signal"] + S_ln, r_ln
        cap = ev._stats[i]["ycap"]
        over = _norm(S) + rho >= cap
        S = np.where(over[..., None], 0.0, S)
        rho = np.where(over, cap, rho)
    W = ev.model._sd["decoder.weight"].astype(np.float64)
    return np.linalg.norm(np.mean(S, axis=1) @ W.T, axis=-1) + ev.dec_norm * np.mean(rho, axis=1)
