"""Checkpoints (chapter 4): save a training run atomically, load it safely, notice when a file is damaged.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python containers
(dicts, lists, numbers, strings), so it loads with ``torch.load(..., weights_only=True)``, which
refuses to run arbitrary code hidden in a pickle.  Next to it, ``<name>.sha256`` holds the file's
sha256 digest: a file truncated by a full disk or damaged in a copy is caught before it is
trusted.  Both files are written atomically (``lmcore._io.atomic_write``), so an interrupted save
leaves the previous checkpoint intact.

The layout written by :class:`lmcore.Trainer` in its ``out_dir``::

    out_dir/last.pt          the latest state (model, optimiser, step, RNG states, configs, history)
    out_dir/last.pt.sha256
    out_dir/best.pt          the state with the lowest validation loss so far (optional)
    out_dir/best.pt.sha256
    out_dir/tokenizer.json   written by the CLI and the model zoo, not by the Trainer
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from .._io import atomic_write, sha256_file

__all__ = ["FORMAT", "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "resolve_checkpoint",
           "model_config_dict", "unwrap"]

FORMAT = "lmcore.checkpoint"
FORMAT_VERSION = 1


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def resolve_checkpoint(path: str | os.PathLike, tag: str = "last") -> Path:
    """Turn a run directory or a file path into the checkpoint file's path.

    A directory means ``<dir>/<tag>.pt`` (``tag`` is ``"last"`` or ``"best"``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"{tag}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (python -m lmcore train --out DIR) "
                                "or pass the directory a run wrote")
    return path


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically, then its sha256 to ``path + '.sha256'``.

    ``state`` must contain only tensors and plain containers (what ``weights_only`` loading
    accepts); configs belong in it as dicts, not dataclass objects.
    """
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    with atomic_write(path) as f:
        torch.save(payload, f)
    with atomic_write(_sidecar(path), "w") as f:
        f.write(sha256_file(path) + "\n")
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    tag: str = "last") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (a file, or a run directory).

    Raises ``ValueError`` when the file does not match its sha256 sidecar, cannot be unpickled
    safely (truncated, corrupt, or not a checkpoint), or has an unknown format version.
    """
    path = resolve_checkpoint(path, tag)
    sidecar = _sidecar(path)
    if sidecar.is_file():
        expected = sidecar.read_text(encoding="utf-8").strip()
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(f"checkpoint {path} is corrupt or truncated: its sha256 is {actual[:16]}..., "
                             f"but {sidecar.name} records {expected[:16]}...; use another checkpoint "
                             "(e.g. best.pt) or train again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError) as e:
        raise ValueError(f"checkpoint {path} could not be loaded safely (truncated, corrupt, or not an "
                         f"lmcore checkpoint): {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an lmcore checkpoint (no {FORMAT!r} tag)")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format version {state.get('format_version')!r}; this "
                         f"lmcore reads version {FORMAT_VERSION}")
    return state


def model_config_dict(model: nn.Module) -> dict[str, Any] | None:
    """The model's config as a plain dict (``model.config`` as a dataclass or dict), else None."""
    config = getattr(unwrap(model), "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    return None


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(inner := getattr(model, "_orig_mod", None), nn.Module):
            model = inner
        else:
            return model
