r"""Numba kernels for balanced truncation of many small conjugate-pair channels.

A channel is ``LQOSystem.conjugate_pairs(lam, B, C, scale=kappa)`` with n stored modes; it is reduced
in its exact real realisation of order ``d = 2n`` (state ``[Re x; Im x]``). Reference
implementations for the tests: :func:`mor_lqo.reduction.batch._realified_gramians` (Gramians) and
:func:`mor_lqo.balanced_truncation` (the reduced models).

:func:`real_gramians_into` builds the real Gramians from the closed Cauchy forms (docs/theory.md §8.4).

:func:`bt_pairs_one_factor` is the fast square-root BT used by :func:`mor_lqo.reduce_batch`: one
pivoted Cholesky factor :math:`P = Z Z^T` (LAPACK ``dpstrf``), the symmetric
:math:`G = Z^T Q Z = H H^T` with :math:`H = Z^T Z_Q` (so :math:`\lambda_i(G) = \sigma_i^2`, the squared
Hankel singular values), one Householder tridiagonalisation of G (``dsytrd``) that serves both all
eigenvalues (``dsterf``) and the r dominant eigenvectors :math:`U_r` (inverse iteration on the
tridiagonal matrix, ``dstein``, at the ``dsterf`` eigenvalues — ``dstebz`` locates them only if the
matrix splits —, back-transformed by ``dormtr``), then

.. math::

    V = Z U_r \Sigma_r^{-1/2}, \qquad W = Q V \Sigma_r^{-1}, \qquad W^T V = I,

which are the square-root BT bases (:math:`V = Z_P U_r\Sigma_r^{-1/2}`, :math:`W = Z_Q Y_r
\Sigma_r^{-1/2}` with :math:`H = U\Sigma Y^T`), and :math:`\hat A = (W^TV)^{-1} W^T A V`, etc.
Cost per channel: one Cholesky, two products and one tridiagonalisation of size d — about a third of
the two-factor method with a full SVD.

Accuracy: eigenvalues of G carry an absolute error of order :math:`\epsilon\sigma_1^2`, so a Hankel
singular value :math:`\sigma_k` is accurate to about :math:`\epsilon\sigma_1^2/\sigma_k` (relative
1e-8 at :math:`\sigma_k = 10^{-4}\sigma_1`, useless below :math:`10^{-8}\sigma_1`); the basis is
accurate while :math:`\sigma_r^2 - \sigma_{r+1}^2 \gg \epsilon\sigma_1^2`. Channels with
:math:`\sigma_r^2 \le` ``min_ratio`` :math:`\sigma_1^2`, a Cholesky rank below r, or any LAPACK
failure are flagged (``ok = False``) for the caller's two-factor SVD path.

Two-factor path (``mor_lqo.reduction.batch``, ``algorithm="two_factor"`` and the fallback):
:func:`gram_factors_two_factor` (both pivoted-Cholesky factors), the caller's batched SVD of
:math:`Z_P^T Z_Q`, then :func:`bt_project_two_factor`. Both paths share :func:`real_gramians_into`,
:func:`pivoted_cholesky` and :func:`project_channel`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .lapack_numba import dormtr, dpstrf, dstebz, dstein, dsterf, dsytrd

__all__ = ["real_gramians_into", "real_output_into", "output_energy", "pivoted_cholesky", "project_channel",
           "bt_pairs_one_factor", "gram_factors_two_factor", "bt_project_two_factor"]


@njit(cache=True, nogil=True)
def real_gramians_into(lam, B, C, kappa, discrete, Pr, Qr, Cr):  # pragma: no cover - compiled
    r"""Real Gramians and output matrix of one conjugate-pair channel, written into Pr, Qr (d, d), Cr (p, d).

    ``lam (n,)``, ``B (n, m)``, ``C (p, n)`` complex, ``kappa`` the output factor::

        K_ik = 1/(1 - lam_i conj(lam_k)),  Kt_ik = 1/(1 - lam_i lam_k)   (discrete)
        K_ik = -1/(lam_i + conj(lam_k)),   Kt_ik = -1/(lam_i + lam_k)    (continuous)
        P = (B B^H) o K,  Pt = (B B^T) o Kt,  Qh = (C^T conj C) o K,  Qt = (C^T C) o Kt
        Pr = 1/2 [[Re(P + Pt), Im(Pt - P)], [Im(Pt + P), Re(P - Pt)]]
        Qr = k^2/2 [[Re(Qh + Qt), Im(Qh - Qt)], [-Im(Qt + Qh), Re(Qh - Qt)]]
        Cr = kappa [Re C, -Im C]
    """
    n = lam.shape[0]
    m = B.shape[1]
    p = C.shape[0]
    k2 = kappa * kappa / 2
    for i in range(n):  # K is Hermitian, Kt symmetric, Pr and Qr symmetric: the pairs k >= i suffice
        li = lam[i]
        for k in range(i, n):
            lk = lam[k]
            if discrete:
                z = 1.0 - li * np.conj(lk)
                zt = 1.0 - li * lk
            else:
                z = -(li + np.conj(lk))
                zt = -(li + lk)
            a = z.real * z.real + z.imag * z.imag
            at = zt.real * zt.real + zt.imag * zt.imag
            K = complex(z.real / a, -z.imag / a)  # 1 / z
            Kt = complex(zt.real / at, -zt.imag / at)
            bb = 0j
            bt = 0j
            for q in range(m):
                bb += B[i, q] * np.conj(B[k, q])
                bt += B[i, q] * B[k, q]
            cc = 0j
            ct = 0j
            for q in range(p):
                cc += C[q, i] * np.conj(C[q, k])
                ct += C[q, i] * C[q, k]
            P = bb * K
            Pt = bt * Kt
            Qh = cc * K
            Qt = ct * Kt
            v = 0.5 * (P.real + Pt.real)
            Pr[i, k] = v
            Pr[k, i] = v
            v = 0.5 * (Pt.imag - P.imag)
            Pr[i, n + k] = v
            Pr[n + k, i] = v
            v = 0.5 * (Pt.imag + P.imag)
            Pr[n + i, k] = v
            Pr[k, n + i] = v
            v = 0.5 * (P.real - Pt.real)
            Pr[n + i, n + k] = v
            Pr[n + k, n + i] = v
            v = k2 * (Qh.real + Qt.real)
            Qr[i, k] = v
            Qr[k, i] = v
            v = k2 * (Qh.imag - Qt.imag)
            Qr[i, n + k] = v
            Qr[n + k, i] = v
            v = -k2 * (Qt.imag + Qh.imag)
            Qr[n + i, k] = v
            Qr[k, n + i] = v
            v = k2 * (Qh.real - Qt.real)
            Qr[n + i, n + k] = v
            Qr[n + k, n + i] = v
    real_output_into(C, kappa, Cr)


@njit(cache=True, nogil=True)
def real_output_into(C, kappa, Cr):  # pragma: no cover - compiled
    """Output matrix ``Cr = kappa [Re C, -Im C]`` (p, 2n) of the real realisation of a channel."""
    p, n = C.shape
    for q in range(p):
        for i in range(n):
            Cr[q, i] = kappa * C[q, i].real
            Cr[q, n + i] = -kappa * C[q, i].imag


@njit(cache=True, nogil=True)
def output_energy(Pr, Cr):  # pragma: no cover - compiled
    """tr(Cr Pr Cr^T): the squared h2 norm of the strictly proper channel."""
    p, d = Cr.shape
    acc = 0.0
    for q in range(p):
        for i in range(d):
            t = 0.0
            for k in range(d):
                t += Pr[i, k] * Cr[q, k]
            acc += Cr[q, i] * t
    return acc


@njit(cache=True, nogil=True)
def pivoted_cholesky(A, tol):  # pragma: no cover - compiled
    """Pivoted Cholesky factor Z (d, rank), Z Z^T = A, of a symmetric PSD matrix (LAPACK ``dpstrf``).

    A (d, d) C-contiguous is overwritten. ``tol < 0``: LAPACK's stopping rule (next pivot <= d eps
    max diag); otherwise stop at pivots <= tol. Returns a (d, 0) array if LAPACK reports an error."""
    d = A.shape[0]
    ch_l = np.array([76], np.uint8)  # 'L'
    nd = np.array([d], np.int32)
    piv = np.empty(d, np.int32)
    rank = np.zeros(1, np.int32)
    tl = np.array([tol])
    work = np.empty(2 * d)
    info = np.zeros(1, np.int32)
    dpstrf(ch_l.ctypes, nd.ctypes, A.ctypes, nd.ctypes, piv.ctypes, rank.ctypes, tl.ctypes, work.ctypes,
           info.ctypes)
    k = rank[0] if info[0] >= 0 else 0
    # column-major lower factor L (row-major view: A[j, i] = L[i, j]); Z[piv[i] - 1] = L[i, :k]
    Z = np.zeros((d, k))
    for i in range(d):
        row = piv[i] - 1
        for j in range(min(i + 1, k)):
            Z[row, j] = A[j, i]
    return Z


@njit(cache=True, nogil=True)
def project_channel(lam, B, V, W, Cr, Ah, Bh, Ch):  # pragma: no cover - compiled
    """Ah = (W^T V)^{-1} W^T A V, Bh = (W^T V)^{-1} W^T B_r, Ch = Cr V for A = [[Re L, -Im L], [Im L, Re L]]."""
    d, r = V.shape
    n = d // 2
    m = B.shape[1]
    AV = np.empty((d, r))
    Br = np.empty((d, m))
    for j in range(n):
        lr = lam[j].real
        li = lam[j].imag
        for i in range(r):
            AV[j, i] = lr * V[j, i] - li * V[n + j, i]
            AV[n + j, i] = li * V[j, i] + lr * V[n + j, i]
        for q in range(m):
            Br[j, q] = B[j, q].real
            Br[n + j, q] = B[j, q].imag
    Wt = np.ascontiguousarray(W.T)
    Em = Wt @ V
    Ah[:, :] = np.linalg.solve(Em, Wt @ AV)
    Bh[:, :] = np.linalg.solve(Em, Wt @ Br)
    Ch[:, :] = Cr @ V


@njit(cache=True, nogil=True)
def _projected_gramian(Z, Qr):  # pragma: no cover - compiled
    """G = Z^T Qr Z (k, k) for Z (d, k), symmetrised exactly (its eigenvalues are the squared HSVs)."""
    T = Qr @ Z
    G = np.ascontiguousarray(Z.T) @ T
    k = G.shape[0]
    for i in range(k):
        for j in range(i):
            g = 0.5 * (G[i, j] + G[j, i])
            G[i, j] = g
            G[j, i] = g
    return G


@njit(cache=True, nogil=True)
def _tridiagonal_eigenvalues(G, dd, ee, tau, dw, ew, work):  # pragma: no cover - compiled
    """Tridiagonalise G (k, k) in place (``dsytrd``: diagonal dd, off-diagonal ee, reflectors in G and
    tau) and write all its eigenvalues, ascending, into dw[:k] (``dsterf``). False on a LAPACK failure."""
    k = G.shape[0]
    ch_l = np.array([76], np.uint8)  # 'L'
    kk = np.array([k], np.int32)
    nlw = np.array([work.shape[0]], np.int32)
    info = np.zeros(1, np.int32)
    dsytrd(ch_l.ctypes, kk.ctypes, G.ctypes, kk.ctypes, dd.ctypes, ee.ctypes, tau.ctypes, work.ctypes,
           nlw.ctypes, info.ctypes)
    if info[0] != 0:
        return False
    dw[:k] = dd[:k]
    ew[:k] = ee[:k]
    dsterf(kk.ctypes, dw.ctypes, ew.ctypes, info.ctypes)
    return info[0] == 0


@njit(cache=True, nogil=True)
def _dominant_eigenvalues(k, r, dd, ee, dw, bisect, w, iblock, isplit, work, iwork):  # pragma: no cover
    """The r largest eigenvalues of the tridiagonal (dd, ee) of order k, ascending (as ``dstein`` wants
    them), in w[:r] with their blocks in iblock/isplit. They are known from ``dsterf`` (dw) when the
    matrix does not split; otherwise (or with ``bisect``) ``dstebz`` locates them. False on failure."""
    split = False
    for i in range(k - 1):
        if abs(ee[i]) <= 1e-15 * (abs(dd[i]) + abs(dd[i + 1])):
            split = True
            break
    if not (split or bisect):
        for j in range(r):
            w[j] = dw[k - r + j]
            iblock[j] = 1
        isplit[0] = k
        return True
    ch_i = np.array([73], np.uint8)  # 'I'
    ch_b = np.array([66], np.uint8)  # 'B'
    kk = np.array([k], np.int32)
    il = np.array([k - r + 1], np.int32)
    iu = np.array([k], np.int32)
    mfound = np.array([0], np.int32)
    nsplit = np.array([0], np.int32)
    info = np.zeros(1, np.int32)
    vlu = np.zeros(2)
    abstol = np.array([0.0])  # dstebz default
    dstebz(ch_i.ctypes, ch_b.ctypes, kk.ctypes, vlu[0:].ctypes, vlu[1:].ctypes, il.ctypes, iu.ctypes,
           abstol.ctypes, dd.ctypes, ee.ctypes, mfound.ctypes, nsplit.ctypes, w.ctypes, iblock.ctypes,
           isplit.ctypes, work.ctypes, iwork.ctypes, info.ctypes)
    return info[0] == 0 and mfound[0] == r


@njit(cache=True, nogil=True)
def _dominant_eigenvectors(G, tau, dd, ee, w, iblock, isplit, Zv, work, iwork):  # pragma: no cover
    """Eigenvectors of the tridiagonalised G (k, k) for the r eigenvalues w[:r]: inverse iteration on
    the tridiagonal matrix (``dstein``), back-transformed by the reflectors (``dormtr``). Zv (r, d) is
    column-major with ldz = d (Zv[j, :k] is eigenvector j). False on a LAPACK failure."""
    r, d = Zv.shape
    ch_l = np.array([76], np.uint8)  # 'L'
    ch_n = np.array([78], np.uint8)  # 'N'
    kk = np.array([G.shape[0]], np.int32)
    rr = np.array([r], np.int32)
    nd = np.array([d], np.int32)
    nlw = np.array([work.shape[0]], np.int32)
    ifail = np.empty(r, np.int32)
    info = np.zeros(1, np.int32)
    dstein(kk.ctypes, dd.ctypes, ee.ctypes, rr.ctypes, w.ctypes, iblock.ctypes, isplit.ctypes, Zv.ctypes,
           nd.ctypes, work.ctypes, iwork.ctypes, ifail.ctypes, info.ctypes)
    if info[0] != 0:
        return False
    dormtr(ch_l.ctypes, ch_l.ctypes, ch_n.ctypes, kk.ctypes, rr.ctypes, G.ctypes, kk.ctypes, tau.ctypes,
           Zv.ctypes, nd.ctypes, work.ctypes, nlw.ctypes, info.ctypes)
    return info[0] == 0


@njit(cache=True, nogil=True)
def _balancing_bases(Z, Qr, Zv, w):  # pragma: no cover - compiled
    """V = Z U_r Sigma_r^{-1/2} and W = Qr V Sigma_r^{-1} (d, r), U_r the eigenvectors Zv (r, d) of
    G = Z^T Qr Z for its eigenvalues w[:r] = sigma^2, ordered by decreasing sigma."""
    d, k = Z.shape
    r = Zv.shape[0]
    order = np.argsort(-w[:r])
    U = np.empty((k, r))
    for j in range(r):
        src = order[j]
        for i in range(k):
            U[i, j] = Zv[src, i]
    V = Z @ U
    for j in range(r):
        f = 1.0 / np.sqrt(np.sqrt(w[order[j]]))
        for i in range(d):
            V[i, j] *= f
    W = Qr @ V
    for j in range(r):
        f = 1.0 / np.sqrt(w[order[j]])
        for i in range(d):
            W[i, j] *= f
    return V, W


@njit(cache=True, nogil=True)
def bt_pairs_one_factor(lam, B, C, kappa, r, discrete, min_ratio, bisect=False):  # pragma: no cover - compiled
    """One-factor square-root BT of N conjugate-pair channels (module docstring).

    Parameters
    ----------
    lam : ndarray (N, n) complex
    B : ndarray (N, n, m) complex
    C : ndarray (N, p, n) complex
    kappa : ndarray (N,) float
    r : int
        Reduced real order, ``1 <= r < 2n``.
    discrete : bool
    min_ratio : float
        Channels with :math:`\\sigma_r^2 \\le` ``min_ratio`` :math:`\\sigma_1^2` are flagged.
    bisect : bool
        Locate the r largest eigenvalues of the tridiagonal matrix by bisection (``dstebz``) even
        when it does not split (for tests of that branch).

    Returns
    -------
    Ah (N, r, r), Bh (N, r, m), Ch (N, p, r), hsv (N, 2n) descending, norm2 (N,), ok (N,) bool
        Reduced real models (balanced coordinates), Hankel singular values, squared h2 norms
        ``tr(C P C^T)`` of the strictly proper channels, and False where the caller must use the
        two-factor path (the other outputs of that channel are then unspecified, except norm2).
    """
    N, n = lam.shape
    m = B.shape[2]
    p = C.shape[1]
    d = 2 * n
    Ah = np.zeros((N, r, r))
    Bh = np.zeros((N, r, m))
    Ch = np.zeros((N, p, r))
    hsv = np.zeros((N, d))
    norm2 = np.zeros(N)
    ok = np.zeros(N, np.bool_)
    Pr = np.empty((d, d))
    Qr = np.empty((d, d))
    Cr = np.empty((p, d))
    # LAPACK workspaces, reused by every channel
    work = np.empty(64 * d)
    iwork = np.empty(3 * d, np.int32)
    dd, ee, dw, ew, tau, w = np.empty(d), np.empty(d), np.empty(d), np.empty(d), np.empty(d), np.empty(d)
    iblock = np.empty(d, np.int32)
    isplit = np.empty(d, np.int32)
    Zv = np.empty((r, d))  # column-major (ldz = d): Zv[j] is eigenvector j
    for c in range(N):
        real_gramians_into(lam[c], B[c], C[c], kappa[c], discrete, Pr, Qr, Cr)
        norm2[c] = output_energy(Pr, Cr)
        Z = pivoted_cholesky(Pr, -1.0)  # LAPACK default tolerance d * eps * max diag
        k = Z.shape[1]
        if k < r:
            continue
        G = _projected_gramian(Z, Qr)
        if not _tridiagonal_eigenvalues(G, dd, ee, tau, dw, ew, work):
            continue
        top = dw[k - 1]
        if not top > 0.0:
            continue
        for i in range(k):
            hsv[c, i] = np.sqrt(max(dw[k - 1 - i], 0.0))
        if not dw[k - r] > min_ratio * top:
            continue
        if not _dominant_eigenvalues(k, r, dd, ee, dw, bisect, w, iblock, isplit, work, iwork):
            continue
        if not w[0] > 0.0:
            continue
        if not _dominant_eigenvectors(G, tau, dd, ee, w, iblock, isplit, Zv, work, iwork):
            continue
        V, W = _balancing_bases(Z, Qr, Zv, w)
        project_channel(lam[c], B[c], V, W, Cr, Ah[c], Bh[c], Ch[c])
        ok[c] = True
    return Ah, Bh, Ch, hsv, norm2, ok


# ------------------------------------------------------------------------------------- two-factor path
@njit(cache=True, nogil=True)
def gram_factors_two_factor(lam, B, C, kappa, discrete):  # pragma: no cover - compiled
    """Real Gramians of N channels, their pivoted-Cholesky factors (zero-padded to (N, 2n, 2n)), ranks
    (N, 2) and the squared norms tr(C_r P_r C_r^T). Pivoting stops at eps * max diag."""
    N, n = lam.shape
    p = C.shape[1]
    d = 2 * n
    ZP = np.zeros((N, d, d))
    ZQ = np.zeros((N, d, d))
    rank = np.zeros((N, 2), np.int64)
    norm2 = np.zeros(N)
    Pr = np.empty((d, d))
    Qr = np.empty((d, d))
    Cr = np.empty((p, d))
    eps = 2.220446049250313e-16
    for c in range(N):
        real_gramians_into(lam[c], B[c], C[c], kappa[c], discrete, Pr, Qr, Cr)
        norm2[c] = output_energy(Pr, Cr)
        for A, Zout, j in ((Pr, ZP[c], 0), (Qr, ZQ[c], 1)):
            dmax = 0.0
            for i in range(d):
                dmax = max(dmax, A[i, i])
            if not dmax > 0.0:
                continue
            Z = pivoted_cholesky(A, eps * dmax)
            Zout[:, : Z.shape[1]] = Z
            rank[c, j] = Z.shape[1]
    return ZP, ZQ, rank, norm2


@njit(cache=True, nogil=True)
def bt_project_two_factor(H, s, ZP, ZQ, lam, B, C, kappa, r):  # pragma: no cover - compiled
    """Square-root BT of each channel from H = Z_P^T Z_Q and its singular values s.

    The r dominant right singular vectors come from two steps of inverse iteration on
    G = H^T H with shifts s_i^2 (1 + 1e-10), orthonormalisation and a Rayleigh–Ritz step;
    V = Z_P U_r Sigma_r^{-1/2}, W = Z_Q Y_r Sigma_r^{-1/2}, then :func:`project_channel`."""
    N, d, _ = H.shape
    m = B.shape[2]
    p = C.shape[1]
    Ah = np.zeros((N, r, r))
    Bh = np.zeros((N, r, m))
    Ch = np.zeros((N, p, r))
    x0 = np.empty((r, d))  # distinct generic start vectors: repeated sigma_i still span their space
    for i in range(r):
        for j in range(d):
            x0[i, j] = 1.0 + 0.5 * np.sin(1.0 + 3.7 * j + 2.3 * i * (j + 1))
    Y = np.empty((d, r))
    Cr = np.empty((p, d))
    for c in range(N):
        Hc = H[c]
        G = Hc.T @ Hc
        for i in range(r):
            mu = s[c, i] * s[c, i] * (1.0 + 1e-10)
            Gs = G.copy()
            for j in range(d):
                Gs[j, j] -= mu
            x = x0[i].copy()
            for _ in range(2):
                x = np.linalg.solve(Gs, x)
                x /= np.linalg.norm(x)
            Y[:, i] = x
        Qy, _ = np.linalg.qr(Y)
        Qy = np.ascontiguousarray(Qy)
        Gr = np.ascontiguousarray(Qy.T) @ (G @ Qy)
        Gr = 0.5 * (Gr + Gr.T)
        w, E = np.linalg.eigh(Gr)
        Er = np.ascontiguousarray(E[:, ::-1])
        Yr = Qy @ Er
        Ur = Hc @ Yr
        V = ZP[c] @ Ur
        W = ZQ[c] @ Yr
        for i in range(r):
            si = s[c, i]
            f = 1.0 / np.sqrt(si)
            for j in range(d):
                V[j, i] *= f / si
                W[j, i] *= f
        real_output_into(C[c], kappa[c], Cr)
        project_channel(lam[c], B[c], V, W, Cr, Ah[c], Bh[c], Ch[c])
    return Ah, Bh, Ch
