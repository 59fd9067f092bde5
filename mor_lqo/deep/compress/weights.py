"""Data weights: lag covariances of the channels' calibration inputs and data-weighted mode scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...adapters.block import HalfModes
from ..models import LQOModel
from .constants import DATA_RIDGE
from .finite_horizon import _weighted
from .lag_gram import LagMetric, diag_kernels, moments
from .unit_modes import _siso_arrays


def _weighted_mode_scores(modes: Sequence[HalfModes], W, L: int) -> np.ndarray:
    """Data-weighted energy ||W_h k_{h,a}||^2 of every mode's kernel (N, n) (SISO channels); W dense square
    roots (N, L, L) or a :class:`~mor_lqo.deep.compress.lag_gram.LagMetric`."""
    lam, B, C = _siso_arrays(modes)
    kap = modes[0].kappa
    if isinstance(W, LagMetric):
        return _metric_mode_scores(lam, kap * C * B, W)
    K = kap * (C * B)[:, :, None] * np.power(lam[:, :, None], np.arange(L))  # (N, n, L) complex
    Kr = _weighted(W, np.moveaxis(K.real, 1, 2))  # (N, L, n)
    return np.sum(Kr * Kr, axis=1)


def _metric_mode_scores(lam: np.ndarray, gam: np.ndarray, metric: LagMetric) -> np.ndarray:
    r""":math:`k^T M k` of the kernels :math:`k[l] = \mathrm{Re}(\gamma\lambda^l)` (N, n) in closed form
    (:func:`~mor_lqo.deep.compress.lag_gram.diag_kernels`); modes at 0 or on the unit circle (where the
    closed form divides by :math:`1 - |\lambda|^2`) by FFT convolutions."""
    a2 = np.abs(lam) ** 2
    bad = (a2 == 0) | (np.abs(a2 - 1.0) < 1e-8)
    s = np.log(np.where(bad, 0.5, lam).astype(np.complex128))
    coef = metric.coef()
    X0 = moments(s, coef, deriv=False)[0]
    Kd, Kc = diag_kernels(s, X0, metric.acf[:, 0])
    score = 0.5 * (gam * gam * Kd + np.abs(gam) ** 2 * Kc).real
    for n, a in zip(*np.nonzero(bad)):
        k = (gam[n, a] * np.power(lam[n, a], np.arange(metric.L))).real
        score[n, a] = k @ metric[n].apply(k[None])[0]
    return score


def lag_metric(U: np.ndarray, rho: float = DATA_RIDGE) -> LagMetric:
    r"""The lag weights of :func:`lag_weights` in structured form (their squares
    :math:`W_h/(\mathrm{tr}\,W_h/L) + \rho I` as sums of convolution Gramians of the inputs, O(B L) memory per
    channel), for the Gram-form fits of :func:`~mor_lqo.deep.compress.finite_horizon.fit_finite_horizon`."""
    return LagMetric.from_inputs(U, rho)


def lqo_mode_scores(model: LQOModel, i: int, U: np.ndarray) -> np.ndarray:
    r"""Output energy that removing each mode of LQO layer i changes on the layer inputs ``U``.

    For mode a: :math:`\sum \|\Delta y\|^2` with :math:`\Delta y_j = \mathrm{Re}(C_{ja}x_a)
    + 2\mathrm{Re}(\bar x_a (M_j x)_a) - |x_a|^2 M_{j,aa}` (exact change of the block output when
    :math:`x_a` is removed from the state), summed over the calibration data.
    """
    from .recorded import quadratic_energy

    s = model.ssm_params(i)
    return quadratic_energy(model.states(i, U), s["C"], s["M"], 1.0)


def lag_weights(U: np.ndarray, rho: float = DATA_RIDGE) -> np.ndarray:
    r"""Square roots of the normalised lag covariances of per-channel inputs.

    :math:`W_h[i, j] = \frac1B\sum_b\sum_{k \ge \max(i,j)} U_{b,k-i,h} U_{b,k-j,h}` is the matrix with
    :math:`\mathbb E\sum_k |((g - \hat g) * U_h)_k|^2 = e^T W_h e` (e the kernel error over L lags); the
    returned matrices are :math:`(W_h/(\mathrm{tr}\,W_h/L) + \rho I)^{1/2}`, shape (H, L, L).
    """
    U = np.asarray(U, np.float64)
    B_, L, H = U.shape
    W = np.zeros((H, L, L))
    for d in range(L):
        prod = np.einsum("bsh,bsh->sh", U[:, d:, :], U[:, : L - d, :]) / B_  # s = 0 .. L-1-d
        cs = np.cumsum(prod, axis=0)  # cs[m] = sum_{s<=m}
        i = np.arange(L - d)
        vals = cs[L - 1 - i - d]  # W[i, i + d] = sum_{s <= L-1-i-d}
        W[:, i, i + d] = vals.T
        W[:, i + d, i] = vals.T
    tr = np.trace(W, axis1=1, axis2=2) / L
    W = W / np.where(tr > 0, tr, 1.0)[:, None, None] + rho * np.eye(L)[None]
    w, V = np.linalg.eigh(W)
    return np.einsum("hik,hk,hjk->hij", V, np.sqrt(np.clip(w, 0, None)), V)
