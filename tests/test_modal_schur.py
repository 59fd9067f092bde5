"""Modal truncation of defective / nearly defective state matrices (Schur-based cluster form).

Oracles: the reported h2 error against independent routes — brute-force sums of the impulse
responses of full model and ROM (discrete) and a dense Lyapunov solve (scipy) of the explicitly
stacked error system (continuous); bounded ROM data; the eigenvector route on a well-conditioned
system is unchanged (``info["form"] == "modal"``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

from mor_lqo import LQOSystem, modal_truncation
from mor_lqo.errors import IllConditionedError, OrderError
from mor_lqo.reduction.modal_schur import clusters, schur_split


def jordan_system(disc: bool, seed: int = 0) -> LQOSystem:
    """Jordan blocks of sizes 4 and 3 plus two simple poles, in a random orthogonal basis."""
    def block(k, lam, off):
        return lam * np.eye(k) + off * np.eye(k, k=1)
    if disc:
        A = sla.block_diag(block(4, 0.5, 0.5), block(3, 0.2, 0.5), np.diag([0.9, -0.3]))
    else:
        A = sla.block_diag(block(4, -1.0, 1.0), block(3, -5.0, 1.0), np.diag([-0.1, -20.0]))
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((9, 9)))[0]
    return LQOSystem(Q @ A @ Q.T, Q @ rng.standard_normal((9, 2)), rng.standard_normal((2, 9)) @ Q.T,
                     dt=1.0 if disc else 0.0)


def true_error(sys: LQOSystem, rom: LQOSystem) -> float:
    if sys.is_discrete:  # |lambda| <= 0.9 and Jordan size 4: terms below 1e-40 after 1500 steps
        x, xr, e = sys.B, rom.B, 0.0
        for _ in range(1500):
            e += float(np.sum((sys.C @ x - rom.C @ xr) ** 2))
            x, xr = sys.A @ x, rom.A @ xr
        return np.sqrt(e)
    Ae = sla.block_diag(sys.A, rom.A)
    Be = np.vstack([sys.B, rom.B])
    Ce = np.hstack([sys.C, -rom.C])
    P = sla.solve_continuous_lyapunov(Ae, -Be @ Be.T)
    return float(np.sqrt(np.trace(Ce @ P @ Ce.T)))


@pytest.mark.parametrize("disc", [False, True], ids=["cont", "disc"])
@pytest.mark.parametrize("r", [1, 2, 5, 6])
def test_jordan_blocks_true_error_and_bounded_rom(disc, r):
    sys = jordan_system(disc)
    res = modal_truncation(sys, r)
    assert res.info["form"] == "schur" and res.info["eigenvector_cond"] > 1e8
    assert res.rom.order == r and res.rom.is_stable() and not res.rom.is_complex
    assert np.max(np.abs(res.rom.B)) < 1e2 and res.info["decoupling_cond"] < 1e8
    # errors are O(0.1 .. 3); both routes are backward stable: agreement to 1e-9 relative
    assert res.h2_error == pytest.approx(true_error(sys, res.rom), rel=1e-9)
    # a Jordan block is kept or dropped whole
    lam = np.linalg.eigvals(sys.A)
    kept = lam[res.info["kept"]]
    for centre in ((0.5, 0.2) if disc else (-1.0, -5.0)):
        n_in = np.sum(np.abs(kept - centre) < 1e-2)
        assert n_in in (0, 4 if centre in (0.5, -1.0) else 3)


def test_well_conditioned_dense_system_keeps_the_eigenvector_form():
    rng = np.random.default_rng(1)
    A = np.diag(-np.arange(1.0, 7.0)) + 0.1 * rng.standard_normal((6, 6))
    sys = LQOSystem(A, rng.standard_normal((6, 1)), rng.standard_normal((1, 6)))
    res = modal_truncation(sys, 3)
    assert res.info["form"] == "modal"
    assert res.h2_error == pytest.approx(true_error(sys, res.rom), rel=1e-9)


def test_clusters_link_close_and_conjugate_values():
    mu = np.array([1.0, 1.0 + 1e-5, 2.0 + 1j, 2.0 - 1j, 3.0])
    got = sorted(sorted(c.tolist()) for c in clusters(mu, real=True, delta=1e-3))
    assert got == [[0, 1], [2, 3], [4]]
    got = sorted(sorted(c.tolist()) for c in clusters(mu, real=False, delta=1e-3))
    assert got == [[0, 1], [2], [3], [4]]


def test_refusals_name_the_condition():
    sys = jordan_system(False)
    lam = np.linalg.eigvals(sys.A)
    # splitting a Jordan block cannot be decoupled: refused, with the condition number
    jb = np.argsort(np.abs(lam + 1.0))[:4]
    rest = np.setdiff1d(np.arange(9), jb[:2])
    with pytest.raises(IllConditionedError, match="condition number"):
        schur_split(sys, lam[jb[:2]], lam[rest])
    with pytest.raises(IllConditionedError, match="criterion"):
        modal_truncation(sys, 2, criterion="hinf")
    with pytest.raises(OrderError, match="clusters"):
        modal_truncation(sys, 8)


def test_lqo_jordan_error_from_explicit_error_system():
    """Quadratic outputs: ||S||^2 = tr(C P C^T) + sum_j tr(P M_j P M_j) (docs/theory.md §2) of the
    stacked error system [x; x̂], C_e = [C, -Ĉ], M_e = blkdiag(M_j, -M̂_j), with scipy's Lyapunov solver."""
    base = jordan_system(False, seed=4)
    rng = np.random.default_rng(4)
    M = rng.standard_normal((2, 9, 9))
    M = (M + M.transpose(0, 2, 1)) / 20
    sys = LQOSystem(base.A, base.B, base.C, M=M)
    for r in (2, 5):
        res = modal_truncation(sys, r)
        rom = res.rom
        assert res.info["form"] == "schur"
        Ae = sla.block_diag(sys.A, rom.A)
        Be = np.vstack([sys.B, rom.B])
        Ce = np.hstack([sys.C, -rom.C])
        Me = np.stack([sla.block_diag(M[j], -rom.M[j]) for j in range(2)])
        P = sla.solve_continuous_lyapunov(Ae, -Be @ Be.T)
        err2 = np.trace(Ce @ P @ Ce.T) + sum(np.trace(P @ Mj @ P @ Mj) for Mj in Me)
        assert res.h2_error == pytest.approx(np.sqrt(err2), rel=1e-9)
