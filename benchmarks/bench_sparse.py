"""Large sparse systems: mor_lqo.sparse against pyMOR (LR-ADI, BT, IRKA) and against the dense path.

2-D heat equation on the unit square, Dirichlet boundary, 5-point stencil on an N x N grid
(n = N^2; N = 316 gives n = 99,856), inputs: indicator functions of m strips in the lower half,
outputs: averages over p strips in the upper half. Prints times, accuracies and ratios
(pyMOR time / our time: > 1 means we are faster).

Usage::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_sparse [--N 316] [--mimo 4] [--r 20]
        [--pymor-irka-maxit 10] [--skip-pymor] [--dense-N 55]

Accuracy reference: our LR-ADI norm with tol = 1e-13. Our IRKA runs at most ``--irka-maxit`` sparse
iterations after the surrogate start (the start ROM is returned if they do not converge), with the
stopping tolerance of pyMOR's IRKAReductor (relative shift change 1e-4, ``--irka-tol``). ROM errors are evaluated for both ROMs with
mor_lqo.sparse.h2_error (error-system LR-ADI, tol 1e-12).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import mor_lqo
from mor_lqo.sparse import SparseLQOSystem, balanced_truncation, h2_error, h2_norm, irka
from mor_lqo.sparse.models import heat2d as heat2d_system


def heat2d(N: int, m: int = 1, p: int = 1):
    """(A, B, C) of :func:`mor_lqo.sparse.models.heat2d` (the peers take the matrices)."""
    sys_ = heat2d_system(N, m, p)
    return sys_.A, np.asarray(sys_.B), np.asarray(sys_.C)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def ours(A, B, C, r, irka_maxit, irka_tol):
    res = {}
    info = {}
    res["norm"], res["t_norm"] = timed(lambda: h2_norm(SparseLQOSystem(A, B, C), method="lowrank", info=info))
    res["norm_info"] = info
    bt, res["t_bt"] = timed(lambda: balanced_truncation(SparseLQOSystem(A, B, C), r, method="lowrank",
                                                        compute_error=False))
    res["bt"] = bt
    print(f"  (ours: norm {res['t_norm']:.2f} s, BT {res['t_bt']:.2f} s)", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ir, res["t_irka"] = timed(lambda: irka(SparseLQOSystem(A, B, C), r, method="lowrank", compute_error=False,
                                               maxit=irka_maxit, tol=irka_tol))
    res["irka"] = ir
    return res


def pymor_side(A, B, C, r, irka_maxit):
    from pymor.models.iosys import LTIModel
    from pymor.reductors.bt import BTReductor
    from pymor.reductors.h2 import IRKAReductor

    def fom():
        return LTIModel.from_matrices(A, B, C)

    res = {}
    res["norm"], res["t_norm"] = timed(lambda: fom().h2_norm())
    bt, res["t_bt"] = timed(lambda: BTReductor(fom()).reduce(r))
    res["bt"] = bt
    red = None

    def run_irka():
        nonlocal red
        red = IRKAReductor(fom())
        return red.reduce(r, maxit=irka_maxit)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ir, res["t_irka"] = timed(run_irka)
    res["irka"] = ir
    res["irka_iters"] = len(red.conv_crit) if red is not None and hasattr(red, "conv_crit") else None
    res["irka_conv"] = red.conv_crit[-1] if res["irka_iters"] else None
    return res


def as_lqo(pymor_rom):
    A, B, C, D, E = pymor_rom.to_matrices()
    if E is not None:
        A, B = np.linalg.solve(E, A), np.linalg.solve(E, B)
    return mor_lqo.LTISystem(A, B, C)


def case(name, N, m, p, r, args):
    A, B, C = heat2d(N, m, p)
    n = A.shape[0]
    print(f"\n=== {name}: 2-D heat, n = {n}, m = {m}, p = {p}, r = {r} ===", flush=True)
    ref = h2_norm(SparseLQOSystem(A, B, C), method="lowrank", tol=1e-13)
    o = ours(A, B, C, r, args.irka_maxit, args.irka_tol)
    ni = o["norm_info"]
    print(f"ours  h2 norm  {o['t_norm']:7.2f} s  rel.err vs ref {abs(o['norm'] - ref) / ref:.1e}  "
          f"(ADI steps {ni['iterations']}, LU {ni['factorizations']}, residual {ni['residual']:.1e})", flush=True)
    sysr = SparseLQOSystem(A, B, C)
    e_bt = h2_error(sysr, o["bt"].rom, relative=True)
    e_ir = h2_error(sysr, o["irka"].rom, relative=True)
    print(f"ours  BT r={r}   {o['t_bt']:7.2f} s  rel. h2 error {e_bt:.4e}", flush=True)
    print(f"ours  IRKA r={r} {o['t_irka']:7.2f} s  rel. h2 error {e_ir:.4e}  (sparse iterations "
          f"{o['irka'].iterations}, converged {o['irka'].converged}, init {o['irka'].info['init']}, "
          f"surrogate {o['irka'].info['time_init']:.1f} s, sparse iterations {o['irka'].info['time_iterations']:.1f} s)",
          flush=True)
    if args.skip_pymor:
        return
    q = pymor_side(A, B, C, r, args.pymor_irka_maxit)
    pe_bt = h2_error(sysr, as_lqo(q["bt"]), relative=True)
    pe_ir = h2_error(sysr, as_lqo(q["irka"]), relative=True)
    print(f"pyMOR h2 norm  {q['t_norm']:7.2f} s  rel.err vs ref {abs(q['norm'] - ref) / ref:.1e}   "
          f"ratio pyMOR/ours {q['t_norm'] / o['t_norm']:.2f}x", flush=True)
    print(f"pyMOR BT r={r}   {q['t_bt']:7.2f} s  rel. h2 error {pe_bt:.4e}   ratio {q['t_bt'] / o['t_bt']:.2f}x",
          flush=True)
    print(f"pyMOR IRKA r={r} {q['t_irka']:7.2f} s  rel. h2 error {pe_ir:.4e}   ratio {q['t_irka'] / o['t_irka']:.2f}x "
          f"(iterations {q['irka_iters']} of max {args.pymor_irka_maxit}, last conv_crit {q['irka_conv']})",
          flush=True)


def dense_case(N, r):
    A, B, C = heat2d(N)
    s = SparseLQOSystem(A, B, C)
    print(f"\n=== dense vs low-rank: 2-D heat, n = {s.n}, SISO ===", flush=True)
    d = s.to_dense()
    nd, td = timed(lambda: mor_lqo.h2_norm(d))
    nl, tl = timed(lambda: h2_norm(SparseLQOSystem(A, B, C), method="lowrank"))
    print(f"h2 norm: dense {td:.2f} s, low-rank {tl:.2f} s (ratio {td / tl:.1f}x), rel. diff {abs(nd - nl) / nd:.1e}")
    bd, tbd = timed(lambda: mor_lqo.balanced_truncation(d, r))
    bl, tbl = timed(lambda: balanced_truncation(SparseLQOSystem(A, B, C), r, method="lowrank"))
    print(f"BT r={r}: dense {tbd:.2f} s, low-rank {tbl:.2f} s; rel. errors {bd.relative_error:.6e} / "
          f"{bl.h2_error / bl.h2_norm:.6e}; ROM difference {mor_lqo.h2_error(bd.rom, bl.rom) / nd:.1e}", flush=True)


def lqo_case(nx_dense: int, nx_large: int, r: int):
    """AdvecDiff LQO: low-rank LQO-BT / LQO-TSIA against the dense path (n = nx_dense), and at n = nx_large."""
    from mor_lqo.sparse import h2_optimality_residuals, irka, tsia
    from mor_lqo.sparse.models import advecdiff_lqo

    if nx_dense:
        s = advecdiff_lqo(nx_dense)
        d = mor_lqo.LQOSystem(s.A.toarray(), s.B, s.C, M=s.M_dense())
        print(f"\n=== AdvecDiff LQO, n = {nx_dense}: dense vs low-rank, r = {r} ===", flush=True)
        nd, tnd = timed(lambda: mor_lqo.h2_norm(d))
        nl, tnl = timed(lambda: h2_norm(advecdiff_lqo(nx_dense), method="lowrank"))
        print(f"LQO h2 norm: dense {tnd:.2f} s, low-rank {tnl:.2f} s, rel. diff {abs(nd - nl) / nd:.1e}", flush=True)
        bd, tbd = timed(lambda: mor_lqo.balanced_truncation(d, r))
        bl, tbl = timed(lambda: balanced_truncation(advecdiff_lqo(nx_dense), r, method="lowrank"))
        print(f"LQO-BT: dense {tbd:.2f} s, low-rank {tbl:.2f} s; rel. errors {bd.relative_error:.10e} / "
              f"{bl.h2_error / bl.h2_norm:.10e}; ROM difference {mor_lqo.h2_error(bd.rom, bl.rom) / nd:.1e}",
              flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            td_, ttd = timed(lambda: mor_lqo.tsia(d, r))
            tl_, ttl = timed(lambda: tsia(advecdiff_lqo(nx_dense), r, method="lowrank"))
        print(f"LQO-TSIA (= LQO-IRKA fixed points): dense {ttd:.2f} s (converged {td_.converged}), low-rank "
              f"{ttl:.2f} s (converged {tl_.converged}, sparse iterations {tl_.iterations}); rel. errors "
              f"{td_.relative_error:.10e} / {tl_.h2_error / tl_.h2_norm:.10e}; ROM difference "
              f"{mor_lqo.h2_error(td_.rom, tl_.rom) / nd:.1e}", flush=True)
    if nx_large:
        print(f"\n=== AdvecDiff LQO, n = {nx_large}: low-rank only, r = {r} ===", flush=True)
        info = {}
        nl, tnl = timed(lambda: h2_norm(advecdiff_lqo(nx_large), method="lowrank", info=info))
        print(f"LQO h2 norm {nl:.10g}: {tnl:.2f} s (ADI steps {info['iterations']}, residual {info['residual']:.1e})")
        bl, tbl = timed(lambda: balanced_truncation(advecdiff_lqo(nx_large), r, method="lowrank"))
        print(f"LQO-BT: {tbl:.2f} s, rel. error {bl.h2_error / bl.h2_norm:.6e}, factor ranks {bl.info['ranks']}, "
              f"residuals {bl.info['residual_P']:.1e} / {bl.info['residual_Q']:.1e}", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tl_, ttl = timed(lambda: tsia(advecdiff_lqo(nx_large), r, method="lowrank"))
        print(f"LQO-TSIA: {ttl:.2f} s, rel. error {tl_.h2_error / tl_.h2_norm:.10e}, converged {tl_.converged} "
              f"(sparse iterations {tl_.iterations}, last change {tl_.history[-1] if tl_.history else 0:.1e}); "
              f"first-order residual {h2_optimality_residuals(advecdiff_lqo(nx_large), tl_.rom).max:.1e}",
              flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            il_, til = timed(lambda: irka(advecdiff_lqo(nx_large), r, method="lowrank", tol=1e-8))
        print(f"LQO-IRKA (tol 1e-8): {til:.2f} s (surrogate {il_.info['time_init']:.2f} s), rel. error "
              f"{il_.h2_error / il_.h2_norm:.10e}, converged {il_.converged} (sparse iterations {il_.iterations}, "
              f"changes {', '.join(f'{c:.1e}' for c in il_.history)}); first-order residual "
              f"{h2_optimality_residuals(advecdiff_lqo(nx_large), il_.rom).max:.1e}", flush=True)


def main():
    import logging

    try:
        from pymor.core.logger import set_log_levels

        set_log_levels({"pymor": "WARN"})
    except ImportError:  # pragma: no cover
        pass
    logging.getLogger("pymor").setLevel(logging.WARNING)
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, default=316)
    ap.add_argument("--mimo", type=int, default=4)
    ap.add_argument("--r", type=int, default=20)
    ap.add_argument("--pymor-irka-maxit", type=int, default=10)
    ap.add_argument("--irka-maxit", type=int, default=3)
    ap.add_argument("--irka-tol", type=float, default=1e-4, help="relative shift change (pyMOR's default tol)")
    ap.add_argument("--skip-pymor", action="store_true")
    ap.add_argument("--skip-mimo", action="store_true")
    ap.add_argument("--skip-siso", action="store_true")
    ap.add_argument("--skip-lqo", action="store_true")
    ap.add_argument("--dense-N", type=int, default=55)
    ap.add_argument("--dense-r", type=int, default=10)
    ap.add_argument("--lqo-dense-n", type=int, default=3000)
    ap.add_argument("--lqo-n", type=int, default=10000)
    ap.add_argument("--lqo-r", type=int, default=10)
    ap.add_argument("--only-lqo", action="store_true")
    args = ap.parse_args()
    if args.only_lqo:
        lqo_case(args.lqo_dense_n, args.lqo_n, args.lqo_r)
        return
    if args.dense_N:
        dense_case(args.dense_N, args.dense_r)
    if not args.skip_siso:
        case("SISO", args.N, 1, 1, args.r, args)
    if not args.skip_mimo:
        case("MIMO", args.N, args.mimo, args.mimo, args.r, args)
    if not args.skip_lqo:
        lqo_case(args.lqo_dense_n, args.lqo_n, args.lqo_r)


if __name__ == "__main__":
    main()
