r"""LRA IMDb (byte-level text classification): loader, preprocessing, training and the compression pipeline.

The Long Range Arena text task (Tay et al. 2021) classifies IMDb movie reviews (Maas et al. 2011;
25 000 train / 25 000 test, binary sentiment) from their **bytes**: the text is UTF-8 encoded, every
byte ``c`` becomes the token id ``c + 1`` (id 0 is padding; this is ``tfds`` ``ByteTextEncoder``, which
the LRA code uses), and sequences are truncated or right-padded to ``L = 4096`` (LRA uses 4000 in the
paper's runs, S4 uses 4096). Nothing here downloads anything unless you ask for Hugging Face
``datasets`` explicitly.

Data sources (:func:`load_imdb`)
--------------------------------
* a directory in the original **aclImdb** layout: ``<dir>/<split>/pos/*.txt`` and ``<dir>/<split>/neg/*.txt``
  (``<dir>`` may also be the parent of ``aclImdb/``);
* a directory holding one **table per split**: a file whose name contains the split name, e.g.
  ``train.tsv`` / ``test.tsv``, ``imdb_train.csv``, ``test.jsonl``. TSV/CSV with a header naming the
  label column (``label``, ``target``, ``Target``, ``sentiment``, ``y``) and the text column (``text``,
  ``source``, ``Source``, ``review``, ``sentence``, ``input``) — the LRA release's ``Source``/``Target``
  naming included — or without a header as two columns, label and text in either order (the column whose
  values are all labels is the label column). JSON lines: ``{"text": ..., "label": ...}``.
* a single table file (as above) for one split;
* ``"hf"``: ``datasets.load_dataset("imdb")`` (online, needs the ``datasets`` package).

Labels may be ``0``/``1``, ``neg``/``pos`` or ``negative``/``positive`` (any case).

Model and pipeline (:func:`main`)
---------------------------------
The model is the S4D reference model (:class:`mor_lqo.deep.S4DModel` layout) whose encoder
``encoder.weight`` of shape ``(H, 257)`` acts on one-hot byte vectors — i.e. it *is* a byte embedding
(:class:`TokenS4Model` looks the columns up instead of multiplying one-hot vectors; the state dict is
identical). Mean pooling runs over all L positions (padding included). The script

1. loads and tokenises the data, trains the model with torch (a GPU is strongly advised: 25 000
   sequences of 4096 bytes) or loads ``--checkpoint``;
2. compresses it with :func:`mor_lqo.deep.compress.compress` for every method and ratio
   (calibration: ``--calib`` training sequences as one-hot inputs; 0 = data-free, no ``bound``);
3. evaluates the test accuracy of every compressed model (torch on ``--device``, or numpy), and the
   output-error bound vs the measured logit error on ``--bound-samples`` test sequences;
4. writes ``lra_imdb.csv`` and ``lra_imdb.json`` to ``--out``.

Examples
--------
::

    python -m benchmarks.lra_imdb --data /data/aclImdb --device cuda --out results/imdb
    python -m benchmarks.lra_imdb --data hf --device cuda --epochs 20
    python -m benchmarks.lra_imdb --data /data/imdb_tsv --checkpoint imdb_s4d.safetensors --methods h2,bt
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "MAX_LENGTH",
    "VOCAB_SIZE",
    "PAD_ID",
    "parse_label",
    "read_table",
    "load_imdb",
    "encode_bytes",
    "one_hot",
    "token_logits",
    "numpy_accuracy",
    "main",
]

MAX_LENGTH = 4096
"""Default sequence length (bytes)."""
BYTE_OFFSET = 1
"""Token id of byte c is c + BYTE_OFFSET (tfds ``ByteTextEncoder``: 0 is reserved for padding)."""
PAD_ID = 0
VOCAB_SIZE = 256 + BYTE_OFFSET
SPLITS = ("train", "test")
LABEL_COLUMNS = ("label", "target", "sentiment", "y", "labels", "class")
TEXT_COLUMNS = ("text", "source", "review", "sentence", "input", "content")
_LABELS = {"0": 0, "1": 1, "neg": 0, "pos": 1, "negative": 0, "positive": 1, "0.0": 0, "1.0": 1}


class IMDbFormatError(ValueError):
    """The data files do not have a recognised IMDb layout."""


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def parse_label(value) -> int:
    """Map ``0/1``, ``neg/pos``, ``negative/positive`` (any case, surrounding blanks) to 0/1.

    Raises
    ------
    IMDbFormatError
        For anything else.
    """
    key = str(value).strip().lower()
    if key not in _LABELS:
        raise IMDbFormatError(f"unrecognised label {value!r} (expected 0/1, neg/pos or negative/positive)")
    return _LABELS[key]


def _is_label(value) -> bool:
    return str(value).strip().lower() in _LABELS


def _sniff_delimiter(path: Path, first: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    if path.suffix.lower() == ".csv":
        return ","
    return "\t" if first.count("\t") >= first.count(",") else ","


def read_table(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read one split from a TSV / CSV / JSON-lines file.

    Parameters
    ----------
    path : path-like
        ``.tsv``, ``.csv``, ``.jsonl``/``.json`` (one object per line) or ``.txt`` (tab- or
        comma-separated, sniffed from the first line).

    Returns
    -------
    texts : list of str
    labels : ndarray, shape (n,), int64
        0 = negative, 1 = positive.

    Raises
    ------
    IMDbFormatError
        Unknown columns, a row with a missing field, an unrecognised label, or an empty file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    texts: list[str] = []
    labels: list[int] = []
    if suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IMDbFormatError(f"{path}:{ln}: not a JSON object per line ({exc})") from None
                keys = {k.lower(): k for k in obj}
                tk = next((keys[c] for c in TEXT_COLUMNS if c in keys), None)
                lk = next((keys[c] for c in LABEL_COLUMNS if c in keys), None)
                if tk is None or lk is None:
                    raise IMDbFormatError(f"{path}:{ln}: needs a text and a label field, got {sorted(obj)}")
                texts.append(str(obj[tk]))
                labels.append(parse_label(obj[lk]))
    else:
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline()
            f.seek(0)
            rows = list(csv.reader(f, delimiter=_sniff_delimiter(path, first)))
        rows = [r for r in rows if r and any(c.strip() for c in r)]
        if not rows:
            raise IMDbFormatError(f"{path}: empty file")
        head = [c.strip().lower() for c in rows[0]]
        li = next((head.index(c) for c in LABEL_COLUMNS if c in head), None)
        ti = next((head.index(c) for c in TEXT_COLUMNS if c in head), None)
        if li is not None and ti is not None:
            body = rows[1:]
        else:
            body = rows
            if any(len(r) != 2 for r in body):
                raise IMDbFormatError(
                    f"{path}: no header with label/text columns and not two columns per row "
                    f"(first row: {rows[0][:3]!r})"
                )
            if all(_is_label(r[0]) for r in body):
                li, ti = 0, 1
            elif all(_is_label(r[1]) for r in body):
                li, ti = 1, 0
            else:
                raise IMDbFormatError(f"{path}: neither column holds only labels (0/1, neg/pos)")
        for n, r in enumerate(body, 2 if body is not rows else 1):
            if len(r) <= max(li, ti):
                raise IMDbFormatError(f"{path}: row {n} has {len(r)} fields")
            labels.append(parse_label(r[li]))
            texts.append(r[ti])
    if not texts:
        raise IMDbFormatError(f"{path}: no examples")
    return texts, np.asarray(labels, dtype=np.int64)


def _read_acl(split_dir: Path) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for name, lab in (("neg", 0), ("pos", 1)):
        files = sorted((split_dir / name).glob("*.txt"))
        for p in files:
            texts.append(p.read_text(encoding="utf-8", errors="replace"))
            labels.append(lab)
    if not texts:
        raise IMDbFormatError(f"{split_dir}: no pos/*.txt or neg/*.txt files")
    return texts, np.asarray(labels, dtype=np.int64)


_TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".txt")


def _split_table(root: Path, split: str) -> Path | None:
    cands = [p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES
             and split in p.stem.lower()]
    if len(cands) > 1:
        raise IMDbFormatError(f"{root}: several files match split {split!r}: {[c.name for c in cands]}")
    return cands[0] if cands else None


def load_imdb(source: str | os.PathLike, split: str = "train") -> tuple[list[str], np.ndarray]:
    """Load one split of IMDb (see the module docstring for the accepted layouts).

    Parameters
    ----------
    source : path-like or ``"hf"``
        aclImdb directory (or its parent), a directory of per-split tables, a single table file, or
        ``"hf"`` for Hugging Face ``datasets`` (online).
    split : {"train", "test"}

    Returns
    -------
    texts : list of str
    labels : ndarray, shape (n,), int64

    Raises
    ------
    FileNotFoundError
        ``source`` does not exist.
    IMDbFormatError
        No recognised layout / split.
    ImportError
        ``"hf"`` without the ``datasets`` package.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if str(source) == "hf":
        try:
            import datasets  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise ImportError("source='hf' needs the 'datasets' package (pip install datasets)") from exc
        ds = datasets.load_dataset("imdb", split=split)  # pragma: no cover - network
        return [str(t) for t in ds["text"]], np.asarray(ds["label"], dtype=np.int64)  # pragma: no cover
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"IMDb data not found: {root}")
    if root.is_file():
        return read_table(root)
    for base in (root, root / "aclImdb"):
        if (base / split / "pos").is_dir() or (base / split / "neg").is_dir():
            return _read_acl(base / split)
    table = _split_table(root, split)
    if table is not None:
        return read_table(table)
    raise IMDbFormatError(
        f"{root}: no aclImdb layout ({split}/pos, {split}/neg) and no table file whose name contains {split!r}"
    )


