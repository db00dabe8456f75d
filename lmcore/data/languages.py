"""Small formal languages whose every string can be listed (chapter 11).

Chapter 11 checks RLHF against an exactly computed posterior, which needs a space of sequences
small enough to enumerate: every string up to ``max_len`` characters over a small alphabet
(:func:`enumerate_sequences`), and a language on it to pretrain the prior with
(:func:`tiny_language`).
"""
from __future__ import annotations

import itertools
import random

from .._checks import check_int

__all__ = ["enumerate_sequences", "tiny_language"]


def enumerate_sequences(alphabet: str, max_len: int, max_size: int = 100_000) -> list[str]:
    """Every string over ``alphabet`` of length ``0 .. max_len``, shortest first.

    There are ``Σ_{n=0}^{max_len} |alphabet|^n`` of them; more than ``max_size`` raises
    ``ValueError`` with the size (enumerate a smaller space, or use samples instead).
    """
    if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet must be a non-empty string of distinct characters, got {alphabet!r}")
    check_int("max_len", max_len, low=0)
    check_int("max_size", max_size, low=1)
    # count before building: the space grows as |alphabet|^max_len
    size = sum(len(alphabet) ** n for n in range(max_len + 1))
    if size > max_size:
        raise ValueError(f"the space of strings up to length {max_len} over {len(alphabet)} symbols has "
                         f"{size:,} members, more than max_size={max_size:,}; shorten max_len, shrink the "
                         "alphabet, or estimate from samples")
    return ["".join(t) for n in range(max_len + 1) for t in itertools.product(alphabet, repeat=n)]


def tiny_language(n: int, max_len: int = 5, alphabet: str = "abc", seed: int = 0) -> list[str]:
    """``n`` strings of a small formal language: a Markov chain over ``alphabet``.

    Each string starts with the first symbol with probability 1/2 (else uniform), then moves
    to the *next* symbol of the alphabet (cyclically) with probability 0.6, repeats with 0.2 and
    jumps elsewhere otherwise; after every symbol it stops with probability 0.3. Strings are cut
    at ``max_len``. A model trained on it prefers runs like ``abcab``.
    """
    rng = random.Random(seed)     # its own generator: the strings depend on ``seed`` alone
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
