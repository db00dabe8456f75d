"""Filter order (temperature first or last) and the CTRL repetition penalty, against naive
per-row references written with Python lists and, where it is installed, against Hugging Face's
own logits processors."""
import math

import pytest
import torch

from lmcore.decoding import sampling
from lmcore.decoding.sampling import apply_repetition_penalty, filter_probs, sample_next


def naive_kept(probs, top_k=None, top_p=None, min_p=None):
    """The kept token ids of one row of probabilities (a list), filters in the documented order."""
    keep = list(range(len(probs)))

    def renorm(ids):
        s = sum(probs[i] for i in ids)
        return {i: probs[i] / s for i in ids}

    cur = renorm(keep)
    if top_k is not None:
        kth = sorted(cur.values(), reverse=True)[min(top_k, len(cur)) - 1]
        cur = renorm([i for i, p in cur.items() if p >= kth])
    if top_p is not None and top_p < 1:
        ids, mass = [], 0.0
        for i in sorted(cur, key=cur.get, reverse=True):
            ids.append(i)
            mass += cur[i]
            if mass >= top_p:
                break
        cur = renorm(ids)
    if min_p is not None and min_p > 0:
        top = max(cur.values())
        cur = renorm([i for i, p in cur.items() if p >= min_p * top])
    return set(cur)


def softmax_row(z, T):
    m = max(z)
    w = [math.exp((x - m) / T) for x in z]
    return [x / sum(w) for x in w]


def naive_temperature_last(z, temperature, **filters):
    """llama.cpp's chain for one row: filters on softmax(z), then softmax(z / T) over the kept ids."""
    kept = naive_kept(softmax_row(z, 1.0), **filters)
    if temperature == 0:
        best = max(kept, key=lambda i: (z[i], -i))
        return [1.0 if i == best else 0.0 for i in range(len(z))]
    m = max(z[i] for i in kept)
    w = {i: math.exp((z[i] - m) / temperature) for i in kept}
    return [w[i] / sum(w.values()) if i in w else 0.0 for i in range(len(z))]


SETTINGS = [dict(temperature=1.6, top_p=0.9), dict(temperature=1.6, min_p=0.1), dict(temperature=0.5, top_p=0.8),
            dict(temperature=2.0, top_k=4), dict(temperature=0.7, top_k=8, top_p=0.9, min_p=0.05),
            dict(temperature=0.0, top_p=0.5), dict(temperature=1.0, min_p=0.2)]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_temperature_last_equals_the_naive_per_row_reference(setting):
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        logits = torch.randn(5, 24, generator=gen, dtype=torch.float64) * 2.5
        got = filter_probs(logits, filter_order="temperature-last", **setting)
        for row in range(5):
            want = naive_temperature_last(logits[row].tolist(), **setting)
            torch.testing.assert_close(got[row], torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_temperature_first_is_the_default_and_bit_identical():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 30, generator=gen) * 3
    for setting in SETTINGS:
        default = filter_probs(logits, **setting)
        assert torch.equal(default, filter_probs(logits, filter_order="temperature-first", **setting))
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        assert torch.equal(sample_next(logits, generator=g1, **setting),
                           sample_next(logits, generator=g2, filter_order="temperature-first", **setting))


