"""Random state dicts of the reference Deep-SSM models (S4D and LQO layouts) for the tests."""

from __future__ import annotations

import numpy as np

__all__ = ["s4d_sd", "lqo_sd", "truncate_s4d", "truncate_lqo"]


def _io_params(rng, H, d_in, n_out):
    """Encoder and decoder of a random reference model (float32 like trained checkpoints)."""
    f = np.float32
    return {
        "encoder.weight": rng.standard_normal((H, d_in)).astype(f),
        "encoder.bias": rng.standard_normal(H).astype(f),
        "decoder.weight": rng.standard_normal((n_out, H)).astype(f),
        "decoder.bias": rng.standard_normal(n_out).astype(f),
    }


def s4d_sd(rng, H=6, M=(5, 4), d_in=1, n_out=5, decay=None):
    f = np.float32
    sd = _io_params(rng, H, d_in, n_out)
    for i, m in enumerate(M):
        p = f"s4_layers.{i}."
        C = rng.standard_normal((H, m, 2))
        if decay is not None:
            C *= (decay ** np.arange(m))[None, :, None]
        sd[p + "D"] = rng.standard_normal(H).astype(f)
        sd[p + "kernel.C"] = C.astype(f)
        sd[p + "kernel.log_dt"] = rng.uniform(np.log(1e-3), np.log(0.3), H).astype(f)
        sd[p + "kernel.log_A_real"] = rng.uniform(-2, 1, (H, m)).astype(f)
        sd[p + "kernel.A_imag"] = rng.uniform(-10, 10, (H, m)).astype(f)
        sd[p + "output_linear.0.weight"] = (rng.standard_normal((2 * H, H, 1)) / np.sqrt(H)).astype(f)
        sd[p + "output_linear.0.bias"] = rng.standard_normal(2 * H).astype(f)
        sd[f"norms.{i}.weight"] = (1 + 0.1 * rng.standard_normal(H)).astype(f)
        sd[f"norms.{i}.bias"] = (0.1 * rng.standard_normal(H)).astype(f)
    return sd


def lqo_sd(rng, H=5, P=(6, 4), R=(2, 1), d_in=1, n_out=5):
    f = np.float32
    sd = _io_params(rng, H, d_in, n_out)
    for i, (p_, r_) in enumerate(zip(P, R)):
        p = f"layers.{i}.ssm."
        sd[p + "log_A_real"] = rng.uniform(-2, 1, p_).astype(f)
        sd[p + "A_imag"] = rng.uniform(-10, 10, p_).astype(f)
        sd[p + "log_dt"] = rng.uniform(np.log(1e-2), np.log(0.5), 1).astype(f)
        sd[p + "B"] = rng.standard_normal((p_, H, 2)).astype(f)
        sd[p + "C"] = rng.standard_normal((H, p_, 2)).astype(f)
        sd[p + "U"] = (0.5 * rng.standard_normal((H, r_, p_, 2))).astype(f)
        sd[p + "D"] = rng.standard_normal(H).astype(f)
        q = f"layers.{i}."
        sd[q + "out.weight"] = (rng.standard_normal((H, H)) / np.sqrt(H)).astype(f)
        sd[q + "out.bias"] = rng.standard_normal(H).astype(f)
        sd[q + "norm.weight"] = (1 + 0.1 * rng.standard_normal(H)).astype(f)
        sd[q + "norm.bias"] = (0.1 * rng.standard_normal(H)).astype(f)
    return sd


def truncate_s4d(sd, keep, perturb=0.0, rng=None):
    """Keep the first keep[i] modes of layer i (and optionally perturb the kept C)."""
    out = dict(sd)
    for i, k in enumerate(keep):
        p = f"s4_layers.{i}.kernel."
        for n in ("C", "log_A_real", "A_imag"):
            out[p + n] = sd[p + n][:, :k].copy()
        if perturb:
            out[p + "C"] = (out[p + "C"] * (1 + perturb * rng.standard_normal(out[p + "C"].shape))).astype(np.float32)
    return out


def truncate_lqo(sd, keep, perturb=0.0, rng=None):
    out = dict(sd)
    for i, k in enumerate(keep):
        p = f"layers.{i}.ssm."
        for n in ("log_A_real", "A_imag"):
            out[p + n] = sd[p + n][:k].copy()
        out[p + "B"] = sd[p + "B"][:k].copy()
        out[p + "C"] = sd[p + "C"][:, :k].copy()
        out[p + "U"] = sd[p + "U"][:, :, :k].copy()
        if perturb:
            for n in ("C", "U"):
                out[p + n] = (out[p + n] * (1 + perturb * rng.standard_normal(out[p + n].shape))).astype(np.float32)
    return out
