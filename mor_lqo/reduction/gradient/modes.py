r"""Reduced models as modes: modal truncation, diagonalisation of a given ROM, mode scores.

Every initial model of the gradient reducers is a :class:`~.layout._Modes` in the reduced model's
structure: conjugate pairs (one stored member per pair, output scale :math:`\kappa`) for real-output
full models, complex modes otherwise (docs/theory.md §7.7, §8.3).
"""

from __future__ import annotations

import numpy as np

from ...errors import ComplexSystemError, OrderError, ShapeError
from ...systems import LQOSystem
from .layout import _clip_poles, _herm, _Layout, _Modes


def _mode_scores(lam, Bm, Cm, Mm, disc, pairs: bool = False):
    """Per-mode h2^2 of ``c b^T / (z - lam)`` (+ its diagonal quadratic term), docs/theory.md §7.6.

    ``pairs``: the real-map norm of the pair ``c b^T/(z - lam) + conj`` (up to the common factor
    ``kappa^2 / 2``), which adds the non-conjugated term ``Re[(c^T c)(b^T b) / (1 - lam^2)]`` (§8.4).
    """
    k = 1.0 / (1.0 - np.abs(lam) ** 2) if disc else 1.0 / (-2.0 * lam.real)
    b2 = np.sum(np.abs(Bm) ** 2, axis=-1)
    s = np.sum(np.abs(Cm) ** 2, axis=-2) * b2 * k
    if pairs:
        kt = 1.0 / (1.0 - lam ** 2) if disc else -1.0 / (2.0 * lam)
        s = s + np.real(np.sum(Cm ** 2, axis=-2) * np.sum(Bm ** 2, axis=-1) * kt)
    if Mm is not None:
        d = np.arange(lam.shape[-1])
        s = s + np.sum(np.abs(Mm[..., d, d]) ** 2, axis=-2) * (b2 * k) ** 2
    return s


def _modal_data(A, B, C, M):
    """Eigen-decomposition (w, V^-1 B, C V, V^H M V) of a dense model."""
    w, V = np.linalg.eig(A)
    Bm = np.linalg.solve(V, B)
    Cm = C @ V
    Mm = None if M is None else _herm(np.einsum("na,jnk,kb->jab", np.conj(V), M, V))
    return w, Bm, Cm, Mm


def _degenerate_pair(a: complex, disc: bool) -> complex:
    """A real mode stored in a conjugate-pair slot: nudge it off the real axis (J is even in theta)."""
    a = float(np.real(a))
    eps = 1e-3 * (1.0 - abs(a) if disc else abs(a)) or 1e-6
    return complex(a, eps)


def _modes_from_real(A, B, C, M, q, kappa, disc, select: bool) -> _Modes:
    """Conjugate-pair half modes of a real model: its pairs (Im > 0 representatives) and real modes.

    ``select``: keep the ``q`` dominant units (modal truncation); else represent the whole (order 2q)
    model, merging real eigenvalues pairwise into complex pairs (then inexact).
    """
    w, Bm, Cm, Mm = _modal_data(A, B, C, M)
    cpx = np.flatnonzero(w.imag > 0)
    rea = np.flatnonzero(w.imag == 0)
    lam_u, B_u, C_u, units = [], [], [], []
    for i in cpx:
        units.append(("c", i))
    for i in rea:
        units.append(("r", i))
    exact = True
    if select:
        sc1 = _mode_scores(w, Bm, Cm, Mm, disc)
        sc2 = 2 * _mode_scores(w, Bm, Cm, Mm, disc, pairs=True)
        sc = np.array([sc2[i] if t == "c" else sc1[i] for t, i in units])
        order = np.argsort(-sc, kind="stable")[:q]
        units = [units[j] for j in sorted(order)]
        exact = all(t == "c" for t, _ in units)
        slots = [[u] for u in units]
    else:
        slots = [[u] for u in units if u[0] == "c"]
        reals = sorted((u for u in units if u[0] == "r"), key=lambda u: w[u[1]].real)
        for j in range(0, len(reals) - 1, 2):
            slots.append([reals[j], reals[j + 1]])
            exact = False
        if len(slots) != q:  # pragma: no cover - a real matrix of order 2q always gives q slots
            raise ShapeError("cannot represent this real model as conjugate pairs")
    idx = []
    for slot in slots:
        if len(slot) == 1 and slot[0][0] == "c":
            i = slot[0][1]
            lam_u.append(w[i])
            B_u.append(Bm[i])
            C_u.append(2.0 / kappa * Cm[:, i])
            idx.append(i)
        elif len(slot) == 1:
            i = slot[0][1]
            lam_u.append(_degenerate_pair(w[i], disc))
            B_u.append(Bm[i])
            C_u.append(Cm[:, i] / kappa)
            idx.append(i)
        else:
            (_, i), (_, k) = slot
            a1, a2 = w[i].real, w[k].real
            lam_u.append(complex((a1 + a2) / 2, max(abs(a1 - a2) / 2, 1e-6 * max(abs(a1), 1e-300))))
            B_u.append(Bm[i])
            C_u.append(Cm[:, i] / kappa)
            idx.append(i)
    idx = np.array(idx)
    H = None
    if Mm is not None:
        # x^T M x in modal coordinates; a conjugate-pair slot keeps z^H H z with H = 2 (V^H M V)[rep, rep]
        # (real-real entries: factor 1). The (rep, partner) blocks cannot be represented and are dropped.
        H = 2 * Mm[:, idx[:, None], idx[None, :]]
        real_slot = np.array([s[0][0] == "r" for s in slots])
        H[:, real_slot[:, None] & real_slot[None, :]] /= 2
        partner = np.array([int(np.argmin(np.abs(w - np.conj(w[i])))) for i in idx])
        dropped = np.linalg.norm(Mm[:, idx[:, None], partner[None, :]])
        if real_slot.any() or dropped > 1e-12 * max(np.linalg.norm(Mm), np.finfo(float).tiny):
            exact = False
    return _Modes(np.array(lam_u, np.complex128), np.array(B_u, np.complex128).reshape(q, -1),
                  np.array(C_u, np.complex128).reshape(q, -1).T, H, exact)


