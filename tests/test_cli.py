"""The command-line tools, run as a student would: in a subprocess, on a tiny corpus."""
from __future__ import annotations

import os
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
    assert {"last.pt", "last.pt.sha256", "best.pt", "tokenizer.json"} <= {p.name for p in out.iterdir()}

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
