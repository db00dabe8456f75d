"""The Trainer's GPU choices, checked on a CPU: precision by compute capability, when to compile,
TF32, pinned batches, DDP buffers, and training steps that never read a value back from the device."""
from __future__ import annotations

import importlib.util
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import lmcore
from lmcore.cli import build_parser
from lmcore.models import GPT, GPTConfig
from lmcore.training import NonFiniteLossError, TrainConfig, Trainer, speed
from lmcore.training import trainer as trainer_module
from lmcore.training.distributed import wrap_ddp
from lmcore.training.speed import COMPILE_MIN_PARAMS, StepGuard, should_compile, to_device

CUDA = torch.device("cuda")
SYNCS = ("aten::_local_scalar_dense", "aten::item")


def _host_reads(prof) -> int:
    """Value reads (``.item()``) in a profile, but those inside the fused AdamW kernel: its CPU
    version reads the step counts on the host, its CUDA version reads them on the GPU."""
    def in_optimizer(event) -> bool:
        while event is not None:
            if event.name == "aten::_fused_adamw_":
                return True
            event = event.cpu_parent
        return False
    return sum(e.name in SYNCS and not in_optimizer(e) for e in prof.events())


class TinyLM(nn.Module):
    """Embedding, LayerNorm, linear head: no value reads in its forward (GPT checks its ids on a CPU)."""

    def __init__(self, vocab: int = 11, nan_at: int | None = None) -> None:
        super().__init__()
        self.emb, self.ln, self.head = nn.Embedding(vocab, 16), nn.LayerNorm(16), nn.Linear(16, vocab)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, x, targets=None):
        logits = self.head(self.ln(self.emb(x)))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        if self.training:
            self.calls += 1
            if self.nan_at is not None and self.calls > self.nan_at:
                loss = loss * float("nan")
        return logits, loss


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=6, batch_size=4, seq_len=8, warmup_steps=2, eval_interval=100, eval_iters=1,
                progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


def _stream(n: int = 2000, vocab: int = 11) -> torch.Tensor:
    return torch.randint(vocab, (n,), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def cuda_optimizer(monkeypatch):
    """The Trainer builds the optimizer it builds on CUDA (fused AdamW, whose skip runs on the device)."""
    monkeypatch.setattr(trainer_module, "make_optimizer", lambda m, c, d: speed.make_optimizer(m, c, CUDA))


def _capability(monkeypatch, cap):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)   # what a T4 answers


# --- 1. precision -------------------------------------------------------------------------------
@pytest.mark.parametrize("cap, expected", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                           ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_precision_is_bfloat16_only_where_it_is_native(monkeypatch, cap, expected):
    """V100 (7.0) and T4 (7.5) emulate bfloat16, though is_bf16_supported() says True: float16 there."""
    _capability(monkeypatch, cap)
    assert TrainConfig().autocast_dtype(CUDA) == expected
    assert TrainConfig(dtype="bfloat16").autocast_dtype(CUDA) == torch.bfloat16      # asked for: given
    assert TrainConfig(dtype="float32").autocast_dtype(CUDA) is None
    assert TrainConfig().autocast_dtype(torch.device("cpu")) is None


# --- 2. compile ----------------------------------------------------------------------------------
def test_compile_decision(monkeypatch):
    _capability(monkeypatch, (8, 0))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "triton" else None)
    big, small = COMPILE_MIN_PARAMS, COMPILE_MIN_PARAMS - 1
    assert should_compile(None, CUDA, big) and not should_compile(None, CUDA, small)
    assert not should_compile(None, torch.device("cpu"), 10**9) and not should_compile(None, torch.device("mps"), 10**9)
    assert should_compile(True, torch.device("cpu"), 10) and not should_compile(False, CUDA, 10**9)   # forced
    _capability(monkeypatch, (6, 0))                          # a P100: Triton does not support it
    assert not should_compile(None, CUDA, big) and should_compile(True, CUDA, 10)
    _capability(monkeypatch, (8, 0))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)        # no Triton installed
    assert not should_compile(None, CUDA, big)


