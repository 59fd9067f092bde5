r"""A-posteriori output-error bound through the *hybrid* trajectory (docs/bound.md §4.1).

The bound of :mod:`mor_lqo.deep.bound` (Theorem 1) injects every block's reduction error through
Lemma 1/2 — Cauchy–Schwarz against the block's finite-horizon h2 error — and then multiplies it by
worst-case Lipschitz constants of the *whole* layer. Here the injection is computed exactly instead:
for layer l with original input :math:`u = u^{(l)}` (from the original network's trajectory) and the
layer maps :math:`\Phi_l` (original block) and :math:`\hat\Phi_l` (reduced block, same post-SSM
maps),

.. math::

    \|\hat u^{(l+1)}_k - u^{(l+1)}_k\|
    \le \underbrace{\|\hat\Phi_l(u)_k - \Phi_l(u)_k\|}_{E^{(l)}_k \text{ (computed exactly)}}
      + \underbrace{\|\hat\Phi_l(\hat u)_k - \hat\Phi_l(u)_k\|}_{\text{sensitivity of } \hat\Phi_l
        \text{ at } u,\ \|\hat u_j - u_j\| \le \delta^{(l)}_j} .

:math:`\hat\Phi_l(u)` is the reduced layer applied to the original layer input (the "hybrid" point);
the sensitivity term uses Lemma 3 for the reduced block and the Lipschitz constants of §3 taken at
the hybrid point (GLU gate values, LayerNorm spread and cap of :math:`\hat\Phi_l(u)`). For the first
layer :math:`\delta^{(0)} = 0`, so :math:`\delta^{(1)} = E^{(0)}` is the exact error of the first
layer. LQO blocks get one more bound of their sensitivity, from the exact expansion of the output in
the state difference :math:`d_k = \hat x(\hat u)_k - \hat x(u)_k` (:math:`\|d_k\| \le \xi_k`):

.. math::

    \Delta y_{k} = \mathrm{Re}(K_k d_k) + D\,\Delta u_k + [d_k^H \hat M_j d_k]_j, \qquad
    K_k = \hat C + 2 X_k,\ (X_k)_{j,:} = \hat x(u)_k^H \hat M_j,

so :math:`\|\Delta y_k\| \le \|K_k\|_2 \xi_k + \max_j |D_j| \delta_k + \mu_2 \xi_k^2` with
:math:`\mu_2 = \min(\mu, \|\sum_j \hat M_j\|_2)` (the latter for PSD :math:`\hat M_j = \hat U_j^H \hat U_j`:
the entries :math:`d^H \hat M_j d \ge 0` have ℓ2 norm at most their sum); the smaller of this and
Lemma 3's bound is used. Every step is an inequality, so the result is a bound; it never uses the
compressed network's own trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .models import gelu, layer_norm

__all__ = ["hybrid_layer", "hybrid_propagate", "causal_conv_channels"]

_CHUNK = 16  # sequences per chunk for the (batch, L, H, P) LQO tensors


def causal_conv_channels(u: np.ndarray, kern: np.ndarray) -> np.ndarray:
    r"""Per-channel causal convolution :math:`y_{b,k,h} = \sum_{i\le k} g_{h}(i)\, u_{b,k-i,h}`.

    Parameters
    ----------
    u : ndarray, shape (batch, L, H)
    kern : ndarray, shape (H, L)

    Returns
    -------
    ndarray, shape (batch, L, H)
    """
    L = u.shape[1]
    n = 1 << int(math.ceil(math.log2(2 * L)))
    out = np.fft.irfft(np.fft.rfft(u, n, axis=1) * np.fft.rfft(kern.T, n, axis=0)[None], n, axis=1)
    return out[:, :L]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _lqo_hybrid_block(red: Mapping[str, Any], U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Reduced LQO block on the original input: output (batch, L, H), :math:`\|K_k\|_2` (batch, L) and the
    states (batch, L, P)."""
    lam = np.asarray(red["Lambda_bar"], np.complex128)
    Bb = np.asarray(red["B_bar"], np.complex128)
    C = np.asarray(red["C"], np.complex128)
    D = np.asarray(red["D"], np.float64)
    M = np.asarray(red["M"], np.complex128)
    Uf = None if red.get("U") is None else np.asarray(red["U"], np.complex128)  # (H, R, P): M_j = U_j^H U_j
    bsz, L, H = U.shape
    y = np.empty((bsz, L, H))
    knorm = np.empty((bsz, L))
    states = np.empty((bsz, L, lam.size), np.complex128)
    for s in range(0, bsz, _CHUNK):
        u = U[s : s + _CHUNK]
        bu = u.astype(np.complex128) @ Bb.T  # (b, L, P)
        x = np.empty_like(bu)
        xk = np.zeros((u.shape[0], lam.size), np.complex128)
        for k in range(L):
            xk = lam * xk + bu[:, k]
            x[:, k] = xk
        states[s : s + _CHUNK] = x
        if Uf is not None:
            ux = np.einsum("blp,hrp->blhr", x, Uf)
            quad = np.sum(ux.real**2 + ux.imag**2, axis=-1)
            X = np.einsum("blhr,hrp->blhp", np.conj(ux), Uf)  # rows x^H M_j
        else:
            X = np.einsum("blp,hpq->blhq", np.conj(x), M)
            quad = np.einsum("blhq,blq->blh", X, x).real
        y[s : s + _CHUNK] = (x @ C.T).real + quad + u * D
        K = C[None, None] + 2.0 * X  # (b, L, H, P)
        gram = K @ np.conj(np.swapaxes(K, -1, -2))  # (b, L, H, H) Hermitian PSD
        ev = np.linalg.eigvalsh(gram)[..., -1]
        # eigvalsh is backward stable: pad by a relative rounding margin so the value stays an upper bound
        knorm[s : s + _CHUNK] = np.sqrt(np.maximum(ev, 0.0) * (1.0 + 1e-12) + 1e-300)
    return y, knorm, states


