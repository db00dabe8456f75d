"""The command-line tools, run as a student would: in a subprocess, on a tiny corpus."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from lmcore import data

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--context-length", "16", "--batch-size", "4",
        "--eval-interval", "3", "--eval-iters", "2", "--warmup", "2", "--device", "cpu", "--no-progress"]


def _run(*args: str, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=300)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_train_resume_generate(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(data.toy_corpus("val")[:20_000], encoding="utf-8")
    out = tmp_path / "run"
    first = _run("lmcore", "train", "--corpus", str(corpus), *TINY, "--steps", "6", "--out", str(out))
    assert "starting at step 0" in first.stdout and "val loss" in first.stdout
    assert {p.name for p in out.iterdir()} == {"last.pt", "best.pt", "tokenizer.json"}   # checksums inside

    again = _run("lmcore", "train", "--corpus", str(corpus), *TINY, "--steps", "8", "--out", str(out), "--resume")
    assert "starting at step 6" in again.stdout

    wrong = _run("lmcore", "train", "--corpus", str(corpus), *TINY[:5], "32", *TINY[6:], "--steps", "8",
                 "--out", str(out), "--resume", check_rc=2)
    assert "error:" in wrong.stderr and "n_embd" in wrong.stderr

    gen = _run("lmcore", "sample", "--ckpt", str(out), "--prompt", "the cat", "--max-new-tokens", "20",
               "--top-k", "5", "--temperature", "0.8", "--device", "cpu")
    text = gen.stdout.rstrip("\n")
    assert text.startswith("the cat") and len(text) == len("the cat") + 20

    bad = _run("lmcore", "sample", "--ckpt", str(out), "--prompt", "ZEBRA!", "--device", "cpu", check_rc=2)
    assert "not in the vocabulary" in bad.stderr
    bad_p = _run("lmcore", "sample", "--ckpt", str(out), "--top-p", "1.5", "--device", "cpu", check_rc=2)
    assert "top_p" in bad_p.stderr


@pytest.mark.slow
def test_help_and_bad_arguments(tmp_path):
    top = _run("lmcore", "--help").stdout
    assert "usage: python -m lmcore" in top and all(c in top for c in ("train", "sample", "zoo"))
    for command in ("train", "sample", "zoo"):
        assert f"usage: python -m lmcore {command}" in _run("lmcore", command, "--help").stdout
    lr = _run("lmcore", "train", "--corpus", "toy", "--lr", "0", "--out", str(tmp_path), check_rc=2)
    assert "TrainConfig.lr must be a finite number > 0" in lr.stderr
    missing = _run("lmcore", "sample", "--ckpt", str(tmp_path / "nothing"), check_rc=2)
    assert "no checkpoint" in missing.stderr


# --- in-process: bad and missing arguments end in exit 2 and a clear message, never a traceback ---------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny CLI run, an MLP run, a run whose tokenizer is too small, and a plain file."""
    import shutil

    import torch

    from lmcore.cli import main
    from lmcore.models import MLPLanguageModel
    from lmcore.models.mlp import MLPConfig
    from lmcore.training import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("cli")
    corpus = root / "corpus.txt"
    corpus.write_text(data.toy_corpus("val")[:5000], encoding="utf-8")
    assert main(["train", "--corpus", str(corpus), *TINY, "--steps", "2", "--out", str(root / "run")]) == 0
    torch.manual_seed(0)
    mlp = MLPLanguageModel(MLPConfig(vocab_size=27, context_length=3, n_embd=4, n_hidden=8))
    ids = torch.randint(27, (500,))
    Trainer(mlp, TrainConfig(max_steps=1, batch_size=2, seq_len=3, eval_interval=1, eval_iters=1, progress=False,
                             device="cpu", out_dir=str(root / "mlp")), ids, ids).train()
    shutil.copy(root / "run" / "tokenizer.json", root / "mlp" / "tokenizer.json")
    # a GPT run written by the Trainer alone (no tokenizer checksum recorded) with a too-small tokenizer
    from lmcore.zoo import load_model
    model, tok = load_model(root / "run", device="cpu")
    small = root / "small"
    Trainer(model, TrainConfig(max_steps=1, batch_size=2, seq_len=8, eval_interval=1, eval_iters=1, progress=False,
                               device="cpu", out_dir=str(small)), ids % tok.vocab_size).train()
    from lmcore.tokenizers import CharTokenizer
    CharTokenizer().train(tok.decode(list(range(tok.vocab_size - 3)))).save(small / "tokenizer.json")
    (root / "afile").write_text("not a directory")
    return root


