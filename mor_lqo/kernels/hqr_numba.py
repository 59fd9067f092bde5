r"""Real Schur form of a Hessenberg matrix with the transformations applied to a few rows only.

LAPACK's ``dlahqr`` (double-shift QR) applies each similarity :math:`H \to G^T H G` also to the rows
``iloz..ihiz`` of ``Z`` (:math:`Z \to Z G`) and touches no other row of ``Z``. Passing a ``Z`` of only
k rows (``ihiz = k``, below the documented ``ihiz >= ihi``) accumulates the orthogonal factor on
those k rows: :math:`W U` for a (k, n) matrix W, without the (n, n) factor U. The caller checks this
behaviour once against the full accumulation (:func:`mor_lqo.equations.thin_schur`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .lapack_numba import dlahqr


@njit(cache=True)
def hqr_thin(H, Z, wr, wi):  # pragma: no cover - compiled
    """Overwrite Fortran-ordered H (n, n, Hessenberg) by its real Schur form T and Z (k, n) by Z U;
    eigenvalues into wr, wi. Returns LAPACK's info (> 0: the QR iteration failed)."""
    n = H.shape[0]
    k = Z.shape[0]
    one = np.ones(1, np.int32)
    nn = np.full(1, n, np.int32)
    kk = np.full(1, max(k, 1), np.int32)
    info = np.zeros(1, np.int32)
    dlahqr(one.ctypes, one.ctypes, nn.ctypes, one.ctypes, nn.ctypes, H.ctypes, nn.ctypes, wr.ctypes,
           wi.ctypes, one.ctypes, kk.ctypes, Z.ctypes, kk.ctypes, info.ctypes)
    return info[0]
