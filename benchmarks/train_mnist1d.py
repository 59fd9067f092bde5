"""Train the reference Deep-SSM models on MNIST-1D (CPU, a few minutes) and bundle them.

Usage::

    python -m benchmarks.train_mnist1d --model s4d --out mor_lqo/data/s4d_mnist1d.safetensors \
        --test-split-out mor_lqo/data/mnist1d_test.npz
    python -m benchmarks.train_mnist1d --model lqo --out mor_lqo/data/lqo_mnist1d.safetensors
    python -m benchmarks.train_mnist1d --model s4d_large_state --out benchmarks/results/mnist1d_s4d_n256.safetensors
    python -m benchmarks.train_mnist1d --model lqo_large_state --out benchmarks/results/mnist1d_lqo_p256.safetensors

The data are generated locally by ``mnist1d.data.make_dataset`` (default arguments, seed 42: 4000 train
/ 1000 test sequences of length 40; nothing is downloaded). Training: AdamW + cosine schedule as in
state-spaces/s4 ``example.py`` (SSM tensors: their own learning rate, no weight decay), mini-batches,
the model of the *last* epoch is kept (the test split is never used for selection).

Bundled configurations (the defaults below): S4D H = 64, 3 layers, d_state = 64 (32 stored modes per
channel), upstream dt range [1e-3, 1e-1], 20 epochs; LQO H = 64, 2 layers, P = 64 complex modes, rank
R = 2, one dt per layer from [1e-2, 1e-1], no activation, 20 epochs. Both: AdamW lr 1e-2 (SSM tensors
1e-3), weight decay 1e-2, batch 64, dropout 0.1, seed 0, 1 torch thread.

``s4d_large_state`` (not bundled; the paper-A regime where SSM parameters dominate): the S4D
defaults with H = 32, d_state = 256 (128 stored modes, real order 256 per channel) and 80 epochs
(≈ 3.5 min), so that 88 % of the trainable parameters are SSM parameters. Its record goes to a JSON file beside the weights
(``<out>.json``) rather than into ``models.json``. ``lqo_large_state`` (not bundled, paper A's own
regime): the LQO defaults with H = 32 and P = 256 modes per layer, 30 epochs, so that about 98 % of the
trainable parameters are SSM parameters; its record goes to ``<out>.json`` as well.

Afterwards the script loads the weights into the numpy model (:mod:`mor_lqo.deep.models`), checks that
numpy and torch logits agree, and records configuration, seed, accuracies (torch and numpy), training
time and parameter counts in ``models.json`` next to the weights (entry keyed by ``--model``). For the
LQO model it also records how much the quadratic readout matters (output-energy share, accuracy with
U = 0).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

DEFAULTS = {
    "s4d": dict(
        d_model=64,
        n_layers=3,
        d_state=64,
        dropout=0.1,
        lr=0.01,
        ssm_lr=0.001,
        weight_decay=0.01,
        epochs=20,
        batch_size=64,
        dt_min=0.001,
        dt_max=0.1,
    ),
    "lqo": dict(
        d_model=64,
        n_layers=2,
        n_modes=64,
        rank=2,
        dropout=0.1,
        lr=0.01,
        ssm_lr=0.001,
        weight_decay=0.01,
        epochs=20,
        batch_size=64,
        dt_min=0.01,
        dt_max=0.1,
    ),
}
DEFAULTS["s4d_large_state"] = {**DEFAULTS["s4d"], "d_model": 32, "d_state": 256, "epochs": 80}
DEFAULTS["lqo_large_state"] = {**DEFAULTS["lqo"], "d_model": 32, "n_modes": 256, "epochs": 30}
FAMILY = {"s4d": "s4d", "lqo": "lqo", "s4d_large_state": "s4d", "lqo_large_state": "lqo"}
BUNDLED = ("s4d", "lqo")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(DEFAULTS), required=True)
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--test-split-out", default=None, help="also write the test split (npz) here")
    p.add_argument("--models-json", default=None,
                   help="JSON to update (default: models.json beside --out for the bundled models, "
                        "<out>.json with this entry alone for the others)")
    p.add_argument("--seed", type=int, default=0, help="torch / shuffling seed")
    p.add_argument("--data-seed", type=int, default=42, help="mnist1d generator seed (42 = the default dataset)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 reproduces the bundled runs)")
    p.add_argument("--max-minutes", type=float, default=10.0, help="stop after the epoch that passes this wall time")
    for k, v in {**DEFAULTS["s4d"], **DEFAULTS["lqo"]}.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=None)
    args = p.parse_args(argv)
    args.family = FAMILY[args.model]
    for k, v in DEFAULTS[args.model].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def s4_model(args, d_input: int, d_output: int):
    """The torch S4D model (post-norm) with the architecture options of ``args``."""
    from mor_lqo.deep.torch_models import S4Model

    return S4Model(
        d_input=d_input,
        d_output=d_output,
        d_model=args.d_model,
        n_layers=args.n_layers,
        dropout=args.dropout,
        prenorm=False,
        d_state=args.d_state,
        lr=args.ssm_lr,
        dt_min=args.dt_min,
        dt_max=args.dt_max,
    )


def build_model(args):
    from mor_lqo.deep.torch_models import LQOModel

    if args.family == "s4d":
        return s4_model(args, 1, 10)
    return LQOModel(
        d_input=1,
        d_output=10,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_modes=args.n_modes,
        rank=args.rank,
        dropout=args.dropout,
        lr=args.ssm_lr,
        dt_min=args.dt_min,
        dt_max=args.dt_max,
    )


def config_of(args) -> dict:
    keys = ["d_model", "n_layers"] + (["d_state"] if args.family == "s4d" else ["n_modes", "rank"])
    keys += ["dropout", "lr", "ssm_lr", "weight_decay", "epochs", "batch_size", "dt_min", "dt_max"]
    return {k: getattr(args, k) for k in keys}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from mor_lqo.deep import LQOModel, S4DModel, generate_mnist1d, write_safetensors
    from mor_lqo.deep.torch_models import setup_optimizer, state_dict_to_numpy

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    data = generate_mnist1d(seed=args.data_seed)
    x_tr, y_tr = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    x_te, y_te = torch.from_numpy(data["x_test"]), torch.from_numpy(data["y_test"])
    print(f"MNIST-1D: train {tuple(x_tr.shape)}, test {tuple(x_te.shape)}")

    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {n_params} parameters, config {config_of(args)}")
    optimizer, scheduler = setup_optimizer(model, args.lr, args.weight_decay, args.epochs)
    loss_fn = torch.nn.CrossEntropyLoss()

    def evaluate(x, y):
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(x[s : s + 500]) for s in range(0, len(x), 500)])
        return float((logits.argmax(-1) == y).float().mean()), logits

    t0 = time.perf_counter()
    history = []
    epochs_run = 0
    for epoch in range(args.epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(len(x_tr)))
        tot, correct, loss_sum = 0, 0, 0.0
        for s in range(0, len(perm), args.batch_size):
            idx = perm[s : s + args.batch_size]
            xb, yb = x_tr[idx], y_tr[idx]
            optimizer.zero_grad()
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(-1) == yb).sum())
            tot += len(idx)
        scheduler.step()
        epochs_run = epoch + 1
        te_acc, _ = evaluate(x_te, y_te)
        elapsed = time.perf_counter() - t0
        history.append({"epoch": epochs_run, "loss": loss_sum / tot, "train_acc": correct / tot, "test_acc": te_acc})
        print(
            f"epoch {epochs_run:3d}  loss {loss_sum / tot:.4f}  train {correct / tot:.4f}  test {te_acc:.4f}  {elapsed:6.1f}s",
            flush=True,
        )
        if elapsed > 60 * args.max_minutes:
            print(f"stopping: wall-time limit of {args.max_minutes} min reached")
            break
    train_time = time.perf_counter() - t0

    # ---- torch vs numpy, final accuracies --------------------------------------------------------
    te_acc, logits_t = evaluate(x_te, y_te)
    tr_acc, _ = evaluate(x_tr, y_tr)
    sd = state_dict_to_numpy(model)
    np_model = (S4DModel if args.family == "s4d" else LQOModel).from_state_dict(sd)
    logits_n = np_model.forward(data["x_test"])
    max_diff = float(np.max(np.abs(logits_n - logits_t.double().numpy())))
    np_acc = np_model.accuracy(data["x_test"], data["y_test"])
    print(
        f"final: train {tr_acc:.4f}  test (torch) {te_acc:.4f}  test (numpy) {np_acc:.4f}  max |logit diff| {max_diff:.2e}"
    )
    if max_diff > 1e-3:
        raise RuntimeError(f"numpy and torch logits disagree (max diff {max_diff:.3g})")

    entry = {
        "file": Path(args.out).name,
        "model": args.model,
        "family": args.family,
        "class": "mor_lqo.deep.S4DModel" if args.family == "s4d" else "mor_lqo.deep.LQOModel",
        "torch_class": "mor_lqo.deep.torch_models.S4Model"
        if args.family == "s4d"
        else "mor_lqo.deep.torch_models.LQOModel",
        "config": config_of(args),
        "seed": args.seed,
        "data": {
            "generator": "mnist1d.data.make_dataset(get_dataset_args())",
            "seed": args.data_seed,
            "n_train": len(x_tr),
            "n_test": len(x_te),
            "length": int(x_tr.shape[1]),
        },
        "epochs_run": epochs_run,
        "train_time_s": round(train_time, 1),
        "threads": args.threads,
        "torch_version": torch.__version__,
        "machine": platform.machine(),
        "train_accuracy": round(tr_acc, 4),
        "test_accuracy": round(np_acc, 4),
        "test_accuracy_torch": round(te_acc, 4),
        "numpy_torch_max_logit_diff": max_diff,
        "params": np_model.num_parameters(),
        "n_modes_per_layer": list(np_model.n_modes),
        "history": history,
    }
    if args.family == "lqo":
        entry["quadratic"] = quadratic_contribution(np_model, data["x_test"], data["y_test"])
        print("quadratic readout:", json.dumps(entry["quadratic"]))

    # ---- write ----------------------------------------------------------------------------------
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "family": args.family,
        "config": json.dumps(config_of(args)),
        "seed": str(args.seed),
        "test_accuracy": f"{np_acc:.4f}",
    }
    write_safetensors(out, sd, metadata=meta)
    print(f"wrote {out} ({out.stat().st_size / 1024:.1f} KiB)")
    if args.test_split_out:
        ts = Path(args.test_split_out)
        np.savez_compressed(ts, x=data["x_test"].astype(np.float32), y=data["y_test"].astype(np.uint8))
        print(f"wrote {ts} ({ts.stat().st_size / 1024:.1f} KiB)")
    if args.models_json or args.model in BUNDLED:
        mj = Path(args.models_json) if args.models_json else out.parent / "models.json"
        info = json.loads(mj.read_text()) if mj.is_file() else {}
        info[args.model] = entry
        mj.write_text(json.dumps(info, indent=1) + "\n")
        print(f"updated {mj}")
    else:
        mj = out.with_suffix(".json")
        mj.write_text(json.dumps(entry, indent=1) + "\n")
        print(f"wrote {mj}")
    return entry


def quadratic_contribution(model, x, y) -> dict:
    """Per layer: share of the SSM output energy in the quadratic term; accuracy with U = 0 in all layers."""
    h = model.encode(x)
    shares = []
    for i in range(model.n_layers):
        yy, lin, quad = model.ssm_forward(i, h, return_parts=True)
        shares.append(float(np.linalg.norm(quad) / (np.linalg.norm(lin) + np.linalg.norm(quad))))
        h = model.post_ssm(i, yy, h)
    sd = model.state_dict()
    for k in sd:
        if k.endswith(".ssm.U"):
            sd[k] = np.zeros_like(sd[k])
    acc_no_quad = type(model).from_state_dict(sd).accuracy(x, y)
    return {"quad_share_of_ssm_output_norm": shares, "test_accuracy_without_quadratic": round(acc_no_quad, 4)}


if __name__ == "__main__":
    main()
