r"""Mamba / Mamba2 mixers (``mamba_ssm``, ``transformers`` ``Mamba*ForCausalLM``): **not LTI**.

The state matrices depend on the input (:math:`\Delta_t`, :math:`B_t = W_B x_t`, :math:`C_t = W_C x_t`), so
there is no transfer function, Gramian or impulse response; the blocks are reported with
``lti=False`` and no systems. The only structure-preserving reduction is **exact state-index pruning**
(docs/adapters.md, "Reduction"): keep the states ``idx`` (N' of N) and slice

* Mamba1 (``A_log (d_inner, N)``, ``x_proj.weight (R + 2N, d_inner)`` rows ``[dt | B | C]``):
  ``A_log[:, idx]`` and ``x_proj.weight`` rows ``[0:R] ∪ (R + idx) ∪ (R + N + idx)``;
* Mamba2 (``A_log (nheads,)``, ``in_proj.weight`` rows ``[z | x | B (G N) | C (G N) | dt]``, ``conv1d``
  channels ``[x | B | C]``): ``in_proj`` rows ``2 d_inner + g N + idx`` (B) and
  ``2 d_inner + G N + g N + idx`` (C) per group g (after ``2 d_mlp`` leading rows when present),
  ``conv1d.weight/bias`` channels ``d_inner + g N + idx`` and ``d_inner + G N + g N + idx``;
  ``A_log``, ``D``, ``dt_bias`` and ``norm`` unchanged.

Pruning is exact for the states kept: the pruned model equals the original with the dropped states
removed (identical outputs when the dropped states are inert, e.g. zero C rows). The indices should be
chosen from data; pass them explicitly (``order={block_name: indices}`` with ``method="index"``). With
an integer order a data-free heuristic ranks the states (Mamba1: :math:`\|W_{B,n}\|\|W_{C,n}\|` times the
mean time constant :math:`\langle e^{-\mathrm{A\_log}_{:,n}}\rangle`; Mamba2: summed
:math:`\|W_{B,g,n}\|\|W_{C,g,n}\|`) — a heuristic only. Load into the same class with
``d_state``/``state_size`` = N'.

Settings: ``n_groups`` (Mamba2) must be given: the shapes fix only the product G·N, so a guess would
misread the state size (HF's default is 8 groups, mamba_ssm's 1); extraction refuses without it.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import LayoutError, OrderError
from ._common import f64, need, shape_error, to_numpy
from .block import Block

MULTI = True
KAPPA = 1.0
SIGN = 0
DEFAULTS = {"mamba": {}, "mamba2": {"n_groups": None}}


def find(keys, arch: str) -> list[str]:
    ks = set(keys)
    out = []
    for k in keys:
        if not k.endswith("A_log"):
            continue
        p = k[: -len("A_log")]
        if p and p[-1] != ".":
            continue
        if arch == "mamba" and p + "x_proj.weight" in ks and p + "dt_proj.weight" in ks:
            out.append(p)
        elif arch == "mamba2" and p + "dt_bias" in ks and p + "in_proj.weight" in ks:
            out.append(p)
    return out


def extract(sd, prefix: str, arch: str, **settings) -> Block:
    note = ("Mamba is input dependent (LTV): no transfer function or impulse response; only exact "
            "state-index pruning is offered")
    if arch == "mamba":
        v = need(sd, prefix, ("A_log", "D", "x_proj.weight", "dt_proj.weight", "in_proj.weight",
                              "out_proj.weight", "conv1d.weight"), arch)
        A_log = f64(v["A_log"])
        if A_log.ndim != 2:
            raise shape_error(arch, prefix, f"A_log {A_log.shape} must be (d_inner, N)")
        d_inner, N = A_log.shape
        R = np.shape(v["dt_proj.weight"])[1]
        xp = np.shape(v["x_proj.weight"])
        if xp != (R + 2 * N, d_inner):
            raise shape_error(arch, prefix, f"x_proj.weight {xp} must be (R + 2N, d_inner) = "
                              f"{(R + 2 * N, d_inner)}")
        keys = [prefix + "A_log", prefix + "x_proj.weight"]
        meta = {"N": N, "R": R, "d_inner": d_inner, "stored": N}
    else:
        v = need(sd, prefix, ("A_log", "D", "dt_bias", "in_proj.weight", "conv1d.weight",
                              "out_proj.weight"), arch)
        G = settings.get("n_groups")
        if G is None:
            raise LayoutError(f"{prefix or '<root>'}: Mamba2 blocks need the setting n_groups (the model config's "
                              "n_groups; transformers' default is 8, mamba_ssm's 1): the state dict fixes only "
                              "n_groups * d_state; pass n_groups=...")
        if isinstance(G, bool) or not isinstance(G, numbers.Integral) or G < 1:
            raise LayoutError(f"n_groups must be a positive integer, got {G!r}")
        G = int(G)
        nheads = np.shape(v["A_log"])[0]
        d_inner = np.shape(v["out_proj.weight"])[1]
        conv_ch = np.shape(v["conv1d.weight"])[0]
        rows = np.shape(v["in_proj.weight"])[0]
        if (conv_ch - d_inner) % (2 * G) or conv_ch <= d_inner:
            raise shape_error(arch, prefix, f"conv1d channels {conv_ch} != d_inner {d_inner} + 2 G N "
                              f"with n_groups = {G}")
        N = (conv_ch - d_inner) // (2 * G)
        extra = rows - (2 * d_inner + 2 * G * N + nheads)
        if extra < 0 or extra % 2:
            raise shape_error(arch, prefix, f"in_proj rows {rows} != 2 d_mlp + 2 d_inner + 2 G N + "
                              f"nheads (d_inner {d_inner}, G {G}, N {N}, nheads {nheads})")
        keys = [prefix + "in_proj.weight", prefix + "conv1d.weight"]
        for opt in ("in_proj.bias", "conv1d.bias"):
            if prefix + opt in sd:
                keys.append(prefix + opt)
        meta = {"N": N, "G": G, "d_inner": d_inner, "d_mlp": extra // 2, "nheads": nheads,
                "stored": N}
    meta["arrays"] = {k: sd[k] for k in keys}
    return Block(prefix, arch, [], m=d_inner, p=d_inner, keys=keys, settings=settings, meta=meta,
                 lti=False, notes=[note])


def _rows_mamba1(meta, idx):
    R, N = meta["R"], meta["N"]
    return np.concatenate([np.arange(R), R + idx, R + N + idx])


def _channels_mamba2(meta, idx, base):
    N, G = meta["N"], meta["G"]
    b = [base + g * N + idx for g in range(G)]
    c = [base + G * N + g * N + idx for g in range(G)]
    return np.concatenate(b + c)


def readout_rows(block: Block, n: int) -> dict[str, np.ndarray]:
    """Leaf name -> rows (dim 0) that carry state ``n``'s read-out :math:`C_n` in every group.

    Zeroing them removes the state's contribution to the output exactly as pruning it does (a diagonal
    state is read only through its own C entry; Mamba2's C passes a causal conv and SiLU, which map the
    zeroed channel, bias included, to 0). Used by data-aware selections that evaluate candidates on the
    unpruned module."""
    m = block.meta
    N = m["N"]
    if not 0 <= n < N:
        raise OrderError(f"{block.name}: state index {n} outside [0, {N})")
    if block.arch == "mamba":
        return {"x_proj.weight": np.array([m["R"] + N + n])}
    G, d_inner = m["G"], m["d_inner"]
    rows = 2 * m["d_mlp"] + 2 * d_inner + G * N + np.arange(G) * N + n
    ch = d_inner + G * N + np.arange(G) * N + n
    out = {"in_proj.weight": rows, "conv1d.weight": ch}
    for leaf, sel in (("in_proj.bias", rows), ("conv1d.bias", ch)):
        if block.name + leaf in m["arrays"]:
            out[leaf] = sel
    return out


def _scores(block: Block) -> np.ndarray:
    m = block.meta
    arr = {k[len(block.name):]: f64(to_numpy(v)) for k, v in m["arrays"].items()}
    N = m["N"]
    if block.arch == "mamba":
        R = m["R"]
        W = arr["x_proj.weight"]
        wb = np.linalg.norm(W[R:R + N], axis=1)
        wc = np.linalg.norm(W[R + N:], axis=1)
        tau = np.mean(np.exp(-arr["A_log"]), axis=0)
        return wb * wc * tau
    G, d_inner, d_mlp = m["G"], m["d_inner"], m["d_mlp"]
    W = arr["in_proj.weight"]
    base = 2 * d_mlp + 2 * d_inner
    s = np.zeros(N)
    for g in range(G):
        wb = np.linalg.norm(W[base + g * N: base + (g + 1) * N], axis=1)
        wc = np.linalg.norm(W[base + G * N + g * N: base + G * N + (g + 1) * N], axis=1)
        s += wb * wc
    return s


def reduce_block(block: Block, r, method, horizon=None):
    """Exact state-index pruning (``method="index"``); ``r`` an int (heuristic) or explicit indices."""
    p = block.name
    if method != "index":
        raise LayoutError(
            f"{p}: {block.arch} is input dependent (not LTI); reductions such as {method!r} do not "
            "apply. Use method='index' (exact state-index pruning) with order=N' or "
            "order={block_name: indices}"
        )
    N = block.meta["N"]
    if isinstance(r, numbers.Integral) and not isinstance(r, bool):
        if not 1 <= r:
            raise OrderError(f"{p}: the number of kept states must be >= 1, got {r}")
        idx = np.sort(np.argsort(-_scores(block), kind="stable")[: min(int(r), N)])
        how = "heuristic (data-free) ranking"
    else:
        idx = np.asarray(r)
        if idx.dtype.kind not in "iu" or idx.ndim != 1 or idx.size == 0 or len(set(idx.tolist())) != idx.size \
                or idx.min() < 0 or idx.max() >= N:
            raise OrderError(f"{p}: state indices must be distinct integers in [0, {N}), got {r!r}")
        idx = np.sort(idx)
        how = "given indices"
    m = block.meta
    arr = {k[len(p):]: np.asarray(to_numpy(v), dtype=np.float64) for k, v in m["arrays"].items()}
    new = {}
    if block.arch == "mamba":
        new[p + "A_log"] = arr["A_log"][:, idx]
        new[p + "x_proj.weight"] = arr["x_proj.weight"][_rows_mamba1(m, idx)]
    else:
        d_inner, d_mlp, G, N = m["d_inner"], m["d_mlp"], m["G"], m["N"]
        base = 2 * d_mlp + 2 * d_inner
        rows = np.concatenate([np.arange(base), _channels_mamba2(m, idx, base),
                               np.arange(base + 2 * G * N, base + 2 * G * N + m["nheads"])])
        ch = np.concatenate([np.arange(d_inner), _channels_mamba2(m, idx, d_inner)])
        for leaf, sel in (("in_proj.weight", rows), ("in_proj.bias", rows),
                          ("conv1d.weight", ch), ("conv1d.bias", ch)):
            if leaf in arr:
                new[p + leaf] = arr[leaf][sel]
    extra = {"selected": idx.tolist(), "selection": how, "order_after": int(idx.size),
             "stored_after": int(idx.size), "lti": False}
    return new, [], {"d_state": int(idx.size), "state_size": int(idx.size)}, extra
