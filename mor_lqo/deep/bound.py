r"""Rigorous upper bound on the output error of a compressed Deep SSM (docs/bound.md).

Given an original reference model (:class:`~mor_lqo.deep.models.S4DModel` or
:class:`~mor_lqo.deep.models.LQOModel`) and a compressed copy that differs **only in its SSM blocks**,
:func:`output_error_bound` bounds the Euclidean norm of the logit difference

.. math::

    \|f(x) - \hat f(x)\|_2 \le \beta(x)

either *a posteriori* for every sequence of a batch (``inputs``; the bound uses the original model's
trajectory on that input, never the compressed model's) or *a priori* for every input of ℓ2 norm at
most ``input_norm`` (``length`` time steps). The bound is built from

* the **finite-horizon h2 errors** of every SSM block (per channel for S4D, linear and quadratic parts
  for the LQO blocks, docs/theory.md §2.1, §10.2), which enter through Cauchy–Schwarz;
* the **input sensitivity** of the reduced blocks (ℓ1 norms of their Markov parameters; for LQO blocks
  the local Lipschitz constant of the quadratic readout);
* **Lipschitz constants** of the rest of each layer: GELU (:data:`GELU_LIPSCHITZ`, computed in closed
  form), the 1×1 convolution / output linear map (spectral norms, computed), the GLU gate (sigmoid
  slope 1/4 and the original gate value :math:`|a|`), the residual path, LayerNorm (local constant
  :math:`\max|\gamma| / \sqrt{\sigma_{\min}^2 + \epsilon}` with a rigorous lower bound of the standard
  deviation along the segment between the two activations), mean pooling and the decoder.

Per time step, a bound :math:`\delta^{(l)}_k \ge \|u^{(l)}_k - \hat u^{(l)}_k\|_2` of the layer-input
difference is propagated through the layers, so an error made in a shallow layer is multiplied by the
factors of all later layers (the layer weights reported in :class:`BoundResult`).

Everything here is numpy only (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import LayoutError, ShapeError
from .bound_result import BoundResult, LayerBound
from .models import LN_EPS, LQOModel, S4DModel, gelu

__all__ = [
    "GELU_LIPSCHITZ",
    "SIGMOID_LIPSCHITZ",
    "BoundResult",
    "LayerBound",
    "BoundEvaluator",
    "output_error_bound",
    "measured_output_error",
    "layer_h2_errors",
    "lqo_block_h2_errors",
    "lqo_block_h2_error_totals",
    "s4d_kernels",
    "lqo_markov",
]

GELU_LIPSCHITZ: float = 0.5 * (1.0 + math.erf(1.0)) + math.exp(-1.0) / math.sqrt(math.pi)
r"""Computed: :math:`\sup_x |\mathrm{GELU}'(x)| = \Phi(\sqrt2) + \sqrt2\,\varphi(\sqrt2)
= \tfrac12(1 + \mathrm{erf}\,1) + 1/(e\sqrt\pi) \approx 1.12897` (attained at :math:`x = \sqrt2`;
the infimum is :math:`1 - 1.12897`, at :math:`-\sqrt2`)."""

SIGMOID_LIPSCHITZ: float = 0.25
r"""Computed: :math:`\sup_x \sigma'(x) = \sigma'(0) = 1/4`."""

_TOEPLITZ_MAX = 2048  # causal convolutions of longer sequences use an FFT (with a rounding margin)
_CHUNK = 256  # samples per chunk when computing trajectory statistics


# ---------------------------------------------------------------------------------------------
# block kernels and h2 errors
# ---------------------------------------------------------------------------------------------
def _powers(lam: np.ndarray, L: int) -> np.ndarray:
    """``lam[..., None] ** arange(L)`` (0**0 = 1; used for padded inert modes too)."""
    return np.power(np.asarray(lam, np.complex128)[..., None], np.arange(L))


def s4d_kernels(params: Mapping[str, Any], L: int) -> np.ndarray:
    r"""Real convolution kernels of an S4D layer including D at lag 0, shape (H, L).

    :math:`g_h(l) = \kappa\,\mathrm{Re}\sum_n C_{hn}\bar B_{hn}\bar\Lambda_{hn}^l + D_h [l = 0]`.

    Parameters
    ----------
    params : mapping
        ``Lambda_bar`` (H, n), ``B_bar`` (H, n), ``C`` (H, n), ``D`` (H,), ``kappa`` — the format of
        :meth:`S4DModel.ssm_params` (padded inert modes with C = 0 are allowed).
    L : int
        Number of lags.
    """
    lam = np.asarray(params["Lambda_bar"], np.complex128)
    coef = np.asarray(params["C"], np.complex128) * np.asarray(params["B_bar"], np.complex128)
    H = lam.shape[0]
    K = np.empty((H, L))
    for l0 in range(0, L, 1024):
        ls = np.arange(l0, min(L, l0 + 1024))
        V = np.power(lam[:, :, None], ls)
        K[:, l0 : l0 + ls.size] = float(params["kappa"]) * np.einsum("hn,hnl->hl", coef, V).real
    K[:, 0] += np.asarray(params["D"], np.float64)
    return K


def lqo_markov(params: Mapping[str, Any], L: int) -> np.ndarray:
    r"""Real linear Markov parameters of an LQO block including D at lag 0, shape (L, H, H).

    :math:`h_1(l) = \kappa\,\mathrm{Re}(C\,\bar\Lambda^l \bar B) + D[l = 0]` (``D`` of shape (H,) is
    the diagonal feed-through of the LQO layout, (p, m) a full one).
    """
    lam = np.asarray(params["Lambda_bar"], np.complex128)
    B = np.asarray(params["B_bar"], np.complex128)
    C = np.asarray(params["C"], np.complex128)
    pw = _powers(lam, L)  # (P, L)
    h = float(params["kappa"]) * np.einsum("jp,pl,pm->ljm", C, pw, B, optimize=True).real
    D = np.asarray(params["D"], np.float64)
    h[0] += np.diag(D) if D.ndim == 1 else D
    return h


def _cauchy_h(la: np.ndarray, lb: np.ndarray, L: int) -> np.ndarray:
    r"""Finite-horizon Cauchy matrix :math:`\sum_{t<L} (\lambda_a \bar\lambda_b)^t` (stable near 1)."""
    from ..kernels.cauchy import cauchy_matrix

    return np.asarray(cauchy_matrix(la, lb, True, L))


def _conj_closed(params: Mapping[str, Any]):
    """Conjugation-closed (Λ_f, B_f, M_f) of an LQO half-mode block (docs/theory.md §8.3)."""
    lam = np.asarray(params["Lambda_bar"], np.complex128)
    B = np.asarray(params["B_bar"], np.complex128)
    n = lam.size
    M = params.get("M")
    M = np.zeros((np.shape(params["C"])[0], n, n), np.complex128) if M is None else np.asarray(M, np.complex128)
    lf = np.concatenate([lam, lam.conj()])
    Bf = np.concatenate([B, B.conj()])
    Mf = np.zeros((M.shape[0], 2 * n, 2 * n), np.complex128)
    Mf[:, :n, :n] = 0.5 * M
    Mf[:, n:, n:] = 0.5 * M.conj()
    return lf, Bf, Mf


def _quad_trace(P12: np.ndarray, M1: np.ndarray, M2: np.ndarray, P21: np.ndarray | None = None) -> complex:
    r""":math:`\sum_j \mathrm{tr}(P_{12} M_{2,j} P_{21} M_{1,j})` with :math:`P_{21} = P_{12}^H` by default."""
    if P21 is None:
        P21 = P12.conj().T
    # tr(P12 M2 P21 M1) = sum_{ab} (P12 M2 P21)_{ab} (M1)_{ba}
    T = np.einsum("ab,jbc,cd->jad", P12, M2, P21, optimize=True)
    return complex(np.einsum("jad,jda->", T, M1, optimize=True))


def lqo_block_h2_errors(full: Mapping[str, Any], red: Mapping[str, Any], L: int) -> tuple[np.ndarray, float]:
    r"""Finite-horizon h2 errors of an LQO block's real input–output map.

    Returns
    -------
    lin_prefix : ndarray, shape (L,)
        :math:`\|h_1 - \hat h_1\|_{h2,k+1}` for k = 0..L-1 (Frobenius norm over outputs, inputs and the
        lags 0..k; direct kernel differences, so exactly 0 for identical blocks).
    quad : float
        :math:`\|h_2 - \hat h_2\|_{h2,L}` of the real quadratic kernels over the lags ``[0, L)^2``
        (:math:`\sum_j \mathrm{tr}(P_L M^e_j P_L M^e_j)` of the stacked conjugation-closed error
        system, docs/theory.md §2.1, §8.3; exactly 0 for identical blocks).
    """
    h = lqo_markov(full, L)
    hh = lqo_markov(red, L)
    lin = np.sqrt(np.cumsum(np.sum((h - hh) ** 2, axis=(1, 2))))
    if _same_block(full, red):
        return np.zeros(L), 0.0
    return lin, _quad_error(full, red, L)


def _conj_closed_linear(params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""(λ_f, B_f, C_f) with :math:`\kappa\,\mathrm{Re}(Car\Lambda^lar B) = C_f \Lambda_f^l B_f`."""
    lam = np.asarray(params["Lambda_bar"], np.complex128)
    B = np.asarray(params["B_bar"], np.complex128)
    C = 0.5 * float(params["kappa"]) * np.asarray(params["C"], np.complex128)
    return np.concatenate([lam, lam.conj()]), np.concatenate([B, B.conj()]), np.hstack([C, C.conj()])


