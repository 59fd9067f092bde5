r"""Internal representation of extracted Deep-SSM blocks.

Every linear SSM block of a checkpoint is extracted into one or more *units*: exact discrete-time
systems in the Deep-SSM current-input recurrence

.. math::

    x_k = \bar\Lambda x_{k-1} + \bar B u_k, \qquad
    y_k = \kappa\,\mathrm{Re}(C x_k) + x_k^H M x_k + D u_k ,

stored as :class:`HalfModes` (one stored complex mode per conjugate pair, factor :math:`\kappa`) or,
for the DPLR layout, as a dense real system. A :class:`Block` collects the units of one layer together
with how they map onto the layer's inputs and outputs (per-channel SISO/SIMO units for S4/S4D/DSS, one
MIMO unit for S5/LRU/LQO) and the metadata needed to write a reduced system back.

Nothing in this module imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import LayoutError, ShapeError
from ..systems import LQOSystem

__all__ = ["HalfModes", "Unit", "Block"]


@dataclass(frozen=True)
class HalfModes:
    r"""Stored half modes of a real-output diagonal system.

    .. math::

        x_k = \mathrm{diag}(\mathrm{lam})\, x_{k-1} + B u_k, \qquad
        y_k = \kappa\, \mathrm{Re}(C x_k) + [x_k^H M_j x_k]_j + D u_k .

    Attributes
    ----------
    lam : ndarray, shape (n,), complex
        Discrete eigenvalues of the stored modes.
    B : ndarray, shape (n, m), complex
        Discretised input matrix :math:`\bar B`.
    C : ndarray, shape (p, n), complex
        Stored output coefficients (multiplied by ``kappa`` in the output).
    D : ndarray, shape (p, m), real
        Feed-through.
    kappa : float
        Output factor: 2 for conjugate-halved layouts (S4, S4D, S5 with conj_sym), 1 for
        ``y = Re(C x)`` layouts (LRU, DSS, s5-pytorch, LQO).
    M : ndarray, shape (p, n, n), complex, optional
        Hermitian quadratic-output matrices of the stored state.
    """

    lam: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    kappa: float
    M: np.ndarray | None = None

    def __post_init__(self):
        lam = np.asarray(self.lam, dtype=np.complex128).reshape(-1)
        B = np.asarray(self.B, dtype=np.complex128)
        C = np.asarray(self.C, dtype=np.complex128)
        D = np.asarray(self.D)
        if np.iscomplexobj(D):
            if np.any(D.imag != 0):
                raise ShapeError("the feed-through D of a real-output block must be real")
            D = D.real
        D = D.astype(np.float64)
        n = lam.shape[0]
        if B.ndim != 2 or B.shape[0] != n or C.ndim != 2 or C.shape[1] != n:
            raise ShapeError(f"HalfModes: lam {lam.shape}, B {B.shape}, C {C.shape} disagree")
        if D.shape != (C.shape[0], B.shape[1]):
            raise ShapeError(f"HalfModes: D must have shape {(C.shape[0], B.shape[1])}, got {D.shape}")
        M = self.M
        if M is not None:
            M = np.asarray(M, dtype=np.complex128)
            if M.shape != (C.shape[0], n, n):
                raise ShapeError(f"HalfModes: M must have shape {(C.shape[0], n, n)}, got {M.shape}")
        for name, val in (("lam", lam), ("B", B), ("C", C), ("D", D), ("M", M)):
            object.__setattr__(self, name, val)
        object.__setattr__(self, "kappa", float(self.kappa))

    @property
    def n(self) -> int:
        """Number of stored modes."""
        return self.lam.shape[0]

    @property
    def real_order(self) -> int:
        """Minimal real order: 1 per stored mode with real eigenvalue and real residue, else 2."""
        real = (self.lam.imag == 0) & np.all(self.B.imag == 0, axis=1) & np.all(self.C.imag == 0,
                                                                                   axis=0)
        return int(2 * self.n - np.count_nonzero(real))

    @property
    def m(self) -> int:
        return self.B.shape[1]

    @property
    def p(self) -> int:
        return self.C.shape[0]

    def system(self, dt: float = 1.0) -> LQOSystem:
        """The exact real-output system (order 2n) as :meth:`LQOSystem.conjugate_pairs`."""
        return LQOSystem.conjugate_pairs(self.lam, self.B, self.C, M=self.M, D=self.D, dt=dt,
                                         scale=self.kappa)

    def select(self, idx) -> HalfModes:
        """Keep the stored modes ``idx`` (exact modal truncation of the real map)."""
        idx = np.asarray(idx, dtype=int)
        M = None if self.M is None else self.M[:, idx][:, :, idx]
        return replace(self, lam=self.lam[idx], B=self.B[idx], C=self.C[:, idx], M=M)

    def with_kappa(self, kappa: float) -> HalfModes:
        """Same real map, stored for another output factor (C scaled by kappa_old / kappa_new)."""
        kappa = float(kappa)
        return replace(self, C=self.C * (self.kappa / kappa), kappa=kappa)

    def conj_modes(self, mask) -> HalfModes:
        """Replace the stored modes in ``mask`` by their conjugates (same real map, M conjugated)."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return self
        lam = np.where(mask, self.lam.conj(), self.lam)
        B = np.where(mask[:, None], self.B.conj(), self.B)
        C = np.where(mask[None, :], self.C.conj(), self.C)
        M = self.M
        if M is not None:
            # x^H M x with some coordinates conjugated is only representable when no mode is mixed
            # with a flipped one through M; flipped-flipped blocks are conjugated.
            both = mask[:, None] & mask[None, :]
            mixed = mask[:, None] ^ mask[None, :]
            if np.any(np.abs(M[:, mixed]) > 0):
                raise LayoutError(
                    "cannot flip the orientation of modes that are coupled to unflipped modes by the "
                    "quadratic output M"
                )
            M = np.where(both[None], M.conj(), M)
        return replace(self, lam=lam, B=B, C=C, M=M)

    def h2_contributions(self, horizon: int | None = None) -> np.ndarray:
        r"""Diagonal h2 contribution of each stored mode (ranking score of modal truncation).

        :math:`s_i = \|C_{:,i}\|^2 \|B_{i,:}\|^2 / (1 - |\lambda_i|^2)` (infinite horizon, ``inf`` for
        :math:`|\lambda_i| \ge 1`) or :math:`\|C_{:,i}\|^2\|B_{i,:}\|^2 \sum_{l<L} |\lambda_i|^{2l}`.
        Quadratic outputs add :math:`\sum_j |M_{j,ii}|^2 \|B_{i,:}\|^4 / (1-|\lambda_i|^2)^2`.
        """
        a = np.abs(self.lam) ** 2
        if horizon is None:
            with np.errstate(divide="ignore"):
                g = np.where(a < 1, 1.0 / np.maximum(1 - a, 1e-300), np.inf)
        else:
            L = int(horizon)
            g = np.where(np.isclose(a, 1.0, rtol=0, atol=1e-15), float(L),
                         (1 - a ** L) / np.where(a == 1, 1.0, 1 - a))
        b2 = np.sum(np.abs(self.B) ** 2, axis=1)
        c2 = np.sum(np.abs(self.C) ** 2, axis=0)
        s = c2 * b2 * g
        if self.M is not None:
            mdiag = np.abs(np.diagonal(self.M, axis1=1, axis2=2)) ** 2  # (p, n)
            s = s + mdiag.sum(axis=0) * b2 ** 2 * g ** 2
        return s

    def pad(self, n_total: int, lam_fill: complex) -> HalfModes:
        """Append inert modes (B = C = 0, eigenvalue ``lam_fill``) up to ``n_total`` stored modes."""
        k = n_total - self.n
        if k < 0:
            raise ShapeError(f"cannot pad {self.n} modes down to {n_total}")
        if k == 0:
            return self
        lam = np.concatenate([self.lam, np.full(k, lam_fill, dtype=np.complex128)])
        B = np.concatenate([self.B, np.zeros((k, self.m), np.complex128)])
        C = np.concatenate([self.C, np.zeros((self.p, k), np.complex128)], axis=1)
        M = None
        if self.M is not None:
            M = np.zeros((self.p, n_total, n_total), np.complex128)
            M[:, : self.n, : self.n] = self.M
        return replace(self, lam=lam, B=B, C=C, M=M)


