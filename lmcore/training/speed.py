"""What the Trainer does to keep a GPU busy (chapter 9, scale): when to ``torch.compile``, batches
through pinned memory, and optimiser steps that never wait for the GPU to report its loss.

A GPU runs the work the Python process queues for it, asynchronously; the process waits only when
it reads a value back (``loss.item()``, ``float(grad_norm)``): a *host sync*, which leaves the GPU
idle until the next work is queued.  So the Trainer keeps the loss and the gradient norm of each
step on the device and reads them in one go when it logs (:attr:`TrainConfig.log_interval`).  The
one check it needs on every step, that the loss is finite, runs on the device too
(:class:`StepGuard`).  On a CPU nothing is queued, so reading a value costs nothing and the check
stays on the host, as exact as ever.
"""
from __future__ import annotations

import importlib.util
import math
from typing import Any

import torch
import torch.nn as nn

from .config import TrainConfig

__all__ = ["COMPILE_MIN_PARAMS", "should_compile", "to_device", "make_optimizer", "StepGuard", "read_steps"]

#: ``TrainConfig(compile=None)`` compiles models with at least this many parameters (on CUDA).
#: Compiling costs a fixed 20-60 s before the first step and then saves about a third of each step's
#: time (nanoGPT: 250 -> 135 ms per GPT-2 step).  A model under a few million parameters trains in
#: seconds to a minute on a GPU, so the start-up would cost more than it saves; from about 5M (the
#: 10.7M of nanoGPT's Shakespeare-char model is above it) runs last minutes and the saving wins.
COMPILE_MIN_PARAMS = 5_000_000


def should_compile(setting: bool | None, device: torch.device, n_params: int) -> bool:
    """Whether to ``torch.compile``: ``setting`` when it is True or False; for None (auto), only on
    CUDA, for models of at least :data:`COMPILE_MIN_PARAMS` parameters, on GPUs that Triton (the
    compiler's code generator) supports (compute capability >= 7.0) and where it is installed."""
    if setting is not None:
        return setting
    if device.type != "cuda" or n_params < COMPILE_MIN_PARAMS:
        return False
    if torch.cuda.get_device_capability(device) < (7, 0):
        return False
    return importlib.util.find_spec("triton") is not None


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``batch`` on ``device``; a CPU batch goes to a CUDA GPU through pinned (page-locked) memory,
    the only source from which ``non_blocking=True`` copies asynchronously (from ordinary memory
    the copy waits)."""
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The Trainer's AdamW: weight decay on matrices and embeddings (>= 2 dimensions) only, and on
    CUDA the fused kernel (one launch for all parameters; it also lets :class:`StepGuard` skip a
    step on the device)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr_at(0), betas=(config.beta1, config.beta2),
                             fused=True if device.type == "cuda" else None)


class StepGuard:
    """Optimiser steps that never update the model with a non-finite loss.

    With a fused optimizer (the Trainer's on CUDA) the check runs on the device: from the first
    non-finite loss on, every update is skipped by the optimizer itself (its ``found_inf`` input,
    the one ``GradScaler`` uses) until the losses are read at the next log and :meth:`reset` is
    called, so the model and the optimizer stay as they were after the last finite step, and no
    step waits for the GPU.  Any other optimizer (the Trainer's on CPU and MPS) has no such input:
    the caller reads the loss on the host before the step (:attr:`deferred` is False) and raises at
    once.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
        self.optimizer, self.scaler = optimizer, scaler
        self.deferred = bool(optimizer.defaults.get("fused"))
        self._halted: torch.Tensor | None = None     # device bool: a non-finite loss since the last read

    def check(self, loss: torch.Tensor) -> None:
        """Record whether ``loss`` (a 0-d tensor) is finite; call it after ``backward()``, before any
        ``scaler.unscale_``."""
        if not self.deferred:
            return
        bad = ~torch.isfinite(loss)
        self._halted = bad if self._halted is None else self._halted | bad
        if self.scaler is not None:
            # The scaler skips a step whose gradients hold inf or NaN: make one of them NaN when
            # halted (x * 1.0 == x exactly otherwise), and the scaler's own skip does the rest.
            grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            smallest = min(grads, key=lambda g: g.numel())
            smallest.mul_(torch.where(self._halted, float("nan"), 1.0).to(smallest.dtype))

    def step(self) -> None:
        """The optimiser step (through the scaler when there is one), skipped on the device when halted."""
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif self.deferred and self._halted is not None:
            opt: Any = self.optimizer
            opt.found_inf = self._halted.float()     # read by fused optimizers: skip the update
            try:
                opt.step()
            finally:
                del opt.found_inf
        else:
            self.optimizer.step()

    def reset(self) -> None:
        """Let updates through again; call it when the losses have been read (a non-finite one among
        them marks the step the updates stopped at)."""
        self._halted = None


def read_steps(pending: list[dict[str, Any]], guard: StepGuard) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Read the losses and gradient norms of ``pending`` step records (0-d tensors) from the device in
    one go (one wait), and empty the list.  Returns the records up to the first non-finite loss, with
    floats, and that record (None when all are finite); resets ``guard``."""
    values = torch.stack([torch.stack([r["train_loss"].float(), r["grad_norm"].float()]) for r in pending]).tolist()
    records, bad = [], None
    for r, (loss, norm) in zip(pending, values):
        record = {**r, "train_loss": loss, "grad_norm": norm}
        if not math.isfinite(loss):
            bad = record
            break
        records.append(record)
    pending.clear()
    guard.reset()
    return records, bad
