"""Checks for the exercises of the chapter "Scaling laws".

``check_training_flops(fn)``, ``check_fit_power_law(fn)``, ``check_compute_optimal(fn)`` and
``check_optimal_size_exponent(fn, runs)`` call the student's function on fixed cases, compare it
with a reference written here from the definitions (independent of ``lmcore.scaling``'s functions;
only its ``SweepPoint`` data type is used) and print ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..models import GPTConfig
from ..scaling import SweepPoint
from ._check import CheckFailed, CheckResult, run_check

__all__ = ["check_training_flops", "check_fit_power_law", "check_compute_optimal", "check_optimal_size_exponent"]


def _non_embedding_params(cfg: GPTConfig) -> int:
    """Parameters of a tied, biased, pre-norm GPT without its embeddings, layer by layer."""
    E = cfg.n_embd
    per_layer = (2 * 2 * E                   # two LayerNorms (gain and bias)
                 + 3 * E * E + 3 * E         # query/key/value projection
                 + E * E + E                 # attention output projection
                 + 4 * E * E + 4 * E         # MLP up
                 + 4 * E * E + E)            # MLP down
    return cfg.n_layer * per_layer + 2 * E   # + the final LayerNorm


# Real shapes: GPT-2 small, GPT-2 XL and GPT-3 175B (tied output head, learned positions).
_FLOP_CASES = [
    (GPTConfig(vocab_size=50257, context_length=1024, n_layer=12, n_head=12, n_embd=768), 10 ** 9),
    (GPTConfig(vocab_size=50257, context_length=1024, n_layer=48, n_head=25, n_embd=1600), 4 * 10 ** 10),
    (GPTConfig(vocab_size=50257, context_length=2048, n_layer=96, n_head=96, n_embd=12288), 3 * 10 ** 11),
]


def check_training_flops(training_flops: Callable[[GPTConfig, int], float], quiet: bool = False) -> CheckResult:
    """Check ``training_flops(config, tokens)``: the approximate FLOPs of training ``GPT(config)`` on
    ``tokens`` tokens, ``6·N·D`` with N the non-embedding parameters (within 2%)."""

    def body() -> None:
        for cfg, tokens in _FLOP_CASES:
            want = 6 * _non_embedding_params(cfg) * tokens
            got = training_flops(cfg, tokens)
            if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)):
                raise CheckFailed(f"return a number of FLOPs, got {type(got).__name__}")
            what = f"n_layer={cfg.n_layer}, n_embd={cfg.n_embd}, {tokens:.0e} tokens"
            ratio = float(got) / want
            if abs(ratio - 1) <= 0.02:
                continue
            if abs(ratio - 1 / 3) < 0.02:
                raise CheckFailed(f"{what}: your count is a third of the answer. Either it is the forward pass "
                                  "only (the backward pass costs about twice the forward pass), or it counts "
                                  "only the attention's weights (the MLP holds two thirds of a block)")
            if ratio > 1:
                raise CheckFailed(f"{what}: your count is {ratio:.2f}x too large. Scaling laws count the "
                                  "non-embedding parameters: leave out the token and position embeddings")
            raise CheckFailed(f"{what}: your count is {ratio:.2f}x the answer. Count the parameters of one "
                              "block (attention: 4 matrices of n_embd x n_embd; MLP: 2 of n_embd x 4 n_embd), "
                              "times n_layer, and 2 FLOPs per parameter per token forward")

    return run_check("training_flops", body, quiet)


def _reference_power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares of log y on log x, written out: returns (scale, exponent)."""
    lx, ly = np.log(x), np.log(y)
    slope = np.sum((lx - lx.mean()) * (ly - ly.mean())) / np.sum((lx - lx.mean()) ** 2)
    return float(math.exp(ly.mean() - slope * lx.mean())), float(slope)


def check_fit_power_law(fit_power_law: Callable, quiet: bool = False) -> CheckResult:
    """Check ``fit_power_law(x, y) -> (scale, exponent)`` with ``y ≈ scale · x**exponent``: it must
    give the least-squares line in log-log space (on exact and on noisy data)."""

    def body() -> None:
        rng = np.random.default_rng(9)
        x = np.logspace(3, 7, 12)
        exact = 40.0 * x ** -0.3
        noisy = exact * np.exp(rng.normal(0.0, 0.15, x.shape))
        for y, what in [(exact, "exact data y = 40 x^-0.3"), (noisy, "noisy data (15% multiplicative noise)")]:
            out = fit_power_law(x.copy(), y.copy())
            if not (isinstance(out, tuple) and len(out) == 2):
                raise CheckFailed(f"{what}: return a pair (scale, exponent), got {type(out).__name__}")
            scale, exponent = (float(v) for v in out)
            want_scale, want_exp = _reference_power_law(x, y)
            if not math.isclose(exponent, want_exp, rel_tol=1e-4, abs_tol=1e-6):
                hint = ("fit a straight line to (log x, log y): a power law is a line in log-log space, and "
                        "least squares there weighs every point's relative error alike")
                if y is noisy:
                    hint = ("your fit is right on exact data but not on noisy data, so it minimises the wrong "
                            "error: " + hint)
                raise CheckFailed(f"{what}: exponent {exponent:.4f} is wrong; {hint}")
            if not math.isclose(scale, want_scale, rel_tol=1e-4):
                raise CheckFailed(f"{what}: the exponent is right but the scale {scale:.4g} is not: the intercept "
                                  "of the line is log(scale); undo the logarithm with the base you took")

    return run_check("fit_power_law", body, quiet)


