"""Sweeping (chapter 9): train a grid of small models, measure their losses, cache the results.

``run_sweep(configs, token_budgets)`` trains one small ``GPT`` per config with the book's
``Trainer`` on :func:`sweep_data` and measures its validation loss after each token budget, one
:class:`SweepPoint` per measurement. Results are cached as JSON under
``lmcore.data.cache_dir() / "scaling"``, so re-running a chapter costs nothing.
``pareto_frontier(points)`` keeps the compute-efficient measurements.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import torch

from .._checks import ArgumentTypeError, check_bool, check_choice, check_float, check_int, eval_mode
from .._io import atomic_write
from .._version import __version__
from ..data import cache_dir, load_text, toy_corpus, train_val_split
from ..models import GPT, GPTConfig
from ..runtime import get_device, torch_threads
from ..runtime import progress as progress_bar
from ..tokenizers import CharTokenizer
from ..training import TrainConfig, Trainer
from .flops import _check_config, _plain, param_count, training_flops

__all__ = ["SweepData", "SweepPoint", "pareto_frontier", "run_sweep", "sweep_data"]

SCHEDULES = ("constant", "cosine")


class SweepData(NamedTuple):
    """Character-level token streams of a corpus: ``train`` and ``val`` (1-D int64), the vocabulary
    size, and ``digest``, the sha256 of the text (part of every cache key)."""
    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    digest: str


@lru_cache(maxsize=4)
def sweep_data(corpus: str = "toy") -> SweepData:
    """The data a sweep trains on: ``"toy"`` (the toy language's fixed train / val splits) or a
    name or path accepted by :func:`lmcore.data.load_text` (split 90 / 10)."""
    if not isinstance(corpus, str):
        raise TypeError(f"corpus must be a str ('toy', a corpus name or a path), got {type(corpus).__name__}")
    if corpus == "toy":
        train_text, val_text = toy_corpus("train"), toy_corpus("val")
        tok = CharTokenizer().train(train_text + val_text)
        train, val = torch.tensor(tok.encode(train_text)), torch.tensor(tok.encode(val_text))
        text = train_text + val_text
    else:
        text = load_text(corpus)
        tok = CharTokenizer().train(text)
        train, val = train_val_split(torch.tensor(tok.encode(text)), 0.1)
    return SweepData(train, val, tok.vocab_size, hashlib.sha256(text.encode()).hexdigest())


@dataclass(frozen=True)
class SweepPoint:
    """One measurement of a sweep: a model after ``tokens`` training tokens.

    ``params``: non-embedding parameters (N); ``flops``: counted training FLOPs so far
    (:func:`training_flops`); ``flops_6nd``: ``6·N·D``; ``val_loss``: mean cross-entropy in nats
    per token on the fixed validation windows; ``seconds``: wall time of the run so far, measurements
    included (the one field that does not reproduce).
    """
    n_layer: int
    n_head: int
    n_embd: int
    params: int
    params_total: int
    tokens: int
    steps: int
    flops: int
    flops_6nd: int
    val_loss: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _NoBar:
    """What :func:`step_bar` returns when no bar is wanted: updates go nowhere."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def step_bar(show: bool, total: int, desc: str) -> Any:
    """A :func:`lmcore.progress` bar over ``total`` optimiser steps if ``show``, else a bar that shows nothing
    (``lmcore.progress`` is itself off where ``LMCORE_PROGRESS=0``)."""
    return progress_bar(total=total, desc=desc, unit="step") if show else _NoBar()


def _eval_windows(val: torch.Tensor, n: int, context_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` evenly spaced windows of the validation stream: inputs and targets, (n, context_length).
    ``val`` holds more than ``context_length + n`` tokens (``_steps`` checks it)."""
    starts = torch.linspace(0, val.numel() - context_length - 1, n).long()
    idx = starts[:, None] + torch.arange(context_length + 1)
    windows = val[idx]
    return windows[:, :-1], windows[:, 1:]


@torch.no_grad()
def _val_loss(model: GPT, x: torch.Tensor, y: torch.Tensor, skip: int, device: torch.device,
              batch: int = 64) -> float:
    """Mean loss over positions ``skip..`` of every window: each scored token sees at least ``skip``
    earlier tokens, so the first, context-starved predictions of a window do not dominate."""
    # a float64 sum: thousands of terms, and sweeps compare losses that differ in the third digit
    total = torch.zeros((), dtype=torch.float64)
    with eval_mode(model):
        for i in range(0, x.shape[0], batch):
            logits, _ = model(x[i:i + batch].to(device))
            scored = logits[:, skip:]
            if scored.device.type == "mps":   # MPS has no float64: finish the sum on the CPU
                scored = scored.cpu()
            logp = torch.log_softmax(scored.double(), dim=-1)
            total -= logp.gather(-1, y[i:i + batch, skip:, None].to(logp.device)).sum().cpu()
    return float(total) / (x.shape[0] * (x.shape[1] - skip))


def _non_default_fields(config: GPTConfig) -> dict[str, Any]:
    """The config's fields that differ from their defaults: the part of a cache key that a field
    added to ``GPTConfig`` later (with a default that changes nothing) leaves alone."""
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    return {k: v for k, v in config.to_dict().items() if k not in defaults or defaults[k] != v}


def _train_config(schedule: str, steps: int, batch_size: int, lr: float, warmup_steps: int,
                  seed: int, device: torch.device) -> TrainConfig:
    # "constant": after the warm-up the rate stays at lr, so the loss after any number of steps
    # is a fair measurement of that budget; "cosine": one run per budget, decayed to lr/10 at its end.
    return TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr,
                       min_lr=lr if schedule == "constant" else lr / 10,
                       warmup_steps=min(warmup_steps, steps), weight_decay=0.1, grad_clip=1.0,
                       eval_interval=steps, eval_iters=1, seed=seed, device=str(device),
                       progress=False)


def _train_and_measure(config: GPTConfig, steps: list[int], data: SweepData, schedule: str,
                       batch_size: int, lr: float, warmup_steps: int, eval_windows: int, seed: int,
                       device: torch.device) -> list[SweepPoint]:
    x_val, y_val = _eval_windows(data.val, eval_windows, config.context_length)
    skip = config.context_length // 2
    n, n_total = param_count(config), param_count(config, non_embedding=False)
    runs = [steps] if schedule == "constant" else [[s] for s in steps]
    points = []
    for run in runs:
        with torch.random.fork_rng(devices=[]):   # the same initial weights for every run of a config
            torch.manual_seed(seed)
            model = GPT(config)
        trainer = Trainer(model, _train_config(schedule, run[-1], batch_size, lr, warmup_steps, seed, device),
                          data.train)
        start = time.perf_counter()
        for s in run:
            trainer.train(steps=s - trainer.step)
            tokens = s * batch_size * config.context_length
            points.append(SweepPoint(config.n_layer, config.n_head, config.n_embd, n, n_total, tokens, s,
                                     training_flops(config, tokens), 6 * n * tokens,
                                     _val_loss(model, x_val, y_val, skip, trainer.device),
                                     time.perf_counter() - start))
    return points


def _load_cached(path, settings: dict[str, Any]) -> list[SweepPoint] | None:
    """The cached points for ``settings``, or None if absent; a damaged or foreign file is reported
    and ignored (it will be overwritten)."""
    if not path.is_file():
        return None
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
        if blob.get("settings") != settings:
            raise ValueError("it was written for other settings")
        return [SweepPoint(**p) for p in blob["points"]]
    except (ValueError, KeyError, TypeError) as e:
        warnings.warn(f"ignoring the damaged sweep cache {path} ({e}); re-running this config", stacklevel=3)
        return None


def run_sweep(configs: Sequence[GPTConfig], token_budgets: Sequence[int], *, corpus: str = "toy",
              schedule: str = "constant", batch_size: int = 16, lr: float = 3e-3, warmup_steps: int = 20,
              eval_windows: int = 256, seed: int = 0, device: str | torch.device | None = None,
              num_threads: int | None = None, cache: bool = True, verbose: bool = False,
              progress: bool = False) -> list[SweepPoint]:
    """Train ``GPT(config)`` for each config on ``corpus`` and measure the validation loss after
    each of ``token_budgets`` training tokens; returns one :class:`SweepPoint` per (config, budget),
    configs in the given order, budgets ascending.

    ``schedule``: ``"constant"`` trains each config once, to the largest budget, with a constant
    learning rate after a linear warm-up of ``warmup_steps``, and measures at every budget on the
    way (cheap: one run per model, as in Kaplan et al. 2020); ``"cosine"`` trains a separate run per
    budget whose rate decays to ``lr/10`` exactly at the budget (the Chinchilla protocol, costlier).
    Every budget must be a multiple of ``batch_size · context_length`` tokens (one optimiser step).
    The validation loss is measured on ``eval_windows`` fixed, evenly spaced windows of the
    validation split, scoring only the second half of each window (at least ``context_length // 2``
    tokens of context). Model weights are initialised from ``seed`` (the caller's RNG state is
    left untouched) and the batch order comes from ``seed`` too, so a run on a CPU is repeatable.

    With ``cache`` each config's results are stored atomically as JSON in
    ``lmcore.data.cache_dir() / "scaling" / "<key>.json"``, the key hashing every setting, the
    corpus text, the device type, the CPU's kernel choice and the lmcore version; a later call
    with the same settings reads them back instead of training. ``num_threads``: CPU threads
    while training (None: unchanged). ``progress`` shows one bar over all the optimiser steps of the
    sweep, with an ETA (:func:`lmcore.progress`; cached configs pass in an instant).
    """
    for name, value in (("configs", configs), ("token_budgets", token_budgets)):
        if isinstance(value, (GPTConfig, str)) or not isinstance(value, Iterable):
            raise ArgumentTypeError(f"{name} must be a list, got {type(value).__name__}")
    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: pass at least one GPTConfig")
    for c in configs:
        _check_config(c)
    # numpy integers become Python ints (_plain): the settings below are hashed as JSON
    budgets = sorted({check_int("token_budgets[i]", _plain(b), low=1) for b in token_budgets})
    if not budgets:
        raise ValueError("token_budgets is empty: pass at least one number of training tokens")
    check_choice("schedule", schedule, SCHEDULES)
    batch_size = check_int("batch_size", _plain(batch_size), low=1)
    warmup_steps = check_int("warmup_steps", _plain(warmup_steps), low=0)
    eval_windows = check_int("eval_windows", _plain(eval_windows), low=1)
    seed = check_int("seed", _plain(seed), low=0)
    num_threads = check_int("num_threads", _plain(num_threads), low=1, optional=True)
    check_float("lr", lr, low=0, low_open=True)
    check_bool("cache", cache), check_bool("verbose", verbose), check_bool("progress", progress)
    data = sweep_data(corpus)
    device = get_device(device)
    # every config checked before the first is trained: a bad last one would surface after hours
    steps_of = [_steps(config, budgets, batch_size, eval_windows, data, corpus) for config in configs]
    points: list[SweepPoint] = []
    # the bar counts optimiser steps: one run to the last budget, or one run per budget (cosine)
    cost = [steps[-1] if schedule == "constant" else sum(steps) for steps in steps_of]
    bar = step_bar(progress, sum(cost), f"sweep ({schedule})")
    for config, steps, spent in zip(configs, steps_of, cost):
        settings = {"model": _non_default_fields(config), "steps": steps, "schedule": schedule,
                    "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "eval_windows": eval_windows,
                    "seed": seed,
                    "corpus": data.digest, "device": device.type, "lmcore_version": __version__,
                    # another CPU's kernels train to other last bits: never serve their results here
                    "cpu_kernels": f"{torch.backends.cpu.get_cpu_capability()}/"
                                   f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '')}"
                    if device.type == "cpu" else None}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        path = cache_dir() / "scaling" / f"{key}.json"
        found = _load_cached(path, settings) if cache else None
        source = "cached" if found is not None else "trained"
        if found is None:
            with torch_threads(num_threads):
                found = _train_and_measure(config, steps, data, schedule, batch_size, lr, warmup_steps,
                                           eval_windows, seed, device)
            if cache:
                with atomic_write(path, "w") as f:
                    json.dump({"settings": settings, "points": [p.to_dict() for p in found]}, f, indent=1)
        bar.update(spent)
        if verbose:
            last = found[-1]
            print(f"N = {last.params:>9,d} ({source}): val loss {last.val_loss:.3f} after {last.tokens:,d} tokens")
        points.extend(found)
    bar.close()
    return points


def _steps(config: GPTConfig, budgets: list[int], batch_size: int, eval_windows: int, data: SweepData,
           corpus: str) -> list[int]:
    """The optimiser steps of each budget for ``config``, or the reason it cannot be swept."""
    if config.vocab_size != data.vocab_size:
        raise ValueError(f"config.vocab_size={config.vocab_size} but the {corpus!r} corpus has "
                         f"{data.vocab_size} characters; build the configs with vocab_size="
                         f"sweep_data({corpus!r}).vocab_size")
    per_step = batch_size * config.context_length
    bad = [b for b in budgets if b % per_step]
    if bad:
        raise ValueError(f"token_budgets {bad} are not multiples of batch_size * context_length = {per_step} "
                         "tokens (one optimiser step); round them to whole steps")
    if data.val.numel() <= config.context_length + eval_windows:
        raise ValueError(f"the validation split ({data.val.numel()} tokens) is too short for {eval_windows} "
                         f"windows of {config.context_length} tokens; lower eval_windows")
    return [b // per_step for b in budgets]


def pareto_frontier(points: Sequence[SweepPoint], flops: str = "flops") -> list[SweepPoint]:
    """The compute-efficient frontier: the points whose loss is lower than that of every point
    with no more compute (``flops``: ``"flops"`` counted, or ``"flops_6nd"``), by increasing compute."""
    check_choice("flops", flops, ("flops", "flops_6nd"))
    if isinstance(points, (str, bytes)) or not isinstance(points, Iterable):
        raise ArgumentTypeError(f"points must be a list of SweepPoint (from run_sweep), got {type(points).__name__}")
    points = list(points)
    bad = next((i for i, p in enumerate(points) if not isinstance(p, SweepPoint)), None)
    if bad is not None:
        raise ArgumentTypeError(f"points must hold SweepPoint (from run_sweep), got {type(points[bad]).__name__} "
                                f"at index {bad}")
    frontier: list[SweepPoint] = []
    for p in sorted(points, key=lambda p: (getattr(p, flops), p.val_loss)):
        if not frontier or p.val_loss < frontier[-1].val_loss:
            frontier.append(p)
    return frontier
