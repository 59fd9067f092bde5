"""The h2-optimal re-fit of reduced readouts (linear C and quadratic M) for fixed reduced poles, the PSD
rank-R projection of the quadratic part, and the conversion of reduced systems to half modes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...adapters.block import HalfModes
from ...adapters.modal_form import to_half_modes
from ...errors import LayoutError
from ...systems import LQOSystem
from .constants import CompressionError

# The Hermitian-form refit works in the q^2-dimensional space of Hermitian q x q matrices (basis and Gram
# matrix of q^4 entries, 48 q^4 bytes): 48 modes need 0.25 GiB, 128 modes 12 GiB.
QUAD_REFIT_MAX_MODES = 48


def _psd_project(M: np.ndarray, rank: int | None) -> tuple[np.ndarray, bool]:
    """Nearest PSD matrices of rank <= ``rank`` (eigen-truncation), and whether anything changed."""
    out = np.empty_like(M)
    changed = False
    for j in range(M.shape[0]):
        Mj = 0.5 * (M[j] + M[j].conj().T)
        w, V = np.linalg.eigh(Mj)
        keep = np.clip(w, 0.0, None)
        if rank is not None and np.count_nonzero(keep > 0) > rank:
            order = np.argsort(-keep)
            keep[order[rank:]] = 0.0
        tol = 1e-12 * max(np.max(np.abs(w)), 1e-300)
        if np.any(np.abs(keep - w) > tol):
            changed = True
        out[j] = (V * keep) @ V.conj().T
    return out, changed


def _hermitian_basis(q: int) -> np.ndarray:
    """Real basis E_a (q^2, q, q) of the Hermitian q x q matrices: diagonal, Re and Im of the upper triangle."""
    E = []
    for k in range(q):
        e = np.zeros((q, q), np.complex128)
        e[k, k] = 1
        E.append(e)
    iu = np.triu_indices(q, 1)
    for k, l_ in zip(*iu):
        e = np.zeros((q, q), np.complex128)
        e[k, l_] = e[l_, k] = 1
        E.append(e)
    for k, l_ in zip(*iu):
        e = np.zeros((q, q), np.complex128)
        e[k, l_], e[l_, k] = 1j, -1j
        E.append(e)
    return np.array(E)


def _cauchy(l1: np.ndarray, l2: np.ndarray, horizon: int | None) -> np.ndarray:
    """sum_t (l1_i conj(l2_k))^t (finite horizon if given)."""
    from ...kernels.cauchy import cauchy_matrix

    return np.asarray(cauchy_matrix(l1, l2, True, horizon))


def fit_quadratic(full: HalfModes, red: HalfModes, horizon: int | None = None) -> np.ndarray:
    r"""h2-optimal Hermitian quadratic readout :math:`\hat M_j` of ``red``'s stored state for ``full``'s.

    Minimises the (finite-horizon) h2 error of the *real* quadratic kernels
    :math:`\mathrm{Re}[(\Lambda^{i_1}B)^H M_j (\Lambda^{i_2}B)]` over Hermitian :math:`\hat M_j`
    (docs/theory.md §8.4 with the non-conjugated Gramians), i.e. the normal equations
    :math:`G\theta_j = g_j` of a convex quadratic in the real parameters of :math:`\hat M_j`.
    """
    q = red.n
    if q > QUAD_REFIT_MAX_MODES:
        raise CompressionError(f"re-fitting a quadratic readout of {q} stored modes in the layout's Hermitian form "
                               f"needs about {48 * q**4 / 2**30:.0f} GiB (at most {QUAD_REFIT_MAX_MODES} modes "
                               "supported); use method 'h2' or 'modal', or a smaller order")
    E = _hermitian_basis(q)
    Kc = _cauchy(red.lam, red.lam, horizon)
    Kn = _cauchy(red.lam, red.lam.conj(), horizon)
    P = (red.B @ red.B.conj().T) * Kc
    S = (red.B @ red.B.T) * Kn
    X = (full.B @ red.B.conj().T) * _cauchy(full.lam, red.lam, horizon)
    Xt = (full.B @ red.B.T) * _cauchy(full.lam, red.lam.conj(), horizon)
    # G_ab = 1/2 Re[tr(P E_a P E_b) + tr(S^H E_a S E_b^T)]
    PEP = np.einsum("ik,akl,lj->aij", P, E, P, optimize=True)
    SES = np.einsum("ki,akl,lj->aij", S.conj(), E, S, optimize=True)
    G = 0.5 * (np.einsum("aij,bji->ab", PEP, E, optimize=True).real
               + np.einsum("aij,bij->ab", SES, E, optimize=True).real)
    M = full.M
    Z = np.einsum("ia,jik,kb->jab", X.conj(), M, X, optimize=True)
    Zt = np.einsum("ia,jik,kb->jab", Xt.conj(), M, Xt, optimize=True)
    g = 0.5 * (np.einsum("jab,cba->jc", Z, E, optimize=True).real + np.einsum("jab,cab->jc", Zt, E, optimize=True).real)
    theta = np.linalg.lstsq(G, g.T, rcond=1e-12)[0].T  # (p, q^2)
    return np.einsum("ja,akl->jkl", theta, E)


def _strip_m(rom: LQOSystem) -> LQOSystem:
    return LQOSystem(rom.A, rom.B, rom.C, D=rom.D, dt=rom.dt, convention=rom.convention)


def _rom_to_modes(rom, full: HalfModes, kappa: float, sign: int, rank: int | None, horizon,
                  notes: list) -> HalfModes:
    """Stored half modes of a reducer's ROM; quadratic outputs re-fitted / projected into the layout's form."""
    rom = getattr(rom, "rom", rom)
    if full.M is None:
        return to_half_modes(rom, kappa, sign)
    try:
        hm = to_half_modes(rom, kappa, sign)
    except LayoutError:
        hm = None
    if hm is None or hm.M is None:
        lin = to_half_modes(_strip_m(rom), kappa, sign)
        hm = replace(lin, M=fit_quadratic(full, lin, horizon))
        notes.append("quadratic readout re-fitted in the layout's Hermitian form (h2-optimal for the method's poles)")
    M, changed = _psd_project(hm.M, rank)
    if changed:
        notes.append(f"reduced quadratic readout projected onto PSD matrices of rank <= {rank}")
    return replace(hm, M=M)


def linear_readout_normal_equations(full: HalfModes, red: HalfModes, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Normal equations :math:`(F^TF,\; F^TY)` of the finite-horizon linear readout fit, in closed form.

    With :math:`G_{(l,m),i} = \hat\lambda_i^l \hat B_{im}` (l < L) the reduced Markov parameters are
    :math:`\hat h_1(l) = \hat\kappa\,\mathrm{Re}(G\hat C^T)`, so :math:`F = \hat\kappa[\mathrm{Re}\,G,
    -\mathrm{Im}\,G]` acts on :math:`\theta = [\mathrm{Re}\,\hat C^T; \mathrm{Im}\,\hat C^T]` and Y holds
    the full unit's Markov parameters :math:`h_1(l)_{jm} = \kappa\,\mathrm{Re}(C\Lambda^l B)_{jm}`. The sums
    over (l, m) are finite-horizon Cauchy matrices: with :math:`P = (\hat B\hat B^H)\odot K(\hat\lambda,
    \hat\lambda)` and :math:`S = (\hat B\hat B^T)\odot K(\hat\lambda, \bar{\hat\lambda})`,
    :math:`K(a, b)_{ik} = \sum_{l<L}(a_i\bar b_k)^l`,

    .. math::

        F^TF = \tfrac{\hat\kappa^2}{2}\begin{bmatrix}\mathrm{Re}(S + P) & \mathrm{Im}(P - S)\\
              \mathrm{Im}(P - S)^T & \mathrm{Re}(P - S)\end{bmatrix},\qquad
        G^TY = \tfrac{\kappa}{2}\big[((\hat B B^T)\odot K(\hat\lambda, \bar\lambda))C^T
              + ((\hat B B^H)\odot K(\hat\lambda, \lambda))C^H\big],

    :math:`F^TY = \hat\kappa[\mathrm{Re}\,G^TY; -\mathrm{Im}\,G^TY]`: O(q(q + n)m + qnp) work instead of
    the O(L m (n + q) p) of forming the Markov parameters.

    Returns
    -------
    A : ndarray, shape (2q, 2q)
    b : ndarray, shape (2q, p)
    """
    L = int(horizon)
    P = (red.B @ red.B.conj().T) * _cauchy(red.lam, red.lam, L)
    S = (red.B @ red.B.T) * _cauchy(red.lam, red.lam.conj(), L)
    A = 0.5 * red.kappa**2 * np.block([[np.real(S + P), np.imag(P - S)], [np.imag(P - S).T, np.real(P - S)]])
    GY = 0.5 * full.kappa * (((red.B @ full.B.T) * _cauchy(red.lam, full.lam.conj(), L)) @ full.C.T
                             + ((red.B @ full.B.conj().T) * _cauchy(red.lam, full.lam, L)) @ full.C.conj().T)
    return 0.5 * (A + A.T), red.kappa * np.concatenate([GY.real, -GY.imag], axis=0)