def check_compute_optimal(compute_optimal: Callable[[float, float], tuple[float, float]],
                          quiet: bool = False) -> CheckResult:
    """Check ``compute_optimal(compute, tokens_per_param) -> (n_params, n_tokens)``: the model size
    and data that use ``compute = 6·N·D`` FLOPs with ``D = tokens_per_param · N``."""

    def body() -> None:
        for compute, ratio in [(5.76e23, 20.0), (1e21, 20.0), (1e18, 10.0), (3e15, 40.0)]:
            out = compute_optimal(compute, ratio)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise CheckFailed(f"return a pair (n_params, n_tokens), got {type(out).__name__}")
            n, d = (float(v) for v in out)
            want_n = math.sqrt(compute / (6 * ratio))
            what = f"C = {compute:.3g} FLOPs, {ratio:g} tokens per parameter"
            if not (n > 0 and d > 0):
                raise CheckFailed(f"{what}: N and D must be positive, got {n:.3g}, {d:.3g}")
            if not math.isclose(d / n, ratio, rel_tol=1e-6):
                raise CheckFailed(f"{what}: your D / N is {d / n:.3g}, it should be the tokens-per-parameter ratio")
            # with D / N right, N is right exactly when the budget is spent: 6·N·(ratio·N) = C
            if not math.isclose(6 * n * d, compute, rel_tol=1e-6):
                raise CheckFailed(f"{what}: your model would cost 6·N·D = {6 * n * d:.3g} FLOPs to train, not the "
                                  f"budget ({n / want_n:.3g}x the right N): substitute D = ratio · N into "
                                  "C = 6·N·D and solve for N")

    return run_check("compute_optimal", body, quiet)


# ------------------------------------------------------------------ IsoFLOP exponent (ex-09-6)
def _vertex_exponent(runs: dict, count: str) -> float:
    """Reference: per budget the vertex of the least-squares parabola of loss on ln N, then the
    slope of ln N_opt on ln C, written out with numpy alone."""
    log_c, log_n = [], []
    for compute, points in sorted(runs.items()):
        x = np.log([p.params_total if count == "total" else p.params for p in points])
        c2, c1, _ = np.polyfit(x, [p.val_loss for p in points], 2)
        log_c.append(math.log(compute))
        log_n.append(-c1 / (2 * c2))
    return float(np.polyfit(log_c, log_n, 1)[0])


def _synthetic_runs() -> dict:
    """IsoFLOP runs of a made-up model family (embeddings 26·E, non-embedding 24·E²) whose loss is a
    Chinchilla law in the total parameters: fixed cases on which both conventions differ."""
    runs = {}
    for compute in (5e8, 2e9, 8e9):
        points = []
        for width in (8, 12, 16, 24, 32, 48):
            n_total = 24 * width ** 2 + 26 * width
            tokens = compute / (6 * n_total)
            loss = 0.35 + 400 / n_total ** 0.45 + 300 / tokens ** 0.4
            points.append(SweepPoint(2, 2, width, n_total - 26 * width, n_total, int(tokens), 100, int(compute), 0,
                                     float(loss), 0.0))
        runs[compute] = points
    return runs


def check_optimal_size_exponent(optimal_size_exponent: Callable, runs: dict | None = None,
                                quiet: bool = False) -> CheckResult:
    """Check ``optimal_size_exponent(runs, count) -> a`` in ``N_opt ∝ C^a``: per budget of ``runs``
    (``{compute: [SweepPoint, ...]}``) the vertex of the parabola of loss against ln N, with N
    counted as ``count`` ("total", Chinchilla's, or "non_embedding", Kaplan's), then the slope of
    ln N_opt against ln C. Checked on fixed made-up runs, and on ``runs`` when given."""

    def body() -> None:
        cases = [("made-up runs", _synthetic_runs())] + ([("the chapter's runs", runs)] if runs else [])
        for what, case in cases:
            got = {}
            for count in ("total", "non_embedding"):
                out = optimal_size_exponent(case, count)
                if isinstance(out, bool) or not isinstance(out, (int, float, np.integer, np.floating)):
                    raise CheckFailed(f"return the exponent a as a number, got {type(out).__name__}")
                got[count] = float(out)
            want = {count: _vertex_exponent(case, count) for count in got}
            for count in ("total", "non_embedding"):
                if math.isclose(got[count], want[count], rel_tol=1e-3, abs_tol=1e-4):
                    continue
                other = "non_embedding" if count == "total" else "total"
                if math.isclose(got[count], want[other], rel_tol=1e-3, abs_tol=1e-4):
                    raise CheckFailed(f"{what}: with count={count!r} you counted parameters the other way. "
                                      "SweepPoint.params leaves the embeddings out (Kaplan's N); "
                                      "SweepPoint.params_total counts every parameter (Chinchilla's N)")
                best = _best_run_exponent(case, count)
                if math.isclose(got[count], best, rel_tol=1e-3, abs_tol=1e-4):
                    raise CheckFailed(f"{what}: you took the size of each budget's best run; take the vertex of "
                                      "the parabola fitted to loss against ln N, which can fall between sizes")
                raise CheckFailed(f"{what}, count={count!r}: a = {got[count]:.4f} is wrong. Print each budget's "
                                  "vertex ln N_opt and check it lies between that budget's sizes, then check "
                                  "which quantity you fit the final line against (the slope is a)")

    return run_check("optimal_size_exponent", body, quiet)


def _best_run_exponent(runs: dict, count: str) -> float:
    """A plausible wrong answer: the slope through each budget's best run instead of its vertex."""
    log_c, log_n = [], []
    for compute, points in sorted(runs.items()):
        best = min(points, key=lambda p: p.val_loss)
        log_c.append(math.log(compute))
        log_n.append(math.log(best.params_total if count == "total" else best.params))
    return float(np.polyfit(log_c, log_n, 1)[0])