def test_compile_setting_in_config_trainer_and_cli(monkeypatch, capsys):
    assert TrainConfig().compile is None
    with pytest.raises(TypeError, match="TrainConfig.compile"):
        TrainConfig(compile="yes")
    assert not Trainer(TinyLM(), _cfg(), _stream()).compiled          # auto on a CPU: eager
    parse = build_parser().parse_args
    assert [parse(["train", "--out", "o", *flag]).compile for flag in ([], ["--compile"], ["--no-compile"])] \
        == [None, True, False]
    # the first step's time is reported, labelled (torch.compile stubbed: the report is what is tested)
    monkeypatch.setattr(torch, "compile", lambda module: module)
    trainer = Trainer(TinyLM(), _cfg(compile=True, progress=True, max_steps=3), _stream())
    trainer.train()
    assert trainer.compiled and trainer.compile_s is not None and trainer.compile_s > 0
    assert "torch.compile: first step" in "".join(capsys.readouterr())


# --- 4. TF32 -------------------------------------------------------------------------------------
def test_setup_turns_tf32_on_for_cuda_only(monkeypatch):
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    try:
        _check_tf32(monkeypatch, matmul)
    finally:
        matmul.allow_tf32 = before


def _check_tf32(monkeypatch, matmul):
    matmul.allow_tf32 = False
    cpu_precision = (torch.get_float32_matmul_precision(), torch.backends.mkldnn.matmul.fp32_precision)
    lmcore.setup(device="cpu", quiet=True)
    assert matmul.allow_tf32 is False                          # a CPU run sets nothing
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    lmcore.setup(device="cuda", quiet=True)
    assert matmul.allow_tf32 is True
    assert torch.backends.mkldnn.matmul.fp32_precision == cpu_precision[1]   # CPU matmuls untouched
    lmcore.setup(device="cuda", quiet=True, tf32=False)
    assert matmul.allow_tf32 is False and torch.get_float32_matmul_precision() == cpu_precision[0]
    with pytest.raises(TypeError, match="tf32"):
        lmcore.setup(device="cpu", quiet=True, tf32="on")


# --- 10. pinned memory, DDP buffers --------------------------------------------------------------
def test_batches_reach_cuda_through_pinned_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append("pin") or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: calls.append(("to", a, k)) or self)
    batch = torch.zeros(2, 3, dtype=torch.long)
    to_device(batch, CUDA)
    assert calls == ["pin", ("to", (CUDA,), {"non_blocking": True})]
    calls.clear()
    to_device(batch, torch.device("cpu"))
    assert calls == [("to", (torch.device("cpu"),), {})]      # no pinning, no non_blocking off CUDA


def test_ddp_broadcasts_only_buffers_that_training_changes():
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        gpt = GPT(GPTConfig(vocab_size=11, context_length=8, n_layer=1, n_head=2, n_embd=16, pos_encoding="rope"))
        assert len(list(gpt.buffers())) > 0                   # the rotary table: a constant
        assert wrap_ddp(gpt, torch.device("cpu")).broadcast_buffers is False
        with_bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        assert wrap_ddp(with_bn, torch.device("cpu")).broadcast_buffers is True
    finally:
        dist.destroy_process_group()


# --- 9. no host syncs between logs ---------------------------------------------------------------
def test_training_steps_between_logs_read_nothing_back(cuda_optimizer, monkeypatch):
    """Profiled on the CPU, with CUDA's optimizer: a training step calls no ``.item()`` (the ops that
    would wait for a GPU); the losses are read at the logs only, ``log_interval`` steps at a time."""
    trainer = Trainer(TinyLM(), _cfg(max_steps=12, log_interval=4), _stream().to(torch.uint16))
    assert trainer._guard.deferred
    counts = []
    for _ in range(3):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer._step()
        counts.append(_host_reads(prof))
    assert counts == [0, 0, 0]

    reads = []
    real = trainer_module.read_steps

    def spy(pending, guard):
        reads.append([r["step"] for r in pending])
        return real(pending, guard)

    trainer = Trainer(TinyLM(), _cfg(max_steps=12, log_interval=4), _stream())
    monkeypatch.setattr(trainer_module, "read_steps", spy)
    trainer.train()
    assert reads == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert [r["step"] for r in trainer.history if "train_loss" in r] == list(range(12))


