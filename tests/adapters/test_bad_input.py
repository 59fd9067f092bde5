"""Inconsistent shapes, partial layouts, odd orders, bad orders, unstable write-backs."""

from __future__ import annotations

import numpy as np
import pytest

from mor_lqo.adapters import extract, reduce_state_dict
from mor_lqo.errors import LayoutError, OrderError, ShapeError
from mor_lqo.systems import LQOSystem


def lru_jax(rng, H=3, N=4, p="l.seq."):
    return {p + "nu_log": np.log(-np.log(rng.uniform(0.5, 0.9, N))),
            p + "theta_log": np.log(rng.uniform(0.1, 6, N)), p + "gamma_log": np.zeros(N),
            p + "B_re": rng.standard_normal((N, H)), p + "B_im": rng.standard_normal((N, H)),
            p + "C_re": rng.standard_normal((H, N)), p + "C_im": rng.standard_normal((H, N)),
            p + "D": np.ones(H)}


def s5_jax(rng, H=3, P=4, p="l.seq."):
    return {p + "Lambda_re": -rng.uniform(0.1, 1, P), p + "Lambda_im": rng.uniform(-3, 3, P),
            p + "B": rng.standard_normal((P, H, 2)), p + "C": rng.standard_normal((H, P, 2)),
            p + "D": np.ones(H), p + "log_step": np.full((P, 1), -2.0)}


def test_inconsistent_shapes(rng):
    sd = lru_jax(rng)
    sd["l.seq.C_re"] = np.ones((3, 5))
    sd["l.seq.C_im"] = np.ones((3, 5))
    with pytest.raises(LayoutError, match="inconsistent lru_jax shapes"):
        extract(sd)
    sd = s5_jax(rng)
    sd["l.seq.log_step"] = np.zeros((5, 1))
    with pytest.raises(LayoutError, match="inconsistent s5_jax shapes"):
        extract(sd)
    sd = s5_jax(rng)
    sd["l.seq.B"] = np.ones((4, 3, 3))  # not a view_as_real layout
    with pytest.raises(LayoutError, match="view_as_real"):
        extract(sd)


def test_partial_layouts(rng):
    sd = lru_jax(rng)
    del sd["l.seq.gamma_log"]
    with pytest.raises(LayoutError, match=r"partial lru_jax layout at 'l.seq.'.*gamma_log"):
        extract(sd)
    sd = s5_jax(rng)
    del sd["l.seq.C"]
    with pytest.raises(LayoutError, match="partial s5_jax layout"):
        extract(sd)


def test_bad_orders(rng):
    sd = lru_jax(rng)
    for bad in (0, -2, 2.5, True, "4"):
        with pytest.raises(OrderError):
            reduce_state_dict(sd, order=bad)
    with pytest.raises(OrderError, match="even"):
        reduce_state_dict(sd, order=3)
    # a dict order only touches the listed blocks
    new, rep = reduce_state_dict(sd, order={"other.": 2})
    assert rep == [] and all(new[k] is sd[k] for k in sd)


def test_unstable_or_unrepresentable_rom_is_refused(rng):
    sd = s5_jax(rng)

    def unstable(system, r):
        return LQOSystem(np.diag([1.2, 0.5]), np.ones((2, 3)), np.ones((3, 2)), D=system.D.real,
                         dt=system.dt)

    with pytest.raises(LayoutError, match=r"\|mu\| >= 1"):
        reduce_state_dict(sd, order=4, method=unstable)  # two real poles: two stored modes, order 4 allows them
    with pytest.raises(OrderError, match="stored modes"):
        reduce_state_dict(sd, order=2, method=unstable)  # order 2 allows one stored mode: never over budget

    def wrong_shape(system, r):
        return LQOSystem(np.diag([0.5]), np.ones((1, 2)), np.ones((3, 1)), dt=system.dt)

    with pytest.raises(ShapeError, match=r"\(m, p\)"):
        reduce_state_dict(sd, order=2, method=wrong_shape)

    def new_d(system, r):
        return LQOSystem(np.diag([0.5]), np.ones((1, 3)), np.ones((3, 1)), D=np.eye(3) * 7,
                         dt=system.dt)

    with pytest.raises(LayoutError, match="feed-through"):
        reduce_state_dict(sd, order=2, method=new_d)


def test_inputs_not_modified_numpy(rng):
    sd = s5_jax(rng)
    before = {k: v.copy() for k, v in sd.items()}
    new, _ = reduce_state_dict(sd, order=4)
    for k in sd:
        np.testing.assert_array_equal(sd[k], before[k])
        assert new[k].dtype == sd[k].dtype
