"""LAPACK routines callable from numba kernels (``nopython``, ``nogil``, cacheable).

The routines are SciPy's own LAPACK (``scipy.linalg.cython_lapack``). Each is registered once with
LLVM under a private symbol name and declared as a numba ``ExternalFunction``, so compiled kernels
link to it by name: they can be cached on disk (``cache=True``) and run without the GIL.

All arguments are passed by reference as ``voidptr`` (Fortran calling convention): pass
``array.ctypes`` for arrays and one-element arrays for scalars (``int32`` for integers, ``uint8``
holding the ASCII code for characters). Matrices are column-major for LAPACK: a C-contiguous
``(n, n)`` array is seen transposed, which is harmless for the symmetric matrices used here.

Bound routines (see the LAPACK documentation for their arguments):

``dpstrf(uplo, n, a, lda, piv, rank, tol, work, info)``
    pivoted Cholesky of a symmetric positive semidefinite matrix;
``dsytrd(uplo, n, a, lda, d, e, tau, work, lwork, info)``
    Householder tridiagonalisation of a symmetric matrix;
``dsterf(n, d, e, info)``
    all eigenvalues of a symmetric tridiagonal matrix (root-free QL/QR);
``dstebz(range, order, n, vl, vu, il, iu, abstol, d, e, m, nsplit, w, iblock, isplit, work, iwork, info)``
    selected eigenvalues of a symmetric tridiagonal matrix by bisection;
``dstein(n, d, e, m, w, iblock, isplit, z, ldz, work, iwork, ifail, info)``
    their eigenvectors by inverse iteration;
``dormtr(side, uplo, trans, m, n, a, lda, tau, c, ldc, work, lwork, info)``
    multiplication by the orthogonal factor of ``dsytrd``;
``dlahqr(wantt, wantz, n, ilo, ihi, h, ldh, wr, wi, iloz, ihiz, z, ldz, info)``
    double-shift QR iteration of a Hessenberg matrix to real Schur form (logicals as ``int32``).
"""

from __future__ import annotations

import llvmlite.binding as llvm
from numba import types
from numba.extending import get_cython_function_address

__all__ = ["dpstrf", "dsytrd", "dsterf", "dstebz", "dstein", "dormtr", "dlahqr"]

_NARGS = {"dpstrf": 9, "dsytrd": 10, "dsterf": 4, "dstebz": 18, "dstein": 13, "dormtr": 13, "dlahqr": 14}


def _bind(name: str) -> types.ExternalFunction:
    symbol = f"mor_lqo_lapack_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_lapack", name))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * _NARGS[name])))


dpstrf = _bind("dpstrf")
dsytrd = _bind("dsytrd")
dsterf = _bind("dsterf")
dstebz = _bind("dstebz")
dstein = _bind("dstein")
dormtr = _bind("dormtr")
dlahqr = _bind("dlahqr")
