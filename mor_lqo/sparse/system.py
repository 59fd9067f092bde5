r"""Sparse (descriptor) LTI / LQO systems and their shifted sparse solves.

.. math::

    E \dot x = A x + B u, \qquad y_j = (C x)_j + x^H M_j x + (D u)_j, \quad j = 1, \dots, p,

with sparse ``A`` and ``E`` (n, n) (``E = I`` if omitted), dense ``B`` (n, m), dense ``C`` (p, n),
sparse Hermitian ``M_j`` (n, n) and a dense feed-through ``D`` (p, m) (zero if omitted). With
``dt > 0`` the state equation is :math:`Ex_k = Ax_{k-1} + Bu_k` (Gramians through the Cayley map,
:meth:`SparseLQOSystem.lyap_system`), the "current" convention of :mod:`mor_lqo.systems`: the lag-0
kernel is :math:`CE^{-1}B + D`.
The matrices stay sparse end to end: every algorithm of :mod:`mor_lqo.sparse` touches ``A`` and ``E``
only through products and sparse LU factorisations of shifted pencils ``A + p E``
(:class:`ShiftedSolver`, one factorisation per shift, reused for the primal and the adjoint solve,
and for the conjugate shift of a real system).

The dense equivalent (:meth:`SparseLQOSystem.to_dense`) is the standard-form
:class:`~mor_lqo.LQOSystem` with :math:`E^{-1}A`, :math:`E^{-1}B`, ``C``, ``M``, ``D`` (discrete
time: ``convention="current"``): both have the same input-output map, so their h2 norms agree exactly.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._validation import as_feedthrough, as_float_or_complex, as_input_matrix, as_output_matrix, check_dt
from ..errors import (
    DTypeError,
    MorLqoError,
    NonFiniteError,
    NotASystemError,
    NotHermitianError,
    SamplingTimeError,
    ShapeError,
    SymmetrizationWarning,
)

__all__ = ["SparseLQOSystem", "ShiftedSolver", "SingularPencilError", "as_sparse_system"]

_PERMC = "MMD_AT_PLUS_A"  # fill-reducing ordering; ~1.5x faster than COLAMD on 2-D stencils


class SingularPencilError(MorLqoError, ArithmeticError):
    """A shifted pencil ``A + p E`` (or the descriptor matrix ``E``) is exactly singular."""


def _as_sparse(X, name: str, n: int | None = None) -> sp.csc_matrix:
    if sp.issparse(X):
        X = sp.csc_matrix(X)
        kind = X.dtype.kind
        if kind in "biu":
            X = X.astype(np.float64)
        elif kind == "f":
            X = X.astype(np.float64)
        elif kind == "c":
            X = X.astype(np.complex128)
        else:
            raise DTypeError(f"{name}: expected a numeric sparse matrix, got dtype {X.dtype}")
        if not np.all(np.isfinite(X.data)):
            raise NonFiniteError(f"{name} contains NaN or infinite entries")
    else:
        arr = as_float_or_complex(X, name)
        if arr.ndim != 2:
            raise ShapeError(f"{name} must be a 2-D (sparse) matrix, got shape {arr.shape}")
        X = sp.csc_matrix(arr)
    if X.shape[0] != X.shape[1] or (n is not None and X.shape[0] != n):
        want = f"({n}, {n})" if n is not None else "square"
        raise ShapeError(f"{name} must have shape {want}, got {X.shape}")
    X.sort_indices()
    return X


def _hermitian_part(Mj: sp.csc_matrix, j: int) -> sp.csc_matrix:
    D = Mj - Mj.conj().T
    diff = float(np.max(np.abs(D.data))) if D.nnz else 0.0
    scale = max(float(np.max(np.abs(Mj.data))) if Mj.nnz else 0.0, np.finfo(float).tiny)
    if diff > 100 * np.finfo(float).eps * scale:
        if np.iscomplexobj(Mj.data):
            raise NotHermitianError(f"complex quadratic-output matrix M[{j}] must be Hermitian "
                                    f"(max |M - M^H| = {diff:.3g})")
        warnings.warn(f"M[{j}] is not symmetric (max |M - M^T| = {diff:.3g}); using (M + M^T)/2, which "
                      "gives identical outputs x^T M x", SymmetrizationWarning, stacklevel=4)
        Mj = sp.csc_matrix((Mj + Mj.conj().T) / 2)
    return Mj


class SparseLQOSystem:
    r"""Immutable sparse LTI / LQO system :math:`E\dot x = Ax + Bu` (or discrete), :math:`y = Cx + (x^HM_jx)_j + Du`.

    Parameters
    ----------
    A : sparse matrix or array_like, shape (n, n)
        State matrix (stored as CSC).
    B : array_like, shape (n, m) or (n,)
        Input matrix (dense).
    C : array_like, shape (p, n) or (n,), optional
        Linear output matrix (dense). Zero if omitted (then ``M`` defines p).
    M : sparse matrix, sequence of p sparse matrices, or array (p, n, n), optional
        Quadratic output matrices. Real non-symmetric ones are symmetrised with a
        :class:`~mor_lqo.errors.SymmetrizationWarning`; complex non-Hermitian ones raise
        :class:`~mor_lqo.errors.NotHermitianError`.
    E : sparse matrix or array_like, shape (n, n), optional
        Nonsingular descriptor (mass) matrix; identity if omitted.
    dt : float, default 0
        0 for continuous time, else the sampling time of :math:`Ex_k = Ax_{k-1} + Bu_k`,
        :math:`y_k = Cx_k + (x_k^HM_jx_k)_j + Du_k` (the "current" convention of
        :class:`~mor_lqo.LQOSystem`: :math:`h_0 = CE^{-1}B + D`, :math:`h_i = C(E^{-1}A)^iE^{-1}B`).
        Discrete-time Gramians are computed through the Cayley map (:meth:`lyap_system`).
    D : array_like, shape (p, m), optional
        Feed-through (dense); zero if omitted. A scalar is accepted when p = m = 1. Complex D makes the
        system complex (never cast to real). Continuous-time systems with D != 0 have infinite h2 norm.

    Raises
    ------
    ShapeError, NonFiniteError, DTypeError, NotHermitianError, SamplingTimeError
        On inconsistent shapes (including a mismatched ``E`` or ``D``), NaN/inf entries, non-numeric
        data, complex non-Hermitian ``M_j`` or an invalid ``dt``.
    """

    def __init__(self, A, B, C=None, M=None, E=None, *, dt: float = 0.0, D=None):
        self._dt = check_dt(dt)
        A = _as_sparse(A, "A")
        n = A.shape[0]
        if n < 1:
            raise ShapeError("empty system: the state dimension must be at least 1")
        E = None if E is None else _as_sparse(E, "E", n)
        B = as_input_matrix(B, n)
        if C is not None:
            C = as_output_matrix(C, n)
        Ms = None
        if M is not None:
            if sp.issparse(M) or (isinstance(M, np.ndarray) and M.ndim == 2):
                M = [M]
            Ms = tuple(_hermitian_part(_as_sparse(Mj, f"M[{j}]", n), j) for j, Mj in enumerate(M))
            if not Ms:
                raise ShapeError("M must contain at least one matrix")
            if C is not None and C.shape[0] != len(Ms):
                raise ShapeError(f"C has {C.shape[0]} outputs but M has {len(Ms)}")
        if C is None and Ms is None:
            raise ShapeError("the system has no output: give C and/or M")
        p = C.shape[0] if C is not None else len(Ms)
        m = B.shape[1]
        if D is not None:
            D = as_feedthrough(D, p, m)
        parts = [A.data, B] + ([] if C is None else [C]) + ([] if E is None else [E.data])
        parts += ([] if Ms is None else [Mj.data for Mj in Ms]) + ([] if D is None else [D])
        dtype = np.complex128 if any(np.iscomplexobj(x) for x in parts) else np.float64
        self._A = A.astype(dtype)
        self._E = None if E is None else E.astype(dtype)
        self._B = np.array(B, dtype=dtype)
        self._C = np.array(C, dtype=dtype) if C is not None else np.zeros((p, n), dtype)
        self._M = None if Ms is None else tuple(Mj.astype(dtype) for Mj in Ms)
        self._D = np.array(D, dtype=dtype) if D is not None else np.zeros((p, m), dtype)
        for x in (self._B, self._C, self._D):
            x.setflags(write=False)
        self._cache: dict = {}

    # ------------------------------------------------------------------ properties
    A = property(lambda self: self._A, doc="State matrix, CSC (n, n).")
    E = property(lambda self: self._E, doc="Descriptor matrix, CSC (n, n), or None (identity).")
    B = property(lambda self: self._B, doc="Input matrix (n, m), read-only.")
    C = property(lambda self: self._C, doc="Linear output matrix (p, n), read-only.")
    M = property(lambda self: self._M, doc="Tuple of p sparse Hermitian matrices, or None.")
    D = property(lambda self: self._D, doc="Feed-through (p, m), read-only (zeros if omitted).")
    n = property(lambda self: self._A.shape[0], doc="State dimension.")
    order = n
    m = property(lambda self: self._B.shape[1], doc="Number of inputs.")
    p = property(lambda self: self._C.shape[0], doc="Number of outputs.")
    dtype = property(lambda self: self._B.dtype)
    is_complex = property(lambda self: self._B.dtype.kind == "c")
    has_quadratic = property(lambda self: self._M is not None)
    has_feedthrough = property(lambda self: bool(np.any(self._D != 0)), doc="Whether D != 0.")
    dt = property(lambda self: self._dt, doc="Sampling time (0: continuous).")
    is_discrete = property(lambda self: self._dt > 0)

    def lyap_system(self) -> SparseLQOSystem:
        r"""The continuous-time system whose Gramians are this system's Gramians.

        Continuous time: ``self``. Discrete time (Cayley map): with :math:`A_c = A - E`,
        :math:`E_c = A + E`, :math:`(A-E)X(A+E)^H + (A+E)X(A-E)^H = 2(AXA^H - EXE^H)`, so the Stein
        equations :math:`APA^H - EPE^H + BB^H = 0` and :math:`A^HQA - E^HQE + C^HC + \sum_j M_jPM_j = 0`
        are the generalized Lyapunov equations of :math:`(A_c, E_c, \sqrt2 B, \sqrt2 C, \sqrt2 M_j)`
        (sparse; :math:`E_c` is nonsingular for a Schur-stable pencil). Its eigenvalues
        :math:`(\lambda - 1)/(\lambda + 1)` lie in the open left half-plane iff :math:`|\lambda| < 1`.
        The feed-through is not carried (the Gramians do not depend on it).
        """
        if not self.is_discrete:
            return self
        if "cayley" not in self._cache:
            E = self._E if self._E is not None else sp.identity(self.n, format="csc", dtype=self.dtype)
            r2 = np.sqrt(2.0)
            M = None if self._M is None else [r2 * Mj for Mj in self._M]
            self._cache["cayley"] = SparseLQOSystem((self._A - E).tocsc(), r2 * self._B, r2 * self._C, M,
                                                    E=(self._A + E).tocsc())
        return self._cache["cayley"]

    @property
    def density(self) -> float:
        """Fraction of nonzero entries of A (and E)."""
        nnz = self._A.nnz + (0 if self._E is None else self._E.nnz)
        return nnz / float(self.n) ** 2

    def __repr__(self) -> str:
        kind = "LQO" if self.has_quadratic else "LTI"
        return (f"SparseLQOSystem({kind}, n={self.n}, m={self.m}, p={self.p}, nnz(A)={self._A.nnz}, "
                f"E={'I' if self._E is None else 'sparse'}, dtype={self.dtype})")

    # ------------------------------------------------------------------ operators
    def E_solve(self, X: np.ndarray) -> np.ndarray:
        """``E^{-1} X`` (one sparse LU of E, cached); X itself when E is the identity.

        Raises
        ------
        SingularPencilError
            E is exactly singular.
        """
        if self._E is None:
            return X
        if "E_lu" not in self._cache:
            try:
                self._cache["E_lu"] = spla.splu(self._E.tocsc(), permc_spec=_PERMC)
            except RuntimeError as exc:
                raise SingularPencilError(f"the descriptor matrix E is singular: {exc}") from exc
        return _lu_solve(self._cache["E_lu"], np.asarray(X), "N")

    def lag0_linear(self) -> np.ndarray:
        r"""The linear lag-0 Markov parameter :math:`CE^{-1}B` (p, m) of the discrete system (cached).

        In discrete time the lag-0 kernel is :math:`CE^{-1}B + D`; one sparse solve with E (none when E
        is the identity).
        """
        if "lag0" not in self._cache:
            self._cache["lag0"] = np.asarray(self._C @ self.E_solve(self._B))
        return self._cache["lag0"]

    def E_matvec(self, X: np.ndarray, adjoint: bool = False) -> np.ndarray:
        """``E @ X`` (or ``E^H @ X``); X itself when E is the identity."""
        if self._E is None:
            return X
        return (self._E.conj().T if adjoint else self._E) @ X

    def solver(self) -> ShiftedSolver:
        """The (cached) :class:`ShiftedSolver` of this system's pencil."""
        if "solver" not in self._cache:
            self._cache["solver"] = ShiftedSolver(self._A, self._E)
        return self._cache["solver"]

    def M_dense(self) -> np.ndarray | None:
        """Quadratic-output matrices as a dense (p, n, n) array (small n only)."""
        if self._M is None:
            return None
        return np.stack([Mj.toarray() for Mj in self._M])

    def to_dense(self):
        r"""The equivalent dense standard-form system (:class:`~mor_lqo.LQOSystem`).

        :math:`(E^{-1}A, E^{-1}B, C, M, D)`, same ``dt``; discrete time in the "current" convention
        (:math:`x_k = E^{-1}Ax_{k-1} + E^{-1}Bu_k`, so :math:`h_0 = CE^{-1}B + D`). O(n^2) memory and
        O(n^3) work, for small n only.
        """
        from ..systems import LQOSystem

        A = self._A.toarray()
        B = np.array(self._B)
        if self._E is not None:
            import scipy.linalg as sla

            Ed = self._E.toarray()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", sla.LinAlgWarning)
                lu = sla.lu_factor(Ed)
            if np.any(np.diag(lu[0]) == 0):
                raise SingularPencilError("the descriptor matrix E is singular (DAE systems are not supported)")
            A, B = sla.lu_solve(lu, A), sla.lu_solve(lu, B)
        return LQOSystem(A, B, self._C, self.M_dense(), D=self._D, dt=self._dt, convention="current")

    @classmethod
    def from_dense(cls, sys) -> SparseLQOSystem:
        """Sparse copy of a dense :class:`~mor_lqo.LQOSystem` (same dt and D).

        Raises
        ------
        NotASystemError
            ``sys`` is not an LQOSystem.
        SamplingTimeError
            A discrete-time ``sys`` in the "standard" convention with D != 0: sparse discrete systems use
            the "current" convention, and the feed-through enters the lag-0 kernel differently there
            (with D = 0 both conventions give the same h2 quantities, and the matrices are copied).
        """
        from ..systems import LQOSystem

        if not isinstance(sys, LQOSystem):
            raise NotASystemError(f"expected an LQOSystem, got {type(sys).__name__}")
        if np.any(sys.D != 0) and sys.is_discrete and sys.convention != "current":
            raise SamplingTimeError("sparse discrete-time systems use the 'current' convention "
                                    "(E x_k = A x_{k-1} + B u_k); convert the standard-convention system "
                                    "with D != 0 first")
        return cls(sp.csc_matrix(sys.A), sys.B, sys.C, None if sys.M is None else list(sys.M), dt=sys.dt, D=sys.D)


