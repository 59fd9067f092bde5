"""IRKA never fails where balanced truncation succeeds.

Model: the 1-D heat equation on (0, 1) (3-point Laplacian, n = 200, Dirichlet ends, boundary input,
point output at x = 2/3), discretised exactly with dt = 0.002. Its fast modes are numerically 0, so
naive cheap starts repeat shifts and make W^H V singular. Oracles: the first-order optimality
residuals of docs/theory.md §5, and the h2 error by an independent route (brute-force sums of the
impulse responses, which do not cancel like ||S||^2 + ||Ŝ||^2 - 2<S, Ŝ>), compared with BT's.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
from threadpoolctl import threadpool_limits

from mor_lqo import LQOSystem, balanced_truncation, h2_optimality_residuals, irka, tsia
from mor_lqo.errors import ConvergenceWarning, ProjectionBreakdownError, ShapeError


def heat_disc(n: int = 200, dt: float = 0.002) -> LQOSystem:
    h = 1.0 / (n + 1)
    L = (np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)) / h**2
    B = np.zeros((n, 1))
    B[0, 0] = 1.0 / h**2  # Dirichlet boundary value u(t) at x = 0
    Ad = sla.expm(dt * L)
    Bd = np.linalg.solve(L, (Ad - np.eye(n)) @ B)  # zero-order hold
    C = np.eye(1, n, 2 * n // 3)
    return LQOSystem(Ad, Bd, C, dt=dt)


def impulse_error(sys: LQOSystem, rom: LQOSystem, steps: int = 3000) -> float:
    """Relative h2 error from sum_k |h_k - ĥ_k|^2 (D equal, tail below 1e-30: |λ|max^3000 ≈ 1e-26)."""
    x, xr = sys.B, rom.B
    err = ref = 0.0
    for _ in range(steps):
        y = sys.C @ x
        err += float(np.sum(np.abs(y - rom.C @ xr) ** 2))
        ref += float(np.sum(np.abs(y) ** 2))
        x, xr = sys.A @ x, rom.A @ xr
    return np.sqrt(err / ref)


HEAT = heat_disc()
# the modules (their names are shadowed by the functions re-exported from mor_lqo.reduction)
irka_mod = importlib.import_module("mor_lqo.reduction.irka")
tsia_mod = importlib.import_module("mor_lqo.reduction.tsia")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("r", [6, 8])
def test_irka_default_start_converges_on_discrete_heat(r, threads):
    with threadpool_limits(threads):
        res = irka(HEAT, r)
    assert res.converged and res.rom.is_stable() and not res.rom.is_complex
    # rounding level of the scaled first-order residuals (the same acceptance as at every fixed point)
    assert h2_optimality_residuals(HEAT, res.rom).max <= 1e-8
    bt = balanced_truncation(HEAT, r).rom
    # the errors are ~1e-6 .. 1e-8 relative; brute-force sums resolve them to ~1e-9 relative
    assert impulse_error(HEAT, res.rom) <= impulse_error(HEAT, bt) * (1 + 1e-6)


def test_breakdown_restarts_from_bt_and_says_so():
    # repeated shifts: the first projection's W^H V is exactly singular
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = irka(HEAT, 4, shifts=[1.5, 1.5, 3.0, 3.0])
    assert res.info["init"] == "shifts" and res.info["restarted_from"] == "bt"
    assert "linearly dependent" in res.info["restart_reason"]
    assert res.converged and h2_optimality_residuals(HEAT, res.rom).max <= 1e-8


def test_unrecoverable_breakdown_has_its_own_error(monkeypatch):
    def broken(*args, **kwargs):
        raise ShapeError("W^H V is numerically singular (forced)")

    monkeypatch.setattr(tsia_mod, "project", broken)
    # the restart from BT breaks down too: BT itself (iteration 0) is returned, with a warning
    with pytest.warns(ConvergenceWarning, match="broke down"):
        res = irka(HEAT, 4, init="logspace")
    assert res.info["restarted_from"] == "bt" and res.info["best_iteration"] == 0
    # a BT start that is unstable (rounding) cannot be recovered: ProjectionBreakdownError
    unstable = LQOSystem(np.diag([1.5, 0.1, 0.2, 0.3]), np.ones((4, 1)), np.ones((1, 4)), dt=HEAT.dt)
    monkeypatch.setattr(irka_mod, "initial_rom", lambda *a, **k: (unstable, "bt"))
    with pytest.raises(ProjectionBreakdownError, match="restart from bt failed"):
        irka(HEAT, 4, init="logspace")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("r", [6, 8])
def test_tsia_converges_on_discrete_heat(r, threads):
    # TSIA starts from a stable ROM (BT), which is always a candidate: it never fails here either
    with threadpool_limits(threads):
        res = tsia(HEAT, r)
    assert res.converged and h2_optimality_residuals(HEAT, res.rom).max <= 1e-8
    assert impulse_error(HEAT, res.rom) <= impulse_error(HEAT, balanced_truncation(HEAT, r).rom) * (1 + 1e-6)


def test_unstable_bt_start_restarts_from_logspace_not_unstable_error(monkeypatch):
    # a stable system whose BT start lost stability (forced): never UnstableSystemError
    unstable = LQOSystem(np.diag([1.5, 0.1, 0.2, 0.3]), np.ones((4, 1)), np.ones((1, 4)), dt=HEAT.dt)
    monkeypatch.setattr(irka_mod, "initial_rom", lambda *a, **k: (unstable, "bt"))
    res = irka(HEAT, 4, init="bt")
    assert res.info["init"] == "bt" and res.info["restarted_from"] == "logspace"
    assert "unstable" in res.info["restart_reason"]
    assert res.converged and h2_optimality_residuals(HEAT, res.rom).max <= 1e-8
