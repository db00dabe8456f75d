"""Tests of lmcore.models.ngram against a brute-force reference written with dicts, straight from the formulas."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from lmcore import CharTokenizer
from lmcore.data import toy_corpus
from lmcore.models.ngram import NGramConfig, NGramLM

TINY = [0, 1, 2, 0, 1, 0, 2, 2, 1, 0, 1, 2, 0, 0, 1, 3, 1, 0]  # token 4 never occurs
V = 5


def brute_prob(ids, n, vocab, smoothing, w, context, eps=1.0, d=None):
    """p(w | context) by counting with Counters, no arrays, no shared code with lmcore.models.ngram."""
    h = tuple(context)[max(len(context) - (n - 1), 0):]
    m = len(h)
    grams = {k: Counter(tuple(ids[i:i + k]) for i in range(len(ids) - k + 1)) for k in range(1, n + 1)}
    if smoothing in ("mle", "add-eps"):
        e = 0.0 if smoothing == "mle" else eps
        c_hw = grams[m + 1][h + (w,)]
        c_h = sum(c for g, c in grams[m + 1].items() if g[:m] == h)
        return 1 / vocab if c_h + e * vocab == 0 else (c_hw + e) / (c_h + e * vocab)
    # interpolated Kneser-Ney: raw counts at the top order, continuation counts below
    cont = {k: Counter(g[1:] for g in grams[k + 1]) for k in range(1, n)}

    def disc(counter):
        n1 = sum(1 for c in counter.values() if c == 1)
        n2 = sum(1 for c in counter.values() if c == 2)
        return min(max(n1 / (n1 + 2 * n2), 0.1), 0.95) if d is None else d

    p = 1 / vocab
    for k in range(1, m + 2):
        table = grams[k] if k == m + 1 else cont[k]
        ctx = h[m - k + 1:]
        follow = {g[-1]: c for g, c in table.items() if g[:-1] == ctx}
        total = sum(follow.values())
        D = disc(table)
        if total > 0:
            p = max(follow.get(w, 0) - D, 0) / total + D * len(follow) / total * p
    return p


SMOOTHINGS = [("mle", {}), ("add-eps", {"eps": 0.5}), ("kneser-ney", {}), ("kneser-ney", {"discount": 0.6})]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("smoothing,kw", SMOOTHINGS)
def test_matches_brute_force_and_sums_to_one_for_every_context(n, smoothing, kw):
    lm = NGramLM(NGramConfig(n, V, smoothing=smoothing, **kw)).fit(TINY)
    # every context of every length 0 … n-1, seen or not (V^k contexts)
    for m in range(n):
        for ctx in np.ndindex(*(V,) * m):
            probs = lm.next_token_probs(list(ctx))
            assert probs.shape == (V,)
            assert probs.sum() == pytest.approx(1.0, abs=1e-12)
            ref = [brute_prob(TINY, n, V, smoothing, w, list(ctx), eps=kw.get("eps", 1.0),
                              d=kw.get("discount")) for w in range(V)]
            np.testing.assert_allclose(probs, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("smoothing,kw", SMOOTHINGS)
def test_sequence_scores_match_single_queries(smoothing, kw):
    lm = NGramLM(NGramConfig(3, V, smoothing=smoothing, **kw)).fit(TINY)
    held_out = [1, 0, 2, 4, 1, 1, 3, 0]
    lp = lm.token_logprobs(held_out)
    for t, w in enumerate(held_out):
        p = brute_prob(TINY, 3, V, smoothing, w, held_out[:t], eps=kw.get("eps", 1.0), d=kw.get("discount"))
        assert lp[t] == (pytest.approx(math.log(p), rel=1e-12) if p > 0 else -math.inf)
    assert lm.sequence_logprob(held_out) == lp.sum()


def reference_distribution(ids, n, vocab, smoothing, context, eps=1.0, d=None):
    """p(· | context) from scratch: a Python loop over the corpus for each count, for every smoothing.

    A context shorter than n - 1 is answered by the model of order len(context) + 1, exactly as the
    first tokens of a text are; a longer one is cut to its last n - 1 tokens.
    """
    h = list(context)
    while len(h) > n - 1:
        h.pop(0)
    m = len(h)

    def grams(k):
        return [tuple(ids[i:i + k]) for i in range(len(ids) - k + 1)]

    if smoothing != "kneser-ney":
        e = 0.0 if smoothing == "mle" else eps
        follow = [g[-1] for g in grams(m + 1) if list(g[:-1]) == h]
        if not follow and e == 0:
            return np.full(vocab, 1 / vocab)              # no evidence: the documented uniform fallback
        return np.array([(follow.count(w) + e) / (len(follow) + e * vocab) for w in range(vocab)])

    def table(k, top):
        """{k-gram: count} with raw counts (top order) or continuation counts (distinct left neighbours)."""
        if top:
            return Counter(grams(k))
        return Counter(g[1:] for g in set(grams(k + 1)))

    p = np.full(vocab, 1 / vocab)
    for k in range(1, m + 2):
        t = table(k, top=k == m + 1)
        n1, n2 = sum(c == 1 for c in t.values()), sum(c == 2 for c in t.values())
        D = d if d is not None else (min(max(n1 / (n1 + 2 * n2), 0.1), 0.95) if n1 + n2 else 0.75)
        ctx = tuple(h[m - k + 1:])
        follow = {g[-1]: c for g, c in t.items() if g[:-1] == ctx}
        total = sum(follow.values())
        if total:
            p = np.array([max(follow.get(w, 0) - D, 0) / total for w in range(vocab)]) + D * len(follow) / total * p
    return p


ALL_SMOOTHINGS = [("mle", {}), ("add-eps", {"eps": 1.0}), ("add-eps", {"eps": 0.3}), ("kneser-ney", {}),
                  ("kneser-ney", {"discount": 0.4})]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("smoothing,kw", ALL_SMOOTHINGS)
def test_every_entry_point_agrees_with_the_reference_for_every_context_length(n, smoothing, kw):
    """prob, logprob, next_token_probs, token_logprobs(context=) and sample(context=) give one and the
    same distribution for every context of length 0 … n - 1 (the short ones once dropped ids: n >= 4)."""
    rng = np.random.default_rng(n)
    for corpus_seed in range(3):
        vocab = int(rng.integers(2, 4))
        corpus = [int(i) for i in np.random.default_rng(corpus_seed).integers(0, vocab, 12 + 4 * corpus_seed)]
        lm = NGramLM(NGramConfig(n, vocab, smoothing=smoothing, **kw)).fit(corpus)
        for m in range(n):
            for ctx in map(list, np.ndindex(*(vocab,) * m)):
                ref = reference_distribution(corpus, n, vocab, smoothing, ctx, kw.get("eps", 1.0), kw.get("discount"))
                probs = lm.next_token_probs(ctx)
                np.testing.assert_allclose(probs, ref, rtol=1e-12, atol=1e-15)
                for w in range(vocab):
                    assert lm.prob(w, ctx) == probs[w]
                    assert lm.logprob(w, ctx) == (math.log(probs[w]) if probs[w] > 0 else -math.inf)
                    assert math.isclose(lm.token_logprobs([w], context=ctx)[0], lm.logprob(w, ctx), rel_tol=1e-14)
                # the first draw inverts next_token_probs' CDF at the generator's first uniform number
                u = np.random.default_rng(m).random()
                cdf = np.cumsum(probs)
                want = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), vocab - 1)
                assert lm.sample(1, context=ctx, generator=m) == [want]
            # at the start of a text (no context) the tokens before position n - 1 see a short context
            seq = corpus[:n + 2]
            start = lm.token_logprobs(seq)
            for t in range(len(seq)):
                assert math.isclose(start[t], lm.logprob(seq[t], seq[:t]), rel_tol=1e-14)


@pytest.mark.parametrize("smoothing", ["mle", "kneser-ney"])
def test_sampling_after_a_short_context_never_draws_an_impossible_token(smoothing):
    """The issue's example: after [0, 1] the only continuation ever seen is 2, and a context cut to [1]
    made 83 of 200 seeds draw 0. Every token sampled must have probability > 0 under the reference."""
    corpus = [0, 1, 2, 3, 1, 0] * 2
    lm = NGramLM(NGramConfig(n=4, vocab_size=4, smoothing="mle")).fit(corpus)
    assert lm.prob(2, [0, 1]) == 1.0
    lm = NGramLM(NGramConfig(n=5, vocab_size=4, smoothing=smoothing)).fit(corpus)
    for seed in range(200):
        history = [0, 1, 2]
        for tok in lm.sample(6, context=history, generator=seed):
            ref = reference_distribution(corpus, 5, 4, smoothing, history)
            assert ref[tok] > 0, (seed, history, tok)
            history.append(tok)


def test_perplexity_hand_computed_bigram():
    # training "abab" as ids 0 1 0 1 with an MLE bigram: p(1|0) = 1, p(0|1) = 1; unigram p(0) = 1/2.
    # held-out 0 1 0: p = p(0) · p(1|0) · p(0|1) = 1/2, so cross-entropy = ln 2 / 3, perplexity 2^(1/3)
    lm = NGramLM(NGramConfig(2, 2, smoothing="mle")).fit([0, 1, 0, 1])
    assert lm.cross_entropy([0, 1, 0]) == pytest.approx(math.log(2) / 3)
    assert lm.perplexity([0, 1, 0]) == pytest.approx(2 ** (1 / 3))
    # add-1 smoothing: p(0) = (2+1)/(4+2) = 1/2; p(1|0) = (2+1)/(2+2) = 3/4; p(0|1) = (1+1)/(1+2) = 2/3
    lm = NGramLM(NGramConfig(2, 2, smoothing="add-eps", eps=1.0)).fit([0, 1, 0, 1])
    assert lm.perplexity([0, 1, 0]) == pytest.approx((0.5 * 0.75 * 2 / 3) ** (-1 / 3))


def test_unseen_continuation_makes_mle_perplexity_infinite_but_not_smoothed():
    held_out = [0, 4, 1]  # token 4 never occurs in TINY
    assert NGramLM(NGramConfig(2, V, smoothing="mle")).fit(TINY).perplexity(held_out) == math.inf
    for smoothing in ("add-eps", "kneser-ney"):
        assert np.isfinite(NGramLM(NGramConfig(2, V, smoothing=smoothing)).fit(TINY).perplexity(held_out))


def test_context_argument_conditions_the_first_tokens():
    lm = NGramLM(NGramConfig(3, V, smoothing="add-eps")).fit(TINY)
    assert lm.sequence_logprob([2, 0], context=[0, 1]) == pytest.approx(
        math.log(lm.prob(2, [0, 1])) + math.log(lm.prob(0, [1, 2])))


def test_counts_and_distinct_ngrams():
    lm = NGramLM(NGramConfig(3, V)).fit(TINY)
    assert lm.count([0, 1]) == sum(1 for i in range(len(TINY) - 1) if TINY[i:i + 2] == [0, 1])
    assert lm.count([4]) == 0
    assert lm.num_ngrams(2) == len({tuple(TINY[i:i + 2]) for i in range(len(TINY) - 1)})


def test_sampling_follows_the_model_chi_square():
    lm = NGramLM(NGramConfig(2, V, smoothing="add-eps", eps=0.5)).fit(TINY)
    ids = lm.sample(5_000, context=[0], generator=0)
    assert ids == lm.sample(5_000, context=[0], generator=0)  # reproducible at a seed
    prev = [0] + ids[:-1]
    for ctx in range(V):  # each context's observed next tokens vs the model's distribution
        nxt = [w for p, w in zip(prev, ids) if p == ctx]
        observed = np.bincount(nxt, minlength=V)
        expected = lm.next_token_probs([ctx]) * len(nxt)
        assert chisquare(observed, expected).pvalue > 1e-3


def test_kneser_ney_beats_add_one_on_held_out_text():
    train, val = toy_corpus("train")[:100_000], toy_corpus("val")[:20_000]
    tok = CharTokenizer().train(train)
    a, b = tok.encode(train), tok.encode(val)
    kn = NGramLM(NGramConfig(7, tok.vocab_size, smoothing="kneser-ney")).fit(a).cross_entropy(b)
    add1 = NGramLM(NGramConfig(7, tok.vocab_size, smoothing="add-eps", eps=1.0)).fit(a).cross_entropy(b)
    assert kn < add1


def test_bad_input():
    with pytest.raises(ValueError, match="n must be"):
        NGramLM(NGramConfig(0, 5))
    with pytest.raises(ValueError, match="vocab_size"):
        NGramLM(NGramConfig(2, 0))
    with pytest.raises(ValueError, match="smoothing"):
        NGramLM(NGramConfig(2, 5, smoothing="witten-bell"))
    with pytest.raises(ValueError, match="int64"):
        NGramLM(NGramConfig(5, 50_000))
    with pytest.raises(ValueError, match="discount"):
        NGramLM(NGramConfig(2, 5, discount=1.5))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        NGramLM(NGramConfig(2, 3)).fit([0, 1, 3])
    with pytest.raises(TypeError, match="encode the text"):
        NGramLM(NGramConfig(2, 3)).fit("abc")
    with pytest.raises(ValueError, match="at least 3"):
        NGramLM(NGramConfig(3, 3)).fit([0, 1])
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM(NGramConfig(2, 3)).prob(0, [1])
    lm = NGramLM(NGramConfig(2, 3)).fit([0, 1, 2])
    with pytest.raises(ValueError, match="empty"):
        lm.cross_entropy([])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm.prob(3, [0])
