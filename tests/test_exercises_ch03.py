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


def merge_drops_last(ids, pair, new_id):  # the loop stops one short: a final unpaired id is lost
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_right_to_left(ids, pair, new_id):
    return merge(list(ids)[::-1], tuple(pair)[::-1], new_id)[::-1]


def apply_merges_off_by_one(data, merges):  # merge r made the id 257 + r
    ids = list(data)
    for rank, pair in enumerate(merges):
        ids = merge(ids, pair, 257 + rank)
    return ids


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
    (exercises.check_merge, merge, [merge_overlapping, merge_first_only, merge_drops_last, merge_right_to_left]),
    (exercises.check_apply_merges, apply_merges, [apply_longest_match, apply_merges_off_by_one]),
    (exercises.check_train_bpe, train_bpe, [train_bpe_max_tie, train_bpe_fixed_ids]),
    (exercises.check_same_cut_fraction, same_cut_fraction,
     [(same_cut_all_equations, "same number of digits"), (same_number_of_tokens, "not only how many tokens"),
      (same_cut_as_percent, "off")]),
]


@pytest.mark.parametrize("check,solution,wrong", CASES, ids=[c[0].__name__ for c in CASES])
def test_check_passes_reference_and_fails_stub_and_wrong_answers(check, solution, wrong, capsys):
    assert_check_behaves(check, solution, wrong, capsys)


def _fail_line(check, wrong, capsys):
    capsys.readouterr()
    assert check(wrong).status == "fail"
    out = capsys.readouterr().out
    assert out.startswith("FAIL ") and out.count("\n") == 1, out
    return out


def test_merge_that_drops_the_last_id_is_told_so_not_about_overlaps(capsys):
    """Issue 18: it got the "overlapping occurrences" hint."""
    out = _fail_line(exercises.check_merge, merge_drops_last, capsys)
    assert "the last id is missing" in out and "overlapping" not in out


@pytest.mark.parametrize("wrong", [merge_overlapping, merge_right_to_left])
def test_merge_with_overlapping_occurrences_gets_the_overlap_hint(wrong, capsys):
    out = _fail_line(exercises.check_merge, wrong, capsys)
    assert "overlapping occurrences" in out and "[5, 5, 5]" in out


def test_merge_that_replaces_only_the_first_occurrence(capsys):
    out = _fail_line(exercises.check_merge, merge_first_only, capsys)
    assert "replace every occurrence" in out and "overlapping" not in out


def test_apply_merges_off_by_one_is_told_about_the_ids_not_the_count_or_the_order(capsys):
    """Issue 18: it printed "returned [257, 99], expected 2 ids" (it did return 2) and the earliest-merge hint."""
    out = _fail_line(exercises.check_apply_merges, apply_merges_off_by_one, capsys)
    assert "the right number of ids, but the new ids are not the right ones" in out
    assert "expected" not in out and "EARLIEST" not in out and "longest" not in out and "right encoding has" not in out


def test_apply_merges_longest_match_is_named_as_such(capsys):
    out = _fail_line(exercises.check_apply_merges, apply_longest_match, capsys)
    assert "longest-match encoding" in out and "'abc'" in out