def _feedthrough(params: Mapping[str, Any], p: int, m: int) -> np.ndarray:
    D = np.asarray(params["D"], np.float64)
    return np.diag(D) if D.ndim == 1 else D.reshape(p, m)


def lqo_block_h2_error_totals(full: Mapping[str, Any], red: Mapping[str, Any], L: int) -> tuple[float, float]:
    r"""The totals :math:`\|h_1 - \hat h_1\|_{h2,L}` and :math:`\|h_2 - \hat h_2\|_{h2,L}` of
    :func:`lqo_block_h2_errors` without forming the (L, H, H) Markov parameters.

    The linear part is :math:`\mathrm{tr}(C_e P_L C_e^H)` plus the lag-0 feed-through terms, with the
    conjugation-closed error realisation :math:`(\Lambda_e, B_e, C_e)` (full and reduced stacked, the
    reduced readout negated) and its finite-horizon Gramian
    :math:`(P_L)_{ab} = (B_e B_e^H)_{ab}\sum_{t<L}(\lambda_aar\lambda_b)^t`: O(n²(p + m)) work with
    n = 2(P + P̂) instead of O(L p m n). Where that difference of terms cancels below 1e-5 of their size
    (relative errors below ~3e-3), the direct kernel difference is used, so the result is exact to rounding
    at every error level.
    """
    if _same_block(full, red):
        return 0.0, 0.0
    l1, B1, C1 = _conj_closed_linear(full)
    l2, B2, C2 = _conj_closed_linear(red)
    lam, B, C = np.concatenate([l1, l2]), np.vstack([B1, B2]), np.hstack([C1, -C2])
    terms = (B @ B.conj().T) * _cauchy_h(lam, lam, L) * (C.conj().T @ C).T
    e0 = np.real(C @ B)  # lag 0 of the error kernel without the feed-through
    p, m = e0.shape
    dD = _feedthrough(full, p, m) - _feedthrough(red, p, m)
    e2 = float(np.real(np.sum(terms))) + 2.0 * float(np.sum(e0 * dD)) + float(np.sum(dD * dD))
    if not e2 > 1e-10 * float(np.sum(np.abs(terms))):
        lin, quad = lqo_block_h2_errors(full, red, L)
        return float(lin[-1]), quad
    return math.sqrt(e2), _quad_error(full, red, L)


