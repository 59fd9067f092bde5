"""Speed of ``mor_lqo.torch.compress`` (data-weighted finite-horizon h2) on an S4D network and an S5 network,
against the infinite-horizon state-dict path (``mor_lqo.deep.compress.compress`` without a length), in one run.

    python -m benchmarks.bench_torch_compress                 # 4 x S4D(256, 64), L = 1024; 6 x S5(256, 192)
    python -m benchmarks.bench_torch_compress --length 256    # shorter sequences

Prints wall times, their ratio, the per-phase timings of the data-weighted run and its mean relative
finite-horizon error. The networks are randomly initialised (speed only; accuracy is in docs/results.md).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _s4d_net(layers: int, width: int, state: int):
    import torch

    from mor_lqo.deep.torch_models import S4Model

    torch.manual_seed(0)
    return S4Model(d_input=1, d_output=10, d_model=width, n_layers=layers, d_state=state, dropout=0.0)


def _s5_net(layers: int, width: int, state: int):
    import torch
    from s5 import S5Block
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(1, width)
            self.blocks = nn.ModuleList([S5Block(width, state, bidir=False) for _ in range(layers)])
            self.dec = nn.Linear(width, 10)

        def forward(self, x):
            h = self.enc(x)
            for b in self.blocks:
                h = b(h)
            return self.dec(h.mean(1))

    torch.manual_seed(0)
    return Net()


def _run(name: str, net, x, ratio: str, executor) -> None:
    from mor_lqo.deep.compress import compress as compress_state_dict
    from mor_lqo.torch import compress

    t = time.perf_counter()
    res = compress(net, x, ratio=ratio, executor=executor)
    t_data = time.perf_counter() - t
    sd = {k: v.detach() for k, v in net.state_dict().items()}
    t = time.perf_counter()
    compress_state_dict(sd, "h2", ratio=ratio, executor=executor, progress=False)
    t_inf = time.perf_counter() - t
    rel = [b["rel_h2_error_L"] for b in res.report["blocks"] if b.get("rel_h2_error_L") is not None]
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in res.report["timings"].items())
    print(f"{name}: data-weighted finite-horizon h2 {t_data:.1f} s | infinite-horizon h2 (state dict) {t_inf:.1f} s "
          f"| ratio {t_inf / t_data:.2f}x | mean rel. finite-horizon error {np.mean(rel):.3g}")
    print(f"    phases: {phases}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ratio", default="1/4")
    ap.add_argument("--executor", default=None, choices=("process", "thread", "serial"))
    ap.add_argument("--only", choices=("s4d", "s5"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    x = torch.randn(args.batch, args.length, 1, generator=torch.Generator().manual_seed(0))
    print(f"cores {os.cpu_count()}, L = {args.length}, batch {args.batch}, ratio {args.ratio}")
    if args.only in (None, "s4d"):
        _run("S4D 4 x (H 256, N 64)", _s4d_net(4, 256, 64), x, args.ratio, args.executor)
    if args.only in (None, "s5"):
        _run("S5 6 x (H 256, P 192)", _s5_net(6, 256, 192), x, args.ratio, args.executor)


if __name__ == "__main__":
    main()
