"""Checkpoints (chapter 4): save a training run atomically, load it safely, notice when a file is damaged.

A checkpoint file is a short header followed by a ``torch.save`` payload::

    LMCORE CHECKPOINT 1\\n       the magic line
    <64 hex digits>\\n           the sha256 of the payload
    <payload>                   torch.save of the state: tensors and plain containers only

The checksum lives *inside* the file, so one atomic rename (``lmcore._io.atomic_write``) replaces
weights and checksum together: a save killed at any moment leaves the previous checkpoint, intact
and verifiable, and a copied ``last.pt`` carries its own check.  Every load verifies the digest
before unpickling, so a file truncated by a full disk or damaged in a copy is refused, never
loaded with other weights.  The payload holds only tensors and plain Python containers (dicts,
lists, numbers, strings), so it loads with ``torch.load(..., weights_only=True)``, which refuses to
run code hidden in a pickle.

Files of lmcore before the header (a bare ``torch.save`` zip with a ``<name>.sha256`` sidecar) are
still read when the sidecar matches; without a matching sidecar they cannot be verified and are
refused.  Saving removes such a sidecar (it would describe the old file) and the temporary files
that killed saves left next to the checkpoint.

The layout written by :class:`lmcore.Trainer` in its ``out_dir``::

    out_dir/last.pt          the latest state (model, optimiser, step, RNG states, configs, history)
    out_dir/best.pt          the state with the lowest validation loss so far (optional)
    out_dir/tokenizer.json   written by the CLI (its sha256 is recorded in the checkpoints' run_files)
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from .._io import atomic_write, remove_stale_temps
from .._version import __version__

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["FORMAT", "FORMAT_VERSION", "MAGIC", "save_checkpoint", "load_checkpoint", "resolve_checkpoint",
           "model_config_dict", "unwrap", "check_resumable", "claim_out_dir", "rng_state", "restore_rng_state",
           "trainer_state", "restore_trainer"]

FORMAT = "lmcore.checkpoint"
FORMAT_VERSION = 1
#: the first line of every checkpoint file
MAGIC = b"LMCORE CHECKPOINT 1\n"
_HEADER = len(MAGIC) + 65          # the magic line, 64 hex digits and a newline


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
    """Write ``state`` to ``path`` atomically, with the payload's sha256 in the file's header.

    ``state`` must contain only tensors and plain containers (what ``weights_only`` loading
    accepts); configs belong in it as dicts, not dataclass objects.  Removes temporary files
    of earlier, killed saves to ``path`` (only one process may save to a path at a time).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, buffer)
    payload = buffer.getvalue()
    remove_stale_temps(path)
    with atomic_write(path) as f:
        f.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n")
        f.write(payload)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)   # an old-format sidecar is stale now
    return path


def _payload(path: Path) -> bytes:
    """The verified payload of checkpoint ``path`` (raises ``ValueError`` when it cannot be verified)."""
    blob = path.read_bytes()
    if blob.startswith(MAGIC):
        digest = blob[len(MAGIC):_HEADER]
        expected = digest[:64].decode("ascii", "replace") if digest[64:] == b"\n" else "(damaged)"
        payload, recorded_in = blob[_HEADER:], "its header"
    elif blob.startswith(b"PK"):          # a bare torch.save zip: lmcore before the header
        sidecar = path.with_name(path.name + ".sha256")
        if not sidecar.is_file():
            raise ValueError(f"{path} has no checksum: it is a plain torch.save file (an old-format lmcore "
                             f"checkpoint without its {sidecar.name}, or not an lmcore checkpoint), so damage "
                             f"cannot be ruled out and it was refused; copy it together with its {sidecar.name}, "
                             "or train again")
        expected, payload = sidecar.read_text(encoding="utf-8").strip(), blob
        recorded_in = sidecar.name
    else:
        raise ValueError(f"{path} is not an lmcore checkpoint (it does not start with {MAGIC!r}) or its first "
                         "bytes are damaged; use another checkpoint (e.g. best.pt) or train again")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise ValueError(f"checkpoint {path} is corrupt or truncated: its sha256 is {actual[:16]}..., but "
                         f"{recorded_in} records {expected[:16]}...; use another checkpoint (e.g. best.pt) "
                         "or train again")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    tag: str = "last") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (a file, or a run directory).

    Raises ``ValueError`` when the file fails its checksum (or has none), holds anything but
    tensors and plain containers, is not an lmcore checkpoint, or has an unknown format version.
    """
    path = resolve_checkpoint(path, tag)
    payload = _payload(path)
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests loading with weights_only=False, which would run whatever
        # code the file holds: never pass that on.
        raise ValueError(f"checkpoint {path} was refused: it holds objects other than tensors and plain "
                         "containers, and unpickling them could run code. lmcore never writes such files; "
                         "do not load it, and train again or use a checkpoint you trust") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"checkpoint {path} passed its checksum but could not be loaded ({type(e).__name__}); "
                         "it was not written by this lmcore's save_checkpoint") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an lmcore checkpoint (no {FORMAT!r} tag)")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format version {state.get('format_version')!r}; this "
                         f"lmcore reads version {FORMAT_VERSION}")
    return state


def claim_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> None:
    """Make ``out_dir`` ready for a fresh run: raise ``FileExistsError`` if it holds another run's
    checkpoints, or with ``overwrite`` delete them (so no ``best.pt`` of the old run outlives it)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"TrainConfig.out_dir={str(out)!r} is a file, not a directory; choose another out_dir")
    found = [p for p in (out / "best.pt", out / "last.pt") if p.exists()]
    if found and not overwrite:
        raise FileExistsError(f"{out} already holds the checkpoints {[p.name for p in found]} of another run; "
                              "resume it (Trainer.resume(), python -m lmcore train --resume), or replace it with "
                              "TrainConfig(overwrite=True) (--force), or choose another out_dir")
    for path in found:
        path.unlink()
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)


