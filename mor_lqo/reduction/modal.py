r"""Modal truncation: keep the dominant modes by their h2 contribution (docs/theory.md §7.6, §8).

A mode group G (one real or complex mode, or a complex-conjugate pair of a real-output system) is
scored by the squared h2 norm of its own subsystem (A_G, B_G, C_G, M_G) in modal coordinates::

    P_G = (B_G B_G^H) o K,   K_ik = 1 / (1 - lam_i conj(lam_k))   (discrete)
                              K_ik = -1 / (lam_i + conj(lam_k))    (continuous)
    score_G = tr(C_G P_G C_G^H) + sum_j tr(P_G M_jG P_G M_jG)

For a single mode this is the §7.6 score ``|c|^2 |b|^2 / (1 - |lam|^2)`` (continuous:
``/ (-2 Re lam)``) plus the quadratic term ``sum_j |M_j,ii|^2 P_ii^2``. For a conjugate pair it is
the norm of the real 2-state subsystem, which also contains the non-conjugated cross term
``2 Re[(c^T c)(b^T b) / (1 - lam^2)]`` (docs/theory.md §8.4). The modes of the kept groups form the
ROM; quadratic outputs are projected, :math:`\hat M_j = V^H M_j V` on the kept modes.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import check_choice, check_order, check_system
from ..errors import IllConditionedError, LayoutError, OrderError, UnknownMethodError
from ..gramians import check_stable
from ..norms import h2_error, h2_norm
from ..systems import LQOSystem
from .modal_schur import modal_schur
from .result import ReductionResult

__all__ = ["modal_truncation", "to_conjugate_pairs", "group_scores"]

_CRITERIA = ("h2", "hinf")
_EIG_COND_MAX = 1e8  # eigenvector conditioning above which the Schur-based (cluster) form is used


def _kernel(l1: np.ndarray, l2: np.ndarray, discrete: bool) -> np.ndarray:
    """Cauchy kernel K(l1, l2) entrywise (broadcasting)."""
    if discrete:
        return 1.0 / (1.0 - l1 * np.conj(l2))
    return -1.0 / (l1 + np.conj(l2))


def group_scores(lam: np.ndarray, B: np.ndarray, C: np.ndarray, M: np.ndarray | None,
                 groups: np.ndarray, discrete: bool, criterion: str = "h2") -> np.ndarray:
    r"""Scores of mode groups of a diagonal (modal-form) system.

    Parameters
    ----------
    lam : ndarray, shape (n,)
        Modal eigenvalues.
    B : ndarray, shape (n, m)
    C : ndarray, shape (p, n)
    M : ndarray, shape (p, n, n), or None
        Quadratic outputs in modal coordinates.
    groups : ndarray of int, shape (G, 2)
        Mode indices of each group; a group of one mode has ``-1`` as its second entry.
    discrete : bool
    criterion : {"h2", "hinf"}
        ``"h2"``: squared h2 norm of the group's subsystem (module docstring). ``"hinf"``: sum over
        the group's modes of the H-infinity norm of ``c b^T / (z - lam)``, i.e.
        ``|c| |b| / (1 - |lam|)`` (discrete) or ``|c| |b| / |Re lam|`` (continuous); LTI only.

    Returns
    -------
    scores : ndarray, shape (G,)
    """
    single = groups[:, 1] < 0
    idx = np.where(single[:, None], groups[:, :1], groups)  # (G, 2), singles repeated
    mask = np.ones(idx.shape, bool)
    mask[:, 1] = ~single
    if criterion == "hinf":
        cb = np.linalg.norm(C, axis=0) * np.linalg.norm(B, axis=1)
        den = (1 - np.abs(lam)) if discrete else np.abs(lam.real)
        per = cb / den
        return np.sum(np.where(mask, per[idx], 0.0), axis=1)
    lg = lam[idx]  # (G, 2)
    Bg = B[idx] * mask[..., None]  # (G, 2, m)
    Cg = np.moveaxis(C[:, idx], 0, -1) * mask[..., None]  # (G, 2, p)
    K = _kernel(lg[:, :, None], lg[:, None, :], discrete)  # (G, 2, 2)
    P = np.einsum("gim,gkm->gik", Bg, Bg.conj()) * K
    score = np.real(np.einsum("gip,gik,gkp->g", Cg, P, Cg.conj()))
    if M is not None:
        Mg = M[:, idx[:, :, None], idx[:, None, :]]  # (p, G, 2, 2)
        Mg = Mg * (mask[:, :, None] & mask[:, None, :])
        PM = np.einsum("gik,jgkl->jgil", P, Mg)
        score = score + np.real(np.einsum("jgil,jgli->g", PM, PM))
    return score


def _select(scores: np.ndarray, sizes: np.ndarray, r: int) -> np.ndarray:
    """Greedy choice of groups (by decreasing score) whose sizes add up to exactly r.

    When one slot is left and the best remaining group is a pair, the best remaining single mode
    is taken instead; if there is none, a pair would have to be split and OrderError is raised.
    """
    order = np.argsort(-scores, kind="stable")
    chosen, left = [], r
    for g in order:
        if left == 0:
            break
        if sizes[g] <= left:
            chosen.append(g)
            left -= sizes[g]
    if left:
        raise OrderError(
            f"r = {r} would split a complex-conjugate pair of poles (a real model needs whole pairs) "
            "and no further real mode is available; use r - 1 or r + 1"
        )
    return np.sort(np.asarray(chosen, dtype=int))


def _real_pair_groups(mu: np.ndarray) -> np.ndarray:
    """Groups of a real matrix's eigenvalues as returned by LAPACK (pairs adjacent, Im > 0 first)."""
    groups, j, n = [], 0, mu.shape[0]
    while j < n:
        if mu[j].imag != 0 and j + 1 < n and np.conj(mu[j]) == mu[j + 1]:
            groups.append((j, j + 1))
            j += 2
        elif mu[j].imag != 0:  # pragma: no cover - LAPACK always returns exact conjugate pairs
            raise RuntimeError("eigenvalues of a real matrix did not come in conjugate pairs")
        else:
            groups.append((j, -1))
            j += 1
    return np.asarray(groups, dtype=int).reshape(-1, 2)