@dataclass
class Unit:
    """One reducible system of a block.

    Attributes
    ----------
    system : LQOSystem
        Exact real-output discrete system (current-input convention).
    modes : HalfModes or None
        Stored half modes (None for dense layouts such as S4 DPLR).
    inputs : ndarray of int, shape (m,)
        Block input indices of the unit's inputs.
    outputs : ndarray of int, shape (p_fwd,)
        Block output indices of the unit's first ``p_fwd`` (causal) output rows.
    bwd_outputs : ndarray of int, shape (p - p_fwd,)
        Block output indices of the remaining rows, which act *anticausally* (bidirectional layers).
    bwd_shift : int
        1: the reverse kernel is strictly anticausal (S4, DSS: ``y[t] += sum_{s>=1} r[s-1] u[t+s]``);
        0: the reverse scan includes the current input (S5: ``y[t] += sum_{s>=0} r[s] u[t+s]``).
    meta : dict
        Family-specific data needed for the write-back (continuous eigenvalues, steps, ...).
    """

    system: LQOSystem
    modes: HalfModes | None
    inputs: np.ndarray
    outputs: np.ndarray
    bwd_outputs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    bwd_shift: int = 1
    meta: dict = field(default_factory=dict)

    @property
    def stored(self) -> int:
        """Number of stored modes (state columns of the layout)."""
        return self.modes.n if self.modes is not None else self.system.order // 2


