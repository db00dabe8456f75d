"""The chapter 3 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

from collections import Counter

import pytest
from _checks import assert_check_behaves

from lmcore import exercises

# --- reference solutions (written as a student would, independently of the checks) ---------------

def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if tuple(ids[i:i + 2]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def apply_merges(data, merges):
    ids = list(data)
    for rank, pair in enumerate(merges):  # in learned order, each merge everywhere
        ids = merge(ids, pair, 256 + rank)
    return ids


def train_bpe(text, num_merges):
    ids, merges = list(text.encode("utf-8")), []
    for r in range(num_merges):
        pairs = Counter(zip(ids, ids[1:]))
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        ids = merge(ids, best, 256 + r)
    return merges


def same_cut_fraction(tokenizer, text):
    same = total = 0
    for line in text.splitlines():
        left, _, _ = line.partition("=")
        a, _, b = left.partition("+")
        if a.isdigit() and b.isdigit() and len(a) == len(b):
            total += 1
            lengths = [[len(tokenizer.token_bytes(i)) for i in tokenizer.encode(x)] for x in (a, b)]
            same += lengths[0] == lengths[1]
    return same / total


# --- plausible wrong answers ----------------------------------------------------------------------

def merge_overlapping(ids, pair, new_id):  # replaces at every position, so "aaa" -> two merges
    out, i = [], 0
    while i < len(ids):
        if tuple(ids[i:i + 2]) == tuple(pair):
            out.append(new_id)
        elif not (i > 0 and tuple(ids[i - 1:i + 1]) == tuple(pair)):
            out.append(ids[i])
        i += 1
    return out


def merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if tuple(ids[i:i + 2]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


def apply_longest_match(data, merges):
    vocab = {bytes([i]): i for i in range(256)}
    spell = [bytes([i]) for i in range(256)]
    for r, (a, b) in enumerate(merges):
        spell.append(spell[a] + spell[b])
        vocab[spell[-1]] = 256 + r
    out, i = [], 0
    while i < len(data):
        j = max(k for k in range(i + 1, len(data) + 1) if data[i:k] in vocab)
        out.append(vocab[data[i:j]])
        i = j
    return out


def train_bpe_max_tie(text, num_merges):  # max() keeps the FIRST pair seen on ties, not the smallest
    ids, merges = list(text.encode("utf-8")), []
    for r in range(num_merges):
        pairs = Counter(zip(ids, ids[1:]))
        best = max(pairs, key=pairs.get)
        merges.append(best)
        ids = merge(ids, best, 256 + r)
    return merges


def train_bpe_fixed_ids(text, num_merges):  # forgets that merge r creates the id 256 + r
    ids, merges = list(text.encode("utf-8")), []
    for _ in range(num_merges):
        pairs = Counter(zip(ids, ids[1:]))
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        ids = merge(ids, best, 256)
    return merges


def same_cut_all_equations(tokenizer, text):  # forgets to keep only addends of the same length
    lines = [line.partition("=")[0].partition("+") for line in text.splitlines()]
    cuts = [[[len(tokenizer.token_bytes(i)) for i in tokenizer.encode(x)] for x in (a, b)] for a, _, b in lines]
    return sum(ca == cb for ca, cb in cuts) / len(cuts)


def same_number_of_tokens(tokenizer, text):  # compares how many tokens, not where the cuts fall
    lines = [line.partition("=")[0].partition("+") for line in text.splitlines()]
    pairs = [(a, b) for a, _, b in lines if len(a) == len(b)]
    return sum(len(tokenizer.encode(a)) == len(tokenizer.encode(b)) for a, b in pairs) / len(pairs)


def same_cut_as_percent(tokenizer, text):  # a percentage, not a fraction
    return 100 * same_cut_fraction(tokenizer, text)


CASES = [
    (exercises.check_merge, merge, [merge_overlapping, merge_first_only]),
    (exercises.check_apply_merges, apply_merges, [apply_longest_match]),
    (exercises.check_train_bpe, train_bpe, [train_bpe_max_tie, train_bpe_fixed_ids]),
    (exercises.check_same_cut_fraction, same_cut_fraction,
     [(same_cut_all_equations, "same number of digits"), (same_number_of_tokens, "not only how many tokens"),
      (same_cut_as_percent, "off")]),
]


@pytest.mark.parametrize("check,solution,wrong", CASES, ids=[c[0].__name__ for c in CASES])
def test_check_passes_reference_and_fails_stub_and_wrong_answers(check, solution, wrong, capsys):
    assert_check_behaves(check, solution, wrong, capsys)
