r"""NumPy inference for the two reference Deep-SSM models (no torch needed).

Both models read a flat state dict ``{key: ndarray}`` with exactly the keys and shapes of their torch
training twins in :mod:`mor_lqo.deep.torch_models`, infer every size from the shapes (so reduced
state dicts with fewer modes load and run), and compute in float64 / complex128.

:class:`S4DModel` (family ``"s4d"``, paper B setting) is the S4D-minimal layout of state-spaces/s4
``models/s4/s4d.py`` + ``example.py`` (post-norm, ``prenorm=False``)::

    encoder.weight (H, d_in), encoder.bias (H,)
    s4_layers.{i}.D (H,)
    s4_layers.{i}.kernel.C (H, M, 2)            view_as_real of complex C, M = d_state/2
    s4_layers.{i}.kernel.log_dt (H,)
    s4_layers.{i}.kernel.log_A_real (H, M)
    s4_layers.{i}.kernel.A_imag (H, M)
    s4_layers.{i}.output_linear.0.weight (2H, H, 1), .bias (2H,)
    norms.{i}.weight (H,), norms.{i}.bias (H,)
    decoder.weight (n_classes, H), decoder.bias (n_classes,)

Per channel h: :math:`A = -e^{\text{log\_A\_real}} + i\,\text{A\_imag}`, :math:`\Delta = e^{\text{log\_dt}}`,
ZOH with :math:`B \equiv 1`: :math:`\bar\Lambda = e^{\Delta A}`, :math:`\bar B = (\bar\Lambda - 1)/A`, kernel
:math:`K_h[l] = 2\,\mathrm{Re}\sum_n C_{hn}\bar B_{hn}\bar\Lambda_{hn}^l` (:math:`\kappa = 2`). A layer maps
:math:`u \in \mathbb{R}^{L\times H}` to
:math:`\mathrm{LN}\big(u + \mathrm{GLU}(W\,\mathrm{GELU}(K * u + D\odot u) + b)\big)`; the network is
encoder → layers → mean over time → decoder.

:class:`LQOModel` (family ``"lqo"``, paper A setting) uses S5-style MIMO diagonal blocks whose readout
is exactly a discrete-time LQO system (current-input convention, :math:`x_0 = 0` before the
sequence)::

    encoder.weight (H, d_in), encoder.bias (H,)
    layers.{i}.ssm.log_A_real (P,)     layers.{i}.ssm.A_imag (P,)     layers.{i}.ssm.log_dt (1,)
    layers.{i}.ssm.B (P, H, 2)         layers.{i}.ssm.C (H, P, 2)     layers.{i}.ssm.U (H, R, P, 2)
    layers.{i}.ssm.D (H,)
    layers.{i}.out.weight (H, H), layers.{i}.out.bias (H,)
    layers.{i}.norm.weight (H,), layers.{i}.norm.bias (H,)
    decoder.weight (n_classes, H), decoder.bias (n_classes,)

with :math:`\Lambda = -e^{\text{log\_A\_real}} + i\,\text{A\_imag}`, :math:`\Delta = e^{\text{log\_dt}}`,
:math:`\bar\Lambda = e^{\Delta\Lambda}`, :math:`\bar B = ((\bar\Lambda - 1)/\Lambda) B` and

.. math::

    x_k = \bar\Lambda x_{k-1} + \bar B u_k, \qquad
    y_{k,j} = \mathrm{Re}(C_j x_k) + \|U_j x_k\|_2^2 + D_j u_{k,j}
            = \mathrm{Re}(C_j x_k) + x_k^H M_j x_k + D_j u_{k,j}, \quad M_j = U_j^H U_j,

(:math:`\kappa = 1`, :math:`U_j` = ``U[j]`` of shape (R, P)). The layer has **no activation**: the
quadratic readout and the LayerNorm are its only nonlinearities,
:math:`u \mapsto \mathrm{LN}(u + W_{\text{out}}\,y + b_{\text{out}})`. As an extension (not produced
by training, useful for reduced models whose :math:`\hat M_j` is not given as a factor) a layer may
store ``layers.{i}.ssm.M (H, P, P, 2)`` (Hermitian, possibly indefinite, view_as_real) instead of
``U``; the readout is then :math:`\mathrm{Re}(x^H M_j x)`, and the dict loads strictly into the torch
``LQOModel(..., quad="M")``.

Common interface: ``from_state_dict``, ``state_dict``, ``forward(x, return_layer_inputs=False)``,
``predict``, ``accuracy``, ``ssm_forward(i, u)`` (the SSM block of layer i alone),
``post_ssm(i, y, u)`` (everything after it), ``ssm_params(i)`` (the discrete complex-diagonal
system), ``num_parameters()``.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
from scipy.special import erf

from ..errors import LayoutError, ShapeError

__all__ = ["S4DModel", "LQOModel", "gelu", "layer_norm", "LN_EPS"]

LN_EPS = 1e-5
"""LayerNorm epsilon (torch default)."""


# ---------------------------------------------------------------------------------------------
# elementwise building blocks
# ---------------------------------------------------------------------------------------------
_F = TypeVar("_F", bound=Callable[..., Any])


def _single_thread_blas(fn: _F) -> _F:
    """Run ``fn`` with single-threaded BLAS (threadpoolctl, if installed).

    The products here are small; multi-threaded OpenBLAS on a busy machine is up to 10x *slower*
    (spinning threads), and the callers parallelise over processes anyway.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits

            ctx = threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover - optional dependency
            ctx = contextlib.nullcontext()
        with ctx:
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _mm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` over the last axis of x as one 2-D BLAS product: (..., a) @ (a, b) -> (..., b)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def gelu(x: np.ndarray) -> np.ndarray:
    r"""Exact GELU :math:`x\,\Phi(x) = \tfrac12 x (1 + \mathrm{erf}(x/\sqrt2))` (torch ``nn.GELU()``)."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = LN_EPS) -> np.ndarray:
    r"""LayerNorm over the last axis: :math:`(x - \mu)/\sqrt{\sigma^2 + \epsilon}\cdot w + b` (biased variance)."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    return xc / np.sqrt(var + eps) * weight + bias


def _as_numpy_state_dict(sd: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Copy a mapping of array-likes (numpy, or anything with ``.numpy()``/``__array__``) to numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for k, v in sd.items():
        if hasattr(v, "detach"):  # a torch tensor passed directly; no torch import needed
            v = v.detach().cpu().numpy()
        arr = np.array(v, copy=True)
        if arr.dtype.kind not in "fiu":
            raise LayoutError(f"state-dict entry {k!r} has non-real dtype {arr.dtype}")
        out[str(k)] = arr
    return out


def _layer_indices(sd: Mapping[str, np.ndarray], prefix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
    idx = sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})
    if not idx:
        raise LayoutError(f"no '{prefix}{{i}}.' keys found in the state dict")
    if idx != list(range(len(idx))):
        raise LayoutError(f"'{prefix}{{i}}' layer indices are not 0..n-1: {idx}")
    return idx


def _need(sd: Mapping[str, np.ndarray], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """Fetch ``sd[key]`` and check its shape (``None`` = any size)."""
    if key not in sd:
        raise LayoutError(f"missing state-dict key {key!r}")
    arr = sd[key]
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        raise ShapeError(f"{key}: expected shape {shape} (None = any), got {arr.shape}")
    return arr


def _complex(arr: np.ndarray) -> np.ndarray:
    """view_as_real layout (..., 2) -> complex128."""
    a = np.asarray(arr, dtype=np.float64)
    return a[..., 0] + 1j * a[..., 1]


class _DeepSSMBase:
    """Shared plumbing: input handling, pooling, prediction, parameter counts."""

    family: str = ""
    _layer_prefix: str = ""

    def __init__(self, sd: dict[str, np.ndarray]):
        self._sd = sd
        self._validate()

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any]):
        """Build the model from a flat state dict of arrays (copied; extra keys are an error).

        Parameters
        ----------
        state_dict : mapping str -> array_like
            Keys and shapes as documented in the module docstring. Torch tensors are accepted too.
        """
        return cls(_as_numpy_state_dict(state_dict))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Return a copy of the stored tensors (float32 as loaded)."""
        return {k: v.copy() for k, v in self._sd.items()}

    def _validate(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_extra_keys(self, expected: set[str]) -> None:
        extra = sorted(set(self._sd) - expected)
        if extra:
            raise LayoutError(f"unexpected keys for a {self.family!r} model: {extra[:8]}")

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of SSM layers."""
        return self._n_layers

    @property
    def d_model(self) -> int:
        """Model width H."""
        return self._H

    @property
    def d_input(self) -> int:
        """Input features per time step."""
        return self._d_in

    @property
    def n_classes(self) -> int:
        """Number of output logits."""
        return self._n_out

    def ssm_keys(self, i: int | None = None) -> list[str]:
        """State-dict keys that belong to the SSM block of layer ``i`` (all layers if None)."""
        layers = range(self.n_layers) if i is None else [i]
        keys: list[str] = []
        for j in layers:
            keys += [k for k in self._sd if self._is_ssm_key(k, j)]
        return keys

    def _is_ssm_key(self, key: str, i: int) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def num_parameters(self) -> dict[str, int]:
        """Count stored scalars: ``{"total": all tensors, "ssm": the SSM blocks (incl. D)}``.

        A complex entry stored as view_as_real counts as 2 real parameters.
        """
        total = int(sum(v.size for v in self._sd.values()))
        ssm = int(sum(self._sd[k].size for k in self.ssm_keys()))
        return {"total": total, "ssm": ssm}

    # -- forward -------------------------------------------------------------------------------
    def _prepare_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim == 2:
            if self._d_in != 1:
                raise ShapeError(
                    f"x of shape {x.shape} is (batch, L) but the model expects {self._d_in} "
                    "input features: pass (batch, L, d_input)"
                )
            x = x[:, :, None]
        if x.ndim != 3 or x.shape[2] != self._d_in:
            raise ShapeError(f"x must be (batch, L) or (batch, L, {self._d_in}), got {x.shape}")
        if x.shape[1] < 1:
            raise ShapeError("x has zero time steps")
        if not np.all(np.isfinite(x)):
            raise ValueError("x contains NaN or infinite entries")
        return x

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Encoder: (batch, L[, d_in]) -> (batch, L, H)."""
        x = self._prepare_input(x)
        w = self._sd["encoder.weight"].astype(np.float64)
        b = self._sd["encoder.bias"].astype(np.float64)
        return _mm(x, w.T) + b

    def decode(self, h: np.ndarray) -> np.ndarray:
        """Mean over time then decoder: (batch, L, H) -> logits (batch, n_classes)."""
        w = self._sd["decoder.weight"].astype(np.float64)
        b = self._sd["decoder.bias"].astype(np.float64)
        return h.mean(axis=1) @ w.T + b

    def layer(self, i: int, u: np.ndarray) -> np.ndarray:
        """Full layer i: (batch, L, H) -> (batch, L, H)."""
        return self.post_ssm(i, self.ssm_forward(i, u), u)

    def ssm_forward(self, i: int, u: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def post_ssm(self, i: int, y: np.ndarray, u: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @_single_thread_blas
    def forward(self, x: np.ndarray, return_layer_inputs: bool = False):
        r"""Logits of a batch of sequences.

        Parameters
        ----------
        x : ndarray, shape (batch, L) or (batch, L, d_input)
            Input sequences (MNIST-1D: (batch, 40)).
        return_layer_inputs : bool
            Also return, per layer i, a dict with ``"input"`` :math:`u^{(i)}` (the SSM input = the layer
            input, (batch, L, H)), ``"ssm_output"`` :math:`y^{(i)} = S_i(u^{(i)})` (batch, L, H) and
            ``"output"`` :math:`u^{(i+1)}` (batch, L, H), so that
            ``output == post_ssm(i, ssm_output, input)``.

        Returns
        -------
        logits : ndarray, shape (batch, n_classes), float64
        trace : list of dict, only if ``return_layer_inputs``
        """
        h = self.encode(x)
        trace = []
        for i in range(self.n_layers):
            y = self.ssm_forward(i, h)
            h_next = self.post_ssm(i, y, h)
            if return_layer_inputs:
                trace.append({"input": h, "ssm_output": y, "output": h_next})
            h = h_next
        logits = self.decode(h)
        return (logits, trace) if return_layer_inputs else logits

    __call__ = forward

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Predicted class indices, shape (batch,), computed in chunks of ``batch_size``."""
        x = np.asarray(x)
        out = [np.argmax(self.forward(x[s : s + batch_size]), axis=-1) for s in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def accuracy(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
        """Fraction (in [0, 1], not percent) of sequences whose predicted class equals ``y``."""
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise ShapeError(f"x has {len(x)} sequences but y has {len(y)} labels")
        return float(np.mean(self.predict(x, batch_size) == y))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()})"

    def _describe(self) -> str:  # pragma: no cover - overridden
        return ""


# ---------------------------------------------------------------------------------------------
# S4D
# ---------------------------------------------------------------------------------------------
class S4DModel(_DeepSSMBase):
    r"""S4D-minimal Deep SSM (state-spaces/s4 ``S4Model`` of ``example.py``, post-norm), NumPy inference.

    Sizes are inferred from the state dict: H from ``encoder.weight``, the number of stored modes
    :math:`M_i` (= d_state/2) per layer from ``s4_layers.{i}.kernel.C`` (layers may differ).

    Examples
    --------
    >>> from mor_lqo.deep import load_bundled_model, load_test_split      # doctest: +SKIP
    >>> model = load_bundled_model("s4d"); x, y = load_test_split()        # doctest: +SKIP
    >>> model.accuracy(x, y)                                                # doctest: +SKIP
    """

    family = "s4d"
    _layer_prefix = "s4_layers."

    def _validate(self) -> None:
        sd = self._sd
        enc = _need(sd, "encoder.weight", (None, None))
        self._H, self._d_in = enc.shape
        H = self._H
        _need(sd, "encoder.bias", (H,))
        dec = _need(sd, "decoder.weight", (None, H))
        self._n_out = dec.shape[0]
        _need(sd, "decoder.bias", (self._n_out,))
        idx = _layer_indices(sd, "s4_layers.")
        self._n_layers = len(idx)
        expected = {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"}
        self._modes: list[int] = []
        for i in idx:
            p = f"s4_layers.{i}."
            C = _need(sd, p + "kernel.C", (H, None, 2))
            M = C.shape[1]
            self._modes.append(M)
            _need(sd, p + "kernel.log_dt", (H,))
            _need(sd, p + "kernel.log_A_real", (H, M))
            _need(sd, p + "kernel.A_imag", (H, M))
            _need(sd, p + "D", (H,))
            _need(sd, p + "output_linear.0.weight", (2 * H, H, 1))
            _need(sd, p + "output_linear.0.bias", (2 * H,))
            _need(sd, f"norms.{i}.weight", (H,))
            _need(sd, f"norms.{i}.bias", (H,))
            expected |= {
                p + s
                for s in (
                    "kernel.C",
                    "kernel.log_dt",
                    "kernel.log_A_real",
                    "kernel.A_imag",
                    "D",
                    "output_linear.0.weight",
                    "output_linear.0.bias",
                )
            }
            expected |= {f"norms.{i}.weight", f"norms.{i}.bias"}
        self._check_extra_keys(expected)

    def _is_ssm_key(self, key: str, i: int) -> bool:
        return key.startswith(f"s4_layers.{i}.kernel.") or key == f"s4_layers.{i}.D"

    @property
    def n_modes(self) -> tuple[int, ...]:
        """Stored complex modes M_i per layer (d_state_i = 2 M_i; real order 2 M_i per channel)."""
        return tuple(self._modes)

    @property
    def d_state(self) -> tuple[int, ...]:
        """``d_state`` argument per layer (= 2 M_i), as in ``S4D(H, d_state=...)``."""
        return tuple(2 * m for m in self._modes)

    def _describe(self) -> str:
        return f"H={self._H}, d_state={list(self.d_state)}, n_layers={self._n_layers}, d_in={self._d_in}"

    def ssm_params(self, i: int) -> dict[str, Any]:
        r"""Discrete complex-diagonal SISO systems of layer i (one per channel h).

        Returns
        -------
        dict with
            ``"A"`` (H, M) complex: continuous :math:`A = -e^{\text{log\_A\_real}} + i\,\text{A\_imag}`;
            ``"dt"`` (H,): :math:`\Delta_h`;
            ``"Lambda_bar"`` (H, M): :math:`\bar\Lambda = e^{\Delta A}`;
            ``"B_bar"`` (H, M): :math:`(\bar\Lambda - 1)/A` (B ≡ 1);
            ``"C"`` (H, M) complex;
            ``"D"`` (H,);
            ``"kappa"``: 2, so that :math:`y_h = \kappa\,\mathrm{Re}(C_h x) + D_h u_h`.
        """
        p = f"s4_layers.{i}."
        sd = self._sd
        dt = np.exp(sd[p + "kernel.log_dt"].astype(np.float64))
        A = -np.exp(sd[p + "kernel.log_A_real"].astype(np.float64)) + 1j * sd[p + "kernel.A_imag"].astype(np.float64)
        lam = np.exp(dt[:, None] * A)
        return {
            "A": A,
            "dt": dt,
            "Lambda_bar": lam,
            "B_bar": (lam - 1.0) / A,
            "C": _complex(sd[p + "kernel.C"]),
            "D": sd[p + "D"].astype(np.float64),
            "kappa": 2,
        }

    @_single_thread_blas
    def kernel(self, i: int, L: int) -> np.ndarray:
        r"""SSM convolution kernel of layer i, shape (H, L).

        :math:`K_h[l] = 2\,\mathrm{Re}\sum_n C_{hn}\bar B_{hn}\bar\Lambda_{hn}^l`.

        The powers are computed as :math:`e^{l\,\Delta A}` (as upstream), in chunks of 1024 lags.
        """
        s = self.ssm_params(i)
        dtA = s["dt"][:, None] * s["A"]  # (H, M)
        coef = s["C"] * s["B_bar"]  # (H, M)
        K = np.empty((self._H, L))
        for l0 in range(0, L, 1024):
            ls = np.arange(l0, min(L, l0 + 1024))
            V = np.exp(dtA[:, :, None] * ls)  # (H, M, l)
            K[:, l0 : l0 + len(ls)] = 2.0 * np.einsum("hn,hnl->hl", coef, V).real
        return K

    @_single_thread_blas
    def ssm_forward(self, i: int, u: np.ndarray) -> np.ndarray:
        r"""SSM block of layer i, (batch, L, H) -> (batch, L, H).

        :math:`y = K * u + D\odot u` (causal convolution via an FFT of length 2L)."""
        u = np.asarray(u, dtype=np.float64)
        L = u.shape[1]
        K = self.kernel(i, L)  # (H, L)
        n = 2 * L
        uf = np.fft.rfft(u, n=n, axis=1)  # (B, L+1, H)
        kf = np.fft.rfft(K, n=n, axis=1).T  # (L+1, H)
        y = np.fft.irfft(uf * kf[None], n=n, axis=1)[:, :L, :]
        return y + u * self._sd[f"s4_layers.{i}.D"].astype(np.float64)

    @_single_thread_blas
    def post_ssm(self, i: int, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        r"""Rest of layer i: :math:`\mathrm{LN}(u + \mathrm{GLU}(W\,\mathrm{GELU}(y) + b))`, all (batch, L, H)."""
        p = f"s4_layers.{i}."
        W = self._sd[p + "output_linear.0.weight"][:, :, 0].astype(np.float64)  # (2H, H)
        b = self._sd[p + "output_linear.0.bias"].astype(np.float64)
        z = _mm(gelu(y), W.T) + b  # (B, L, 2H)
        H = self._H
        z = z[..., :H] * _sigmoid(z[..., H:])  # GLU over the channel axis
        return layer_norm(
            u + z,
            self._sd[f"norms.{i}.weight"].astype(np.float64),
            self._sd[f"norms.{i}.bias"].astype(np.float64),
        )


# ---------------------------------------------------------------------------------------------
# LQO Deep SSM
# ---------------------------------------------------------------------------------------------
class LQOModel(_DeepSSMBase):
    r"""Deep SSM with S5-style MIMO diagonal LQO blocks (paper A setting), NumPy inference.

    Sizes inferred per layer from the state dict: P from ``ssm.log_A_real``, R from ``ssm.U``
    (or a full ``ssm.M``, see the module docstring). The quadratic term of output j is
    :math:`\|U_j x_k\|^2 = x_k^H M_j x_k` with :math:`M_j = U_j^H U_j \succeq 0`.
    """

    family = "lqo"
    _layer_prefix = "layers."

    def _validate(self) -> None:
        sd = self._sd
        enc = _need(sd, "encoder.weight", (None, None))
        self._H, self._d_in = enc.shape
        H = self._H
        _need(sd, "encoder.bias", (H,))
        dec = _need(sd, "decoder.weight", (None, H))
        self._n_out = dec.shape[0]
        _need(sd, "decoder.bias", (self._n_out,))
        idx = _layer_indices(sd, "layers.")
        self._n_layers = len(idx)
        expected = {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"}
        self._P: list[int] = []
        self._R: list[int | None] = []
        for i in idx:
            p = f"layers.{i}.ssm."
            P = _need(sd, p + "log_A_real", (None,)).shape[0]
            self._P.append(P)
            _need(sd, p + "A_imag", (P,))
            _need(sd, p + "log_dt", (1,))
            _need(sd, p + "B", (P, H, 2))
            _need(sd, p + "C", (H, P, 2))
            _need(sd, p + "D", (H,))
            keys = ["log_A_real", "A_imag", "log_dt", "B", "C", "D"]
            has_u, has_m = p + "U" in sd, p + "M" in sd
            if has_u == has_m:
                raise LayoutError(f"layer {i}: exactly one of {p}U and {p}M must be present")
            if has_u:
                self._R.append(_need(sd, p + "U", (H, None, P, 2)).shape[1])
                keys.append("U")
            else:
                M = _complex(_need(sd, p + "M", (H, P, P, 2)))
                herm_err = np.max(np.abs(M - np.conj(np.swapaxes(M, -1, -2)))) if M.size else 0.0
                if herm_err > 1e-5 * max(1.0, float(np.max(np.abs(M)) if M.size else 0.0)):
                    raise LayoutError(f"layer {i}: {p}M is not Hermitian (max |M - M^H| = {herm_err:.3g})")
                self._R.append(None)
                keys.append("M")
            q = f"layers.{i}."
            _need(sd, q + "out.weight", (H, H))
            _need(sd, q + "out.bias", (H,))
            _need(sd, q + "norm.weight", (H,))
            _need(sd, q + "norm.bias", (H,))
            expected |= {p + k for k in keys}
            expected |= {q + s for s in ("out.weight", "out.bias", "norm.weight", "norm.bias")}
        self._check_extra_keys(expected)

    def _is_ssm_key(self, key: str, i: int) -> bool:
        return key.startswith(f"layers.{i}.ssm.")

    @property
    def n_modes(self) -> tuple[int, ...]:
        """Complex state dimension P_i per layer (real order 2 P_i)."""
        return tuple(self._P)

    @property
    def rank(self) -> tuple[int | None, ...]:
        """Quadratic factor rank R_i per layer (None where a full ``M`` is stored)."""
        return tuple(self._R)

    def _describe(self) -> str:
        return f"H={self._H}, P={list(self._P)}, R={list(self._R)}, n_layers={self._n_layers}, d_in={self._d_in}"

    def ssm_params(self, i: int) -> dict[str, Any]:
        r"""Discrete complex-diagonal LQO system of layer i.

        Returns
        -------
        dict with
            ``"Lambda"`` (P,) continuous eigenvalues; ``"dt"`` float;
            ``"Lambda_bar"`` (P,) :math:`e^{\Delta\Lambda}`; ``"B_bar"`` (P, H) :math:`((\bar\Lambda-1)/\Lambda) B`;
            ``"B"`` (P, H), ``"C"`` (H, P) complex; ``"D"`` (H,);
            ``"U"`` (H, R, P) complex or None; ``"M"`` (H, P, P) Hermitian (:math:`U_j^H U_j` when U is stored);
            ``"kappa"``: 1, so :math:`y_{k,j} = \mathrm{Re}(C_j x_k) + x_k^H M_j x_k + D_j u_{k,j}`.
        """
        p = f"layers.{i}.ssm."
        sd = self._sd
        dt = float(np.exp(sd[p + "log_dt"].astype(np.float64)[0]))
        lam_c = -np.exp(sd[p + "log_A_real"].astype(np.float64)) + 1j * sd[p + "A_imag"].astype(np.float64)
        lam = np.exp(dt * lam_c)
        B = _complex(sd[p + "B"])
        if p + "U" in sd:
            U = _complex(sd[p + "U"])
            M = np.einsum("hrp,hrq->hpq", np.conj(U), U)
        else:
            U = None
            M = _complex(sd[p + "M"])
            M = 0.5 * (M + np.conj(np.swapaxes(M, -1, -2)))
        return {
            "Lambda": lam_c,
            "dt": dt,
            "Lambda_bar": lam,
            "B_bar": ((lam - 1.0) / lam_c)[:, None] * B,
            "B": B,
            "C": _complex(sd[p + "C"]),
            "D": sd[p + "D"].astype(np.float64),
            "U": U,
            "M": M,
            "kappa": 1,
        }

    @_single_thread_blas
    def states(self, i: int, u: np.ndarray) -> np.ndarray:
        r"""States of layer i, (batch, L, H) -> (batch, L, P) complex.

        :math:`x_k = \bar\Lambda x_{k-1} + \bar B u_k`, with x = 0 before the sequence."""
        s = self.ssm_params(i)
        u = np.asarray(u, dtype=np.float64)
        bu = _mm(u.astype(complex), s["B_bar"].T)  # (B, L, P)
        lam = s["Lambda_bar"]
        x = np.empty_like(bu)
        xk = np.zeros(bu.shape[::2], dtype=complex)
        for k in range(u.shape[1]):
            xk = lam * xk + bu[:, k]
            x[:, k] = xk
        return x

    @_single_thread_blas
    def ssm_forward(self, i: int, u: np.ndarray, return_parts: bool = False):
        r"""LQO block of layer i, (batch, L, H) -> (batch, L, H).

        :math:`y_{k,j} = \mathrm{Re}(C_j x_k) + x_k^H M_j x_k + D_j u_{k,j}`.
        With ``return_parts`` also return ``(linear, quadratic)`` where linear includes :math:`D u`.
        """
        s = self.ssm_params(i)
        u = np.asarray(u, dtype=np.float64)
        x = self.states(i, u)
        lin = _mm(x, s["C"].T).real + u * s["D"]
        if s["U"] is not None:
            U = s["U"]  # (H, R, P)
            ux = _mm(x, U.reshape(-1, U.shape[-1]).T).reshape(*x.shape[:2], *U.shape[:2])  # (B, L, H, R)
            quad = np.sum(ux.real**2 + ux.imag**2, axis=-1)
        else:
            x2 = x.reshape(-1, x.shape[-1])  # (B*L, P); loop over outputs to keep memory O(B L P)
            quad = np.stack([np.sum(np.conj(x2) * (x2 @ Mj.T), axis=-1).real for Mj in s["M"]], axis=-1)
            quad = quad.reshape(*x.shape[:2], -1)
        y = lin + quad
        return (y, lin, quad) if return_parts else y

    @_single_thread_blas
    def post_ssm(self, i: int, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        r"""Rest of layer i (no activation): :math:`\mathrm{LN}(u + W_{\text{out}} y + b_{\text{out}})`."""
        q = f"layers.{i}."
        W = self._sd[q + "out.weight"].astype(np.float64)
        b = self._sd[q + "out.bias"].astype(np.float64)
        return layer_norm(
            u + _mm(y, W.T) + b,
            self._sd[q + "norm.weight"].astype(np.float64),
            self._sd[q + "norm.bias"].astype(np.float64),
        )
