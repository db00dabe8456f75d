"""The training loop every chapter uses (built in chapter 4): ``Trainer(model, TrainConfig(...), train, val).train()``.

It works with any ``nn.Module`` whose ``forward(x, targets)`` returns ``(logits, loss)`` (``GPT``
does), and does what a careful training script does, in one readable place:

* **AdamW** with weight decay only on matrices and embeddings (parameters with >= 2 dimensions),
  never on biases or LayerNorm gains, whose scale is not a source of over-fitting;
* a learning rate that **warms up** linearly (Adam's second-moment estimates are noisy at first)
  and then follows a **cosine** down to ``min_lr`` (continuous when a resumed run changes its
  length, see :mod:`lmcore.training.schedule`);
* **gradient accumulation** (a large batch in several small micro-batches) and **clipping**;
* **mixed precision** on CUDA (bfloat16, or float16 with a loss scaler on GPUs older than the
  A100), plain float32 on CPU and Apple's MPS; ``torch.compile`` on CUDA for models that gain from
  it; no step waits for the GPU to report its loss (:mod:`lmcore.training.speed`);
* periodic **evaluation** of train and validation loss on ``eval_iters`` fixed batches, a progress
  bar, and a **history** for plots;
* **checkpoints** that resume *exactly*: the batches come from a generator the Trainer owns, and
  its state, the RNG states and the optimiser are saved, so an interrupted and resumed run
  produces the same losses, bit for bit on a CPU, as an uninterrupted one (and a fresh run never
  overwrites another's checkpoints unless ``TrainConfig(overwrite=True)``);
* **several processes** under ``torchrun`` (see :mod:`lmcore.training.distributed`).

>>> from lmcore import data, CharTokenizer, Trainer, TrainConfig
>>> from lmcore.models import GPT, GPTConfig
>>> text = data.toy_corpus("train"); tok = CharTokenizer().train(text)
>>> ids = torch.tensor(tok.encode(text))
>>> model = GPT(GPTConfig(vocab_size=tok.vocab_size, seq_len=64, n_layer=2, n_head=2, n_embd=64))
>>> trainer = Trainer(model, TrainConfig(max_steps=200, progress=False), *data.train_val_split(ids))
>>> history = trainer.train()  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from .._checks import check_int, eval_mode
from ..data import get_batch
from ..runtime import get_device, progress
from . import checkpoint as ckpt
from .config import RESUMABLE_FIELDS, BatchFn, NonFiniteLossError, TrainConfig
from .distributed import all_reduce_mean, dist_info, wrap_ddp
from .schedule import initial_schedule, resumed_schedule, scheduled_lr
from .speed import StepGuard, make_optimizer, read_steps, should_compile, to_device
from .streams import check_stream, window_length

__all__ = ["Trainer"]

class Trainer:
    """Train ``model`` on 1-D token tensors (or on batches from ``batch_fn``), see the module doc.

    Args:
        model: returns ``(logits, loss)`` from ``model(x, targets)``; moved to the config's device.
        config: the run's :class:`TrainConfig`.
        train_data, val_data: 1-D token streams (``val_data`` optional): tensors or NumPy arrays of
            int64, int32, int16, uint16 or uint8 ids, or ``np.memmap`` files (:func:`open_prepared`),
            kept as they are; batches are random windows (:func:`lmcore.data.get_batch`), and only
            they become int64.
        batch_fn: instead of the tensors, ``batch_fn(split, generator) -> (x, y)`` with ``x``, ``y``
            of shape ``(batch_size, T)``; targets may contain -100 (ignored by the loss).

    Attributes:
        step: optimiser steps done so far.
        history: one dict per training step (``step``, ``train_loss``, ``lr``, ``tokens``,
            ``grad_norm``, ``elapsed_s``; on a GPU, training time is exact at the steps that log,
            every ``log_interval``) and one per evaluation (``step``, ``tokens``,
            ``eval_train_loss``, ``val_loss``, ``val_ppl``); ``series(key)`` picks one curve.
        best_val_loss: lowest validation loss seen (``inf`` before the first evaluation).
        lr_schedule: the learning-rate segments (:mod:`lmcore.training.schedule`).
        run_files: ``{name: sha256}`` of the run's other files in ``out_dir`` (the CLI's ``tokenizer.json``).
        compiled: whether the model is ``torch.compile``d (``TrainConfig.compile``; None decides by
            :func:`lmcore.training.speed.should_compile`); ``compile_s``: then the first step's
            seconds in this process, compilation included (shown in the progress output).
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train_data: Any = None, val_data: Any = None,
                 *, batch_fn: BatchFn | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.config = config
        self.dist = dist_info()
        self.device = self._pick_device(config)
        self.model = model.to(self.device)
        self.seq_len = window_length(model, config)
        self.batch_fn = batch_fn
        self.train_data: Any
        self.val_data: Any
        if batch_fn is None:
            if train_data is None:
                raise ValueError("pass train_data (a 1-D token tensor) or batch_fn")
            self.train_data = check_stream(train_data, "train_data", self.seq_len, model)
            self.val_data = None if val_data is None else check_stream(val_data, "val_data", self.seq_len, model)
        elif train_data is not None or val_data is not None:
            raise ValueError("pass either train_data/val_data or batch_fn, not both")
        else:
            self.train_data = self.val_data = None
        if config.batch_size % self.dist.world_size:
            raise ValueError(f"TrainConfig.batch_size={config.batch_size} must be divisible by the number "
                             f"of processes ({self.dist.world_size}): it is the global batch")

        self.amp_dtype = config.autocast_dtype(self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.optimizer = make_optimizer(self.model, config, self.device)
        self._guard = StepGuard(self.optimizer, self.scaler)
        # The batch stream: a generator owned by the Trainer (identical on every rank, which then
        # takes its own slice), saved in checkpoints so a resumed run sees the same batches.
        self.generator = torch.Generator().manual_seed(config.seed)
        fwd = wrap_ddp(self.model, self.device) if self.dist.enabled else self.model
        self.compiled = should_compile(config.compile, self.device, sum(p.numel() for p in self.model.parameters()))
        self._fwd = torch.compile(fwd) if self.compiled else fwd
        self._eval_model = torch.compile(self.model) if self.compiled else self.model
        self.compile_s: float | None = None

        self.step = 0
        self.tokens = 0
        self.history: list[dict[str, Any]] = []
        self.best_val_loss = math.inf
        self._elapsed = 0.0
        self.lr_schedule = initial_schedule(config)
        self.run_files: dict[str, str] = {}
        self._claimed = False          # out_dir checked: this run may write its checkpoints there

    # --- construction helpers ----------------------------------------------------------------
    def _pick_device(self, config: TrainConfig) -> torch.device:
        device = get_device(config.device)
        if self.dist.enabled and device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank)
        return device

    # --- batches -----------------------------------------------------------------------------
    def get_batch(self, split: str, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of one global batch of ``split``: ``(x, y)``, ``(batch_size / world, T)``."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        gen = self.generator if generator is None else generator
        if self.batch_fn is not None:
            x, y = self.batch_fn(split, gen)
        else:
            data = self.train_data if split == "train" else self.val_data
            if data is None:
                raise ValueError(f"no {split} data: pass val_data to the Trainer")
            assert self.seq_len is not None     # _check_data made sure of it
            x, y = get_batch(data, self.config.batch_size, self.seq_len, "cpu", gen)
        if x.shape[0] != self.config.batch_size or y.shape != x.shape:
            raise ValueError(f"a batch must be (x, y) of equal shape with batch_size={self.config.batch_size} "
                             f"rows, got x {tuple(x.shape)} and y {tuple(y.shape)}")
        rows = self.config.batch_size // self.dist.world_size
        x = x[self.dist.rank * rows:(self.dist.rank + 1) * rows]
        y = y[self.dist.rank * rows:(self.dist.rank + 1) * rows]
        return to_device(x, self.device), to_device(y, self.device)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # --- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over ``eval_iters`` batches of each split (``{"train": ..., "val": ...}``).

        The batches come from a generator re-seeded every time, so successive estimates use the
        same windows (differences are the model's, not the sample's), and the training batch
        stream is left untouched.
        """
        out = {}
        splits = ["train"] + (["val"] if self.batch_fn is not None or self.val_data is not None else [])
        with eval_mode(self.model):
            for split in splits:
                gen = torch.Generator().manual_seed(self.config.seed + 1)
                total = torch.zeros((), device=self.device)
                for _ in range(self.config.eval_iters):
                    x, y = self.get_batch(split, gen)
                    with self._autocast():
                        _, loss = self._eval_model(x, y)
                    total += loss.float()
                out[split] = all_reduce_mean(total / self.config.eval_iters).item()
        return out

    # --- training ----------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimiser step (``grad_accum_steps`` micro-batches); returns loss, lr and grad norm.

        Raises :class:`NonFiniteLossError` if the loss is NaN or inf; the model is not updated with
        it.  Reading the values back waits for the device: :meth:`train` reads them only when it logs.
        """
        record = self._read([self._step()], keep=False)
        return {k: record[k] for k in ("train_loss", "lr", "grad_norm")}

    def _step(self) -> dict[str, Any]:
        """One optimiser step whose loss and gradient norm stay on the device (read by :meth:`_read`)."""
        cfg = self.config
        self.model.train()
        lr = scheduled_lr(cfg, self.lr_schedule, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum_steps):
            x, y = self.get_batch("train")
            # Under DDP, gradients are averaged across ranks only on the last micro-step.
            last = micro == cfg.grad_accum_steps - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self._ddp().no_sync()
            with sync:
                with self._autocast():
                    _, loss = self._fwd(x, y)
                # Average over micro-steps, so the gradient is that of the mean over the big batch.
                loss = loss / cfg.grad_accum_steps
                total += loss.detach().float()
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            self.tokens += x.numel() * self.dist.world_size
        mean = all_reduce_mean(total)
        if not self._guard.deferred:         # checked on the host (a CPU: free), see speed.StepGuard
            value = mean.item()
            if not math.isfinite(value):
                self.optimizer.zero_grad(set_to_none=True)
                raise NonFiniteLossError(self.step, value)
        self._guard.check(mean)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack(
                [p.grad.detach().float().norm() for p in self.model.parameters() if p.grad is not None]))
        self._guard.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"step": self.step - 1, "train_loss": mean, "lr": lr, "grad_norm": grad_norm}

    def _read(self, pending: list[dict[str, Any]], keep: bool = True) -> dict[str, Any]:
        """Read the losses and gradient norms of the ``pending`` steps from the device at once (one
        wait) and empty the list; with ``keep`` they go into the history.  Returns the last record.
        Raises :class:`NonFiniteLossError` at the first non-finite loss: no update was made from
        that step on (:class:`~lmcore.training.speed.StepGuard`), and the run stands at that step."""
        if not pending:
            return {}
        t0 = time.perf_counter()
        records, bad = read_steps(pending, self._guard)
        self._elapsed += time.perf_counter() - t0
        if records and "elapsed_s" in records[-1]:
            records[-1]["elapsed_s"] = self._elapsed
        if keep:
            self.history.extend(records)
        if bad is not None:
            self.step, self.tokens = bad["step"], bad.get("tokens", self.tokens)
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(bad["step"], bad["train_loss"])
        return records[-1]

    def _ddp(self) -> DistributedDataParallel:
        ddp = self._fwd._orig_mod if hasattr(self._fwd, "_orig_mod") else self._fwd
        assert isinstance(ddp, DistributedDataParallel)
        return ddp

    def evaluate(self) -> dict[str, float]:
        """Estimate the losses now, record them in the history and keep ``best.pt`` up to date."""
        losses = self.estimate_loss()
        record = {"eval_train_loss": losses["train"]}
        if "val" in losses:
            record.update(val_loss=losses["val"], val_ppl=math.exp(min(losses["val"], 700.0)))
        self.history.append({"step": self.step, "tokens": self.tokens, **record})
        if "val" in losses and losses["val"] < self.best_val_loss:
            self.best_val_loss = losses["val"]
            if self.config.save_best and self.config.out_dir:
                self.save_checkpoint("best")
        return losses

    def train(self, steps: int | None = None) -> list[dict[str, Any]]:
        """Train until ``max_steps`` (or for at most ``steps`` more steps); returns the history.

        Evaluates every ``eval_interval`` steps and at the end; after each evaluation (and at
        the end) writes ``last.pt`` to ``out_dir`` when one is set.
        """
        cfg = self.config
        check_int("steps", steps, low=1, optional=True)
        stop = cfg.max_steps if steps is None else min(cfg.max_steps, self.step + steps)
        bar = None
        pending: list[dict[str, Any]]
        if cfg.progress and self.dist.is_main:    # drawn unless LMCORE_PROGRESS=0; its messages print either way
            bar = progress(total=cfg.max_steps, initial=self.step, desc="training", unit="step")
        last_val, pending = None, []      # pending: steps whose losses are still on the device
        try:
            while self.step < stop:
                if self.step % cfg.eval_interval == 0:
                    self._log(pending, bar, last_val)
                    if not self._evaluated_now():
                        last_val = self.evaluate().get("val")
                        self._save_last()
                t0 = time.perf_counter()
                try:
                    record = self._step()
                except NonFiniteLossError:
                    self._read(pending)          # the steps before it go into the history
                    raise
                seconds = time.perf_counter() - t0
                self._elapsed += seconds
                pending.append({**record, "tokens": self.tokens, "elapsed_s": self._elapsed})
                if bar is not None:
                    bar.update(1)
                if self.compiled and self.compile_s is None:
                    self.compile_s = seconds
                    if bar is not None:
                        bar.write(f"torch.compile: first step {seconds:.1f} s (compilation included)")
                if self.step % cfg.log_interval == 0:
                    self._log(pending, bar, last_val)
            self._log(pending, bar, last_val)
            if self.step == cfg.max_steps and not self._evaluated_now():
                last_val = self.evaluate().get("val")
                if bar is not None and last_val is not None:
                    last_train = next((r["train_loss"] for r in reversed(self.history) if "train_loss" in r), math.nan)
                    bar.set_postfix(loss=f"{last_train:.4f}", val=f"{last_val:.4f}")
            self._save_last()
        finally:
            if bar is not None:
                bar.close()
        return self.history

    def _log(self, pending: list[dict[str, Any]], bar: Any, last_val: float | None) -> None:
        """Read the pending steps into the history and show the latest loss."""
        record = self._read(pending)
        if bar is not None and record:
            bar.set_postfix(loss=f"{record['train_loss']:.4f}",
                            **({"val": f"{last_val:.4f}"} if last_val is not None else {}))

    def _evaluated_now(self) -> bool:
        return any(r["step"] == self.step and "eval_train_loss" in r for r in self.history[-2:])

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one history key, for plotting: ``plt.plot(*trainer.series("val_loss"))``."""
        pairs = [(r["step"], r[key]) for r in self.history if key in r]
        if not pairs:
            known = sorted({k for r in self.history for k in r})
            raise KeyError(f"no history entry has {key!r}; known keys: {known}")
        steps, values = zip(*pairs)
        return list(steps), list(values)

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (plain containers and tensors only)."""
        return ckpt.trainer_state(self)

    def save_checkpoint(self, tag: str = "last") -> Path | None:
        """Write ``<out_dir>/<tag>.pt`` (rank 0 only; returns its path, or None on other ranks).  A fresh
        (not resumed) run's first save raises ``FileExistsError`` over another run's checkpoints
        (``last.pt``, ``best.pt``) unless ``TrainConfig.overwrite``."""
        if not self.config.out_dir:
            raise ValueError("TrainConfig.out_dir is not set: there is nowhere to save a checkpoint")
        if not self.dist.is_main:
            return None
        if not self._claimed:
            ckpt.claim_out_dir(self.config.out_dir, self.config.overwrite)
            self._claimed = True
        return ckpt.save_checkpoint(self.state_dict(), Path(self.config.out_dir) / f"{tag}.pt")

    def _save_last(self) -> None:
        if self.config.out_dir:
            self.save_checkpoint("last")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; raises ``ValueError`` if it belongs to another config.  A new
        ``max_steps`` is allowed: the learning rate goes on continuously (:mod:`lmcore.training.schedule`)."""
        ckpt.restore_trainer(self, state, RESUMABLE_FIELDS)
        self.lr_schedule = resumed_schedule(self.config, state, self.step)

    def resume(self, path: str | os.PathLike | None = None) -> Trainer:
        """Continue from a checkpoint (default: ``<out_dir>/last.pt``) written by an identical run."""
        if path is None:
            if not self.config.out_dir:
                raise ValueError("pass a checkpoint path or set TrainConfig.out_dir to resume from")
            path = self.config.out_dir
        # RNG states must stay on the CPU; load_state_dict moves weights and optimiser state.
        self.load_state_dict(ckpt.load_checkpoint(path, map_location="cpu"))
        self._claimed = True           # a resumed run goes on writing its own checkpoints
        return self
