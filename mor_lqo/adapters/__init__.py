"""Deep-SSM checkpoint adapter: read S4D, S4, S5, LRU, DSS, Mamba and LQO state dicts, extract the exact
linear systems of their SSM blocks, and write reduced systems back (see docs/adapters.md).

Public API: :func:`load`, :func:`save`, :func:`extract`, :func:`reduce_state_dict`, :class:`Block`.
torch is imported lazily, only when a torch file or tensor is involved.
"""

from __future__ import annotations

from collections.abc import Mapping

from .block import Block, HalfModes
from .io import CheckpointDict, load, save
from .modal_form import to_half_modes
from .reduce import ReducerUnavailableError, modal_reducer, reduce_state_dict
from .registry import KNOWN


def extract(state_dict, arch: str = "auto", **settings) -> list[Block]:
    """Extract every SSM block of a state dict as exact discrete-time real-output systems.

    Parameters
    ----------
    state_dict : Mapping or path
        Flat, nested (``{'model': ...}``, ``{'state_dict': ...}``) or ``module.``-prefixed dict of torch
        tensors / numpy arrays, or a checkpoint path.
    arch : str
        ``"auto"`` (detect from key patterns) or one of :data:`KNOWN`.
    **settings
        Settings that are not stored in the state dict, with the upstream defaults, e.g. S4 v4
        ``disc="zoh"``, ``dt_transform="exp"``; S4 v3 ``disc="bilinear"``; S5 ``conj_sym=True``,
        ``discretization="zoh"``, ``step_rescale=1.0``; DSS ``version``, ``L`` (see each family module).

    Returns
    -------
    list of Block
        One per SSM layer, in state-dict order; ``block.systems`` are
        :class:`~mor_lqo.LQOSystem` objects (discrete, current-input convention, D included) and
        ``block.impulse_response(L)`` the real Markov parameters (L, p, m).

    Raises
    ------
    LayoutError
        Unknown or partial layout (the message lists what was found and the known layouts), or
        inconsistent shapes.
    """
    from ._common import to_numpy
    from .io import _View
    from .registry import extract as _extract

    if not isinstance(state_dict, Mapping):
        state_dict = load(state_dict)
    flat = {k: to_numpy(v) for k, v in _View(state_dict).flat.items()}
    return _extract(flat, arch, **settings)


__all__ = ["Block", "HalfModes", "CheckpointDict", "KNOWN", "load", "save", "extract",
           "reduce_state_dict", "modal_reducer", "to_half_modes", "ReducerUnavailableError"]
