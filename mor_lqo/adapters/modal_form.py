r"""Turn a reduced real-output system back into stored half modes of a Deep-SSM layout.

A reduced model from any reducer is one of

* a :meth:`~mor_lqo.LQOSystem.conjugate_pairs` system (its stored half is used directly),
* a conjugation-closed complex diagonal system (eigenvalues in conjugate pairs, real input-output map),
* a real dense system ``(A_r, B_r, C_r, M_r, D)``.

:func:`to_half_modes` diagonalises it, pairs conjugate eigenvalues, keeps one member of each pair (chosen
by the layout's sign rule), and returns :class:`~mor_lqo.adapters.block.HalfModes` with output factor
:math:`\kappa` of the target layout (docs/adapters.md, "Reduction"):

* a complex pair :math:`(\mu, \bar\mu)` with full-space coordinates :math:`(w_a, w_b)` is stored as one
  mode :math:`s = w_a` with :math:`\hat C_s = (2/\kappa)\hat C_a`,
* a real eigenvalue is stored as one mode with real :math:`\hat B`, :math:`\hat C_s = \hat C/\kappa`,

so the stored count is ``#pairs + #real``. Quadratic outputs are carried over exactly when they are
representable as :math:`s^H \hat M_j s` (no :math:`s^T K s` cross terms); otherwise LayoutError.
"""

from __future__ import annotations

import numpy as np

from ..errors import ComplexSystemError, LayoutError
from ..systems import LQOSystem
from .block import HalfModes

__all__ = ["to_half_modes"]

# Relative tolerance for recognising conjugate partners / real eigenvalues of *complex* diagonal
# reduced models (real dense models are diagonalised by LAPACK, which returns exact conjugate pairs and
# exactly real eigenvalues, so no tolerance is involved there).
PAIR_RTOL = 1e-8
# Relative tolerance for the real-output consistency checks of the residues (B_b = alpha conj(B_a), ...).
REAL_RTOL = 1e-7
# Modes whose input row or output column is below this fraction of the largest are dropped (exact up
# to that level: their contribution to the kernel is at most DEAD_RTOL * |b|max * |c|max / (1 - |lam|)).
DEAD_RTOL = 1e-12
# Eigenvector condition number above which a dense model is considered non-diagonalisable.
COND_MAX = 1e10


def _as_rom(rom) -> LQOSystem:
    if isinstance(rom, LQOSystem):
        return rom
    r = getattr(rom, "rom", None)
    if isinstance(r, LQOSystem):
        return r
    raise TypeError(f"expected an LQOSystem or a reduction result with .rom, got {type(rom).__name__}")


def to_half_modes(rom, kappa: float, sign: int = 0) -> HalfModes:
    r"""Stored half modes of a real-output reduced model.

    Parameters
    ----------
    rom : LQOSystem or result with ``.rom``
        Discrete real-output reduced model (real dense, conjugation-closed complex diagonal, or a
        conjugate-pairs system).
    kappa : float
        Output factor of the target layout (2 or 1).
    sign : {0, 1, -1}
        Which member of each complex pair is stored: +1 the one with Im > 0 (LRU theta > 0), -1 the one
        with Im < 0 (S4 v4 with a positive imag transform), 0 the one with Im > 0 unless the input is a
        conjugate-pairs system, whose stored orientation is kept.

    Returns
    -------
    HalfModes
        ``lam`` (n',), ``B`` (n', m), ``C`` (p, n'), ``D`` (p, m), ``kappa``, ``M`` (p, n', n') or None,
        with the same real input-output map as ``rom`` (exact up to rounding of the eigendecomposition).

    Raises
    ------
    ComplexSystemError
        The model is complex but not real-output (eigenvalues or residues not in conjugate pairs).
    LayoutError
        Not diagonalisable (eigenvector condition > 1e10) or quadratic cross terms not representable.
    """
    rom = _as_rom(rom)
    kappa = float(kappa)
    if rom.half is not None:
        lam, B, C, M, k0 = rom.half
        hm = HalfModes(lam=lam, B=B, C=C, D=np.real_if_close(rom.D), kappa=k0, M=M).with_kappa(kappa)
        if sign != 0:
            hm = hm.conj_modes(np.sign(hm.lam.imag) == -sign)
        return hm

    if rom.is_diagonal:
        lam = np.asarray(rom.lam, dtype=np.complex128)
        Bf = np.asarray(rom.B, dtype=np.complex128)
        Cf = np.asarray(rom.C, dtype=np.complex128)
        Mf = None if rom.M is None else np.asarray(rom.M, dtype=np.complex128)
        exact_pairs = not rom.is_complex
    else:
        if rom.is_complex and not all(
            not np.any(np.imag(x)) for x in (rom.A, rom.B, rom.C, rom.D, rom.M) if x is not None
        ):
            raise ComplexSystemError(
                "a dense complex reduced model cannot be written back: realify it (or return a "
                "conjugation-closed diagonal or real dense model)"
            )
        A = np.real(rom.A).astype(np.float64)
        lam, X = np.linalg.eig(A)
        cond = np.linalg.cond(X)
        if not np.isfinite(cond) or cond > COND_MAX:
            raise LayoutError(
                f"the reduced state matrix is not (numerically) diagonalisable (eigenvector condition "
                f"{cond:.3g}); Deep-SSM layouts store diagonal modes"
            )
        Xi = np.linalg.inv(X)
        Bf = Xi @ np.real(rom.B)
        Cf = np.real(rom.C) @ X
        Mf = None if rom.M is None else np.einsum("na,jnk,kb->jab", X.conj(), np.real(rom.M), X, optimize=True)
        exact_pairs = True
    D = np.asarray(rom.D)
    if np.iscomplexobj(D):
        if np.max(np.abs(D.imag), initial=0.0) > REAL_RTOL * max(1.0, np.max(np.abs(D), initial=0)):
            raise ComplexSystemError("the reduced model has a complex feed-through D")
        D = D.real
    return _pair_up(lam, Bf, Cf, Mf, D, kappa, sign, exact_pairs)


