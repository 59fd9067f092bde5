"""Layout registry and auto-detection of SSM blocks from state-dict key patterns."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping

from ..errors import LayoutError
from .block import Block

__all__ = ["KNOWN", "family", "detect", "extract"]

# arch name -> module implementing find / extract / write_back (and KAPPA, SIGN, DEFAULTS)
_MODULES = {
    "s4d": "s4d",
    "s4": "s4",
    "s4_dplr": "s4",
    "s4v3": "s4",
    "s5": "s5",
    "s5_jax": "s5",
    "lru": "lru",
    "lru_jax": "lru",
    "dss": "dss",
    "mamba": "mamba",
    "mamba2": "mamba",
    "lqo": "lqo",
}
KNOWN = tuple(_MODULES)

# words that suggest an SSM block, used to explain a failed detection
_HINTS = re.compile(
    r"(log_A_real|A_real|A_imag|inv_A_real|inv_w_real|w_imag|inv_dt|log_dt|Lambda|nu_log|theta_log|"
    r"gamma_log|log_step|A_log|dt_bias|\bB_re\b|\bC_re\b)"
)


class _Family:
    """Adapter of one arch name onto its family module (several archs share a module)."""

    def __init__(self, arch: str):
        self.arch = arch
        self.mod = importlib.import_module(f"{__package__}.{_MODULES[arch]}")
        self.defaults = dict(self.mod.DEFAULTS.get(arch, {})) if _is_multi(self.mod) else dict(
            self.mod.DEFAULTS)

    def find(self, keys) -> list[str]:
        if _is_multi(self.mod):
            return self.mod.find(keys, self.arch)
        return self.mod.find(keys)

    def extract(self, sd, prefix, **settings) -> Block:
        if _is_multi(self.mod):
            return self.mod.extract(sd, prefix, self.arch, **settings)
        return self.mod.extract(sd, prefix, **settings)

    def write_back(self, block, modes, n_stored=None):
        return self.mod.write_back(block, modes, n_stored)

    def kappa(self, block) -> float:
        k = getattr(self.mod, "kappa", None)
        return k(block) if callable(k) else self.mod.KAPPA

    def sign(self, block) -> int:
        s = getattr(self.mod, "sign", None)
        return s(block) if callable(s) else self.mod.SIGN

    @property
    def reduce_block(self):
        return getattr(self.mod, "reduce_block", None)


def _is_multi(mod) -> bool:
    return getattr(mod, "MULTI", False)


def family(arch: str) -> _Family:
    if arch not in _MODULES:
        raise LayoutError(f"unknown layout {arch!r}; known layouts: {', '.join(KNOWN)}")
    return _Family(arch)


def detect(sd: Mapping, arch: str = "auto") -> list[tuple[str, str]]:
    """``[(arch, prefix), ...]`` of the SSM blocks found, in state-dict key order."""
    keys = list(sd.keys())
    archs = KNOWN if arch == "auto" else (arch,)
    found: dict[str, str] = {}
    for a in archs:
        for p in family(a).find(keys):
            if p in found and found[p] != a:
                raise LayoutError(f"ambiguous layout at {p!r}: matches both {found[p]} and {a}")
            found[p] = a
    if not found:
        hints = [k for k in keys if _HINTS.search(k)]
        what = f"SSM-like keys {hints[:12]}" if hints else f"keys {keys[:12]}"
        scope = "any known layout" if arch == "auto" else f"the {arch!r} layout"
        raise LayoutError(
            f"no SSM block of {scope} found ({len(keys)} keys; {what}); known layouts: "
            f"{', '.join(KNOWN)}"
        )
    order = {}
    for i, k in enumerate(keys):
        for p in found:
            if p not in order and k.startswith(p):
                order[p] = i
    return sorted(((a, p) for p, a in found.items()), key=lambda t: order.get(t[1], 0))


def extract(sd: Mapping, arch: str = "auto", **settings) -> list[Block]:
    """Blocks of a flat numpy state dict (see :func:`mor_lqo.adapters.extract`)."""
    found = detect(sd, arch)
    fams = {a: family(a) for a, _ in found}
    known = set()
    for f in fams.values():
        known |= set(f.defaults)
    unknown = set(settings) - known
    if unknown:
        raise TypeError(
            f"unknown setting(s) {sorted(unknown)} for the layouts found "
            f"({sorted(fams)}); accepted: {sorted(known)}"
        )
    blocks = []
    for a, p in found:
        f = fams[a]
        s = {k: v for k, v in settings.items() if k in f.defaults}
        blocks.append(f.extract(sd, p, **s))
    return blocks
