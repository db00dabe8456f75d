"""A character-level tokenizer: one id per distinct character of the training text (chapters 1 and 3).

**Special tokens** (chapter 10): ``CharTokenizer(chars, special_tokens=["<|im_end|>"])`` appends one
reserved id per name after the character ids, so every character keeps its id and a model trained
with the plain tokenizer reads the same ids.  Text never produces a special id: ``encode`` spells
every character out (and refuses ``<`` if it is not a vocabulary character); only code that asks
for ``special_tokens[name]``, such as ``lmcore.alignment.ChatTemplate``, writes one.  ``decode``
turns a special id back into its name.  A tokenizer without special tokens saves exactly the
file it always did.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._checks import ArgumentTypeError
from .base import Tokenizer

__all__ = ["CharTokenizer"]


class CharTokenizer(Tokenizer):
    """Ids are the sorted distinct characters of the training text.

    ``CharTokenizer(chars)`` is ``CharTokenizer().train(chars)``: ``chars`` is a non-empty str, and
    each of its characters is one vocabulary entry.

    >>> tok = CharTokenizer().train("hello")
    >>> tok.decode(tok.encode("hole"))
    'hole'
    """

    kind = "char"

    def __init__(self, chars: str | None = None, special_tokens: Iterable[str] = ()) -> None:
        self.chars: list[str] = []
        self.stoi: dict[str, int] = {}
        #: name -> id of each special token, ids ``len(chars), len(chars) + 1, ...`` in the order given
        self.special_tokens: dict[str, int] = {}
        self._special_ids: dict[int, str] = {}
        if isinstance(special_tokens, (str, bytes)) or not isinstance(special_tokens, Iterable):
            raise ArgumentTypeError("special_tokens must be a list of strings, e.g. ['<|im_end|>'], "
                                    f"got {type(special_tokens).__name__}")
        self._special_names = list(special_tokens)
        for s in self._special_names:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special_tokens must be non-empty strings, got {s!r}")
            if self._special_names.count(s) > 1:
                raise ValueError(f"special_tokens names {s!r} twice")
        if chars is not None:
            # a list such as ['ab', 'c'] is refused: a vocabulary entry is one character, and a
            # multi-character entry would not survive save / load (the file stores one string)
            if not isinstance(chars, str):
                raise ArgumentTypeError(f"chars must be a str whose characters form the vocabulary, "
                                        f"e.g. 'abc', got {type(chars).__name__}")
            if not chars:
                raise ValueError("chars is empty: give at least one character, or use CharTokenizer() "
                                 "and train it")
            self.train(chars)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self.special_tokens)

    def _set_special_ids(self) -> None:
        # a one-character name equal to a vocabulary character would decode to that character and
        # re-encode as the character's id: refuse it rather than make decode ambiguous
        clash = next((s for s in self._special_names if s in self.stoi), None)
        if clash is not None:
            raise ValueError(f"the special token {clash!r} is also a character of the vocabulary; "
                             "name special tokens with strings that are not single vocabulary characters")
        self.special_tokens = {s: len(self.chars) + i for i, s in enumerate(self._special_names)}
        self._special_ids = {i: s for s, i in self.special_tokens.items()}

    def train(self, text: str) -> CharTokenizer:
        """Make the vocabulary the sorted distinct characters of ``text`` (a non-empty str); returns ``self``."""
        if not isinstance(text, str):
            raise ArgumentTypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text is empty: a character tokenizer needs at least one character")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self._set_special_ids()
        return self

    def encode(self, text: str) -> list[int]:
        """One id per character of ``text``; a character not in the vocabulary is a ``ValueError``."""
        if not isinstance(text, str):
            raise ArgumentTypeError(f"text must be a str, got {type(text).__name__}")
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in stoi)
            raise ValueError(
                f"character {text[pos]!r} (U+{ord(text[pos]):04X}) at position {pos} is not in the "
                f"vocabulary of {self.vocab_size} characters; train the tokenizer on text that "
                "contains it, or use a byte-level BPE tokenizer"
            ) from None

    def decode(self, ids: Any) -> str:
        """The text of ``ids``: a list or tuple of ints, or a 1-D integer array or tensor.  A special
        token's id decodes to its name."""
        chars, n = self.chars, len(self.chars)
        return "".join(chars[i] if i < n else self._special_ids[i] for i in self._check_ids(ids))

    def _state(self) -> dict[str, Any]:
        if not self.chars:
            raise ValueError("this CharTokenizer is not trained (no vocabulary); train it before saving")
        state: dict[str, Any] = {"chars": "".join(self.chars)}
        if self.special_tokens:      # only then: a plain tokenizer's file stays byte-identical
            state["special_tokens"] = list(self._special_names)
        return state

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        if set(state) not in ({"chars"}, {"chars", "special_tokens"}):
            raise ValueError(f"the state must have exactly the field 'chars' (and optionally 'special_tokens'), "
                             f"got {sorted(state)}")
        special = state.get("special_tokens", [])
        if not isinstance(special, list) or not special and "special_tokens" in state:
            raise ValueError(f"'special_tokens' must be a non-empty list of names, got {special!r:.80}")
        chars = state["chars"]
        # ids are positions in the sorted vocabulary: a string that is not sorted and distinct
        # would silently renumber every id, so it is rejected rather than repaired
        if not isinstance(chars, str) or not chars or list(chars) != sorted(set(chars)):
            raise ValueError("'chars' must be a non-empty string of distinct characters in sorted order, "
                             f"got {chars!r:.80}")
        return cls(chars, special_tokens=special)
