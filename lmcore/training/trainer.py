"""The training loop every chapter uses (built in chapter 4): ``Trainer(model, TrainConfig(...), train, val).train()``.

It works with any ``nn.Module`` whose ``forward(x, targets)`` returns ``(logits, loss)`` (``GPT``
does), and does what a careful training script does, in one readable place:

* **AdamW** with weight decay only on matrices and embeddings (parameters with >= 2 dimensions),
  never on biases or LayerNorm gains, whose scale is not a source of over-fitting;
* a learning rate that **warms up** linearly (Adam's second-moment estimates are noisy at first)
  and then follows a **cosine** down to ``min_lr`` (continuous when a resumed run changes its
  length, see :mod:`lmcore.training.schedule`);
* **gradient accumulation** (a large batch in several small micro-batches) and **clipping**;
* **mixed precision** on CUDA (bfloat16, or float16 with a loss scaler on older GPUs), plain
  float32 on CPU and Apple's MPS; optional ``torch.compile``;
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
from .._version import __version__
from ..data import get_batch
from ..models import GPT
from ..runtime import get_device
from . import checkpoint as ckpt
from .checkpoint import model_config_dict, unwrap
from .config import RESUMABLE_FIELDS, BatchFn, NonFiniteLossError, TrainConfig
from .distributed import all_reduce_mean, dist_info
from .schedule import initial_schedule, resumed_schedule, scheduled_lr

__all__ = ["Trainer"]

class Trainer:
    """Train ``model`` on 1-D token tensors (or on batches from ``batch_fn``), see the module doc.

    Args:
        model: returns ``(logits, loss)`` from ``model(x, targets)``; moved to the config's device.
        config: the run's :class:`TrainConfig`.
        train_data, val_data: 1-D int64 token tensors (``val_data`` optional); batches are random
            windows (:func:`lmcore.data.get_batch`).
        batch_fn: instead of the tensors, ``batch_fn(split, generator) -> (x, y)`` with ``x``, ``y``
            of shape ``(batch_size, T)``; targets may contain -100 (ignored by the loss).

    Attributes:
        step: optimiser steps done so far.
        history: one dict per training step (``step``, ``train_loss``, ``lr``, ``tokens``,
            ``grad_norm``, ``elapsed_s``) and one per evaluation (``step``, ``tokens``,
            ``eval_train_loss``, ``val_loss``, ``val_ppl``); ``series(key)`` picks one curve.
        best_val_loss: lowest validation loss seen (``inf`` before the first evaluation).
        lr_schedule: the learning-rate segments (:mod:`lmcore.training.schedule`).
        run_files: ``{name: sha256}`` of the run's other files in ``out_dir`` (the CLI's ``tokenizer.json``).
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train_data: torch.Tensor | None = None,
                 val_data: torch.Tensor | None = None, *, batch_fn: BatchFn | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.config = config
        self.dist = dist_info()
        self.device = self._pick_device(config)
        self.model = model.to(self.device)
        self.seq_len = self._seq_len(model, config)
        self.batch_fn = batch_fn
        self.train_data: torch.Tensor | None
        self.val_data: torch.Tensor | None
        if batch_fn is None:
            if train_data is None:
                raise ValueError("pass train_data (a 1-D token tensor) or batch_fn")
            self.train_data = self._check_data(train_data, "train_data")
            self.val_data = None if val_data is None else self._check_data(val_data, "val_data")
        elif train_data is not None or val_data is not None:
            raise ValueError("pass either train_data/val_data or batch_fn, not both")
        else:
            self.train_data = self.val_data = None
        if config.batch_size % self.dist.world_size:
            raise ValueError(f"TrainConfig.batch_size={config.batch_size} must be divisible by the number "
                             f"of processes ({self.dist.world_size}): it is the global batch")

        self.amp_dtype = config.autocast_dtype(self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.optimizer = self._make_optimizer()
        # The batch stream: a generator owned by the Trainer (identical on every rank, which then
        # takes its own slice), saved in checkpoints so a resumed run sees the same batches.
        self.generator = torch.Generator().manual_seed(config.seed)
        fwd = self.model
        if self.dist.enabled:
            fwd = DistributedDataParallel(fwd, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self._fwd = torch.compile(fwd) if config.compile else fwd
        self._eval_model = torch.compile(self.model) if config.compile else self.model

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

    @staticmethod
    def _seq_len(model: nn.Module, config: TrainConfig) -> int | None:
        """The training window: ``config.seq_len``, by default a GPT's whole context (None: only a
        ``batch_fn`` can feed this model, since it has no context length to cut windows by)."""
        limit = model.config.context_length if isinstance(model, GPT) else None
        if config.seq_len is None:
            return limit
        if limit is not None and config.seq_len > limit:
            raise ValueError(f"TrainConfig.seq_len={config.seq_len} exceeds the model's context_length="
                             f"{limit}; lower it or build a model with a longer context")
        return config.seq_len

    def _check_data(self, data: Any, name: str) -> torch.Tensor:
        data = torch.as_tensor(data)
        if data.ndim != 1 or data.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"{name} must be a 1-D integer token tensor, got shape {tuple(data.shape)} "
                             f"dtype {data.dtype}")
        if self.seq_len is None:
            raise ValueError(f"set TrainConfig.seq_len (tokens per training window): a {type(self.model).__name__} "
                             "has no context_length to default to")
        if data.numel() <= self.seq_len:
            raise ValueError(f"{name} has {data.numel()} tokens, fewer than seq_len + 1 = "
                             f"{self.seq_len + 1}")
        return data.long()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        cfg = self.config
        return torch.optim.AdamW(groups, lr=cfg.lr_at(0), betas=(cfg.beta1, cfg.beta2),
                                 fused=True if self.device.type == "cuda" else None)

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
        non_blocking = self.device.type == "cuda"
        return x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)

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

        Raises :class:`NonFiniteLossError` before updating the model if the loss is NaN or inf.
        """
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
        loss_value = all_reduce_mean(total).item()
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(self.step, loss_value)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack(
                [p.grad.detach().float().norm() for p in self.model.parameters() if p.grad is not None])))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"train_loss": loss_value, "lr": lr, "grad_norm": grad_norm}

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
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        last_val = None
        try:
            while self.step < stop:
                if self.step % cfg.eval_interval == 0 and not self._evaluated_now():
                    last_val = self.evaluate().get("val")
                    self._save_last()
                t0 = time.perf_counter()
                record = {"step": self.step, **self.train_step()}
                self._elapsed += time.perf_counter() - t0
                record.update(tokens=self.tokens, elapsed_s=self._elapsed)
                self.history.append(record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['train_loss']:.4f}",
                                    **({"val": f"{last_val:.4f}"} if last_val is not None else {}))
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
        return {
            "step": self.step, "tokens": self.tokens, "elapsed_s": self._elapsed, "best_val_loss": self.best_val_loss,
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": ckpt.rng_state(self.generator),
            "model_config": model_config_dict(self.model),
            "model_class": type(unwrap(self.model)).__name__,
            "train_config": self.config.to_dict(),
            "history": self.history, "lr_schedule": self.lr_schedule, "run_files": self.run_files,
            "lmcore_version": __version__,
        }

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
        ckpt.check_resumable(state, model_config_dict(self.model), self.config.to_dict(), RESUMABLE_FIELDS)
        try:
            unwrap(self.model).load_state_dict(state["model"])
        except RuntimeError as e:
            raise ValueError(f"the checkpoint's weights do not fit this model: {e}") from e
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        ckpt.restore_rng_state(state["rng"], self.generator)
        self.step, self.tokens = state["step"], state["tokens"]
        self._elapsed, self.best_val_loss = state["elapsed_s"], state["best_val_loss"]
        self.history = list(state["history"])
        self.lr_schedule = resumed_schedule(self.config, state, self.step)
        self.run_files = dict(state.get("run_files") or {})

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
