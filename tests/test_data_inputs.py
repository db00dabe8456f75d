"""Bad input to ``lmcore.data`` (the toy language, batching, the small languages, the instruction
set) gets a clear ``ValueError`` / ``TypeError`` that names the argument, at the call: never a
silent result, a hang, or a failure some steps later.

Calls that used to hang now fail after a bounded search; pytest-timeout's per-test limit (the
``pytestmark`` below, far above the second or so these calls take) stops a regression from stalling
the suite.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from lmcore._checks import ArgumentTypeError
from lmcore.data import (
    ToyLanguage,
    enumerate_sequences,
    get_batch,
    instructions,
    tiny_language,
    toy_corpus,
    toy_instructions,
    train_val_split,
)

pytestmark = pytest.mark.timeout(300)

TOY = ToyLanguage()
STREAM = torch.arange(100) % 7
NAN = float("nan")


# (call, exception, a pattern the message must match: the argument's name)
BAD = {
    "sample seed float": (lambda: TOY.sample(2, seed=1.5), ArgumentTypeError, r"\bseed\b"),
    "entropy level 2 (NaN interval)": (lambda: TOY.estimate_entropy(n=50, level=2), ValueError, r"\blevel\b"),
    "entropy level 0 (zero width)": (lambda: TOY.estimate_entropy(n=50, level=0), ValueError, r"\blevel\b"),
    "entropy level 1 (infinite)": (lambda: TOY.estimate_entropy(n=50, level=1), ValueError, r"\blevel\b"),
    "entropy level NaN": (lambda: TOY.estimate_entropy(n=50, level=NAN), ValueError, r"\blevel\b"),
    "entropy level str": (lambda: TOY.estimate_entropy(n=50, level="95%"), ArgumentTypeError, r"\blevel\b"),
    "entropy n str": (lambda: TOY.estimate_entropy(n="50"), ArgumentTypeError, r"\bn\b"),
    "entropy seed float": (lambda: TOY.estimate_entropy(n=50, seed=0.5), ArgumentTypeError, r"\bseed\b"),
    "agreement_errors int": (lambda: TOY.agreement_errors(123), ArgumentTypeError, r"\btexts\b"),
    "agreement_errors ints": (lambda: TOY.agreement_errors([1, 2]), ArgumentTypeError, r"\btexts\b.*index 0"),
    "pronoun_errors None": (lambda: TOY.pronoun_errors(None), ArgumentTypeError, r"\btexts\b"),
    "pronoun_errors bytes": (lambda: TOY.pronoun_errors([b"bob sees"]), ArgumentTypeError, r"\btexts\b"),
    "toy_corpus list": (lambda: toy_corpus(["train"]), ArgumentTypeError, r"\bsplit\b"),
    "get_batch batch_size float": (lambda: get_batch(STREAM, 1.5, 4), ArgumentTypeError, r"\bbatch_size\b"),
    "get_batch batch_size str": (lambda: get_batch(STREAM, "2", 4), ArgumentTypeError, r"\bbatch_size\b"),
    "get_batch seq_len float": (lambda: get_batch(STREAM, 2, 2.5), ArgumentTypeError, r"\bseq_len\b"),
    "get_batch seq_len bool": (lambda: get_batch(STREAM, 2, True), ArgumentTypeError, r"\bseq_len\b"),
    "get_batch negative ids": (lambda: get_batch(STREAM - 3, 8, 4), ValueError, r"negative token ids"),
    "get_batch doc_starts float": (lambda: get_batch(STREAM, 2, 4, doc_starts=[0.5, 10.7], aligned=1.0),
                                   ArgumentTypeError, r"\bdoc_starts\b"),
    "get_batch doc_starts negative": (lambda: get_batch(STREAM, 2, 4, doc_starts=[-5, 10], aligned=1.0),
                                      ValueError, r"\bdoc_starts\b"),
    "get_batch doc_starts past the end": (lambda: get_batch(STREAM, 2, 4, doc_starts=[10, 100]),
                                          ValueError, r"\bdoc_starts\b.*\[0, 100\)"),
    "get_batch doc_starts str": (lambda: get_batch(STREAM, 2, 4, doc_starts="abc", aligned=1.0),
                                 ArgumentTypeError, r"\bdoc_starts\b"),
    "get_batch generator": (lambda: get_batch(STREAM, 2, 4, generator="x"), ArgumentTypeError, r"\bgenerator\b"),
    "get_batch device": (lambda: get_batch(STREAM, 2, 4, device="gpu0"), ValueError, r"\bdevice\b"),
    "split float ids": (lambda: train_val_split([1.5, 2.7, 3.2, 4.9]), ArgumentTypeError, r"\bids\b.*1\.5"),
    "split float tensor": (lambda: train_val_split(torch.tensor([1.5, 2.7, 3.2])), ArgumentTypeError, r"\bids\b"),
    "split float array": (lambda: train_val_split(np.array([1.5, 2.7, 3.2])), ArgumentTypeError, r"\bids\b"),
    "split negative ids": (lambda: train_val_split([-1, 2, 3]), ValueError, r"\bids\b.*-1"),
    "split str": (lambda: train_val_split("abc"), ArgumentTypeError, r"\bids\b"),
    "split val_fraction str": (lambda: train_val_split([1, 2, 3], "0.1"), ArgumentTypeError, r"\bval_fraction\b"),
    "tiny_language n negative": (lambda: tiny_language(-1), ValueError, r"\bn\b"),
    "tiny_language n float": (lambda: tiny_language(2.5), ArgumentTypeError, r"\bn\b"),
    "tiny_language empty alphabet": (lambda: tiny_language(3, alphabet=""), ValueError, r"\balphabet\b"),
    "tiny_language alphabet list": (lambda: tiny_language(3, alphabet=["a", "b"]), ArgumentTypeError,
                                    r"\balphabet\b"),
    "tiny_language repeated symbol": (lambda: tiny_language(3, alphabet="aab"), ValueError, r"\balphabet\b"),
    "tiny_language max_len 0": (lambda: tiny_language(3, max_len=0), ValueError, r"\bmax_len\b"),
    "tiny_language max_len float": (lambda: tiny_language(3, max_len=2.5), ArgumentTypeError, r"\bmax_len\b"),
    "tiny_language seed float": (lambda: tiny_language(3, seed=0.5), ArgumentTypeError, r"\bseed\b"),
    "toy_instructions max_chars float": (lambda: toy_instructions(2, max_chars=70.5), ArgumentTypeError,
                                         r"\bmax_chars\b"),
    "toy_instructions tasks None": (lambda: toy_instructions(2, tasks=None), ArgumentTypeError, r"\btasks\b"),
    "toy_instructions seed float": (lambda: toy_instructions(2, seed=0.5), ArgumentTypeError, r"\bseed\b"),
    "toy_instructions exclude None": (lambda: toy_instructions(2, exclude=None), ArgumentTypeError,
                                      r"\bexclude\b"),
    "toy_instructions exclude strings": (lambda: toy_instructions(2, exclude=[["x"]]), ArgumentTypeError,
                                         r"exclude\[0\]"),
    "toy_instructions exclude str": (lambda: toy_instructions(2, exclude="abc"), ArgumentTypeError, r"\bexclude\b"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_refused_clearly(name):
    call, error, pattern = BAD[name]
    with pytest.raises(error, match=pattern):
        call()


# --- toy_instructions: impossible settings fail at once or after a bound, never hang ---------------

@pytest.mark.parametrize("max_chars, tasks, shortest", [
    (5, ("name", "plural", "count"), 21), (16, ("name",), 17), (16, ("count",), 17), (20, ("plural",), 21),
    (-1, ("name",), None), (0, ("name",), None),
])
def test_toy_instructions_refuses_a_max_chars_no_text_fits(max_chars, tasks, shortest):
    with pytest.raises(ValueError, match=r"\bmax_chars\b" + (f".*max_chars >= {shortest}" if shortest else "")):
        toy_instructions(2, tasks=tasks, max_chars=max_chars)


def test_the_shortest_texts_are_the_grammars():
    """The bounds are tight: at the bound the sampler finds texts of exactly that length, and no
    sampled story (or "the ..." sentence of one) is ever shorter."""
    for task, shortest in (("name", 17), ("count", 17), ("plural", 21)):
        convs = toy_instructions(2, tasks=(task,), max_chars=shortest, seed=1)
        assert [len(c[0]["content"].split(". ", 1)[1]) for c in convs] == [shortest] * 2
    stories = [s.rstrip("\n") for s in TOY.sample(20_000, seed=4)]
    assert min(map(len, stories)) >= 17
    sentences = [s.strip() + "." for story in stories for s in story.split(".") if s.strip().startswith("the ")]
    assert min(map(len, sentences)) >= 21


def test_toy_instructions_gives_up_when_too_few_texts_remain():
    # 8 distinct "plural" texts have 21 characters ("the cat sees the dog.", ...): a ninth never comes
    with pytest.raises(ValueError, match=r"no new conversation in 20,000 stories in a row \(8 of n=9 made\)"):
        toy_instructions(9, tasks=("plural",), max_chars=21)
    # exclude takes away the only 4 "name" texts of 17 characters ("what is the name. bob sees the cat.", ...)
    shortest = [[{"role": "user", "content": f"what is the name. {n} sees the {x}."}]
                for n in ("bob", "tom") for x in ("cat", "dog")]
    assert {c[0]["content"] for c in toy_instructions(4, tasks=("name",), max_chars=17)} \
        == {c[0]["content"] for c in shortest}
    with pytest.raises(ValueError, match=r"\(0 of n=1 made\): max_chars=17 and exclude \(4 conversations\)"):
        toy_instructions(1, tasks=("name",), max_chars=17, exclude=shortest)


def test_toy_instructions_of_chapter_10_are_unchanged():
    """The bound on failed draws changes nothing for settings that work: the chapter's datasets are
    the ones it was written with (sha256 of both, as JSON)."""
    train = toy_instructions(600, seed=1, max_chars=70)
    test = toy_instructions(300, seed=2, max_chars=70, exclude=train)
    digest = hashlib.sha256(json.dumps([train, test]).encode()).hexdigest()
    assert digest == "9de0410473fdde4c3954e7c56c27ba0734aef2d951fa0d6b36e99cc6c78432a5"
    assert instructions._MAX_FAILED_DRAWS == 20_000


# --- the other hang, and what valid input still gets ----------------------------------------------

def test_enumerate_sequences_refuses_a_huge_space_at_once():
    with pytest.raises(ValueError, match=r"more than 10\^477121 members"):
        enumerate_sequences("abc", 10**6)
    with pytest.raises(ValueError, match=r"1,111,111 members"):      # small enough: counted exactly
        enumerate_sequences("0123456789", 6)
    with pytest.raises(ValueError, match=r"1,000,000,000,001 members"):     # one symbol: max_len + 1 strings
        enumerate_sequences("a", 10**12)
    assert enumerate_sequences("a", 3) == ["", "a", "aa", "aaa"]
    assert len(enumerate_sequences("ab", 16, max_size=2**17 - 1)) == 2**17 - 1      # exactly max_size: allowed


def test_error_counters_take_any_iterable_of_texts():
    stories = TOY.sample(30, seed=2)
    assert TOY.agreement_errors(iter(stories)) == TOY.agreement_errors(stories)
    assert TOY.pronoun_errors(tuple(stories)) == TOY.pronoun_errors(stories)
    assert TOY.pronoun_errors(stories[0]) == TOY.pronoun_errors([stories[0]])


def test_entropy_interval_widens_with_the_level():
    """Inside (0, 1) the interval is the normal one: its half-width is z(level) standard errors."""
    from scipy.stats import norm

    e90, e99 = (TOY.estimate_entropy(n=500, seed=3, level=lv) for lv in (0.9, 0.99))
    assert e90.value == e99.value
    ratio = (e99.high - e99.low) / (e90.high - e90.low)
    assert ratio == pytest.approx(norm.ppf(0.995) / norm.ppf(0.95), rel=1e-9)
    assert math.isfinite(e99.low) and math.isfinite(e99.high)


def test_valid_ids_split_as_before():
    for ids in (list(range(10)), np.arange(10), torch.arange(10, dtype=torch.int32), torch.arange(10)):
        train, val = train_val_split(ids, 0.3)
        assert train.dtype == val.dtype == torch.long
        assert train.tolist() == list(range(7)) and val.tolist() == [7, 8, 9]
    t = torch.arange(10)
    assert train_val_split(t)[0].data_ptr() == t.data_ptr()        # a view of a long tensor, not a copy


def test_doc_starts_as_a_list_or_int32_tensor_draw_the_same_batches():
    data = torch.arange(1000)
    got = [get_batch(data, 6, 8, generator=torch.Generator().manual_seed(3), doc_starts=d, aligned=0.5)
           for d in ([0, 100, 995], torch.tensor([0, 100, 995], dtype=torch.int32), torch.tensor([0, 100, 995]))]
    for x, y in got[1:]:
        assert torch.equal(x, got[0][0]) and torch.equal(y, got[0][1])
    assert set(got[0][0][:3, 0].tolist()) <= {0, 100}          # 995 leaves no whole window: never drawn
