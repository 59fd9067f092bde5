"""Structured lag weights (closed-form Stein kernels) and the Gram-form finite-horizon fit, against the dense
L x L route they replace."""

from __future__ import annotations

import numpy as np
import pytest

from mor_lqo.adapters.block import HalfModes
from mor_lqo.deep.compress import finite_horizon as fh
from mor_lqo.deep.compress import finite_horizon_gram as fg
from mor_lqo.deep.compress import fit_finite_horizon, lag_metric, lag_weights
from mor_lqo.deep.compress.lag_gram import Blocked, LagMetric, diag_kernels, moments, pair_kernels, powers
from mor_lqo.deep.compress.unit_modes import _siso_kernels
from mor_lqo.deep.compress.weights import _weighted_mode_scores


def _inputs(rng, B=3, L=64, H=4):
    return np.cumsum(rng.standard_normal((B, L, H)), axis=1) * 0.1 + rng.standard_normal((B, L, H))


def _poles(H, L):
    """Log-poles from slow (decay 1e-3 / L-scale) to fast, with a near-real one."""
    s = np.array([-1e-3 + 0.3j, -0.2 + 2.0j, -2e-3 + 1e-3j, -0.05 + 1.1j])
    return np.broadcast_to(s, (H, s.size)).copy()


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_metric_is_the_squared_lag_weights(rng):
    U = _inputs(rng)
    m = lag_metric(U, 1e-2)
    W = lag_weights(U, 1e-2)
    assert _rel(m.dense(), W @ W) < 1e-12
    assert _rel(m.sqrt(), W) < 1e-10
    x = rng.standard_normal((4, 64))
    assert _rel(m.apply(x), np.einsum("nij,nj->ni", m.dense(), x)) < 1e-12
    assert _rel(m[[1, 3]].dense(), m.dense()[[1, 3]]) == 0


def test_zero_channel_is_the_ridge(rng):
    U = _inputs(rng)
    U[:, :, 0] = 0.0
    M = lag_metric(U, 0.5).dense()[0]
    assert np.allclose(M, 0.5 * np.eye(U.shape[1]), atol=1e-15)


def test_powers_and_blocked_moments(rng):
    L = 50  # not a multiple of the block length
    s = _poles(3, L)
    V = np.exp(s[..., None] * np.arange(L))
    assert _rel(powers(s, L), V) < 1e-13
    coef = rng.standard_normal((3, L, 5))
    X0, X1 = moments(s, coef)
    assert _rel(X0, np.einsum("nkl,nlc->nkc", V, coef)) < 1e-13
    assert _rel(X1, np.einsum("nkl,nlc->nkc", V * np.arange(L), coef)) < 1e-13
    assert _rel(moments(s, Blocked(coef), deriv=False)[0], X0) == 0


def test_pair_kernels_match_the_dense_forms(rng):
    """<a^k, b^l>_M and the forms with the columns l a^l, for poles and conjugates, to 1e-10."""
    L = 64
    m = LagMetric.from_inputs(_inputs(rng, L=L), 1e-2)
    M = m.dense()
    s = _poles(m.N, L)
    X0, X1 = moments(s, m.coef())
    sb = np.concatenate([s, s.conj()], axis=1)
    Xb0, Xb1 = np.concatenate([X0, X0.conj()], axis=1), np.concatenate([X1, X1.conj()], axis=1)
    K = pair_kernels(s, X0, X1, sb, Xb0, Xb1, m.acf[:, 0])
    ll = np.arange(L)
    V, Vb = np.exp(s[..., None] * ll), np.exp(sb[..., None] * ll)
    for k, (a, b) in zip(K, [(V, Vb), (V * ll, Vb), (V, Vb * ll), (V * ll, Vb * ll)]):
        assert _rel(k, np.einsum("nil,nlm,njm->nij", a, M, b)) < 1e-10
    Kd, Kc = diag_kernels(s, X0, m.acf[:, 0])
    assert _rel(Kd, np.einsum("nil,nlm,nim->ni", V, M, V)) < 1e-10
    assert _rel(Kc, np.einsum("nil,nlm,nim->ni", V, M, V.conj())) < 1e-10


def _dense_parts(t, W, s, ridge):
    """Objective, residues and Kaufman J^T J, J^T r of the dense route (as in finite_horizon._lm)."""
    L = t.shape[1]
    k = s.shape[1]
    tw = fh._weighted(W, t)
    pw, Phi = fh._basis(s, L, W)
    c, r, f, U = fh._vp(Phi, tw, ridge)
    lp = np.arange(L)[None, :, None] * pw
    a, b = c[:, :k], c[:, k:]
    e = (-s.real)[:, None, :]
    dnu = -e * (lp.real * a[:, None, :] + lp.imag * b[:, None, :])
    dth = -lp.imag * a[:, None, :] + lp.real * b[:, None, :]
    Dm = fh._weighted(W, np.concatenate([dnu, dth], axis=2))
    J = -(Dm - np.einsum("nlk,nmk,nmj->nlj", U, U, Dm))
    return f, c, np.einsum("nli,nlj->nij", J, J), np.einsum("nlj,nl->nj", J, r)


def test_gram_evaluation_matches_the_dense_route(rng):
    L = 64
    m = LagMetric.from_inputs(_inputs(rng, L=L), 1e-2)
    t = rng.standard_normal((m.N, L)) * np.exp(-0.05 * np.arange(L))
    s = _poles(m.N, L)[:, [0, 1, 3]]
    c, f, JtJ, Jtr = fg.evaluate(fg.GramProblem(t, m), s, 1e-4)
    fd, cd, JtJd, Jtrd = _dense_parts(t, m.sqrt(), s, 1e-4)
    assert _rel(f, fd) < 1e-10
    assert _rel(c, cd) < 1e-9
    assert _rel(JtJ, JtJd) < 1e-8
    assert _rel(Jtr, Jtrd) < 1e-8


