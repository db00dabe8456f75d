"""The learning-rate schedule of a run, kept continuous when a resumed run changes its length (chapter 4).

A run starts with :meth:`TrainConfig.lr_at`'s schedule: a linear warm-up to ``lr``, then a cosine
down to ``min_lr`` at ``lr_decay_steps`` (default: ``max_steps``).  Resuming with another
``max_steps`` (``python -m lmcore train --resume --steps N``) must not restart that cosine: at the
resume step it would jump back up (re-warm) to the new, longer cosine's value.  So a run's schedule
is a list of cosine *segments* ``[start, start_lr, end]``: from step ``start`` the rate falls from
``start_lr`` to ``min_lr`` at step ``end`` (and stays there).  A new run has the single segment
``[warmup_steps, lr, lr_decay_steps or max_steps]``; resuming at step ``s`` with a new ``max_steps``
appends ``[s, lr(s), max_steps]``: the rate goes on from where it was and reaches ``min_lr`` at the
new end.  A run extended after it finished therefore goes on at ``min_lr``.  With ``lr_decay_steps``
set, the schedule does not depend on ``max_steps`` and nothing changes.  The segments are saved in
every checkpoint, so a run resumed with its own ``max_steps`` stays bit-exact.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from .config import TrainConfig

__all__ = ["Schedule", "initial_schedule", "scheduled_lr", "resumed_schedule"]

#: cosine segments ``[start, start_lr, end]``, sorted by ``start`` (plain lists: they go in checkpoints)
Schedule = list[list[float]]


def initial_schedule(config: TrainConfig) -> Schedule:
    """The schedule of a new run: :meth:`TrainConfig.lr_at` as one segment."""
    return [[config.warmup_steps, config.lr, config.lr_decay_steps or config.max_steps]]


def scheduled_lr(config: TrainConfig, schedule: Schedule, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) under ``schedule``.

    Equals ``config.lr_at(step)`` bit for bit while the schedule is :func:`initial_schedule`.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    start, start_lr, end = next(seg for seg in reversed(schedule) if step >= seg[0])
    if step >= end:
        return config.min_lr
    progress = (step - start) / max(1, end - start)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (start_lr - config.min_lr)


def resumed_schedule(config: TrainConfig, state: dict[str, Any], step: int) -> Schedule:
    """The schedule for going on from checkpoint ``state`` (at ``step``) under ``config``.

    The checkpoint's segments (for checkpoints without them: its ``max_steps``'s initial schedule),
    plus one segment from ``step`` to ``config.max_steps`` when the run's length changed.
    """
    saved = state.get("lr_schedule")
    if saved:
        schedule = [list(seg) for seg in saved]
    else:
        schedule = initial_schedule(dataclasses.replace(config, max_steps=state["train_config"]["max_steps"]))
    if config.lr_decay_steps is not None or schedule[-1][2] == config.max_steps or step >= config.max_steps:
        return schedule
    if step <= config.warmup_steps:      # still warming up: the new cosine is the continuation
        return initial_schedule(config)
    return [*schedule, [step, scheduled_lr(config, schedule, step), config.max_steps]]
