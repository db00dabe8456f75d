"""Checking a zoo folder before a model is served from it (chapter 5).

Every folder the zoo writes holds ``FILES``: ``model.safetensors``, ``tokenizer.json`` and
``meta.json``.  The shipped folders are covered by ``weights/manifest.json``; every other one (the
cache of ``pretrained(name, retrain=True)``, ``python -m lmcore zoo retrain NAME --out DIR``) by
its own ``checksums.json``, written inside the temporary folder before the rename that publishes
it.  Before a model is served, every file is checked against its sha256, ``meta.json`` against the
recipe it claims (model config and recipe key), and the tokenizer's vocabulary against the model's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as load_safetensors

from .._io import atomic_write, sha256_file
from ..models import GPT, GPTConfig
from ..tokenizers import Tokenizer, load_tokenizer
from .recipes import RECIPES, Recipe

__all__ = ["FILES", "CHECKSUMS", "write_checksums", "verify_folder", "check_recipe", "load_folder", "repair_hint"]

#: the files of every zoo model folder
FILES = ("model.safetensors", "tokenizer.json", "meta.json")
#: the checksum file of a folder the zoo wrote outside the package (sha256 of every file of ``FILES``)
CHECKSUMS = "checksums.json"


def repair_hint(folder: Path) -> str:
    """What to do about a damaged zoo folder: retrain it, or use the shipped weights."""
    name = next((n for n in RECIPES if folder.name == n or folder.name.startswith(f"{n}-")), None)
    if name is None:
        return ("retrain the model it held (python -m lmcore zoo retrain NAME --out DIR --force, NAME one of "
                f"{sorted(RECIPES)}), or use the shipped weights: lmcore.pretrained(NAME)")
    return (f"rebuild it with lmcore.pretrained({name!r}, retrain=True) (python -m lmcore zoo retrain {name}, "
            f"with --out {folder} --force for this folder), or use the shipped weights: lmcore.pretrained({name!r})")


def write_checksums(folder: Path) -> None:
    """Record the sha256 of every file of ``FILES`` in ``folder / CHECKSUMS``."""
    with atomic_write(folder / CHECKSUMS, "w") as f:
        json.dump({file: sha256_file(folder / file) for file in FILES}, f, indent=1, sort_keys=True)
        f.write("\n")


def verify_folder(folder: Path) -> dict[str, str]:
    """Check every file of ``folder`` against its ``checksums.json``; returns the verified digests.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that fails its
    checksum or a folder without checksums, naming the file and what to do.
    """
    hint = repair_hint(folder)
    record = folder / CHECKSUMS
    if not record.is_file():
        raise ValueError(f"{folder} has no {CHECKSUMS}, so its files cannot be verified and it was not loaded "
                         f"(zoo folders written before lmcore recorded checksums have none); {hint}")
    try:
        expected = json.loads(record.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{record} is corrupt ({e}); {hint}") from None
    for file in FILES:
        path = folder / file
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; {hint}")
        actual = sha256_file(path)
        if not isinstance(expected, dict) or actual != expected.get(file):
            raise ValueError(f"{path} fails its checksum (sha256 {actual[:16]}..., {CHECKSUMS} records "
                             f"{str(expected.get(file) if isinstance(expected, dict) else None)[:16]}...): it is "
                             f"corrupt or was changed; {hint}")
    return {file: expected[file] for file in FILES}


def check_recipe(meta: dict[str, Any], folder: Path, name: str | None = None) -> None:
    """Raise ``ValueError`` unless ``meta`` is what its recipe trains: model config and recipe key,
    and, given ``name``, the zoo's current recipe of that name.  A folder named like the cache's
    entries (``<name>-<recipe key>``) must hold that model."""
    try:
        own = Recipe(**meta["recipe"])
        config, key, claimed = dict(meta["model_config"]), meta["recipe_key"], meta["name"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{folder / 'meta.json'} does not describe a zoo model ({e!r}); "
                         f"{repair_hint(folder)}") from None
    expected = RECIPES[name] if name is not None else own
    cache_names = {f"{n}-{r.key()}": n for n, r in RECIPES.items()}
    problems = [f"name {claimed!r}, not {want!r}" for want in (name, cache_names.get(folder.name))
                if want is not None and claimed != want]
    if key != expected.key() or key != own.key():
        problems.append(f"recipe key {key!r}, not {expected.key()!r}")
    problems += [f"{k}={config.get(k)!r}, not {v!r}" for k, v in expected.model.items() if config.get(k) != v]
    if folder.name in cache_names and folder.name != f"{claimed}-{key}":
        problems.append(f"a folder named {folder.name!r} must hold recipe key {folder.name.rpartition('-')[2]!r}")
    if problems:
        raise ValueError(f"{folder} holds another model than its recipe says: " + "; ".join(dict.fromkeys(problems))
                         + f". It was not loaded; {repair_hint(folder)}")


def load_folder(folder: Path, meta: dict[str, Any], digests: dict[str, str], device: torch.device
                ) -> tuple[GPT, Tokenizer]:
    """The GPT (eval mode, on ``device``) and tokenizer of a zoo folder verified to have ``digests``."""
    try:
        model = GPT(GPTConfig(**meta["model_config"]))
        load_safetensors(model, str(folder / "model.safetensors"), strict=True, device="cpu")
    except (TypeError, KeyError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"the weights in {folder} do not fit the model meta.json describes ({e}); "
                         f"{repair_hint(folder)}") from e
    tok = load_tokenizer(folder / "tokenizer.json", sha256=digests["tokenizer.json"])
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(f"{folder / 'tokenizer.json'} has {tok.vocab_size} tokens, but the model has "
                         f"vocab_size={model.config.vocab_size}: they do not belong together; {repair_hint(folder)}")
    return model.to(device).eval(), tok
