r"""Calibration from recorded block inputs: the sequences that actually entered each SSM block of a network
(recorded by forward hooks in :func:`mor_lqo.torch.compress`, or given by the caller), turned into the data
weights of per-channel fits and the data-weighted mode scores of MIMO blocks.

For a block with recorded inputs :math:`U \in \mathbb R^{B \times L \times m}`:

* per-channel SISO layouts (S4D, S4, DSS): the lag weights :math:`W_h` of :func:`lag_weights` of the
  input channel that drives unit h, so that :math:`\|W_h^{1/2}(g_h - \hat g_h)\|^2` is the expected
  squared SSM-output error of the channel on the calibration data;
* MIMO blocks (S5, LRU, LQO): for every stored mode a, the output energy of its contribution
  (:func:`recorded_mode_scores`).

No torch here: inputs are numpy arrays.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from ...adapters.block import Block, HalfModes, Unit
from .constants import CompressionError
from .weights import lag_metric

__all__ = ["check_layer_inputs", "recorded_mode_scores", "recorded_calibration", "quadratic_energy",
           "readout_sequences"]


def check_layer_inputs(layer_inputs: Mapping, blocks: Sequence[Block], length) -> tuple[dict, int]:
    """Validate recorded block inputs; returns ``({block name: float64 (B, L, m)}, L)``.

    Raises
    ------
    CompressionError
        A name that is no block, an array that is not real, finite and (B, L, m) with the block's m, or
        sequences of different lengths (or a ``length`` that differs from theirs).
    """
    if not isinstance(layer_inputs, Mapping):
        raise CompressionError(f"layer_inputs must map block names to arrays, got {type(layer_inputs).__name__}")
    by_name = {b.name: b for b in blocks}
    out, lengths = {}, set()
    for name, U in layer_inputs.items():
        if name not in by_name:
            raise CompressionError(f"layer_inputs names {name!r}, which is not an SSM block; blocks: "
                                   f"{sorted(by_name)}")
        U = np.asarray(U)
        if np.iscomplexobj(U) or not np.issubdtype(U.dtype, np.number):
            raise CompressionError(f"layer_inputs[{name!r}] must be real numbers, got dtype {U.dtype}")
        m = by_name[name].m
        if U.ndim != 3 or U.shape[2] != m or U.shape[0] < 1 or U.shape[1] < 1:
            raise CompressionError(f"layer_inputs[{name!r}] must have shape (batch, L, {m}), got {U.shape}")
        U = U.astype(np.float64)
        if not np.all(np.isfinite(U)):
            raise CompressionError(f"layer_inputs[{name!r}] contains NaN or infinite values")
        out[name] = U
        lengths.add(U.shape[1])
    if len(lengths) > 1:
        raise CompressionError(f"the recorded inputs have different sequence lengths {sorted(lengths)}")
    L = lengths.pop() if lengths else None
    if length is not None and L is not None and int(length) != L:
        raise CompressionError(f"length={length} differs from the recorded inputs' length {L}")
    if L is None:
        if length is None or isinstance(length, bool) or not isinstance(length, numbers.Integral):
            raise CompressionError("layer_inputs is empty and no length is given")
        L = int(length)
    return out, L


def _states(lam: np.ndarray, Bu: np.ndarray) -> np.ndarray:
    """``x_k = lam * x_{k-1} + Bu_k`` from ``x_{-1} = 0`` along axis 1 of ``Bu`` (batch, L, n)."""
    X = np.empty_like(Bu)
    x = np.zeros((Bu.shape[0], Bu.shape[2]), Bu.dtype)
    for k in range(Bu.shape[1]):
        x = lam * x + Bu[:, k]
        X[:, k] = x
    return X


def _linear_energy(X: np.ndarray, C: np.ndarray, kappa: float) -> np.ndarray:
    r""":math:`\sum_{b,k}\|\kappa\,\mathrm{Re}(C_{:,a} x_{a})\|^2` for every mode a (X (B, L, n), C (p, n))."""
    cr2 = np.sum(C.real**2, axis=0)
    ci2 = np.sum(C.imag**2, axis=0)
    crci = np.sum(C.real * C.imag, axis=0)
    xr, xi = X.real, X.imag
    e = (np.sum(xr * xr, axis=(0, 1)) * cr2 - 2 * np.sum(xr * xi, axis=(0, 1)) * crci
         + np.sum(xi * xi, axis=(0, 1)) * ci2)
    return kappa**2 * e


def quadratic_energy(X: np.ndarray, C: np.ndarray, M: np.ndarray, kappa: float) -> np.ndarray:
    """Output energy of removing each mode from ``kappa Re(C x) + x^H M x`` (exact change, all rows)."""
    n = X.shape[-1]
    score = np.zeros(n)
    for a0 in range(0, n, 8):
        a = np.arange(a0, min(n, a0 + 8))
        xa = X[..., a]
        MX = np.einsum("jpq,blq->blpj", M[:, a, :], X, optimize=True)
        d = kappa * (xa[..., None] * C[:, a].T[None, None]).real
        d += 2 * (xa.conj()[..., None] * MX).real
        d -= (np.abs(xa) ** 2)[..., None] * np.diagonal(M, axis1=1, axis2=2)[:, a].T.real[None, None]
        score[a] = np.sum(d * d, axis=(0, 1, 3))
    return score


def recorded_mode_scores(hm: HalfModes, U: np.ndarray, n_fwd_rows: int | None = None, bwd_shift: int = 1
                         ) -> np.ndarray:
    r"""Output energy of every stored mode's contribution on recorded inputs ``U`` (B, L, m).

    The states :math:`x_k = \lambda x_{k-1} + B u_k` are simulated on the recordings; mode a scores
    :math:`\sum_{b,k} \|\kappa\,\mathrm{Re}(C_{:,a} x_{a,k})\|^2` (plus the exact change of the quadratic
    output when ``hm.M`` is set). Rows beyond ``n_fwd_rows`` belong to the anticausal direction of a
    bidirectional block: they are scored on the time-reversed inputs (``bwd_shift`` 1: strictly
    anticausal, the last reversed state does not reach the output).
    """
    U = np.asarray(U, np.float64)
    p = hm.p if n_fwd_rows is None else int(n_fwd_rows)
    X = _states(hm.lam, U @ hm.B.T)
    if hm.M is not None:
        return quadratic_energy(X, hm.C, hm.M, hm.kappa)
    score = _linear_energy(X, hm.C[:p], hm.kappa)
    if p < hm.p:
        Xr = _states(hm.lam, U[:, ::-1] @ hm.B.T)
        if bwd_shift:
            Xr = Xr[:, :-1]
        score = score + _linear_energy(Xr, hm.C[p:], hm.kappa)
    return score


def _siso_units(block: Block) -> bool:
    return all(u.modes is not None and u.modes.m == 1 and u.modes.p == 1 and u.modes.M is None
               and u.bwd_outputs.size == 0 for u in block.units)


def _unit_scores(u: Unit, U: np.ndarray) -> np.ndarray | None:
    if u.modes is None:
        return None
    return recorded_mode_scores(u.modes, U[:, :, u.inputs], n_fwd_rows=u.outputs.size, bwd_shift=u.bwd_shift)


def recorded_calibration(blocks: Sequence[Block], layer_inputs: Mapping[str, np.ndarray], method: str,
                         rho: float) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Data weights of per-channel blocks and mode scores of the other blocks, from recorded inputs."""
    weights: dict[str, np.ndarray] = {}
    scores: dict[str, list] = {}
    for b in blocks:
        U = layer_inputs.get(b.name)
        if U is None:
            continue
        if _siso_units(b) and method in ("h2", "modal"):
            channels = np.array([int(u.inputs[0]) for u in b.units])
            weights[b.name] = lag_metric(U[:, :, channels], rho)
        elif not _siso_units(b):
            sc = [_unit_scores(u, U) for u in b.units]
            if all(s is not None for s in sc):
                scores[b.name] = sc
    return weights, scores


# Calibration data kept per block for the data-weighted fits of MIMO blocks (bounds task memory and time):
# at least READOUT_SEQUENCES sequences, more while they hold at most READOUT_VALUES numbers.
READOUT_SEQUENCES = 32
READOUT_VALUES = 2_000_000


def readout_sequences(U: np.ndarray) -> int:
    """How many of the recorded sequences U (B, L, m) the data-weighted MIMO fits use."""
    return max(READOUT_SEQUENCES, READOUT_VALUES // max(1, U.shape[1] * U.shape[2]))