def _pair_up(lam, Bf, Cf, Mf, D, kappa, sign, exact_pairs) -> HalfModes:
    n = lam.shape[0]
    scale = np.maximum(1.0, np.abs(lam))
    if exact_pairs:
        is_real = lam.imag == 0
    else:
        is_real = np.abs(lam.imag) <= PAIR_RTOL * scale
    used = np.zeros(n, dtype=bool)
    members, partners = [], []
    pos = [i for i in range(n) if not is_real[i] and lam[i].imag > 0]
    neg = [i for i in range(n) if not is_real[i] and lam[i].imag < 0]
    if len(pos) != len(neg):
        raise ComplexSystemError(
            f"eigenvalues are not closed under conjugation ({len(pos)} with Im > 0, {len(neg)} with "
            "Im < 0): the reduced model is not real-output"
        )
    for i in pos:
        cand = [j for j in neg if not used[j]]
        d = np.abs(lam[cand] - lam[i].conj())
        j = cand[int(np.argmin(d))]
        if d.min() > PAIR_RTOL * scale[i]:
            raise ComplexSystemError(
                f"eigenvalue {lam[i]:.6g} has no conjugate partner (closest {lam[j]:.6g}); the "
                "reduced model is not real-output"
            )
        used[j] = True
        a, b = (i, j) if sign >= 0 else (j, i)
        members.append(a)
        partners.append(b)
    reals = [i for i in range(n) if is_real[i]]
    if Mf is not None and len(members) > 1:
        members, partners = _orient_for_quadratic(Mf, members, partners)

    normB = max(np.linalg.norm(Bf), 1e-300)
    normC = max(np.linalg.norm(Cf), 1e-300)
    alphas = []
    for a, b in zip(members, partners):
        ba, bb = Bf[a], Bf[b]
        nb = np.vdot(ba, ba).real
        if nb <= (1e-14 * normB) ** 2:
            alpha = 1.0 + 0j  # unreachable pair: any scaling; C check below decides nothing
        else:
            alpha = np.vdot(ba.conj(), bb) / nb  # least squares bb = alpha * conj(ba)
        if np.linalg.norm(bb - alpha * ba.conj()) > REAL_RTOL * normB:
            raise ComplexSystemError("conjugate modes have non-conjugate input rows: not real-output")
        if np.linalg.norm(alpha * Cf[:, b] - Cf[:, a].conj()) > REAL_RTOL * normC and nb > (
            1e-14 * normB
        ) ** 2:
            raise ComplexSystemError("conjugate modes have non-conjugate output columns: not real-output")
        alphas.append(alpha)
    phis = []
    for i in reals:
        bi = Bf[i]
        k = int(np.argmax(np.abs(bi))) if bi.size else 0
        phi = bi[k] / abs(bi[k]) if bi.size and abs(bi[k]) > 0 else 1.0 + 0j
        phis.append(phi)
        if np.linalg.norm((bi / phi).imag) > REAL_RTOL * normB or (
            np.linalg.norm((Cf[:, i] * phi).imag) > REAL_RTOL * normC
        ):
            raise ComplexSystemError("a real eigenvalue has complex residues: not real-output")

    members = np.array(members, dtype=int)
    reals_a = np.array(reals, dtype=int)
    phis = np.array(phis, dtype=np.complex128)
    lam_s = np.concatenate([lam[members], lam[reals_a].real.astype(np.complex128)])
    B_s = np.concatenate([Bf[members], (Bf[reals_a] / phis[:, None]).real.astype(np.complex128)])
    C_s = np.concatenate([Cf[:, members] * (2.0 / kappa),
                          (Cf[:, reals_a] * phis[None, :]).real.astype(np.complex128) / kappa],
                         axis=1)
    M_s = None
    if Mf is not None:
        M_s = _quadratic_half(Mf, members, np.array(partners, dtype=int), np.array(alphas),
                              reals_a, phis)
    hm = HalfModes(lam=lam_s, B=B_s, C=C_s, D=D, kappa=kappa, M=M_s)
    return _drop_dead(hm)


