"""lmcore.scaling's IsoFLOP analysis and fit-window choice: parabola vertices against closed-form
optima of a known law, Chinchilla's parameter-counting convention against the built model, the
IsoFLOP runs against run_sweep, the progress bars, and leave-one-size-out on synthetic sweeps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lmcore import GPT, GPTConfig, scaling
from lmcore.scaling import (
    IsoFLOPFit,
    SweepPoint,
    fit_isoflop,
    fit_optimal_scaling,
    flops_per_token,
    isoflop_tokens,
    leave_one_size_out,
    run_isoflop,
    run_sweep,
    sweep_data,
)

LAW = dict(E=0.4, A=30.0, B=200.0, alpha=0.35, beta=0.3)


def _law(n, d):
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


def _point(n_total, tokens, loss, flops, steps=100, n_embed=0):
    return SweepPoint(2, 2, 8, n_total - n_embed, n_total, int(tokens), steps, int(flops), 0, float(loss), 0.0)


def _isoflop_points(compute, sizes):
    """Runs of a model family whose loss is exactly LAW, each spending compute = 6·N·D."""
    return [_point(int(n), compute / (6 * int(n)), _law(int(n), compute / (6 * int(n))), compute) for n in sizes]


def _closed_form_n_opt(compute):
    """The N minimising LAW under 6·N·D = compute (the minimum of A/N^α + B·(6N/C)^β)."""
    a, b, al, be = LAW["A"], LAW["B"], LAW["alpha"], LAW["beta"]
    return (al * a / (be * b)) ** (1 / (al + be)) * (compute / 6) ** (be / (al + be))


# ------------------------------------------------------------------------------------ parabola
def test_parabola_recovers_an_exact_quadratic():
    sizes = [1000, 2000, 4000, 8000, 16000]
    x0, c = math.log(3000.0), 1e9
    pts = [_point(n, c / (6 * n), 0.5 + 0.1 * (math.log(n) - x0) ** 2, c) for n in sizes]
    fit = fit_isoflop(pts, c)
    assert fit.n_opt == pytest.approx(3000.0, rel=1e-9)
    assert fit.loss_opt == pytest.approx(0.5, abs=1e-12)
    assert fit.inside and fit.convention == "total"
    # D = C / 6N up to the rounding of the runs' tokens to integers, so read off just as closely
    assert fit.d_opt == pytest.approx(c / (6 * 3000.0), rel=1e-4)
    assert np.allclose(fit.predict(sizes), [p.val_loss for p in pts])


@pytest.mark.parametrize("compute", [1e18, 1e20, 1e22])
def test_vertex_lands_on_the_laws_compute_optimal_size(compute):
    n_star = _closed_form_n_opt(compute)
    sizes = n_star * np.logspace(-0.6, 0.6, 7)          # sizes around the optimum, a factor 4 each way
    fit = fit_isoflop(_isoflop_points(compute, sizes), compute)
    # brute force: the lowest loss of the law on a fine grid of sizes at this budget
    grid = n_star * np.logspace(-1, 1, 20001)
    brute = grid[np.argmin(_law(grid, compute / (6 * grid)))]
    assert brute == pytest.approx(n_star, rel=1e-3)
    assert fit.n_opt == pytest.approx(n_star, rel=0.03)
    assert fit.d_opt == pytest.approx(compute / (6 * fit.n_opt), rel=1e-6)


def test_optimal_scaling_recovers_the_laws_exponents():
    budgets = [1e18, 1e19, 1e20, 1e21]
    fits = [fit_isoflop(_isoflop_points(c, _closed_form_n_opt(c) * np.logspace(-0.5, 0.5, 5)), c) for c in budgets]
    law = fit_optimal_scaling(fits)
    a = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
    assert law.n_law.exponent == pytest.approx(a, abs=0.01)
    assert law.d_law.exponent == pytest.approx(1 - a, abs=0.01)
    ratio = float(law.tokens_per_param(1e20))
    n = _closed_form_n_opt(1e20)
    assert ratio == pytest.approx(1e20 / (6 * n) / n, rel=0.06)


def test_an_extrapolated_vertex_is_flagged_and_refused():
    c = 1e20
    n_star = _closed_form_n_opt(c)
    fit = fit_isoflop(_isoflop_points(c, n_star * np.logspace(0.3, 1.0, 5)), c)    # all sizes too large
    assert not fit.inside
    good = [fit_isoflop(_isoflop_points(b, _closed_form_n_opt(b) * np.logspace(-0.5, 0.5, 5)), b) for b in (1e18, 1e19)]
    with pytest.raises(ValueError, match="outside the sizes trained"):
        fit_optimal_scaling(good + [fit])


def test_isoflop_rejects_bad_input():
    c = 1e20
    pts = _isoflop_points(c, _closed_form_n_opt(c) * np.logspace(-0.5, 0.5, 5))
    with pytest.raises(ValueError, match="at least 3 model sizes"):
        fit_isoflop(pts[:2], c)
    concave = [_point(p.params_total, p.tokens, -p.val_loss, c) for p in pts]
    with pytest.raises(ValueError, match="no minimum"):
        fit_isoflop(concave, c)
    with pytest.raises(ValueError, match="one budget"):
        fit_isoflop(pts, 10 * c)
    with pytest.raises(ValueError, match="params"):
        fit_isoflop(pts, c, params="embedding")
    with pytest.raises(TypeError, match="SweepPoint"):
        fit_isoflop([1.0, 2.0, 3.0], c)
    with pytest.raises(TypeError, match="IsoFLOPFit"):
        fit_optimal_scaling([1, 2, 3])
    with pytest.raises(ValueError, match="compute"):
        isoflop_tokens(GPTConfig(vocab_size=26, context_length=16, n_layer=1, n_head=2, n_embd=8), 0)


# -------------------------------------------------------------------------- counting convention
def test_chinchilla_counts_every_parameter_kaplan_leaves_out_the_embeddings():
    """Hoffmann et al. count all parameters; the default convention of fit_isoflop is theirs."""
    cfgs = [GPTConfig(vocab_size=26, context_length=64, n_layer=2, n_head=2, n_embd=e, pos_encoding="rope")
            for e in (8, 12, 16)] + [GPTConfig(vocab_size=26, context_length=64, n_layer=2, n_head=2, n_embd=16)]
    c = 1e10
    pts = []
    for cfg in cfgs[:3]:
        model = GPT(cfg)
        every = sum(p.numel() for p in model.parameters())          # tied weights are one tensor
        embedding = model.transformer.wte.weight.numel()
        assert scaling.param_count(cfg, non_embedding=False) == every
        assert scaling.param_count(cfg) == every - embedding
        tokens = isoflop_tokens(cfg, c)
        pts.append(_point(every, tokens, 1.0 + 1e-6 * (math.log(every) - 6) ** 2, c, n_embed=embedding))
    assert fit_isoflop(pts, c).params == tuple(p.params_total for p in pts)
    assert fit_isoflop(pts, c, params="non_embedding").params == tuple(p.params for p in pts)
    # learned positions are embeddings too
    learned = GPT(cfgs[3])
    assert scaling.param_count(cfgs[3], non_embedding=False) - scaling.param_count(cfgs[3]) == (
        learned.transformer.wte.weight.numel() + learned.transformer.wpe.weight.numel())


def test_isoflop_tokens_spend_the_budget_in_whole_steps():
    cfg = GPTConfig(vocab_size=26, context_length=64, n_layer=2, n_head=2, n_embd=16, pos_encoding="rope")
    for c in (1e9, 3.3e9, 1e10):
        tokens = isoflop_tokens(cfg, c, batch_size=16)
        assert tokens % (16 * 64) == 0
        # within half a step of the budget: no other whole number of steps is closer
        assert abs(tokens * flops_per_token(cfg) - c) <= 0.5 * 16 * 64 * flops_per_token(cfg)
    assert isoflop_tokens(cfg, 1.0) == 16 * 64          # at least one step


# ------------------------------------------------------------------------------------ the runs
SWEEP = dict(eval_windows=8, warmup_steps=2, lr=1e-2)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path))
    return tmp_path / "scaling"


def _configs():
    v = sweep_data("toy").vocab_size
    return [GPTConfig(vocab_size=v, context_length=16, n_layer=1, n_head=2, n_embd=e) for e in (8, 12)]


def test_isoflop_runs_are_run_sweeps_runs(cache):
    cfgs, budgets = _configs(), [5e6, 1e7]
    runs = run_isoflop(cfgs, budgets, batch_size=4, min_steps=3, **SWEEP)
    assert sorted(runs) == budgets
    for c in budgets:
        for cfg, p in zip(cfgs, runs[c]):
            tokens = isoflop_tokens(cfg, c, batch_size=4)
            (want,) = run_sweep([cfg], [tokens], batch_size=4, schedule="cosine", **SWEEP)
            assert p == want
    constant = run_isoflop(cfgs, budgets, batch_size=4, min_steps=3, schedule="constant", **SWEEP)
    for i, cfg in enumerate(cfgs):
        tokens = [isoflop_tokens(cfg, c, batch_size=4) for c in budgets]
        want = run_sweep([cfg], tokens, batch_size=4, schedule="constant", **SWEEP)
        assert [constant[c][i] for c in budgets] == want
    # a run outside the step range is left out, and so is a budget with no run left
    few = run_isoflop(cfgs, [5e6, 1e5], batch_size=4, min_steps=3, max_steps=8, **SWEEP)
    assert list(few) == [5e6] and [p.steps for p in few[5e6]] == [5]       # the wider model only
    with pytest.raises(ValueError, match="no run"):
        run_isoflop(cfgs, [1e5], batch_size=4, min_steps=3, **SWEEP)
    with pytest.raises(TypeError, match="sets the token budgets"):
        run_isoflop(cfgs, budgets, token_budgets=[64], **SWEEP)


class _Bar:
    """Stands in for lmcore.progress: records the bar's total and its updates."""
    made: list = []

    def __init__(self, total=None, desc=None, **kw):
        self.total, self.done = total, 0
        _Bar.made.append(self)

    def update(self, n=1):
        self.done += n

    def close(self):
        pass


