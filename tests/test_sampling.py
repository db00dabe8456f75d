"""Samplers: exact filtered distributions vs a naive pure-Python reference, draws by chi-square tests."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from lmcore.decoding.sampling import apply_temperature, filter_probs, sample_next

ALPHA = 1e-3     # chi-square tests: reject the sampler when p < ALPHA


def naive_filter(logits, temperature=1.0, top_k=None, top_p=None, min_p=None):
    """The documented recipe with Python lists: dict token -> probability."""
    if temperature == 0:
        best = max(range(len(logits)), key=lambda i: (logits[i], -i))
        return {best: 1.0}
    z = [x / temperature for x in logits]
    m = max(z)
    weights = {i: math.exp(v - m) for i, v in enumerate(z)}
    total = sum(weights.values())
    probs = {i: w / total for i, w in weights.items()}

    def renorm(keep):
        s = sum(probs[i] for i in keep)
        return {i: probs[i] / s for i in keep}

    if top_k is not None:
        kth = sorted(probs.values(), reverse=True)[min(top_k, len(probs)) - 1]
        probs = renorm([i for i, p in probs.items() if p >= kth])
    if top_p is not None:
        keep, mass = [], 0.0
        for i in sorted(probs, key=probs.get, reverse=True):
            keep.append(i)
            mass += probs[i]
            if mass >= top_p:
                break
        probs = renorm(keep)
    if min_p is not None:
        pmax = max(probs.values())
        probs = renorm([i for i, p in probs.items() if p >= min_p * pmax])
    return probs


SETTINGS = [
    dict(), dict(temperature=0), dict(temperature=0.5), dict(temperature=2.0), dict(top_k=1), dict(top_k=5),
    dict(top_p=0.3), dict(top_p=0.9), dict(top_p=1.0), dict(min_p=0.1), dict(min_p=1.0),
    dict(temperature=0.7, top_k=8, top_p=0.8), dict(temperature=1.3, top_p=0.95, min_p=0.05),
    dict(temperature=0.8, top_k=10, top_p=0.9, min_p=0.2), dict(top_k=100),
]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "plain")
def test_filtered_probabilities_equal_the_naive_reference(setting):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = torch.randn(4, 20, generator=gen, dtype=torch.float64) * 2
        probs = filter_probs(logits, **setting)
        for row in range(4):
            expected = naive_filter(logits[row].tolist(), **setting)
            kept = set(torch.nonzero(probs[row]).flatten().tolist())
            assert kept == set(expected)
            for i, p in expected.items():
                assert probs[row, i].item() == pytest.approx(p, rel=1e-12, abs=1e-15)


def test_top_p_always_keeps_the_top_token_and_top_k_one_is_greedy():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9]])
    assert filter_probs(logits, top_p=1e-9).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    assert torch.equal(filter_probs(logits, top_k=1), filter_probs(logits, temperature=0))


def test_top_k_keeps_ties_with_the_kth_token():
    probs = filter_probs(torch.tensor([[1.0, 2.0, 2.0, 0.0]]), top_k=1)   # two tied maxima
    assert probs.tolist() == [[0.0, 0.5, 0.5, 0.0]]


def test_negative_infinity_means_forbidden():
    logits = torch.tensor([[float("-inf"), 0.0, 0.0]])
    assert filter_probs(logits).tolist() == [[0.0, 0.5, 0.5]]
    draws = sample_next(logits.expand(500, 3), generator=torch.Generator().manual_seed(0))
    assert 0 not in draws.tolist()


def test_half_precision_logits_are_filtered_in_float32():
    probs = filter_probs(torch.randn(2, 50).half(), top_p=0.9)
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))


def test_greedy_uses_no_random_numbers():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    logits = torch.randn(3, 10)
    assert torch.equal(sample_next(logits, temperature=0, generator=g)[:, 0], logits.argmax(-1))
    assert torch.equal(g.get_state(), state)


def _counts(draws: torch.Tensor, vocab: int) -> np.ndarray:
    return np.bincount(draws.flatten().numpy(), minlength=vocab)


@pytest.mark.parametrize("setting", [dict(), dict(temperature=0.8, top_k=6, top_p=0.9),
                                     dict(temperature=1.5, min_p=0.1)])
def test_draws_follow_the_filtered_distribution(setting):
    gen = torch.Generator().manual_seed(42)
    logits = torch.randn(1, 12, generator=gen)
    expected = naive_filter(logits[0].tolist(), **setting)
    n = 20_000
    draws = sample_next(logits.expand(n, 12), generator=gen, **setting)
    counts = _counts(draws, 12)
    kept = sorted(expected)
    assert counts.sum() == counts[kept].sum()                  # nothing outside the kept set
    f_exp = np.array([expected[i] for i in kept]) * n
    assert chisquare(counts[kept], f_exp).pvalue > ALPHA


def test_chi_square_test_rejects_a_wrong_sampler():
    """The test fails for uniform draws over the kept set, for a sampler that forgot the filters and
    for one that forgot the temperature."""
    gen = torch.Generator().manual_seed(42)
    logits = torch.randn(1, 12, generator=gen)
    setting = dict(temperature=0.8, top_k=6, top_p=0.9)
    expected = naive_filter(logits[0].tolist(), **setting)
    kept = sorted(expected)
    n = 20_000
    f_exp = np.array([expected[i] for i in kept]) * n
    uniform = torch.tensor(kept)[torch.randint(len(kept), (n,), generator=gen)]
    assert chisquare(_counts(uniform, 12)[kept], f_exp).pvalue < ALPHA
    unfiltered = _counts(sample_next(logits.expand(n, 12), temperature=0.8, generator=gen), 12)
    assert unfiltered.sum() != unfiltered[kept].sum()       # forgot top-k/top-p: draws outside the set
    no_temperature = _counts(sample_next(logits.expand(n, 12), top_k=6, top_p=0.9, generator=gen), 12)
    assert chisquare(no_temperature[kept], f_exp * no_temperature[kept].sum() / n).pvalue < ALPHA


def test_rows_are_sampled_from_their_own_distributions():
    logits = torch.full((2, 4), float("-inf"))
    logits[0, 1] = 0.0
    logits[1, 2:] = 0.0
    draws = sample_next(logits.repeat(200, 1), generator=torch.Generator().manual_seed(0)).view(200, 2)
    assert set(draws[:, 0].tolist()) == {1}
    assert set(draws[:, 1].tolist()) == {2, 3}


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=-1.0), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(top_k=0), "top_k"), (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.01), "top_p"), (dict(top_p=-0.5), "top_p"),
    (dict(min_p=-0.1), "min_p"), (dict(min_p=1.5), "min_p"),
])
def test_bad_arguments_are_rejected_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_next(torch.zeros(1, 5), **kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_are_rejected(bad):
    logits = torch.zeros(2, 5)
    logits[1, 3] = bad
    with pytest.raises(ValueError, match="logits"):
        sample_next(logits)


def test_all_forbidden_row_and_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match="-inf"):
        filter_probs(torch.full((1, 3), float("-inf")))
    with pytest.raises(ValueError, match="batch, vocab"):
        sample_next(torch.zeros(5))


def test_a_tiny_temperature_is_greedy_not_an_out_of_range_id():
    """logits / T overflowed to inf and softmax made NaN of it: the issue's example returned id 3 of 3."""
    logits = torch.tensor([[10.0, 20.0, 30.0]])
    assert sample_next(logits, temperature=1e-38).tolist() == [[2]]
    assert filter_probs(logits, temperature=1e-38).tolist() == [[0.0, 0.0, 1.0]]
    # the T -> 0 limit shares the mass among exact ties (greedy, T = 0, takes the first)
    assert filter_probs(torch.tensor([[30.0, 10.0, 30.0]]), temperature=1e-46).tolist() == [[0.5, 0.0, 0.5]]
    # float16 logits overflow in their own dtype in apply_temperature (filter_probs works in float32)
    half = torch.tensor([[-60000.0, -65000.0, -64000.0]], dtype=torch.float16)
    assert apply_temperature(half, 1e-3).tolist() == [[1.0, 0.0, 0.0]]


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TEMPERATURES = [1e-300, 1e-46, 1e-38, 1e-20, 1e-5, 0.01, 0.5, 1.0, 2.0, 1e30]