_T = ["--corpus", "{corpus}", *TINY, "--steps", "2"]
BAD = [   # (argv, words the message must contain); {root} and {corpus} are filled in
    (["train", *_T, "--out", "{root}/run"], ["already holds the checkpoints", "--resume", "--force"]),
    (["train", *_T, "--out", "{root}/afile"], ["is a file"]),
    (["train", *_T, "--out", "{root}/afile", "--resume"], ["--resume", "tokenizer.json"]),
    (["train", *_T, "--out", "{root}/run", "--resume", "--force"], ["only one"]),
    (["train", *_T, "--out", "{root}/none", "--resume"], ["earlier run"]),
    (["train", "--corpus", "nosuchcorpus", *TINY, "--out", "{root}/o"], ["unknown corpus", "tinyshakespeare"]),
    (["train", "--corpus", "{root}/missing.txt", *TINY, "--out", "{root}/o"], ["no such text file"]),
    (["train", *_T, "--out", "{root}/o", "--seed", str(2**70)], ["--seed", "[0, 9223372036854775807]"]),
    (["train", *_T, "--out", "{root}/o", "--seed", "-1"], ["--seed"]),
    (["train", *_T, "--out", "{root}/o", "--steps", "0"], ["--steps", ">= 1"]),
    (["train", *_T, "--out", "{root}/o", "--steps", "ten"], ["--steps", "expected an integer"]),
    (["train", *_T, "--out", "{root}/o", "--batch-size", "0"], ["--batch-size"]),
    (["train", *_T, "--out", "{root}/o", "--n-embd", "15"], ["n_embd", "n_head"]),
    (["train", *_T, "--out", "{root}/o", "--lr", "nan"], ["TrainConfig.lr"]),
    (["train", *_T, "--out", "{root}/o", "--val-fraction", "1.5"], ["val_fraction"]),
    (["train", *_T, "--out", "{root}/o", "--warmup", "-1"], ["--warmup"]),
    (["train", *_T, "--out", "{root}/o", "--device", "tpu"], ["device"]),
    (["train", *_T], ["--out"]),
    (["sample"], ["--ckpt", "--zoo"]),
    (["sample", "--ckpt", "{root}/nothing"], ["no checkpoint"]),
    (["sample", "--ckpt", "{root}/afile"], ["not an lmcore checkpoint"]),
    (["sample", "--ckpt", "{root}/run", "--max-new-tokens", "10000000000000"], ["--max-new-tokens", "1000000"]),
    (["sample", "--ckpt", "{root}/run", "--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["sample", "--ckpt", "{root}/run", "--num-samples", "0"], ["--num-samples"]),
    (["sample", "--ckpt", "{root}/small", "--device", "cpu"], ["has 23 tokens", "vocab_size=26"]),
    (["sample", "--ckpt", "{root}/mlp", "--device", "cpu"], ["not a GPT checkpoint", "MLPLanguageModel"]),
    (["sample", "--ckpt", "{root}/run", "--seed", str(2**70)], ["--seed"]),
    (["sample", "--ckpt", "{root}/run", "--temperature", "-1", "--device", "cpu"], ["temperature"]),
    (["sample", "--ckpt", "{root}/run", "--top-k", "0"], ["--top-k"]),
    (["sample", "--ckpt", "{root}/run", "--top-p", "0", "--device", "cpu"], ["top_p"]),
    (["sample", "--ckpt", "{root}/run", "--prompt", "", "--device", "cpu"], ["--prompt is empty"]),
    (["sample", "--ckpt", "{root}/run", "--prompt", "ZZZ", "--device", "cpu"], ["not in the vocabulary"]),
    (["sample", "--zoo", "gpt-5"], ["unknown model", "toy-char"]),
    (["zoo"], ["required"]),
    (["zoo", "verify", "gpt-5"], ["unknown model"]),
    (["zoo", "ship", "toy-char"], ["--force"]),
    (["zoo", "retrain", "toy-char", "--out", "{root}/afile"], ["exists", "--force"]),
    ([], ["required"]),
    (["frobnicate"], ["invalid choice"]),
]


@pytest.mark.parametrize("argv, words", BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_bad_arguments_exit_2_with_a_clear_message(runs, capsys, argv, words):
    from lmcore.cli import main

    argv = [a.format(root=runs, corpus=runs / "corpus.txt") for a in argv]
    try:
        rc = main(argv)
    except SystemExit as e:           # argparse's errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert all(w in err for w in words), err
    assert "Traceback" not in err


def test_a_fresh_run_refuses_an_earlier_runs_directory_and_force_replaces_it(runs, capsys):
    from lmcore.cli import main

    run = runs / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = ["train", "--corpus", str(runs / "corpus.txt"), *TINY, "--steps", "2", "--out", str(run)]
    assert main(argv) == 2
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before     # nothing was touched, not even tokenizer.json
    forced = runs / "forced"
    shutil.copytree(run, forced)
    assert main(argv[:-1] + [str(forced), "--force", "--seed", "7"]) == 0
    assert (forced / "last.pt").read_bytes() != before["last.pt"]
    capsys.readouterr()


def test_a_changed_tokenizer_is_refused_by_resume_and_sample(runs, capsys, tmp_path):
    """One letter changed ('u' -> 'v': a valid tokenizer of the same size); only the recorded sha256 can tell."""
    from lmcore.cli import main
    from lmcore.tokenizers import CharTokenizer, load_tokenizer

    run = tmp_path / "run"
    shutil.copytree(runs / "run", run)
    chars = "".join(load_tokenizer(run / "tokenizer.json").chars)
    assert "u" in chars and "v" not in chars
    CharTokenizer().train(chars.replace("u", "v")).save(run / "tokenizer.json")
    corpus = tmp_path / "no_u.txt"           # a text the changed tokenizer can encode
    corpus.write_text((runs / "corpus.txt").read_text(encoding="utf-8").replace("u", "v"), encoding="utf-8")
    rc = main(["train", "--corpus", str(corpus), *TINY, "--steps", "3", "--out", str(run), "--resume"])
    assert rc == 2 and "not the tokenizer this run was trained with" in capsys.readouterr().err
    assert main(["sample", "--ckpt", str(run), "--device", "cpu"]) == 2
    assert "not the tokenizer this run was trained with" in capsys.readouterr().err