def _solve_normal(A: np.ndarray, b: np.ndarray, rcond: float = 1e-14) -> np.ndarray:
    """Minimum-norm solution of symmetric PSD normal equations, Jacobi-scaled, eigenvalues below ``rcond``
    times the largest (of the scaled matrix) dropped."""
    d = np.sqrt(np.clip(np.diag(A), 1e-300, None))
    w, V = np.linalg.eigh(A / d[:, None] / d[None, :])
    keep = w > rcond * max(float(w[-1]), 1e-300)
    Vk = V[:, keep]
    return (Vk @ ((Vk.T @ (b / d[:, None])) / w[keep][:, None])) / d[:, None]


def refit_readout(full: HalfModes, red: HalfModes, horizon: int, rank: int | None = None) -> HalfModes:
    r"""Finite-horizon h2-optimal readouts for fixed reduced poles and input matrix (MIMO blocks).

    :math:`\hat C` minimises :math:`\sum_{i<L}\|h_1(i) - \hat h_1(i)\|_F^2` of the real linear Markov
    parameters (least squares, shared design over the outputs, solved from its closed-form normal equations
    :func:`linear_readout_normal_equations`); :math:`\hat M_j` minimises the finite-horizon quadratic-kernel
    error (:func:`fit_quadratic`) and is then projected onto PSD matrices of rank ≤ ``rank`` (the layout's
    factor); beyond ``QUAD_REFIT_MAX_MODES`` modes ``red``'s :math:`\hat M_j` is kept.
    """
    L = int(horizon)
    th = _solve_normal(*linear_readout_normal_equations(full, red, L))
    out = replace(red, C=(th[: red.n] + 1j * th[red.n :]).T)
    if full.M is not None and red.n <= QUAD_REFIT_MAX_MODES:
        M, _ = _psd_project(fit_quadratic(full, out, horizon=L), rank)
        out = replace(out, M=M)
    return out
