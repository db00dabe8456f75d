"""The chapter 2 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import numpy as np
import pytest
from _checks import assert_check_behaves

import lmcore
from lmcore import exercises

# --- reference solutions (written as a student would, independently of the checks) ---------------

def bigram_probs(ids, vocab_size, eps):
    counts = np.zeros((vocab_size, vocab_size))
    for a, b in zip(ids, ids[1:]):
        counts[a, b] += 1
    return (counts + eps) / (counts.sum(axis=1, keepdims=True) + eps * vocab_size)


def jelinek_mercer(logp_high, logp_low, lam):
    return np.log(lam * np.exp(logp_high) + (1 - lam) * np.exp(logp_low))


def _toy_models(num_chars):
    """The exercise's two models fitted on the first num_chars toy characters, scored on validation."""
    train = lmcore.data.toy_corpus("train")
    tok = lmcore.CharTokenizer().train(train)
    ids = np.array(tok.encode(train))[:num_chars]
    val = np.array(tok.encode(lmcore.data.toy_corpus("val")))
    high = lmcore.NGramLM(lmcore.NGramConfig(8, tok.vocab_size, smoothing="mle")).fit(ids)
    low = lmcore.NGramLM(lmcore.NGramConfig(3, tok.vocab_size, smoothing="add-eps", eps=0.01)).fit(ids)
    return high, low, ids, val


def _curve(num_chars, on_training_text=False, mix=jelinek_mercer):
    high, low, ids, val = _toy_models(num_chars)
    text = ids if on_training_text else val
    a, b = high.token_logprobs(text), low.token_logprobs(text)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.array([-mix(a, b, lam).mean() for lam in LAMBDAS])


LAMBDAS = np.linspace(0, 1, 21)


def best_lambda(num_chars):
    return float(LAMBDAS[np.argmin(_curve(num_chars))])


# --- plausible wrong answers ----------------------------------------------------------------------

def bigram_context_from_unigram_counts(ids, vocab_size, eps):
    # divides by how often a occurs anywhere, including at the very end where nothing follows it
    counts = np.zeros((vocab_size, vocab_size))
    for a, b in zip(ids, ids[1:]):
        counts[a, b] += 1
    return (counts + eps) / (np.bincount(ids, minlength=vocab_size)[:, None] + eps * vocab_size)


def bigram_forgets_eps_in_denominator(ids, vocab_size, eps):
    counts = np.zeros((vocab_size, vocab_size))
    for a, b in zip(ids, ids[1:]):
        counts[a, b] += 1
    return (counts + eps) / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def _pair_counts(ids, vocab_size):
    counts = np.zeros((vocab_size, vocab_size))
    for a, b in zip(ids, ids[1:]):
        counts[a, b] += 1
    return counts


def bigram_eps_once_in_denominator(ids, vocab_size, eps):   # adds eps to each entry, but only once below
    counts = _pair_counts(ids, vocab_size)
    return (counts + eps) / (counts.sum(axis=1, keepdims=True) + eps)


def bigram_transposed(ids, vocab_size, eps):
    return bigram_probs(ids, vocab_size, eps).T


def bigram_without_eps(ids, vocab_size, eps):
    counts = _pair_counts(ids, vocab_size)
    with np.errstate(invalid="ignore"):
        return counts / counts.sum(axis=1, keepdims=True)


def jm_swapped(logp_high, logp_low, lam):
    return np.log((1 - lam) * np.exp(logp_high) + lam * np.exp(logp_low))


def jm_mixes_log_probs(logp_high, logp_low, lam):
    with np.errstate(invalid="ignore"):
        return lam * logp_high + (1 - lam) * logp_low


def jm_returns_probabilities(logp_high, logp_low, lam):
    return lam * np.exp(logp_high) + (1 - lam) * np.exp(logp_low)


def jm_in_bits(logp_high, logp_low, lam):
    return np.log2(lam * np.exp(logp_high) + (1 - lam) * np.exp(logp_low))


def best_lambda_on_training_text(num_chars):
    return float(LAMBDAS[np.argmin(_curve(num_chars, on_training_text=True))])


def best_lambda_argmax(num_chars):
    curve = _curve(num_chars)
    return float(LAMBDAS[np.argmax(np.where(np.isfinite(curve), curve, -np.inf))])


def best_lambda_of_log_mixture(num_chars):
    return float(LAMBDAS[np.argmin(_curve(num_chars, mix=jm_mixes_log_probs))])


def best_lambda_more_context_is_better(num_chars):
    return 0.95   # the largest λ that keeps the mixture finite, whatever the data


def best_lambda_returns_the_curve(num_chars):
    return _curve(num_chars)


CASES = [
    (exercises.check_bigram_probs, bigram_probs,
     [(bigram_context_from_unigram_counts, "followed by nothing"), (bigram_forgets_eps_in_denominator, "not 1"),
      (bigram_eps_once_in_denominator, "missing part of the eps"), (bigram_transposed, "swapped"),
      (bigram_without_eps, "where is eps?")]),
    (exercises.check_jelinek_mercer, jelinek_mercer,
     [(jm_swapped, "belongs to the longer context"), (jm_mixes_log_probs, "mix the probabilities"),
      (jm_returns_probabilities, "not probabilities"), (jm_in_bits, "natural log")]),
    (exercises.ch02.check_best_lambda, best_lambda,
     [(best_lambda_on_training_text, "training text"), (best_lambda_argmax, "keep the argmin"),
      (best_lambda_of_log_mixture, "mix the probabilities"), (best_lambda_more_context_is_better, "keep the lowest"),
      (best_lambda_returns_the_curve, "should return a number")]),
]


@pytest.mark.parametrize("check,solution,wrong", CASES, ids=[c[0].__name__ for c in CASES])
def test_check_passes_reference_and_fails_stub_and_wrong_answers(check, solution, wrong, capsys):
    assert_check_behaves(check, solution, wrong, capsys)


def test_best_lambda_is_strictly_inside_the_grid_and_grows_with_data():
    """The exercise's premise, measured independently: the argmin is neither end of [0, 1], and
    more text moves it towards the long context."""
    best = {n: best_lambda(n) for n in (3_000, 10_000, 30_000)}
    assert all(0 < lam < 1 for lam in best.values()), best
    assert best[3_000] < best[10_000] < best[30_000], best
    curve = _curve(10_000)
    assert curve[0] > curve.min() + 0.05 and curve[-1] > curve.min() + 0.05   # a clear valley, not a plateau


def test_bigram_hints_point_at_the_mistake_without_stating_the_formula(capsys):
    """Issue 18: the hint spelled out the whole add-ε rule ("divide by the count of the context plus eps
    times the vocabulary size")."""
    capsys.readouterr()
    for wrong in (bigram_context_from_unigram_counts, bigram_forgets_eps_in_denominator,
                  bigram_eps_once_in_denominator, bigram_transposed, bigram_without_eps):
        assert exercises.check_bigram_probs(wrong).status == "fail"
    out = capsys.readouterr().out
    assert out.count("FAIL bigram_probs") == 5
    assert "times the vocabulary size" not in out and "plus eps" not in out and "add eps, and normalise" not in out