def test_deferred_losses_give_the_same_history_and_weights(cuda_optimizer):
    """Reading every 5th step gives the history and weights that reading every step gives, bit for bit."""
    runs = []
    for log_interval in (1, 5):
        torch.manual_seed(0)
        trainer = Trainer(TinyLM(), _cfg(max_steps=12, log_interval=log_interval, eval_interval=6), _stream(), _stream())
        trainer.train()
        runs.append(([{k: v for k, v in r.items() if k != "elapsed_s"} for r in trainer.history],
                     [p.detach().clone() for p in trainer.model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_a_non_finite_loss_stops_updates_on_the_device(cuda_optimizer):
    """The NaN of step 3 is seen at the log of step 10; the updates of steps 3..9 were skipped, so the
    model and optimizer are exactly those of a run stopped after step 2."""
    torch.manual_seed(0)
    trainer = Trainer(TinyLM(nan_at=3), _cfg(max_steps=20, log_interval=10), _stream())
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        trainer.train()
    assert trainer.step == 3 and [r["step"] for r in trainer.history if "train_loss" in r] == [0, 1, 2]
    torch.manual_seed(0)
    reference = Trainer(TinyLM(), _cfg(max_steps=20), _stream())
    reference.train(steps=3)
    for a, b in zip(trainer.model.parameters(), reference.model.parameters()):
        assert torch.equal(a, b)
        assert torch.equal(trainer.optimizer.state[a]["exp_avg_sq"], reference.optimizer.state[b]["exp_avg_sq"])
        assert float(trainer.optimizer.state[a]["step"]) == 3.0


def test_guard_with_a_loss_scaler_skips_from_the_first_non_finite_loss():
    """float16 training (a GradScaler): the scaler's own skip is used, and stays on until reset."""
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=0.1, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    guard = StepGuard(opt, scaler)

    def step(loss: float) -> torch.Tensor:
        scaler.scale(torch.ones(()))                           # (sets up the scale, as before backward)
        p.grad = torch.full((3,), 4.0)                       # a scaled gradient of 1
        guard.check(torch.tensor(loss))
        scaler.unscale_(opt)
        guard.step()
        return p.detach().clone()

    assert torch.equal(step(math.nan), torch.ones(3))         # skipped
    assert torch.equal(step(1.0), torch.ones(3))              # still halted: the run stopped at the NaN
    guard.reset()
    assert not torch.equal(step(1.0), torch.ones(3))          # after the read, updates go through


def test_the_cpu_path_checks_the_loss_at_once():
    """On a CPU (unfused optimizer) reading the loss costs nothing: it is checked before each step."""
    trainer = Trainer(TinyLM(nan_at=3), _cfg(max_steps=20, log_interval=10), _stream())
    assert not trainer._guard.deferred
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        trainer.train()
    assert trainer.step == 3 and all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert [r["step"] for r in trainer.history if "train_loss" in r] == [0, 1, 2]


def test_uint16_streams_are_kept_and_ids_above_32767_are_right():
    ids = np.arange(30_000, 65_536, dtype=np.uint16)         # > 32767: negative if read as int16
    for stream in (ids, torch.from_numpy(ids)):
        trainer = Trainer(TinyLM(vocab=65_536), _cfg(), stream)
        assert trainer.train_data is stream                   # kept as given: no int64 copy of the stream
        x, y = trainer.get_batch("train", torch.Generator().manual_seed(0))
        ref_x, ref_y = lmcore.data.get_batch(torch.from_numpy(ids.astype(np.int64)), 4, 8, "cpu",
                                             torch.Generator().manual_seed(0))
        assert x.dtype == torch.int64 and torch.equal(x, ref_x) and torch.equal(y, ref_y)
        assert int(x.min()) >= 30_000
    with pytest.raises(ValueError, match="1-D integer token"):
        Trainer(TinyLM(), _cfg(), np.zeros(100, dtype=np.float32))