def _mu2(red: Mapping[str, Any], mu: float) -> float:
    """``min(mu, ||sum_j M_j||_2)`` when the M_j are PSD (stored as U_j^H U_j), else ``mu``."""
    if red.get("U") is None or np.size(red["M"]) == 0:
        return mu
    return min(mu, float(np.linalg.norm(np.sum(np.asarray(red["M"]), axis=0), 2)) * (1.0 + 1e-12))


def hybrid_layer(ev, i: int, red: Mapping[str, Any], kernel: np.ndarray | None = None) -> dict[str, np.ndarray]:
    r"""Quantities of layer ``i`` at the hybrid point :math:`\hat\Phi_i(u^{(i)})`.

    Parameters
    ----------
    ev : BoundEvaluator
        A-posteriori evaluator of the original model (its trajectory ``ev._stats[i]["U"]``, ``["Y"]``).
    i : int
        Layer index.
    red : mapping
        Reduced SSM parameters of layer ``i`` (format of ``model.ssm_params``).
    kernel : ndarray, shape (H, L), optional
        S4D: the reduced kernel including D at lag 0 (computed from ``red`` when omitted).

    Returns
    -------
    dict
        ``"E"`` (batch, L): :math:`\|\hat\Phi_i(u)_k - u^{(i+1)}_k\|`; ``"xstd"``: spread of the hybrid
        pre-norm activations; ``"ycap"``: :math:`\|\hat\Phi_i(u)_k - \beta\| + \max|\gamma|\sqrt H`;
        S4D ``"glu"``: the GLU gate term at the hybrid point; LQO ``"knorm"`` (:math:`\|K_k\|_2`),
        ``"dmax"`` and ``"states"`` (batch, L, P). Base-point values for the Taylor models of
        :mod:`~mor_lqo.deep.bound_taylor`: ``"E_signal"`` (:math:`\hat\Phi_i(u) - u^{(i+1)}`), ``"yhat"``
        (the reduced block's output) and ``"pre"`` (the pre-norm values).
    """
    model, H = ev.model, ev.H
    st = ev._stats[i]
    U, Y = st["U"], st["Y"]
    gam, bet = ev._ln_params(i)
    out: dict[str, Any] = {}
    sd = model._sd
    if ev.family == "s4d":
        yhat = causal_conv_channels(U, kernel)
        W = sd[f"s4_layers.{i}.output_linear.0.weight"][:, :, 0].astype(np.float64)
        b = sd[f"s4_layers.{i}.output_linear.0.bias"].astype(np.float64)
        Z = gelu(yhat) @ W.T + b
        a, gate = Z[..., :H], Z[..., H:]
        pre = U + a * _sigmoid(gate)
        rn2 = np.sum(W[H:] ** 2, axis=1)
        out["glu"] = np.minimum(np.max(np.abs(a), axis=-1) * ev._post[i]["Wb"], np.sqrt((a * a) @ rn2))
    else:
        yhat, out["knorm"], out["states"] = _lqo_hybrid_block(red, U)
        W = sd[f"layers.{i}.out.weight"].astype(np.float64)
        b = sd[f"layers.{i}.out.bias"].astype(np.float64)
        pre = U + yhat @ W.T + b
        out["dmax"] = float(np.max(np.abs(red["D"]))) if np.size(red["D"]) else 0.0
    h = layer_norm(pre, gam, bet, ev.eps)
    out["E_signal"] = h - Y
    out["E"] = np.linalg.norm(out["E_signal"], axis=-1)
    out["yhat"], out["pre"] = yhat, pre
    out["xstd"] = np.std(pre, axis=-1)
    out["ycap"] = np.linalg.norm(h - bet, axis=-1) + float(np.max(np.abs(gam))) * math.sqrt(H)
    return out