def _check_criterion(criterion: str, sys: LQOSystem) -> None:
    check_choice(criterion, _CRITERIA, "criterion")
    if criterion == "hinf" and sys.has_quadratic:
        raise UnknownMethodError("criterion='hinf' is defined for LTI systems only; use 'h2'")


def modal_truncation(sys: LQOSystem, r: int, *, criterion: str = "h2") -> ReductionResult:
    r"""Modal truncation: keep the r dominant modes (by h2 contribution).

    Parameters
    ----------
    sys : LQOSystem
        Asymptotically stable system (continuous or discrete, LTI or LQO, dense or diagonal).
    r : int
        Reduced real state dimension, ``1 <= r < sys.order``.
    criterion : {"h2", "hinf"}
        Mode score (see :func:`group_scores`); "hinf" only for LTI systems.

    Returns
    -------
    ReductionResult
        ``method="modal"``, exact ``h2_error``; ``info["kept"]``: indices of the kept modes (for
        conjugate-pair systems: of the stored half modes; for dense systems: of
        ``np.linalg.eig(sys.A)``'s eigenvalues), ``info["scores"]``: all group scores.

    Forms of the reduced model
    --------------------------
    * **Conjugate-pair systems** (:meth:`LQOSystem.conjugate_pairs`): whole pairs are kept, so r
      must be even (OrderError otherwise); the ROM is again a conjugate-pair system with the kept
      half modes (same ``scale``), ready to be written back into a halved Deep-SSM layout.
    * **Diagonal systems**: the kept entries of ``lam``, rows of B, columns of C and the kept
      sub-block of M (a diagonal ROM, real for real systems).
    * **Dense real systems**: eigendecomposition :math:`A = X\,\mathrm{diag}(\mu)X^{-1}`; conjugate
      pairs are kept together and the ROM is real block-diagonal, a pair contributing the block
      ``[[Re mu, -Im mu], [Im mu, Re mu]]``, ``B^ = [Re b; Im b]``, ``C^ = 2 [Re c, -Im c]``,
      :math:`\hat M_j = V^T M_j V` with ``V = 2 [Re x, -Im x]`` (b: row of :math:`X^{-1}B`,
      c: column of :math:`CX`). If one slot is left and the next group is a pair, the next
      best real mode is taken; if there is none, OrderError.
    * **Dense complex systems**: a complex diagonal ROM of the kept modes.
    * **Defective or nearly defective A** (eigenvector condition number > 1e8, e.g. a Jordan
      block): the eigenvector form would be meaningless, so clusters of close eigenvalues are kept
      or dropped whole and the ROM is the spectral projection computed from an ordered Schur form
      (:mod:`mor_lqo.reduction.modal_schur`); ``info["form"]`` is ``"schur"`` (else ``"modal"``),
      ``info["kept"]`` indexes ``np.linalg.eig(sys.A)``'s eigenvalues, ``info["scores"]`` are the
      cluster scores.

    Raises
    ------
    OrderError
        Invalid r, odd r for a conjugate-pair system, or r would split a conjugate pair.
    UnstableSystemError
        If ``sys`` is not asymptotically stable.
    IllConditionedError
        If even the Schur-based decoupling of kept and discarded modes is ill-conditioned
        (condition number > 1e8, named in the message), or ``criterion="hinf"`` on a defective A.
    """
    check_system(sys)
    r = check_order(r, sys.order)
    _check_criterion(criterion, sys)
    check_stable(sys, "modal truncation")
    disc = sys.is_discrete

    extra = {}
    if sys.half is not None:
        rom, kept, scores = _modal_pairs(sys, r, criterion)
    elif sys.is_diagonal:
        lam = sys.lam
        groups = np.stack([np.arange(sys.n), -np.ones(sys.n, int)], axis=1)
        scores = group_scores(lam, sys.B, sys.C, sys.M, groups, disc, criterion)
        kept = _select(scores, np.ones(sys.n, int), r)
        M = None if sys.M is None else sys.M[:, kept][:, :, kept]
        rom = LQOSystem._make(lam=lam[kept], B=sys.B[kept], C=sys.C[:, kept], M=M, D=sys.D,
                              dt=sys.dt, convention=sys.convention)
    else:
        rom, kept, scores, extra = _modal_dense(sys, r, criterion)
    return ReductionResult(rom=rom, h2_error=h2_error(sys, rom), h2_norm=h2_norm(sys), method="modal",
                           info={"kept": kept, "scores": scores, "criterion": criterion, **extra})


