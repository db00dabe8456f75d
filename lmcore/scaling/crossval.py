"""Choosing a fit window (chapter 9): leave-one-size-out prediction error of the Chinchilla law.

The law ``L = E + A/N^α + B/D^β`` does not describe the start of training, so a fit uses the runs
from some step on, and which step is a choice. The in-sample error cannot make it (fewer, flatter
points are always easier to fit). ``leave_one_size_out(points, starts)`` scores each candidate start
by what a law is for, predicting runs it has not seen: for every model size, the law is fitted to
the other sizes' runs in the window and predicts the left-out size's runs.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import ArgumentTypeError, check_choice, check_float, check_int
from .fit import ChinchillaFit, fit_chinchilla
from .flops import _plain
from .sweep import SweepPoint

__all__ = ["WindowScore", "leave_one_size_out"]


@dataclass(frozen=True)
class WindowScore:
    """The leave-one-size-out score of one fit window (the runs with ``steps >= start``).

    ``rms``: root-mean-square error in ``ln L`` over all left-out predictions; ``per_size[N]``: the
    same for each left-out size alone; ``n_fit``: the runs in the window (all sizes).
    """
    start: int
    rms: float
    per_size: dict[int, float]
    n_fit: int


def leave_one_size_out(points: Sequence[SweepPoint], starts: Sequence[int], params: str = "non_embedding",
                       delta: float = 1e-3) -> list[WindowScore]:
    """Score each window ``steps >= start`` of ``starts``: for each model size, fit the law (no
    bootstrap) to the window's runs of the *other* sizes and predict the left-out size.

    Every window is judged on the same runs: each left-out size's runs with ``steps >= max(starts)``
    (those every window contains), so an early start is not rewarded or punished for the points it
    adds, only for how well its law predicts the late runs. ``params``: which N the law sees,
    ``"non_embedding"`` (``SweepPoint.params``) or ``"total"`` (``params_total``). Returns one
    :class:`WindowScore` per start, in the order of ``starts``.
    """
    if isinstance(points, (str, bytes)) or not isinstance(points, Iterable):
        raise ArgumentTypeError(f"points must be a list of SweepPoint, got {type(points).__name__}")
    points = list(points)
    if not all(isinstance(p, SweepPoint) for p in points):
        raise ArgumentTypeError("points must hold SweepPoint (from run_sweep)")
    if isinstance(starts, (str, bytes)) or not isinstance(starts, Iterable):
        raise ArgumentTypeError(f"starts must be a list of step counts, got {type(starts).__name__}")
    starts = [check_int("starts[i]", _plain(s), low=0) for s in starts]
    if not starts:
        raise ValueError("starts is empty: pass the first step of each candidate window")
    check_choice("params", params, ("non_embedding", "total"))
    check_float("delta", _plain(delta), low=0, low_open=True)
    key = (lambda p: p.params_total) if params == "total" else (lambda p: p.params)
    sizes = sorted({key(p) for p in points})
    if len(sizes) < 3:
        raise ValueError(f"leaving one size out needs at least 3 model sizes, got {len(sizes)}")
    last = max(starts)
    scores = []
    for start in starts:
        window = [p for p in points if p.steps >= start]
        errors: dict[int, np.ndarray] = {}
        for n in sizes:
            train = [p for p in window if key(p) != n]
            target = [p for p in points if key(p) == n and p.steps >= last]
            if not target:
                raise ValueError(f"size N={n} has no run with steps >= {last}: every size needs runs in every window")
            law = _fit(train, key, delta)
            predicted = law.predict(np.array([key(p) for p in target], dtype=float),
                                    np.array([p.tokens for p in target], dtype=float))
            errors[n] = np.log(predicted / np.array([p.val_loss for p in target]))
        every = np.concatenate(list(errors.values()))
        scores.append(WindowScore(start, float(np.sqrt(np.mean(every ** 2))),
                                  {n: float(np.sqrt(np.mean(e ** 2))) for n, e in errors.items()}, len(window)))
    return scores


def _fit(runs: list[SweepPoint], key: Any, delta: float) -> ChinchillaFit:
    n = np.array([key(p) for p in runs], dtype=float)
    d = np.array([p.tokens for p in runs], dtype=float)
    try:
        return fit_chinchilla(n, d, np.array([p.val_loss for p in runs]), delta=delta, n_bootstrap=0)
    except ValueError as e:
        raise ValueError(f"a window leaves too few runs to fit the law without one size ({e}); "
                         "start it earlier") from None
