"""The public objective :class:`H2Objective`: one block's weighted squared h2 error as a function of
a real parameter vector, with ``pack`` (reduced model -> vector) and ``unpack`` (vector -> reduced model).

It ties together the parametrisation (:mod:`.layout`), the evaluation of the objective and its
gradient (:mod:`.evaluate`) and the diagonalisation of given reduced models (:mod:`.modes`).
"""

from __future__ import annotations

import numpy as np

from ..._validation import check_order
from ...errors import InvalidArgumentError, NotASystemError, OrderError, ShapeError, UnknownMethodError
from ...norms import h2_norm_parts
from ...systems import LQOSystem
from ._checks import _check_margin, _check_system, _nonneg, _positive
from .evaluate import _Evaluator
from .layout import _FullArrays, _herm, _Layout, _Modes, _nu_bounds, _upper_half
from .modes import _modes_of_rom


def _without_d(sys: LQOSystem) -> LQOSystem:
    return LQOSystem._make(A=None if sys.is_diagonal else sys.A, lam=sys.lam, B=sys.B, C=sys.C, M=sys.M,
                           D=None, dt=sys.dt, convention=sys.convention, half=sys.half)


class H2Objective:
    r"""Weighted squared h2 error :math:`w\,\|\Sigma - \hat\Sigma(\vartheta)\|_{h2}^2` of a diagonal ROM.

    Parameters
    ----------
    sys : LQOSystem
        Full model (stable; dense or diagonal; LTI or LQO; real, complex or conjugate pairs).
    r : int
        Reduced (real) order. Even for real-output full models (conjugate-pair ROM with ``r/2`` modes).
    weight : float, default 1.0
        Positive factor :math:`w` multiplying the objective and its gradient.
    margin : float, default 0.0
        Stability margin :math:`\delta` (``|lam| <= 1 - delta`` or ``Re lam <= -delta``).
    quadratic : {"hermitian", "psd"}
        Parametrisation of the reduced quadratic output (ignored for LTI full models).
    project_c : bool, default True
        Eliminate :math:`\hat C` by its closed-form optimum (variable projection); else it is a parameter.
    scale : float, optional
        Output scale :math:`\kappa` of the conjugate-pair ROM of a *real* full model (default 2.0);
        conjugate-pair full models impose their own.

    Notes
    -----
    The parameter vector ``theta`` (real, length :attr:`size`) is
    ``[nu (q), phi (q), Re B^, Im B^ (q m each; only if optimised), Re C^, Im C^ (p q each; only
    without projection), quadratic parameters]`` with ``q = r/2`` (pairs) or ``r``. The poles are
    :math:`(1-\delta)\exp(-e^{\nu} + i\theta)` (discrete) or :math:`-\delta - e^\nu + i\theta` with
    :math:`\theta = \varphi` (complex ROMs) or the bounded angle map of :mod:`mor_lqo.reduction.gradient` (pairs;
    the stored member has :math:`\mathrm{Im}\,\hat\lambda > 0`, or the orientation fixed by
    :meth:`pack` for LQO models, whose quadratic coupling depends on it).
    With ``project_c`` and one input, ``B^`` is fixed to ones. Hermitian quadratic parameters per
    output: the ``q`` diagonal entries, then real and imaginary parts of the strict upper triangle
    (row-major); PSD: real and imaginary parts of the square factor ``U``.

    A joint weighted objective over blocks is the sum of ``value_and_grad`` over the blocks'
    slices of a concatenated parameter vector (see :func:`h2_gradient_joint`).
    """

    def __init__(self, sys: LQOSystem, r: int, *, weight: float = 1.0, margin: float = 0.0,
                 quadratic: str = "hermitian", project_c: bool = True, scale: float | None = None,
                 min_ratio: float = 1e-2):
        sys = _check_system(sys)
        self.sys = sys
        pairs = sys.half is not None or not sys.is_complex
        r = check_order(r, sys.order)
        if pairs and r % 2:
            raise OrderError(
                f"real-output systems are reduced to conjugate pairs, so r must be even; got r = {r}"
            )
        if quadratic not in ("hermitian", "psd"):
            raise UnknownMethodError(f"quadratic must be 'hermitian' or 'psd', got {quadratic!r}")
        self.weight = _positive(weight, "weight")
        disc = sys.is_discrete
        margin = _check_margin(margin, disc)
        if sys.half is not None:
            kappa = sys.half[4]
            if scale is not None and float(scale) != kappa:
                raise InvalidArgumentError(f"scale={scale} differs from the conjugate-pair full model's scale {kappa}")
        else:
            kappa = 2.0 if scale is None else _positive(scale, "scale")
        self.r = r
        q = r // 2 if pairs else r
        nu_b = _nu_bounds(disc, sys.poles())
        quad = quadratic if sys.M is not None else None
        self.layout = _Layout(pairs=pairs, q=q, m=sys.m, p=sys.p, disc=disc, margin=margin, kappa=kappa,
                              quad=quad, project_c=project_c, nu_bounds=nu_b,
                              min_ratio=_nonneg(min_ratio, "min_ratio"))
        self._nod = _without_d(sys)
        parts = h2_norm_parts(self._nod)
        self.norm2 = float(parts.total)
        if sys.is_diagonal:
            fa = _FullArrays(sys.lam[None], sys.B[None], sys.C[None], None if sys.M is None else sys.M[None],
                             [parts.linear], [parts.quadratic], disc)
            self._ev = _Evaluator(self.layout, fa=fa)
        else:
            self._ev = _Evaluator(self.layout, sys_nod=self._nod)

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Length of the parameter vector."""
        return self.layout.size

    @property
    def bounds(self) -> list[tuple[float | None, float | None]]:
        """L-BFGS-B bounds (only the ``nu`` entries are bounded, to keep ``exp(nu)`` finite)."""
        b = [(None, None)] * self.size
        for i in range(*self.layout.slices["nu"].indices(self.size)):
            b[i] = self.layout.nu_bounds
        return b

    # -- conversion ----------------------------------------------------------------------------------
    def _theta_from_modes(self, modes: _Modes, lift: float = 0.0) -> np.ndarray:
        lay = self.layout
        lam, B, C, M = (np.array(x, np.complex128) if x is not None else None for x in modes[:4])
        if lay.quad is not None and M is None:
            M = np.zeros((lay.p, lay.q, lay.q), np.complex128)
        if lay.pairs:
            neg = lam.imag < 0
            if lay.quad is None:  # LTI: swap the stored member of the pair -> Im lam >= 0 (same system)
                lam, B, C = _upper_half(lam, B, C)
            else:  # the quadratic coupling fixes the orientation: remember it
                self._ev.signs = np.where(neg, -1.0, 1.0)
        if not lay.opt_b:  # rescale the state so that B^ = 1: C^ <- C^ D, M^ <- D^H M^ D, D = diag(b)
            d = B[:, 0].copy()
            zero = d == 0
            C = C * d[None, :]
            if M is not None:
                M = np.conj(d)[None, :, None] * M * d[None, None, :]
            C[:, zero] = 0
            if M is not None:
                M[:, zero, :] = 0
                M[:, :, zero] = 0
        th = lay.start_theta(lam[None], B[None], lift=lift)[0]
        if not lay.project_c:
            th[lay.slices["cre"]] = C.real.ravel()
            th[lay.slices["cim"]] = C.imag.ravel()
        if lay.quad is not None:
            th[lay.slices["M"]] = lay.quad_params(_herm(M)[None])[0]
        return th

    def pack(self, rom: LQOSystem) -> np.ndarray:
        """Parameter vector of a reduced model of order ``r`` (diagonalised first if necessary).

        Poles outside the margin are moved onto it; with a PSD parametrisation, negative eigenvalues
        of an indefinite :math:`\\hat M` are clipped. ``C^`` is dropped when it is projected.
        """
        if not isinstance(rom, LQOSystem):
            raise NotASystemError(f"expected an LQOSystem, got {type(rom).__name__}")
        self.sys.compatible_with(rom)
        return self._theta_from_modes(_modes_of_rom(rom, self.layout))

    def _check_theta(self, theta) -> np.ndarray:
        th = np.asarray(theta, dtype=float)
        if th.shape != (self.size,):
            raise ShapeError(f"theta must have shape ({self.size},), got {th.shape}")
        if not np.all(np.isfinite(th)):
            raise InvalidArgumentError("theta contains NaN or infinite entries")
        return th

    def modes(self, theta) -> _Modes:
        """Half (or complex) modes ``(lam, B, C, M)`` of the ROM at ``theta`` (C projected if enabled)."""
        th = self._check_theta(theta)[None]
        _, _, Ch = self._ev(th, grad=False)
        mu, _, _, Bh, _, Mh, _ = self._ev.unpack(th)
        return _Modes(mu[0], np.array(Bh[0]), Ch[0], None if Mh is None else Mh[0], True)

    def _rom_from_modes(self, modes: _Modes) -> LQOSystem:
        lay, sys = self.layout, self.sys
        kw = dict(D=sys.D, dt=sys.dt, convention=sys.convention)
        M = None if (modes.M is None or sys.M is None) else _herm(modes.M)
        if lay.pairs:
            return LQOSystem.conjugate_pairs(modes.lam, modes.B, modes.C, M=M, scale=lay.kappa, **kw)
        return LQOSystem.diagonal(modes.lam, modes.B, modes.C, M=M, **kw)

    def unpack(self, theta) -> LQOSystem:
        """Reduced model at ``theta``: ``conjugate_pairs`` (scale kappa) or complex diagonal, D^ = D."""
        return self._rom_from_modes(self.modes(theta))

    # -- evaluation ----------------------------------------------------------------------------------
    def value(self, theta) -> float:
        """:math:`w J(\\vartheta)` (unclamped squared error times the weight)."""
        J, _, _ = self._ev(self._check_theta(theta)[None], grad=False)
        return self.weight * float(J[0])

    def value_and_grad(self, theta) -> tuple[float, np.ndarray]:
        """:math:`w J(\\vartheta)` and its gradient with respect to the real parameter vector."""
        J, G, _ = self._ev(self._check_theta(theta)[None], grad=True)
        return self.weight * float(J[0]), self.weight * G[0]