def test_gram_insertion_matches_the_dense_choice(rng):
    L = 64
    m = LagMetric.from_inputs(_inputs(rng, L=L, H=6), 1e-2)
    lam = np.exp(-rng.uniform(0.01, 0.3, (6, 5)) + 1j * rng.uniform(0, 3, (6, 5)))
    t = 2 * np.einsum("nk,nkl->nl", rng.standard_normal((6, 5)) + 0j, lam[:, :, None] ** np.arange(L)).real
    grid = fh._candidate_grid(L)
    s_rows = np.log(lam)
    s_cur = s_rows[:, :1] + 0.05
    W = m.sqrt()
    dense = fh._insert(fh._weighted(W, t), W, s_cur, fh._Candidates(grid, s_rows, W, *t.shape))
    prob = fg.GramProblem(t, m)
    gram = fg.insert(prob, s_cur, fg.Candidates(prob, grid, s_rows), 1e-7)
    assert np.allclose(gram, dense, atol=1e-12)


def test_gram_fit_matches_the_dense_fit(rng):
    """The whole fit (greedy path, sweep, LM) reaches the dense route's objective."""
    N, n, L, q = 8, 12, 64, 3
    lam = np.exp(-rng.uniform(0.005, 0.2, (N, n)) + 1j * rng.uniform(0, 3, (N, n)))
    c = rng.standard_normal((N, n)) + 1j * rng.standard_normal((N, n))
    t = 2 * np.einsum("nk,nkl->nl", c, lam[:, :, None] ** np.arange(L)).real
    m = LagMetric.from_inputs(_inputs(rng, L=L, H=N), 1e-2)
    assert m.structured()
    M = m.dense()

    def err(res):
        e = t - 2 * np.einsum("nk,nkl->nl", res[1], res[0][:, :, None] ** np.arange(L)).real
        return np.einsum("nl,nlm,nm->n", e, M, e) / np.einsum("nl,nlm,nm->n", t, M, t)

    eg, ed = err(fit_finite_horizon(t, q, W=m, init=lam)), err(fit_finite_horizon(t, q, W=m.sqrt(), init=lam))
    assert np.all(eg <= ed * (1 + 1e-4) + 1e-9)
    assert np.all(np.abs(fit_finite_horizon(t, q, W=m, init=lam)[0]) < 1)


def test_many_sequences_take_the_dense_route(rng):
    U = _inputs(rng, B=20, L=40, H=3)
    m = lag_metric(U, 1e-2)
    assert not m.structured()
    lam = np.exp(-rng.uniform(0.01, 0.3, (3, 6)) + 1j * rng.uniform(0, 3, (3, 6)))
    t = 2 * np.einsum("nk,nkl->nl", rng.standard_normal((3, 6)) + 0j, lam[:, :, None] ** np.arange(40)).real
    a, b = fit_finite_horizon(t, 2, W=m, init=lam), fit_finite_horizon(t, 2, W=m.sqrt(), init=lam)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_weighted_mode_scores_closed_form(rng):
    L = 48
    m = lag_metric(_inputs(rng, L=L, H=3), 1e-2)
    modes = []
    for h in range(3):
        lam = np.exp(-rng.uniform(0.01, 0.3, 4) + 1j * rng.uniform(0, 3, 4))
        if h == 1:
            lam[0] = np.exp(0.7j)  # on the unit circle: the closed form divides by zero there
        modes.append(HalfModes(lam=lam, B=rng.standard_normal((4, 1)) + 0j,
                               C=rng.standard_normal((1, 4)) + 1j * rng.standard_normal((1, 4)),
                               D=np.zeros((1, 1)), kappa=2.0))
    assert _rel(_weighted_mode_scores(modes, m, L), _weighted_mode_scores(modes, m.sqrt(), L)) < 1e-10


def test_siso_kernels_by_table_powers(rng):
    lam = np.exp(-rng.uniform(0.0, 0.3, 5) + 1j * rng.uniform(0, 3, 5))
    lam[2] = 0.0
    hm = HalfModes(lam=lam, B=np.ones((5, 1)) + 0j, C=rng.standard_normal((1, 5)) + 0j, D=np.zeros((1, 1)),
                   kappa=2.0)
    ref = 2.0 * np.einsum("k,kl->l", hm.C[0], np.power(lam[:, None], np.arange(30))).real
    assert _siso_kernels([hm], 30)[0] == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_pipeline_gram_route_matches_the_dense_route(monkeypatch):
    """The bundled S4D with 8 calibration sequences (L = 40 >= 4 x 9: the Gram route) compresses to the
    dense route's data-weighted errors and accuracy."""
    from mor_lqo.deep.compress import compress
    from mor_lqo.deep.data import load_bundled_model, load_test_split

    model = load_bundled_model("s4d")
    x, y = load_test_split()
    gram = compress(model, "h2", ratio="1/8", inputs=x[:8], progress=False, executor="serial")
    monkeypatch.setattr(LagMetric, "structured", lambda self: False)
    dense = compress(model, "h2", ratio="1/8", inputs=x[:8], progress=False, executor="serial")
    for a, b in zip(gram.layers, dense.layers):
        assert a["h2_error_L"] == pytest.approx(b["h2_error_L"], rel=0.05)
    xs, ys = x[:300], y[:300]
    assert gram.model.accuracy(xs, ys) >= dense.model.accuracy(xs, ys) - 0.01
