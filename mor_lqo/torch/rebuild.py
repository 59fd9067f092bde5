"""Build the smaller module: a deep copy of the original with the reduced parameters swapped in (same
classes, same wrappers where possible), size attributes updated, loaded strictly."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import LayoutError

__all__ = ["build_reduced", "count_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalars in the module's parameters (complex entries count twice), each tensor once."""
    seen, n = set(), 0
    for p in module.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        n += p.numel() * (2 if p.is_complex() else 1)
    return n


def _resize_slot(mod: nn.Module, leaf: str, new: torch.Tensor) -> None:
    if leaf in mod._parameters and mod._parameters[leaf] is not None:
        old = mod._parameters[leaf]
        mod._parameters[leaf] = nn.Parameter(torch.zeros(new.shape, dtype=old.dtype, device=old.device),
                                             requires_grad=old.requires_grad)
    elif leaf in mod._buffers and mod._buffers[leaf] is not None:
        old = mod._buffers[leaf]
        mod._buffers[leaf] = torch.zeros(new.shape, dtype=old.dtype, device=old.device)
    else:
        raise LayoutError(f"cannot resize {leaf!r} of {type(mod).__name__}: not a parameter or buffer")


def _resize_state_attributes(mod: nn.Module, old_n: int, new_n: int) -> list[str]:
    """Plain tensor attributes holding a zero state of the old size (e.g. a recurrent ``state``) resized."""
    changed = []
    for name, val in list(vars(mod).items()):
        if isinstance(val, torch.Tensor) and not isinstance(val, nn.Parameter) and val.ndim >= 1 \
                and val.shape[-1] == old_n and not bool(val.count_nonzero()):
            setattr(mod, name, torch.zeros(*val.shape[:-1], new_n, dtype=val.dtype, device=val.device))
            changed.append(name)
    return changed


# integer attributes that upstream layers use as their state size (stored modes N or real state 2N)
STATE_SIZE_NAMES = ("N", "n", "d_state", "state_dim", "state_width", "state_features", "P", "n_modes", "ssm_size")


def _set_state_sizes(mod: nn.Module, old_n: int, new_n: int, done: set) -> list[str]:
    """State-size attributes (:data:`STATE_SIZE_NAMES`) equal to the old stored size N (or 2N) set to the new."""
    changed = []
    for sub in mod.modules():
        for name in STATE_SIZE_NAMES:
            cur = vars(sub).get(name)
            if (id(sub), name) in done or not isinstance(cur, int) or isinstance(cur, bool):
                continue
            new = new_n if cur == old_n else 2 * new_n if cur == 2 * old_n else None
            if new is not None and new != cur:
                setattr(sub, name, new)
                done.add((id(sub), name))
                changed.append(f"{type(sub).__name__}.{name} {cur} -> {new}")
    return changed


def _set_size_hints(mod: nn.Module, build: Mapping) -> list[str]:
    """Integer attributes named like the layout's constructor hints (``d_state``, ``state_features``, ...)."""
    changed = []
    for sub in mod.modules():
        for name, value in (build or {}).items():
            cur = vars(sub).get(name)
            if isinstance(cur, int) and not isinstance(cur, bool) and isinstance(value, int) and cur != value:
                setattr(sub, name, value)
                changed.append(f"{type(sub).__name__}.{name} {cur} -> {value}")
    return changed


def build_reduced(core: nn.Module, new_flat: Mapping[str, torch.Tensor], layers: list[dict],
                  block_modules: Mapping[str, nn.Module]) -> tuple[nn.Module, list[str]]:
    """A deep copy of ``core`` holding ``new_flat`` (strict load); the original is not touched.

    ``layers`` are the compression report entries (``name``, ``build``, ``stored_before``/``stored_after``);
    ``block_modules`` maps block names to the original block modules (their copies get the size hints).
    """
    new = copy.deepcopy(core)
    old_sd = core.state_dict()
    unknown = set(new_flat) - set(old_sd)
    if unknown:
        raise LayoutError(f"internal: reduced state dict has keys the module lacks: {sorted(unknown)[:5]}")
    for key, val in new_flat.items():
        if tuple(old_sd[key].shape) != tuple(val.shape):
            path, _, leaf = key.rpartition(".")
            _resize_slot(new.get_submodule(path) if path else new, leaf, val)
    notes = []
    names = {id(m): n for n, m in core.named_modules()}
    for lay in layers:
        mod = block_modules.get(lay["name"])
        if mod is None or lay.get("stored_after") == lay.get("stored_before"):
            continue
        path = names[id(mod)]
        sub = new.get_submodule(path) if path else new
        notes += [f"{lay['name']}: {c}" for c in _set_size_hints(sub, lay.get("build"))]
        done = {(id(m), k) for m in sub.modules() for k in (lay.get("build") or {})}
        notes += [f"{lay['name']}: {c}" for c in _set_state_sizes(sub, int(lay["stored_before"]),
                                                                    int(lay["stored_after"]), done)]
        for m in sub.modules():
            for name in _resize_state_attributes(m, int(lay["stored_before"]), int(lay["stored_after"])):
                notes.append(f"{lay['name']}: zero state attribute {name!r} resized to {lay['stored_after']}")
    new.load_state_dict(dict(new_flat), strict=True)
    notes += _update_hparams(new, layers)
    return new, notes


def _update_hparams(root: nn.Module, layers: list[dict]) -> list[str]:
    """Saved hyper-parameters (Lightning's ``hparams``) of ``root`` and its submodules set to the new sizes,
    so that a checkpoint the user's trainer writes from the reduced module loads back
    (``load_from_checkpoint`` builds the module from them)."""
    from ..adapters.reduce import size_hints, updated_hparams

    hints = size_hints(layers)
    notes = []
    for sub in root.modules():
        for attr in ("_hparams", "_hparams_initial"):
            hp = vars(sub).get(attr)
            if not isinstance(hp, Mapping) or not hp:
                continue
            new_hp, changed = updated_hparams(hp, hints)
            if changed:
                setattr(sub, attr, type(hp)(new_hp))
                if attr == "_hparams":
                    notes += [f"{type(sub).__name__}.hparams: {c}" for c in changed]
    return notes
