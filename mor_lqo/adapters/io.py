"""Safe loading and atomic saving of Deep-SSM checkpoints.

* ``.safetensors`` (safetensors), ``.pt``/``.pth``/``.ckpt``/``.bin`` (``torch.load(..., weights_only=True)``:
  a pickle that would run code is refused, never executed), ``.npz`` (``allow_pickle=False``).
* Nested checkpoints (``{'model': ...}``, ``{'state_dict': ...}``, ``{'model_state_dict': ...}``, ...) are
  unwrapped, a common ``module.`` / ``_orig_mod.`` prefix is stripped and nested pytrees (Flax
  ``{'params': {...}}``) are flattened with ``/``.
* :func:`save` writes atomically (temporary file in the target directory + ``os.replace``) and refuses to
  overwrite a file this process loaded a checkpoint from, or any existing file unless ``overwrite=True``.

torch is imported lazily, only for torch files or tensors.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_output
from ..errors import CheckpointError
from ._common import is_torch_tensor, to_numpy

__all__ = ["load", "save", "CheckpointDict"]

WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "ema")
PREFIXES = ("module.", "_orig_mod.")
TORCH_EXT = (".pt", ".pth", ".ckpt", ".bin")

# resolved paths of every file this process has loaded a checkpoint from
_LOADED: set[str] = set()


class CheckpointDict(dict):
    """Flat ``{key: ndarray}`` state dict that remembers the file it was loaded from (``source``)."""

    source: str | None = None


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or is_torch_tensor(x)


def _has_arrays(x) -> bool:
    if _is_array(x):
        return True
    if isinstance(x, Mapping):
        return any(_has_arrays(v) for v in x.values())
    return False


class _View:
    """Flat view of a (possibly nested / wrapped / prefixed) state dict, and how to rebuild it."""

    def __init__(self, obj: Mapping):
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"a state dict must be a mapping, got {type(obj).__name__}")
        self.obj = obj
        self.wrapper = None
        for w in WRAPPERS:
            if w in obj and isinstance(obj[w], Mapping) and _has_arrays(obj[w]):
                top_arrays = [k for k, v in obj.items() if k != w and _is_array(v)]
                if not top_arrays:
                    self.wrapper = w
                    self.inner = _View(obj[w])
                    self.flat = self.inner.flat
                    return
        flat: dict[str, Any] = {}
        self.paths: dict[str, tuple] = {}

        def walk(m, path):
            for k, v in m.items():
                p = path + (k,)
                if _is_array(v):
                    key = "/".join(str(x) for x in p)
                    flat[key] = v
                    self.paths[key] = p
                elif isinstance(v, Mapping):
                    walk(v, p)

        walk(obj, ())
        self.prefix = ""
        keys = list(flat)
        for pre in PREFIXES:
            if keys and all(k.startswith(pre) for k in keys):
                self.prefix = pre
                break
        self.flat = {k[len(self.prefix):]: v for k, v in flat.items()}

    def rebuild(self, new_flat: Mapping) -> Mapping:
        """Same structure and container types as the input, with values from ``new_flat``."""
        if self.wrapper is not None:
            out = _copy_mapping(self.obj)
            out[self.wrapper] = self.inner.rebuild(new_flat)
            return out
        full = {self.prefix + k: v for k, v in new_flat.items()}

        def build(m, path):
            out = _copy_mapping(m)
            for k, v in m.items():
                p = path + (k,)
                if _is_array(v):
                    key = "/".join(str(x) for x in p)
                    out[k] = full[key]
                elif isinstance(v, Mapping) and _has_arrays(v):
                    out[k] = build(v, p)
            return out

        return build(self.obj, ())


def _copy_mapping(m: Mapping) -> dict:
    try:
        out = type(m)()
        out.update(m)
    except Exception:
        out = dict(m)
    if isinstance(m, CheckpointDict):
        out.source = m.source
    meta = getattr(m, "_metadata", None)  # torch state_dict version metadata
    if meta is not None:
        try:
            out._metadata = meta
        except Exception:  # pragma: no cover
            pass
    return out


def _numpy_flat(obj: Mapping) -> CheckpointDict:
    view = _View(obj)
    out = CheckpointDict()
    for k, v in view.flat.items():
        out[k] = np.array(to_numpy(v))
    return out


def _load_torch(path: Path):
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise CheckpointError(f"{path}: loading a torch checkpoint needs torch installed") from exc
    import pickle

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the pickle needs objects outside the safe tensor allow-list "
            f"(torch.load(weights_only=True) rejected it; it may run code): {exc}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError,
            KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated torch checkpoint: {exc}") from exc


def _load_safetensors(path: Path):
    raw, meta = _read_safetensors(path)
    tied = (meta or {}).get(TIED_KEY)
    if tied:
        import json

        try:
            ties = json.loads(tied)
            for dup, key in ties.items():
                raw[dup] = raw[key]  # the same array: the tie is restored
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise CheckpointError(f"{path}: malformed {TIED_KEY} metadata: {exc}") from exc
    return raw


def _read_safetensors(path: Path) -> tuple[dict, dict | None]:
    try:
        from safetensors import safe_open
        from safetensors.numpy import load_file
    except ImportError:
        # the safetensors package is an optional extra: fall back to the pure-numpy reader
        from ..deep.data import read_safetensors

        return read_safetensors(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata()
        return load_file(str(path)), meta
    except TypeError:
        # dtypes numpy does not have (bfloat16): read through torch
        try:
            from safetensors.torch import load_file as load_torch
            return load_torch(str(path)), None
        except Exception as exc:
            raise CheckpointError(f"{path}: corrupt or unsupported safetensors file: {exc}") from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file: {exc}") from exc


def _load_npz(path: Path):
    try:
        with np.load(str(path), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        raise CheckpointError(f"{path}: refused: the .npz holds pickled objects ({exc})") from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated .npz file: {exc}") from exc


def load(source, keep_structure: bool = False) -> CheckpointDict:
    """Load a checkpoint into a flat ``{key: ndarray}`` state dict.

    Parameters
    ----------
    source : str, PathLike or Mapping
        A ``.safetensors``, ``.pt``/``.pth``/``.ckpt``/``.bin`` or ``.npz`` file, or an in-memory
        (possibly nested) dict of torch tensors / numpy arrays.
    keep_structure : bool, default False
        Return a torch file's mapping as it is stored instead (nested, torch tensors, training metadata
        such as ``hyper_parameters``, ``epoch`` or ``optimizer_states`` kept), so that a reduced copy
        can be written back as the same kind of checkpoint (:func:`mor_lqo.adapters.reduce_state_dict`
        does this). Flat formats (safetensors, npz) load as without it.

    Returns
    -------
    CheckpointDict
        Flat dict of numpy arrays (complex tensors stay complex; bfloat16/float16 become float32;
        non-array entries such as ``epoch`` are dropped). ``.source`` is the resolved file path.

    Raises
    ------
    CheckpointError
        Missing, truncated, corrupt or unsafe file (the message contains the path).
    """
    if isinstance(source, Mapping):
        return _numpy_flat(source)
    if not isinstance(source, (str, os.PathLike)):
        raise CheckpointError(
            f"expected a checkpoint path or a state-dict mapping, got {type(source).__name__}"
        )
    path = Path(os.fspath(source))
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    ext = path.suffix.lower()
    if ext == ".safetensors":
        raw = _load_safetensors(path)
    elif ext in TORCH_EXT:
        raw = _load_torch(path)
    elif ext == ".npz":
        raw = _load_npz(path)
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint extension {ext!r}; known: .safetensors, "
            f"{', '.join(TORCH_EXT)}, .npz"
        )
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: the checkpoint holds a {type(raw).__name__}, not a state dict")
    if keep_structure and ext in TORCH_EXT:
        out = CheckpointDict(raw)
        _View(out)  # validates that it holds a state dict
    else:
        out = _numpy_flat(raw)
    out.source = str(path.resolve())
    _LOADED.add(out.source)
    return out


def save(state_dict: Mapping, path, overwrite: bool = False) -> Path:
    """Atomically write a state dict (format from the extension: .safetensors, .pt/.pth/.ckpt/.bin, .npz).

    Parameters
    ----------
    state_dict : Mapping
        Flat dict of torch tensors or numpy arrays (torch formats need torch; safetensors and npz take
        either). Nested dicts are written as they are by the torch formats only.
    path : str or PathLike
    overwrite : bool, default False
        Allow replacing an existing file. The file a checkpoint was loaded from (``state_dict.source``,
        or any file :func:`load` has read in this process) is never overwritten.

    Returns
    -------
    Path
        The resolved written path.
    """
    path = Path(os.fspath(path))
    target = path.resolve()
    src = getattr(state_dict, "source", None)
    if (src is not None and str(target) == src) or str(target) in _LOADED:
        raise CheckpointError(
            f"{path}: refusing to overwrite the input checkpoint it was loaded from; write to a new path"
        )
    if target.exists() and not overwrite:
        raise CheckpointError(f"{path}: file exists; pass overwrite=True to replace it")
    if target.exists() and not target.is_file():
        raise CheckpointError(f"{path}: exists and is not a regular file")
    ext = target.suffix.lower()
    if ext not in (".safetensors", ".npz") + TORCH_EXT:
        raise CheckpointError(f"{path}: unknown checkpoint extension {ext!r}")
    with atomic_output(target) as tmp:
        if ext == ".safetensors":
            _save_safetensors(state_dict, tmp)
        elif ext == ".npz":
            flat = _View(state_dict).flat
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(to_numpy(v)) for k, v in flat.items()})
        else:
            import torch

            torch.save(_to_torch(dict(state_dict) if isinstance(state_dict, CheckpointDict) else state_dict), tmp)
    return target


def _to_torch(obj: Any) -> Any:
    """``obj`` with every numpy array replaced by a torch tensor (containers rebuilt, other values kept),
    so that ``torch.load(weights_only=True)`` — torch's default — reads the file."""
    import torch

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, copy=True))
    if isinstance(obj, Mapping):
        out = _copy_mapping(obj)
        for k, v in obj.items():
            out[k] = _to_torch(v)
        return out
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


