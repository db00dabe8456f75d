"""Fault injection: a training run SIGKILLed at random moments, over and over, resumes exactly.

A forked child process trains a tiny GPT and writes ``last.pt`` (and ``best.pt``) after every step; it is
killed at fixed pseudo-random offsets (in units of the time a step takes), most of them in the
middle of a save, and restarted with
``resume`` each time.  After every kill the checkpoint on disk must load (an intact checkpoint is
never refused); in the end the run's losses must equal an uninterrupted run's, bit for bit, and no
temporary file of the killed saves may remain.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import sys
import time

import pytest
import torch

from lmcore.models import GPT, GPTConfig
from lmcore.training import TrainConfig, Trainer
from lmcore.training.checkpoint import load_checkpoint

KILLS = 30
STEPS = 400
pytestmark = pytest.mark.skipif(sys.platform == "win32" or "fork" not in mp.get_all_start_methods(),
                                reason="needs SIGKILL and fork (POSIX)")


def _train(out_dir: str) -> None:
    """One life of the run: resume from out_dir if it holds a checkpoint, then train to the end."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, context_length=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
    data = torch.randint(13, (3000,), generator=torch.Generator().manual_seed(0))
    config = TrainConfig(max_steps=STEPS, batch_size=4, warmup_steps=5, eval_interval=1, eval_iters=1,
                         progress=False, device="cpu", out_dir=out_dir)
    trainer = Trainer(model, config, data[:2500], data[2500:])
    if os.path.exists(os.path.join(out_dir, "last.pt")):
        trainer.resume()
    trainer.train()


def _life(out_dir: str, kill_after: float | None) -> int:
    """Run one life in a forked child (cheap: torch is imported already); kill it after ``kill_after`` s."""
    child = mp.get_context("fork").Process(target=_train, args=(out_dir,))
    child.start()
    if kill_after is not None:
        child.join(kill_after)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
    child.join(120)
    assert child.exitcode is not None, "the child hung"
    return child.exitcode


def _losses(out_dir) -> tuple[list, list]:
    history = load_checkpoint(out_dir)["history"]
    return ([r["train_loss"] for r in history if "train_loss" in r],
            [(r["step"], r["val_loss"]) for r in history if "val_loss" in r])


def test_sigkill_at_random_moments_then_resume_is_exact(tmp_path):
    reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:       # in this process: also does the lazy imports and set-ups, so the forked lives start at once
        _train(reference)
    finally:
        torch.set_num_threads(threads)
    # Kill times are fixed pseudo-random multiples of this machine's time per step (train, evaluate,
    # save twice): on any machine a life lasts one to eight steps, and most kills land in a save.
    step_s = (time.perf_counter() - t0) / STEPS
    rng = random.Random(15)
    kills, killed_in_save, steps = 0, 0, [0]
    for _ in range(KILLS):
        code = _life(killed, rng.uniform(1, 8) * step_s)
        assert code in (0, -signal.SIGKILL), f"the child failed on its own (exit code {code})"
        if code == 0:                                     # it finished before the kill: nothing left to test
            break
        if os.path.exists(os.path.join(killed, "last.pt")):
            kills += 1
            killed_in_save += any(name.endswith(".tmp") for name in os.listdir(killed))
            for tag in ("last", "best"):                  # never refused: every rename left an intact file
                load_checkpoint(killed, tag=tag)
            steps.append(load_checkpoint(killed)["step"])
    assert kills >= 20, f"only {kills} kills landed after a first checkpoint"
    assert steps == sorted(steps) and steps[-1] < STEPS   # each life got further; none finished the run
    assert _life(killed, None) == 0                       # the last life finishes the run
    assert load_checkpoint(killed)["step"] == STEPS
    assert _losses(killed) == _losses(reference)          # == on floats: bit for bit
    assert [n for n in os.listdir(killed) if n.endswith(".tmp")] == [], "temporary files of killed saves remain"
    # (how many kills interrupted a save varies with the machine's speed; printed for the record)
    print(f"{kills} kills, {killed_in_save} of them left a half-written temporary file, steps {steps}")