# ---------------------------------------------------------------------------------------------
# preprocessing
# ---------------------------------------------------------------------------------------------
def encode_bytes(texts: Iterable[str | bytes], max_length: int = MAX_LENGTH, *,
                 offset: int = BYTE_OFFSET) -> tuple[np.ndarray, np.ndarray]:
    """Byte-level tokenisation: UTF-8 bytes + ``offset``, truncated / right-padded with 0.

    Parameters
    ----------
    texts : iterable of str or bytes
        ``str`` is UTF-8 encoded (a non-ASCII character gives several tokens); ``bytes`` are used as is.
    max_length : int, default 4096
        Output length L; longer texts are truncated (their first L bytes are kept).
    offset : int, default 1
        Added to every byte value (1: ``tfds`` ``ByteTextEncoder``, ids 1..256, 0 = padding).

    Returns
    -------
    tokens : ndarray, shape (n, L), int16
    lengths : ndarray, shape (n,), int64
        Number of non-padding tokens, ``min(len(bytes), L)``.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    if not 0 <= offset <= 32767 - 255:
        raise ValueError(f"offset out of range: {offset!r}")
    rows = [t if isinstance(t, (bytes, bytearray)) else str(t).encode("utf-8") for t in texts]
    tokens = np.full((len(rows), max_length), PAD_ID, dtype=np.int16)
    lengths = np.zeros(len(rows), dtype=np.int64)
    for i, b in enumerate(rows):
        arr = np.frombuffer(bytes(b[:max_length]), dtype=np.uint8)
        tokens[i, : arr.size] = arr.astype(np.int16) + offset
        lengths[i] = arr.size
    return tokens, lengths


def one_hot(tokens: np.ndarray, vocab_size: int = VOCAB_SIZE, dtype=np.float64) -> np.ndarray:
    """One-hot vectors of token ids, shape ``tokens.shape + (vocab_size,)`` — the input of the numpy
    model's linear encoder (``encoder.weight @ one_hot == embedding lookup``)."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size})")
    out = np.zeros(tokens.shape + (vocab_size,), dtype=dtype)
    np.put_along_axis(out, tokens[..., None].astype(np.int64), 1.0, axis=-1)
    return out


