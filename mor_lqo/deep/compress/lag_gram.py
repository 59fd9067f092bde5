r"""Structured data weights of the per-channel fits: the lag covariance of recorded inputs kept as its
generating sequences, with closed-form bilinear forms on exponentials (docs/theory.md §10.1).

The normalised lag covariance plus ridge of channel h is

.. math:: M_h = \sum_{\beta} T_{\beta}^T T_{\beta},

with :math:`T_\beta` the lower-triangular Toeplitz (causal convolution, truncated to L lags) matrix of the
sequence :math:`\tilde u_\beta`: the B calibration inputs of the channel scaled by
:math:`(B\,\mathrm{tr}W_h/L)^{-1/2}`, and one more sequence :math:`\sqrt\rho\,e_0` (its :math:`T` is
:math:`\sqrt\rho I`: the ridge). For exponentials :math:`a^l`, :math:`b^l` (l < L) the states
:math:`x_a = T_\beta a^{(\cdot)}` obey :math:`x_a[m] = a x_a[m-1] + \tilde u[m]`, and summing
:math:`x_a[m]x_b[m]` over the recurrence gives the Stein identity

.. math:: \sum_{k,l<L} a^k (M_h)_{kl} b^l = \frac{P(a) + P(b) - P(0) - ab\sum_\beta E_\beta(a)E_\beta(b)}{1 - ab},

:math:`P(a) = \sum_l a^l r[l]` (r the summed autocorrelation of the sequences) and
:math:`E_\beta(a) = x_a[L-1] = \sum_l a^l \tilde u_\beta[L-1-l]`. Every Gram entry costs O(#sequences)
once the O(L) polynomial values are known, instead of the O(L^2) of the dense weight; derivatives in
:math:`\log a` (columns :math:`l a^l`) follow by differentiating the identity.
"""

from __future__ import annotations

import numpy as np

from .constants import DATA_RIDGE


