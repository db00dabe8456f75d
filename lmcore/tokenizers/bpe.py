"""A byte-level byte-pair-encoding (BPE) tokenizer (Gage 1994; Sennrich et al. 2016; GPT-2), chapter 3.

The base vocabulary is the 256 byte values, so any Unicode string can be encoded (as its UTF-8
bytes) and nothing is ever "unknown".  Training repeatedly replaces the most frequent adjacent pair
of tokens with a new token; the list of merges, in the order they were learned, *is* the model.

**Tie-breaking rule** (used by the fast trainer here and by the naive reference in the tests):
the pair with the highest count wins; among equal counts, the smallest pair of ids ``(a, b)`` in
lexicographic order.  A merge never crosses a pre-token boundary.

**Pre-splitting.** With ``pattern`` (default: the GPT-2 regular expression) the text is first cut
into pre-tokens (words with their leading space, runs of digits, punctuation, whitespace); merges
happen inside pre-tokens only.  ``pattern=None`` treats the whole text as one sequence.  Text that a
custom pattern does not match is kept as pre-tokens of its own (each maximal unmatched stretch), so
``decode(encode(text)) == text`` holds for every pattern; the built-in patterns match all text.

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

from .._checks import ArgumentTypeError, check_int, check_token_ids
from .base import Tokenizer

__all__ = ["BPETokenizer", "GPT2_PATTERN", "GPT4_PATTERN", "train_merges", "merge_pair"]

# GPT-2's pre-tokenizer (Radford et al. 2019): common English contractions, then letters, digits
# or other symbols each with an optional leading space, then runs of whitespace (a run before a
# word leaves its last space to the word).
GPT2_PATTERN = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
# GPT-4's (tiktoken's cl100k_base): contractions in any case, a letter run with at most one leading
# non-letter, digits in groups of at most three, punctuation with the newlines that follow it.
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
                r"""|\s*[\r\n]|\s+(?!\S)|\s+""")
# the patterns a tokenizer file may name without trust_pattern=True (see load_tokenizer)
_BUILTIN_PATTERNS = (GPT2_PATTERN, GPT4_PATTERN, None)

_CACHE_LIMIT = 100_000  # pre-tokens whose encoding is memoised per tokenizer


def merge_pair(ids: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace every occurrence of the pair (a, b) in ``ids`` (a list of non-negative ints) by ``new``,
    scanning left to right."""
    if not isinstance(ids, (list, tuple)):
        raise ArgumentTypeError(f"ids must be a list of token ids, got {type(ids).__name__}")
    check_token_ids("ids", ids)
    return _merge_pair(ids, check_int("a", a, low=0), check_int("b", b, low=0), check_int("new", new, low=0))


