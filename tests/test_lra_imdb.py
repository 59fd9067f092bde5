"""LRA IMDb path (benchmarks/lra_imdb.py): loaders on tiny generated samples in every supported layout,
byte-level preprocessing, the token model twins, and a pipeline smoke run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from benchmarks.lra_imdb import (
    MAX_LENGTH,
    PAD_ID,
    VOCAB_SIZE,
    IMDbFormatError,
    encode_bytes,
    load_imdb,
    one_hot,
    parse_label,
    read_table,
    token_logits,
)

SAMPLE = {
    "train": [
        ("A wonderful film, truly moving.", 1),
        ("Boring.\tTwo hours I will never get back, \"sadly\".", 0),
        ("Café scenes were great — 10/10!", 1),
        ("Worst, acting, ever", 0),
    ],
    "test": [
        ("Not bad at all", 1),
        ("Terrible plot; awful\nending", 0),
    ],
}


def _acl(root):
    for split, rows in SAMPLE.items():
        for i, (text, lab) in enumerate(rows):
            d = root / "aclImdb" / split / ("pos" if lab else "neg")
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i}_{7 if lab else 2}.txt").write_text(text, encoding="utf-8")
    return root


def _table(root, fmt):
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in SAMPLE.items():
        if fmt == "jsonl":
            with open(root / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for t, lab in rows:
                    f.write(json.dumps({"text": t, "label": lab}) + "\n")
            continue
        delim = "\t" if fmt.startswith("tsv") else ","
        ext = "tsv" if fmt.startswith("tsv") else "csv"
        name = {"tsv_lra": f"imdb_{split}", "csv_noheader": f"{split}-data"}.get(fmt, split)
        with open(root / f"{name}.{ext}", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter=delim)
            if fmt == "tsv":
                w.writerow(["label", "text"])
                w.writerows([(lab, t) for t, lab in rows])
            elif fmt == "tsv_lra":  # LRA release naming: Source (input) / Target (label)
                w.writerow(["Source", "Target"])
                w.writerows([(t, "pos" if lab else "neg") for t, lab in rows])
            else:  # no header, text first
                w.writerows([(t, lab) for t, lab in rows])
    return root


def _sorted(texts, labels):
    return sorted(zip(texts, labels.tolist()))


@pytest.mark.parametrize("fmt", ["acl", "tsv", "tsv_lra", "csv_noheader", "jsonl"])
def test_loader_all_layouts(tmp_path, fmt):
    root = _acl(tmp_path) if fmt == "acl" else _table(tmp_path / fmt, fmt)
    for split, rows in SAMPLE.items():
        texts, labels = load_imdb(root, split)
        assert labels.dtype == np.int64 and len(texts) == len(rows)
        assert _sorted(texts, labels) == sorted(rows)  # exact texts incl. tabs, quotes, newlines, UTF-8
    if fmt == "acl":  # the aclImdb directory itself works too
        assert len(load_imdb(root / "aclImdb", "test")[0]) == 2


def test_single_file_and_errors(tmp_path):
    root = _table(tmp_path / "t", "tsv")
    texts, labels = read_table(root / "train.tsv")
    assert _sorted(texts, labels) == sorted(SAMPLE["train"])
    with pytest.raises(FileNotFoundError):
        load_imdb(tmp_path / "missing", "train")
    with pytest.raises(ValueError):
        load_imdb(root, "validation")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IMDbFormatError, match="no aclImdb layout"):
        load_imdb(empty, "train")
    (root / "train_copy.csv").write_text("label,text\n1,x\n")
    with pytest.raises(IMDbFormatError, match="several files"):
        load_imdb(root, "train")
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\ttext\nmaybe\tsome text\n")
    with pytest.raises(IMDbFormatError, match="unrecognised label"):
        read_table(bad)
    nolab = tmp_path / "nolab.tsv"
    nolab.write_text("a\tb\nc\td\n")
    with pytest.raises(IMDbFormatError, match="labels"):
        read_table(nolab)
    (tmp_path / "e.jsonl").write_text('{"review": "x"}\n')
    with pytest.raises(IMDbFormatError, match="text and a label"):
        read_table(tmp_path / "e.jsonl")
    (tmp_path / "z.tsv").write_text("\n\n")
    with pytest.raises(IMDbFormatError, match="empty"):
        read_table(tmp_path / "z.tsv")


def test_parse_label():
    assert [parse_label(v) for v in (0, 1, "pos", " NEG ", "Positive", "negative", "1.0")] == [0, 1, 1, 0, 1, 0, 1]
    for bad in ("2", "neutral", ""):
        with pytest.raises(IMDbFormatError):
            parse_label(bad)


def test_encode_bytes():
    tok, lens = encode_bytes(["Hi!", "é", b"\x00\xff", ""], max_length=4)
    assert tok.shape == (4, 4) and lens.tolist() == [3, 2, 2, 0]
    assert tok[0].tolist() == [ord("H") + 1, ord("i") + 1, ord("!") + 1, PAD_ID]
    assert tok[1].tolist() == [0xC3 + 1, 0xA9 + 1, 0, 0]  # UTF-8 of é, shifted by one
    assert tok[2].tolist() == [1, 256, 0, 0] and tok.max() < VOCAB_SIZE
    assert tok[3].tolist() == [0, 0, 0, 0]
    long = "x" * (MAX_LENGTH + 10)
    t2, l2 = encode_bytes([long])
    assert t2.shape == (1, MAX_LENGTH) and l2[0] == MAX_LENGTH and np.all(t2 == ord("x") + 1)
    t3, _ = encode_bytes(["ab"], 3, offset=0)
    assert t3.tolist() == [[97, 98, 0]]
    # decoding back gives the (truncated) text
    assert bytes((tok[0, : lens[0]] - 1).astype(np.uint8).tolist()).decode() == "Hi!"
    with pytest.raises(ValueError):
        encode_bytes(["a"], 0)


def test_one_hot():
    tok = np.array([[1, 0, 256]])
    oh = one_hot(tok)
    assert oh.shape == (1, 3, VOCAB_SIZE) and np.all(oh.sum(-1) == 1)
    assert np.array_equal(oh.argmax(-1), tok)
    with pytest.raises(ValueError):
        one_hot(np.array([VOCAB_SIZE]))


@pytest.fixture(scope="module")
def tiny_model():
    torch = pytest.importorskip("torch")
    from benchmarks.lra_imdb import build_torch_model

    torch.manual_seed(0)
    return build_torch_model(d_model=6, n_layers=2, d_state=8, dropout=0.0)


def test_token_model_twins(tiny_model):
    """torch TokenS4Model (embedding lookup) == numpy token_logits == numpy forward on one-hot inputs."""
    import torch

    from mor_lqo.deep import S4DModel

    sd = {k: v.detach().numpy() for k, v in tiny_model.state_dict().items()}
    model = S4DModel.from_state_dict(sd)
    assert model.d_input == VOCAB_SIZE
    tok, _ = encode_bytes(["great movie", "awful", "ok"], 32)
    via_tokens = token_logits(model, tok, batch_size=2)
    via_onehot = model.forward(one_hot(tok))
    np.testing.assert_allclose(via_tokens, via_onehot, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        t = tiny_model.eval()(torch.as_tensor(tok.astype(np.int64))).double().numpy()
    np.testing.assert_allclose(via_tokens, t, rtol=1e-4, atol=1e-5)


def test_build_torch_model_per_layer_modes(tiny_model):
    """A state dict with different numbers of modes per layer (bound allocation) loads strictly."""
    import torch

    from benchmarks.lra_imdb import build_torch_model, torch_accuracy
    from mor_lqo.deep import S4DModel

    sd = {k: v.detach().numpy().copy() for k, v in tiny_model.state_dict().items()}
    for key in ("kernel.C", "kernel.log_A_real", "kernel.A_imag"):
        sd[f"s4_layers.1.{key}"] = sd[f"s4_layers.1.{key}"][:, :1]
    m = build_torch_model(sd)
    assert m.s4_layers[0].kernel.C.shape[1] == 4 and m.s4_layers[1].kernel.C.shape[1] == 1
    tok, _ = encode_bytes(["abc", "de"], 16)
    with torch.no_grad():
        t = m.eval()(torch.as_tensor(tok.astype(np.int64))).double().numpy()
    np.testing.assert_allclose(t, token_logits(S4DModel.from_state_dict(sd), tok), rtol=1e-4, atol=1e-5)
    acc = torch_accuracy(m, tok, np.array([0, 1]))
    assert acc in (0.0, 0.5, 1.0)


def test_pipeline_smoke(tmp_path):
    """Train one epoch of a tiny model on the sample, compress (modal, h2, bound), write CSV/JSON."""
    pytest.importorskip("torch")
    from benchmarks.lra_imdb import main

    root = _acl(tmp_path / "data")
    out = tmp_path / "out"
    rep = main(["--data", str(root), "--out", str(out), "--max-length", "48", "--epochs", "1",
                "--batch-size", "2", "--d-model", "4", "--n-layers", "2", "--d-state", "8",
                "--methods", "modal,h2,bound", "--ratios", "1/2", "--calib", "3", "--bound-samples", "2"])
    assert (out / "lra_imdb.csv").is_file() and (out / "imdb_s4d.safetensors").is_file()
    saved = json.loads((out / "lra_imdb.json").read_text())
    assert saved["n_train"] == 4 and saved["n_test"] == 2 and len(saved["rows"]) == 3
    for row in rep["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["ssm_params"] < row["ssm_params_before"]
        assert row["bound"] >= row["measured_max_error"]
    # the checkpoint path skips training and gives the same original accuracy
    rep2 = main(["--data", str(root), "--out", str(tmp_path / "o2"), "--max-length", "48",
                 "--checkpoint", str(out / "imdb_s4d.safetensors"), "--methods", "modal", "--ratios", "1/2",
                 "--calib", "0", "--eval", "numpy", "--bound-samples", "2"])
    assert rep2["original"]["accuracy"] == rep["original"]["accuracy"]
    assert "training" not in rep2 and len(rep2["rows"]) == 1