def check_resumable(state: dict[str, Any], model_config: dict[str, Any] | None, train_config: dict[str, Any],
                    resumable: frozenset[str], model_defaults: dict[str, Any] | None = None) -> None:
    """Raise ``ValueError`` unless checkpoint ``state`` continues a run of this model and TrainConfig
    (fields in ``resumable`` may differ).  A model-config field the checkpoint lacks counts as its
    default from ``model_defaults``: a field added to the config later must not strand older runs."""
    theirs = state.get("model_config")
    if theirs is not None and model_defaults:
        theirs = {**{k: v for k, v in model_defaults.items() if k in (model_config or {})}, **theirs}
    if model_config != theirs:
        diff = sorted(k for k in set(model_config or {}) | set(theirs or {})
                      if (model_config or {}).get(k) != (theirs or {}).get(k))
        raise ValueError(f"the checkpoint's model config differs from this model's in {diff}: "
                         f"checkpoint {theirs}, model {model_config}; build the model from the checkpoint's "
                         "config or use another out_dir")
    theirs = state["train_config"]
    diff = sorted(k for k in train_config if k not in resumable and train_config[k] != theirs.get(k))
    if diff:
        raise ValueError("the checkpoint was trained with a different TrainConfig: "
                         + ", ".join(f"{k}={theirs.get(k)!r} (now {train_config[k]!r})" for k in diff)
                         + "; a resumed run must keep these, or start a fresh run in another out_dir")


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The random states a resumed run needs: torch's global (CPU and CUDA) and the batch ``generator``'s."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng_state(rng: dict[str, Any], generator: torch.Generator) -> None:
    """Set the states :func:`rng_state` saved (the CUDA ones only where CUDA is available)."""
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and "cuda" in rng:
        torch.cuda.set_rng_state_all(rng["cuda"])
    generator.set_state(rng["data"])


def model_config_dict(model: nn.Module) -> dict[str, Any] | None:
    """The model's config as a plain dict (``model.config`` as a dataclass or dict), else None."""
    config = getattr(unwrap(model), "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    return None


def _config_defaults(model: nn.Module) -> dict[str, Any]:
    """The defaults of the model's config dataclass fields (empty for a dict config)."""
    config = getattr(unwrap(model), "config", None)
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        return {}
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(inner := getattr(model, "_orig_mod", None), nn.Module):
            model = inner
        else:
            return model


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """``trainer.state_dict()``: everything needed to continue its run exactly."""
    t = trainer
    return {
        "step": t.step, "tokens": t.tokens, "elapsed_s": t._elapsed, "best_val_loss": t.best_val_loss,
        "model": unwrap(t.model).state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scaler": None if t.scaler is None else t.scaler.state_dict(),
        "rng": rng_state(t.generator),
        "model_config": model_config_dict(t.model),
        "model_class": type(unwrap(t.model)).__name__,
        "train_config": t.config.to_dict(),
        "history": t.history, "lr_schedule": t.lr_schedule, "run_files": t.run_files,
        "lmcore_version": __version__,
    }


def restore_trainer(trainer: Trainer, state: dict[str, Any], resumable: frozenset[str]) -> None:
    """``trainer.load_state_dict(state)`` but for the learning-rate schedule, which the caller rebuilds."""
    t = trainer
    check_resumable(state, model_config_dict(t.model), t.config.to_dict(), resumable, _config_defaults(t.model))
    try:
        unwrap(t.model).load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(f"the checkpoint's weights do not fit this model: {e}") from e
    t.optimizer.load_state_dict(state["optimizer"])
    if t.scaler is not None and state.get("scaler"):
        t.scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"], t.generator)
    t.step, t.tokens = state["step"], state["tokens"]
    t._elapsed, t.best_val_loss = state["elapsed_s"], state["best_val_loss"]
    t.history = list(state["history"])
    t.run_files = dict(state.get("run_files") or {})
