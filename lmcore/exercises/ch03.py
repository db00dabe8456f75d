"""Checks for the exercises of chapter 3, "Tokenization and BPE".

The references are ``lmcore.tokenizers.BPETokenizer`` (trainer and encoder) run without regex
pre-splitting, so a student's plain-Python functions over one sequence of ids can be compared
with it directly.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import partial
from numbers import Real

import regex

from ..tokenizers import GPT2_PATTERN, GPT4_PATTERN, BPETokenizer, merge_pair
from ._check import CheckFailed, CheckResult, run_check

__all__ = ["check_merge", "check_apply_merges", "check_train_bpe", "check_same_cut_fraction"]

_TEXTS = ["the car the cat the rat", "aaaa abab aaa", "banana bandana", "héllo wörld 🙂🙂 héllo"]


def _as_ids(out, what: str) -> list[int]:
    if not isinstance(out, (list, tuple)) or not all(isinstance(i, int) for i in out):
        raise CheckFailed(f"{what} should be a list of ints, got {type(out).__name__}"
                          + (f" of {type(out[0]).__name__}" if isinstance(out, (list, tuple)) and out else ""))
    return list(out)


# --- exercise 1: one merge ----------------------------------------------------------------------------

def _merge_hint(ids: list[int], pair: tuple[int, int], new: int, got: list[int], want: list[int]) -> str:
    """The hint for a wrong ``merge``: which of the usual mistakes ``got`` shows."""
    if ids and got == want[:-1]:
        return "the last id is missing: an id with no pair after it still belongs in the output"
    if got == ids:
        return ("nothing was replaced: compare each adjacent pair (ids[i], ids[i + 1]) with the pair "
                "(a list and a tuple never compare equal)")
    if pair[0] == pair[1] and (got.count(new) != want.count(new)
                               or got == merge_pair(ids[::-1], pair[0], pair[1], new)[::-1]):
        return ("overlapping occurrences: scan left to right, and after merging a pair continue after "
                    "its second element")
    return "replace every occurrence of the pair by one new id and keep every other id, in order"


def check_merge(merge: Callable[[list[int], tuple[int, int], int], list[int]], quiet: bool = False) -> CheckResult:
    """Check ``merge(ids, pair, new_id)``: every occurrence of ``pair`` replaced, left to right."""
    def body() -> None:
        cases = [([1, 2, 3, 1, 2], (1, 2), 9), ([1, 2, 3], (1, 2), 9), ([5, 5, 5], (5, 5), 7),
                 ([5, 5, 5, 5], (5, 5), 7), ([1, 2], (2, 1), 8), ([], (1, 2), 3), ([4], (4, 4), 6)]
        for ids, pair, new in cases:
            want = merge_pair(ids, pair[0], pair[1], new)
            got = _as_ids(merge(list(ids), pair, new), f"merge({ids}, {pair}, {new})")
            if got != want:
                raise CheckFailed(f"merge({ids}, {pair}, {new}) returned {got}. Hint: "
                                  f"{_merge_hint(ids, pair, new, got, want)}")

    return run_check("merge", body, quiet)


# --- exercise 2: encoding by applying merges in order -------------------------------------------------

def _longest_match(tok: BPETokenizer, data: bytes) -> list[int]:
    """Greedy longest-prefix matching over ``tok``'s vocabulary: the plausible wrong encoder."""
    vocab = {tok.token_bytes(i): i for i in range(256 + len(tok.merges))}
    out, i = [], 0
    while i < len(data):
        j = max(k for k in range(i + 1, len(data) + 1) if data[i:k] in vocab)
        out.append(vocab[data[i:j]])
        i = j
    return out


def _apply_merges_hint(tok: BPETokenizer, data: bytes, got: list[int], want: list[int]) -> str:
    """The hint for a wrong ``apply_merges``: which of the usual mistakes ``got`` shows."""
    if got == list(data):
        return "no merge was applied: apply every merge, in the order learned"
    if len(got) == len(want) and all((g < 256) == (w < 256) for g, w in zip(got, want)):
        return ("the right number of ids, but the new ids are not the right ones: which id does the first "
                "learned merge create?")
    if got == _longest_match(tok, data):
        return ("that is the longest-match encoding; BPE replays the merges in the order they were learned, "
                "which can cut the text differently")
    return "apply the merges in the order they were learned, each one everywhere in the sequence"


