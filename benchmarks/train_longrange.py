"""Train the S4D reference model on the long-range ``tones`` task (L = 1024) on the CPU.

Usage::

    python -m benchmarks.train_longrange                      # ≈ 3–5 min on one core
    python -m benchmarks.train_longrange --steps 200 --out /tmp/t.safetensors   # quick try

Model: :class:`mor_lqo.deep.torch_models.S4Model` (FFT convolution; the layout of
:class:`mor_lqo.deep.S4DModel`), H = 32 channels, 2 layers, d_state = 64 (32 stored conjugate-pair
modes, real order 64 per channel), upstream S4D-Lin initialisation, dt in [1e-3, 1e-1]. Data:
:func:`benchmarks.tasks.make_tones` with its defaults; every training step draws a fresh batch
(seed ``10_000 + step``), so there is no training set to overfit; the validation set (seed 1, 500
sequences) is only logged, the test set (seed 2, 2000 sequences) is evaluated once at the end.
Optimiser: AdamW (lr 1e-2, weight decay 1e-2; SSM tensors lr 1e-3, no decay) with a one-cycle
schedule, batch 32, 1 torch thread.

Afterwards the weights are loaded into the numpy model, numpy and torch logits are compared, and the
reliance on long lags is measured: test accuracy with every SSM kernel truncated to its first
16, 32, …, 512 lags (``K[l] = 0`` for larger lags, D kept). Writes the weights (safetensors, float32)
and a JSON record (configuration, seeds, accuracies, ablation, training time, history) next to them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.tasks import DEFAULT_LENGTH, TONES_DEFAULTS, make_tones, task_info
from benchmarks.train_mnist1d import s4_model

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUT = RESULTS / "tones_s4d.safetensors"
TRAIN_SEED0 = 10_000
VAL_SEED = 1
TEST_SEED = 2
N_VAL = 500
N_TEST = 2000
TRUNCATIONS = (16, 32, 64, 128, 256, 512)

DEFAULTS = dict(
    d_model=32,
    n_layers=2,
    d_state=64,
    dropout=0.0,
    lr=0.01,
    ssm_lr=0.001,
    weight_decay=0.01,
    steps=800,
    batch_size=32,
    dt_min=0.001,
    dt_max=0.1,
    length=DEFAULT_LENGTH,
)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (every entry of :data:`DEFAULTS` can be overridden)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output .safetensors path (JSON written beside it)")
    p.add_argument("--seed", type=int, default=0, help="torch seed (initialisation)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--max-minutes", type=float, default=15.0, help="stop training after this wall time")
    p.add_argument("--eval-every", type=int, default=100, help="validation accuracy every N steps")
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    return p.parse_args(argv)


def truncated_kernel_logits(model, x: np.ndarray, lags: int | None, batch_size: int = 250) -> np.ndarray:
    """Logits of an :class:`~mor_lqo.deep.S4DModel` whose SSM kernels are cut after ``lags`` lags.

    ``lags=None`` gives the unmodified model (the same computation as ``model.forward``).
    """
    out = []
    for s in range(0, len(x), batch_size):
        h = model.encode(x[s : s + batch_size])
        L = h.shape[1]
        for i in range(model.n_layers):
            K = model.kernel(i, L)
            if lags is not None:
                K[:, lags:] = 0.0
            n = 2 * L
            y = np.fft.irfft(np.fft.rfft(h, n=n, axis=1) * np.fft.rfft(K, n=n, axis=1).T[None], n=n, axis=1)[:, :L]
            y = y + h * model.state_dict()[f"s4_layers.{i}.D"].astype(np.float64)
            h = model.post_ssm(i, y, h)
        out.append(model.decode(h))
    return np.concatenate(out)


def build_model(args):
    """The torch training twin with the options of ``args``."""
    info = task_info("tones")
    return s4_model(args, info["d_input"], info["d_output"])


def main(argv=None) -> dict:
    """Train, check, ablate and write; returns the JSON record."""
    args = parse_args(argv)
    import torch

    from mor_lqo.deep import S4DModel, write_safetensors
    from mor_lqo.deep.torch_models import state_dict_to_numpy

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    L = args.length
    x_val, y_val = make_tones(N_VAL, L, VAL_SEED)
    x_te, y_te = make_tones(N_TEST, L, TEST_SEED)
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)

    model = build_model(args)
    ssm = [p for p in model.parameters() if hasattr(p, "_optim")]
    rest = [p for p in model.parameters() if not hasattr(p, "_optim")]
    opt = torch.optim.AdamW(
        [{"params": rest, "lr": args.lr, "weight_decay": args.weight_decay},
         {"params": ssm, "lr": args.ssm_lr, "weight_decay": 0.0}]
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[args.lr, args.ssm_lr], total_steps=args.steps,
                                                pct_start=0.1)
    n_params = sum(p.numel() for p in model.parameters())
    config = {k: getattr(args, k) for k in DEFAULTS}
    print(f"tones (L={L}): S4D, {n_params} parameters, config {config}", flush=True)

    def accuracy(x, y) -> float:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(x[s : s + 250]) for s in range(0, len(x), 250)])
        model.train()
        return float((logits.argmax(-1) == y).float().mean())

    history = []
    t0 = time.perf_counter()
    steps_run = 0
    loss_acc, n_acc = 0.0, 0
    for step in range(args.steps):
        xb, yb = make_tones(args.batch_size, L, TRAIN_SEED0 + step)
        out = model(torch.from_numpy(xb))
        loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        steps_run = step + 1
        loss_acc += loss.item()
        n_acc += 1
        elapsed = time.perf_counter() - t0
        if steps_run % args.eval_every == 0 or steps_run == args.steps:
            va = accuracy(xv, yv)
            history.append({"step": steps_run, "loss": loss_acc / n_acc, "val_acc": va, "time_s": round(elapsed, 1)})
            print(f"step {steps_run:5d}  loss {loss_acc / n_acc:.4f}  val {va:.4f}  {elapsed:6.1f}s", flush=True)
            loss_acc, n_acc = 0.0, 0
        if elapsed > 60 * args.max_minutes:
            print(f"stopping: wall-time limit of {args.max_minutes} min reached after {steps_run} steps")
            break
    train_time = time.perf_counter() - t0

    # ---- numpy twin, test accuracy, long-lag ablation ------------------------------------------
    model.eval()
    with torch.no_grad():
        logits_t = torch.cat([model(torch.from_numpy(x_te[s : s + 250])) for s in range(0, N_TEST, 250)])
    acc_t = float((logits_t.argmax(-1).numpy() == y_te).mean())
    sd = state_dict_to_numpy(model)
    np_model = S4DModel.from_state_dict(sd)
    logits_n = truncated_kernel_logits(np_model, x_te, None)
    max_diff = float(np.max(np.abs(logits_n - logits_t.double().numpy())))
    acc_n = float(np.mean(logits_n.argmax(-1) == y_te))
    print(f"test accuracy: torch {acc_t:.4f}, numpy {acc_n:.4f}; max |logit diff| {max_diff:.2e}")
    if max_diff > 1e-3:
        raise RuntimeError(f"numpy and torch logits disagree (max diff {max_diff:.3g})")
    ablation = {}
    for lags in TRUNCATIONS:
        ablation[str(lags)] = float(np.mean(truncated_kernel_logits(np_model, x_te, lags).argmax(-1) == y_te))
        print(f"kernels truncated to {lags:4d} lags: test accuracy {ablation[str(lags)]:.4f}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"family": "s4d", "task": "tones", "config": json.dumps(config), "test_accuracy": f"{acc_n:.4f}"}
    write_safetensors(out, {k: v.astype(np.float32) for k, v in sd.items()}, metadata=meta)
    record = {
        "file": out.name,
        "family": "s4d",
        "class": "mor_lqo.deep.S4DModel",
        "torch_class": "mor_lqo.deep.torch_models.S4Model",
        "task": {"name": "tones", "length": L, **TONES_DEFAULTS, "n_test": N_TEST, "test_seed": TEST_SEED,
                 "val_seed": VAL_SEED, "train_seeds": f"{TRAIN_SEED0} + step"},
        "config": config,
        "seed": args.seed,
        "steps_run": steps_run,
        "train_time_s": round(train_time, 1),
        "threads": args.threads,
        "torch_version": torch.__version__,
        "machine": platform.machine(),
        "test_accuracy": round(acc_n, 4),
        "test_accuracy_torch": round(acc_t, 4),
        "numpy_torch_max_logit_diff": max_diff,
        "truncated_kernel_accuracy": ablation,
        "params": np_model.num_parameters(),
        "history": history,
    }
    js = out.with_suffix(".json")
    js.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1024:.1f} KiB) and {js}")
    return record


if __name__ == "__main__":
    main()