def as_sparse_system(sys) -> SparseLQOSystem:
    """Return ``sys`` if it is a :class:`SparseLQOSystem`, else convert a dense LQOSystem."""
    if isinstance(sys, SparseLQOSystem):
        return sys
    return SparseLQOSystem.from_dense(sys)


class ShiftedSolver:
    r"""Sparse LU solves with shifted pencils :math:`(A + pE)` and their adjoints.

    One ``scipy.sparse.linalg.splu`` factorisation per shift p, kept in a small LRU cache
    (``max_cached`` factorisations) and reused for

    * the primal solve :math:`(A + pE) X = R`,
    * the adjoint solve :math:`(A + \bar pE)^H X = R` (``trans='H'``), i.e. :math:`(A^H + pE^H)X = R`,
    * for real A, E: the solve with :math:`\bar p`, via :math:`(A + \bar pE)X = R \iff
      (A + pE)\bar X = \bar R`.

    Attributes
    ----------
    n_factorizations : int
        Number of sparse LU factorisations performed so far (benchmarks report it).
    """

    def __init__(self, A: sp.csc_matrix, E: sp.csc_matrix | None, max_cached: int = 2):
        self.A, self.E = A, E
        self.real = A.dtype.kind != "c" and (E is None or E.dtype.kind != "c")
        self.max_cached = max_cached
        self._lus: OrderedDict = OrderedDict()
        self.n_factorizations = 0
        self._eye = None

    def clear(self) -> None:
        """Drop the cached factorisations (they hold O(nnz(L+U)) memory each)."""
        self._lus.clear()

    def _factor(self, p: complex):
        key = complex(p)
        if key in self._lus:
            self._lus.move_to_end(key)
            return self._lus[key], False
        if self.real and key.imag != 0 and key.conjugate() in self._lus:
            self._lus.move_to_end(key.conjugate())
            return self._lus[key.conjugate()], True
        if self.E is None:
            if self._eye is None:
                self._eye = sp.identity(self.A.shape[0], format="csc", dtype=self.A.dtype)
            Ep = self._eye
        else:
            Ep = self.E
        if key.imag == 0 and self.real:
            K = (self.A + key.real * Ep).tocsc()
        else:
            K = (self.A + key * Ep).tocsc()
        try:
            lu = spla.splu(K, permc_spec=_PERMC)
        except RuntimeError as exc:
            raise SingularPencilError(f"the shifted pencil A + ({key:.6g}) E is singular: {exc}") from exc
        self.n_factorizations += 1
        self._lus[key] = lu
        while len(self._lus) > self.max_cached:
            self._lus.popitem(last=False)
        return lu, False

    def solve(self, p: complex, R: np.ndarray, adjoint: bool = False) -> np.ndarray:
        r"""Solve :math:`(A + pE)X = R` or, with ``adjoint=True``, :math:`(A^H + pE^H)X = R`.

        Parameters
        ----------
        p : complex
            Shift (a real shift of a real system keeps the solve real).
        R : ndarray, shape (n, k)
        adjoint : bool

        Returns
        -------
        X : ndarray, shape (n, k)
        """
        p = complex(p)
        q = p.conjugate() if adjoint else p  # (A^H + pE^H) = (A + conj(p) E)^H
        lu, conj = self._factor(q)
        trans = "H" if adjoint else "N"
        if conj:  # real pencil, factor of conj(q): (A + qE) X = R  <=>  (A + conj(q)E) conj(X) = conj(R)
            return np.conj(_lu_solve(lu, np.conj(R), trans))
        return _lu_solve(lu, R, trans)


def _lu_solve(lu, R: np.ndarray, trans: str) -> np.ndarray:
    """SuperLU solve; a complex right-hand side with a real factor is solved as two real ones."""
    if lu.U.dtype.kind != "c" and np.iscomplexobj(R):
        Rr = np.ascontiguousarray(np.concatenate([R.real, R.imag], axis=1))
        X = lu.solve(Rr, trans="T" if trans == "H" else trans)
        k = R.shape[1]
        return X[:, :k] + 1j * X[:, k:]
    dtype = np.result_type(R.dtype, lu.U.dtype)
    return lu.solve(np.ascontiguousarray(R, dtype=dtype), trans=trans)