def token_logits(model, tokens: np.ndarray, batch_size: int = 64) -> np.ndarray:
    r"""Logits of a numpy :class:`~mor_lqo.deep.S4DModel` (or LQOModel) on token ids.

    Equivalent to ``model.forward(one_hot(tokens))`` without forming the one-hot tensor: the encoder
    output of token ``k`` is column ``k`` of ``encoder.weight`` plus the bias.
    """
    sd = model.state_dict()
    W = sd["encoder.weight"].astype(np.float64)  # (H, V)
    b = sd["encoder.bias"].astype(np.float64)
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= W.shape[1]):
        raise ValueError(f"token ids must lie in [0, {W.shape[1]})")
    out = []
    for s in range(0, len(tokens), batch_size):
        h = W.T[tokens[s : s + batch_size].astype(np.int64)] + b  # (B, L, H)
        for i in range(model.n_layers):
            h = model.layer(i, h)
        out.append(model.decode(h))
    return np.concatenate(out) if out else np.zeros((0, model.n_classes))


def numpy_accuracy(model, tokens: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> float:
    """Fraction of correctly classified sequences (numpy inference)."""
    return float(np.mean(token_logits(model, tokens, batch_size).argmax(-1) == np.asarray(labels)))


# ---------------------------------------------------------------------------------------------
# torch: training and evaluation (optional)
# ---------------------------------------------------------------------------------------------
def _token_model_class():
    import torch

    from mor_lqo.deep.torch_models import S4Model

    class TokenS4Model(S4Model):
        """:class:`~mor_lqo.deep.torch_models.S4Model` on token ids: the encoder's columns are the
        byte embeddings (same state dict as the one-hot model)."""

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, L) int -> (B, n_classes)
            x = torch.nn.functional.embedding(tokens.long(), self.encoder.weight.T) + self.encoder.bias
            x = x.transpose(-1, -2)
            for layer, norm, dropout in zip(self.s4_layers, self.norms, self.dropouts):
                z = x
                if self.prenorm:
                    z = norm(z.transpose(-1, -2)).transpose(-1, -2)
                z, _ = layer(z)
                x = dropout(z) + x
                if not self.prenorm:
                    x = norm(x.transpose(-1, -2)).transpose(-1, -2)
            return self.decoder(x.transpose(-1, -2).mean(dim=1))

    return TokenS4Model


