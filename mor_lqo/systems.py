r"""LQO and LTI system objects.

A linear-quadratic-output (LQO) system is

.. math::

    \dot x = A x + B u \quad (dt = 0), \qquad
    x_k = A x_{k-1} + B u_k \quad (dt > 0,\ \text{"current-input" convention}),

    y_j = (C x)_j + x^H M_j x + (D u)_j, \qquad j = 1, \dots, p,

with ``A`` (n, n), ``B`` (n, m), ``C`` (p, n), ``M`` (p, n, n) Hermitian slices and ``D`` (p, m).
The discrete-time default is the Deep-SSM convention (S4, S5, LRU, DSS: the state includes the
current input). ``convention="standard"`` selects :math:`x_{k+1} = A x_k + B u_k`,
:math:`y_k = C x_k + \dots + D u_k` (python-control, MATLAB). Both give identical h2 norms when
``D = 0``; the convention only shifts kernels by one lag, and D enters the lag-0 term differently.

Objects are immutable: arrays are copied on construction and marked read-only; every operation
returns a new object. ``LTISystem`` is the subclass used when there is no quadratic output.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import scipy.linalg as sla

from ._validation import (
    CONVENTIONS,
    as_feedthrough,
    as_float_or_complex,
    as_input_matrix,
    as_output_matrix,
    check_convention,
    check_dt,
    check_system,
    readonly,
)
from .errors import (
    ComplexSystemError,
    InvalidArgumentError,
    MorLqoError,
    NotASystemError,
    NotHermitianError,
    SamplingTimeError,
    ShapeError,
    SymmetrizationWarning,
)

_CONVENTIONS = CONVENTIONS


class UnsupportedConversionError(MorLqoError, TypeError):
    """The target representation cannot express this system (e.g. quadratic outputs in python-control)."""


def _symmetrize_m(M: np.ndarray) -> np.ndarray:
    """Return the Hermitian part of M (real: symmetric part), rejecting complex non-Hermitian input."""
    MH = np.conj(np.swapaxes(M, -1, -2))
    diff = np.max(np.abs(M - MH)) if M.size else 0.0
    scale = max(np.max(np.abs(M)) if M.size else 0.0, np.finfo(float).tiny)
    tol = 100 * np.finfo(float).eps * scale
    if diff > tol:
        if np.iscomplexobj(M):
            raise NotHermitianError(
                "complex quadratic-output matrices M_j must be Hermitian: the skew-Hermitian part "
                f"would add an imaginary output (max |M - M^H| = {diff:.3g}); pass (M + M^H)/2 "
                "if the physical output is Re(x^H M x)"
            )
        warnings.warn(
            f"M is not symmetric (max |M - M^T| = {diff:.3g}); using (M + M^T)/2, which gives "
            "identical outputs x^T M x",
            SymmetrizationWarning,
            stacklevel=4,
        )
    return (M + MH) / 2


def _rebuild_system(fields: dict) -> LQOSystem:
    """Unpickling helper of :meth:`LQOSystem.__reduce__`."""
    return LQOSystem._make(**fields)


class LQOSystem:
    r"""Immutable linear-quadratic-output system (continuous or discrete, real or complex).

    Parameters
    ----------
    A : array_like, shape (n, n)
        State matrix.
    B : array_like, shape (n, m) or (n,)
        Input matrix (a 1-D array means m = 1).
    C : array_like, shape (p, n) or (n,), optional
        Linear output matrix. Zero if omitted (then ``M`` defines p).
    M : array_like, shape (p, n, n) or (n, n), optional
        Quadratic output matrices, :math:`y_j \mathrel{+}= x^H M_j x`. Real non-symmetric slices are
        symmetrised with a :class:`~mor_lqo.errors.SymmetrizationWarning` (outputs unchanged);
        complex non-Hermitian slices raise :class:`~mor_lqo.errors.NotHermitianError`.
    D : array_like, shape (p, m), optional
        Feed-through. Zero if omitted.
    dt : float, default 0.0
        0 for continuous time, else the sampling time (any positive unit; norms do not depend on it).
    convention : {"current", "standard"}
        Discrete-time index convention (ignored for dt = 0), see the module docstring.

    Notes
    -----
    Integer arrays are converted to float64; complex arrays are kept complex (never cast to real).
    If any matrix is complex, all are stored as complex128.
    """

    __slots__ = ("_A", "_lam", "_B", "_C", "_M", "_D", "_dt", "_conv", "_half", "_cache")

    def __new__(cls, A, B, C=None, M=None, D=None, dt=0.0, convention="current"):
        # Fully built here so that LQOSystem(...) without M returns an LTISystem instance.
        return LQOSystem._make(A=A, B=B, C=C, M=M, D=D, dt=dt, convention=convention)

    def __init__(self, *args, **kwargs):  # construction happens in __new__ / _make
        pass

    # ------------------------------------------------------------------ construction
    def _setup(self, *, A, lam, B, C, M, D, dt, convention, half=None):
        n = lam.shape[0] if lam is not None else A.shape[0]
        if n < 1:
            raise ShapeError("empty system: the state dimension must be at least 1")
        B = as_input_matrix(B, n)
        m = B.shape[1]
        if C is not None:
            C = as_output_matrix(C, n)
        if M is not None:
            M = as_float_or_complex(M, "M")
            if M.ndim == 2:
                M = M[None]
            if M.ndim != 3 or M.shape[1:] != (n, n) or M.shape[0] < 1:
                raise ShapeError(f"M must have shape (p, n, n) with n = {n}, got {M.shape}")
            if C is not None and C.shape[0] != M.shape[0]:
                raise ShapeError(
                    f"C has {C.shape[0]} outputs but M has {M.shape[0]}; pad with zero rows/slices"
                )
            M = _symmetrize_m(M)
        if C is None and M is None:
            raise ShapeError("the system has no output: give C and/or M")
        p = C.shape[0] if C is not None else M.shape[0]
        if D is not None:
            D = as_feedthrough(D, p, m)
        dt = check_dt(dt)
        check_convention(convention)
        parts = [x for x in (A, lam, B, C, M, D) if x is not None]
        dtype = np.complex128 if any(np.iscomplexobj(x) for x in parts) else np.float64

        def fix(x):
            return None if x is None else readonly(np.array(x, dtype=dtype))

        self._A = fix(A)
        self._lam = None if lam is None else readonly(np.array(lam, dtype=dtype))
        self._B = fix(B)
        self._C = fix(C) if C is not None else readonly(np.zeros((p, n), dtype))
        self._M = fix(M)
        self._D = fix(D) if D is not None else readonly(np.zeros((p, m), dtype))
        self._dt = dt
        self._conv = convention if dt > 0 else "current"
        self._half = half
        self._cache = {}

    def __reduce__(self):
        """Pickle support (process pools, dask, ``pickle``): rebuilt through the validating constructor,
        without the cache."""
        fields = {"A": self._A, "lam": self._lam, "B": self._B, "C": self._C, "M": self._M, "D": self._D,
                  "dt": self._dt, "convention": self._conv, "half": self._half}
        return (_rebuild_system, (fields,))

    @classmethod
    def _make(cls, *, A=None, lam=None, B, C=None, M=None, D=None, dt=0.0, convention="current",
              half=None):
        """Internal constructor: picks :class:`LTISystem` when there is no quadratic output."""
        target = LTISystem if M is None else LQOSystem
        obj = object.__new__(target)
        if A is not None:
            A = as_float_or_complex(A, "A")
            if A.ndim != 2 or A.shape[0] != A.shape[1]:
                raise ShapeError(f"A must be a square matrix, got shape {A.shape}")
        elif lam is None:
            raise ShapeError("give A or lam")
        obj._setup(A=A, lam=lam, B=B, C=C, M=M, D=D, dt=dt, convention=convention, half=half)
        return obj

    @classmethod
    def diagonal(cls, lam, B, C=None, M=None, D=None, dt=0.0, convention="current"):
        """System with diagonal state matrix ``A = diag(lam)`` — the fast path of every algorithm.

        Parameters
        ----------
        lam : array_like, shape (n,)
            Eigenvalues (real or complex).
        B, C, M, D, dt, convention
            As in :class:`LQOSystem`.
        """
        lam = as_float_or_complex(lam, "lam")
        if lam.ndim != 1:
            raise ShapeError(f"lam must be 1-dimensional, got shape {lam.shape}")
        return cls._make(lam=lam, B=B, C=C, M=M, D=D, dt=dt, convention=convention)

    @classmethod
    def conjugate_pairs(cls, lam, B, C, M=None, D=None, dt=0.0, scale=2.0, convention="current"):
        r"""Deep-SSM system: ``n`` stored complex modes, each standing for a conjugate pair.

        The real input-output map is :math:`y = \kappa\,\mathrm{Re}(C x) + x^H M x + D u` with
        :math:`x_k = \Lambda x_{k-1} + B u_k` (discrete) or :math:`\dot x = \Lambda x + B u`, for real
        inputs. It is represented *exactly* by the conjugation-closed complex diagonal system of order
        2n (docs/theory.md §8.3)

        .. math::

            \Lambda_f = [\Lambda, \bar\Lambda],\quad B_f = [B; \bar B],\quad
            C_f = \tfrac{\kappa}{2}[C, \bar C],\quad M_f = \tfrac12\,\mathrm{blkdiag}(M, \bar M),

        whose kernels are real; every norm and error computed on it is the norm of the real map.
        ``order`` is 2n, the dimension of the real state.

        Parameters
        ----------
        lam : array_like, shape (n,)
            Stored eigenvalues (one per conjugate pair; a real value stands for a real mode).
        B : array_like, shape (n, m)
        C : array_like, shape (p, n)
        M : array_like, shape (p, n, n), optional
            Hermitian quadratic outputs of the stored half state (``x^H M_j x`` is real).
        D : array_like, shape (p, m), optional
        dt : float
        scale : float, default 2.0
            :math:`\kappa`: 2 for conjugate-halved layouts (S4, S4D, S5 with conj_sym), 1 for layouts
            with output ``Re(C x)`` (LRU, DSS, s5-pytorch).
        """
        lam = as_float_or_complex(lam, "lam").astype(np.complex128)
        if lam.ndim != 1:
            raise ShapeError(f"lam must be 1-dimensional, got shape {lam.shape}")
        B = as_float_or_complex(B, "B").astype(np.complex128)
        if B.ndim == 1:
            B = B.reshape(-1, 1)
        C = as_float_or_complex(C, "C").astype(np.complex128)
        if C.ndim == 1:
            C = C.reshape(1, -1)
        n = lam.shape[0]
        if B.shape[0] != n or C.ndim != 2 or C.shape[1] != n:
            raise ShapeError(f"conjugate_pairs: lam {lam.shape}, B {B.shape}, C {C.shape} disagree")
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(scale) and scale > 0):
            raise InvalidArgumentError(f"scale must be a positive finite number, got {scale!r}")
        scale = float(scale)
        lam_f = np.concatenate([lam, lam.conj()])
        B_f = np.concatenate([B, B.conj()], axis=0)
        C_f = (scale / 2) * np.concatenate([C, C.conj()], axis=1)
        M_f = None
        if M is not None:
            M = as_float_or_complex(M, "M").astype(np.complex128)
            if M.ndim == 2:
                M = M[None]
            if M.shape[1:] != (n, n):
                raise ShapeError(f"M must have shape (p, {n}, {n}), got {M.shape}")
            M = _symmetrize_m(M)
            M_f = np.zeros((M.shape[0], 2 * n, 2 * n), np.complex128)
            M_f[:, :n, :n] = M / 2
            M_f[:, n:, n:] = M.conj() / 2
        for x in (lam, B, C):
            x.setflags(write=False)
        half = (lam, B, C, M, scale)
        return cls._make(lam=lam_f, B=B_f, C=C_f, M=M_f, D=D, dt=dt, convention=convention,
                         half=half)

    # ------------------------------------------------------------------ attributes
    @property
    def A(self) -> np.ndarray:
        """State matrix (n, n); built on demand (and cached) for diagonal systems."""
        if self._A is None:
            if "A" not in self._cache:
                self._cache["A"] = readonly(np.diag(self._lam))
            return self._cache["A"]
        return self._A

    @property
    def lam(self) -> np.ndarray | None:
        """Eigenvalues (n,) of a diagonal system, ``None`` for dense systems."""
        return self._lam

    B = property(lambda self: self._B, doc="Input matrix (n, m).")
    C = property(lambda self: self._C, doc="Linear output matrix (p, n) (zeros if absent).")
    M = property(lambda self: self._M, doc="Quadratic output matrices (p, n, n), or None.")
    D = property(lambda self: self._D, doc="Feed-through (p, m).")
    dt = property(lambda self: self._dt, doc="Sampling time; 0.0 for continuous time.")
    convention = property(lambda self: self._conv, doc="Discrete time-index convention.")

    @property
    def n(self) -> int:
        """State dimension (for conjugate-pair systems: the real order 2 * stored modes)."""
        return self._B.shape[0]

    order = n
    m = property(lambda self: self._B.shape[1], doc="Number of inputs.")
    p = property(lambda self: self._C.shape[0], doc="Number of outputs.")
    is_discrete = property(lambda self: self._dt > 0)
    is_diagonal = property(lambda self: self._lam is not None)
    is_complex = property(lambda self: np.iscomplexobj(self._B))
    has_quadratic = property(lambda self: self._M is not None)

    @property
    def is_real_output(self) -> bool:
        """True when real inputs give real outputs (real data, or a conjugate-pair system)."""
        return (not self.is_complex) or self._half is not None

    @property
    def half(self):
        """Stored half data ``(lam, B, C, M, scale)`` of a :meth:`conjugate_pairs` system, else None."""
        return self._half

    @property
    def dtype(self):
        return self._B.dtype

    def poles(self) -> np.ndarray:
        """Eigenvalues of A (cached)."""
        if self._lam is not None:
            return self._lam.copy()
        if "poles" not in self._cache:
            self._cache["poles"] = readonly(np.linalg.eigvals(self._A))
        return self._cache["poles"].copy()

    def spectral_abscissa(self) -> float:
        """max Re(lambda) (continuous) or max |lambda| (discrete)."""
        lam = self.poles()
        return float(np.max(np.abs(lam)) if self.is_discrete else np.max(lam.real))

    def is_stable(self) -> bool:
        """Asymptotic stability: all Re(lambda) < 0 (continuous) or |lambda| < 1 (discrete)."""
        s = self.spectral_abscissa()
        return s < 1.0 if self.is_discrete else s < 0.0

    def __repr__(self) -> str:
        kind = "LQO" if self.has_quadratic else "LTI"
        time = f"discrete dt={self._dt:g} ({self._conv})" if self.is_discrete else "continuous"
        extra = ", diagonal" if self.is_diagonal else ""
        extra += ", conjugate pairs" if self._half is not None else ""
        extra += ", complex" if self.is_complex else ""
        return f"<{kind} system n={self.n} m={self.m} p={self.p}, {time}{extra}>"

    def compatible_with(self, other: LQOSystem) -> None:
        """Raise unless ``other`` has the same time domain, sampling time, convention, m and p."""
        check_system(other, "other")
        if self.is_discrete != other.is_discrete:
            raise SamplingTimeError("cannot combine a continuous-time and a discrete-time system")
        if self.is_discrete and not np.isclose(self._dt, other._dt, rtol=1e-12, atol=0):
            raise SamplingTimeError(f"different sampling times: {self._dt} and {other._dt}")
        if self.is_discrete and self._conv != other._conv:
            raise SamplingTimeError(
                f"different time-index conventions: {self._conv!r} and {other._conv!r}"
            )
        if (self.m, self.p) != (other.m, other.p):
            raise ShapeError(
                f"input/output sizes differ: (m, p) = {(self.m, self.p)} and {(other.m, other.p)}"
            )

    # ------------------------------------------------------------------ time domain
    def _state_powers_b(self, L: int) -> np.ndarray:
        """A^i B for i = 0..L-1, shape (L, n, m)."""
        out = np.empty((L, self.n, self.m), dtype=self.dtype)
        x = self._B.copy()
        for i in range(L):
            out[i] = x
            x = self._lam[:, None] * x if self.is_diagonal else self.A @ x
        return out

    def _real_if(self, y: np.ndarray, real_input: bool) -> np.ndarray:
        if real_input and self.is_real_output and np.iscomplexobj(y):
            return np.ascontiguousarray(y.real)
        return y

    def impulse_response(self, L, convention: str | None = None) -> np.ndarray:
        r"""Linear (Markov) kernel.

        Discrete time: array (L, p, m) with, in the current-input convention,
        :math:`h(0) = CB + D`, :math:`h(i) = C A^i B`; in the standard convention
        :math:`h(0) = D`, :math:`h(i) = C A^{i-1} B`. Continuous time: ``L`` is an array of times t
        and the result is :math:`C e^{A t} B` (the impulse part D·delta is not included).
        """
        if not self.is_discrete:
            t = np.asarray(L, dtype=float).ravel()
            if self.is_diagonal:
                E = np.exp(np.multiply.outer(t, self._lam))  # (T, n)
                h = np.einsum("pn,tn,nm->tpm", self._C, E, self._B, optimize=True)
            else:
                h = np.stack([self._C @ sla.expm(self.A * ti) @ self._B for ti in t])
            return self._real_if(h, True)
        L = int(L)
        conv = convention or self._conv
        check_convention(conv)
        if L < 1:
            return np.zeros((0, self.p, self.m), dtype=float if self.is_real_output else self.dtype)
        if conv == "current":
            h = np.matmul(self._C, self._state_powers_b(L))  # (L, p, m): BLAS, not einsum's naive loops
            h[0] += self._D
        else:
            h = np.empty((L, self.p, self.m), dtype=self.dtype)
            h[0] = self._D
            if L > 1:
                h[1:] = np.matmul(self._C, self._state_powers_b(L - 1))
        return self._real_if(h, True)

    def quadratic_kernel(self, L: int) -> np.ndarray:
        r"""Quadratic (second Volterra) kernel of a discrete system, current-input convention.

        Returns an array (L, L, p, m, m) with
        :math:`h_{2,j}(i_1, i_2) = (A^{i_1} B)^H M_j (A^{i_2} B)`, so that
        :math:`y_{k,j} \mathrel{+}= \sum_{i_1, i_2} u_{k-i_1}^H h_{2,j}(i_1,i_2) u_{k-i_2}`.
        For real-output systems the real part is returned (the imaginary part cancels for real u).
        """
        if not self.is_discrete:
            raise NotImplementedError("quadratic_kernel is provided for discrete-time systems")
        if self._M is None:
            return np.zeros((L, L, self.p, self.m, self.m))
        X = self._state_powers_b(int(L))  # (L, n, m)
        h = np.einsum("ian,jab,kbc->ikjnc", X.conj(), self._M, X, optimize=True)
        return self._real_if(h, True)

    def output(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        r"""Output map for states ``x`` (T, n) and inputs ``u`` (T, m): :math:`Cx + x^H M x + Du`."""
        y = x @ self._C.T + u @ self._D.T
        if self._M is not None:
            y = y + np.einsum("jtb,tb->tj", x.conj() @ self._M, x)
        return y

    def simulate(self, u, t=None, convention: str | None = None) -> np.ndarray:
        r"""Simulate from zero initial state.

        Parameters
        ----------
        u : array_like, shape (T, m) or (T,)
            Input sequence (discrete) or input samples held constant between the times ``t``
            (continuous, zero-order hold).
        t : array_like, shape (T,), optional
            Continuous time only: uniformly spaced sample times starting at 0.
        convention : {"current", "standard"}, optional
            Discrete time only; defaults to the system's own convention. ``"current"``:
            :math:`x_k = A x_{k-1} + B u_k,\ y_k = g(x_k) + D u_k` (x_{-1} = 0);
            ``"standard"``: :math:`y_k = g(x_k) + D u_k,\ x_{k+1} = A x_k + B u_k` (x_0 = 0).

        Returns
        -------
        y : ndarray, shape (T, p)
            Real for real-output systems driven by real inputs.
        """
        u = as_float_or_complex(u, "u")
        if u.ndim == 1:
            u = u.reshape(-1, 1) if self.m == 1 else u.reshape(1, -1)
        if u.ndim != 2 or u.shape[1] != self.m:
            raise ShapeError(f"u must have shape (T, m={self.m}), got {u.shape}")
        real_input = not np.iscomplexobj(u)
        T = u.shape[0]
        if self.is_discrete:
            if t is not None:
                raise InvalidArgumentError("t is only used for continuous-time simulation")
            Ad, Bd = self.A, self._B
            conv = convention or self._conv
            check_convention(conv)
        else:
            if t is None:
                raise InvalidArgumentError("continuous-time simulation needs the sample times t")
            t = as_float_or_complex(t, "t").ravel()
            if np.iscomplexobj(t):
                raise InvalidArgumentError("t must be real sample times")
            if t.shape[0] != T:
                raise ShapeError("t and u must have the same length")
            h = t[1] - t[0] if T > 1 else 1.0
            if T > 1 and not np.allclose(np.diff(t), h, rtol=1e-9, atol=0):
                raise InvalidArgumentError("t must be uniformly spaced")
            if T > 1 and not h > 0:
                raise InvalidArgumentError(f"t must be increasing, got step {h}")
            n, m = self.n, self.m
            big = np.zeros((n + m, n + m), dtype=self.dtype)
            big[:n, :n] = self.A * h
            big[:n, n:] = self._B * h
            E = sla.expm(big)
            Ad, Bd = E[:n, :n], E[:n, n:]
            conv = "standard"
        dtype = np.result_type(self.dtype, u.dtype)
        xs = np.empty((T, self.n), dtype=dtype)
        x = np.zeros(self.n, dtype=dtype)
        diag = self.is_discrete and self.is_diagonal
        for k in range(T):
            if conv == "current":
                x = (self._lam * x if diag else Ad @ x) + Bd @ u[k]
                xs[k] = x
            else:
                xs[k] = x
                x = (self._lam * x if diag else Ad @ x) + Bd @ u[k]
        return self._real_if(self.output(xs, u), real_input)

    # ------------------------------------------------------------------ algebra
    def project(self, V, W=None) -> LQOSystem:
        r"""Petrov–Galerkin projection.

        With :math:`E = W^H V` (r x r, must be invertible):
        :math:`\hat A = E^{-1} W^H A V`, :math:`\hat B = E^{-1} W^H B`, :math:`\hat C = C V`,
        :math:`\hat M_j = V^H M_j V`, :math:`\hat D = D`. ``W = None`` means Galerkin (W = V).
        """
        V = as_float_or_complex(V, "V")
        if V.ndim == 1:
            V = V[:, None]
        W = V if W is None else as_float_or_complex(W, "W")
        if W.ndim == 1:
            W = W[:, None]
        if V.shape[0] != self.n or W.shape != V.shape:
            raise ShapeError(f"V and W must both have shape (n={self.n}, r), got {V.shape}, {W.shape}")
        E = W.conj().T @ V
        if self.is_diagonal:
            AV = self._lam[:, None] * V
        else:
            AV = self.A @ V
        try:
            lu = sla.lu_factor(E)
        except Exception as exc:  # pragma: no cover
            raise ShapeError("W^H V is singular") from exc
        if np.linalg.cond(E) > 1e14:
            raise ShapeError("W^H V is numerically singular; cannot project")
        Ar = sla.lu_solve(lu, W.conj().T @ AV)
        Br = sla.lu_solve(lu, W.conj().T @ self._B)
        Cr = self._C @ V
        Mr = None if self._M is None else V.conj().T @ self._M @ V
        if Mr is not None and not np.iscomplexobj(Mr):
            Mr = (Mr + np.swapaxes(Mr, 1, 2)) / 2
        elif Mr is not None:
            Mr = (Mr + np.conj(np.swapaxes(Mr, 1, 2))) / 2
        return LQOSystem._make(A=Ar, B=Br, C=Cr, M=Mr, D=self._D, dt=self._dt,
                               convention=self._conv)

    def __sub__(self, other: LQOSystem) -> LQOSystem:
        """Error system ``self - other`` (order n + r): diag(A, Â), [B; B̂], [C, -Ĉ], diag(M, -M̂)."""
        self.compatible_with(other)
        n, r = self.n, other.n
        C = np.concatenate([self._C, -other._C], axis=1)
        B = np.concatenate([self._B, other._B], axis=0)
        D = self._D - other._D
        M = None
        if self._M is not None or other._M is not None:
            dtype = np.result_type(self.dtype, other.dtype)
            M = np.zeros((self.p, n + r, n + r), dtype=dtype)
            if self._M is not None:
                M[:, :n, :n] = self._M
            if other._M is not None:
                M[:, n:, n:] = -other._M
        if self.is_diagonal and other.is_diagonal:
            lam = np.concatenate([self._lam, other._lam])
            return LQOSystem._make(lam=as_float_or_complex(lam, "lam"), B=B, C=C, M=M, D=D,
                                   dt=self._dt, convention=self._conv)
        A = sla.block_diag(self.A, other.A)
        return LQOSystem._make(A=A, B=B, C=C, M=M, D=D, dt=self._dt, convention=self._conv)

    def __neg__(self) -> LQOSystem:
        M = None if self._M is None else -self._M
        if self.is_diagonal:
            return LQOSystem._make(lam=self._lam, B=self._B, C=-self._C, M=M, D=-self._D,
                                   dt=self._dt, convention=self._conv)
        return LQOSystem._make(A=self._A, B=self._B, C=-self._C, M=M, D=-self._D, dt=self._dt,
                               convention=self._conv)

    def similarity(self, T) -> LQOSystem:
        r"""State transformation :math:`x = T z`: (T^{-1} A T, T^{-1} B, C T, T^H M_j T, D)."""
        T = as_float_or_complex(T, "T")
        if T.shape != (self.n, self.n):
            raise ShapeError(f"T must have shape ({self.n}, {self.n})")
        lu = sla.lu_factor(T)
        A = sla.lu_solve(lu, self.A @ T)
        B = sla.lu_solve(lu, self._B)
        M = None if self._M is None else T.conj().T @ self._M @ T
        if M is not None:
            M = (M + np.conj(np.swapaxes(M, 1, 2))) / 2
        return LQOSystem._make(A=A, B=B, C=self._C @ T, M=M, D=self._D, dt=self._dt,
                               convention=self._conv)

    def with_convention(self, convention: str) -> LQOSystem:
        """Same matrices, other discrete time-index convention (the I/O map shifts by one lag)."""
        check_convention(convention)
        return LQOSystem._make(A=self._A, lam=self._lam, B=self._B, C=self._C, M=self._M,
                               D=self._D, dt=self._dt, convention=convention, half=self._half)

    def realify(self) -> LQOSystem:
        r"""Exact real realisation of a real-output system (same order, same I/O map for real u).

        For a :meth:`conjugate_pairs` system with stored (Λ, B, C, M, κ), the state
        :math:`x_r = [\mathrm{Re}\,x; \mathrm{Im}\,x]` gives (docs/theory.md §8.2)
        :math:`A_r = [[\mathrm{Re}\Lambda, -\mathrm{Im}\Lambda], [\mathrm{Im}\Lambda, \mathrm{Re}\Lambda]]`,
        :math:`B_r = [\mathrm{Re} B; \mathrm{Im} B]`, :math:`C_r = \kappa[\mathrm{Re} C, -\mathrm{Im} C]`,
        :math:`M_r = [[\mathrm{Re} M, -\mathrm{Im} M], [\mathrm{Im} M, \mathrm{Re} M]]`.
        Real systems are returned unchanged; other complex systems raise ComplexSystemError.
        """
        if not self.is_complex:
            return self
        if self._half is None:
            raise ComplexSystemError(
                "this complex system has complex outputs; only real-output (conjugate-pair) "
                "systems have an exact real realisation of the same size"
            )
        lam, B, C, M, kappa = self._half
        Ar = np.block([[np.diag(lam.real), -np.diag(lam.imag)],
                       [np.diag(lam.imag), np.diag(lam.real)]])
        Br = np.concatenate([B.real, B.imag], axis=0)
        Cr = kappa * np.concatenate([C.real, -C.imag], axis=1)
        Mr = None
        if M is not None:
            Mr = np.block([[M.real, -M.imag], [M.imag, M.real]])
        D = self._D.real if not np.any(self._D.imag) else self._D
        if np.iscomplexobj(D):
            raise ComplexSystemError("complex feed-through D cannot be realified")
        return LQOSystem._make(A=Ar, B=Br, C=Cr, M=Mr, D=D, dt=self._dt, convention=self._conv)

    # ------------------------------------------------------------------ python-control
    @classmethod
    def from_control(cls, ss) -> LQOSystem:
        """Build from a python-control ``StateSpace`` (discrete systems use the standard convention).

        ``dt=True`` (unspecified sampling period) becomes ``dt=1.0``.
        """
        if not all(hasattr(ss, k) for k in ("A", "B", "C", "D", "dt")):
            raise NotASystemError(f"ss must be a python-control StateSpace, got {type(ss).__name__}")
        dt = ss.dt
        if dt is None or dt is False:
            dt = 0.0
        elif dt is True:
            dt = 1.0
        return cls._make(A=np.asarray(ss.A), B=np.asarray(ss.B), C=np.asarray(ss.C),
                         D=np.asarray(ss.D), dt=float(dt), convention="standard")

    def to_control(self):
        """Convert to a python-control ``StateSpace`` with the same input-output map.

        Discrete systems in the current-input convention are converted exactly to the standard one
        (C_s = C A, D_s = D + C B). Conjugate-pair systems are realified exactly first. Quadratic
        outputs and complex-output systems cannot be represented and raise.
        """
        import control as ct

        if self._M is not None:
            raise UnsupportedConversionError("python-control cannot represent quadratic outputs")
        sys = self.realify() if self.is_complex else self
        A, B, C, D = sys.A, sys.B, sys.C, sys.D
        if sys.is_discrete and sys.convention == "current":
            C, D = C @ A, D + C @ B
        return ct.ss(np.array(A), np.array(B), np.array(C), np.array(D), sys.dt)

    def to_dict(self) -> Mapping[str, np.ndarray]:
        """Plain dict of the matrices (A built for diagonal systems)."""
        d = {"A": self.A, "B": self._B, "C": self._C, "D": self._D, "dt": self._dt}
        if self._M is not None:
            d["M"] = self._M
        return d


class LTISystem(LQOSystem):
    """LQO system without quadratic output: ``LTISystem(A, B, C, D=None, dt=0.0)``."""

    __slots__ = ()

    def __new__(cls, A, B, C, D=None, dt=0.0, convention="current"):
        return LQOSystem._make(A=A, B=B, C=C, M=None, D=D, dt=dt, convention=convention)

    @classmethod
    def diagonal(cls, lam, B, C, D=None, dt=0.0, convention="current"):
        return LQOSystem.diagonal(lam, B, C=C, D=D, dt=dt, convention=convention)
