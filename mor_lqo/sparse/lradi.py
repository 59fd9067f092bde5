r"""Low-rank ADI (LR-ADI) for large sparse Lyapunov equations, with self-generating projection shifts.

Solves the generalized Lyapunov equation (``adjoint=False``)

.. math::

    A X E^H + E X A^H + G G^H = 0 \qquad (\text{adjoint: } A^H X E + E^H X A + G G^H = 0)

for a low-rank factor :math:`X \approx Z Z^H`, Z (n, k), with the residual-factor formulation
(Benner, Kürschner, Saak 2013): starting from :math:`W_0 = G`, for shifts :math:`\alpha_j`,
:math:`\mathrm{Re}\,\alpha_j < 0`,

.. math::

    V_j = (A + \alpha_j E)^{-1} W_{j-1}, \quad
    W_j = W_{j-1} - 2\,\mathrm{Re}(\alpha_j)\, E V_j, \quad
    Z_j = [Z_{j-1},\ \sqrt{-2\,\mathrm{Re}\,\alpha_j}\ V_j],

and the residual is exactly :math:`\mathcal R(Z_jZ_j^H) = W_j W_j^H`, so
:math:`\|\mathcal R\|_2 = \|W_j^HW_j\|_2` costs an (m x m) eigenvalue problem. Iteration stops
when :math:`\|\mathcal R\|_2 \le \mathrm{tol}\,\|G^HG\|_2`; the achieved relative residual is reported.

**Real arithmetic for conjugate pairs** (real A, E, G; BKS 2013, Thm. 1): a pair
:math:`\alpha, \bar\alpha` is processed with one complex solve,
:math:`\gamma = 2\sqrt{-\mathrm{Re}\,\alpha}`, :math:`\delta = \mathrm{Re}\,\alpha / \mathrm{Im}\,\alpha`,

.. math::

    W \leftarrow W + \gamma^2 E(\mathrm{Re}\,V + \delta\,\mathrm{Im}\,V), \quad
    Z \leftarrow [Z,\ \gamma(\mathrm{Re}\,V + \delta\,\mathrm{Im}\,V),\ \gamma\sqrt{\delta^2+1}\,\mathrm{Im}\,V],

so Z stays real. **Shifts** (BKS 2014, "projection shifts"): the Ritz values of the pencil
:math:`(U^HAU, U^HEU)` with U an orthonormal basis of the last batch of Z columns (initially of
:math:`[G, AG, A^{-1}EG, (A^{-1}E)^2G]`), unstable Ritz values mirrored into the left half-plane.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from ..errors import InvalidArgumentError, NumericalAccuracyError, UnstableSystemError
from .system import SingularPencilError, SparseLQOSystem

__all__ = ["LowRankFactor", "lradi", "projection_shifts", "compress_columns", "require_converged"]


@dataclass(frozen=True)
class LowRankFactor:
    """Result of :func:`lradi`: :math:`X \\approx Z Z^H`.

    Attributes
    ----------
    Z : ndarray, shape (n, k)
    residual : float
        Achieved relative residual :math:`\\|\\mathcal R(ZZ^H)\\|_2 / \\|GG^H\\|_2`.
    history : tuple of float
        Relative residual after every ADI step.
    iterations : int
        Number of shifts used (a conjugate pair counts 2).
    converged : bool
        ``residual <= tol``.
    shifts : ndarray
        The shifts used, in order.
    unstable_ritz : bool
        Whether a Ritz value with non-negative real part was met (a hint that the pencil is unstable).
    tol : float
        The requested tolerance.
    cycle : ndarray
        The cycled shift set (``shifts="cyclic"`` or fixed shifts); empty for projection shifts.
    switched : bool
        Whether a slow cyclic iteration was continued with projection shifts.
    W : ndarray, shape (n, k_G) or None
        Residual factor: the residual of :math:`ZZ^H` is :math:`WW^H` (before the final column
        compression of Z, which changes it by at most rounding).
    """

    Z: np.ndarray
    residual: float
    history: tuple
    iterations: int
    converged: bool
    shifts: np.ndarray
    unstable_ritz: bool
    tol: float
    cycle: np.ndarray = field(default_factory=lambda: np.array([], dtype=complex))
    switched: bool = False
    W: np.ndarray | None = None


def _check_tol(tol, maxiter):
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 < tol < 1):
        raise InvalidArgumentError(f"tol must be a number in (0, 1), got {tol!r}")
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 1:
        raise InvalidArgumentError(f"maxiter must be a positive integer, got {maxiter!r}")


def _gram_norm(W: np.ndarray) -> float:
    """:math:`\\|W^HW\\|_2 = \\|W\\|_2^2` through the small Gram matrix."""
    if W.shape[1] == 0:
        return 0.0
    return float(max(np.linalg.eigvalsh(W.conj().T @ W)[-1], 0.0))


_SLOW_CYCLE = 0.1  # a cyclic shift set that reduces the residual less than this per cycle is abandoned
_MAX_BASIS = 24  # columns of the projection basis (bounds the number of shifts per batch)
_EPS = np.finfo(float).eps  # re-compression of Z: Gram eigenvalues below eps relative (accuracy limit)


def _orth(X: np.ndarray, cap: int | None = None) -> np.ndarray:
    r"""Orthonormal basis of range(X); with ``cap``, of a random ``cap``-column sketch of it.

    Two passes of Gram-matrix orthonormalisation (columns scaled to unit norm, then
    :math:`X^HX = U\Lambda U^H`, :math:`X \leftarrow XU_k\Lambda_k^{-1/2}` keeping
    :math:`\lambda > 10^{-14}\lambda_{\max}`): O(n k^2) in matrix products, several times faster
    than a Householder QR of a tall n x k block. The basis only feeds Rayleigh–Ritz shift
    computations, for which directions below 1e-7 relative are irrelevant.
    """
    if X.shape[1] == 0:
        return X
    if cap is not None and X.shape[1] > cap:
        rng = np.random.default_rng(0)
        X = X @ rng.standard_normal((X.shape[1], cap))
    X = X / np.maximum(np.linalg.norm(X, axis=0), np.finfo(float).tiny)
    for _ in range(2):
        lam, U = np.linalg.eigh(X.conj().T @ X)
        keep = lam > 1e-14 * max(lam[-1], np.finfo(float).tiny)
        X = (X @ U[:, keep]) / np.sqrt(lam[keep])
    return X


def _clean_shifts(ritz: np.ndarray, real: bool) -> tuple[np.ndarray, bool]:
    """Stable shifts from Ritz values: mirror unstable ones, pair conjugates (real systems)."""
    ritz = ritz[np.isfinite(ritz) & (ritz != 0)]
    unstable = bool(np.any(ritz.real >= 0))
    s = np.where(ritz.real < 0, ritz, -np.conj(ritz))
    s = s[s.real < 0]
    if not real:
        return s, unstable
    small = np.abs(s.imag) <= 1e-8 * np.abs(s)
    out = list(np.unique(s[small].real).astype(complex))
    for z in np.unique(s[~small & (s.imag > 0)]):
        out += [z, np.conj(z)]  # a pair is always adjacent: z then conj(z)
    return np.array(out, dtype=complex), unstable


def projection_shifts(sys: SparseLQOSystem, U: np.ndarray, adjoint: bool = False) -> tuple[np.ndarray, bool]:
    """Shifts from the Ritz values of :math:`(U^HAU, U^HEU)` (or of the adjoint pencil).

    Parameters
    ----------
    sys : SparseLQOSystem
    U : ndarray, shape (n, k)
        Orthonormal basis.
    adjoint : bool
        Ritz values of :math:`(A^H, E^H)` (the conjugates).

    Returns
    -------
    shifts : ndarray (complex)
        Stable shifts (conjugate pairs adjacent for real systems).
    unstable : bool
        Whether any Ritz value had a non-negative real part.
    """
    H = U.conj().T @ (sys.A @ U)
    S = U.conj().T @ sys.E_matvec(U)
    try:
        ritz = sla.eigvals(H, S) if sys.E is not None else np.linalg.eigvals(H)
    except (np.linalg.LinAlgError, ValueError):  # pragma: no cover - degenerate projection
        return np.array([], dtype=complex), False
    if adjoint:
        ritz = np.conj(ritz)
    return _clean_shifts(ritz, not sys.is_complex)


def heuristic_shifts(candidates: np.ndarray, num: int, real: bool) -> np.ndarray:
    r"""Penzl's greedy selection of ``num`` ADI shifts from a set of stable candidates (Ritz values).

    One ADI step with shift :math:`\alpha` multiplies the residual component of an eigenvalue
    :math:`\lambda` by :math:`(\lambda - \bar\alpha)/(\lambda + \alpha)`. The first shift minimises
    the largest such factor over the candidates; every further shift is the candidate where the
    product of the factors of the shifts chosen so far is largest (with its conjugate, for real data).
    """
    R = candidates[candidates.real < 0]
    if R.size == 0:
        return R

    def rho(alphas):
        v = np.ones(R.size)
        for a in alphas:
            v *= np.abs((R - np.conj(a)) / (R + a))
        return v

    first = min(R, key=lambda a: np.max(rho([a] + ([np.conj(a)] if real and a.imag else []))))
    chosen = [first] + ([np.conj(first)] if real and first.imag else [])
    while len(chosen) < num:
        v = rho(chosen)
        k = int(np.argmax(v))
        if v[k] < 1e-14 or any(np.isclose(R[k], c) for c in chosen):
            break
        chosen += [R[k]] + ([np.conj(R[k])] if real and R[k].imag else [])
    return np.array(chosen, dtype=complex)


def _initial_shifts(sys, G, adjoint, nblocks, npow=1, cap=_MAX_BASIS):
    """Ritz-value shifts on span[G, A G, .., A^npow G, (A^{-1}E) G, .., (A^{-1}E)^nblocks G]."""
    solver = sys.solver()
    Aop = sys.A.conj().T if adjoint else sys.A
    blocks = [G]
    X = G
    for _ in range(npow):
        X = Aop @ X
        X = X / max(np.linalg.norm(X), np.finfo(float).tiny)
        blocks.append(X)
    X = G
    for _ in range(nblocks):
        X = solver.solve(0.0, sys.E_matvec(X, adjoint), adjoint=adjoint)
        X = X / max(np.linalg.norm(X), np.finfo(float).tiny)
        blocks.append(X)
    Y = np.concatenate(blocks, axis=1)
    Y = Y / np.maximum(np.linalg.norm(Y, axis=0), np.finfo(float).tiny)
    return projection_shifts(sys, _orth(Y, cap), adjoint)


def _shift_setup(sys, G, adjoint, shifts, real, nblocks, num_shifts):
    """Initial shift batch, unstable-Ritz flag and whether the batch is cycled."""
    if isinstance(shifts, str):
        if shifts not in ("projection", "cyclic"):
            raise InvalidArgumentError(f"shifts must be 'projection', 'cyclic' or an array, got {shifts!r}")
        if shifts == "projection":
            batch, unstable = _initial_shifts(sys, G, adjoint, nblocks)
        else:
            ritz, unstable = _initial_shifts(sys, G[:, :4], adjoint, 3 * nblocks, npow=4, cap=48)
            batch = heuristic_shifts(ritz, num_shifts, real)
        if batch.size == 0:
            batch = np.array([-1.0 + 0j])
        return batch, unstable, shifts == "cyclic"
    arr = np.atleast_1d(np.asarray(shifts, dtype=complex))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr.real >= 0):
        raise InvalidArgumentError("shifts must be a non-empty 1-D array with negative real parts")
    if real:
        i = 0
        while i < arr.size:
            if arr[i].imag != 0:
                if i + 1 >= arr.size or arr[i + 1] != np.conj(arr[i]):
                    raise InvalidArgumentError("complex shifts of a real system must come in adjacent "
                                               "conjugate pairs")
                i += 1
            i += 1
    return arr, False, True


def lradi(sys: SparseLQOSystem, G: np.ndarray, *, adjoint: bool = False, tol: float = 1e-10,
          maxiter: int = 500, shifts="cyclic", nblocks: int = 3, num_shifts: int = 8,
          monitor: np.ndarray | None = None, monitor_rtol: float = 1e-10,
          fallback: bool | None = None) -> LowRankFactor:
    r"""Low-rank factor Z of :math:`AXE^H + EXA^H + GG^H = 0` (adjoint: :math:`A^HXE + E^HXA + GG^H = 0`).

    Parameters
    ----------
    sys : SparseLQOSystem
        Supplies A, E and the sparse shifted solver. The pencil must be asymptotically stable.
    G : ndarray, shape (n, k)
        Right-hand-side factor.
    adjoint : bool
        Solve the adjoint (observability-type) equation.
    tol : float
        Stop when :math:`\|W^HW\|_2 \le \mathrm{tol}\,\|G^HG\|_2` (relative Lyapunov residual).
    maxiter : int
        Maximal number of shifts (ADI steps).
    shifts : {"projection", "cyclic"} or ndarray
        ``"projection"``: self-generating projection shifts, regenerated from the newest Z columns after
        every batch (a new sparse factorisation per step). ``"cyclic"``: ``num_shifts`` shifts chosen
        once by Penzl's heuristic from Ritz values of a rational Krylov space and cycled, so their
        ``num_shifts`` factorisations are reused (fastest when factorising dominates, n >~ 10^4); if a
        cycle reduces the residual by less than a factor 10, the iteration continues with projection
        shifts (``switched`` in the result).
        An array: fixed shifts (cycled; Re < 0; conjugate pairs adjacent for real data).
    nblocks : int
        Number of inverse-Krylov blocks of the initial projection basis.
    num_shifts : int
        Number of cyclic shifts (``shifts="cyclic"``).
    monitor : ndarray, shape (q, n), optional
        Additionally require that :math:`\|\mathrm{monitor}\,Z\|_F^2` has settled: the contribution of
        the last ``window`` steps (one shift cycle, at least 4) is at most ``monitor_rtol`` times the
        total. Used for h2 errors, whose size can be far below the scale of the residual.
    monitor_rtol : float
    fallback : bool, optional
        Switch from a slow shift cycle to projection shifts (default: only for ``shifts="cyclic"``).

    Returns
    -------
    LowRankFactor
        Never raises for non-convergence: check ``converged`` or use :func:`require_converged`.
    """
    _check_tol(tol, maxiter)
    real = not sys.is_complex and not np.iscomplexobj(G)
    G = np.asarray(G, dtype=np.float64 if real else np.complex128)
    if G.ndim != 2 or G.shape[0] != sys.n:
        raise InvalidArgumentError(f"G must have shape ({sys.n}, k), got {G.shape}")
    g0 = _gram_norm(G)
    if g0 == 0:
        return LowRankFactor(np.zeros((sys.n, 0), G.dtype), 0.0, (), 0, True, np.array([]), False, tol)
    batch, unstable, fixed = _shift_setup(sys, G, adjoint, shifts, real, nblocks, num_shifts)
    solver = sys.solver()
    if fixed:
        solver.max_cached = max(solver.max_cached, np.unique(batch).size + 1)
    W, blocks, used, history = G.copy(), [], [], []
    res, it, pos, batch_start = 1.0, 0, 0, 0
    incr: list[float] = []
    res_cycle, switched = 1.0, False
    window = max(4, batch.size if fixed else 8)
    if fallback is None:
        fallback = isinstance(shifts, str) and shifts == "cyclic"
    compress_at = max(8 * G.shape[1], 200)
    while it < maxiter:
        if pos >= batch.size:
            if fixed and fallback and res > _SLOW_CYCLE * res_cycle:
                fixed, switched = False, True  # the cycle reduces the residual too slowly: projection shifts
            res_cycle = res
            if not fixed:
                U = _orth(np.concatenate(blocks[batch_start:], axis=1), _MAX_BASIS)
                new, u2 = projection_shifts(sys, U, adjoint)
                unstable |= u2
                batch = new if new.size else batch
            pos, batch_start = 0, len(blocks)
        a = batch[pos]
        try:
            V = solver.solve(a, W, adjoint=adjoint)
        except SingularPencilError:
            if not unstable:
                raise
            break  # a mirrored unstable Ritz value hit an eigenvalue: reported as unstable, not converged
        if real and a.imag != 0:  # conjugate pair in real arithmetic
            g, d = 2.0 * np.sqrt(-a.real), a.real / a.imag
            T = V.real + d * V.imag
            W = W + g * g * sys.E_matvec(T, adjoint)
            blocks += [g * T, g * np.sqrt(d * d + 1) * V.imag]
            used += [a, np.conj(a)]
            pos, it = pos + 2, it + 2
        else:
            if real:
                V = V.real
            W = W - 2.0 * a.real * sys.E_matvec(V, adjoint)
            blocks.append(np.sqrt(-2.0 * a.real) * V)
            used.append(a)
            pos, it = pos + 1, it + 1
        ncols = sum(b.shape[1] for b in blocks)
        if ncols > compress_at and batch_start > 0:  # wide right-hand sides (LQO): keep Z at its rank
            # only the finished batches: the projection shifts come from the current batch's columns
            old = compress_columns(np.concatenate(blocks[:batch_start], axis=1), _EPS)
            blocks = [old] + blocks[batch_start:]
            batch_start = 1
            compress_at = max(2 * blocks[0].shape[1], blocks[0].shape[1] + 4 * G.shape[1], 200)
        res = _gram_norm(W) / g0
        history.append(res)
        if monitor is not None:
            nb = 2 if (real and a.imag != 0) else 1
            incr.append(sum(float(np.linalg.norm(monitor @ b) ** 2) for b in blocks[-nb:]))
        if not np.isfinite(res):
            break
        if res <= tol and _settled(incr, window, monitor_rtol, monitor is not None):
            break
    Z = np.concatenate(blocks, axis=1)
    if Z.shape[1] > compress_at:  # (below that, compression costs more than it saves downstream)
        Z = compress_columns(Z, _EPS)
    ok = bool(res <= tol) and _settled(incr, window, monitor_rtol, monitor is not None)
    return LowRankFactor(Z, float(res), tuple(history), it, ok, np.array(used), unstable, tol,
                         batch if fixed else np.array([], dtype=complex), switched, W)


def _settled(incr: list, window: int, rtol: float, active: bool) -> bool:
    """The last ``window`` increments of the monitored sum are at most ``rtol`` times the total."""
    if not active:
        return True
    total = sum(incr)
    return len(incr) >= window and sum(incr[-window:]) <= rtol * total


def require_converged(fac: LowRankFactor, what: str) -> LowRankFactor:
    """Raise unless LR-ADI met its tolerance (never a silently inaccurate result).

    Raises
    ------
    UnstableSystemError
        Not converged and an unstable Ritz value was seen.
    NumericalAccuracyError
        Not converged otherwise (the message gives the achieved residual).
    """
    if fac.converged:
        return fac
    msg = (f"LR-ADI for the {what} did not converge: relative residual {fac.residual:.3g} > tol "
           f"{fac.tol:.3g} after {fac.iterations} steps")
    if fac.unstable_ritz:
        raise UnstableSystemError(msg + "; Ritz values in the closed right half-plane were found: the "
                                  "system is probably not asymptotically stable")
    raise NumericalAccuracyError(msg + "; raise maxiter or tol")


def compress_columns(G: np.ndarray, rtol: float | None = None) -> np.ndarray:
    r"""Column compression :math:`\hat G` with :math:`\hat G\hat G^H \approx GG^H` (fewer columns).

    Eigen-decomposition of the small Gram matrix :math:`G^HG = U\Lambda U^H`; :math:`\hat G = GU_k`
    keeps the eigenvalues above ``rtol * max(Lambda)`` (default :math:`k\varepsilon`), so
    :math:`\|GG^H - \hat G\hat G^H\|_2 \le \mathrm{rtol}\,\|GG^H\|_2`. A wide G (k > n, e.g. the
    LQO right-hand side :math:`[C^H, M_1Z_P, \dots, M_pZ_P]` of a small system with many outputs) uses the
    n x n Gram :math:`GG^H = V\Lambda V^H` instead (same nonzero eigenvalues): :math:`\hat G = V_k\Lambda_k^{1/2}`.

    Parameters
    ----------
    G : ndarray, shape (n, k)

    Returns
    -------
    ndarray, shape (n, k') with k' <= k
    """
    n, k = G.shape
    if k == 0:
        return G
    wide = k > n
    lam, U = np.linalg.eigh(G @ G.conj().T if wide else G.conj().T @ G)
    rtol = k * np.finfo(float).eps if rtol is None else rtol
    keep = lam > rtol * max(lam[-1], 0.0)
    if not np.any(keep):
        return G[:, :0]
    if wide:
        return (U[:, keep] * np.sqrt(lam[keep]))[:, ::-1]
    return G @ U[:, keep][:, ::-1]
