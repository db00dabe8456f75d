"""A byte-level byte-pair-encoding (BPE) tokenizer (Gage 1994; Sennrich et al. 2016; GPT-2), chapter 3.

The base vocabulary is the 256 byte values, so any Unicode string can be encoded (as its UTF-8
bytes) and nothing is ever "unknown".  Training repeatedly replaces the most frequent adjacent pair
of tokens with a new token; the list of merges, in the order they were learned, *is* the model.

**Tie-breaking rule** (used by the fast trainer here and by the naive reference in the tests):
the pair with the highest count wins; among equal counts, the smallest pair of ids ``(a, b)`` in
lexicographic order.  A merge never crosses a pre-token boundary.

**Pre-splitting.** With ``pattern`` (default: the GPT-2 regular expression) the text is first cut
into pre-tokens (words with their leading space, runs of digits, punctuation, whitespace); merges
happen inside pre-tokens only.  ``pattern=None`` treats the whole text as one sequence.

**Encoding** applies the learned merges in the order they were learned (lowest rank first), not
by longest match: within each pre-token, the adjacent pair with the lowest merge rank is merged
everywhere (left to right), and this repeats until no adjacent pair is a learned merge.

**Special tokens** (e.g. ``<|endoftext|>``) get ids after the merges.  They are never produced from
user text by accident: by default ``encode`` treats a special token's string as plain text, and
only the names in ``allowed_special`` (or ``"all"``) are turned into their special id.  Training
text is cut at special tokens, so no merge spans one.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from typing import Any

import regex

from .base import Tokenizer

__all__ = ["BPETokenizer", "GPT2_PATTERN", "train_merges", "merge_pair"]

# GPT-2's pre-tokenizer (Radford et al. 2019): common English contractions, then letters, digits
# or other symbols each with an optional leading space, then runs of whitespace (a run before a
# word leaves its last space to the word).
GPT2_PATTERN = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

_CACHE_LIMIT = 100_000  # pre-tokens whose encoding is memoised per tokenizer


def merge_pair(ids: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace every occurrence of the pair (a, b) in ``ids`` by ``new``, scanning left to right."""
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer(Tokenizer):
    """Byte-level BPE: 256 byte tokens, then one token per learned merge, then special tokens.

    >>> tok = BPETokenizer().train("the car the cat the rat " * 10, vocab_size=260)
    >>> tok.decode(tok.encode("the cart"))
    'the cart'
    """

    kind = "bpe"

    def __init__(self, pattern: str | None = GPT2_PATTERN, special_tokens: Iterable[str] = (),
                 merges: Iterable[tuple[int, int]] = ()) -> None:
        """``merges`` lets you build a tokenizer from a known merge list (``train`` learns one)."""
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be a regex string or None, got {type(pattern).__name__}")
        self.pattern = pattern
        self._regex = regex.compile(pattern) if pattern is not None else None
        self.merges: list[tuple[int, int]] = []   # merges[r] creates token 256 + r
        for r, m in enumerate(merges):
            pair = list(m) if isinstance(m, (list, tuple)) else m
            ok = (isinstance(pair, list) and len(pair) == 2
                  and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 256 + r for i in pair))
            if not ok:
                raise ValueError(f"merge {r} is {pair!r}, expected a pair of ids of existing tokens "
                                 f"(each < {256 + r})")
            self.merges.append((pair[0], pair[1]))
        self._set_special(special_tokens)
        self._rebuild()

    # --- vocabulary bookkeeping ------------------------------------------------------------------
    def _set_special(self, special_tokens: Iterable[str]) -> None:
        if isinstance(special_tokens, str):
            raise TypeError("special_tokens must be a collection of strings, e.g. ['<|endoftext|>'], "
                            "not a single str")
        names = list(dict.fromkeys(special_tokens))
        for s in names:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
        self._special_names = names

    def _rebuild(self) -> None:
        """Derive the lookup tables from ``merges`` and the special-token names."""
        self.vocab: list[bytes] = [bytes([i]) for i in range(256)]
        self.ranks: dict[tuple[int, int], int] = {}
        for r, (a, b) in enumerate(self.merges):
            self.ranks[(a, b)] = r
            self.vocab.append(self.vocab[a] + self.vocab[b])
        base = len(self.vocab)
        self.special_tokens: dict[str, int] = {s: base + i for i, s in enumerate(self._special_names)}
        self._special_ids = {i: s for s, i in self.special_tokens.items()}
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges) + len(self.special_tokens)

    def token_bytes(self, i: int) -> bytes:
        """The bytes token ``i`` stands for (a special token: its UTF-8 name)."""
        i = self._check_ids([i])[0]
        return self._special_ids[i].encode("utf-8") if i in self._special_ids else self.vocab[i]

    # --- training -------------------------------------------------------------------------------
    def _pretokens(self, text: str) -> list[str]:
        return self._regex.findall(text) if self._regex is not None else ([text] if text else [])

    def _split_special(self, text: str, allowed: Collection[str]) -> list[tuple[str, bool]]:
        """Cut ``text`` at occurrences of the ``allowed`` special tokens: (piece, is_special)."""
        if not allowed:
            return [(text, False)]
        # longest names first, so a special token that contains another one wins
        alt = "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True))
        parts = regex.split(f"({alt})", text)
        return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]

    def train(self, text: str, vocab_size: int, *, verbose: bool = False) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``; returns ``self``.

        Fast: identical pre-tokens are counted once (a Counter), pair counts are kept up to date
        incrementally when a merge rewrites the pre-tokens that contain it, and the next pair comes
        from a max-heap with lazy deletion (stale entries are skipped when popped).  Training stops
        early if no pair is left to merge (every pre-token is a single token).
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        n_special = len(self._special_names)
        if vocab_size < 256 + n_special:
            raise ValueError(f"vocab_size must be at least 256 (the byte tokens) + {n_special} "
                             f"special tokens = {256 + n_special}, got {vocab_size}")
        if not text:
            raise ValueError("text is empty: BPE needs training text to count pairs in")
        words, counts = self._word_counts(text)
        self.merges = train_merges(words, counts, vocab_size - 256 - n_special, verbose=verbose)
        self._rebuild()
        return self

    def _word_counts(self, text: str) -> tuple[list[list[int]], list[int]]:
        """The distinct pre-tokens of ``text`` as byte-id lists, with how often each occurs."""
        freq: Counter[str] = Counter()
        for piece, _ in self._split_special(text, self._special_names):
            if piece not in self.special_tokens:  # special tokens are not training text
                freq.update(self._pretokens(piece))
        words = [list(w.encode("utf-8")) for w in freq]
        return words, list(freq.values())

    # --- encoding / decoding ------------------------------------------------------------------------
    def _encode_chunk(self, chunk: str) -> list[int]:
        """Apply the merges, lowest rank first, to one pre-token (memoised)."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(chunk.encode("utf-8"))
        ranks = self.ranks
        while len(ids) >= 2:
            # the adjacent pair learned earliest; pairs that are not merges rank "infinitely" late
            pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, len(ranks)))
            r = ranks.get(pair)
            if r is None:
                break
            ids = merge_pair(ids, pair[0], pair[1], 256 + r)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[chunk] = ids
        return ids

    def encode(self, text: str, allowed_special: Collection[str] | str = ()) -> list[int]:
        """Token ids of ``text``.

        ``allowed_special``: which special tokens may appear in ``text`` as themselves: a
        collection of names, or ``"all"``.  By default none is: a string such as
        ``"<|endoftext|>"`` in user text is encoded as ordinary bytes, so text can never inject a
        control token; ``decode`` still gives back the exact string.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if allowed_special == "all":
            allowed: Collection[str] = self._special_names
        elif isinstance(allowed_special, str):
            raise ValueError(f"allowed_special must be 'all' or a collection of special-token names, "
                             f"got the string {allowed_special!r}; wrap one name in a set: {{...}}")
        else:
            allowed = list(allowed_special)
            unknown = [s for s in allowed if s not in self.special_tokens]
            if unknown:
                raise ValueError(f"allowed_special names unknown special tokens {unknown}; this "
                                 f"tokenizer's special tokens are {self._special_names}")
        ids: list[int] = []
        for piece, special in self._split_special(text, allowed):
            if special:
                ids.append(self.special_tokens[piece])
            else:
                for chunk in self._pretokens(piece):
                    ids.extend(self._encode_chunk(chunk))
        return ids

    def decode_bytes(self, ids: Any) -> bytes:
        """The bytes the ids stand for (special tokens as their UTF-8 names)."""
        vocab, special = self.vocab, self._special_ids
        return b"".join(special[i].encode("utf-8") if i in special else vocab[i]
                        for i in self._check_ids(ids))

    def decode(self, ids: Any) -> str:
        """The text of ``ids``.  A sequence that cuts a multi-byte character in half (possible for
        arbitrary ids, never for the output of ``encode``) shows U+FFFD for the broken bytes."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # --- serialisation ---------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "merges": [list(m) for m in self.merges],
                "special_tokens": list(self._special_names)}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> BPETokenizer:
        try:
            pattern, merges, special = state["pattern"], state["merges"], state["special_tokens"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"corrupt BPE tokenizer file: missing field {e}") from None
        try:
            return cls(pattern=pattern, special_tokens=special, merges=merges)
        except (TypeError, ValueError) as e:
            raise ValueError(f"corrupt BPE tokenizer file: {e}") from None

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self._special_names}, "
                f"pattern={'GPT-2' if self.pattern == GPT2_PATTERN else self.pattern!r})")


def train_merges(words: list[list[int]], counts: list[int], num_merges: int,
                 verbose: bool = False) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` BPE merges from distinct pre-tokens ``words`` with ``counts``.

    ``words[i]`` is a list of byte ids (it is rewritten in place) and occurs ``counts[i]`` times.
    Returns the merges in the order learned; merge ``r`` creates token ``256 + r``.  Ties: highest
    count, then the smallest pair ``(a, b)``.

    The bookkeeping: ``pair_count[p]`` is the number of occurrences of pair ``p`` in the corpus,
    ``where[p]`` the indices of words that contained ``p`` at some point (it may hold stale
    indices, harmless: rewriting a word without ``p`` is a no-op), and ``heap`` holds
    ``(-count, a, b)`` entries, some stale; an entry is valid only if its count is current.
    """
    pair_count: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (w, c) in enumerate(zip(words, counts)):
        for p in zip(w, w[1:]):
            pair_count[p] += c
            where[p].add(wi)
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges and heap:
        neg, a, b = heapq.heappop(heap)
        if pair_count.get((a, b), 0) != -neg or neg == 0:
            continue  # stale entry: the count changed after it was pushed
        new = 256 + len(merges)
        merges.append((a, b))
        changed: set[tuple[int, int]] = set()
        for wi in where.pop((a, b)):
            w, c = words[wi], counts[wi]
            if len(w) < 2:
                continue
            merged = merge_pair(w, a, b, new)
            if len(merged) == len(w):
                continue
            # take the old word's pairs out and the new word's pairs in; only pairs next to a
            # merge change, but recounting one short word is as cheap as finding them
            for p in zip(w, w[1:]):
                pair_count[p] -= c
                changed.add(p)
            for p in zip(merged, merged[1:]):
                pair_count[p] += c
                changed.add(p)
                where[p].add(wi)
            words[wi] = merged
        del pair_count[(a, b)]
        changed.discard((a, b))
        for p in changed:
            cnt = pair_count[p]
            if cnt > 0:
                heapq.heappush(heap, (-cnt, p[0], p[1]))
            else:
                del pair_count[p]
        if verbose and len(merges) % 100 == 0:
            print(f"merge {len(merges)}/{num_merges}: {(a, b)} -> {new} (count {-neg})")
    return merges
