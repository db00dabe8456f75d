"""Token streams for the Trainer (chapter 4), and streams too big for memory (chapter 9, scale).

A corpus the size of OpenWebText is 9 billion GPT-2 tokens: 72 GB as int64, 18 GB as ``uint16``
(GPT-2's 50,257 ids fit in 16 bits).  :func:`prepare_corpus` (``python -m lmcore prepare``)
tokenizes a corpus once into ``train.bin`` and ``val.bin`` of ``uint16`` ids, as nanoGPT does, with
a ``manifest.json`` that records each file's sha256; :func:`open_prepared` checks the files against
it and opens them as ``np.memmap``, which stay on disk: the Trainer reads only the windows it draws,
and only those become int64 (:func:`lmcore.data.get_batch`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .._io import atomic_write, sha256_file
from ..models import GPT
from ..tokenizers import Tokenizer, load_tokenizer
from .config import TrainConfig

__all__ = ["STREAM_DTYPES", "check_stream", "window_length", "prepare_corpus", "open_prepared", "Prepared",
           "MANIFEST", "PREPARED_FORMAT"]

#: the integer dtypes a token stream may have (tensors or NumPy arrays)
STREAM_DTYPES = ("int64", "int32", "int16", "uint16", "uint8")
MANIFEST = "manifest.json"
PREPARED_FORMAT = "lmcore.prepared"
_SPLITS = ("train", "val")


def window_length(model: nn.Module, config: TrainConfig) -> int | None:
    """The training window: ``config.seq_len``, by default a GPT's whole context (None: only a
    ``batch_fn`` can feed this model, since it has no context length to cut windows by)."""
    limit = model.config.context_length if isinstance(model, GPT) else None
    if config.seq_len is None:
        return limit
    if limit is not None and config.seq_len > limit:
        raise ValueError(f"TrainConfig.seq_len={config.seq_len} exceeds the model's context_length="
                         f"{limit}; lower it or build a model with a longer context")
    return config.seq_len


def check_stream(data: Any, name: str, seq_len: int | None, model: nn.Module) -> torch.Tensor | np.ndarray:
    """``data`` as the Trainer keeps it: a NumPy array (an ``np.memmap`` stays one, on disk) or a
    tensor, in its own dtype (one of :data:`STREAM_DTYPES`), never copied to int64."""
    if not isinstance(data, np.ndarray):
        data = torch.as_tensor(data)
    dtype = str(data.dtype).removeprefix("torch.")
    if data.ndim != 1 or dtype not in STREAM_DTYPES:
        raise ValueError(f"{name} must be a 1-D integer token tensor or array ({', '.join(STREAM_DTYPES)}), "
                         f"got shape {tuple(data.shape)} dtype {data.dtype}")
    if seq_len is None:
        raise ValueError(f"set TrainConfig.seq_len (tokens per training window): a {type(model).__name__} "
                         "has no context_length to default to")
    if len(data) <= seq_len:
        raise ValueError(f"{name} has {len(data)} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    return data


@dataclass(frozen=True)
class Prepared:
    """A prepared corpus opened by :func:`open_prepared`: ``train`` and ``val`` as read-only
    ``uint16`` memmaps, the tokenizer that made them, and the manifest."""

    train: np.memmap
    val: np.memmap
    tokenizer: Tokenizer
    manifest: dict[str, Any]


def prepare_corpus(train_ids: Any, val_ids: Any, tokenizer: Tokenizer, out: str | os.PathLike,
                   force: bool = False) -> dict[str, Any]:
    """Write the token ids of each split (lists, arrays or tensors, e.g. ``tokenizer.encode(text)``)
    to ``out/train.bin`` and ``out/val.bin`` as ``uint16`` (native byte order, as ``np.memmap`` reads
    them), save ``out/tokenizer.json`` and write ``out/manifest.json`` with each file's sha256 and
    token count; returns the manifest.  Other files in ``out`` are left alone.

    Raises ``FileExistsError`` when ``out`` already holds a prepared corpus (any of these files),
    unless ``force``; ``ValueError`` when the tokenizer has more than 65,536 ids, a split has fewer
    than 2 tokens, or an id is outside ``[0, vocab_size)``.
    """
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"tokenizer must be an lmcore Tokenizer, got {type(tokenizer).__name__}")
    if tokenizer.vocab_size > 2**16:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size:,} ids; uint16 files hold at most 65,536")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out={str(out)!r} is a file, not a directory; choose another")
    names = [f"{s}.bin" for s in _SPLITS] + ["tokenizer.json", MANIFEST]
    found = [n for n in names if (out / n).exists()]
    if found and not force:
        raise FileExistsError(f"{out} already holds a prepared corpus ({', '.join(found)}); pass force=True "
                              "(--force) to replace it, or choose another directory")
    streams = {split: _ids(ids, f"{split}_ids", tokenizer.vocab_size)
               for split, ids in zip(_SPLITS, (train_ids, val_ids))}
    files, tokens = {}, {}
    for split, ids in streams.items():
        with atomic_write(out / f"{split}.bin") as f:
            f.write(ids.astype(np.uint16).tobytes())
        tokens[split] = int(ids.size)
    tokenizer.save(out / "tokenizer.json")
    for name in names[:-1]:
        files[name] = sha256_file(out / name)
    manifest = {"format": PREPARED_FORMAT, "version": 1, "dtype": "uint16", "vocab_size": tokenizer.vocab_size,
                "tokens": tokens, "sha256": files}
    with atomic_write(out / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _ids(ids: Any, name: str, vocab_size: int) -> np.ndarray:
    """``ids`` as a 1-D int64 array of at least 2 ids in ``[0, vocab_size)``, or a clear error."""
    arr = ids.numpy(force=True) if isinstance(ids, torch.Tensor) else np.asarray(ids)
    if arr.ndim != 1 or arr.size < 2 or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D sequence of at least 2 integer token ids, got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    if int(arr.min()) < 0 or int(arr.max()) >= vocab_size:
        raise ValueError(f"{name} holds ids outside [0, {vocab_size}) (min {int(arr.min())}, max {int(arr.max())}); "
                         "pass the ids of this tokenizer")
    return arr.astype(np.int64)


def open_prepared(path: str | os.PathLike, verify: bool = True) -> Prepared:
    """Open a directory written by :func:`prepare_corpus`.  With ``verify`` (the default) every file
    is first checked against the manifest's sha256 (this reads each file once), so a truncated or
    damaged ``.bin`` is refused with a ``ValueError``, never trained on."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise FileNotFoundError(f"{path} holds no {MANIFEST}; prepare it first: python -m lmcore prepare "
                                f"--corpus NAME --out {path}")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files, tokens = dict(manifest["sha256"]), dict(manifest["tokens"])
        ok = manifest.get("format") == PREPARED_FORMAT and manifest.get("dtype") == "uint16"
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path / MANIFEST} is damaged or not an lmcore manifest ({e}); prepare the corpus again") \
            from None
    if not ok or set(files) != {f"{s}.bin" for s in _SPLITS} | {"tokenizer.json"}:
        raise ValueError(f"{path / MANIFEST} is not a manifest of lmcore's prepared uint16 corpora")
    for name, digest in files.items():
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} is missing; prepare the corpus again")
        if verify and sha256_file(path / name) != digest:
            raise ValueError(f"{path / name} does not match its sha256 in {MANIFEST} (damaged, truncated or "
                             "replaced); prepare the corpus again")
    streams = {}
    for split in _SPLITS:
        streams[split] = np.memmap(path / f"{split}.bin", dtype=np.uint16, mode="r")
        if len(streams[split]) != tokens.get(split):
            raise ValueError(f"{path / split}.bin holds {len(streams[split])} tokens, the manifest "
                             f"{tokens.get(split)}; prepare the corpus again")
    tokenizer = load_tokenizer(path / "tokenizer.json", sha256=files["tokenizer.json"])
    return Prepared(streams["train"], streams["val"], tokenizer, manifest)
