"""Prepared corpora: uint16 .bin files with a sha256 manifest, opened as memmaps, trained on exactly
like the same ids in memory."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmcore import data
from lmcore.cli import main
from lmcore.models import GPT, GPTConfig
from lmcore.tokenizers import CharTokenizer
from lmcore.training import TrainConfig, Trainer, open_prepared, prepare_corpus


@pytest.fixture
def toy(tmp_path):
    train_text, val_text = data.toy_corpus("val")[:6000], data.toy_corpus("val")[6000:8000]
    tok = CharTokenizer().train(train_text + val_text)
    out = tmp_path / "prepared"
    prepare_corpus(tok.encode(train_text), tok.encode(val_text), tok, out)
    return out, tok, train_text, val_text


def test_prepared_files_hold_the_ids_and_are_checked(toy):
    out, tok, train_text, val_text = toy
    prepared = open_prepared(out)
    assert isinstance(prepared.train, np.memmap) and prepared.train.dtype == np.uint16
    assert prepared.train.tolist() == tok.encode(train_text) and prepared.val.tolist() == tok.encode(val_text)
    assert prepared.tokenizer.encode(train_text) == tok.encode(train_text)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tokens"] == {"train": len(train_text), "val": len(val_text)}
    with pytest.raises(FileExistsError, match="force"):                   # never overwritten by accident
        prepare_corpus([1, 2], [1, 2], tok, out)
    prepare_corpus([1, 2, 3], [2, 1], tok, out, force=True)
    assert open_prepared(out).train.tolist() == [1, 2, 3]
    blob = bytearray((out / "train.bin").read_bytes())
    blob[0] ^= 1
    (out / "train.bin").write_bytes(bytes(blob))                          # one flipped bit
    with pytest.raises(ValueError, match="sha256"):
        open_prepared(out)
    (out / "train.bin").write_bytes(bytes(blob[:2]))                      # truncated
    with pytest.raises(ValueError, match="sha256"):
        open_prepared(out)
    with pytest.raises(FileNotFoundError, match="prepare"):
        open_prepared(out.parent / "nothing")


def test_prepare_refuses_what_uint16_cannot_hold(tmp_path):
    tok = CharTokenizer().train("abc")
    with pytest.raises(ValueError, match="outside"):
        prepare_corpus([0, 1, 5], [0, 1], tok, tmp_path / "a")            # id 5 >= vocab_size 3
    with pytest.raises(ValueError, match="at least 2"):
        prepare_corpus([0, 1], [1], tok, tmp_path / "b")
    big = CharTokenizer().train("".join(chr(0x100 + i) for i in range(2**16 + 1)))
    with pytest.raises(ValueError, match="65,536"):
        prepare_corpus([0, 1], [0, 1], big, tmp_path / "c")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_a_memmapped_corpus_trains_exactly_like_the_same_ids_in_memory(toy):
    out, tok, train_text, val_text = toy
    prepared = open_prepared(out)
    in_memory = (torch.tensor(tok.encode(train_text)), torch.tensor(tok.encode(val_text)))
    runs = []
    for train, val in (in_memory, (prepared.train, prepared.val)):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=16, n_layer=1, n_head=2, n_embd=16,
                              dropout=0.1))
        trainer = Trainer(model, TrainConfig(max_steps=8, batch_size=4, warmup_steps=2, eval_interval=4, eval_iters=2,
                                             progress=False, device="cpu"), train, val)
        assert trainer.train_data is train                                 # the memmap is not copied
        trainer.train()
        runs.append(([{k: v for k, v in r.items() if k != "elapsed_s"} for r in trainer.history],
                     [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]                                        # == on floats: bit for bit
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_cli_prepare_then_train_from_it(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(data.toy_corpus("val")[:8000], encoding="utf-8")
    prepared = tmp_path / "prepared"
    assert main(["prepare", "--corpus", str(corpus), "--out", str(prepared)]) == 0
    assert "prepared" in capsys.readouterr().out
    assert main(["prepare", "--corpus", str(corpus), "--out", str(prepared)]) == 2        # no --force
    assert "--force" in capsys.readouterr().err
    assert main(["prepare", "--corpus", str(corpus), "--out", str(prepared), "--force"]) == 0
    run = tmp_path / "run"
    args = ["train", "--data", str(prepared), "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--context-length", "16", "--batch-size", "4", "--eval-interval", "3", "--eval-iters", "1",
            "--device", "cpu", "--no-progress", "--out", str(run)]
    assert main([*args, "--steps", "3"]) == 0
    assert main([*args, "--steps", "5", "--resume"]) == 0
    assert "starting at step 3" in capsys.readouterr().out
