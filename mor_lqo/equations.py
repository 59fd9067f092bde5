r"""Matrix equations: continuous Lyapunov/Sylvester and discrete Stein/Stein–Sylvester.

Conventions (``^H`` is the conjugate transpose; real data: transpose)::

    lyapunov(A, Q)             A X + X A^H + Q = 0
    sylvester(A, B, Q)         A X + X B^H + Q = 0
    stein(A, Q)                A X A^H - X + Q = 0
    stein_sylvester(A, B, Q)   A X B^H - X + Q = 0

Operands are dense arrays (n, n) or :class:`Diagonal` wrappers of eigenvalue vectors (n,). Diagonal
operands use closed Cauchy forms; dense ones a Bartels–Stewart method: (real or complex) Schur
factors, then a *recursive blocked* triangular solve whose updates are matrix products (level 3) and
whose leaves are LAPACK ``?trsyl`` (continuous) or a numba kernel (discrete). Leading batch axes
(..., n, n) / (..., n) are supported; the solves are then done one system at a time (diagonal
operands are vectorised).

The Schur factors of a system's state matrix are cached on the (immutable) system object by
:mod:`mor_lqo.norms`, so h2 norms, inner products and errors share one factorisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from ._validation import as_float_or_complex
from .errors import ShapeError

_LEAF = 64  # leaf size of the recursive triangular solvers


def _tri():
    """The numba kernels, imported on first use (numba costs ~0.2 s to import)."""
    from .kernels import triangular_numba

    return triangular_numba


@dataclass(frozen=True)
class Diagonal:
    """A diagonal operand ``diag(lam)`` given by its entries, shape (..., n)."""

    lam: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "lam", as_float_or_complex(self.lam, "lam"))


@dataclass(frozen=True)
class Factor:
    """Schur factor ``A = U T U^H`` of a dense operand, or the eigenvalues of a diagonal one.

    ``T`` is upper triangular (complex) or quasi-triangular (real Schur form, 2x2 blocks).
    """

    T: np.ndarray | None = None
    U: np.ndarray | None = None
    lam: np.ndarray | None = None

    @property
    def is_diagonal(self) -> bool:
        return self.lam is not None

    @property
    def is_real(self) -> bool:
        arr = self.lam if self.lam is not None else self.T
        return not np.iscomplexobj(arr)

    @property
    def n(self) -> int:
        return (self.lam if self.lam is not None else self.T).shape[0]

    def complex(self) -> Factor:
        """Complex (triangular) Schur form of the same operand."""
        if self.is_diagonal or not self.is_real:
            return self
        T, U = sla.rsf2csf(self.T, self.U)
        return Factor(T=T, U=U)

    def to_schur(self, F: np.ndarray, side: str) -> np.ndarray:
        """Map a right-hand side into Schur coordinates (U^H F on the left, F U on the right)."""
        if self.is_diagonal:
            return F
        return self.U.conj().T @ F if side == "left" else F @ self.U

    def from_schur(self, Y: np.ndarray, side: str) -> np.ndarray:
        if self.is_diagonal:
            return Y
        return self.U @ Y if side == "left" else Y @ self.U.conj().T


def factor(A) -> Factor:
    """Schur-factor a dense matrix (real Schur form for real A) or wrap a :class:`Diagonal`."""
    if isinstance(A, Factor):
        return A
    if isinstance(A, Diagonal):
        if A.lam.ndim != 1:
            raise ShapeError("factor() takes a single operand; use the batched solvers")
        return Factor(lam=A.lam)
    A = as_float_or_complex(A, "A", copy=False)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ShapeError(f"expected a square matrix, got shape {A.shape}")
    out = "real" if not np.iscomplexobj(A) else "complex"
    T, U = sla.schur(A, output=out, check_finite=False)
    return Factor(T=T, U=U)


THIN_SCHUR_MAX = 150  # orders up to which thin_schur beats dgees (LAPACK's dlaqr0 is slow at n ~ 100)
_THIN_OK: list = []  # memo of the one-time check of the thin accumulation


def _thin_schur_raw(A: np.ndarray, W: np.ndarray):
    from .kernels.hqr_numba import hqr_thin

    n = A.shape[0]
    ht, tau, info = lapack.dgehrd(A)
    Q, info2 = lapack.dorghr(ht, tau)
    if info or info2:  # pragma: no cover - LAPACK argument error
        return None
    H = np.asfortranarray(np.triu(ht, -1))
    Z = np.asfortranarray(W @ Q)
    wr, wi = np.empty(n), np.empty(n)
    if hqr_thin(H, Z, wr, wi) != 0:  # pragma: no cover - QR iteration did not converge
        return None
    return np.ascontiguousarray(H), np.ascontiguousarray(Z), wr + 1j * wi


def _thin_ok() -> bool:
    """Check once that dlahqr accumulates on the given rows only (the result equals W U of dgees up to
    the signs of the Schur vectors, which the invariants below do not see)."""
    if not _THIN_OK:
        rng = np.random.default_rng(0)
        A, W = rng.standard_normal((8, 8)), rng.standard_normal((2, 8))
        out = _thin_schur_raw(A, W)
        T, U = sla.schur(A)
        ok = out is not None
        if ok:
            Tt, Z, _ = out
            # W U and its T-coupled products are determined by the (unique, standardized) real Schur form
            # only up to sign flips; compare sign-invariant quantities: |Z|, |T| and W A W^T = Z T Z^T.
            ok = (np.allclose(np.abs(Z), np.abs(W @ U), atol=1e-12) and np.allclose(np.abs(Tt), np.abs(T), atol=1e-12)
                  and np.allclose(Z @ Tt @ Z.T, W @ A @ W.T, atol=1e-12))
        _THIN_OK.append(bool(ok))
    return _THIN_OK[0]


def thin_schur(A: np.ndarray, W: np.ndarray):
    r"""Real Schur form :math:`A = U T U^T` returning T, :math:`W U` (k, n) and the eigenvalues, without U.

    Hessenberg reduction (``dgehrd``/``dorghr``), then LAPACK's double-shift QR iteration ``dlahqr``
    accumulating the transformations on the k rows of :math:`W Q` only. For the h2 norm of a real
    system, :math:`W = [B^T; C]` gives :math:`\tilde B = U^T B` and :math:`\tilde C = C U`. Returns
    None when not applicable (the one-time check of the thin accumulation failed, or the iteration did
    not converge): the caller falls back to :func:`factor`.
    """
    if not _thin_ok():  # pragma: no cover - a LAPACK whose dlahqr touches other rows of Z
        return None
    return _thin_schur_raw(np.asarray(A, np.float64), np.asarray(W, np.float64))


# --------------------------------------------------------------------------- triangular solves
def _split(T: np.ndarray) -> int:
    """Split index of a (quasi-)triangular matrix that does not cut a 2x2 block."""
    k = T.shape[0] // 2
    if k > 0 and not np.iscomplexobj(T) and T[k, k - 1] != 0:
        k += 1
    return k


def _leaf(T, S, F, discrete):
    if discrete and not (np.iscomplexobj(T) or np.iscomplexobj(S)):
        # real (quasi-triangular) Schur forms: real arithmetic; a complex F by its two real parts
        T, S = np.ascontiguousarray(T, np.float64), np.ascontiguousarray(S, np.float64)
        if np.iscomplexobj(F):
            return (_tri().tri_stein_sylvester_real(T, S, np.ascontiguousarray(F.real))
                    + 1j * _tri().tri_stein_sylvester_real(T, S, np.ascontiguousarray(F.imag)))
        return _tri().tri_stein_sylvester_real(T, S, np.ascontiguousarray(F, np.float64))
    if discrete:
        return _tri().tri_stein_sylvester(
            np.ascontiguousarray(T, np.complex128), np.ascontiguousarray(S, np.complex128),
            np.ascontiguousarray(F, np.complex128))
    real = not (np.iscomplexobj(T) or np.iscomplexobj(S) or np.iscomplexobj(F))
    trsyl = lapack.dtrsyl if real else lapack.ztrsyl
    Y, scale, info = trsyl(T, S, -F, trana="N", tranb="T" if real else "C", isgn=1)
    if info < 0:  # pragma: no cover - LAPACK argument error
        raise RuntimeError(f"?trsyl failed with info={info}")
    return Y / scale


def tri_solve(T: np.ndarray, S: np.ndarray, F: np.ndarray, discrete: bool) -> np.ndarray:
    r"""Solve the triangular equation :math:`T Y + Y S^H + F = 0` (continuous) or
    :math:`T Y S^H - Y + F = 0` (discrete), T (n, n), S (r, r) upper (quasi-)triangular.

    Recursive blocking: split the larger of T and S in two (never inside a 2x2 block), solve the
    trailing part, update the right-hand side with a matrix product, solve the leading part.
    T and S are either both real (quasi-triangular real Schur forms, real arithmetic also in
    discrete time) or both complex triangular.
    """
    n, r = F.shape
    if n <= _LEAF and r <= _LEAF:
        return _leaf(T, S, F, discrete)
    Y = np.empty(F.shape, np.result_type(T, S, F))
    if n >= r:
        k = _split(T)
        T11, T12, T22 = T[:k, :k], T[:k, k:], T[k:, k:]
        Y[k:] = tri_solve(T22, S, F[k:], discrete)
        if discrete:
            F1 = F[:k] + T12 @ (Y[k:] @ S.conj().T)
        else:
            F1 = F[:k] + T12 @ Y[k:]
        Y[:k] = tri_solve(T11, S, F1, discrete)
    else:
        k = _split(S)
        S11, S12, S22 = S[:k, :k], S[:k, k:], S[k:, k:]
        Y[:, k:] = tri_solve(T, S22, F[:, k:], discrete)
        if discrete:
            F1 = F[:, :k] + T @ (Y[:, k:] @ S12.conj().T)
        else:
            F1 = F[:, :k] + Y[:, k:] @ S12.conj().T
        Y[:, :k] = tri_solve(T, S11, F1, discrete)
    return Y


def _cauchy(lam1: np.ndarray, lam2: np.ndarray, discrete: bool) -> np.ndarray:
    """Cauchy matrix K with X = F * K solving the diagonal equations (broadcast over batch axes)."""
    prod = lam1[..., :, None] * np.conj(lam2[..., None, :])
    if discrete:
        return 1.0 / (1.0 - prod)
    return -1.0 / (lam1[..., :, None] + np.conj(lam2[..., None, :]))


def solve_factored(fa: Factor, fb: Factor, F: np.ndarray, discrete: bool) -> np.ndarray:
    r"""Solve :math:`A X + X B^H + F = 0` or :math:`A X B^H - X + F = 0` for factored operands."""
    real = fa.is_real and fb.is_real and not np.iscomplexobj(F)
    if fa.is_diagonal and fb.is_diagonal:
        return F * _cauchy(fa.lam, fb.lam, discrete)
    if fa.is_diagonal:
        fb = fb.complex()
        G = fb.to_schur(F, "right")
        Y = _tri().diag_left_sylvester(np.ascontiguousarray(fa.lam, np.complex128),
                                     np.ascontiguousarray(fb.T), np.ascontiguousarray(G,
                                                                                      np.complex128),
                                     discrete)
        X = fb.from_schur(Y, "right")
    else:
        if fb.is_diagonal:
            S = np.diag(fb.lam)
            if np.iscomplexobj(S) or not fa.is_real:
                fa = fa.complex()
            G = fa.to_schur(F, "left")
            Y = tri_solve(fa.T, S, G, discrete)
            X = fa.from_schur(Y, "left")
        else:
            if not (fa.is_real and fb.is_real):
                fa, fb = fa.complex(), fb.complex()
            G = fb.to_schur(fa.to_schur(F, "left"), "right")
            Y = tri_solve(fa.T, fb.T, G, discrete)
            X = fb.from_schur(fa.from_schur(Y, "left"), "right")
    return np.ascontiguousarray(X.real) if real and np.iscomplexobj(X) else X


# --------------------------------------------------------------------------- public API
def _operand(A):
    if isinstance(A, (Diagonal, Factor)):
        return A
    A = as_float_or_complex(A, "A", copy=False)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ShapeError(f"expected square matrices (..., n, n) or a Diagonal, got {A.shape}")
    return A


def _size(op) -> int:
    if isinstance(op, Factor):
        return op.n
    if isinstance(op, Diagonal):
        return op.lam.shape[-1]
    return op.shape[-1]


def _batch_shape(op) -> tuple:
    if isinstance(op, Factor):
        return ()
    if isinstance(op, Diagonal):
        return op.lam.shape[:-1]
    return op.shape[:-2]


def _index(op, idx):
    if isinstance(op, Factor):
        return op
    if isinstance(op, Diagonal):
        return Diagonal(op.lam[idx])
    return op[idx]


def _solve(A, B, Q, discrete: bool) -> np.ndarray:
    A, B = _operand(A), _operand(B)
    Q = as_float_or_complex(Q, "Q", copy=False)
    n, r = _size(A), _size(B)
    if Q.shape[-2:] != (n, r):
        raise ShapeError(f"right-hand side must have shape (..., {n}, {r}), got {Q.shape}")
    if isinstance(A, Diagonal) and isinstance(B, Diagonal):  # fully vectorised
        return Q * _cauchy(A.lam, B.lam, discrete)
    batch = np.broadcast_shapes(_batch_shape(A), _batch_shape(B), Q.shape[:-2])
    if batch == ():
        fa = factor(A)
        return solve_factored(fa, fa if B is A else factor(B), Q, discrete)
    out = None
    for idx in np.ndindex(*batch):
        a = _index(A, idx if _batch_shape(A) else ())
        b = _index(B, idx if _batch_shape(B) else ())
        q = Q[idx] if Q.ndim > 2 else Q
        x = solve_factored(factor(a), factor(b), q, discrete)
        if out is None:
            out = np.empty(batch + x.shape, x.dtype)
        elif np.iscomplexobj(x) and not np.iscomplexobj(out):
            out = out.astype(np.complex128)
        out[idx] = x
    return out


def lyapunov(A, Q) -> np.ndarray:
    r"""Solve :math:`A X + X A^H + Q = 0`.

    Parameters
    ----------
    A : array_like (..., n, n) or Diagonal
    Q : array_like (..., n, n)

    Returns
    -------
    X : ndarray (..., n, n)
    """
    return _solve(A, A, Q, discrete=False)


def sylvester(A, B, Q) -> np.ndarray:
    r"""Solve :math:`A X + X B^H + Q = 0` with A (..., n, n), B (..., r, r), Q (..., n, r)."""
    return _solve(A, B, Q, discrete=False)


def stein(A, Q) -> np.ndarray:
    r"""Solve the Stein (discrete Lyapunov) equation :math:`A X A^H - X + Q = 0`."""
    return _solve(A, A, Q, discrete=True)


def stein_sylvester(A, B, Q) -> np.ndarray:
    r"""Solve the Stein–Sylvester equation :math:`A X B^H - X + Q = 0`, X (..., n, r)."""
    return _solve(A, B, Q, discrete=True)


__all__ = [
    "Diagonal",
    "Factor",
    "factor",
    "lyapunov",
    "sylvester",
    "stein",
    "stein_sylvester",
    "tri_solve",
    "solve_factored",
]
