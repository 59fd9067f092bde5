"""Inputs and write-back: the flat state dict of any input, the reference model, dtype-preserving
replacement, and the verification of written-back blocks by re-extraction."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ...adapters._common import is_torch_tensor, to_numpy
from ...adapters.block import Block, HalfModes
from ...adapters.io import _View
from ...adapters.io import load as _load_checkpoint
from ...adapters.registry import family
from ...errors import LayoutError, ShapeError
from ..models import LQOModel, S4DModel
from .constants import CHECK_LAGS


def _flat_input(obj):
    """(original mapping or None, flat numpy dict, numpy model class or None, source path or None)."""
    if isinstance(obj, (S4DModel, LQOModel)):
        return None, obj.state_dict(), type(obj), None
    if isinstance(obj, (str, Path)):
        ck = _load_checkpoint(obj)
        return ck, dict(ck), None, getattr(ck, "source", None)
    if isinstance(obj, Mapping):
        view = _View(obj)
        return obj, {k: np.asarray(to_numpy(v)) for k, v in view.flat.items()}, None, None
    raise TypeError(f"expected an S4DModel/LQOModel, a state dict or a checkpoint path, got {type(obj).__name__}")


def dotted_prefix(keys) -> str:
    """The longest common prefix of ``keys`` that ends with a dot (``"model."`` for a Lightning module's
    ``self.model``), or ``""``."""
    keys = list(keys)
    common = os.path.commonprefix(keys) if keys else ""
    return common[: common.rfind(".") + 1]


def _reference_model(flat: Mapping[str, np.ndarray], blocks: Sequence[Block], cls=None):
    """The numpy reference model of a flat state dict (None if the layout is not a reference family); keys
    under a common prefix (a wrapping module's attribute, e.g. ``model.``) are read without it."""
    archs = {b.arch for b in blocks}
    cands = [cls] if cls is not None else ([S4DModel] if archs == {"s4d"} else [LQOModel] if archs == {"lqo"} else [])
    for c in cands:
        for pre in dict.fromkeys(("", dotted_prefix(flat))):
            try:
                return c.from_state_dict({k[len(pre):]: v for k, v in flat.items()})
            except (LayoutError, ShapeError):
                continue
    return None


def _like(orig, new: np.ndarray):
    """``new`` in the array type, dtype and device of ``orig``."""
    if is_torch_tensor(orig):
        import torch

        return torch.from_numpy(np.ascontiguousarray(new)).to(dtype=orig.dtype, device=orig.device)
    return np.asarray(new).astype(np.asarray(orig).dtype)


def _kernels_of(modes: Sequence[HalfModes], Lc: int) -> np.ndarray:
    """Linear Markov parameters (N, Lc, p, m) of units (all with the same p, m), padded."""
    n = max(hm.n for hm in modes)
    N, p, m = len(modes), modes[0].p, modes[0].m
    lam = np.zeros((N, n), np.complex128)
    B = np.zeros((N, n, m), np.complex128)
    C = np.zeros((N, p, n), np.complex128)
    for i, hm in enumerate(modes):
        lam[i, : hm.n], B[i, : hm.n], C[i, :, : hm.n] = hm.lam, hm.B, hm.C * hm.kappa
    pw = np.power(lam[:, :, None], np.arange(Lc))  # (N, n, Lc)
    K = np.einsum("npk,nkl,nkm->nlpm", C, pw, B, optimize=True).real
    K[:, 0] += np.stack([hm.D for hm in modes])
    return K


def _unit_kernels(units, Lc: int) -> np.ndarray:
    """Markov parameters (N, Lc, p, m) of units: from their half modes, or from the dense system (S4 DPLR)."""
    if all(u.modes is not None for u in units):
        return _kernels_of([u.modes for u in units], Lc)
    return np.stack([np.real(u.system.impulse_response(Lc)) for u in units])


def _verify_block(block: Block, flat64: dict, arrays: dict, modes: Sequence[HalfModes]) -> float:
    """Max relative mismatch between the reduced units and the re-extracted written arrays."""
    fam = family(block.arch)
    tmp = dict(flat64)
    tmp.update(arrays)
    nb = fam.extract(tmp, block.name, **block.settings)
    if len(nb.units) != len(modes):
        return float("nan")
    got = [u.modes for u in nb.units]
    worst = 0.0
    groups: dict[tuple, list[int]] = {}
    for i, hm in enumerate(modes):
        groups.setdefault((hm.p, hm.m), []).append(i)
    for idx in groups.values():
        ref = _kernels_of([modes[i] for i in idx], CHECK_LAGS)
        new = _unit_kernels([nb.units[i] for i in idx], CHECK_LAGS)
        old = _unit_kernels([block.units[i] for i in idx], CHECK_LAGS)
        scale = np.maximum(np.linalg.norm(ref.reshape(len(idx), -1), axis=1),
                           np.linalg.norm(old.reshape(len(idx), -1), axis=1))
        err = np.linalg.norm((new - ref).reshape(len(idx), -1), axis=1) / np.maximum(scale, 1e-300)
        worst = max(worst, float(np.max(err)))
    rng = np.random.default_rng(0)
    for i, hm in enumerate(modes):
        if hm.M is not None or (got[i] is not None and got[i].M is not None):
            u = rng.standard_normal((8, hm.m))  # quadratic outputs on a random input (exact recurrences)
            a, b = _quad_response(hm, u), _quad_response(got[i], u)
            ref_ = max(np.linalg.norm(a), np.linalg.norm(_quad_response(block.units[i].modes, u)), 1e-300)
            worst = max(worst, float(np.linalg.norm(a - b) / ref_))
    return worst


def _quad_response(hm: HalfModes, u: np.ndarray) -> np.ndarray:
    """Quadratic outputs x_k^H M_j x_k (T, p) of the stored state for an input sequence u (T, m)."""
    if hm.M is None:
        return np.zeros((u.shape[0], hm.p))
    x = np.zeros(hm.n, np.complex128)
    out = np.empty((u.shape[0], hm.p))
    for k in range(u.shape[0]):
        x = hm.lam * x + hm.B @ u[k]
        out[k] = np.einsum("p,jpq,q->j", x.conj(), hm.M, x).real
    return out
