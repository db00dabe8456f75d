"""lmcore.scaling: parameter and FLOP counts against the model and torch's FLOP counter, the
fitters on synthetic data with known exponents, and the cached sweep."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.flop_counter import FlopCounterMode

from lmcore import GPT, GPTConfig, scaling
from lmcore.data import cache_dir
from lmcore.scaling import (
    fit_chinchilla,
    fit_power_law,
    flops_breakdown,
    flops_per_token,
    param_count,
    pareto_frontier,
    run_sweep,
    sweep_data,
    training_flops,
)

CONFIGS = [
    dict(vocab_size=26, context_length=64, n_layer=2, n_head=2, n_embd=32),
    dict(vocab_size=31, context_length=16, n_layer=3, n_head=4, n_embd=16, tie_weights=False),
    dict(vocab_size=26, context_length=8, n_layer=1, n_head=4, n_embd=16, n_kv_head=2, bias=False),
    dict(vocab_size=26, context_length=8, n_layer=2, n_head=2, n_embd=8, norm="post", pos_encoding="rope"),
    dict(vocab_size=11, context_length=8, n_layer=1, n_head=2, n_embd=8, pos_encoding="alibi", n_kv_head=1),
    dict(vocab_size=11, context_length=8, n_layer=2, n_head=2, n_embd=8, pos_encoding="sinusoidal"),
]


# ---------------------------------------------------------------------------------- counting
@pytest.mark.parametrize("kw", CONFIGS)
def test_param_count_matches_the_built_model(kw):
    cfg = GPTConfig(**kw)
    model = GPT(cfg)
    assert param_count(cfg) == model.num_params()
    assert param_count(cfg, non_embedding=False) == model.num_params(non_embedding=False)


def test_flops_of_a_small_config_counted_by_hand():
    cfg = GPTConfig(vocab_size=26, context_length=64, n_layer=2, n_head=2, n_embd=32)
    # per token, 2 layers: qkv 2·32·96, scores and values 2·64·32 each, proj 2·32·32,
    # MLP 2·(2·32·128); head 2·32·26
    assert flops_breakdown(cfg) == {"qkv": 12288, "attn_scores": 8192, "attn_values": 8192,
                                    "attn_proj": 4096, "mlp": 32768, "lm_head": 1664}
    assert flops_per_token(cfg) == 3 * 67200
    assert param_count(cfg) == 25472          # 2 · (4·32 + 32·96 + 96 + 32·32 + 32 + 2·32·128 + 128 + 32) + 64
    assert flops_per_token(cfg, "6N") == 6 * 25472
    assert training_flops(cfg, 1000) == 1000 * 201600
    assert training_flops(cfg, np.int64(1000)) == 1000 * 201600      # token counts often come from numpy
    assert training_flops(cfg, 1000, method="6N") == 6 * 25472 * 1000
    # shorter sequences only shrink the attention matmuls
    assert flops_breakdown(cfg, seq_len=16)["attn_scores"] == 2 * 2 * 16 * 32


@pytest.mark.parametrize("kw", CONFIGS)
def test_flop_count_matches_torch_flop_counter(kw):
    """The explicit ("reference") attention is made of matmuls torch's counter sees; forward and
    forward + backward must match the count exactly."""
    cfg = GPTConfig(**kw, attn_impl="reference")
    model = GPT(cfg)
    B = 3
    for T in (cfg.context_length, cfg.context_length // 2):
        x = torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(0))
        with FlopCounterMode(display=False) as fwd:
            model(x, x)
        with FlopCounterMode(display=False) as both:
            _, loss = model(x, x)
            loss.backward()
        assert fwd.get_total_flops() == sum(flops_breakdown(cfg, T).values()) * B * T
        assert both.get_total_flops() == flops_per_token(cfg, seq_len=T) * B * T


def test_counting_rejects_bad_input():
    cfg = GPTConfig(**CONFIGS[0])
    with pytest.raises(TypeError, match="config"):
        param_count({"n_layer": 2})
    with pytest.raises(ValueError, match="seq_len"):
        flops_breakdown(cfg, seq_len=65)
    with pytest.raises(ValueError, match="method"):
        flops_per_token(cfg, method="exact")
    with pytest.raises(ValueError, match="tokens"):
        training_flops(cfg, -5)


# ---------------------------------------------------------------------------------- power law
def test_power_law_recovers_exact_data_and_matches_linregress():
    x = np.logspace(2, 8, 9)
    fit = fit_power_law(x, 7.0 * x ** -0.076)
    assert fit.exponent == pytest.approx(-0.076, abs=1e-12) and fit.scale == pytest.approx(7.0, rel=1e-10)
    assert fit.r_squared == pytest.approx(1.0)

    rng = np.random.default_rng(0)
    y = 3.0 * x ** 0.5 * np.exp(rng.normal(0, 0.2, x.shape))
    fit, ref = fit_power_law(x, y), stats.linregress(np.log(x), np.log(y))
    assert fit.exponent == pytest.approx(ref.slope) and fit.exponent_se == pytest.approx(ref.stderr)
    assert math.log(fit.scale) == pytest.approx(ref.intercept)
    assert fit.predict(x) == pytest.approx(fit.scale * x ** fit.exponent)


def test_power_law_interval_has_its_coverage():
    """Over 400 noisy data sets with a known exponent, the 90% interval holds it ~90% of the time
    (binomial 99.9% bounds: 0.85-0.94)."""
    rng = np.random.default_rng(1)
    x = np.logspace(3, 6, 8)
    hits = 0
    for _ in range(400):
        y = 2.0 * x ** -0.3 * np.exp(rng.normal(0, 0.1, x.shape))
        lo, hi = fit_power_law(x, y, confidence=0.9).exponent_ci
        hits += lo <= -0.3 <= hi
    assert 0.85 <= hits / 400 <= 0.94


def test_power_law_with_offset_fits_the_reducible_part():
    x = np.logspace(3, 7, 10)
    fit = fit_power_law(x, 0.34 + 5.0 * x ** -0.4, offset=0.34)
    assert fit.exponent == pytest.approx(-0.4) and fit.predict(x) == pytest.approx(0.34 + 5.0 * x ** -0.4)
    with pytest.raises(ValueError, match="y - offset"):
        fit_power_law(x, 0.34 + 5.0 * x ** -0.4, offset=0.5)


def test_power_law_rejects_bad_input():
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="same length"):
        fit_power_law([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        fit_power_law([1, 2], [1, 2])
    with pytest.raises(ValueError, match="confidence"):
        fit_power_law([1, 2, 3], [1, 2, 3], confidence=95)


# ---------------------------------------------------------------------------------- Chinchilla
TRUE = dict(E=0.4, A=30.0, B=200.0, alpha=0.35, beta=0.3)


def _grid(noise=0.0, seed=0):
    N, D = (g.ravel() for g in np.meshgrid(np.logspace(3, 6, 6), np.logspace(5, 8, 6)))
    L = TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]
    return N, D, L * np.exp(np.random.default_rng(seed).normal(0, noise, L.shape))


def test_chinchilla_fit_recovers_exact_law_even_with_an_outlier():
    N, D, L = _grid()
    fit = fit_chinchilla(N, D, L, n_bootstrap=0)
    for k, v in TRUE.items():
        assert getattr(fit, k) == pytest.approx(v, rel=1e-3), k
    L[7] *= 1.3              # one broken run: the Huber loss barely notices it
    fit = fit_chinchilla(N, D, L, n_bootstrap=0)
    for k, v in TRUE.items():
        assert getattr(fit, k) == pytest.approx(v, rel=2e-2), k


def test_chinchilla_fit_on_noisy_data_has_intervals_that_hold_the_truth():
    fit = fit_chinchilla(*_grid(noise=0.01, seed=3), n_bootstrap=100, seed=0)
    assert fit.samples.shape == (100, 5)
    for k, v in TRUE.items():
        lo, hi = fit.ci[k]
        assert lo < v < hi, (k, lo, v, hi)
    assert fit.E == pytest.approx(TRUE["E"], abs=0.03)
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit.beta == pytest.approx(TRUE["beta"], abs=0.05)


def test_optimal_allocation_minimises_the_law_at_fixed_compute():
    fit = scaling.ChinchillaFit(ci={}, n=0, **TRUE)
    C = 1e15
    N, D = fit.optimal_allocation(C)
    assert 6 * N * D == pytest.approx(C)
    grid = np.logspace(2, 8, 200_001)                 # brute force along the constraint D = C / 6N
    best = grid[np.argmin(fit.predict(grid, C / (6 * grid)))]
    assert N == pytest.approx(best, rel=1e-3)
    ratio, ci = fit.tokens_per_param(C)
    assert ratio == pytest.approx(D / N) and all(math.isnan(v) for v in ci)


def test_chinchilla_rejects_bad_input():
    N, D, L = _grid()
    with pytest.raises(ValueError, match="at least 6"):
        fit_chinchilla(N[:5], D[:5], L[:5])
    with pytest.raises(ValueError, match="same length"):
        fit_chinchilla(N, D[:-1], L)
    with pytest.raises(ValueError, match="several values"):
        fit_chinchilla(np.full(8, 100.0), D[:8], L[:8])


# ---------------------------------------------------------------------------------- sweeps
def _tiny(**kw):
    return GPTConfig(vocab_size=sweep_data("toy").vocab_size, context_length=16, n_layer=1, n_head=2, n_embd=8,
                     **kw)


SWEEP = dict(batch_size=4, eval_windows=8, warmup_steps=2, lr=1e-2)   # 64 tokens per step


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path))
    return tmp_path / "scaling"


def test_sweep_measures_caches_and_reads_back(cache, monkeypatch):
    state = torch.get_rng_state()
    points = run_sweep([_tiny()], [640, 1280], **SWEEP)
    assert torch.equal(torch.get_rng_state(), state), "run_sweep must not move the caller's RNG"
    assert [(p.steps, p.tokens) for p in points] == [(10, 640), (20, 1280)]
    cfg = _tiny()
    for p in points:
        assert p.params == param_count(cfg) and p.flops == training_flops(cfg, p.tokens)
        assert p.flops_6nd == 6 * p.params * p.tokens
    # after 20 steps the model beats the uniform guess over the alphabet
    assert points[1].val_loss < math.log(cfg.vocab_size)
    files = list(cache.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["settings"]["steps"] == [10, 20]
    assert files[0].parent == cache_dir() / "scaling"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached result should have been used")

    monkeypatch.setattr(scaling.sweep, "_train_and_measure", no_training)     # where run_sweep finds it
    assert run_sweep([_tiny()], [640, 1280], **SWEEP) == points
    with pytest.raises(AssertionError, match="cached"):     # other settings, another key
        run_sweep([_tiny()], [640, 1280], **{**SWEEP, "lr": 5e-3})
    # another CPU's kernels give other last bits, so their results are never served here
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2" if isa == "SSE41" else "SSE41")
    with pytest.raises(AssertionError, match="cached"):
        run_sweep([_tiny()], [640, 1280], **SWEEP)
    capability = torch.backends.cpu.get_cpu_capability()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability + "-other")
    if isa is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    with pytest.raises(AssertionError, match="cached"):
        run_sweep([_tiny()], [640, 1280], **SWEEP)


def test_damaged_cache_is_reported_and_rewritten(cache):
    points = run_sweep([_tiny()], [640], **SWEEP)
    (path,) = cache.glob("*.json")
    path.write_text(path.read_text()[:50])
    with pytest.warns(UserWarning, match="damaged"):
        again = run_sweep([_tiny()], [640], **SWEEP)
    assert [p.val_loss for p in again] == [p.val_loss for p in points]     # deterministic on CPU
    assert json.loads(path.read_text())["points"][0]["val_loss"] == points[0].val_loss


def test_measuring_mid_run_does_not_change_the_run(cache):
    """Constant schedule: the point at 10 steps of a 20-step run is the 10-step run. Cosine: each
    budget is its own run, decayed at its own end, so it differs from the constant one."""
    both = run_sweep([_tiny()], [640, 1280], cache=False, **SWEEP)
    assert run_sweep([_tiny()], [640], cache=False, **SWEEP)[0].val_loss == both[0].val_loss
    cosine = run_sweep([_tiny()], [640, 1280], schedule="cosine", cache=False, **SWEEP)
    assert run_sweep([_tiny()], [1280], schedule="cosine", cache=False, **SWEEP)[0].val_loss == cosine[1].val_loss
    assert cosine[0].val_loss != both[0].val_loss
    assert not cache.exists()


def test_sweep_rejects_bad_input(cache):
    with pytest.raises(ValueError, match="multiples"):
        run_sweep([_tiny()], [100], **SWEEP)
    with pytest.raises(ValueError, match="vocab_size"):
        run_sweep([GPTConfig(vocab_size=5, context_length=16, n_layer=1, n_head=2, n_embd=8)], [640], **SWEEP)
    with pytest.raises(ValueError, match="schedule"):
        run_sweep([_tiny()], [640], schedule="linear", **SWEEP)
    with pytest.raises(ValueError, match="configs"):
        run_sweep([], [640], **SWEEP)
    with pytest.raises(TypeError, match="config"):
        run_sweep([{"n_layer": 1}], [640], **SWEEP)


def test_pareto_frontier_keeps_points_no_cheaper_point_beats():
    P = scaling.SweepPoint
    pts = [P(1, 1, 8, 10, 20, t, 1, f, f, loss, 0.0) for t, f, loss in
           [(1, 100, 3.0), (2, 200, 2.5), (3, 300, 2.7), (4, 400, 2.0), (5, 150, 2.8)]]
    assert [p.flops for p in pareto_frontier(pts)] == [100, 150, 200, 400]


def test_sweep_cache_keys_ignore_fields_left_at_their_defaults():
    """A field added to GPTConfig later (window, pad_vocab_to, ...) with its default must not change
    the cache key of every sweep point already measured; a field that is set does."""
    from lmcore.models import GPTConfig
    from lmcore.scaling.sweep import _non_default_fields
    base = dict(vocab_size=40, context_length=32, n_layer=2, n_head=2, n_embd=32)
    key = _non_default_fields(GPTConfig(**base))
    assert key == base
    assert _non_default_fields(GPTConfig(**base, window=None, pad_vocab_to=1)) == key
    assert _non_default_fields(GPTConfig(**base, window=8)) == {**base, "window": 8}