TIED_KEY = "mor_lqo.tied"  # safetensors metadata: JSON {duplicate key: key whose data it shares}


def _memory_id(v) -> tuple | None:
    """What identifies the memory a tensor/array views (None: not an array)."""
    if is_torch_tensor(v):
        return ("t", v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()),
                str(v.dtype))
    if isinstance(v, np.ndarray):
        return ("n", v.__array_interface__["data"][0], v.shape, v.strides, v.dtype.str)
    return None


def _untie(flat: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Drop entries that view the same memory as an earlier key (tied weights): (kept, {dup: kept key})."""
    seen: dict[tuple, str] = {}
    kept: dict[str, Any] = {}
    tied: dict[str, str] = {}
    for k in sorted(flat):
        mid = _memory_id(flat[k])
        if mid is not None and mid in seen and _numel(flat[k]) > 0:
            tied[k] = seen[mid]
            continue
        if mid is not None:
            seen[mid] = k
        kept[k] = flat[k]
    return kept, tied


def _numel(v) -> int:
    return int(v.numel()) if is_torch_tensor(v) else int(np.asarray(v).size)


def _full_flat(state_dict: Mapping) -> dict[str, Any]:
    """Flat ``{key: tensor}`` with the keys as the user's module has them (``module.`` prefixes kept)."""
    view = _View(state_dict)
    while view.wrapper is not None:
        view = view.inner
    return {view.prefix + k: v for k, v in view.flat.items()}


def _save_safetensors(state_dict: Mapping, tmp: str):
    """Write the flat tensors under the user's own keys; tied weights are stored once and the ties
    recorded in the metadata (``mor_lqo.tied``), which :func:`load` restores."""
    import json

    flat, tied = _untie(_full_flat(state_dict))
    meta = {TIED_KEY: json.dumps(tied, sort_keys=True)} if tied else None
    if any(is_torch_tensor(v) for v in flat.values()):
        import torch
        from safetensors.torch import save_file

        flat = {k: (v if is_torch_tensor(v) else torch.from_numpy(np.ascontiguousarray(v)))
                .detach().cpu().contiguous() for k, v in flat.items()}
        save_file(flat, tmp, metadata=meta)
    else:
        arrays = {k: np.ascontiguousarray(v) for k, v in flat.items()}
        try:
            from safetensors.numpy import save_file
        except ImportError:
            # the safetensors package is an optional extra: fall back to the pure-numpy writer
            from ..deep.data import write_safetensors

            write_safetensors(tmp, arrays, meta)
            return
        save_file(arrays, tmp, metadata=meta)