def build_torch_model(state_dict=None, *, d_model=128, n_layers=4, d_state=64, dropout=0.1, ssm_lr=1e-3,
                      dt_min=1e-3, dt_max=1e-1):
    """A :class:`TokenS4Model`; with ``state_dict`` (numpy or torch) the sizes come from it, layer by
    layer (compressed models may have different numbers of modes per layer), and it is loaded strictly."""
    import torch

    from mor_lqo.deep.torch_models import S4DKernel

    cls = _token_model_class()
    if state_dict is None:
        return cls(d_input=VOCAB_SIZE, d_output=2, d_model=d_model, n_layers=n_layers, dropout=dropout,
                   d_state=d_state, lr=ssm_lr, dt_min=dt_min, dt_max=dt_max)
    sd = {k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()}
    H, V = sd["encoder.weight"].shape
    n_out = sd["decoder.weight"].shape[0]
    layers = sorted({int(k.split(".")[1]) for k in sd if k.startswith("s4_layers.")})
    modes = [sd[f"s4_layers.{i}.kernel.C"].shape[1] for i in layers]
    model = cls(d_input=V, d_output=n_out, d_model=H, n_layers=len(layers), dropout=0.0, d_state=2 * max(modes),
                lr=ssm_lr)
    for i, m in zip(layers, modes):
        model.s4_layers[i].kernel = S4DKernel(H, N=2 * m, lr=ssm_lr)
        model.s4_layers[i].n = 2 * m
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model


