"""What a training run is set to do: ``TrainConfig`` and its learning-rate schedule (chapter 4).

All fields are plain values, so a config fits in a checkpoint and a resumed run can check that it
continues the same run.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .._checks import check_choice, check_float, check_int

__all__ = ["TrainConfig", "NonFiniteLossError", "BatchFn", "RESUMABLE_FIELDS"]

#: ``batch_fn(split, generator) -> (x, y)``: a custom source of (global) batches, e.g. with masked
#: targets (-100) for instruction tuning.  ``split`` is ``"train"`` or ``"val"``; draw all
#: randomness from ``generator`` so that runs are reproducible and resumable.
BatchFn = Callable[[str, torch.Generator], "tuple[torch.Tensor, torch.Tensor]"]

DTYPES = ("auto", "float32", "bfloat16", "float16")
# Fields that may differ between a checkpoint and the run resuming it: they change how long
# the run goes on, how often it reports, or where it runs, not what a training step computes.
# A new max_steps does not restart the learning-rate schedule: lmcore.training.schedule keeps
# it continuous from the resume step to the new end.
RESUMABLE_FIELDS = frozenset({"max_steps", "eval_interval", "eval_iters", "log_interval", "device", "compile",
                              "out_dir", "save_best", "progress", "overwrite"})


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the model was not updated with it."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"the training loss is {loss} at step {step}: training diverged. Lower lr "
                         "(or raise warmup_steps), keep grad_clip on, and check the data and the model; "
                         "the last checkpoint (if any) holds the state before the divergence.")
        self.step, self.loss = step, loss


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (all plain values, so they fit in a checkpoint).

    ``batch_size`` is the *global* batch of one micro-step (split across processes under DDP);
    one optimiser step sees ``batch_size * grad_accum_steps`` sequences of ``seq_len`` tokens.
    """

    max_steps: int = 1000              # optimiser steps in the whole run
    batch_size: int = 12               # sequences per micro-step (global, over all processes)
    seq_len: int | None = None         # tokens per training window; None = a GPT's context_length
    grad_accum_steps: int = 1          # micro-steps per optimiser step
    lr: float = 1e-3                   # peak learning rate, reached after the warm-up
    min_lr: float = 1e-4               # the cosine decays to this
    warmup_steps: int = 100            # steps of linear warm-up (Adam's moment estimates start noisy)
    lr_decay_steps: int | None = None  # where the cosine reaches min_lr; None = max_steps
    weight_decay: float = 0.1          # applied to matrices and embeddings only
    beta1: float = 0.9                 # AdamW's decay rate of the gradient mean
    beta2: float = 0.99                # ... and of the squared-gradient mean
    grad_clip: float = 1.0             # max global gradient norm; 0 turns clipping off
    eval_interval: int = 250           # evaluate (and checkpoint) every this many steps, and at the end
    eval_iters: int = 20               # batches per loss estimate
    log_interval: int = 10             # read the losses back from the device (and show them) every N steps
    seed: int = 1337                   # seeds the data generator (model init is the caller's)
    device: str | None = None          # None = lmcore.get_device(): cuda, then mps, then cpu
    dtype: str = "auto"                # auto = bfloat16 (native: A100 on) or float16 autocast on CUDA, else float32
    compile: bool | None = None        # torch.compile; None = on CUDA for >= 5M parameters (speed.should_compile)
    out_dir: str | None = None         # where checkpoints go; None = keep nothing on disk
    save_best: bool = True             # also keep best.pt (lowest validation loss)
    progress: bool = True              # show a tqdm progress bar
    overwrite: bool = False            # a fresh run may replace another run's checkpoints in out_dir

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_interval", "eval_iters", "log_interval"):
            check_int(f"TrainConfig.{name}", getattr(self, name), low=1)
        check_int("TrainConfig.seq_len", self.seq_len, low=1, optional=True)
        check_int("TrainConfig.lr_decay_steps", self.lr_decay_steps, low=1, optional=True)
        check_int("TrainConfig.warmup_steps", self.warmup_steps, low=0)
        check_int("TrainConfig.seed", self.seed, low=0, high=2**63 - 1)
        check_float("TrainConfig.lr", self.lr, low=0, low_open=True)
        check_float("TrainConfig.min_lr", self.min_lr, low=0, high=self.lr)
        check_float("TrainConfig.weight_decay", self.weight_decay, low=0)
        check_float("TrainConfig.grad_clip", self.grad_clip, low=0)
        for name in ("beta1", "beta2"):
            check_float(f"TrainConfig.{name}", getattr(self, name), low=0, high=1, high_open=True)
        check_choice("TrainConfig.dtype", self.dtype, DTYPES)
        if not isinstance(self.overwrite, bool):
            raise TypeError(f"TrainConfig.overwrite must be a bool, got {type(self.overwrite).__name__}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise TypeError(f"TrainConfig.compile must be True, False or None (auto), got {self.compile!r}")
        if self.lr_decay_steps is not None and self.lr_decay_steps < self.warmup_steps:
            raise ValueError(f"TrainConfig.lr_decay_steps ({self.lr_decay_steps}) must be >= warmup_steps "
                             f"({self.warmup_steps})")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine.

        This is a new run's schedule; a run resumed with another ``max_steps`` goes on continuously
        from where it was instead (:mod:`lmcore.training.schedule`).
        """
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        decay_steps = self.lr_decay_steps or self.max_steps
        if step >= decay_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / max(1, decay_steps - self.warmup_steps)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - self.min_lr)

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The dtype to autocast to on ``device``, or None for plain float32.

        ``"auto"`` on CUDA is bfloat16 only on GPUs with native bfloat16 (compute capability >= 8.0:
        A100, RTX 30xx, H100 and later), else float16 with a loss scaler: on a T4 or V100 bfloat16 is
        emulated, and slow, though ``torch.cuda.is_bf16_supported()`` says True there.
        """
        if self.dtype == "float32":
            return None
        if device.type != "cuda":
            if self.dtype == "float16":
                raise ValueError("TrainConfig.dtype='float16' needs a CUDA GPU; use 'auto' or 'float32'")
            return torch.bfloat16 if self.dtype == "bfloat16" and device.type == "cpu" else None
        if self.dtype == "auto":
            return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
        return getattr(torch, self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