def check_apply_merges(apply_merges: Callable[[bytes, list[tuple[int, int]]], list[int]],
                       quiet: bool = False) -> CheckResult:
    """Check ``apply_merges(data, merges)``: UTF-8 bytes → ids, merges applied in learned order."""
    def body() -> None:
        # "abc" with merges [(b, c), (a, b)]: learned order gives [a, bc]; longest match gives [ab, c]
        a, b, c = b"abc"
        cases = [("abc", BPETokenizer(pattern=None, merges=[(b, c), (a, b)]))]
        cases += [(text, BPETokenizer(pattern=None).train(text * 3, 256 + 12)) for text in _TEXTS]
        for text, tok in cases:
            data = text.encode("utf-8")
            got = _as_ids(apply_merges(data, list(tok.merges)), f"apply_merges on {text!r}")
            want = tok.encode(text)
            if got != want:
                count = "" if len(got) == len(want) else f" ({len(got)} ids; the right encoding has {len(want)})"
                raise CheckFailed(f"on {text!r} with the merges learned from it you returned {got}{count}. "
                                  f"Hint: {_apply_merges_hint(tok, data, got, want)}")

    return run_check("apply_merges", body, quiet)


# --- exercise 3: the straightforward trainer ----------------------------------------------------------

def check_train_bpe(train_bpe: Callable[[str, int], list[tuple[int, int]]], quiet: bool = False) -> CheckResult:
    """Check ``train_bpe(text, num_merges)`` → merges ``[(a, b), …]`` (ids; merge r makes 256 + r)."""
    def body() -> None:
        for text in _TEXTS:
            want = BPETokenizer(pattern=None).train(text, 256 + 8).merges
            got = train_bpe(text, 8)
            if not isinstance(got, list) or not all(isinstance(m, tuple) and len(m) == 2 for m in got):
                raise CheckFailed("return a list of (a, b) tuples of ids")
            if got != want:
                k = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
                raise CheckFailed(f"on {text!r}, merge {k} is {got[k] if k < len(got) else 'missing'}; "
                                  "check it: it should be the most frequent adjacent pair, ties going to the "
                                  "smallest pair (a, b), and merge r should create the id 256 + r")

    return run_check("train_bpe", body, quiet)


# --- exercise 5: are two numbers of the same length cut the same way? ----------------------------------

def _cuts(tok: BPETokenizer, number: str) -> tuple[int, ...]:
    return tuple(len(tok.token_bytes(i)) for i in tok.encode(number))


def _n_tokens(tok: BPETokenizer, number: str) -> int:
    return len(tok.encode(number))


def _fraction(pairs: list[tuple[str, str]], key: Callable[[str], object]) -> float:
    """The fraction of the pairs ``(a, b)`` with ``key(a) == key(b)``."""
    return sum(key(a) == key(b) for a, b in pairs) / len(pairs) if pairs else math.nan


def check_same_cut_fraction(same_cut_fraction: Callable[[BPETokenizer, str], float],
                            quiet: bool = False) -> CheckResult:
    """Check ``same_cut_fraction(tokenizer, text)``: among the equations ``a+b=`` of ``text`` whose
    addends have the same number of digits, the fraction whose addends are cut into tokens of the
    same lengths."""
    def body() -> None:
        rng = random.Random(5)
        # first addends of 1 to 4 digits and second ones of 3 or 4, so that "the same number of digits"
        # filters some equations out
        def equations(n: int) -> str:
            pairs = ((rng.randrange(10 ** rng.randint(1, 4)), rng.randrange(10 ** rng.randint(3, 4))) for _ in range(n))
            return "".join(f"{a}+{b}={a + b}\n" for a, b in pairs)
        train, val = equations(3000), equations(400)
        one_digit = GPT2_PATTERN.replace(r" ?\p{N}+", r"\p{N}")
        pairs = regex.findall(r"(\d+)\+(\d+)=", val)
        equal_length = [(a, b) for a, b in pairs if len(a) == len(b)]
        for pattern, size in [(GPT2_PATTERN, 300), (GPT2_PATTERN, 600), (GPT4_PATTERN, 400), (one_digit, 300)]:
            tok = BPETokenizer(pattern=pattern).train(train, size)
            cuts, n_tokens = partial(_cuts, tok), partial(_n_tokens, tok)
            want = _fraction(equal_length, cuts)
            got = same_cut_fraction(tok, val)
            if isinstance(got, bool) or not isinstance(got, Real):
                raise CheckFailed(f"return the fraction as a float, got {type(got).__name__}")
            if math.isclose(got, want, abs_tol=1e-12):
                continue
            if math.isclose(got, _fraction(pairs, cuts), abs_tol=1e-12):
                hint = "count only the equations whose two addends have the same number of digits"
            elif math.isclose(got, _fraction(equal_length, n_tokens), abs_tol=1e-12):
                hint = ("compare the lengths of the tokens each addend is cut into, not only how many tokens "
                        "there are ('12|34' and '1|234' both have two)")
            else:
                hint = ("find the equations with a regular expression such as (\\d+)\\+(\\d+)=, keep those whose "
                        "addends have the same number of digits, and compare the token lengths of the two addends")
            raise CheckFailed(f"with a {size}-token BPE your fraction is {got:.4f}, which is off. Hint: {hint}")

    return run_check("same_cut_fraction", body, quiet)