def extreme_cases(n=400, seed=0):
    """Random (logits, settings): magnitudes up to the dtype's largest finite value, signs mixed or
    not, some tokens forbidden (-inf), random filters."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        dtype = DTYPES[rng.integers(len(DTYPES))]
        big = torch.finfo(dtype).max
        B, V = int(rng.integers(1, 5)), int(rng.integers(1, 40))
        mag = 10.0 ** rng.uniform(-3, np.log10(big))
        z = rng.standard_normal((B, V)) * mag
        z = {0: z, 1: np.abs(z), 2: -np.abs(z)}[int(rng.integers(3))]             # mixed, all >= 0, all <= 0
        z[rng.random((B, V)) < 0.2] = big * rng.choice([-1.0, 1.0])               # the extremes themselves
        z = np.clip(z, -big, big)
        z[(rng.random((B, V)) < 0.2) & (np.arange(V) > 0)] = -np.inf                 # token 0 stays allowed
        settings = dict(temperature=float(rng.choice(TEMPERATURES)),
                        top_k=[None, int(rng.integers(1, 10))][rng.integers(2)],
                        top_p=[None, float(rng.uniform(0.05, 1.0))][rng.integers(2)],
                        min_p=[None, float(rng.uniform(0.0, 1.0))][rng.integers(2)])
        yield torch.tensor(z).to(dtype), settings


def test_extreme_logits_always_give_a_distribution_and_ids_in_the_vocabulary():
    n_tiny = 0
    for i, (logits, settings) in enumerate(extreme_cases()):
        probs = filter_probs(logits, **settings)
        assert torch.isfinite(probs).all() and (probs >= 0).all(), (i, settings)
        torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs), dtype=probs.dtype))
        assert (probs[torch.isneginf(logits)] == 0).all()                         # forbidden stays forbidden
        ids = sample_next(logits, generator=torch.Generator().manual_seed(i), **settings)
        assert ((0 <= ids) & (ids < logits.shape[1])).all(), (i, settings, ids)
        assert not torch.isneginf(logits.gather(1, ids)).any()                      # never a forbidden token
        if settings["temperature"] <= 1e-38:   # so small that any gap between two logits is infinite
            n_tiny += 1
            row_max = logits.amax(-1, keepdim=True)
            assert (logits.gather(1, ids) == row_max).all(), (i, settings)          # a tiny T is the arg-max
            unique = (logits == row_max).sum(-1) == 1
            greedy = sample_next(logits, temperature=0)
            assert torch.equal(ids[unique], greedy[unique])
    assert n_tiny > 50


@pytest.mark.parametrize("temperature", [1e-30, 1e-5, 0.3, 1.0, 7.0, 1e30])
def test_extreme_logits_match_the_naive_float64_reference(temperature):
    """The temperature step alone, against naive_filter's float64 arithmetic (which does not
    overflow for float32 or half-precision logits at these temperatures)."""
    for logits, _ in extreme_cases(n=200, seed=1):
        if logits.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            continue
        probs = filter_probs(logits, temperature=temperature)
        for row in range(len(logits)):
            expected = naive_filter(logits[row].double().tolist(), temperature=temperature)
            assert probs[row].tolist() == pytest.approx([expected[j] for j in range(logits.shape[1])], abs=1e-5)


def scalar_reads(fn) -> int:
    """How many values ``fn`` reads back from tensors (``.item()``, ``bool(t)``, ``int(t)``): each is
    one ``aten::_local_scalar_dense``, a device-to-host sync on a GPU."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense")