def torch_accuracy(model, tokens: np.ndarray, labels: np.ndarray, device: str = "cpu", batch_size: int = 32) -> float:
    """Test accuracy of a torch token model (eval mode, no gradients)."""
    import torch

    model = model.to(device).eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(tokens), batch_size):
            xb = torch.as_tensor(tokens[s : s + batch_size].astype(np.int64), device=device)
            correct += int((model(xb).argmax(-1).cpu().numpy() == labels[s : s + batch_size]).sum())
    return correct / max(len(tokens), 1)


def train(tokens: np.ndarray, labels: np.ndarray, *, epochs: int = 10, batch_size: int = 32, lr: float = 0.01,
          weight_decay: float = 0.05, device: str = "cpu", seed: int = 0, log=print, **model_kw):
    """Train a :class:`TokenS4Model` (AdamW, cosine schedule; SSM tensors lr ``ssm_lr``, no decay).

    Returns the trained model (on ``device``) and the training history.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_torch_model(**model_kw).to(device)
    ssm = [p for p in model.parameters() if hasattr(p, "_optim")]
    rest = [p for p in model.parameters() if not hasattr(p, "_optim")]
    opt = torch.optim.AdamW([{"params": rest, "lr": lr, "weight_decay": weight_decay},
                             {"params": ssm, "lr": model_kw.get("ssm_lr", 1e-3), "weight_decay": 0.0}])
    steps = epochs * int(np.ceil(len(tokens) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, model_kw.get("ssm_lr", 1e-3)], total_steps=steps,
                                                pct_start=0.1)
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(len(tokens))
        tot, loss_sum, correct = 0, 0.0, 0
        for s in range(0, len(perm), batch_size):
            idx = perm[s : s + batch_size]
            xb = torch.as_tensor(tokens[idx].astype(np.int64), device=device)
            yb = torch.as_tensor(labels[idx], device=device)
            out = model(xb)
            loss = torch.nn.functional.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(-1) == yb).sum())
            tot += len(idx)
        history.append({"epoch": epoch + 1, "loss": loss_sum / tot, "train_acc": correct / tot,
                        "time_s": round(time.perf_counter() - t0, 1)})
        log(f"epoch {epoch + 1}: loss {loss_sum / tot:.4f} train acc {correct / tot:.4f} "
            f"({time.perf_counter() - t0:.0f} s)")
    return model, history


# ---------------------------------------------------------------------------------------------
# pipeline
# ---------------------------------------------------------------------------------------------
def _ratios(text: str) -> list[str]:
    return [r.strip() for r in text.split(",") if r.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the pipeline."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="aclImdb dir, dir of train/test tables, or 'hf'")
    p.add_argument("--checkpoint", default=None, help="trained S4D checkpoint (skip training)")
    p.add_argument("--out", default="benchmarks/results/lra_imdb", help="output directory")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH)
    p.add_argument("--device", default="cpu", help="torch device for training/evaluation (cuda advised)")
    p.add_argument("--eval", choices=("torch", "numpy"), default="torch")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--d-state", type=int, default=64)
    p.add_argument("--methods", default="modal,bt,h2,bound")
    p.add_argument("--ratios", default="1/2,1/4,1/8,1/16,1/32")
    p.add_argument("--calib", type=int, default=16, help="calibration sequences (one-hot; 0 = data-free)")
    p.add_argument("--bound-samples", type=int, default=64, help="test sequences for bound vs measured error")
    p.add_argument("--limit", type=int, default=None, help="use only the first N train/test examples")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the LRA IMDb pipeline (see the module docstring); returns the JSON report."""
    args = parse_args(argv)
    from mor_lqo.deep import S4DModel, read_safetensors, write_safetensors
    from mor_lqo.deep.bound import output_error_bound
    from mor_lqo.deep.compress import compress

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    texts_tr, y_tr = load_imdb(args.data, "train")
    texts_te, y_te = load_imdb(args.data, "test")
    rng = np.random.default_rng(args.seed)
    if args.limit:
        sel_tr = rng.permutation(len(texts_tr))[: args.limit]
        sel_te = rng.permutation(len(texts_te))[: args.limit]
        texts_tr, y_tr = [texts_tr[i] for i in sel_tr], y_tr[sel_tr]
        texts_te, y_te = [texts_te[i] for i in sel_te], y_te[sel_te]
    x_tr, len_tr = encode_bytes(texts_tr, args.max_length)
    x_te, _ = encode_bytes(texts_te, args.max_length)
    log(f"IMDb: train {x_tr.shape}, test {x_te.shape}, median length {int(np.median(len_tr))} bytes, "
        f"truncated {np.mean(len_tr >= args.max_length):.1%}")

    report: dict = {"data": str(args.data), "max_length": args.max_length, "n_train": len(x_tr),
                    "n_test": len(x_te), "rows": []}
    if args.checkpoint:
        sd, _ = read_safetensors(args.checkpoint)
    else:
        model_t, hist = train(x_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                              seed=args.seed, log=log, d_model=args.d_model, n_layers=args.n_layers,
                              d_state=args.d_state)
        sd = {k: v.detach().cpu().numpy() for k, v in model_t.state_dict().items()}
        write_safetensors(out / "imdb_s4d.safetensors", sd, metadata={"task": "lra_imdb"})
        report["training"] = hist
    base = S4DModel.from_state_dict(sd)

    def accuracy(model) -> float:
        if args.eval == "torch":
            return torch_accuracy(build_torch_model(model.state_dict()), x_te, y_te, args.device)
        return numpy_accuracy(model, x_te, y_te)

    acc0 = accuracy(base)
    p0 = base.num_parameters()
    log(f"original: test accuracy {acc0:.4f}, parameters {p0}")
    report["original"] = {"accuracy": acc0, "params": p0}
    x_cal = one_hot(x_tr[: args.calib]) if args.calib > 0 else None
    x_b = x_te[: args.bound_samples]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if x_cal is None:
        methods = [m for m in methods if m != "bound"]
    for method in methods:
        for ratio in _ratios(args.ratios):
            t0 = time.perf_counter()
            kw = {"inputs": x_cal} if x_cal is not None else {"length": args.max_length}
            res = compress(base, method=method, ratio=ratio, progress=False, **kw)
            t_red = time.perf_counter() - t0
            acc = accuracy(res.model)
            bnd = output_error_bound(base, res.model, inputs=one_hot(x_b))
            row = {"method": method, "ratio": ratio, "accuracy": acc,
                   "ssm_params": res.params["ssm"]["after"], "ssm_params_before": res.params["ssm"]["before"],
                   "total_params": res.params["total"]["after"], "total_params_before": res.params["total"]["before"],
                   "orders": [lay["order_after"] for lay in res.layers], "bound": float(bnd.value),
                   "measured_max_error": float(bnd.measured_max), "time_s": round(t_red, 2)}
            report["rows"].append(row)
            log(f"{method:>6} {ratio:>5}: acc {acc:.4f}  SSM params {row['ssm_params']}/{row['ssm_params_before']}"
                f"  bound {row['bound']:.3g} >= measured {row['measured_max_error']:.3g}  ({t_red:.1f} s)")
    with open(out / "lra_imdb.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(report["rows"][0]) if report["rows"] else ["method"])
        w.writeheader()
        for r in report["rows"]:
            w.writerow({**r, "orders": " ".join(map(str, r["orders"]))})
    (out / "lra_imdb.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {out / 'lra_imdb.csv'} and {out / 'lra_imdb.json'}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
