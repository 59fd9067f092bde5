"""Compress `transformers`' Mamba (and Mamba2) classifiers trained on MNIST-1D on the CPU at 1/2 ... 1/16.

    python -m benchmarks.upstream_mamba                       # train (or load) and sweep mamba, mamba2
    python -m benchmarks.upstream_mamba --families mamba --epochs 8

Each family: encoder Linear(1, 32) -> ``transformers.MambaModel`` / ``Mamba2Model`` (2 layers, fed by
``inputs_embeds``: its own pre-norm residual blocks and final RMSNorm) -> mean -> Linear(32, 10). Weights are
cached in ``benchmarks/results/upstream/<family>.pt`` and reused. Calibration: 256 training sequences;
accuracy: the 1000 test sequences.

Mamba is input dependent (not LTI), so ``mor_lqo.torch.compress`` has nothing to reduce: every ``modal`` /
``bt`` / ``h2`` cell is tried and its refusal recorded. The package's reduction for these mixers is exact
state-index pruning, ``mor_lqo.torch.prune_states(model, calibration, ratio, selection)``: ``heuristic``
ranks the states without data, ``data`` by greedy backward elimination on the mixers' recorded calibration
inputs (the state whose removal changes the mixer's output least goes first). Writes
``benchmarks/results/upstream_mamba.json`` and prints a markdown table per family.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.upstream_families import accuracy, load_data
from benchmarks.upstream_families import table as families_table

OUT = Path(__file__).resolve().parent / "results"
RATIOS = ("1/2", "1/4", "1/8", "1/16")
METHODS = ("modal", "bt", "h2")
SELECTIONS = ("heuristic", "data")  # mor_lqo.torch.prune_states: data-free ranking; greedy elimination
H, STATE, GROUPS = 32, {"mamba": 16, "mamba2": 64}, 2  # mamba: the slow sequential CPU path
EPOCHS = {"mamba": 10, "mamba2": 20}


def _config(family: str, state: int):
    import transformers

    if family == "mamba":
        return transformers.MambaConfig(vocab_size=2, hidden_size=H, state_size=state, num_hidden_layers=2,
                                        expand=2, conv_kernel=4)
    return transformers.Mamba2Config(vocab_size=2, hidden_size=H, state_size=state, num_heads=4, head_dim=16,
                                     expand=2, n_groups=GROUPS, num_hidden_layers=2, conv_kernel=4, chunk_size=8)


def build(family: str, state: int | None = None):
    import torch
    import transformers
    from torch import nn

    transformers.logging.set_verbosity_error()  # the CPU fallback warnings (no CUDA kernels) on every call
    cfg = _config(family, STATE[family] if state is None else state)
    body = transformers.MambaModel if family == "mamba" else transformers.Mamba2Model

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(1, H)
            self.backbone = body(cfg)
            self.decoder = nn.Linear(H, 10)

        def forward(self, x):
            z = self.backbone(inputs_embeds=self.encoder(x)).last_hidden_state
            return self.decoder(z.mean(1))

    torch.manual_seed(0)
    net = Net()
    del net.backbone.embeddings  # unused with inputs_embeds (keeps parameter counts honest)
    return net


def train(family: str, data, epochs: int):
    import torch

    path = OUT / "upstream" / f"{family}.pt"
    model = build(family)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model, None
    x, y = data["x"], data["y"]
    # AdamW lr 4e-3 with weight decay 0.01; the SSM tensors (A_log, D, dt) lr 1e-3 without; cosine schedule
    ssm = [p for n, p in model.named_parameters() if n.endswith(("A_log", ".D", "dt_bias", "dt_proj.bias"))]
    rest = [p for p in model.parameters() if all(p is not q for q in ssm)]
    opt = torch.optim.AdamW([{"params": rest, "lr": 4e-3, "weight_decay": 0.01},
                             {"params": ssm, "lr": 1e-3, "weight_decay": 0.0}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for ep in range(epochs):
        model.train()
        for idx in np.array_split(rng.permutation(len(x)), len(x) // 64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        sched.step()
        print(f"  {family} epoch {ep + 1} ({time.perf_counter() - t0:.0f} s): test "
              f"{accuracy(model, data['x_test'], data['y_test']):.1f} %", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model, time.perf_counter() - t0


def _count(m) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def sweep(family: str, model, data) -> list[dict]:
    import mor_lqo.torch as mt

    xc, xt, yt = data["x"][:256], data["x_test"], data["y_test"]
    before, p_before = accuracy(model, xt, yt), _count(model)
    rows = []
    for method in METHODS:  # the LTI methods: the package refuses input-dependent blocks
        for ratio in RATIOS:
            t0 = time.perf_counter()
            try:
                res = mt.compress(model, xc, ratio=ratio, method=method, executor="serial")
                rows.append({"family": family, "method": method, "ratio": ratio, "acc_before": before,
                             "acc_after": accuracy(res.module, xt, yt), "params_before": p_before,
                             "params_after": _count(res.module), "seconds": time.perf_counter() - t0})
            except Exception as exc:  # noqa: BLE001 - a refused cell is reported, not hidden
                rows.append({"family": family, "method": method, "ratio": ratio, "error": f"{type(exc).__name__}: "
                             f"{exc}"[:300]})
            print(f"  {family} {method} {ratio}: {rows[-1].get('acc_after', rows[-1].get('error'))}", flush=True)
    for sel in SELECTIONS:
        for ratio in RATIOS:
            t0 = time.perf_counter()
            res = mt.prune_states(model, xc, ratio=ratio, selection=sel)
            sec = time.perf_counter() - t0
            rows.append({"family": family, "method": sel, "ratio": ratio, "acc_before": before,
                         "acc_after": accuracy(res.module, xt, yt), "params_before": p_before,
                         "params_after": _count(res.module), "seconds": sec,
                         "blocks": [{k: b[k] for k in ("name", "stored_before", "stored_after", "selected",
                                                       "output_error")} for b in res.report["blocks"]]})
            print(f"  {family} {sel} {ratio}: {rows[-1]['acc_after']:.1f} % ({sec:.1f} s)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    cols = [m for m in (*SELECTIONS, *METHODS) if any(r["method"] == m for r in rows)]
    return families_table(rows, cols, error_cell="refused")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="mamba,mamba2")
    ap.add_argument("--epochs", type=int, default=None, help="default: 10 (mamba), 20 (mamba2)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    data = load_data()
    out_path = OUT / "upstream_mamba.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for family in args.families.split(","):
        model, t_train = train(family, data, args.epochs or EPOCHS[family])
        rows = sweep(family, model, data)
        prev = results.get(family, {}).get("train_seconds")
        results[family] = {"train_seconds": t_train if t_train is not None else prev, "rows": rows}
        print(table(rows), "\n", flush=True)
        out_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