def _modal_pairs(sys: LQOSystem, r: int, criterion: str):
    lam, B, C, M, kappa = sys.half
    if r % 2:
        raise OrderError(
            f"conjugate-pair systems are truncated by whole pairs (real order 2 each): r must be "
            f"even, got r = {r}"
        )
    n = lam.shape[0]
    # group k = stored mode k and its conjugate in the conjugation-closed 2n form
    groups = np.stack([np.arange(n), np.arange(n, 2 * n)], axis=1)
    scores = group_scores(sys.lam, sys.B, sys.C, sys.M, groups, sys.is_discrete, criterion)
    kept = _select(scores, np.ones(n, int), r // 2)
    Mk = None if M is None else M[:, kept][:, :, kept]
    rom = LQOSystem.conjugate_pairs(lam[kept], B[kept], C[:, kept], M=Mk, D=sys.D, dt=sys.dt,
                                    scale=kappa, convention=sys.convention)
    return rom, kept, scores


def _eig_modal(A: np.ndarray, warn: bool = True):
    mu, X = np.linalg.eig(A)
    cond = np.linalg.cond(X)
    if warn and (not np.isfinite(cond) or cond > 1e10):
        warnings.warn(
            f"the eigenvector matrix is ill-conditioned (cond = {cond:.3g}); A is (nearly) "
            "defective and the modal decomposition is inaccurate",
            UserWarning,
            stacklevel=4,
        )
    return mu, X


def _modal_dense(sys: LQOSystem, r: int, criterion: str):
    mu, X = _eig_modal(sys.A, warn=False)
    cond = np.linalg.cond(X)
    if not np.isfinite(cond) or cond > _EIG_COND_MAX:
        if criterion != "h2":
            raise IllConditionedError(
                f"the eigenvector matrix is ill-conditioned (cond = {cond:.2e}); criterion="
                f"{criterion!r} needs modal coordinates, use criterion='h2' (Schur-based form)")
        rom, kept, scores, info = modal_schur(sys, r, mu, _select)
        info["eigenvector_cond"] = float(cond)
        return rom, kept, scores, info
    Bz = np.linalg.solve(X, sys.B)
    Cz = sys.C @ X
    Mz = None if sys.M is None else X.conj().T @ sys.M @ X
    disc = sys.is_discrete
    if sys.is_complex:
        groups = np.stack([np.arange(sys.n), -np.ones(sys.n, int)], axis=1)
        scores = group_scores(mu, Bz, Cz, Mz, groups, disc, criterion)
        kept = _select(scores, np.ones(sys.n, int), r)
        M = None if Mz is None else Mz[:, kept][:, :, kept]
        rom = LQOSystem._make(lam=mu[kept], B=Bz[kept], C=Cz[:, kept], M=M, D=sys.D, dt=sys.dt,
                              convention=sys.convention)
        return rom, kept, scores, {"form": "modal", "eigenvector_cond": float(cond)}
    groups = _real_pair_groups(mu)
    sizes = np.where(groups[:, 1] < 0, 1, 2)
    scores = group_scores(mu, Bz, Cz, Mz, groups, disc, criterion)
    chosen = _select(scores, sizes, r)
    Ar = np.zeros((r, r))
    Br = np.zeros((r, sys.m))
    Cr = np.zeros((sys.p, r))
    V = np.zeros((sys.n, r))
    kept, k = [], 0
    for g in chosen:
        j = groups[g, 0]
        if groups[g, 1] < 0:
            Ar[k, k] = mu[j].real
            Br[k] = Bz[j].real
            Cr[:, k] = Cz[:, j].real
            V[:, k] = X[:, j].real
            kept.append(j)
            k += 1
        else:
            a, b = mu[j].real, mu[j].imag
            Ar[k:k + 2, k:k + 2] = [[a, -b], [b, a]]
            Br[k], Br[k + 1] = Bz[j].real, Bz[j].imag
            Cr[:, k], Cr[:, k + 1] = 2 * Cz[:, j].real, -2 * Cz[:, j].imag
            V[:, k], V[:, k + 1] = 2 * X[:, j].real, -2 * X[:, j].imag
            kept.extend((j, j + 1))
            k += 2
    Mr = None
    if sys.M is not None:
        Mr = V.T @ sys.M @ V
        Mr = (Mr + np.swapaxes(Mr, 1, 2)) / 2
    rom = LQOSystem._make(A=Ar, B=Br, C=Cr, M=Mr, D=sys.D, dt=sys.dt, convention=sys.convention)
    return rom, np.asarray(kept, dtype=int), scores, {"form": "modal", "eigenvector_cond": float(cond)}


def to_conjugate_pairs(sys: LQOSystem, scale: float = 2.0, *, allow_real_modes: bool = False) -> LQOSystem:
    r"""Rewrite a real LTI system as a conjugate-pair system (for halved Deep-SSM layouts).

    With :math:`A = X\,\mathrm{diag}(\mu)X^{-1}` (complex poles in conjugate pairs), each pair
    :math:`(\mu, \bar\mu)` becomes one stored mode ``lam = mu`` (Im mu > 0), ``b = (X^{-1}B)_j``,
    ``c = (2/scale) (CX)_{:,j}``, so that ``LQOSystem.conjugate_pairs(lam, B, C, scale=scale)``
    has exactly the same input-output map and the same order.

    Parameters
    ----------
    sys : LQOSystem
        Real LTI system (dense or diagonal).
    scale : float, default 2.0
        :math:`\kappa` of the target layout (see :meth:`LQOSystem.conjugate_pairs`).
    allow_real_modes : bool, default False
        A real pole cannot share a stored slot with another pole. If True, each real pole gets its
        own slot (real ``lam``, ``c = (1/scale)(CX)_{:,j}``); the I/O map is still exact but the
        conjugate-pair system then has order ``2 * slots`` > ``sys.order``.

    Raises
    ------
    LayoutError
        If the system has real poles and ``allow_real_modes`` is False.
    ComplexSystemError
        If the system is complex.
    NotImplementedError
        For quadratic outputs (a real quadratic form is in general not of the block-diagonal
        conjugate-pair form ``x^H M x`` of the stored half state).
    """
    from ..errors import ComplexSystemError

    if sys.is_complex:
        raise ComplexSystemError("to_conjugate_pairs expects a real system")
    if sys.has_quadratic:
        raise NotImplementedError("quadratic outputs cannot in general be written in conjugate-pair form")
    mu, X = _eig_modal(sys.A)
    Bz = np.linalg.solve(X, sys.B)
    Cz = sys.C @ X
    groups = _real_pair_groups(mu)
    real = groups[:, 1] < 0
    if np.any(real) and not allow_real_modes:
        raise LayoutError(
            f"the system has {int(real.sum())} real pole(s) {np.real(mu[groups[real, 0]])}; a halved "
            "conjugate-pair layout stores one complex pole per pair (pass allow_real_modes=True to "
            "give each real pole its own slot)"
        )
    j = groups[:, 0]
    lam = mu[j]
    fac = np.where(real, 1.0, 2.0) / float(scale)
    Bh = np.where(real[:, None], Bz[j].real, Bz[j])
    Ch = np.where(real[None, :], Cz[:, j].real, Cz[:, j]) * fac
    return LQOSystem.conjugate_pairs(np.where(real, lam.real, lam), Bh, Ch, D=sys.D, dt=sys.dt,
                                     scale=scale, convention=sys.convention)
