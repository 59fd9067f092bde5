"""Accuracy and cost of the square-root Gramian factors and of cancellation-free h2 errors, side by side
with the peers (python-control ``hsvd``, slycot ``ab13bd``) in one run.

    python -m benchmarks.bench_numerics            # n = 7 non-normal HSVs, h2 errors 1e-3..1e-12, BT n = 200, 1000
    python -m benchmarks.bench_numerics --quick    # smaller

Complex systems: HSV accuracy of the complex non-normal family (n = 5) for the complex Hammarling solver,
the former real-representation route (SB03OD on [[Re A, -Im A], [Im A, Re A]]) and the formed Gramians,
and the time of both Hammarling routes for random complex systems (n = 50 ... 500).

Prints, per case, our error against an exact or 60-digit reference, the peer's, both times and the ratio
(peer time / ours). Timings: minimum of k repeats, one BLAS thread recommended (OPENBLAS_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import mor_lqo as ml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def best_of(fn, k: int):
    best, out = np.inf, None
    for _ in range(k):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def hsv_table(count: int) -> None:
    import control
    from test_hsv_nonnormal import nonnormal, reference_hsv

    print(f"{'non-normal HSVs (n = 7)':<28} {'scale':>6} {'ours max err/s1':>16} {'control.hsvd':>14}")
    for scale in (1e2, 1e3):
        ours_err, ctl_err = [], []
        for seed in range(count):
            A, B, C = nonnormal(seed, scale)
            ref = reference_hsv(A, B, C)
            ours_err.append(np.max(np.abs(ml.hankel_singular_values(ml.LQOSystem(A, B, C)) - ref)) / ref[0])
            with np.errstate(invalid="ignore"):
                ctl = np.sort(control.hsvd(control.ss(A, B, C, 0)))[::-1]
            ctl_err.append(np.max(np.abs(ctl - ref)) / ref[0])
        print(f"{'':<28} {scale:>6.0e} {max(ours_err):>16.1e} {np.nanmax(ctl_err):>14.1e}"
              f"  ({np.sum(np.isnan(ctl_err))} of {count} NaN in control.hsvd)")


def _realrep_factors(sys):
    """The former complex route: SB03OD on the real representation R(X) = [[Re X, -Im X], [Im X, Re X]]."""
    from mor_lqo.gramian_factors import _realification, hammarling_factor

    n, disc = sys.n, sys.is_discrete
    Ar, Br, Cr = (_realification(X) for X in (sys.A, sys.B, sys.C))
    ZPr = hammarling_factor(Ar.T, Br.T, disc).T
    ZQr = hammarling_factor(Ar, Cr, disc).T
    return (ZPr[:n] + 1j * ZPr[n:]) / np.sqrt(2.0), (ZQr[:n] + 1j * ZQr[n:]) / np.sqrt(2.0)


def complex_hsv_table(count: int) -> None:
    import warnings

    from test_hsv_nonnormal import nonnormal_complex, reference_hsv_complex

    from mor_lqo.gramian_factors import _hammarling_factors
    from mor_lqo.reduction.balanced import gramian_factor

    def err(ZP, ZQ, ref):
        s = np.linalg.svd(ZP.conj().T @ ZQ, compute_uv=False)[: ref.size]
        s = np.pad(s, (0, ref.size - s.size))  # the formed factors may have dropped a rank
        return np.max(np.abs(s - ref)) / ref[0]

    print(f"{'complex non-normal HSVs (n=5)':<30} {'scale':>6} {'complex Ham.':>13} {'real repr.':>11} "
          f"{'formed':>9}   (max err / sigma_1 over {count} systems)")
    for discrete in (False, True):
        for scale in (1e2, 1e3):
            e = np.zeros((count, 3))
            for seed in range(count):
                A, B, C = nonnormal_complex(seed, scale, discrete)
                ref = reference_hsv_complex(A, B, C, discrete=discrete)
                sys = ml.LQOSystem(A, B, C, **({"dt": 1.0, "convention": "standard"} if discrete else {}))
                with warnings.catch_warnings():  # SB03OD on R(A) may warn "not stable" at scale 1e3
                    warnings.simplefilter("ignore")
                    rr = _realrep_factors(sys)
                formed = (gramian_factor(ml.controllability_gramian(sys)), gramian_factor(ml.observability_gramian(sys)))
                e[seed] = [err(*_hammarling_factors(sys), ref), err(*rr, ref), err(*formed, ref)]
            print(f"{'discrete' if discrete else 'continuous':<30} {scale:>6.0e} {e[:, 0].max():>13.1e} "
                  f"{e[:, 1].max():>11.1e} {e[:, 2].max():>9.1e}")


def complex_time_table(sizes, k: int) -> None:
    from mor_lqo.gramian_factors import _hammarling_factors

    print(f"{'complex Hammarling, both':<30} {'n':>6} {'complex s':>10} {'real repr. s':>13} {'ratio':>7}")
    rng = np.random.default_rng(1)
    _hammarling_factors(ml.LQOSystem(-np.eye(2) + 1j * np.eye(2), np.ones((2, 1)) + 0j, np.ones((1, 2)) + 0j))
    for n in sizes:
        A = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / np.sqrt(2 * n) - 1.5 * np.eye(n)
        B = rng.standard_normal((n, 2)) + 1j * rng.standard_normal((n, 2))
        C = rng.standard_normal((2, n)) + 1j * rng.standard_normal((2, n))
        # fresh systems: the Schur form is part of the time of both routes
        t_c, _ = best_of(lambda A=A, B=B, C=C: _hammarling_factors(ml.LQOSystem(A, B, C)), k)
        t_r, _ = best_of(lambda A=A, B=B, C=C: _realrep_factors(ml.LQOSystem(A, B, C)), k)
        print(f"{'':<30} {n:>6} {t_c:>10.3f} {t_r:>13.3f} {t_r / t_c:>6.1f}x")


def error_table(k: int) -> None:
    from slycot import ab13bd
    from test_h2_error_accuracy import _pair

    print(f"{'h2 error, true relative':<28} {'ours rel.err':>12} {'ab13bd rel.err':>15} {'ours ms':>9} "
          f"{'ab13bd ms':>10} {'ratio':>7}")
    for rel in (1e-3, 1e-6, 1e-9, 1e-12):
        _, rom, pn = _pair(np.random.default_rng(7), 40, 4, False, False, 1.0)
        full, rom, exact = _pair(np.random.default_rng(7), 40, 4, False, False, rel * ml.h2_norm(rom) / pn)
        def ours_fn(full=full, rom=rom):  # fresh system objects: nothing cached between repeats
            return ml.h2_error(ml.LQOSystem(full.A, full.B, full.C), ml.LQOSystem(rom.A, rom.B, rom.C))

        t_o, ours = best_of(ours_fn, k)
        n1, n2 = full.n, rom.n
        Ae = np.block([[full.A, np.zeros((n1, n2))], [np.zeros((n2, n1)), rom.A]])
        Be, Ce = np.vstack([full.B, rom.B]), np.hstack([full.C, -rom.C])
        t_r, ref = best_of(lambda Ae=Ae, Be=Be, Ce=Ce: ab13bd("C", "H", Ae.shape[0], 2, 2, Ae.copy(), Be.copy(),
                                                             Ce.copy(), np.zeros((2, 2))), k)
        print(f"{rel:<28.0e} {abs(ours - exact) / exact:>12.1e} {abs(ref - exact) / exact:>15.1e} "
              f"{t_o * 1e3:>9.2f} {t_r * 1e3:>10.2f} {t_r / t_o:>6.2f}x")


def bt_table(sizes, k: int) -> None:
    import control

    print(f"{'BT r = 20, random stable':<28} {'n':>5} {'ours s':>8} {'balred s':>9} {'ratio':>7}  note")
    rng = np.random.default_rng(0)
    for n in sizes:
        A = rng.standard_normal((n, n)) / np.sqrt(n) - 1.5 * np.eye(n)
        B, C = rng.standard_normal((n, 2)), rng.standard_normal((2, n))
        t_o, res = best_of(lambda A=A, B=B, C=C: ml.balanced_truncation(ml.LQOSystem(A, B, C), 20), k)
        t_r, _ = best_of(lambda A=A, B=B, C=C: control.balred(control.ss(A, B, C, 0), 20), k)
        note = "refined error (relative < 1e-4)" if res.relative_error < 1e-4 else ""
        print(f"{'':<28} {n:>5} {t_o:>8.3f} {t_r:>9.3f} {t_r / t_o:>6.2f}x  rel.err {res.relative_error:.1e} {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    hsv_table(5 if args.quick else 20)
    complex_hsv_table(5 if args.quick else 20)
    complex_time_table([50, 200] if args.quick else [50, 200, 500], 3 if args.quick else 5)
    error_table(2 if args.quick else 5)
    bt_table([200] if args.quick else [200, 1000], 1 if args.quick else 2)


if __name__ == "__main__":
    main()
