"""A character-level tokenizer: one id per distinct character of the training text (chapters 1 and 3)."""
from __future__ import annotations

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

    def __init__(self, chars: str | None = None) -> None:
        self.chars: list[str] = []
        self.stoi: dict[str, int] = {}
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
        return len(self.chars)

    def train(self, text: str) -> CharTokenizer:
        """Make the vocabulary the sorted distinct characters of ``text`` (a non-empty str); returns ``self``."""
        if not isinstance(text, str):
            raise ArgumentTypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text is empty: a character tokenizer needs at least one character")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
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
        """The text of ``ids``: a list or tuple of ints, or a 1-D integer array or tensor."""
        chars = self.chars
        return "".join(chars[i] for i in self._check_ids(ids))

    def _state(self) -> dict[str, Any]:
        if not self.chars:
            raise ValueError("this CharTokenizer is not trained (no vocabulary); train it before saving")
        return {"chars": "".join(self.chars)}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        if set(state) != {"chars"}:
            raise ValueError(f"the state must have exactly the field 'chars', got {sorted(state)}")
        chars = state["chars"]
        # ids are positions in the sorted vocabulary: a string that is not sorted and distinct
        # would silently renumber every id, so it is rejected rather than repaired
        if not isinstance(chars, str) or not chars or list(chars) != sorted(set(chars)):
            raise ValueError("'chars' must be a non-empty string of distinct characters in sorted order, "
                             f"got {chars!r:.80}")
        return cls(chars)