def test_progress_bars_count_every_step(cache, monkeypatch):
    monkeypatch.setattr(scaling.sweep, "progress_bar", _Bar)      # step_bar (used by both) finds it here
    _Bar.made = []
    cfgs = _configs()
    run_isoflop(cfgs, [5e6, 1e7], batch_size=4, min_steps=3, progress=True, **SWEEP)
    steps = [isoflop_tokens(cfg, c, batch_size=4) // 64 for c in (5e6, 1e7) for cfg in cfgs]
    outer = _Bar.made[0]
    assert outer.total == outer.done == sum(steps)
    _Bar.made = []
    run_sweep(cfgs, [640, 1280], batch_size=4, schedule="cosine", progress=True, **SWEEP)
    (bar,) = _Bar.made
    assert bar.total == bar.done == 2 * (10 + 20)          # cosine: one run per budget
    _Bar.made = []
    run_sweep(cfgs, [640, 1280], batch_size=4, progress=True, **SWEEP)     # constant: one run to the last budget
    (bar,) = _Bar.made
    assert bar.total == bar.done == 2 * 20
    _Bar.made = []
    run_sweep(cfgs, [640], batch_size=4, **SWEEP)          # no bar asked for: none made
    assert _Bar.made == []


@pytest.mark.parametrize("setting", ["0", "1"])
def test_progress_works_whether_or_not_bars_are_switched_off(cache, monkeypatch, setting):
    """make test and make book set LMCORE_PROGRESS=0: a sweep asked for a bar must still run there."""
    monkeypatch.setenv("LMCORE_PROGRESS", setting)
    (p,) = run_sweep(_configs()[:1], [640], batch_size=4, progress=True, **SWEEP)
    assert run_isoflop(_configs()[:1], [5e6], batch_size=4, progress=True, **SWEEP)[5e6][0].steps == 11


# ------------------------------------------------------------------------ leave one size out
def _sweep_points(distort_before=0, amount=0.0):
    """An exact-law sweep of 5 sizes x 8 budgets; runs before step ``distort_before`` are made
    worse by ``amount`` (relative), like the start of training no law describes."""
    pts = []
    for n in (1e3, 3e3, 1e4, 3e4, 1e5):
        for steps in (16, 32, 64, 128, 256, 512, 1024, 2048):
            d = steps * 1000
            loss = _law(n, d) * (1 + (amount if steps < distort_before else 0.0))
            pts.append(SweepPoint(1, 1, 8, int(n), int(n) + 100, d, steps, 6 * int(n) * d, 0, loss, 0.0))
    return pts


def test_leave_one_size_out_is_exact_on_an_exact_law():
    scores = leave_one_size_out(_sweep_points(), [16, 64, 256])
    assert [s.start for s in scores] == [16, 64, 256]
    assert all(s.rms < 1e-3 for s in scores)
    assert scores[0].n_fit == 40 and scores[-1].n_fit == 5 * 4


def test_leave_one_size_out_prefers_the_window_without_the_distorted_start():
    scores = leave_one_size_out(_sweep_points(distort_before=64, amount=0.3), [16, 64, 256])
    rms = {s.start: s.rms for s in scores}
    assert rms[64] < 1e-3 and rms[256] < 1e-3 < rms[16]
    # the score is the left-out predictions, written out here for the first window and smallest size
    pts = _sweep_points(distort_before=64, amount=0.3)
    train = [p for p in pts if p.params != 1000]
    law = scaling.fit_chinchilla(*(np.array([getattr(p, k) for p in train], float) for k in ("params", "tokens", "val_loss")),
                                 n_bootstrap=0)
    target = [p for p in pts if p.params == 1000 and p.steps >= 256]
    err = np.log(law.predict(1000.0, np.array([p.tokens for p in target], float)) / [p.val_loss for p in target])
    assert scores[0].per_size[1000] == pytest.approx(float(np.sqrt(np.mean(err ** 2))), rel=1e-9)


def test_leave_one_size_out_rejects_bad_input():
    pts = _sweep_points()
    with pytest.raises(ValueError, match="at least 3 model sizes"):
        leave_one_size_out([p for p in pts if p.params in (1000, 3000)], [16])
    with pytest.raises(ValueError, match="starts is empty"):
        leave_one_size_out(pts, [])
    with pytest.raises(TypeError, match="SweepPoint"):
        leave_one_size_out([1, 2, 3], [16])
    with pytest.raises(ValueError, match="too few runs"):
        leave_one_size_out(pts, [2048])
    with pytest.raises(ValueError, match="params"):
        leave_one_size_out(pts, [16], params="all")


def test_exports():
    for name in ("IsoFLOPFit", "OptimalScaling", "WindowScore", "fit_isoflop", "fit_optimal_scaling",
                 "isoflop_tokens", "leave_one_size_out", "run_isoflop"):
        assert name in scaling.__all__ and hasattr(scaling, name)
    assert IsoFLOPFit.__module__ == "lmcore.scaling.isoflop"