class LagMetric:
    r"""The data weights :math:`M_h` of N channels, stored as their generating sequences.

    Parameters
    ----------
    seq : ndarray, shape (N, S, L)
        Sequences :math:`\tilde u_\beta` per channel (ridge sequence included), so that
        :math:`M_h = \sum_\beta T_\beta^T T_\beta`.

    Attributes
    ----------
    acf : ndarray, shape (N, L)
        Summed autocorrelations :math:`r[l] = \sum_\beta\sum_{m \ge l} \tilde u_\beta[m]\tilde u_\beta[m-l]`.
    """

    def __init__(self, seq: np.ndarray, acf: np.ndarray | None = None):
        self.seq = np.ascontiguousarray(seq, dtype=np.float64)
        self.N, self.S, self.L = self.seq.shape
        if acf is None:
            n = 2 * self.L
            F = np.fft.rfft(self.seq, n=n, axis=2)
            acf = np.fft.irfft(np.sum(F.real**2 + F.imag**2, axis=1), n=n, axis=1)[:, : self.L]
        self.acf = acf

    @classmethod
    def from_inputs(cls, U: np.ndarray, rho: float = DATA_RIDGE) -> LagMetric:
        r"""The weights of :func:`~mor_lqo.deep.compress.weights.lag_weights` (squared) from inputs U (B, L, H)."""
        B_, L, H = np.shape(U)
        seq = np.zeros((H, B_ + 1, L))
        seq[:, :B_] = np.transpose(np.asarray(U, np.float64), (2, 0, 1))  # contiguous: layout-independent sums
        tr = (seq[:, :B_] ** 2).sum(axis=1) @ ((L - np.arange(L)) / L) / B_  # trace of the lag covariance / L
        seq[:, :B_] *= (1.0 / np.sqrt(B_ * np.where(tr > 0, tr, 1.0)))[:, None, None]
        seq[:, B_, 0] = np.sqrt(rho)
        return cls(seq)

    def __len__(self) -> int:
        return self.N

    def __getitem__(self, rows) -> LagMetric:
        rows = np.atleast_1d(np.arange(self.N)[rows])
        return LagMetric(self.seq[rows], self.acf[rows])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(N, L, L), the shape of the dense weights."""
        return (self.N, self.L, self.L)

    def dense(self) -> np.ndarray:
        r"""The matrices :math:`M_h` (N, L, L), from the displacement :math:`M_{ij} - M_{i+1,j+1} =
        \sum_\beta \tilde u_\beta[L-1-i]\,\tilde u_\beta[L-1-j]` (O(S L^2) per channel)."""
        R = self.seq[:, :, ::-1]
        D = np.matmul(np.swapaxes(R, 1, 2), R)
        M = np.empty_like(D)
        M[:, -1] = D[:, -1]
        for i in range(self.L - 2, -1, -1):
            M[:, i, :-1] = D[:, i, :-1] + M[:, i + 1, 1:]
            M[:, i, -1] = D[:, i, -1]
        return M

    def structured(self) -> bool:
        """Whether the Gram-form fit pays: horizons of at least 4 sequences per lag (else the dense weights of
        :meth:`sqrt`, cheap at such short horizons, keep the better-conditioned dense route)."""
        return self.L >= 4 * self.S

    def sqrt(self) -> np.ndarray:
        """Symmetric square roots (N, L, L) of :math:`M_h` (the weights of the dense route)."""
        w, V = np.linalg.eigh(self.dense())
        return np.einsum("hik,hk,hjk->hij", V, np.sqrt(np.clip(w, 0, None)), V)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """:math:`M_h X_h` for X (N, L) or (N, L, c), by FFT convolutions."""
        X = np.asarray(X, np.float64)
        vec = X.ndim == 2
        Xc = X[:, :, None] if vec else X
        n = 2 * self.L
        Fu = np.fft.rfft(self.seq, n=n, axis=2)  # (N, S, F)
        Fx = np.fft.rfft(Xc, n=n, axis=1)  # (N, F, c)
        y = np.fft.irfft(Fu[:, :, :, None] * Fx[:, None], n=n, axis=2)[:, :, : self.L]  # T_b x: (N, S, L, c)
        Fy = np.fft.rfft(y, n=n, axis=2)
        out = np.fft.irfft(np.sum(Fu.conj()[:, :, :, None] * Fy, axis=1), n=n, axis=1)[:, : self.L]
        return out[:, :, 0] if vec else out

    def coef(self, extra: np.ndarray | None = None) -> np.ndarray:
        """Polynomial coefficients (N, L, c) of the moments: [extra columns..., r, reversed sequences]."""
        cols = [self.acf[:, :, None], np.moveaxis(self.seq[:, :, ::-1], 1, 2)]
        if extra is not None:
            cols.insert(0, extra if extra.ndim == 3 else extra[:, :, None])
        return np.concatenate(cols, axis=2)


def powers(s: np.ndarray, L: int) -> np.ndarray:
    """exp(s l) for l < L, (..., L) complex, from two small tables (one product per entry)."""
    m = max(1, int(np.ceil(np.sqrt(L))))
    lo = np.exp(s[..., None] * np.arange(m))
    hi = np.exp(s[..., None] * (m * np.arange(-(-L // m))))
    return (hi[..., :, None] * lo[..., None, :]).reshape(s.shape + (-1,))[..., :L]


class Blocked:
    """Moment coefficients (N, L, c) laid out for :func:`moments`: lags split as l = m l0 + l1, stored as
    (N, m, nb c) so that one matrix product with the table e^{s l1} serves all blocks l0."""

    def __init__(self, coef: np.ndarray):
        N, L, c = coef.shape
        self.L, self.c = L, c
        self.m = m = max(1, int(np.ceil(np.sqrt(L))))
        self.nb = nb = -(-L // m)
        pad = np.zeros((N, nb * m, c))
        pad[:, :L] = coef
        self.ct = np.ascontiguousarray(pad.reshape(N, nb, m, c).transpose(0, 2, 1, 3).reshape(N, m, nb * c))

    def take(self, rows) -> Blocked:
        out = object.__new__(Blocked)
        out.L, out.c, out.m, out.nb, out.ct = self.L, self.c, self.m, self.nb, self.ct[rows]
        return out


def moments(s: np.ndarray, coef, deriv: bool = True):
    r"""Polynomial values :math:`\sum_l e^{s l} c_l` and :math:`\sum_l l e^{s l} c_l` (l < L).

    Parameters
    ----------
    s : ndarray, shape (N, k) complex
        Log-poles per row.
    coef : ndarray, shape (N, L, c), or Blocked
        Coefficients per row (:meth:`LagMetric.coef`).
    deriv : bool
        Also the values with the weights l (the derivative in s).

    Returns
    -------
    X0, X1 : ndarray, shape (N, k, c) complex (X1 None without ``deriv``)
    """
    b = coef if isinstance(coef, Blocked) else Blocked(coef)
    lo, hi = moment_tables(s, b)
    Y0 = block_sums(lo, b)
    X0 = combine(hi, Y0)
    return X0, (derivative_moments(lo, hi, Y0, b) if deriv else None)


def moment_tables(s: np.ndarray, b: Blocked):
    """The tables e^{s l1} (N, k, m) and e^{s m l0} (N, k, nb) of the split lags l = m l0 + l1."""
    return np.exp(s[..., None] * np.arange(b.m)), np.exp(s[..., None] * (b.m * np.arange(b.nb)))


def block_sums(A: np.ndarray, b: Blocked) -> np.ndarray:
    """Per lag block l0: sum over l1 of A[..., l1] c[m l0 + l1], (N, k, nb, c) complex."""
    Y = np.matmul(np.ascontiguousarray(A.real), b.ct) + 1j * np.matmul(np.ascontiguousarray(A.imag), b.ct)
    return Y.reshape(A.shape[0], A.shape[1], b.nb, b.c)


def combine(hi: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """sum over l0 of hi[..., l0] Y[..., l0, :], (N, k, c)."""
    return np.matmul(hi[:, :, None, :], Y)[:, :, 0]


def derivative_moments(lo, hi, Y0, b: Blocked) -> np.ndarray:
    r""":math:`\sum_l l e^{s l} c_l` from the tables and the block sums Y0 of :func:`block_sums` (l = m l0 + l1)."""
    return combine(hi * (b.m * np.arange(b.nb)), Y0) + combine(hi, block_sums(lo * np.arange(b.m), b))


def _one_minus(sa: np.ndarray, sb: np.ndarray):
    """c = exp(sa + sb) (outer sum over the last axes (N, p), (N, q)) and 1 - c, accurate where c is near 1
    (expm1 there only)."""
    c = np.exp(sa)[:, :, None] * np.exp(sb)[:, None, :]
    dlt = 1.0 - c
    near = dlt.real**2 + dlt.imag**2 < 0.25
    if near.any():
        dlt[near] = -np.expm1((sa[:, :, None] + sb[:, None, :])[near])
    return c, dlt


def diag_kernels(s: np.ndarray, X0: np.ndarray, r0: np.ndarray):
    r"""The forms :math:`\langle a^k, a^l\rangle` and :math:`\langle a^k, \bar a^l\rangle` of every pole with itself
    and its conjugate: s (N, g), moments X0 (N, g, S+1), r0 (N,); two (N, g) arrays."""
    E = X0[..., 1:]
    out = []
    for sig, F, P in ((2 * s, np.sum(E * E, axis=-1), 2 * X0[..., 0]),
                      (2 * s.real + 0j, np.sum(E.real**2 + E.imag**2, axis=-1), 2 * X0[..., 0].real + 0j)):
        c, dlt = _one_minus(sig, np.zeros((sig.shape[0], 1), complex))
        out.append((P - r0[:, None] - c[..., 0] * F) / dlt[..., 0])
    return out


def pair_kernels(sa, Xa0, Xa1, sb, Xb0, Xb1, r0, deriv: bool = True):
    r"""Bilinear forms :math:`\langle\phi, \psi\rangle_M` of the exponentials of all pole pairs (a, b).

    Parameters
    ----------
    sa, sb : ndarray, shapes (N, p) and (N, q) complex
        Log-poles.
    Xa0, Xa1, Xb0, Xb1 : ndarray, shapes (N, p, S+1) and (N, q, S+1) complex
        Their moments (:func:`moments`) over the sequence columns (column 0 the autocorrelation, the rest
        the reversed sequences); the ``*1`` (derivative) ones may be None without ``deriv``.
    r0 : ndarray, shape (N,)
        Autocorrelation at lag 0.
    deriv : bool
        Also the forms with the columns :math:`l a^l`.

    Returns
    -------
    K00 : ndarray (N, p, q)
        :math:`\langle a^k, b^l\rangle`; with ``deriv`` the tuple (K00, K10, K01, K11) with
        ``K10`` :math:`\langle k a^k, b^l\rangle`, ``K01`` :math:`\langle a^k, l b^l\rangle`,
        ``K11`` :math:`\langle k a^k, l b^l\rangle`.
    """
    c, dlt = _one_minus(sa, sb)
    Ea, Eb = Xa0[..., 1:], np.swapaxes(Xb0[..., 1:], 1, 2)
    F00 = Ea @ Eb
    N = Xa0[:, :, None, 0] + Xb0[:, None, :, 0] - r0[:, None, None] - c * F00
    K00 = N / dlt
    if not deriv:
        return K00
    Ea1, Eb1 = Xa1[..., 1:], np.swapaxes(Xb1[..., 1:], 1, 2)
    F10 = Ea1 @ Eb
    F01 = Ea @ Eb1
    F11 = Ea1 @ Eb1
    AN = Xa1[:, :, None, 0] - c * (F00 + F10)
    BN = Xb1[:, None, :, 0] - c * (F00 + F01)
    ABN = -c * (F00 + F01 + F10 + F11)
    q = c / dlt
    Nq = N * q / dlt
    K10 = AN / dlt + Nq
    K01 = BN / dlt + Nq
    K11 = ABN / dlt + (AN + BN + N) * q / dlt + 2 * Nq * q
    return K00, K10, K01, K11
