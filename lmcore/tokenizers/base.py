"""The tokenizer interface every tokenizer in the book shares, in the spirit of minbpe (chapter 3).

A tokenizer maps text to a list of integer ids and back.  Subclasses implement ``train``,
``encode``, ``decode`` and the two halves of serialisation (``_state`` / ``_from_state``); the base
class owns the file format, so every tokenizer is saved and loaded the same, safe way: a JSON file
with a ``format`` tag and a ``version``, written atomically.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from .._io import atomic_write

__all__ = ["Tokenizer", "load_tokenizer"]

FORMAT_VERSION = 1
_REGISTRY: dict[str, type[Tokenizer]] = {}


class Tokenizer:
    """Base class: ``train`` / ``encode`` / ``decode`` / ``save`` / ``load``."""

    kind: ClassVar[str] = "base"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.kind] = cls

    # --- the interface subclasses implement -------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def train(self, text: str, *args: Any, **kwargs: Any) -> Tokenizer:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    # --- shared behaviour -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.vocab_size

    def _check_ids(self, ids: Any) -> list[int]:
        """Validate ids for ``decode``: integers in ``[0, vocab_size)``."""
        try:
            ids = [int(i) for i in ids.tolist()] if hasattr(ids, "tolist") else list(ids)
        except TypeError as e:
            raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}") from e
        for pos, i in enumerate(ids):
            if isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"ids[{pos}] = {i!r} is not an int")
            if not 0 <= i < self.vocab_size:
                raise ValueError(
                    f"ids[{pos}] = {i} is outside the vocabulary [0, {self.vocab_size}); "
                    "was it produced by a different tokenizer?"
                )
        return ids

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer to ``path`` (JSON) atomically and return the path."""
        path = Path(path)
        payload = {"format": "lmcore.tokenizer", "version": FORMAT_VERSION, "kind": self.kind,
                   "state": self._state()}
        with atomic_write(path, "w") as f:
            json.dump(payload, f, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a tokenizer saved by :meth:`save`; the file's ``kind`` must match ``cls``."""
        tok = load_tokenizer(path)
        if cls is not Tokenizer and not isinstance(tok, cls):
            raise ValueError(f"{path} holds a {tok.kind!r} tokenizer, not a {cls.kind!r} one; "
                             f"use lmcore.load_tokenizer to load any kind")
        return tok


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load any tokenizer written by ``Tokenizer.save``, checking format and version."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a tokenizer file written by lmcore (invalid JSON: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != "lmcore.tokenizer":
        raise ValueError(f"{path} is not a tokenizer file written by lmcore (no 'lmcore.tokenizer' tag)")
    if payload.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has tokenizer format version {payload.get('version')!r}; "
                         f"this lmcore reads version {FORMAT_VERSION}. Re-train or re-save it.")
    kind = payload.get("kind")
    if kind not in _REGISTRY:
        raise ValueError(f"{path} holds an unknown tokenizer kind {kind!r}; known: {sorted(_REGISTRY)}")
    if not isinstance(payload.get("state"), dict):
        raise ValueError(f"{path} has no tokenizer state; the file is corrupt or was edited")
    return _REGISTRY[kind]._from_state(payload["state"])
