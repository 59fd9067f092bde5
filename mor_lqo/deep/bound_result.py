r"""Result objects of the output-error bound (:mod:`mor_lqo.deep.bound`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LayerBound", "BoundResult"]


@dataclass
class LayerBound:
    """Per-layer terms of the bound.

    Attributes
    ----------
    index : int
        Layer index.
    name : str
        State-dict prefix of the SSM block.
    h2_error : float
        Finite-horizon (sequence length) h2 error of the block's real input–output map (root sum of
        squares over channels for S4D; linear and quadratic parts for LQO, see ``linear``/``quadratic``).
    contribution : float
        The bound when only this layer is compressed (all other layers exact), max over the batch.
    first_order : float
        The first-order (small-error, unsaturated) form of ``contribution``
        (:meth:`BoundEvaluator.propagate` with ``linear=True``).
    share : float
        ``first_order / sum of first_order`` over the layers: the layers' shares of the bound to first
        order (the saturated bound gives every layer the same cap, so its shares say nothing).
    weight : float
        ``first_order / h2_error``: how strongly an h2 error of this layer is amplified by the rest of
        the network (larger for shallow layers).
    linear, quadratic : float or None
        LQO blocks: the linear / quadratic parts of ``h2_error``.
    channel_errors : ndarray or None
        S4D blocks: per-channel finite-horizon h2 errors.
    """

    index: int
    name: str
    h2_error: float
    contribution: float = 0.0
    first_order: float = 0.0
    share: float = 0.0
    weight: float = 0.0
    linear: float | None = None
    quadratic: float | None = None
    channel_errors: np.ndarray | None = None


@dataclass
class BoundResult:
    """Output-error bound of a compressed Deep SSM.

    Attributes
    ----------
    value : float
        The bound: max over the batch (a posteriori) or the a-priori bound.
    kind : str
        ``"a-posteriori"`` or ``"a-priori"``.
    per_sample : ndarray or None
        A-posteriori bound of every sequence of the batch: the smaller of Theorem 1 (Lemma 1/2
        injections, ``per_sample_lemma``) and Theorem 2 (exact layer injections at the hybrid point,
        :mod:`mor_lqo.deep.bound_hybrid`; needs the reduced parameters, so not when only layer terms
        are given).
    measured : ndarray or None
        Measured :math:`\\|f(x) - \\hat f(x)\\|_2` per sequence (a posteriori only).
    length : int
        Sequence length L (the horizon of the h2 errors).
    layers : list of LayerBound
    constants : dict
        The Lipschitz constants used (computed), per layer.
    per_sample_lemma : ndarray or None
        A-posteriori bound of Theorem 1 alone, per sequence.
    cap : ndarray or None
        The trivial cap per sequence (a posteriori) or the a-priori cap (one value); see ``saturated``.
    """

    value: float
    kind: str
    length: int
    layers: list[LayerBound]
    per_sample: np.ndarray | None = None
    measured: np.ndarray | None = None
    constants: dict[str, Any] = field(default_factory=dict)
    per_sample_lemma: np.ndarray | None = None
    cap: np.ndarray | None = None

    @property
    def saturated(self) -> bool:
        r"""Whether the bound equals its trivial cap :math:`\|W_{dec}\|_2 \frac1L\sum_k (\|u^{(N)}_k - \beta\|
        + \max|\gamma|\sqrt H)` (for the sequence that attains ``value``)."""
        if self.cap is None:
            return False
        per = self.per_sample if self.per_sample is not None else np.array([self.value])
        j = int(np.argmax(per))
        return bool(per[j] >= self.cap[min(j, self.cap.size - 1)] * (1.0 - 1e-9))

    @property
    def measured_max(self) -> float | None:
        """Largest measured logit error of the batch (None for a-priori bounds)."""
        return None if self.measured is None else float(np.max(self.measured))

    @property
    def tightness(self) -> float | None:
        """``max_x measured(x) / bound(x)`` over the batch (≤ 1 always; 1 would be tight)."""
        if self.measured is None or self.per_sample is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(self.per_sample > 0, self.measured / self.per_sample, 0.0)
        return float(np.max(r))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return {
            "value": float(self.value),
            "kind": self.kind,
            "length": int(self.length),
            "measured_max_error": self.measured_max,
            "tightness": self.tightness,
            "saturated": self.saturated,
            "layers": [
                {
                    "index": lb.index,
                    "name": lb.name,
                    "h2_error": lb.h2_error,
                    "share": lb.share,
                    "weight": lb.weight,
                    "contribution": lb.contribution,
                    "linear": lb.linear,
                    "quadratic": lb.quadratic,
                }
                for lb in self.layers
            ],
        }
