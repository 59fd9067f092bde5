"""Compress models built from the upstream pip packages (``s5-pytorch``, ``lru-pytorch``) and the package's S4D
twin, trained on MNIST-1D on the CPU, with every method of ``mor_lqo.torch.compress`` at 1/2 ... 1/16.

    python -m benchmarks.upstream_families                   # train (or load) and sweep all families
    python -m benchmarks.upstream_families --families s5 --epochs 10

Each family: encoder Linear(1, H) -> 2 residual blocks (upstream layer + LayerNorm) -> mean -> Linear(H, 10).
Weights are cached in ``benchmarks/results/upstream/<family>.pt`` (small) and reused. Calibration: 256
training sequences; accuracy: the 1000 test sequences. Prints a markdown table per family and writes
``benchmarks/results/upstream_families.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results"
RATIOS = ("1/2", "1/4", "1/8", "1/16")
METHODS = ("modal", "bt", "irka", "h2")
H = {"s5": 32, "lru": 32, "s4d": 32}
STATE = {"s5": 64, "lru": 64, "s4d": 64}
EPOCHS = {"s5": 20, "lru": 4, "s4d": 20}  # s5: P (complex), lru: state features, s4d: d_state (real)


def build(family: str):
    import torch
    from torch import nn

    h, n = H[family], STATE[family]

    class Residual(nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer, self.norm = layer, nn.LayerNorm(h)

        def forward(self, x):  # (B, L, H)
            y = self.layer(x)
            return self.norm(x + (y[0] if isinstance(y, tuple) else y))

    if family == "s5":
        from s5 import S5

        layers = [S5(h, state_width=n) for _ in range(2)]
    elif family == "lru":
        from LRU_pytorch import LRU

        layers = [LRU(h, h, n) for _ in range(2)]
    else:
        from mor_lqo.deep.torch_models import S4D

        layers = [S4D(h, d_state=n, transposed=False) for _ in range(2)]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(1, h)
            self.blocks = nn.ModuleList([Residual(layer) for layer in layers])
            self.decoder = nn.Linear(h, 10)

        def forward(self, x):
            z = self.encoder(x)
            for b in self.blocks:
                z = b(z)
            return self.decoder(z.mean(1))

    torch.manual_seed(0)
    return Net()


def load_data() -> dict:
    """MNIST-1D (seed 42) as torch tensors: ``x``, ``y`` (training), ``x_test``, ``y_test``; x (N, 40, 1)."""
    import torch

    from mor_lqo.deep import generate_mnist1d

    raw = generate_mnist1d(seed=42)
    data = {k: torch.from_numpy(np.asarray(raw[k], np.float32)[:, :, None]) for k in ("x", "x_test")}
    data.update(y=torch.from_numpy(raw["y"]).long(), y_test=torch.from_numpy(raw["y_test"]).long())
    return data


def accuracy(model, x, y) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + 250]) for i in range(0, len(x), 250)])
    return 100.0 * float((out.argmax(-1) == y).float().mean())


def train(family: str, data, epochs: int):
    import torch

    path = OUT / "upstream" / f"{family}.pt"
    model = build(family)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model, None
    x, y = data["x"], data["y"]
    # as the bundled models: AdamW lr 1e-2, the SSM tensors lr 1e-3 without weight decay, cosine schedule
    ssm = [p for n, p in model.named_parameters() if ".layer." in n and "output_linear" not in n
           and not n.endswith(".D")]
    rest = [p for p in model.parameters() if all(p is not q for q in ssm)]
    opt = torch.optim.AdamW([{"params": rest, "lr": 1e-2, "weight_decay": 0.01},
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
        print(f"  {family} epoch {ep + 1}: test {accuracy(model, data['x_test'], data['y_test']):.1f} %", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model, time.perf_counter() - t0


def sweep(family: str, model, data, methods=METHODS) -> list[dict]:
    import mor_lqo.torch as mt

    xc, xt, yt = data["x"][:256], data["x_test"], data["y_test"]
    rows = []
    for method in methods:
        for ratio in RATIOS:
            t0 = time.perf_counter()
            try:
                res = mt.compress(model, xc, ratio=ratio, method=method, metric=lambda m: accuracy(m, xt, yt),
                                  executor="serial")
            except Exception as exc:  # noqa: BLE001 - a failing cell is reported, not hidden
                rows.append({"family": family, "method": method, "ratio": ratio, "error": f"{type(exc).__name__}: "
                             f"{exc}"[:200]})
                continue
            rep = res.report
            rows.append({"family": family, "method": method, "ratio": ratio, "acc_before": rep["metric"]["before"],
                         "acc_after": rep["metric"]["after"], "params_before": rep["parameters"]["before"],
                         "params_after": rep["parameters"]["after"], "ssm_before": rep["ssm_parameters"]["before"],
                         "ssm_after": rep["ssm_parameters"]["after"], "seconds": time.perf_counter() - t0})
            print(f"  {family} {method} {ratio}: {rows[-1]['acc_after']:.1f} %", flush=True)
    return rows


def table(rows: list[dict], cols=METHODS, error_cell: str | None = None) -> str:
    """Markdown table of one family's sweep rows (columns ``cols``; a failed cell shows ``error_cell`` or
    the start of its error message)."""
    ok = [r for r in rows if "acc_before" in r]
    acc0 = ok[0]["acc_before"] if ok else float("nan")
    lines = [f"**{rows[0]['family']}** (accuracy before {acc0:.1f} %; cell: accuracy % "
             "(trainable parameters kept %), seconds)", "", "| ratio | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for ratio in RATIOS:
        cells = []
        for m in cols:
            r = next(x for x in rows if x["method"] == m and x["ratio"] == ratio)
            cells.append((error_cell or r["error"][:40]) if "error" in r else
                         f"{r['acc_after']:.1f} ({100 * r['params_after'] / r['params_before']:.0f} %), "
                         f"{r['seconds']:.1f} s")
        lines.append(f"| {ratio} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="s4d,s5,lru")
    ap.add_argument("--epochs", type=int, default=None, help="default: 20 (s4d, s5), 4 (lru: a Python loop per step)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="methods to run; the other methods' rows of a family are kept from the JSON")
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    import torch

    torch.set_num_threads(1)
    data = load_data()
    out_path = OUT / "upstream_families.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for family in args.families.split(","):
        model, t_train = train(family, data, args.epochs or EPOCHS[family])
        rows = sweep(family, model, data, methods)
        old = results.get(family, {})
        rows = [r for r in old.get("rows", []) if r["method"] not in methods] + rows
        rows.sort(key=lambda r: METHODS.index(r["method"]) if r["method"] in METHODS else len(METHODS))
        results[family] = {"train_seconds": t_train if t_train is not None else old.get("train_seconds"),
                           "rows": rows}
        print(table(rows), "\n", flush=True)
        out_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