def _drop_dead(hm: HalfModes) -> HalfModes:
    """Remove modes that are (numerically) unreachable or unobservable; they do not affect the map.

    A mode with B row ~ 0 never leaves the zero state; one with C column and M row/column ~ 0 is never
    seen (relative threshold :data:`DEAD_RTOL`, e.g. the duplicated real eigenvalue of a realified
    real mode).
    """
    b = np.linalg.norm(hm.B, axis=1)
    c = np.linalg.norm(hm.C, axis=0)
    if hm.M is not None:
        c = c + np.sqrt(np.sum(np.abs(hm.M) ** 2, axis=(0, 1)))
    dead = (b <= DEAD_RTOL * max(b.max(initial=0), 1e-300)) | (
        c <= DEAD_RTOL * max(c.max(initial=0), 1e-300))
    if dead.any() and not dead.all():
        return hm.select(np.flatnonzero(~dead))
    return hm


def _orient_for_quadratic(Mf, members, partners):
    """Choose the stored member of each pair so that M has no s^T K s cross terms between pairs.

    Pairs i, j coupled only through same-side blocks (M_{a_i a_j} != 0) must keep the same orientation,
    pairs coupled only through opposite-side blocks (M_{a_i b_j} != 0) opposite ones; a 2-colouring of
    the coupling graph (LayoutError when none exists: not representable in a half-mode layout).
    """
    k = len(members)
    a, b = np.array(members), np.array(partners)
    mag = np.max(np.abs(Mf), axis=0)
    tol = REAL_RTOL * max(float(mag.max(initial=0.0)), 1e-300)
    same = mag[np.ix_(a, a)] > tol  # coupling that needs equal orientation
    opp = mag[np.ix_(a, b)] > tol  # coupling that needs opposite orientation
    flip = -np.ones(k, dtype=int)
    for start in range(k):
        if flip[start] >= 0:
            continue
        flip[start] = 0
        stack = [start]
        while stack:
            i = stack.pop()
            for j in range(k):
                if j == i:
                    continue
                if same[i, j] and opp[i, j]:
                    raise LayoutError(
                        "the reduced quadratic output couples two modes with both orientations; it "
                        "cannot be stored as s^H M s in a half-mode layout"
                    )
                if not (same[i, j] or opp[i, j]):
                    continue
                want = flip[i] if same[i, j] else 1 - flip[i]
                if flip[j] < 0:
                    flip[j] = want
                    stack.append(j)
                elif flip[j] != want:
                    raise LayoutError(
                        "the reduced quadratic output admits no consistent orientation of the "
                        "conjugate pairs; it cannot be stored as s^H M s in a half-mode layout"
                    )
    new_m = [int(b[i]) if flip[i] else int(a[i]) for i in range(k)]
    new_p = [int(a[i]) if flip[i] else int(b[i]) for i in range(k)]
    return new_m, new_p


def _quadratic_half(Mf, a, b, alpha, r, phi):
    r"""Stored quadratic output for full coordinates w_a = s_p, w_b = alpha conj(s_p), w_r = phi s_r.

    With s_r real, :math:`w^H M w = s^H \hat M s + 2\,\mathrm{Re}(s_p^H K \bar s_p)` where
    :math:`K = M_{ab}\,\mathrm{diag}(\alpha)`; the second term must vanish (K antisymmetric).
    """
    p = Mf.shape[0]
    npair, nr = a.size, r.size
    Dal = np.diag(alpha) if npair else np.zeros((0, 0))
    Dph = np.diag(phi) if nr else np.zeros((0, 0))
    Maa = Mf[:, a][:, :, a]
    Mbb = Mf[:, b][:, :, b]
    Mab = Mf[:, a][:, :, b]
    Mar = Mf[:, a][:, :, r]
    Mbr = Mf[:, b][:, :, r]
    Mrr = Mf[:, r][:, :, r]
    K = Mab @ Dal
    scale = max(np.max(np.abs(Mf), initial=0.0), 1e-300)
    if npair and np.max(np.abs(K + np.swapaxes(K, 1, 2)), initial=0.0) > REAL_RTOL * scale:
        raise LayoutError(
            "the reduced quadratic output couples each mode with its conjugate (terms s^T K s); it "
            "cannot be stored as s^H M s in a half-mode layout"
        )
    Pp = Maa + np.swapaxes(Dal.conj() @ Mbb @ Dal, 1, 2)
    G = Mar @ Dph + np.conj(Dal.conj() @ Mbr @ Dph)
    Rr = (Dph.conj() @ Mrr @ Dph).real
    Rr = (Rr + np.swapaxes(Rr, 1, 2)) / 2
    n = npair + nr
    M = np.zeros((p, n, n), np.complex128)
    M[:, :npair, :npair] = Pp
    M[:, :npair, npair:] = G
    M[:, npair:, :npair] = np.conj(np.swapaxes(G, 1, 2))
    M[:, npair:, npair:] = Rr
    return (M + np.conj(np.swapaxes(M, 1, 2))) / 2