class Block:
    """One SSM layer of a checkpoint.

    Attributes
    ----------
    name : str
        Key prefix of the layer in the state dict (e.g. ``"s4_layers.0."``).
    arch : str
        Layout name (``"s4d"``, ``"s4"``, ``"s4_dplr"``, ``"s4v3"``, ``"s5"``, ``"s5_jax"``, ``"lru"``,
        ``"lru_jax"``, ``"dss"``, ``"mamba"``, ``"mamba2"``, ``"lqo"``).
    systems : list of LQOSystem
        The exact discrete-time real-output systems: one per channel for per-channel layouts
        (S4, S4D, DSS), one MIMO system for S5, LRU and LQO. Empty for Mamba (not LTI).
    m, p : int
        Number of layer inputs and outputs of the linear SSM map.
    keys : tuple of str
        State-dict keys owned by the block (written back on reduction).
    settings : dict
        Settings used for the extraction (discretisation, transforms, ...).
    lti : bool
        False for input-dependent layouts (Mamba), which have no impulse response.
    """

    def __init__(self, name: str, arch: str, units: list[Unit], m: int, p: int, keys,
                 settings: dict | None = None, meta: dict | None = None, lti: bool = True,
                 notes: list[str] | None = None):
        self.name = name
        self.arch = arch
        self.units = list(units)
        self.m = int(m)
        self.p = int(p)
        self.keys = tuple(keys)
        self.settings = dict(settings or {})
        self.meta = dict(meta or {})
        self.lti = lti
        self.notes = list(notes or [])

    def __repr__(self) -> str:
        if not self.lti:
            return f"<Block {self.name!r} arch={self.arch} (input-dependent, not LTI)>"
        return (f"<Block {self.name!r} arch={self.arch} units={len(self.units)} m={self.m} "
                f"p={self.p} stored={self.stored} order={self.order}>")

    @property
    def systems(self) -> list[LQOSystem]:
        return [u.system for u in self.units]

    @property
    def stored(self) -> int:
        """Stored state size per unit (maximum over units)."""
        return max((u.stored for u in self.units), default=int(self.meta.get("stored", 0)))

    @property
    def order(self) -> int:
        """Real order per unit (maximum over units)."""
        return max((u.system.order for u in self.units), default=0)

    @property
    def bidirectional(self) -> bool:
        return any(u.bwd_outputs.size for u in self.units)

    def _check_lti(self):
        if not self.lti:
            raise LayoutError(
                f"block {self.name!r} ({self.arch}) is input dependent (LTV): it has no transfer "
                "function or impulse response; only exact state-index pruning is offered"
            )

    def _unit_kernels(self, u: Unit, L: int):
        """(outputs touched, h (L, q, m_u), g (L, q, m_u) or None) of one unit in block output order."""
        outs = np.unique(np.concatenate([u.outputs, u.bwd_outputs]))
        pos = {int(o): i for i, o in enumerate(outs)}
        fi = np.array([pos[int(o)] for o in u.outputs], dtype=int)
        bi = np.array([pos[int(o)] for o in u.bwd_outputs], dtype=int)
        pf = u.outputs.size
        r = u.system.impulse_response(L + 1 if bi.size else L)
        h = np.zeros((L, outs.size, u.inputs.size))
        np.add.at(h, (slice(None), fi), r[:L, :pf])
        g = None
        if bi.size:
            rb = r[:, pf:].copy()
            rb[0] -= np.real(u.system.D[pf:])
            g = np.zeros((L, outs.size, u.inputs.size))
            if u.bwd_shift == 0:
                np.add.at(h[0], bi, rb[0])
                np.add.at(g, (slice(None), bi), rb[1:L + 1])
            else:
                np.add.at(g, (slice(None), bi), rb[:L])
        return outs, h, g

    def _check_L(self, L) -> int:
        self._check_lti()
        L = int(L)
        if L < 1:
            raise ValueError(f"L must be >= 1, got {L}")
        return L

    def impulse_response(self, L: int, channel: int | None = None) -> np.ndarray:
        r"""Causal real Markov parameters of the layer's linear map.

        Parameters
        ----------
        L : int
            Number of lags.
        channel : int, optional
            Return only unit ``channel``: shape (L, q, m_u) over the outputs the unit touches and its
            own inputs (for per-channel layouts: that channel's SISO/SIMO kernel).

        Returns
        -------
        h : ndarray, shape (L, p, m)
            ``y[t] = sum_{l>=0} h[l] u[t-l] + sum_{j>=0} g[j] u[t+1+j]`` with ``h[0]`` including D (and,
            for S5 bidirectional layers, the lag-0 term of the reverse scan); ``g`` is
            :meth:`anticausal_response`. For per-channel layouts the layer map is block diagonal.
        """
        L = self._check_L(L)
        if channel is not None:
            return self._unit_kernels(self.units[channel], L)[1]
        h = np.zeros((L, self.p, self.m))
        for u in self.units:
            outs, hu, _ = self._unit_kernels(u, L)
            h[:, outs[:, None], u.inputs[None, :]] += hu
        return h

    def anticausal_response(self, L: int, channel: int | None = None) -> np.ndarray | None:
        r"""Anticausal part ``g`` of a bidirectional layer, or None for causal layers.

        Returns
        -------
        g : ndarray, shape (L, p, m)
            ``g[j]`` multiplies ``u[t + 1 + j]`` (j = 0 .. L-1).
        """
        if not self.bidirectional:
            return None
        L = self._check_L(L)
        if channel is not None:
            return self._unit_kernels(self.units[channel], L)[2]
        g = np.zeros((L, self.p, self.m))
        for u in self.units:
            outs, _, gu = self._unit_kernels(u, L)
            if gu is not None:
                g[:, outs[:, None], u.inputs[None, :]] += gu
        return g

    def apply(self, u: np.ndarray) -> np.ndarray:
        """Apply the layer's linear SSM map to an input sequence ``u`` (T, m) → (T, p) (float64)."""
        u = np.asarray(u, dtype=np.float64)
        if u.ndim != 2 or u.shape[1] != self.m:
            raise ShapeError(f"u must have shape (T, {self.m}), got {u.shape}")
        T = u.shape[0]
        h = self.impulse_response(T)
        y = np.zeros((T, self.p))
        for l_ in range(T):
            y[l_:] += u[: T - l_] @ h[l_].T
        g = self.anticausal_response(T)
        if g is not None:
            for j in range(T - 1):
                y[: T - 1 - j] += u[1 + j:] @ g[j].T
        return y

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "arch": self.arch, "units": len(self.units), "m": self.m,
                "p": self.p, "stored": self.stored, "order": self.order,
                "bidirectional": self.bidirectional, "settings": dict(self.settings)}
