r"""Modal truncation through an ordered Schur form, for (nearly) defective state matrices.

When the eigenvector matrix :math:`X` of :math:`A` is ill-conditioned (a Jordan block, nearly equal
eigenvalues with nearly parallel eigenvectors), :math:`X^{-1}B` and :math:`CX` are meaningless
(entries of 1e60 and more for a Jordan block). Instead (docs/theory.md §7.7, §11.1):

1. **Clusters.** Eigenvalues closer than ``delta`` are linked (single linkage; for real systems a
   value and its conjugate are in the same cluster). A cluster is kept or dropped as a whole, so the
   kept and dropped spectra are separated by at least ``delta``.
2. **Split.** For a set :math:`S` of clusters, an ordered Schur form puts :math:`S` first,
   :math:`A = U\begin{bmatrix}T_{11} & T_{12}\\ 0 & T_{22}\end{bmatrix}U^H`. The Sylvester equation
   :math:`T_{11}Y - YT_{22} + T_{12} = 0` block-diagonalises it with
   :math:`\begin{bmatrix}I & Y\\ 0 & I\end{bmatrix}`, and the spectral-projection ROM is

   .. math:: \hat A = T_{11},\quad \hat B = (U^HB)_1 - Y(U^HB)_2,\quad \hat C = (CU)_1,
             \quad \hat M_j = U_1^H M_j U_1,

   the same transfer function as eigenvector truncation when that is well defined.
3. **Scores.** The score of a cluster is the squared h2 norm of its own spectral-projection
   subsystem (one split per cluster). Clusters are chosen greedily as in the eigenvector route.

The transformation has condition number about :math:`1 + \|Y\|_2^2`; above ``cond_max`` the split
is refused with :class:`~mor_lqo.errors.IllConditionedError` (the kept and dropped parts cannot be
decoupled accurately), never returned silently.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..errors import IllConditionedError, OrderError
from ..norms import h2_norm
from ..systems import LQOSystem

__all__ = ["clusters", "schur_split", "modal_schur"]

_COND_MAX = 1e8


def clusters(mu: np.ndarray, real: bool, delta: float) -> list[np.ndarray]:
    """Single-linkage clusters of eigenvalues closer than ``delta`` (conjugates together if real)."""
    n = mu.size
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = np.abs(mu[:, None] - mu[None, :]) <= delta
    if real:
        close |= np.abs(mu[:, None] - np.conj(mu)[None, :]) <= delta
    for i, j in zip(*np.nonzero(np.triu(close, 1))):
        parent[find(i)] = find(j)
    roots = np.array([find(i) for i in range(n)])
    return [np.nonzero(roots == g)[0] for g in dict.fromkeys(roots.tolist())]


def schur_split(sys: LQOSystem, keep_mu: np.ndarray, drop_mu: np.ndarray,
                cond_max: float = _COND_MAX) -> tuple[LQOSystem, float]:
    """Spectral-projection ROM on the eigenvalues ``keep_mu`` (module notes, step 2).

    Returns the ROM and the condition number estimate ``1 + ||Y||^2`` of the decoupling.
    """
    real = not sys.is_complex

    def first(x, y=None):  # scipy passes (re, im) for real Schur forms, a complex value otherwise
        z = complex(x, y) if y is not None else complex(x)
        dk = np.min(np.abs(keep_mu - z))
        dd = np.min(np.abs(drop_mu - z)) if drop_mu.size else np.inf
        return bool(dk < dd)

    T, U, k = sla.schur(sys.A, output="real" if real else "complex", sort=first)
    r = keep_mu.size
    if k != r:
        raise IllConditionedError(f"the ordered Schur form selected {k} eigenvalues instead of {r} "
                                  "(kept and dropped eigenvalues are not separated)")
    Y = sla.solve_sylvester(T[:r, :r], -T[r:, r:], -T[:r, r:])
    normY = float(np.linalg.norm(Y, 2)) if Y.size else 0.0
    cond = 1.0 + normY**2
    if not np.isfinite(cond) or cond > cond_max:
        raise IllConditionedError(
            f"modal truncation: decoupling the kept from the discarded modes has condition number "
            f"{cond:.2e} > {cond_max:.0e} (eigenvalues too close across the split); choose another "
            "r or use balanced truncation")
    UH = U.conj().T
    Bt = UH @ sys.B
    Bh = Bt[:r] - Y @ Bt[r:]
    Ch = sys.C @ U[:, :r]
    Mh = None
    if sys.M is not None:
        U1 = U[:, :r]
        Mh = U1.conj().T @ sys.M @ U1
        Mh = (Mh + np.conj(np.swapaxes(Mh, 1, 2))) / 2
    rom = LQOSystem._make(A=T[:r, :r], B=Bh, C=Ch, M=Mh, D=sys.D, dt=sys.dt,
                          convention=sys.convention)
    return rom, cond


def modal_schur(sys: LQOSystem, r: int, mu: np.ndarray, select) -> tuple[LQOSystem, np.ndarray,
                                                                       np.ndarray, dict]:
    """Modal truncation to order r by clusters (module notes). ``select(scores, sizes, r)`` picks
    clusters; returns the ROM, the kept eigenvalue indices (into ``mu``), the cluster scores and
    an info dict (``"form"``, ``"clusters"``, ``"decoupling_cond"``)."""
    real = not sys.is_complex
    scale = max(float(np.max(np.abs(mu))), 1.0 if sys.is_discrete else np.finfo(float).tiny)
    delta = 1e-3 * scale
    groups = clusters(mu, real, delta)
    everything = np.arange(mu.size)
    scores = np.empty(len(groups))
    nod = LQOSystem._make(A=sys.A, B=sys.B, C=sys.C, M=sys.M, D=np.zeros_like(sys.D), dt=sys.dt,
                          convention=sys.convention)  # scores of the strictly proper parts
    for g, idx in enumerate(groups):
        part, _ = schur_split(nod, mu[idx], mu[np.setdiff1d(everything, idx)], cond_max=np.inf)
        scores[g] = h2_norm(part) ** 2 if np.all(np.isfinite(part.B)) else np.inf
    sizes = np.array([idx.size for idx in groups])
    try:
        chosen = select(scores, sizes, r)
    except OrderError as exc:
        raise OrderError(f"r = {r} cannot be formed from whole clusters of close eigenvalues "
                         f"(cluster sizes {sorted(sizes.tolist())}) taken by decreasing score; "
                         "try a nearby r") from exc
    kept = np.sort(np.concatenate([groups[g] for g in chosen]))
    rom, cond = schur_split(sys, mu[kept], mu[np.setdiff1d(everything, kept)])
    info = {"form": "schur", "clusters": [groups[g].tolist() for g in range(len(groups))],
            "decoupling_cond": cond}
    return rom, kept, scores, info
