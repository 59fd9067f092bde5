"""Record the sequences that enter every SSM block of a torch module on calibration batches (forward
pre-hooks), in the (batch, L, m) layout of :func:`mor_lqo.deep.compress.compress`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import CalibrationError
from .modules import FoundBlock

__all__ = ["batches", "call_module", "record_block_inputs"]


def batches(calibration) -> list:
    """The calibration batches: one tensor/array, or an iterable of them (DataLoader-style ``(x, y)`` tuples
    and dicts of keyword arguments are allowed)."""
    if isinstance(calibration, (torch.Tensor, np.ndarray)):
        return [calibration]
    if isinstance(calibration, (str, bytes, Mapping)) or not isinstance(calibration, Iterable):
        raise CalibrationError(f"calibration must be a tensor, an array or an iterable of batches, got "
                               f"{type(calibration).__name__}")
    out = list(calibration)
    if not out:
        raise CalibrationError("calibration holds no batch")
    return out


def _as_input(x, dtype: torch.dtype, device):
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise CalibrationError("calibration arrays of Python objects are not accepted")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        if x.is_floating_point() and x.dtype != dtype:
            x = x.to(dtype)
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise CalibrationError("calibration batch contains NaN or infinite values")
        return x.to(device)
    return x


def call_module(module: nn.Module, batch, dtype: torch.dtype, device):
    """``module(batch)``: a tensor is the input; a tuple/list's first element is (labels are never used); a
    dict is passed as keyword arguments."""
    if isinstance(batch, Mapping):
        return module(**{k: _as_input(v, dtype, device) for k, v in batch.items()})
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise CalibrationError("empty calibration batch")
        batch = batch[0]
    return module(_as_input(batch, dtype, device))


def _first_tensor(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a
    return None


def _plain_numpy(t: torch.Tensor) -> np.ndarray | None:
    """A copy of an ordinary tensor (None for functorch-batched or complex tensors)."""
    if t.is_complex() or not t.is_floating_point():
        return None
    try:
        return t.detach().cpu().double().numpy().copy()
    except (RuntimeError, TypeError):  # vmap / functorch wrappers have no storage
        return None


def _candidates(core: nn.Module, fb: FoundBlock) -> list[tuple[str, nn.Module]]:
    """The block's module and up to two ancestors (nearest first): where its input sequence is visible."""
    path = fb.prefix.rstrip("./")
    parts = path.split(".") if path else []
    out = []
    for k in range(len(parts), max(len(parts) - 3, -1), -1):
        p = ".".join(parts[:k])
        out.append((p, core.get_submodule(p) if p else core))
    return out


# layouts whose layers always take (batch, L, m) sequences (the recurrent / MIMO families)
CHANNELS_LAST = ("s5", "s5_jax", "lru", "lru_jax", "lqo")


def _to_blm(arrays: list[np.ndarray], m: int, module: nn.Module, channels_last: bool = False
            ) -> tuple[np.ndarray, bool] | None:
    """Recorded inputs stacked as (batch, L, m) and whether the module takes them as (batch, m, L); None if
    they do not look like sequences of m channels."""
    out, swapped = [], False
    for a in arrays:
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            return None
        last, mid = a.shape[2] == m, a.shape[1] == m
        if last and mid and channels_last:
            mid = False
        if last and mid:
            transposed = getattr(module, "transposed", None)
            if transposed is None:
                raise CalibrationError(f"cannot tell the channel axis of the inputs of {type(module).__name__}: the "
                                       f"sequence length equals the {m} channels; use another calibration length")
            last = not transposed
        if last:
            out.append(a)
        elif mid:
            out.append(np.swapaxes(a, 1, 2))
            swapped = True
        else:
            return None
    lengths = sorted({a.shape[1] for a in out})
    if len(lengths) > 1:
        raise CalibrationError(f"calibration batches have different sequence lengths {lengths}; the finite-horizon "
                               "fit needs one length")
    return np.ascontiguousarray(np.concatenate(out, axis=0)), swapped


def record_block_inputs(core: nn.Module, blocks: list[FoundBlock], ms: dict[str, int], calibration, dtype,
                        device) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, bool]], list]:
    """Run the calibration batches through ``core`` (eval mode, no grad) and record every block's input.

    Returns ``({prefix: (B, L, m) float64}, {prefix: (path of the module whose input was recorded, whether it
    takes (B, m, L))}, outputs)``.
    The module's training flag is restored and every hook removed, also on errors.
    """
    seen: dict[tuple[str, str], list[np.ndarray]] = {}
    handles = []
    cands = {fb.prefix: _candidates(core, fb) for fb in blocks}

    def hook_for(prefix, path):
        def hook(_mod, args, kwargs):
            t = _first_tensor(args, kwargs)
            a = None if t is None else _plain_numpy(t)
            if a is not None:
                seen.setdefault((prefix, path), []).append(a)
        return hook

    was_training = core.training
    outputs = []
    try:
        for fb in blocks:
            for path, mod in cands[fb.prefix]:
                handles.append(mod.register_forward_pre_hook(hook_for(fb.prefix, path), with_kwargs=True))
        core.eval()
        with torch.no_grad():
            for batch in batches(calibration):
                try:
                    outputs.append(call_module(core, batch, dtype, device))
                except CalibrationError:
                    raise
                except Exception as exc:
                    raise CalibrationError(f"the module failed on a calibration batch ({type(exc).__name__}: "
                                           f"{exc}); check its shape and dtype") from exc
    finally:
        for h in handles:
            h.remove()
        core.train(was_training)
    recorded, where = {}, {}
    for fb in blocks:
        for path, mod in cands[fb.prefix]:
            arrays = seen.get((fb.prefix, path))
            got = None if arrays is None else _to_blm(arrays, ms[fb.prefix], mod, fb.arch in CHANNELS_LAST)
            if got is not None:
                recorded[fb.prefix], where[fb.prefix] = got[0], (path, got[1])
                break
        else:
            raise CalibrationError(f"{fb.prefix or '<root>'}: no (batch, L, {ms[fb.prefix]}) input sequence was seen "
                                   "at the block or its parents on the calibration data (is the block used?)")
    return recorded, where, outputs
