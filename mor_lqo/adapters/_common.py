"""Shared helpers of the checkpoint families (numpy only; torch is touched lazily)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import LayoutError

# ----------------------------------------------------------------------------- arrays


def is_torch_tensor(x) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "numpy")


def to_numpy(x) -> np.ndarray:
    """A read-only view/copy of a state-dict value as numpy (torch tensors converted, bf16 → f32)."""
    if isinstance(x, np.ndarray):
        return x
    if is_torch_tensor(x):
        import torch

        t = x.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.to(torch.float32)
        return t.numpy()
    return np.asarray(x)


def f64(x) -> np.ndarray:
    """float64 copy (complex stays complex128: never cast complex to real)."""
    a = to_numpy(x)
    if np.iscomplexobj(a):
        return a.astype(np.complex128)
    return a.astype(np.float64)


def r2c(x, name: str) -> np.ndarray:
    """view_as_complex of a float array whose last dimension (size 2) is [re, im]; complex passes."""
    a = to_numpy(x)
    if np.iscomplexobj(a):
        return a.astype(np.complex128)
    if a.shape[-1:] != (2,):
        raise LayoutError(f"{name}: expected a view_as_real layout (last dimension 2), got shape {a.shape}")
    a = a.astype(np.float64)
    return a[..., 0] + 1j * a[..., 1]


def c2r(z: np.ndarray) -> np.ndarray:
    """view_as_real: complex (...,) → float (..., 2)."""
    z = np.asarray(z, dtype=np.complex128)
    return np.stack([z.real, z.imag], axis=-1)


def need(sd: Mapping, prefix: str, leaves, arch: str) -> dict:
    """Values of the required leaves under ``prefix``; LayoutError naming the missing ones."""
    missing = [leaf for leaf in leaves if prefix + leaf not in sd]
    if missing:
        found = sorted(k[len(prefix):] for k in sd if k.startswith(prefix))
        raise LayoutError(
            f"partial {arch} layout at {prefix!r}: missing {missing}; found {found}"
        )
    return {leaf: sd[prefix + leaf] for leaf in leaves}


def shape_error(arch: str, prefix: str, msg: str) -> LayoutError:
    return LayoutError(f"inconsistent {arch} shapes at {prefix!r}: {msg}")


# ----------------------------------------------------------------------------- transforms

TRANSFORMS = ("none", "exp", "relu", "sigmoid", "softplus")


def param_transform(x: np.ndarray, transform: str) -> np.ndarray:
    """S4's ``param_transform`` (positive parametrisation) in float64."""
    if transform == "none":
        return x
    if transform == "exp":
        return np.exp(x)
    if transform == "relu":
        return np.maximum(x, 0) + 1e-4
    if transform == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if transform == "softplus":
        return np.logaddexp(0, x)
    raise LayoutError(f"unknown transform {transform!r}; known: {TRANSFORMS}")


def inv_transform(y: np.ndarray, transform: str, what: str) -> np.ndarray:
    """Exact inverse of :func:`param_transform`; LayoutError if ``y`` is outside its range."""
    y = np.asarray(y, dtype=np.float64)
    if transform == "none":
        return y
    lo = 1e-4 if transform == "relu" else 0.0
    if np.any(y <= lo) or (transform == "sigmoid" and np.any(y >= 1)):
        raise LayoutError(
            f"{what}: value(s) {y[(y <= lo) | ((transform == 'sigmoid') & (y >= 1))][:3]} outside the "
            f"range of the {transform!r} transform (the reduced mode is not representable)"
        )
    if transform == "exp":
        return np.log(y)
    if transform == "relu":
        return y - 1e-4
    if transform == "sigmoid":
        return np.log(y / (1 - y))
    if transform == "softplus":
        return y + np.log(-np.expm1(-y))
    raise LayoutError(f"unknown transform {transform!r}; known: {TRANSFORMS}")


# ----------------------------------------------------------------------------- discretisation


def zoh(A: np.ndarray, dt) -> tuple[np.ndarray, np.ndarray]:
    """Λ̄ = exp(dt A) and the input factor (Λ̄ − 1)/A (B̄ = factor · B)."""
    lam = np.exp(dt * A)
    return lam, (lam - 1) / A


def bilinear(A: np.ndarray, dt) -> tuple[np.ndarray, np.ndarray]:
    """Λ̄ = (1 + dtA/2)/(1 − dtA/2) and the input factor dt/(1 − dtA/2)."""
    den = 1 - dt * A / 2
    return (1 + dt * A / 2) / den, dt / den


def inv_disc(mu: np.ndarray, dt, disc: str, A_ref: np.ndarray | None = None):
    """Continuous A and the input factor f with B̄ = f · B for discrete eigenvalues ``mu``.

    zoh: A = log(mu)/dt on the branch closest to ``A_ref`` (principal branch where A_ref is NaN or not
    given), f = (mu − 1)/A; bilinear: A = (2/dt)(mu − 1)/(mu + 1), f = dt/(1 − dt A/2).
    """
    mu = np.asarray(mu, dtype=np.complex128)
    dt = np.asarray(dt, dtype=np.float64)
    if disc == "zoh":
        if np.any(mu == 0):
            raise LayoutError("an eigenvalue 0 is not representable under zoh (log 0)")
        if np.any(np.abs(mu - 1) < 1e-14):
            raise LayoutError("an eigenvalue 1 is not representable under zoh (A = 0)")
        A = np.log(mu) / dt
        if A_ref is not None:
            ref = np.asarray(A_ref, dtype=np.complex128)
            ok = np.isfinite(ref)
            k = np.where(ok, np.round(((np.where(ok, ref, 0) - A).imag * dt) / (2 * np.pi)), 0)
            A = A + 2j * np.pi * k / dt
        return A, (mu - 1) / A
    if disc == "bilinear":
        if np.any(np.abs(mu + 1) < 1e-14):
            raise LayoutError("an eigenvalue -1 is not representable under the bilinear transform")
        A = (2 / dt) * (mu - 1) / (mu + 1)
        return A, dt / (1 - dt * A / 2)
    raise LayoutError(f"unknown discretisation {disc!r}; known: ('zoh', 'bilinear')")


def match_modes(new_lam: np.ndarray, old_lam: np.ndarray, rtol: float = 1e-10):
    """Index of the original stored mode equal to each new one (or its conjugate), -1 if none.

    Returns (idx, conj) arrays; ``conj[i]`` is True when the new mode equals the conjugate of the match.
    """
    new_lam = np.asarray(new_lam, dtype=np.complex128)
    old_lam = np.asarray(old_lam, dtype=np.complex128)
    idx = np.full(new_lam.shape, -1, dtype=int)
    cj = np.zeros(new_lam.shape, dtype=bool)
    if old_lam.size == 0:
        return idx, cj
    for i, z in enumerate(new_lam):
        tol = rtol * max(1.0, abs(z))
        d = np.abs(old_lam - z)
        j = int(np.argmin(d))
        if d[j] <= tol:
            idx[i] = j
            continue
        d = np.abs(old_lam.conj() - z)
        j = int(np.argmin(d))
        if d[j] <= tol:
            idx[i], cj[i] = j, True
    return idx, cj


def check_stable(mu: np.ndarray, where: str):
    bad = np.abs(mu) >= 1
    if np.any(bad):
        raise LayoutError(
            f"{where}: reduced eigenvalue(s) {mu[bad][:3]} with |mu| >= 1 cannot be written into an "
            "exp-parametrised (stable) layout"
        )
