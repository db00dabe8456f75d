"""Small formal languages whose every string can be listed (chapter 11).

Chapter 11 checks RLHF against an exactly computed posterior, which needs a space of sequences
small enough to enumerate: every string up to ``max_len`` characters over a small alphabet
(:func:`enumerate_sequences`), and a language on it to pretrain the prior with
(:func:`tiny_language`).
"""
from __future__ import annotations

import itertools
import math
import random

from .._checks import ArgumentTypeError, check_int

__all__ = ["enumerate_sequences", "tiny_language"]


def _check_alphabet(alphabet: str) -> None:
    if not isinstance(alphabet, str):
        raise ArgumentTypeError(f"alphabet must be a non-empty string of distinct characters, got {alphabet!r}")
    if not alphabet or len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet must be a non-empty string of distinct characters, got {alphabet!r}")


def enumerate_sequences(alphabet: str, max_len: int, max_size: int = 100_000) -> list[str]:
    """Every string over ``alphabet`` of length ``0 .. max_len``, shortest first.

    There are ``Σ_{n=0}^{max_len} |alphabet|^n`` of them; more than ``max_size`` raises
    ``ValueError`` with the size (enumerate a smaller space, or use samples instead).
    """
    _check_alphabet(alphabet)
    max_len = check_int("max_len", max_len, low=0)
    check_int("max_size", max_size, low=1)
    # count before building: the space grows as k^max_len. One far larger than max_size is only
    # bounded below, by k^max_len through its logarithm: counting max_len=10**6 exactly takes minutes.
    k = len(alphabet)
    log_lower = max_len * math.log10(k)
    if log_lower > math.log10(max_size) + 1:
        size = f"more than 10^{math.floor(log_lower)}"
    else:
        count = max_len + 1 if k == 1 else (k ** (max_len + 1) - 1) // (k - 1)
        size = f"{count:,}" if count > max_size else ""
    if size:
        raise ValueError(f"the space of strings up to length {max_len} over {k} symbols has {size} members, "
                         f"more than max_size={max_size:,}; shorten max_len, shrink the alphabet, or estimate "
                         "from samples")
    return ["".join(t) for n in range(max_len + 1) for t in itertools.product(alphabet, repeat=n)]


def tiny_language(n: int, max_len: int = 5, alphabet: str = "abc", seed: int = 0) -> list[str]:
    """``n`` strings of a small formal language: a Markov chain over ``alphabet``.

    Each string starts with the first symbol with probability 1/2 (else uniform), then moves
    to the *next* symbol of the alphabet (cyclically) with probability 0.6, repeats with 0.2 and
    jumps elsewhere otherwise; after every symbol it stops with probability 0.3. Strings are cut
    at ``max_len``. A model trained on it prefers runs like ``abcab``.
    """
    check_int("n", n, low=0)
    check_int("max_len", max_len, low=1)      # 0 would make every string empty
    _check_alphabet(alphabet)
    rng = random.Random(check_int("seed", seed))     # its own generator: the strings depend on ``seed`` alone
    k = len(alphabet)
    out = []
    for _ in range(n):
        s: list[str] = []
        cur = 0 if rng.random() < 0.5 else rng.randrange(k)
        while len(s) < max_len:
            s.append(alphabet[cur])
            if rng.random() < 0.3:
                break
            u = rng.random()
            cur = (cur + 1) % k if u < 0.6 else cur if u < 0.8 else rng.randrange(k)
        out.append("".join(s))
    return out