def _merge_pair(ids: list[int], a: int, b: int, new: int) -> list[int]:
    """``merge_pair`` without the argument checks, for the inner loops of training and encoding."""
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
        """``pattern``: a regular expression (``regex`` module syntax) that cannot match the empty
        string, or None.  ``special_tokens``: distinct non-empty names.  ``merges`` lets you build a
        tokenizer from a known merge list (``train`` learns one): merge ``r`` is a pair of ids of
        existing tokens (each < 256 + r), no pair twice."""
        self.pattern = pattern
        self._regex = _compile(pattern)
        if isinstance(merges, (str, bytes)) or not isinstance(merges, Iterable):
            raise ArgumentTypeError(f"merges must be a list of (a, b) pairs of token ids, got {type(merges).__name__}")
        self.merges: list[tuple[int, int]] = []   # merges[r] creates token 256 + r
        seen: set[tuple[int, int]] = set()
        for r, m in enumerate(merges):
            pair = list(m) if isinstance(m, (list, tuple)) else m
            ok = (isinstance(pair, list) and len(pair) == 2
                  and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 256 + r for i in pair))
            if not ok:
                raise ValueError(f"merge {r} is {pair!r}, expected a pair of ids of existing tokens "
                                 f"(each < {256 + r})")
            # a pair learned twice would take the later rank and change how text is encoded
            if (pair[0], pair[1]) in seen:
                raise ValueError(f"merge {r} is {pair!r}, a pair that an earlier merge already joins")
            seen.add((pair[0], pair[1]))
            self.merges.append((pair[0], pair[1]))
        self._set_special(special_tokens)
        self._rebuild()

    # --- vocabulary bookkeeping ------------------------------------------------------------------
    def _set_special(self, special_tokens: Iterable[str]) -> None:
        if isinstance(special_tokens, (str, bytes)) or not isinstance(special_tokens, Iterable):
            raise ArgumentTypeError("special_tokens must be a collection of strings, e.g. ['<|endoftext|>'], "
                                    f"got {type(special_tokens).__name__}")
        names = list(special_tokens)
        for s in names:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special_tokens must be non-empty strings, got {s!r}")
            _utf8(s, "special_tokens")
            if names.count(s) > 1:   # each name gets one id: a repeat is a mistake, not a second token
                raise ValueError(f"special_tokens names {s!r} twice")
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
        i = check_int("i", i, low=0, high=self.vocab_size - 1)
        return self._special_ids[i].encode("utf-8") if i in self._special_ids else self.vocab[i]

    # --- training -------------------------------------------------------------------------------
    def _pretokens(self, text: str) -> list[str]:
        """``text`` cut into the pattern's matches and, between them, the stretches it does not match."""
        if self._regex is None:
            return [text] if text else []
        chunks: list[str] = []
        end = 0
        for m in self._regex.finditer(text):
            start, stop = m.span()
            if start > end:
                chunks.append(text[end:start])   # unmatched text is kept, so nothing is lost
            if stop > start:                     # an empty match holds no text
                chunks.append(text[start:stop])
            end = stop
        if end < len(text):
            chunks.append(text[end:])
        return chunks

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
            raise ArgumentTypeError(f"text must be a str, got {type(text).__name__}")
        vocab_size = check_int("vocab_size", vocab_size)
        if not isinstance(verbose, bool):
            raise ArgumentTypeError(f"verbose must be a bool, got {verbose!r}")
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
        words = [list(_utf8(w, "text")) for w in freq]
        return words, list(freq.values())

    # --- encoding / decoding ------------------------------------------------------------------------
    def _encode_chunk(self, chunk: str) -> list[int]:
        """Apply the merges, lowest rank first, to one pre-token (memoised)."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(_utf8(chunk, "text"))
        ranks = self.ranks
        while len(ids) >= 2:
            # the adjacent pair learned earliest; pairs that are not merges rank "infinitely" late
            pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, len(ranks)))
            r = ranks.get(pair)
            if r is None:
                break
            ids = _merge_pair(ids, pair[0], pair[1], 256 + r)
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
            raise ArgumentTypeError(f"text must be a str, got {type(text).__name__}")
        if allowed_special == "all":
            allowed: Collection[str] = self._special_names
        elif isinstance(allowed_special, str):
            raise ValueError(f"allowed_special must be 'all' or a collection of special-token names, "
                             f"got the string {allowed_special!r}; wrap one name in a set: {{...}}")
        elif not isinstance(allowed_special, Collection):
            raise ArgumentTypeError(f"allowed_special must be 'all' or a collection of special-token names, "
                                    f"got {allowed_special!r}")
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
        fields = ["merges", "pattern", "special_tokens"]
        if sorted(state) != fields:
            raise ValueError(f"the state must have exactly the fields {fields}, got {sorted(state)}")
        if not isinstance(state["merges"], list) or not isinstance(state["special_tokens"], list):
            raise ValueError("'merges' and 'special_tokens' must be lists")
        # the constructor checks the rest: merge ids in range and in order, no pair twice, distinct
        # special-token names, a pattern that compiles and cannot match the empty string
        return cls(pattern=state["pattern"], special_tokens=state["special_tokens"], merges=state["merges"])

    def _custom_pattern(self) -> str | None:
        return None if self.pattern in _BUILTIN_PATTERNS else self.pattern

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self._special_names}, "
                f"pattern={'GPT-2' if self.pattern == GPT2_PATTERN else self.pattern!r})")


def _compile(pattern: str | None) -> regex.Pattern[str] | None:
    """The compiled pre-tokenizer ``pattern``; a clear error for one that is not a usable regex."""
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise ArgumentTypeError(f"pattern must be a regex string or None, got {type(pattern).__name__}")
    try:
        compiled = regex.compile(pattern)
    except regex.error as e:
        raise ValueError(f"pattern {pattern!r:.80} is not a valid regular expression: {e}") from None
    # "" or r"\s*" cuts the text into single characters (or nothing): almost always a mistake
    if compiled.fullmatch("") is not None:
        raise ValueError(f"pattern {pattern!r:.80} matches the empty string; a pre-token is at least one "
                         "character (use + rather than *), or pass pattern=None for no pre-splitting")
    return compiled


def _utf8(text: str, name: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate, which has none, is a ``ValueError`` naming argument ``name``."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} holds the lone surrogate U+{ord(text[e.start]):04X} (in {text!r:.40}), which "
                         "has no UTF-8 encoding; decode the source with errors='replace'") from None


def train_merges(words: list[list[int]], counts: list[int], num_merges: int,
                 verbose: bool = False) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` BPE merges from distinct pre-tokens ``words`` with ``counts``.

    ``words[i]`` is a list of byte ids, ints in ``[0, 256)`` (it is rewritten in place), and occurs
    ``counts[i]`` times, an int >= 1.  Returns the merges in the order learned; merge ``r`` creates
    token ``256 + r``.  Ties: highest count, then the smallest pair ``(a, b)``.

    The bookkeeping: ``pair_count[p]`` is the number of occurrences of pair ``p`` in the corpus,
    ``where[p]`` the indices of words that contained ``p`` at some point (it may hold stale
    indices, harmless: rewriting a word without ``p`` is a no-op), and ``heap`` holds
    ``(-count, a, b)`` entries, some stale; an entry is valid only if its count is current.
    """
    num_merges = check_int("num_merges", num_merges, low=0)
    if not isinstance(verbose, bool):
        raise ArgumentTypeError(f"verbose must be a bool, got {verbose!r}")
    if not isinstance(words, list) or not isinstance(counts, list):
        raise ArgumentTypeError(f"words and counts must be lists, got {type(words).__name__} and "
                                f"{type(counts).__name__}")
    if len(words) != len(counts):
        raise ValueError(f"counts must give one count per word: {len(counts)} counts for {len(words)} words")
    # ids >= 256 would be a word already rewritten by earlier merges, whose numbering this run repeats
    bad = next((wi for wi, w in enumerate(words)
                if not isinstance(w, list) or not all(type(i) is int and 0 <= i < 256 for i in w)), None)
    if bad is not None:
        raise ValueError(f"words[{bad}] must be a list of byte ids (ints in [0, 256)), got {words[bad]!r:.80}")
    bad = next((i for i, c in enumerate(counts) if type(c) is not int or c < 1), None)
    if bad is not None:
        raise ValueError(f"counts[{bad}] must be an int >= 1 (how often the word occurs), got {counts[bad]!r}")
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
            merged = _merge_pair(w, a, b, new)
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