def _quad_error(full: Mapping[str, Any], red: Mapping[str, Any], L: int) -> float:
    r""":math:`\|h_2 - \hat h_2\|_{h2,L}` of two LQO blocks (0 without quadratic outputs)."""
    if full.get("M") is None and red.get("M") is None:
        return 0.0
    l1, B1, M1 = _conj_closed(full)
    l2, B2, M2 = _conj_closed(red)
    P11 = (B1 @ B1.conj().T) * _cauchy_h(l1, l1, L)
    P12 = (B1 @ B2.conj().T) * _cauchy_h(l1, l2, L)
    P22 = (B2 @ B2.conj().T) * _cauchy_h(l2, l2, L)
    t11 = _quad_trace(P11, M1, M1, P11).real
    t22 = _quad_trace(P22, M2, M2, P22).real
    t12 = _quad_trace(P12, M1, M2).real  # tr(P12 M2 P21 M1)
    e2 = t11 + t22 - 2.0 * t12
    # rounding floor of the difference (relative to the terms), reported as the error if larger
    floor = 64 * np.finfo(float).eps * (abs(t11) + abs(t22) + 2 * abs(t12))
    return float(math.sqrt(max(e2, 0.0) + floor))


def _same_block(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("Lambda_bar", "B_bar", "C", "D", "M")
    for k in keys:
        if k not in a and k not in b:
            continue
        x, y = np.asarray(a.get(k)), np.asarray(b.get(k))
        if x.shape != y.shape or not np.array_equal(x, y):
            return False
    return float(a["kappa"]) == float(b["kappa"])


def layer_h2_errors(model, compressed, length: int) -> list[dict[str, Any]]:
    r"""Finite-horizon (``length`` lags) h2 errors of every SSM block.

    Returns
    -------
    list of dict
        S4D: ``{"h2_error": sqrt(sum_h eps_h^2), "channel_errors": eps (H,)}``;
        LQO: ``{"h2_error": sqrt(lin^2 + quad^2), "linear": lin, "quadratic": quad}``.
    """
    _check_pair(model, compressed)
    L = _check_length(length)
    out = []
    for i in range(model.n_layers):
        if isinstance(model, S4DModel):
            e = np.sqrt(np.sum((model.kernel(i, L) - compressed.kernel(i, L)) ** 2, axis=1))
            out.append({"h2_error": float(np.sqrt(np.sum(e**2))), "channel_errors": e})
        else:
            lin, quad = lqo_block_h2_errors(model.ssm_params(i), compressed.ssm_params(i), L)
            out.append({"h2_error": float(math.hypot(lin[-1], quad)), "linear": float(lin[-1]), "quadratic": quad})
    return out


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _check_length(L) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ShapeError(f"length must be a positive integer, got {L!r}")
    return int(L)


def _family(model) -> str:
    if isinstance(model, S4DModel):
        return "s4d"
    if isinstance(model, LQOModel):
        return "lqo"
    raise TypeError(f"expected an S4DModel or LQOModel, got {type(model).__name__}")


def _check_pair(model, compressed) -> None:
    fam = _family(model)
    if _family(compressed) != fam:
        raise LayoutError("the original and compressed models are of different families")
    if compressed.n_layers != model.n_layers or compressed.d_model != model.d_model:
        raise LayoutError("the compressed model has a different number of layers or width")
    sd, sc = model._sd, compressed._sd
    ssm_o, ssm_c = set(model.ssm_keys()), set(compressed.ssm_keys())
    rest_o, rest_c = set(sd) - ssm_o, set(sc) - ssm_c
    if rest_o != rest_c:
        raise LayoutError(f"the models differ in their non-SSM keys: {sorted(rest_o ^ rest_c)[:6]}")
    for k in rest_o:
        if sd[k].shape != sc[k].shape or not np.array_equal(sd[k], sc[k]):
            raise LayoutError(
                f"the compressed model differs from the original outside the SSM blocks ({k!r}); "
                "the bound covers SSM compression only"
            )


def _reduced_kernel(red: Mapping[str, Any], L: int) -> np.ndarray:
    """S4D kernel (H, L) of reduced parameters, D included at lag 0 (a given ``"kernel"`` is used as is)."""
    return red["kernel"] if "kernel" in red else s4d_kernels(red, L)


def _causal_conv(kern: np.ndarray, d: np.ndarray) -> np.ndarray:
    r"""``out[b, k] = sum_{i<=k} kern[i] d[b, k-i]`` for non-negative kern and d (upper bound under FFT)."""
    L = d.shape[-1]
    if L <= _TOEPLITZ_MAX:
        i = np.arange(L)
        lag = i[:, None] - i[None, :]
        T = np.where(lag >= 0, kern[np.clip(lag, 0, None)], 0.0)  # T[k, j] = kern[k - j]
        return d @ T.T
    n = 1 << int(math.ceil(math.log2(2 * L)))
    out = np.fft.irfft(np.fft.rfft(d, n) * np.fft.rfft(kern, n), n)[..., :L]
    # FFT rounding: add a margin so the result stays an upper bound of the exact non-negative sum
    margin = 1e-12 * float(np.sum(kern)) * np.max(d, axis=-1, keepdims=True)
    return np.maximum(out, 0.0) + margin


def _sens(kern: np.ndarray, kern_cs: np.ndarray, d: np.ndarray) -> np.ndarray:
    r"""Bound of :math:`\|\sum_{i\le k} G_i \Delta_{k-i}\|` from per-step bounds ``d`` of :math:`\|\Delta_j\|`.

    The minimum of Young's inequality :math:`\sum_i \|G_i\| d_{k-i}` (``kern``) and Cauchy–Schwarz
    :math:`(\text{kern\_cs})_k \, \|d_{0..k}\|_2` (``kern_cs[k]`` bounds the ℓ2 gain of the lags 0..k).
    """
    young = _causal_conv(kern, d)
    cs = kern_cs[None, :] * np.sqrt(np.cumsum(d * d, axis=-1))
    return np.minimum(young, cs)


def _ln_step(rho, xstd, ycap, gmax, H, eps):
    r"""LayerNorm step of §3: :math:`\min(\max|\gamma|\,\rho\,\min(1/\sqrt{\max(\sigma - \rho/\sqrt H, 0)^2
    + \epsilon},\ 2/\sqrt{\sigma^2 + \epsilon}), \text{cap})` (segment bound; normalisation bound)."""
    smin = np.sqrt(np.maximum(xstd - rho / math.sqrt(H), 0.0) ** 2 + eps)
    factor = np.minimum(1.0 / smin, 2.0 / np.sqrt(xstd * xstd + eps))
    return np.minimum(gmax * rho * factor, ycap)


# ---------------------------------------------------------------------------------------------
# the evaluator
# ---------------------------------------------------------------------------------------------
class BoundEvaluator:
    r"""Precomputes everything of the bound that depends on the original model only.

    Parameters
    ----------
    model : S4DModel or LQOModel
        The original network.
    inputs : array_like, optional
        A batch of sequences (batch, L[, d_in]): a-posteriori bound per sequence.
    input_norm : float, optional
        A-priori bound for every input with :math:`\|x\|_2 \le` ``input_norm`` (needs ``length``).
    length : int, optional
        Sequence length for the a-priori bound (ignored with ``inputs``).

    Notes
    -----
    :meth:`evaluate` takes the reduced SSM parameters of every layer (the format of
    ``model.ssm_params(i)``) and returns a :class:`BoundResult`; :func:`mor_lqo.deep.compress.compress`
    uses it to compare candidate reduced orders without building the compressed network.
    """

    def __init__(self, model, inputs=None, input_norm: float | None = None, length: int | None = None):
        self.family = _family(model)
        self.model = model
        if (inputs is None) == (input_norm is None):
            raise ValueError("give exactly one of inputs (a-posteriori bound) or input_norm (a-priori bound)")
        sd = model._sd
        self.H = model.d_model
        self.eps = LN_EPS
        self.n_layers = model.n_layers
        self.dec_norm = float(np.linalg.norm(sd["decoder.weight"].astype(np.float64), 2))
        self._post = [self._post_constants(i) for i in range(self.n_layers)]
        if inputs is not None:
            x = model._prepare_input(inputs)
            self.kind = "a-posteriori"
            self.L = int(x.shape[1])
            self.inputs = x
            self._stats = self._trajectory_stats(x)
        else:
            nu = float(input_norm)
            if not math.isfinite(nu) or nu < 0:
                raise ValueError(f"input_norm must be a finite non-negative number, got {input_norm!r}")
            if length is None:
                raise ValueError("the a-priori bound (input_norm) needs the sequence length: pass length=L")
            self.kind = "a-priori"
            self.L = _check_length(length)
            self.inputs = None
            self.input_norm = nu
            self._stats = self._apriori_stats(nu)
        self._full = [model.ssm_params(i) for i in range(self.n_layers)]
        if self.family == "s4d":
            self._gfull = [model.kernel(i, self.L) for i in range(self.n_layers)]
            for i, g in enumerate(self._gfull):
                g[:, 0] += self._full[i]["D"]

    # -- constants -------------------------------------------------------------------------------
    def _post_constants(self, i: int) -> dict[str, float]:
        sd, H = self.model._sd, self.H
        if self.family == "s4d":
            W = sd[f"s4_layers.{i}.output_linear.0.weight"][:, :, 0].astype(np.float64)
            g = sd[f"norms.{i}.weight"].astype(np.float64)
            return {
                "Wa": float(np.linalg.norm(W[:H], 2)),
                "Wb": float(np.linalg.norm(W[H:], 2)),
                "gamma_max": float(np.max(np.abs(g))),
                "gelu": GELU_LIPSCHITZ,
                "sigmoid": SIGMOID_LIPSCHITZ,
            }
        W = sd[f"layers.{i}.out.weight"].astype(np.float64)
        g = sd[f"layers.{i}.norm.weight"].astype(np.float64)
        return {"Wout": float(np.linalg.norm(W, 2)), "gamma_max": float(np.max(np.abs(g)))}

    def _ln_params(self, i):
        sd = self.model._sd
        key = f"norms.{i}." if self.family == "s4d" else f"layers.{i}.norm."
        return sd[key + "weight"].astype(np.float64), sd[key + "bias"].astype(np.float64)

    # -- statistics of the original trajectory -------------------------------------------------------
    def _trajectory_stats(self, x: np.ndarray) -> list[dict[str, np.ndarray]]:
        model, H = self.model, self.H
        stats: list[dict[str, list]] = [dict() for _ in range(self.n_layers)]
        for s in range(0, x.shape[0], _CHUNK):
            _, trace = model.forward(x[s : s + _CHUNK], return_layer_inputs=True)
            for i, t in enumerate(trace):
                U, S, Y = t["input"], t["ssm_output"], t["output"]
                gam, bet = self._ln_params(i)
                st = stats[i]
                if self.family == "s4d":
                    W = model._sd[f"s4_layers.{i}.output_linear.0.weight"][:, :, 0].astype(np.float64)
                    b = model._sd[f"s4_layers.{i}.output_linear.0.bias"].astype(np.float64)
                    Z = gelu(S) @ W.T + b
                    a, gate = Z[..., :H], Z[..., H:]
                    X = U + a / (1.0 + np.exp(-gate))
                    st.setdefault("cum", []).append(np.cumsum(U * U, axis=1))
                    # |a| (.) Delta b with Delta b = W_b Delta Z: min(||a||_inf ||W_b||_2, ||diag(a) W_b||_F)
                    wbn = self._post[i]["Wb"]
                    rn2 = np.sum(W[H:] ** 2, axis=1)
                    st.setdefault("glu", []).append(
                        np.minimum(np.max(np.abs(a), axis=-1) * wbn, np.sqrt((a * a) @ rn2))
                    )
                else:
                    W = model._sd[f"layers.{i}.out.weight"].astype(np.float64)
                    b = model._sd[f"layers.{i}.out.bias"].astype(np.float64)
                    X = U + S @ W.T + b
                    st.setdefault("unorm", []).append(np.sqrt(np.cumsum(np.sum(U * U, axis=-1), axis=1)))
                st.setdefault("U", []).append(U)
                st.setdefault("Y", []).append(Y)
                st.setdefault("xstd", []).append(np.std(X, axis=-1))
                yc = np.linalg.norm(Y - bet, axis=-1) + np.max(np.abs(gam)) * math.sqrt(H)
                st.setdefault("ycap", []).append(yc)
        return [{k: np.concatenate(v, axis=0) for k, v in st.items()} for st in stats]

    def _apriori_stats(self, nu: float) -> list[dict[str, np.ndarray]]:
        model, H, L = self.model, self.H, self.L
        sd = model._sd
        k1 = np.arange(1, L + 1, dtype=np.float64)
        stats = []
        We = sd["encoder.weight"].astype(np.float64)
        be = sd["encoder.bias"].astype(np.float64)
        for i in range(self.n_layers):
            gam, bet = self._ln_params(i)
            gmax = float(np.max(np.abs(gam)))
            if i == 0:
                ch = np.linalg.norm(We, axis=1)[None, :] * nu + np.abs(be)[None, :] * np.sqrt(k1)[:, None]
                unorm = np.linalg.norm(We, 2) * nu + np.linalg.norm(be) * np.sqrt(k1)
            else:
                g0, b0 = self._ln_params(i - 1)
                ch = (np.abs(g0) * math.sqrt(H - 1) + np.abs(b0))[None, :] * np.sqrt(k1)[:, None]
                unorm = (float(np.max(np.abs(g0))) * math.sqrt(H) + np.linalg.norm(b0)) * np.sqrt(k1)
            st: dict[str, np.ndarray] = {
                "xstd": np.zeros((1, L)),  # no lower bound on the standard deviation a priori
                "ycap": np.full((1, L), 2.0 * gmax * math.sqrt(H)),
            }
            if self.family == "s4d":
                cum = ch**2  # (L, H)
                st["cum"] = cum[None]
                g = model.kernel(i, L)
                g[:, 0] += sd[f"s4_layers.{i}.D"].astype(np.float64)
                gpre = np.sqrt(np.cumsum(g**2, axis=1))  # (H, L)
                sbound = gpre.T * np.sqrt(cum)  # |S_{k,h}| (L, H); |GELU(s)| <= |s|
                W = sd[f"s4_layers.{i}.output_linear.0.weight"][:, :, 0].astype(np.float64)
                b = sd[f"s4_layers.{i}.output_linear.0.bias"].astype(np.float64)
                amax = np.max(sbound @ np.abs(W[:H]).T + np.abs(b[:H]), axis=-1)
                st["glu"] = amax[None] * self._post[i]["Wb"]
            else:
                st["unorm"] = unorm[None]
            stats.append(st)
        return stats

    # -- per-layer terms of a reduced block ----------------------------------------------------------
    def layer_terms(self, i: int, red: Mapping[str, Any]) -> dict[str, Any]:
        """Terms of layer ``i`` for reduced SSM parameters ``red`` (format of ``model.ssm_params``)."""
        L = self.L
        if self.family == "s4d":
            ghat = _reduced_kernel(red, L)
            diff = self._gfull[i] - ghat
            E2 = np.cumsum(diff * diff, axis=1)  # (H, L) prefix squared errors
            return {
                "E2": E2,
                "gamma": np.max(np.abs(ghat), axis=0),
                "gamma_cs": np.max(np.sqrt(np.cumsum(ghat * ghat, axis=1)), axis=0),
                "h2_error_channels": np.sqrt(E2[:, -1]),
            }
        full = self._full[i]
        lin, quad = lqo_block_h2_errors(full, red, L)
        hh = lqo_markov(red, L)
        gamma = np.linalg.norm(hh, 2, axis=(1, 2))  # spectral norms per lag
        lam = np.asarray(red["Lambda_bar"], np.complex128)
        Bh = np.asarray(red["B_bar"], np.complex128)
        pw = _powers(lam, L)  # (P, L)
        beta = np.array([np.linalg.norm(pw[:, l, None] * Bh, 2) for l in range(L)]) if lam.size else np.zeros(L)
        M = np.asarray(red["M"], np.complex128)
        mu = float(np.sqrt(np.sum(np.linalg.norm(M, 2, axis=(1, 2)) ** 2))) if lam.size else 0.0
        st = self._stats[i]
        if self.kind == "a-posteriori":
            xn = []
            for s in range(0, st["U"].shape[0], _CHUNK):
                Ub = st["U"][s : s + _CHUNK]
                bu = Ub @ Bh.T  # (b, L, P)
                xk = np.zeros((Ub.shape[0], lam.size), np.complex128)
                out = np.empty(Ub.shape[:2])
                for k in range(L):
                    xk = lam * xk + bu[:, k]
                    out[:, k] = np.linalg.norm(xk, axis=-1)
                xn.append(out)
            xhat = np.concatenate(xn, axis=0)
        else:
            xhat = np.sqrt(np.cumsum(beta**2))[None] * st["unorm"]
        return {
            "lin": lin,
            "quad": quad,
            "gamma": gamma,
            "beta": beta,
            "mu": mu,
            "xhat": xhat,
            "gamma_cs": np.sqrt(np.cumsum(gamma**2)),
            "beta_cs": np.sqrt(np.cumsum(beta**2)),
            "h2_error": float(math.hypot(lin[-1], quad)),
        }

    def full_terms(self) -> list[dict[str, Any]]:
        """Terms of the uncompressed blocks (zero errors)."""
        return [self.layer_terms(i, self._full[i]) for i in range(self.n_layers)]

    # -- propagation -----------------------------------------------------------------------------------
    def propagate(self, terms: Sequence[Mapping[str, Any]], active: Sequence[bool] | None = None,
                  linear: bool = False) -> np.ndarray:
        r"""Per-sample bound for given layer terms; layers with ``active[i] = False`` inject no error.

        With ``linear=True`` the first-order (small-error) form is returned instead:
        :math:`\lim_{t\to 0} \beta(t\,\varepsilon)/t`, i.e. the bound with every injected error scaled by
        t → 0 (no saturation, LayerNorm at the trajectory's spread). It is what the order allocation of
        ``compress(method="bound")`` minimises; it equals the bound up to O(ε²) terms.

        Returns
        -------
        ndarray, shape (batch,) (a posteriori) or (1,) (a priori)
        """
        H, eps, L = self.H, self.eps, self.L
        tiny = 1e-9 if linear else 1.0
        nb = self._stats[0]["xstd"].shape[0]
        delta = np.zeros((nb, L))
        for i, (t, st, c) in enumerate(zip(terms, self._stats, self._post)):
            on = True if active is None else bool(active[i])
            if self.family == "s4d":
                inj = tiny * np.sqrt(np.einsum("hk,bkh->bk", t["E2"], st["cum"])) if on else 0.0
                sig = inj + _sens(t["gamma"], t["gamma_cs"], delta)
                z = c["gelu"] * sig
                v = c["Wa"] * z + c["sigmoid"] * st["glu"] * z
            else:
                un = st["unorm"]
                inj = tiny * (t["lin"][None, :] * un + t["quad"] * un**2) if on else 0.0
                xi = _sens(t["beta"], t["beta_cs"], delta)
                sig = inj + _sens(t["gamma"], t["gamma_cs"], delta) + t["mu"] * xi * (2.0 * t["xhat"] + xi)
                v = c["Wout"] * sig
            rho = delta + v
            delta = _ln_step(rho, st["xstd"], st["ycap"], c["gamma_max"], H, eps)
        return self.dec_norm * np.mean(delta, axis=1) / tiny

    def evaluate(
        self,
        reduced: Sequence[Mapping[str, Any]],
        names: Sequence[str] | None = None,
        terms: Sequence[Mapping[str, Any]] | None = None,
    ) -> BoundResult:
        """Bound for reduced SSM parameters of every layer (see :meth:`layer_terms`)."""
        if terms is None:
            if len(reduced) != self.n_layers:
                raise ShapeError(f"expected reduced parameters for {self.n_layers} layers, got {len(reduced)}")
            terms = [self.layer_terms(i, r) for i, r in enumerate(reduced)]
        per = lemma = self.propagate(terms)
        if self.kind == "a-posteriori" and reduced is not None:  # Theorems 2 and 3 (exact injections)
            from .bound_hybrid import hybrid_layer, hybrid_propagate
            from .bound_taylor import taylor_propagate

            kern = [_reduced_kernel(r, self.L) if self.family == "s4d" else None for r in reduced]
            hyb = [hybrid_layer(self, i, r, k) for i, (r, k) in enumerate(zip(reduced, kern))]
            per = np.minimum(lemma, hybrid_propagate(self, terms, hyb, reduced))
            per = np.minimum(per, taylor_propagate(self, terms, hyb, reduced, kern))
        layers = []
        for i, t in enumerate(terms):
            act = [j == i for j in range(self.n_layers)]
            contrib = float(np.max(self.propagate(terms, act)))
            first = float(np.max(self.propagate(terms, act, linear=True)))
            nm = names[i] if names is not None else (f"s4_layers.{i}." if self.family == "s4d" else f"layers.{i}.ssm.")
            if self.family == "s4d":
                ce = t["h2_error_channels"]
                lb = LayerBound(
                    index=i, name=nm, h2_error=float(np.sqrt(np.sum(ce**2))), contribution=contrib, channel_errors=ce
                )
            else:
                lb = LayerBound(
                    index=i,
                    name=nm,
                    h2_error=t["h2_error"],
                    contribution=contrib,
                    linear=float(t["lin"][-1]),
                    quadratic=float(t["quad"]),
                )
            lb.first_order = first
            lb.weight = first / lb.h2_error if lb.h2_error > 0 else 0.0
            layers.append(lb)
        tot = sum(lb.first_order for lb in layers)
        for lb in layers:
            lb.share = lb.first_order / tot if tot > 0 else 0.0
        consts = {
            "gelu": GELU_LIPSCHITZ,
            "sigmoid": SIGMOID_LIPSCHITZ,
            "decoder": self.dec_norm,
            "layernorm_eps": self.eps,
            "layers": [dict(c) for c in self._post],
        }
        return BoundResult(
            value=float(np.max(per)),
            kind=self.kind,
            length=self.L,
            layers=layers,
            per_sample=per if self.kind == "a-posteriori" else None,
            constants=consts,
            per_sample_lemma=lemma if self.kind == "a-posteriori" else None,
            cap=self.dec_norm * np.mean(self._stats[-1]["ycap"], axis=1),
        )


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------
def measured_output_error(model, compressed, inputs, batch_size: int = 500) -> np.ndarray:
    r"""Measured :math:`\|f(x) - \hat f(x)\|_2` of the logits for every sequence of ``inputs``."""
    x = model._prepare_input(inputs)
    out = []
    for s in range(0, x.shape[0], batch_size):
        out.append(
            np.linalg.norm(model.forward(x[s : s + batch_size]) - compressed.forward(x[s : s + batch_size]), axis=-1)
        )
    return np.concatenate(out)


def output_error_bound(
    model, compressed, inputs=None, input_norm: float | None = None, length: int | None = None
) -> BoundResult:
    r"""Upper bound on the logit error :math:`\|f(x) - \hat f(x)\|_2` of a compressed Deep SSM.

    Parameters
    ----------
    model : S4DModel or LQOModel
        Original network.
    compressed : same class
        The network with reduced SSM blocks; every other tensor must be identical (LayoutError
        otherwise).
    inputs : array_like, shape (batch, L) or (batch, L, d_in), optional
        A-posteriori bound for each sequence (uses the original model's trajectory on it); the
        measured errors are returned too.
    input_norm : float, optional
        A-priori bound valid for **every** input with :math:`\|x\|_2 \le` ``input_norm`` over the
        whole sequence. Needs ``length``. LayerNorm then contributes :math:`\max|\gamma|/\sqrt\epsilon`
        (no lower bound on the activations' spread is available a priori), so this bound is honest but
        loose; it is capped by the trivial bound :math:`2\max|\gamma|\sqrt H` per time step.
    length : int, optional
        Sequence length of the a-priori bound.

    Returns
    -------
    BoundResult
        ``value`` (max over the batch, or the a-priori value), ``per_sample`` and ``measured`` (a
        posteriori), per-layer h2 errors, shares of the bound and layer weights.

    Raises
    ------
    LayoutError
        If the models are of different families / sizes or differ outside the SSM blocks.
    ValueError
        If not exactly one of ``inputs`` / ``input_norm`` is given, or ``length`` is missing.

    Examples
    --------
    >>> res = output_error_bound(model, compressed, inputs=x_test)     # doctest: +SKIP
    >>> res.value, res.measured_max, res.tightness                      # doctest: +SKIP
    """
    _check_pair(model, compressed)
    ev = BoundEvaluator(model, inputs=inputs, input_norm=input_norm, length=length)
    red = [compressed.ssm_params(i) for i in range(model.n_layers)]
    if ev.family == "s4d":  # the compressed model's own kernels (same arithmetic as its forward pass)
        for i, r in enumerate(red):
            r["kernel"] = compressed.kernel(i, ev.L)
            r["kernel"][:, 0] += r["D"]
    names = [f"s4_layers.{i}." if ev.family == "s4d" else f"layers.{i}.ssm." for i in range(model.n_layers)]
    res = ev.evaluate(red, names)
    if ev.kind == "a-posteriori":
        res.measured = measured_output_error(model, compressed, ev.inputs)
    return res