def test_logit_checks_read_one_value_on_the_cpu_and_none_under_compile(monkeypatch):
    """On the CPU both value checks (NaN/+inf, an all -inf row) cost one read a call (they cost 3);
    under torch.compile (and off the CPU) none, so the sampler traces as one graph (it had 4 breaks)."""
    logits = torch.randn(3, 20)
    draw = lambda: sample_next(logits, 0.8, 5, 0.9, 0.05, torch.Generator().manual_seed(0))  # noqa: E731
    assert scalar_reads(draw) == 1
    compiled = torch.compile(lambda x: filter_probs(x, 0.8, 5, 0.9, 0.05), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(logits), filter_probs(logits, 0.8, 5, 0.9, 0.05))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert scalar_reads(draw) == 0
    torch._dynamo.reset()


def test_the_sampler_reads_nothing_back_from_a_device_tensor():
    """On the meta device every value read raises, so a draw there proves none happens."""
    out = sample_next(torch.randn(4, 20, device="meta"), 0.8, 5, 0.9, 0.05, torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == (4, 1) and out.dtype == torch.long


def test_a_generator_of_another_device_draws_on_its_own_device(monkeypatch):
    """A CPU generator with logits on a GPU made torch.rand raise ("Expected a 'cuda' device type for
    generator"); the numbers are now drawn on the generator's device and moved. torch.rand is wrapped
    to raise like CUDA does on a mismatch (the meta device itself does not check)."""
    real_rand = torch.rand

    def strict_rand(*size, generator=None, device=None, **kw):
        if generator is not None and torch.device(device or "cpu") != generator.device:
            raise RuntimeError(f"Expected a '{torch.device(device).type}' device type for generator but found "
                               f"'{generator.device.type}'")
        return real_rand(*size, generator=generator, device=device, **kw)

    monkeypatch.setattr(torch, "rand", strict_rand)
    g, reference = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = sample_next(torch.randn(4, 20, device="meta"), 0.7, generator=g)
    assert out.device.type == "meta" and out.shape == (4, 1)
    real_rand(4, 1, generator=reference)                  # the same numbers were drawn from g
    assert torch.equal(g.get_state(), reference.get_state())
