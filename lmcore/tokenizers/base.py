"""The tokenizer interface every tokenizer in the book shares, in the spirit of minbpe (chapter 3).

A tokenizer maps text to a list of integer ids and back.  Subclasses implement ``train``,
``encode``, ``decode`` and the two halves of serialisation (``_state`` / ``_from_state``); the base
class owns the file format, so every tokenizer is saved and loaded the same, safe way.

**The file** (``FORMAT_VERSION`` 2) is one JSON object, written atomically::

    {"format": "lmcore.tokenizer", "version": 2, "kind": "bpe", "state": {...}, "sha256": "..."}

``sha256`` is the hex digest of the canonical serialisation of everything else (``_canonical``:
sorted keys, no spaces, ASCII).  ``load_tokenizer`` recomputes it, so a file changed by a flipped
bit or a hand edit is refused instead of loading as a different tokenizer; then it checks the
structure (field types, merge ids, vocabulary), so a file edited *and* re-checksummed must still
describe a consistent tokenizer.

**Version 1** files (no ``sha256``, written before the checksum existed; the model zoo ships two)
cannot detect their own corruption, so they are read only when the caller vouches for the exact
bytes with ``load_tokenizer(path, sha256=...)``, as the zoo does from its manifest.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .._checks import ArgumentTypeError, check_token_ids
from .._io import atomic_write

__all__ = ["Tokenizer", "load_tokenizer"]

FORMAT = "lmcore.tokenizer"
FORMAT_VERSION = 2
LEGACY_VERSION = 1          # no embedded checksum: readable only with a caller-given sha256
_REGISTRY: dict[str, type[Tokenizer]] = {}
_REMEDY = ("Re-save the tokenizer from the run that trained it (tokenizer.save(path)) or retrain it; "
           "for a model shipped with lmcore, reinstall lmcore.")


def _canonical(content: dict[str, Any]) -> bytes:
    """The bytes the embedded checksum covers: ``content`` serialised one way only."""
    return json.dumps(content, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


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
        """Rebuild a tokenizer from ``state``; raise ``ValueError`` / ``TypeError`` for any inconsistency."""
        raise NotImplementedError

    def _custom_pattern(self) -> str | None:
        """The regular expression this tokenizer runs that is not a built-in one, or None."""
        return None

    # --- shared behaviour -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.vocab_size

    def _check_ids(self, ids: Any) -> list[int]:
        """``ids`` for ``decode`` as Python ints: a list or tuple of ints, or a 1-D integer array or
        tensor, every id in ``[0, vocab_size)``.  Floats and bools are refused, never truncated."""
        # the common case, a list of Python ints, is checked without building a tensor (decode runs
        # on whole corpora); check_token_ids then only words the error
        if isinstance(ids, list) and all(type(i) is int for i in ids):
            if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
                check_token_ids("ids", ids, self.vocab_size)
            return ids
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu()   # so that check_token_ids checks the range on any device
        check_token_ids("ids", ids, self.vocab_size)
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            if ids.ndim != 1:
                raise ValueError(f"ids must be one sequence (1-D), got shape {tuple(ids.shape)}; decode each row")
            return [int(i) for i in ids.tolist()]
        return [int(i) for i in ids]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer to ``path`` (JSON, with its checksum) atomically and return the path."""
        path = _check_path(path)
        content = {"format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind, "state": self._state()}
        payload = {**content, "sha256": hashlib.sha256(_canonical(content)).hexdigest()}
        with atomic_write(path, "w") as f:
            # ASCII: every Python string survives the file (even a lone surrogate)
            json.dump(payload, f, ensure_ascii=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, sha256: str | None = None, trust_pattern: bool = False) -> Tokenizer:
        """Load a tokenizer saved by :meth:`save`; the file's ``kind`` must match ``cls``.
        ``sha256`` and ``trust_pattern``: see :func:`load_tokenizer`."""
        tok = load_tokenizer(path, sha256=sha256, trust_pattern=trust_pattern)
        if cls is not Tokenizer and not isinstance(tok, cls):
            raise ValueError(f"{path} holds a {tok.kind!r} tokenizer, not a {cls.kind!r} one; "
                             f"use lmcore.load_tokenizer to load any kind")
        return tok


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:   # json.loads would keep the last one silently
        raise ValueError(f"the key {dup!r} occurs twice")
    return dict(pairs)


def load_tokenizer(path: str | os.PathLike, *, sha256: str | None = None, trust_pattern: bool = False) -> Tokenizer:
    """Load any tokenizer written by ``Tokenizer.save``; every check failure is a ``ValueError``
    naming the file.

    - The embedded checksum must match the content (format version 2).
    - ``sha256``: the hex sha256 of the whole file, from a source you trust (a manifest).  If given,
      the file's bytes must match it.  It is *required* for a version-1 file, which has no checksum
      of its own (see the module docstring).
    - The structure is then validated (types, merge ids in range and order, distinct characters).
    - ``trust_pattern``: a BPE file's pre-tokenizer pattern must be ``GPT2_PATTERN``,
      ``GPT4_PATTERN`` or ``None`` unless this is True.  A regular expression is code: one such as
      ``(a|aa)+$|.`` takes seconds per short prompt (catastrophic backtracking), so a file may not
      bring its own unless you say you trust it.
    """
    path = _check_path(path)
    if sha256 is not None and not isinstance(sha256, str):
        raise ArgumentTypeError(f"sha256 must be None or a 64-character hex digest, got {sha256!r}")
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower())):
        raise ValueError(f"sha256 must be None or a 64-character hex digest, got {sha256!r}")
    if not isinstance(trust_pattern, bool):
        raise ArgumentTypeError(f"trust_pattern must be a bool, got {trust_pattern!r}")
    raw = path.read_bytes()   # one read: the bytes checked are the bytes parsed
    actual = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and actual != sha256.lower():
        raise ValueError(f"{path} fails the checksum it was loaded with: sha256 {actual[:16]}..., expected "
                         f"{sha256[:16]}... The file is corrupt or was changed. {_REMEDY}")
    try:
        payload = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as e:   # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not a tokenizer file written by lmcore (invalid JSON: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tokenizer file written by lmcore (no {FORMAT!r} tag)")
    version = payload.get("version")
    if type(version) is not int or version not in (LEGACY_VERSION, FORMAT_VERSION):
        raise ValueError(f"{path} has tokenizer format version {version!r}; this lmcore reads versions "
                         f"{LEGACY_VERSION} and {FORMAT_VERSION}. {_REMEDY}")
    fields = {"format", "version", "kind", "state"} | ({"sha256"} if version == FORMAT_VERSION else set())
    if set(payload) != fields:
        raise ValueError(f"{path} has the fields {sorted(payload)}, a version-{version} tokenizer file has "
                         f"{sorted(fields)}; the file is corrupt or was edited. {_REMEDY}")
    if version == FORMAT_VERSION:
        content = {k: v for k, v in payload.items() if k != "sha256"}
        if payload["sha256"] != hashlib.sha256(_canonical(content)).hexdigest():
            raise ValueError(f"{path} fails its embedded checksum: the file is corrupt or was edited. {_REMEDY}")
    elif sha256 is None:
        raise ValueError(f"{path} is a version-{LEGACY_VERSION} tokenizer file: it has no checksum, so corruption "
                         "in it cannot be detected. Load it with load_tokenizer(path, sha256=...), giving the "
                         "file's sha256 from a source you trust, then save() it again as a version-"
                         f"{FORMAT_VERSION} file; or retrain it.")
    kind = payload["kind"]
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise ValueError(f"{path} holds an unknown tokenizer kind {kind!r}; known: {sorted(_REGISTRY)}")
    if not isinstance(payload["state"], dict):
        raise ValueError(f"{path} has no tokenizer state; the file is corrupt or was edited. {_REMEDY}")
    try:
        tok = _REGISTRY[kind]._from_state(payload["state"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} does not describe a consistent {kind!r} tokenizer: {e}. {_REMEDY}") from None
    pattern = tok._custom_pattern()
    if pattern is not None and not trust_pattern:
        raise ValueError(f"{path} brings its own pre-tokenizer pattern {pattern!r:.120}, not a built-in one. A "
                         "pattern is code that runs on every text encoded, and a pathological one can take "
                         "seconds per prompt; if you trust this file, load it with trust_pattern=True.")
    return tok
