"""The ONNX export of the book's toy-char model (tools/export_onnx.py), run by onnxruntime in Python.

The HTML book's explorer (chapters 1 and 8) runs this file in the reader's browser, so its logits
must be lmcore's: onnxruntime's agree with ``GPT.forward`` within 1e-5 on fixed prompts of several
lengths, the context length included. The metadata the page reads describes the model, and a
corrupt or stale export is refused.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import lmcore

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra")
pytest.importorskip("onnxscript", reason="onnxscript (the dynamo exporter's) is in the dev extra")
import export_onnx  # noqa: E402  (tools/, on sys.path through conftest.py)

NAME = "toy-char"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    export_onnx.export(NAME, out)
    return out


@pytest.fixture(scope="module")
def model():
    return lmcore.pretrained(NAME, device="cpu")


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch,length", [(1, 1), (1, 15), (3, 64), (2, 127), (2, 128)])
def test_onnxruntime_logits_equal_lmcore(exported, model, batch, length):
    gpt, tok = model
    assert length <= gpt.config.context_length
    story = "tom likes the quiet frogs. he sees the cat.\n" * 4
    g = torch.Generator().manual_seed(length)
    starts = torch.randint(0, len(story) - length, (batch,), generator=g).tolist()
    ids = torch.tensor([tok.encode(story[s:s + length]) for s in starts], dtype=torch.long)
    with torch.no_grad():
        want = gpt(ids, last_only=True)[0][:, -1].numpy()            # (batch, vocab)
    got = _session(exported / f"{NAME}.onnx").run(["logits"], {"ids": ids.numpy()})[0]
    assert got.shape == want.shape == (batch, gpt.config.vocab_size)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_metadata_describes_the_model(exported, model):
    gpt, tok = model
    meta = export_onnx.verify_export(exported, NAME)
    assert meta["vocab"] == [tok.decode([i]) for i in range(gpt.config.vocab_size)]
    assert "".join(meta["vocab"]) == "\n .abcdefghijklmnopqrstuwy"
    assert (meta["context_length"], meta["vocab_size"]) == (gpt.config.context_length, gpt.config.vocab_size)
    assert meta["onnx_bytes"] == (exported / f"{NAME}.onnx").stat().st_size


def test_export_is_reproducible(exported, tmp_path):
    """The same weights give the same bytes, so a checksum names one export."""
    again = export_onnx.export(NAME, tmp_path)
    assert again["sha256"] == json.loads((exported / f"{NAME}.json").read_text())["sha256"]


@pytest.mark.parametrize("damage", ["onnx", "script", "stale"])
def test_corrupt_or_stale_export_is_refused(exported, tmp_path, damage):
    for suffix in (".onnx", ".js", ".json"):
        shutil.copy(exported / f"{NAME}{suffix}", tmp_path / f"{NAME}{suffix}")
    export_onnx.verify_export(tmp_path, NAME)                     # the copy is fine ...
    if damage == "onnx":
        path = tmp_path / f"{NAME}.onnx"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1                                 # one flipped bit in the weights
        path.write_bytes(bytes(data))
    elif damage == "script":
        path = tmp_path / f"{NAME}.js"
        text = path.read_text()
        i = text.index('"onnx_gzip_base64": "') + 2000
        path.write_text(text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:])
    else:
        path = tmp_path / f"{NAME}.json"
        meta = json.loads(path.read_text())
        meta["weights_sha256"] = "0" * 64                          # exported from other weights
        path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="stale" if damage == "stale" else "corrupt"):   # ... the damage is not
        export_onnx.verify_export(tmp_path, NAME)


def test_toy_grammar_lists_the_languages_words():
    g = export_onnx.toy_grammar()
    toy = lmcore.data.ToyLanguage()
    words = {w for s in toy.sample(500, seed=0) for w in s.replace(".", " ").split()}
    listed = (set(g["names"]) | set(g["names"].values()) | set(g["nouns"]) | {n + "s" for n in g["nouns"]}
              | set(g["adjectives"]) | set(g["verbs"]) | {v + "s" for v in g["verbs"]} | {"the", "that"})
    assert words <= listed and len(words) > 40