def hybrid_propagate(ev, terms: Sequence[Mapping[str, Any]], hybrid: Sequence[Mapping[str, Any]],
                     reduced: Sequence[Mapping[str, Any]]) -> np.ndarray:
    r"""Per-sample bound of Theorem 2 (docs/bound.md §4.1).

    .. math::

        \delta^{(l+1)}_k = \min\big(E^{(l)}_k + \mathrm{LN}_k(\rho_k),\
                                    \|u^{(l+1)}_k - \beta\| + \max|\gamma|\sqrt H\big),
        \qquad \rho_k = \delta^{(l)}_k + K^{(l)}_k \sigma_k,

    with :math:`\sigma_k` the reduced block's sensitivity (Lemma 3; for LQO blocks also the state
    expansion of the module docstring) and the LayerNorm step and constants at the hybrid point.

    Returns
    -------
    ndarray, shape (batch,)
        :math:`\|W_{dec}\|_2 \frac1L \sum_k \delta^{(N)}_k`.
    """
    from .bound import _ln_step, _sens

    nb = ev._stats[0]["xstd"].shape[0]
    delta = np.zeros((nb, ev.L))
    for i, (t, hy, st, c) in enumerate(zip(terms, hybrid, ev._stats, ev._post)):
        if ev.family == "s4d":
            z = c["gelu"] * _sens(t["gamma"], t["gamma_cs"], delta)
            v = c["Wa"] * z + c["sigmoid"] * hy["glu"] * z
        else:
            xi = _sens(t["beta"], t["beta_cs"], delta)
            lemma3 = _sens(t["gamma"], t["gamma_cs"], delta) + t["mu"] * xi * (2.0 * t["xhat"] + xi)
            expansion = hy["knorm"] * xi + hy["dmax"] * delta + _mu2(reduced[i], t["mu"]) * xi * xi
            v = c["Wout"] * np.minimum(lemma3, expansion)
        rho = delta + v
        sens = _ln_step(rho, hy["xstd"], hy["ycap"], c["gamma_max"], ev.H, ev.eps)
        delta = np.minimum(hy["E"] + sens, st["ycap"])
    return ev.dec_norm * np.mean(delta, axis=1)
