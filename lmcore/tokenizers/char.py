"""A character-level tokenizer: one id per distinct character of the training text (chapters 1 and 3)."""
from __future__ import annotations

from typing import Any

from .base import Tokenizer

__all__ = ["CharTokenizer"]


class CharTokenizer(Tokenizer):
    """Ids are the sorted distinct characters of the training text.

    >>> tok = CharTokenizer().train("hello")
    >>> tok.decode(tok.encode("hole"))
    'hole'
    """

    kind = "char"

    def __init__(self, chars: str | None = None) -> None:
        self.chars: list[str] = []
        self.stoi: dict[str, int] = {}
        if chars:
            self.train(chars)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def train(self, text: str) -> CharTokenizer:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text is empty: a character tokenizer needs at least one character")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        return self

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
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
        return "".join(self.chars[i] for i in self._check_ids(ids))

    def _state(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars)}

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        chars = state.get("chars") if isinstance(state, dict) else None
        # ids are positions in the sorted vocabulary: a string that is not sorted and distinct
        # would silently renumber every id, so it is rejected rather than repaired
        if not isinstance(chars, str) or list(chars) != sorted(set(chars)):
            raise ValueError("the character tokenizer's state must hold 'chars', a string of distinct "
                             f"characters in sorted order, got {state!r:.80}; the file is corrupt or was edited")
        return cls(chars)
