"""A-posteriori estimate of the low-rank h2 norm's deficit (dual-weighted residual, mor_lqo.sparse.estimate).

Oracle: the dense h2 norm of ``to_dense()`` (Bartels–Stewart, independent of LR-ADI). The estimate is a
first-order identity, so at deficits well above the dense rounding (1e-13) it must match the true
deficit closely; measured within 0.01-6 % on these models.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mor_lqo
from mor_lqo.errors import NumericalAccuracyError
from mor_lqo.sparse import SparseLQOSystem, h2_norm
from mor_lqo.sparse.estimate import norm_deficit_estimate
from mor_lqo.sparse.gramians import controllability_factor
from mor_lqo.sparse.models import advecdiff_lqo

from .models import advdiff


def _discrete(**kw):
    """Explicit Euler E x_k = (E + tau A) x_{k-1} + B u_k of the test model, |lambda| < 1."""
    c = advdiff(196, **kw)
    tau = 1.5 / np.max(np.abs(np.linalg.eigvals(c.to_dense().A)))
    E = c.E if c.E is not None else sp.identity(c.n, format="csc")
    return SparseLQOSystem((E + tau * c.A).tocsc(), c.B, c.C, c.M, E=c.E, dt=0.1)


CASES = {
    "advecdiff-lqo": lambda: advecdiff_lqo(300),
    "lti": lambda: advdiff(289),
    "lqo-E": lambda: advdiff(289, lqo=True, with_E=True),
    "lqo-complex": lambda: advdiff(289, lqo=True, complex_=True),
    "discrete-lqo": lambda: _discrete(lqo=True),
    "discrete-lqo-E": lambda: _discrete(lqo=True, with_E=True),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("tol", [1e-5, 1e-8])
def test_estimate_matches_the_true_deficit(name, tol):
    s = CASES[name]()
    exact = mor_lqo.h2_norm(s.to_dense()) ** 2
    fac = controllability_factor(s, tol=tol)
    Z = fac.Z
    computed = np.linalg.norm(np.asarray(s.C) @ Z) ** 2
    if s.M is not None:
        computed += sum(np.linalg.norm(Z.conj().T @ (Mj @ Z)) ** 2 for Mj in s.M)
    deficit = exact - computed
    assert abs(deficit) > 1e-11 * exact  # well above the dense oracle's rounding
    assert norm_deficit_estimate(s, fac) == pytest.approx(deficit, rel=0.1)


def test_norm_tightens_the_tolerance_until_the_estimate_meets_the_accuracy():
    """From a loose tol = 1e-6 the squared norm is off by ~1e-6 on AdvecDiff (non-normal); with the
    default accuracy the tolerance is tightened and the norm agrees with the dense one to 1e-10."""
    s = advecdiff_lqo(300)
    exact = mor_lqo.h2_norm(s.to_dense())
    info = {}
    loose = h2_norm(s, method="lowrank", tol=1e-6, accuracy=None)
    assert abs(loose - exact) > 1e-8 * exact
    got = h2_norm(s, method="lowrank", tol=1e-6, info=info)
    assert info["tol"] < 1e-6 and info["error_estimate"] <= 1e-10
    assert got == pytest.approx(exact, rel=1e-10)


def test_unreachable_accuracy_raises():
    with pytest.raises(NumericalAccuracyError, match="estimated relative deficit"):
        h2_norm(advdiff(289, lqo=True), method="lowrank", accuracy=1e-30)


@pytest.mark.slow
def test_lqo_bt_default_tolerances_match_the_dense_lqo_bt_on_advecdiff_3000():
    """Non-normal AdvecDiff, n = 3000 (dense reference ~50 s): with the former default tolerances
    (1e-10 / 1e-11) the low-rank ROM was 3.3e-7 away from the dense one; now 2.1e-9."""
    from mor_lqo.sparse import balanced_truncation

    s = advecdiff_lqo(3000)
    ref = mor_lqo.balanced_truncation(s.to_dense(), 10).rom
    got = balanced_truncation(s, 10, method="lowrank", compute_error=False).rom
    assert mor_lqo.h2_error(got, ref) <= 1e-8 * mor_lqo.h2_norm(ref)