def test_the_two_orders_differ_as_documented():
    """T > 1: temperature first flattens before cutting, so it keeps more; T = 1: the same; top-k: the same set."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(200, 26, generator=gen, dtype=torch.float64) * 3
    for cut in (dict(top_p=0.9), dict(min_p=0.1)):
        first = (filter_probs(logits, temperature=1.6, **cut) > 0).sum(-1)
        last = (filter_probs(logits, temperature=1.6, filter_order="temperature-last", **cut) > 0).sum(-1)
        assert bool((first >= last).all()) and bool((first > last).any())
        at_one = filter_probs(logits, **cut), filter_probs(logits, filter_order="temperature-last", **cut)
        assert torch.equal(at_one[0] > 0, at_one[1] > 0)      # the same set; renormalised in another way
        torch.testing.assert_close(*at_one, rtol=1e-12, atol=1e-15)
    k_first = filter_probs(logits, temperature=1.6, top_k=5) > 0
    assert torch.equal(k_first, filter_probs(logits, temperature=1.6, top_k=5, filter_order="temperature-last") > 0)


def test_sample_next_draws_from_the_temperature_last_distribution():
    logits = torch.randn(1, 12, generator=torch.Generator().manual_seed(4)).expand(4000, 12) * 2
    probs = filter_probs(logits[:1], temperature=1.6, min_p=0.1, filter_order="temperature-last")[0]
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    draws = sample_next(logits, temperature=1.6, min_p=0.1, generator=g1, filter_order="temperature-last")
    # the same inverse-CDF rule: one uniform number per row, the first token whose cumulative sum exceeds it
    u = torch.rand(4000, 1, generator=g2)
    cdf = probs.cumsum(-1)
    assert torch.equal(draws, (cdf[None] <= u * cdf[-1]).sum(-1, keepdim=True))
    assert set(draws.flatten().tolist()) <= set((probs > 0).nonzero().flatten().tolist())


def test_bad_filter_order_is_rejected_by_name():
    with pytest.raises(ValueError, match="filter_order"):
        filter_probs(torch.zeros(1, 3), filter_order="last")
    with pytest.raises(ValueError, match="filter_order"):
        sampling.validate_sampling_args(filter_order=None)


def naive_repetition_penalty(z, context, penalty):
    out = list(z)
    for i in set(context):
        out[i] = z[i] / penalty if z[i] > 0 else z[i] * penalty
    return out


@pytest.mark.parametrize("penalty", [0.8, 1.0, 1.3, 2.5])
def test_repetition_penalty_equals_the_naive_reference(penalty):
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 15, generator=gen, dtype=torch.float64) * 2
    logits[0, 3] = 0.0                                   # z = 0 stays 0 either way
    context = torch.randint(0, 15, (4, 9), generator=gen)
    context[0, 0] = 3
    got = apply_repetition_penalty(logits, context, penalty)
    for row in range(4):
        want = naive_repetition_penalty(logits[row].tolist(), context[row].tolist(), penalty)
        assert got[row].tolist() == pytest.approx(want, rel=1e-15, abs=0)
    assert not torch.equal(got, logits) or penalty == 1.0
    assert torch.equal(apply_repetition_penalty(logits, context.int(), penalty), got)


def test_repetition_penalty_equals_hugging_face():
    transformers = pytest.importorskip("transformers")
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 40, generator=gen) * 3
    context = torch.randint(0, 40, (3, 25), generator=gen)
    for penalty in (1.2, 0.7):
        hf = transformers.RepetitionPenaltyLogitsProcessor(penalty)(context, logits.clone())
        assert torch.equal(apply_repetition_penalty(logits, context, penalty), hf)


def test_temperature_first_equals_hugging_face_warpers():
    transformers = pytest.importorskip("transformers")
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(8, 50, generator=gen, dtype=torch.float64) * 3
    T, k, p, m = 0.8, 20, 0.9, 0.05
    scores = logits.clone()
    for warper in (transformers.TemperatureLogitsWarper(T), transformers.TopKLogitsWarper(k),
                   transformers.TopPLogitsWarper(p), transformers.MinPLogitsWarper(m)):
        scores = warper(None, scores)
    hf = torch.softmax(scores, -1)
    torch.testing.assert_close(filter_probs(logits, temperature=T, top_k=k, top_p=p, min_p=m), hf, rtol=1e-9, atol=1e-12)


def test_repetition_penalty_rejects_bad_arguments():
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="penalty"):
        apply_repetition_penalty(logits, torch.zeros(2, 1, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="context"):
        apply_repetition_penalty(logits, torch.zeros(3, 1, dtype=torch.long), 1.2)
    with pytest.raises(ValueError, match="context"):
        apply_repetition_penalty(logits, torch.full((2, 1), 5), 1.2)
    with pytest.raises(TypeError, match="context"):
        apply_repetition_penalty(logits, torch.zeros(2, 1), 1.2)
