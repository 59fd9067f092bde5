"""Plain-numpy reference implementations of the diagonal (Cauchy-type) closed forms.

Everything here forms the explicit Cauchy matrix ``K`` (memory O(n1 n2)); it is meant as the simple,
obviously correct reference for the numba kernels of :mod:`mor_lqo.kernels.cauchy_numba` and as the
implementation of :func:`mor_lqo.kernels.cauchy.cauchy_matrix` / ``cross_gramian_diag``. No input
validation is done here (see :mod:`mor_lqo.kernels.cauchy`); all functions accept an optional leading
batch axis and work in the precision of their inputs (float64/complex128, or extended precision).

Kernel (``z = lam1_i conj(lam2_k)``)::

    continuous             K_ik = -1 / (lam1_i + conj(lam2_k))
    discrete               K_ik =  1 / (1 - z)
    discrete, horizon L    K_ik = (1 - z**L) / (1 - z)       (= sum_{t<L} z**t, limit L at z = 1)

For ``|1 - z| < NEAR_ONE_TAU`` the horizon quotient is evaluated as ``expm1(L w) / expm1(w)`` with
``w = log lam1_i + conj(log lam2_k)`` (imaginary part wrapped into ``(-pi, pi]``; ``L`` at ``w = 0``),
because ``1 - z**L`` and ``1 - z`` rounded independently cancel catastrophically there. Likewise the
infinite-horizon discrete kernel is ``-1 / expm1(w)`` for ``|1 - z| < NEAR_ONE_TAU_INF``: the complex
logarithm resolves ``log|lam|`` near the unit circle to full relative accuracy, while ``1 - z`` has an
absolute rounding error ~eps.
"""

from __future__ import annotations

import numpy as np

#: Below this distance ``|1 - z|`` the finite-horizon kernel uses the expm1 form.
NEAR_ONE_TAU = 0.02
#: Below this distance ``|1 - z|`` the infinite-horizon discrete kernel uses ``-1 / expm1(w)``.
NEAR_ONE_TAU_INF = 1e-3


def _herm(x: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(x, -1, -2))


def cauchy_matrix_ref(lam1, lam2, discrete: bool, horizon: int | None = None) -> np.ndarray:
    """Explicit Cauchy matrix ``K`` of shape ``(..., n1, n2)`` (see the module docstring)."""
    lam1 = np.asarray(lam1)
    lam2 = np.asarray(lam2)
    a = lam1[..., :, None]
    bc = np.conj(lam2)[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if not discrete:
            return -1.0 / (a + bc)
        z = a * bc
        x = 1.0 - z
        d2 = x.real**2 + x.imag**2
        if horizon is None:
            K = 1.0 / x
            near = d2 < NEAR_ONE_TAU_INF**2
            if np.any(near):
                K[near] = -1.0 / np.expm1(_log_sum(a, bc, near))
            return K
        L = int(horizon)
        K = (1.0 - z**L) / x
        near = d2 < NEAR_ONE_TAU**2
        if np.any(near):
            w = _log_sum(a, bc, near)
            tiny = np.abs(w.real) + np.abs(w.imag) < 1e-150
            w_safe = np.where(tiny, 1.0, w)
            K[near] = np.where(tiny, L, np.expm1(L * w_safe) / np.expm1(w_safe))
    return K


def _log_sum(a: np.ndarray, bc: np.ndarray, near: np.ndarray) -> np.ndarray:
    """``w = log a + log conj(b)`` at the entries ``near`` (imaginary part wrapped into [-pi, pi))."""
    w = np.broadcast_to(np.log(a), near.shape)[near] + np.broadcast_to(np.log(bc), near.shape)[near]
    return w.real + 1j * (np.mod(w.imag + np.pi, 2.0 * np.pi) - np.pi)


def cross_gramian_ref(lam1, B1, lam2, B2, discrete: bool, horizon: int | None = None) -> np.ndarray:
    """Cross Gramian ``X = (B1 B2^H) * K`` (elementwise), shape ``(..., n1, n2)``."""
    B1 = np.asarray(B1)
    B2 = np.asarray(B2)
    return (B1 @ _herm(B2)) * cauchy_matrix_ref(lam1, lam2, discrete, horizon)


def cauchy_inner_ref(lam1, B1, C1, lam2, B2, C2, discrete: bool, horizon: int | None = None):
    """``tr(C1 X C2^H)`` with the explicit cross Gramian ``X``; shape ``(...)`` (complex)."""
    C1 = np.asarray(C1)
    C2 = np.asarray(C2)
    X = cross_gramian_ref(lam1, B1, lam2, B2, discrete, horizon)
    return np.sum((C1 @ X) * np.conj(C2), axis=(-2, -1))


def cauchy_norm2_ref(lam, B, C, discrete: bool, horizon: int | None = None):
    """``Re tr(C P C^H)`` with the explicit Gramian ``P = (B B^H) * K``; shape ``(...)`` (real)."""
    return np.real(cauchy_inner_ref(lam, B, C, lam, B, C, discrete, horizon))