def _modes_from_complex(A, B, C, M, q, disc, select: bool) -> _Modes:
    w, Bm, Cm, Mm = _modal_data(A, B, C, M)
    idx = np.arange(len(w))
    if select:
        idx = np.sort(np.argsort(-_mode_scores(w, Bm, Cm, Mm, disc), kind="stable")[:q])
    H = None if Mm is None else Mm[:, idx[:, None], idx[None, :]]
    return _Modes(w[idx], Bm[idx], Cm[:, idx], H, True)


def _modal_modes(sys: LQOSystem, lay: _Layout) -> _Modes:
    """Modal truncation (dominant modes by h2 contribution) in the ROM's structure."""
    q = lay.q
    if sys.half is not None:
        lam, B, C, M, kappa = sys.half
        sc = _mode_scores(lam, B, C, M, lay.disc, pairs=True)
        idx = np.sort(np.argsort(-sc, kind="stable")[:q])
        H = None if M is None else M[:, idx[:, None], idx[None, :]]
        return _Modes(lam[idx], B[idx], C[:, idx] * (kappa / lay.kappa), H, True)
    if sys.is_diagonal and lay.pairs is False:
        lam, B, C, M = sys.lam, sys.B, sys.C, sys.M
        sc = _mode_scores(lam, B, C, M, lay.disc)
        idx = np.sort(np.argsort(-sc, kind="stable")[:q])
        H = None if M is None else M[:, idx[:, None], idx[None, :]]
        return _Modes(lam[idx].astype(np.complex128), B[idx].astype(np.complex128),
                      C[:, idx].astype(np.complex128), H, True)
    if lay.pairs:
        return _modes_from_real(sys.A, sys.B, sys.C, sys.M, q, lay.kappa, lay.disc, select=True)
    return _modes_from_complex(sys.A, sys.B, sys.C, sys.M, q, lay.disc, select=True)


def _modes_of_rom(rom: LQOSystem, lay: _Layout) -> _Modes:
    """Diagonalise a given reduced model into the ROM structure (exactly, where representable)."""
    if rom.order != lay.r_full:
        raise OrderError(f"the initial model has order {rom.order}, expected r = {lay.r_full}")
    if lay.pairs:
        if rom.half is not None:
            lam, B, C, M, kappa = rom.half
            return _Modes(lam.copy(), B.copy(), C * (kappa / lay.kappa), None if M is None else M.copy(), True)
        if rom.is_complex:
            raise ComplexSystemError(
                "the full model has real outputs, so the initial model must too (a real system or a "
                "conjugate_pairs system); got a complex-output system"
            )
        return _modes_from_real(rom.A, rom.B, rom.C, rom.M, lay.q, lay.kappa, lay.disc, select=False)
    if rom.is_diagonal:
        M = None if rom.M is None else rom.M.astype(np.complex128)
        return _Modes(rom.lam.astype(np.complex128), rom.B.astype(np.complex128),
                      rom.C.astype(np.complex128), M, True)
    return _modes_from_complex(rom.A, rom.B, rom.C, rom.M, lay.q, lay.disc, select=False)


def _clip_to_margin(modes: _Modes, lay: _Layout) -> _Modes:
    """Move initial poles that violate the margin onto it (radially / horizontally); else unchanged."""
    if lay.margin == 0.0:
        return modes
    lam = _clip_poles(modes.lam, lay.margin, lay.disc)
    if np.array_equal(lam, modes.lam):
        return modes
    return modes._replace(lam=lam, exact=False)
