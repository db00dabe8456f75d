"""IsoFLOP curves (chapter 9): Chinchilla's second approach to the compute-optimal model size.

Hoffmann et al. (2022) fixed a set of compute budgets, trained several model sizes at each budget,
every run with its own learning-rate schedule decayed to its end, and fitted a parabola to loss
against log N per budget: its vertex is the best size for that budget. Power laws through the
vertices give ``N_opt ∝ C^a`` and ``D_opt ∝ C^b``.

``isoflop_tokens(config, compute)`` is the number of training tokens (whole optimiser steps) that
spends a budget; ``run_isoflop(configs, budgets)`` trains the runs (through :func:`run_sweep`, so
they are cached); ``fit_isoflop(points, compute)`` fits one budget's parabola and
``fit_optimal_scaling(fits)`` the power laws across budgets.

Parameter convention: Chinchilla counts *all* parameters, embeddings included (Kaplan et al.
count the non-embedding ones); ``params="total"``, the default here, follows Chinchilla.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import ArgumentTypeError, check_choice, check_float, check_int
from ..models import GPTConfig
from .fit import PowerLawFit, fit_power_law
from .flops import _check_config, _plain, flops_per_token
from .sweep import SCHEDULES, SweepPoint, run_sweep, step_bar

__all__ = ["IsoFLOPFit", "OptimalScaling", "fit_isoflop", "fit_optimal_scaling", "isoflop_tokens", "run_isoflop"]

PARAM_CONVENTIONS = ("total", "non_embedding")


def isoflop_tokens(config: GPTConfig, compute: float, batch_size: int = 16) -> int:
    """Training tokens that spend ``compute`` counted FLOPs (:func:`flops_per_token`) on ``GPT(config)``,
    rounded to a whole number of optimiser steps of ``batch_size · context_length`` tokens (at least one)."""
    cfg = _check_config(config)
    check_float("compute", _plain(compute), low=0, low_open=True)
    batch_size = check_int("batch_size", _plain(batch_size), low=1)
    per_step = batch_size * cfg.context_length
    return max(1, round(float(compute) / (flops_per_token(cfg) * per_step))) * per_step


def _list(name: str, value: Any) -> list:
    if isinstance(value, (GPTConfig, str, bytes)) or not isinstance(value, Iterable):
        raise ArgumentTypeError(f"{name} must be a list, got {type(value).__name__}")
    value = list(value)
    if not value:
        raise ValueError(f"{name} is empty")
    return value


def run_isoflop(configs: Sequence[GPTConfig], compute_budgets: Sequence[float], *, batch_size: int = 16,
                min_steps: int = 1, max_steps: int | None = None, schedule: str = "cosine",
                progress: bool = False, **sweep_kwargs: Any) -> dict[float, list[SweepPoint]]:
    """Train every config at every budget for :func:`isoflop_tokens` tokens; returns
    ``{budget: [SweepPoint, ...]}`` (budgets ascending, configs in the given order).

    A (config, budget) pair whose run would be shorter than ``min_steps`` or longer than
    ``max_steps`` optimiser steps is left out, so each budget keeps the sizes it can afford to train
    sensibly. ``schedule="cosine"`` (Chinchilla's protocol) trains one run per pair, its learning
    rate decayed to ``lr/10`` exactly at its end; ``"constant"`` trains one run per config and
    measures it at each of its budgets on the way (Kaplan's protocol: the same (N, D) points, at a
    fraction of the cost). Other keywords go to :func:`run_sweep` (``lr``, ``warmup_steps``, ``seed``,
    ``num_threads``, ``cache``, ...), which caches every run. ``progress`` shows one bar over
    all the optimiser steps (cached runs pass in an instant).
    """
    configs = [_check_config(c) for c in _list("configs", configs)]
    budgets = sorted({check_float("compute_budgets[i]", _plain(c), low=0, low_open=True)
                      for c in _list("compute_budgets", compute_budgets)})
    batch_size = check_int("batch_size", _plain(batch_size), low=1)
    min_steps = check_int("min_steps", _plain(min_steps), low=1)
    max_steps = check_int("max_steps", _plain(max_steps), low=min_steps, optional=True)
    check_choice("schedule", schedule, SCHEDULES)
    if "token_budgets" in sweep_kwargs or "schedule" in sweep_kwargs:
        raise TypeError("run_isoflop sets the token budgets and the schedule of each run itself")
    # (budget, config index, tokens) of every run kept, checked and planned before anything trains
    plan = []
    for c in budgets:
        for i, cfg in enumerate(configs):
            tokens = isoflop_tokens(cfg, c, batch_size)
            steps = tokens // (batch_size * cfg.context_length)
            if steps >= min_steps and (max_steps is None or steps <= max_steps):
                plan.append((c, i, tokens))
    if not plan:
        raise ValueError(f"no run has between min_steps={min_steps} and max_steps={max_steps} steps at these "
                         "budgets: widen the step range or change the budgets")
    per_step = {i: batch_size * cfg.context_length for i, cfg in enumerate(configs)}
    if schedule == "cosine":
        jobs = [(i, [tokens], [(c, tokens)]) for c, i, tokens in plan]
    else:                                           # one run per config, measured at each of its budgets
        jobs = []
        for i in sorted({i for _, i, _ in plan}):
            mine = [(c, tokens) for c, j, tokens in plan if j == i]
            jobs.append((i, sorted({t for _, t in mine}), mine))
    out: dict[float, dict[int, SweepPoint]] = {c: {} for c in budgets}
    bar = step_bar(progress, sum(max(t) // per_step[i] for i, t, _ in jobs), f"IsoFLOP runs ({schedule})")
    try:
        for i, token_budgets, wanted in jobs:
            points = run_sweep([configs[i]], token_budgets, batch_size=batch_size, schedule=schedule, **sweep_kwargs)
            by_tokens = {p.tokens: p for p in points}
            for c, tokens in wanted:
                out[c][i] = by_tokens[tokens]
            bar.update(max(token_budgets) // per_step[i])
    finally:
        bar.close()
    return {c: [runs[i] for i in sorted(runs)] for c, runs in out.items() if runs}


def _params(p: SweepPoint, convention: str) -> int:
    return p.params_total if convention == "total" else p.params


@dataclass(frozen=True)
class IsoFLOPFit:
    """One budget's IsoFLOP curve: ``loss ≈ c0 + c1·x + c2·x²`` with ``x = ln N``, and its vertex.

    ``n_opt``: the vertex, the compute-optimal size; ``d_opt``: its tokens, read off the budget's
    runs (a straight line of ln D on ln N through them, at ``n_opt``); ``loss_opt``: the parabola's
    value there; ``inside``: whether ``n_opt`` lies within the sizes trained (outside, the vertex is
    an extrapolation, not a measurement). ``params`` follow ``convention``.
    """
    compute: float
    params: tuple[int, ...]
    tokens: tuple[int, ...]
    losses: tuple[float, ...]
    coef: tuple[float, float, float]
    n_opt: float
    d_opt: float
    loss_opt: float
    inside: bool
    convention: str = "total"

    def predict(self, n: Any) -> np.ndarray:
        """The parabola's loss at ``n`` parameters (a number or an array)."""
        x = np.log(np.asarray(n, dtype=np.float64))
        c0, c1, c2 = self.coef
        return c0 + c1 * x + c2 * x ** 2


def _points(name: str, points: Any) -> list[SweepPoint]:
    points = _list(name, points)
    bad = next((i for i, p in enumerate(points) if not isinstance(p, SweepPoint)), None)
    if bad is not None:
        raise ArgumentTypeError(f"{name} must hold SweepPoint (from run_sweep / run_isoflop), got "
                                f"{type(points[bad]).__name__} at index {bad}")
    return points


def fit_isoflop(points: Sequence[SweepPoint], compute: float, params: str = "total") -> IsoFLOPFit:
    """Fit the IsoFLOP parabola of the runs ``points``, all trained with ``compute`` FLOPs (within a
    factor of two: the budgets of runs rounded to whole steps differ a little), by least squares of
    the loss on ``(ln N, ln² N)``. Needs at least three sizes and an upward curvature (a minimum)."""
    points = _points("points", points)
    check_float("compute", _plain(compute), low=0, low_open=True)
    check_choice("params", params, PARAM_CONVENTIONS)
    off = [p for p in points if not 0.5 <= p.flops / compute <= 2.0]
    if off:
        raise ValueError(f"{len(off)} of the runs spent {off[0].flops:.3g} FLOPs or similar, not about "
                         f"compute={compute:.3g}: pass one budget's runs at a time")
    n = np.array([_params(p, params) for p in points], dtype=np.float64)
    if np.unique(n).size < 3:
        raise ValueError(f"an IsoFLOP parabola needs at least 3 model sizes, got {np.unique(n).size}")
    x = np.log(n)
    loss = np.array([p.val_loss for p in points])
    c2, c1, c0 = np.polyfit(x, loss, 2)
    if not c2 > 0:
        raise ValueError(f"the losses at compute={compute:.3g} do not curve upwards in ln N (curvature {c2:.3g}), "
                         "so they have no minimum: train sizes on both sides of the best one")
    x_opt = -c1 / (2 * c2)
    slope, intercept = np.polyfit(x, np.log([p.tokens for p in points]), 1)
    return IsoFLOPFit(float(compute), tuple(int(v) for v in n), tuple(p.tokens for p in points),
                      tuple(float(v) for v in loss), (float(c0), float(c1), float(c2)), math.exp(x_opt),
                      math.exp(intercept + slope * x_opt), float(c0 + c1 * x_opt + c2 * x_opt ** 2),
                      bool(x.min() <= x_opt <= x.max()), params)


@dataclass(frozen=True)
class OptimalScaling:
    """``N_opt ≈ n_law.scale · C^a`` and ``D_opt ≈ d_law.scale · C^b`` through the vertices of
    several budgets (``a = n_law.exponent``, ``b = d_law.exponent``, each with its interval)."""
    n_law: PowerLawFit
    d_law: PowerLawFit
    compute: tuple[float, ...]

    def tokens_per_param(self, compute: Any) -> np.ndarray:
        """``D_opt / N_opt`` at ``compute`` FLOPs by the two power laws."""
        return self.d_law.predict(compute) / self.n_law.predict(compute)


def fit_optimal_scaling(fits: Sequence[IsoFLOPFit], confidence: float = 0.95) -> OptimalScaling:
    """Power laws of the vertices' ``n_opt`` and ``d_opt`` against the budget (least squares in log-log
    space, :func:`fit_power_law`), from at least three budgets with their vertex inside the sizes trained."""
    fits = _list("fits", fits)
    bad = next((i for i, f in enumerate(fits) if not isinstance(f, IsoFLOPFit)), None)
    if bad is not None:
        raise ArgumentTypeError(f"fits must hold IsoFLOPFit (from fit_isoflop), got {type(fits[bad]).__name__} "
                                f"at index {bad}")
    outside = [f"{f.compute:.3g}" for f in fits if not f.inside]
    if outside:
        raise ValueError(f"the vertex of budget(s) {', '.join(outside)} lies outside the sizes trained: an "
                         "extrapolated minimum is not a measurement; add sizes there or leave the budget out")
    if len({f.convention for f in fits}) > 1:
        raise ValueError("the fits count parameters by different conventions; fit them all with one")
    c = np.array([f.compute for f in fits])
    n_law = fit_power_law(c, [f.n_opt for f in fits], confidence=confidence)
    d_law = fit_power_law(c, [f.d_opt for f in fits], confidence=confidence)
    return OptimalScaling(n_law, d_law, tuple(float(v) for v in c))
