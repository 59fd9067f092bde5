r"""h2 errors of every SSM block between an original checkpoint and a compressed one of the same layout.

:func:`compress` reports these errors for the blocks it reduced. Anything that changes the reduced
tensors afterwards (:func:`mor_lqo.torch.minimise_bound`, a fine-tuning step) makes them stale;
:func:`layer_errors` measures them again from the two state dicts, by the same per-unit formulas
(closed-form Cauchy sums for SISO units, :func:`mor_lqo.h2_error` and the finite-horizon kernel sums for
MIMO/LQO units), root sums of squares over the units of each block:

.. math::

    e = \Big(\sum_{u} \|\Sigma_u - \hat\Sigma_u\|_{h_2}^2\Big)^{1/2}, \qquad
    e_L = \Big(\sum_{u} \sum_{k < L} \|h_u(k) - \hat h_u(k)\|^2\Big)^{1/2}\ \text{(plus the quadratic kernels)} .
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...adapters.registry import extract, family
from ...errors import LayoutError
from .pipeline import _error_fields
from .tasks import _dense_unit_errors, _unit_modes
from .unit_modes import _unit_errors
from .verify import _flat_input

__all__ = ["layer_errors"]


def layer_errors(original, compressed, length: int | None = None, arch: str = "auto", **settings
                 ) -> dict[str, dict[str, Any]]:
    """Per-block h2 errors of ``compressed`` against ``original``.

    Parameters
    ----------
    original, compressed : S4DModel, LQOModel, mapping or path
        Two checkpoints of the same layout with the same blocks and units (orders may differ).
    length : int, optional
        Horizon L of the finite-horizon errors.
    arch : str
        Layout (``"auto"`` detects it).
    **settings
        Layout settings the checkpoints do not record (see :func:`mor_lqo.adapters.extract`).

    Returns
    -------
    dict
        ``{block name: {"h2_error", "h2_norm", "rel_h2_error"[, "h2_error_L", "rel_h2_error_L"]}}`` for the
        LTI blocks (None where undefined, e.g. a unit with a mode on the unit circle that the other
        checkpoint does not keep exactly).

    Raises
    ------
    LayoutError
        If the two checkpoints do not have the same blocks with the same numbers of units.
    """
    sd0, sd1 = _flat_input(original)[1], _flat_input(compressed)[1]
    b0 = {b.name: b for b in extract(sd0, arch, **settings) if b.lti}
    b1 = {b.name: b for b in extract(sd1, arch, **settings) if b.lti}
    if b0.keys() != b1.keys():
        raise LayoutError(f"the checkpoints have different SSM blocks: {sorted(b0)} vs {sorted(b1)}")
    out = {}
    for name, blk in b0.items():
        other = b1[name]
        if len(blk.units) != len(other.units):
            raise LayoutError(f"{name}: {len(blk.units)} units in the original, {len(other.units)} in the other")
        fam = family(blk.arch)
        full = [_unit_modes(u, fam.kappa(blk), fam.sign(blk), "h2", f"{name} unit {i}")
                for i, u in enumerate(blk.units)]
        red = [_unit_modes(u, fam.kappa(other), fam.sign(other), "h2", f"{name} unit {i}")
               for i, u in enumerate(other.units)]
        red = [f if _same(f, r) else r for f, r in zip(full, red)]
        dts = [float(u.system.dt) for u in blk.units]
        res = _unit_errors(full, red, dts, length)
        # dense units (S4 DPLR): against the original realisation, as compress measures them
        _dense_unit_errors(res, [None if u.modes is not None else u.system for u in blk.units], full, red, dts,
                           length)
        out[name] = _error_fields(res)
    return out


def refresh_layer_errors(layers: list[Mapping[str, Any]], errors: Mapping[str, Mapping[str, Any]]
                         ) -> list[dict[str, Any]]:
    """``layers`` (entries of a :class:`CompressionResult`) with their error fields replaced by ``errors``."""
    out = []
    for lay in layers:
        e = dict(lay)
        e.update(errors.get(e["name"], {}))
        out.append(e)
    return out


def _same(a, b) -> bool:
    """Whether two units hold identical modes (their error is then exactly 0, not a rounding residue)."""
    arrays = ("lam", "B", "C", "D")
    return (a.kappa == b.kappa and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in arrays)
            and ((a.M is None and b.M is None) or (a.M is not None and b.M is not None and np.array_equal(a.M, b.M))))
