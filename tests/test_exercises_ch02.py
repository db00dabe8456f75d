"""The chapter 2 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import numpy as np
import pytest
from _checks import assert_check_behaves

from lmcore import exercises

# --- reference solutions (written as a student would, independently of the checks) ---------------

def bigram_probs(ids, vocab_size, eps):
    counts = np.zeros((vocab_size, vocab_size))
    for a, b in zip(ids, ids[1:]):
        counts[a, b] += 1
    return (counts + eps) / (counts.sum(axis=1, keepdims=True) + eps * vocab_size)


def jelinek_mercer(unigram, bigram, lam):
    return lam * bigram + (1 - lam) * unigram[None, :]


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


def jm_swapped(unigram, bigram, lam):
    return (1 - lam) * bigram + lam * unigram[None, :]


def jm_unigram_along_columns(unigram, bigram, lam):
    return lam * bigram + (1 - lam) * unigram[:, None]


CASES = [
    (exercises.check_bigram_probs, bigram_probs, [bigram_context_from_unigram_counts, bigram_forgets_eps_in_denominator]),
    (exercises.check_jelinek_mercer, jelinek_mercer, [jm_swapped, jm_unigram_along_columns]),
]


@pytest.mark.parametrize("check,solution,wrong", CASES, ids=[c[0].__name__ for c in CASES])
def test_check_passes_reference_and_fails_stub_and_wrong_answers(check, solution, wrong, capsys):
    assert_check_behaves(check, solution, wrong, capsys)
