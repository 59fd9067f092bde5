"""Find the SSM blocks of a torch module: unwrap wrappers, map state-dict prefixes to submodules, read the
settings the state dict does not record from the modules themselves, and check them against what the
modules compute."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..adapters.block import Block
from ..adapters.registry import KNOWN, detect, family
from ..errors import LayoutError, SettingsMismatchError

__all__ = ["Unwrapped", "unwrap", "FoundBlock", "find_blocks", "settings_from_modules", "check_settings"]

# Relative mismatch tolerated between the extracted kernel and the module's own (float32 arithmetic in the
# module: ~1e-6; a wrong discretisation or dt transform gives 1e-2 ... 1).
SETTINGS_RTOL = 1e-3
PROBE_LAGS = 32


@dataclass(frozen=True)
class Unwrapped:
    """The module that holds the weights and the wrappers around it (outermost first)."""

    core: nn.Module
    wrappers: tuple[tuple[str, nn.Module], ...]


def unwrap(module: nn.Module) -> Unwrapped:
    """Strip ``torch.compile`` (``_orig_mod``), ``DataParallel`` and ``DistributedDataParallel`` wrappers."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
    wrappers = []
    while True:
        inner = getattr(module, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            wrappers.append(("compile", module))
            module = inner
        elif isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            wrappers.append(("parallel", module))
            module = module.module
        else:
            return Unwrapped(module, tuple(wrappers))


def rewrap(new_core: nn.Module, wrappers) -> tuple[nn.Module, list[str]]:
    """The reduced core in the same wrappers where that is possible without a process group; notes."""
    notes = []
    out = new_core
    for kind, w in reversed(wrappers):
        if kind == "parallel" and type(w) is nn.DataParallel:
            kw = {k: vars(w)[k] for k in ("device_ids", "output_device", "dim") if k in vars(w)}  # unset on CPU
            out = nn.DataParallel(out, **kw)
        elif kind == "parallel":
            notes.append(f"the {type(w).__name__} wrapper was removed (it needs the process group); wrap the "
                         "returned module again")
        else:
            notes.append("the torch.compile wrapper was removed; call torch.compile on the returned module")
    return out, notes


@dataclass(frozen=True)
class FoundBlock:
    """An SSM block of a module: layout name, state-dict prefix and the submodule that owns its weights."""

    arch: str
    prefix: str
    module: nn.Module


def _module_at(core: nn.Module, prefix: str) -> nn.Module:
    path = prefix.rstrip("./")
    return core.get_submodule(path) if path else core


def find_blocks(core: nn.Module, arch: str = "auto") -> list[FoundBlock]:
    """Every SSM block the adapter knows, found from the module's state-dict keys.

    Raises
    ------
    LayoutError
        No known block: the message lists the module classes seen and the known layouts.
    """
    keys = list(core.state_dict().keys())
    try:
        found = detect(dict.fromkeys(keys), arch)
    except LayoutError as exc:
        classes = sorted({type(m).__name__ for m in core.modules()})
        raise LayoutError(f"no SSM block that mor_lqo knows in {type(core).__name__}: module classes seen "
                          f"{classes}; known layouts {', '.join(KNOWN)} ({exc})") from None
    return [FoundBlock(a, p, _module_at(core, p)) for a, p in found]


def _plain(value) -> bool:
    return value is None or isinstance(value, (str, bool, numbers.Real))


def _module_setting(mod: nn.Module, key: str):
    """(found, value) of a plain attribute ``key`` on ``mod`` or its submodules (nearest first)."""
    for sub in mod.modules():
        if key in vars(sub) and _plain(vars(sub)[key]):
            return True, vars(sub)[key]
    return False, None


def _s5_pytorch_discretization(mod: nn.Module):
    """s5-pytorch stores the discretisation as a function ``discretize_zoh`` / ``discretize_bilinear``."""
    fn = vars(mod).get("discretize")
    name = getattr(fn, "__name__", "")
    for d in ("zoh", "bilinear"):
        if name.endswith(d):
            return d
    return None


def settings_from_modules(blocks: list[FoundBlock], given: dict) -> dict:
    """Settings of the layouts found, read from the blocks' modules; ``given`` settings must agree.

    Returns one dict for all blocks (the adapter takes one value per setting); blocks that disagree with
    each other or with ``given`` raise :class:`SettingsMismatchError`.
    """
    out = dict(given)
    source: dict[str, str] = {k: "given" for k in given}
    for fb in blocks:
        keys = family(fb.arch).defaults
        for key in keys:
            found, value = _module_setting(fb.module, key)
            if fb.arch == "s5" and key == "discretization":
                value = _s5_pytorch_discretization(fb.module)
                found = value is not None
            if not found or value is None:
                continue
            if key in out and out[key] != value:
                raise SettingsMismatchError(
                    f"{fb.prefix or '<root>'}: {key}={value!r} in the module, but {key}={out[key]!r} "
                    f"({source[key]}); blocks with different settings cannot be compressed in one call")
            out[key] = value
            source[key] = f"read from {fb.prefix or '<root>'}"
    return out


def _kernel_of(module: nn.Module, L: int) -> np.ndarray | None:
    """The convolution kernel ``module.kernel(L=L)`` as (channels, H, L) float64, or None if unavailable."""
    kern = getattr(module, "kernel", None)
    if not isinstance(kern, nn.Module):
        return None
    try:
        with torch.no_grad():
            k = kern(L=L)
    except TypeError:
        return None
    if isinstance(k, (tuple, list)):
        k = k[0]
    if not isinstance(k, torch.Tensor) or k.is_complex() or k.shape[-1] != L:
        return None
    k = k.detach().cpu().double().numpy()
    return k.reshape(-1, *k.shape[-2:]) if k.ndim >= 2 else None


def _kernel_mismatch(block: Block, K: np.ndarray, L: int) -> float | None:
    """Relative mismatch of the extracted per-channel kernels and the module's (None: not comparable)."""
    if K.shape[1] != len(block.units) or any(u.bwd_outputs.size for u in block.units):
        return None
    got, ref = [], []
    for h, u in enumerate(block.units):
        g = np.real(u.system.impulse_response(L)[:, :, 0]).copy()  # (L, p)
        g[0] -= np.real(u.system.D[:, 0])
        if g.shape[1] > K.shape[0]:
            return None
        got.append(g.T)
        ref.append(K[: g.shape[1], h])
    got, ref = np.concatenate(got), np.concatenate(ref)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


# layouts whose recorded module (S5 / LRU layer) outputs exactly the linear SSM map y = Re(C x) + D u
LINEAR_RECORDED = ("s5", "lru")


def _impulse_mismatch(module: nn.Module, block: Block, L: int) -> float | None:
    """Relative mismatch of the extracted Markov parameters and the module's impulse responses (lags ≥ 1 for
    bidirectional blocks, whose anticausal part only reaches lag 0)."""
    if len(block.units) != 1:
        return None
    u = block.units[0]
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    m = block.m
    U = torch.zeros(m, L, m, dtype=dtype, device=device)
    U[torch.arange(m), 0, torch.arange(m)] = 1.0
    try:
        with torch.no_grad():
            Y = module(U)
    except Exception:  # noqa: BLE001 - a module that cannot be called alone is not checked
        return None
    Y = Y[0] if isinstance(Y, (tuple, list)) else Y
    if not isinstance(Y, torch.Tensor) or tuple(Y.shape) != (m, L, block.p):
        return None
    got = Y.detach().cpu().double().numpy().transpose(1, 2, 0)  # (L, p, m)
    h = np.real(u.system.impulse_response(L))[:, : u.outputs.size]  # causal rows
    ref = np.zeros_like(got)
    ref[:, u.outputs] = h
    first = 1 if u.bwd_outputs.size else 0
    return float(np.linalg.norm(got[first:] - ref[first:]) / max(np.linalg.norm(ref[first:]), 1e-30))


def check_settings(fb: FoundBlock, block: Block, settings: dict, recorded: nn.Module | None = None) -> str:
    """Compare the extracted block with what the module computes; raise on a mismatch.

    Per-channel layouts: the module's ``kernel(L)``; S5 / LRU: impulse responses of the module whose input
    was recorded (``recorded``). Returns ``"kernel"``, ``"impulse response"`` or ``"not checked: ..."``.
    """
    L = PROBE_LAGS
    K = _kernel_of(fb.module, L)
    if K is not None:
        err, what = _kernel_mismatch(block, K, L), "kernel"
    elif recorded is not None and block.arch in LINEAR_RECORDED:
        err, what = _impulse_mismatch(recorded, block, L), "impulse response"
    else:
        return "not checked: no kernel(L) method and no linear layer to probe"
    if err is None:
        return f"not checked: {what} layout not comparable"
    if not err <= SETTINGS_RTOL:
        used = {k: settings.get(k, v) for k, v in family(block.arch).defaults.items()}
        raise SettingsMismatchError(
            f"{block.name or '<root>'} ({block.arch}): the system extracted with settings {used} differs from the "
            f"module's own {what} by {err:.3g} (relative, first {L} lags); a setting that the state dict does not "
            "record (dt_transform, disc, ...) is wrong: pass it explicitly")
    return what
