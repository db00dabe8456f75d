"""The book's shared models, shipped as weights: ``model, tok = lmcore.pretrained("toy-char")``.

Taught in chapter 5 (and used by chapters 7, 8, 10 and 11).  Every machine computes slightly
different floating-point results (another CPU's vector kernels, a GPU), and training amplifies
those differences.  So the book does not train its shared models on the reader's machine: they
were trained once from a *recipe* and ship with the package as safetensors files::

    lmcore/zoo/weights/manifest.json            sha256 of every shipped file
    lmcore/zoo/weights/<name>/model.safetensors the weights
    lmcore/zoo/weights/<name>/tokenizer.json    its tokenizer
    lmcore/zoo/weights/<name>/meta.json         recipe, model config, training history, measurements

:func:`pretrained` checks every file against the manifest and ``meta.json`` against the recipe,
and loads the model in well under a second; a file that fails its checksum is a clear error,
never a silent retrain.  ``pretrained(name, retrain=True)`` (:func:`retrain_model`, or ``python -m
lmcore zoo retrain NAME``) trains the recipe again on this machine, caches the result under
``lmcore.data.cache_dir()`` (with a ``checksums.json`` of its files) and reports how far its
validation loss is from the shipped model's, against the recipe's stated tolerance.
:func:`load_model` verifies whatever it loads too (:mod:`lmcore.zoo.folders`).

Models:

* ``"toy-char"``: a character-level GPT on the toy language (4 layers, 4 heads, 128 dims, context
  128 characters), 0.8M parameters; half of every training batch's windows start at a story's
  newline, the prompt generation uses.
* ``"shakespeare-char"``: a character-level GPT on Tiny Shakespeare (4 layers, 4 heads, 128 dims,
  context 64).  Its corpus is needed only to retrain it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model as save_safetensors

from .. import data
from .._io import atomic_write, sha256_file
from .._version import __version__
from ..models import GPT, GPTConfig
from ..runtime import get_device, seed_everything, torch_threads
from ..tokenizers import CharTokenizer, Tokenizer, load_tokenizer
from ..training import TrainConfig, Trainer
from ..training.checkpoint import load_checkpoint, resolve_checkpoint
from .folders import CHECKSUMS, FILES, check_recipe, load_folder, verify_folder, write_checksums
from .recipes import RECIPES, Recipe, _recipe, list_models, validation_loss

__all__ = ["Recipe", "RECIPES", "RetrainReport", "pretrained", "retrain_model", "ship", "list_models", "model_info",
           "verify", "load_model", "validation_loss", "weights_dir", "FILES", "CHECKSUMS"]


def weights_dir() -> Path:
    """The folder of the shipped weights (inside the installed package)."""
    return Path(str(resources.files(__package__) / "weights"))


def _manifest(root: Path) -> dict[str, dict[str, str]]:
    path = root / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the shipped models cannot be verified. Reinstall "
                                "lmcore (or `git checkout lmcore/zoo/weights`)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is corrupt ({e}); reinstall lmcore (or `git checkout lmcore/zoo/weights`)") from e


def verify(name: str, root: Path | None = None) -> Path:
    """Check every file of shipped model ``name`` against the manifest; returns its folder.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for one whose sha256 differs
    (corrupt, truncated or edited), naming the file.  Never retrains.
    """
    _recipe(name)
    root = weights_dir() if root is None else Path(root)
    expected = _manifest(root).get(name)
    if expected is None:
        raise ValueError(f"{root / 'manifest.json'} lists no model {name!r}; reinstall lmcore")
    folder = root / name
    for file in FILES:
        path = folder / file
        if not path.is_file():
            raise FileNotFoundError(f"shipped file {path} is missing; reinstall lmcore (or `git checkout "
                                    f"lmcore/zoo/weights`), or rebuild it: python -m lmcore zoo retrain {name}")
        actual = sha256_file(path)
        if actual != expected.get(file):
            raise ValueError(f"shipped file {path} fails its checksum: sha256 {actual[:16]}..., the manifest "
                             f"records {str(expected.get(file))[:16]}... The file is corrupt or was changed; "
                             "reinstall lmcore (or `git checkout lmcore/zoo/weights`). Nothing was retrained.")
    return folder


def model_info(name: str) -> dict[str, Any]:
    """The verified ``meta.json`` of shipped model ``name``: recipe, config, training history
    (``history``, as ``Trainer.history``), training time and measurements of the shipped weights."""
    return json.loads((verify(name) / "meta.json").read_text(encoding="utf-8"))


def _load_entry(folder: Path, name: str | None, device: torch.device, shipped: bool | None = None
                ) -> tuple[GPT, Tokenizer]:
    """Verify and load a zoo folder: a shipped one (listed in its parent's manifest; None = find out)
    or one with its own checksums; with ``name``, it must hold the zoo's current recipe of that name."""
    if shipped is None:
        shipped = not (folder / CHECKSUMS).exists() and folder.name in RECIPES \
            and (folder.parent / "manifest.json").is_file() and folder.name in _manifest(folder.parent)
    if shipped:
        verify(folder.name, root=folder.parent)
        digests = _manifest(folder.parent)[folder.name]
    else:
        digests = verify_folder(folder)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    check_recipe(meta, folder, name)
    return load_folder(folder, meta, digests, device)


def pretrained(name: str, device: str | torch.device | None = None, retrain: bool = False,
               progress: bool = True) -> tuple[GPT, Tokenizer]:
    """``(model, tokenizer)`` of zoo model ``name`` on ``device``, in eval mode.

    Loads the shipped weights after checking them against the manifest (see the module docstring)
    and ``meta.json`` against the recipe ``name``.
    With ``retrain=True`` trains the recipe again on this machine instead, prints how far it lands
    from the shipped model, and returns the retrained model (see :func:`retrain_model`).
    """
    if not isinstance(retrain, bool):
        raise TypeError(f"retrain must be a bool, got {type(retrain).__name__}")
    device = get_device(device)
    if retrain:
        report = retrain_model(name, device=device, progress=progress)
        print(report)
        return _load_entry(report.path, name, device)
    _recipe(name)
    return _load_entry(weights_dir() / name, name, device, shipped=True)


# --- training a recipe ------------------------------------------------------------------------
def _corpus(name: str, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor, CharTokenizer]:
    """Training ids, validation ids and the character tokenizer of a recipe."""
    if recipe.corpus == "toy":
        tok = CharTokenizer().train(data.ToyLanguage().alphabet)
        return (torch.tensor(tok.encode(data.toy_corpus("train"))), torch.tensor(tok.encode(data.toy_corpus("val"))),
                tok)
    if recipe.corpus in data.CORPORA and not data.available(recipe.corpus):
        try:
            data.fetch_corpus(recipe.corpus)
        except ConnectionError as e:
            raise ValueError(f"retraining {name!r} needs the corpus {recipe.corpus!r}, which is not available "
                             f"offline: {e}. The shipped model needs no corpus: lmcore.pretrained({name!r})") from e
    text = data.load_text(recipe.corpus)
    tok = CharTokenizer().train(text)
    return (*data.train_val_split(tok.encode(text), 0.1), tok)


def _train(name: str, recipe: Recipe, device: torch.device, out: Path, progress: bool) -> None:
    """Train ``recipe`` on ``device`` and write the model's files (``FILES``) into ``out``."""
    train_ids, val_ids, tok = _corpus(name, recipe)
    seed_everything(recipe.seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **recipe.model))
    config = TrainConfig(**recipe.train, seed=recipe.seed, device=str(device), save_best=False, progress=progress)
    if recipe.aligned:
        # Each story follows a newline, and generation is prompted with one: windows that start
        # there teach the model how stories begin, and show it whole stories.
        newline = tok.encode("\n")[0]
        splits = {s: (ids, torch.nonzero(ids == newline).flatten())
                  for s, ids in (("train", train_ids), ("val", val_ids))}

        def batch_fn(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            ids, starts = splits[split]
            return data.get_batch(ids, config.batch_size, recipe.model["context_length"], "cpu", generator,
                                  doc_starts=starts, aligned=recipe.aligned)

        trainer = Trainer(model, config, batch_fn=batch_fn)
    else:
        trainer = Trainer(model, config, train_ids, val_ids)
    t0 = time.perf_counter()
    # One thread on a CPU: whoever trains this recipe on the same kind of CPU gets the same weights.
    with torch_threads(1 if device.type == "cpu" else None):
        trainer.train()
        seconds = time.perf_counter() - t0
        val = validation_loss(model, val_ids)
    meta = {"name": name, "recipe": asdict(recipe), "recipe_key": recipe.key(), "model_config": asdict(model.config),
            "lmcore_version": __version__, "torch_version": torch.__version__, "device": device.type,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "train_seconds": round(seconds, 1),
            "steps": trainer.step, "tokens": trainer.tokens, "val_loss": val, "history": trainer.history}
    # save_model stores the tied embedding / output matrix once (safetensors refuses shared tensors)
    save_safetensors(model.cpu(), str(out / "model.safetensors"))
    tok.save(out / "tokenizer.json")
    with atomic_write(out / "meta.json", "w") as f:
        json.dump(meta, f, indent=1)


def _train_into(final: Path, name: str, recipe: Recipe, device: torch.device, progress: bool,
                before_swap: Callable[[Path], None] | None = None) -> None:
    """Train ``recipe`` in a temporary folder next to ``final``, then rename it onto ``final``: a
    reader sees the old model or the complete new one, never a half-written folder."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        _train(name, recipe, device, tmp, progress)
        if before_swap is not None:
            before_swap(tmp)
        if final.exists():   # move the old folder aside first, so a failure never leaves neither
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
            os.replace(final, old / "entry")
            shutil.rmtree(old)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@dataclass(frozen=True)
class RetrainReport:
    """How a model retrained on this machine compares with the shipped one."""

    name: str
    path: Path              # the retrained model's folder (in the cache)
    val_loss: float         # retrained, nats/token over the whole validation split
    shipped_val_loss: float
    tolerance: float        # the recipe's val_tolerance
    train_seconds: float

    @property
    def difference(self) -> float:
        return self.val_loss - self.shipped_val_loss

    @property
    def within_tolerance(self) -> bool:
        return abs(self.difference) <= self.tolerance

    def __str__(self) -> str:
        verdict = "within" if self.within_tolerance else "OUTSIDE"
        return (f"retrained {self.name} in {self.train_seconds:.0f} s: validation loss {self.val_loss:.4f} against "
                f"the shipped {self.shipped_val_loss:.4f} (difference {self.difference:+.4f}, {verdict} the "
                f"tolerance ±{self.tolerance}); saved in {self.path}")


def retrain_model(name: str, device: str | torch.device | None = None, progress: bool = True,
            out: str | os.PathLike | None = None, force: bool = False) -> RetrainReport:
    """Train zoo model ``name`` from its recipe on ``device`` and compare it with the shipped one.

    The result goes to ``out`` (default: ``cache_dir()/models/<name>-<recipe key>``), written in a
    temporary folder (with the ``checksums.json`` every load verifies) and renamed into place when
    complete; an existing ``out`` is replaced only with ``force=True`` (the default cache folder
    is always replaced).
    """
    recipe = _recipe(name)
    device = get_device(device)
    shipped = json.loads((verify(name) / "meta.json").read_text(encoding="utf-8"))
    final = Path(out) if out is not None else data.cache_dir() / "models" / f"{name}-{recipe.key()}"
    if out is not None and final.exists() and not force:
        raise FileExistsError(f"{final} exists; pass force=True (--force) to replace it")
    _train_into(final, name, recipe, device, progress, before_swap=write_checksums)
    verify_folder(final)
    meta = json.loads((final / "meta.json").read_text(encoding="utf-8"))
    return RetrainReport(name, final, meta["val_loss"], shipped["val_loss"], recipe.val_tolerance,
                         meta["train_seconds"])


def load_model(path: str | os.PathLike, device: str | torch.device | None = None,
               tag: str = "last") -> tuple[GPT, Tokenizer]:
    """``(model, tokenizer)`` from a training run's directory (``python -m lmcore train --out DIR``)
    or a zoo model's folder: the GPT in eval mode on ``device``, and its ``tokenizer.json``.

    Everything is verified first: a zoo folder's files against its checksums and its recipe (see
    :mod:`lmcore.zoo.folders`); a run's checkpoint against the checksum inside it and its
    ``tokenizer.json`` against the sha256 the checkpoint records (a checkpoint that records none,
    written by ``Trainer`` without the CLI, gets a warning); and the tokenizer's vocabulary
    against the model's.  Raises ``ValueError`` / ``FileNotFoundError`` saying what to do.
    """
    device = get_device(device)
    folder = Path(path)
    # A zoo folder, even a damaged one, has one of these; a run directory has none of them.
    if folder.is_dir() and any((folder / f).exists() for f in ("model.safetensors", "meta.json", CHECKSUMS)):
        return _load_entry(folder, None, device)
    ckpt_path = resolve_checkpoint(path, tag)
    state = load_checkpoint(ckpt_path, map_location="cpu")
    kind = state.get("model_class", "GPT")
    if kind != "GPT" or not state.get("model_config"):
        raise ValueError(f"{ckpt_path} is not a GPT checkpoint (it holds a {kind}): load_model and "
                         "`python -m lmcore sample` load only GPTs; load it with lmcore.load_checkpoint and "
                         "build its model yourself")
    try:
        model = GPT(GPTConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"{ckpt_path} does not hold a GPT this lmcore can build ({e})") from e
    tok_path = ckpt_path.parent / "tokenizer.json"
    if not tok_path.is_file():
        raise FileNotFoundError(f"no tokenizer next to the checkpoint: {tok_path} is missing; copy the run's "
                                "tokenizer.json there (the model cannot be used without it), or train again")
    recorded = (state.get("run_files") or {}).get("tokenizer.json")
    if recorded is None:
        warnings.warn(f"{ckpt_path} records no checksum of {tok_path.name}, so the tokenizer is not verified "
                      "(only its size); the CLI records it", stacklevel=2)
    elif sha256_file(tok_path) != recorded:
        raise ValueError(f"{tok_path} is not the tokenizer this run was trained with (its sha256 differs from "
                         f"the one {ckpt_path.name} records): it is corrupt or was replaced; restore the run's "
                         "tokenizer.json, or train again")
    tok = load_tokenizer(tok_path, sha256=recorded)
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(f"{tok_path} has {tok.vocab_size} tokens, but the model in {ckpt_path.name} has "
                         f"vocab_size={model.config.vocab_size}: they do not belong together")
    return model.to(device).eval(), tok


def ship(name: str, root: Path | None = None, device: str | torch.device = "cpu", force: bool = False,
         progress: bool = True) -> Path:
    """Maintainers: train ``name`` from its recipe and write it as the shipped model (into ``root``,
    default the package's ``weights/``), updating the manifest.  Refuses to replace shipped files
    without ``force=True``.  Every chapter that loads the model must be re-executed afterwards."""
    recipe = _recipe(name)
    root = weights_dir() if root is None else Path(root)
    folder = root / name
    if folder.exists() and not force:
        raise FileExistsError(f"{folder} holds the shipped {name!r}; pass force=True (--force) to replace it")
    manifest: dict[str, dict[str, str]] = {}

    def publish(tmp: Path) -> None:
        # read the manifest only now, after training: another model shipped meanwhile stays listed
        manifest.update(_manifest(root) if (root / "manifest.json").is_file() else {})
        manifest[name] = {file: sha256_file(tmp / file) for file in FILES}
        tmp.chmod(0o755)                     # mkdtemp makes private folders; these files are public
        for file in FILES:
            (tmp / file).chmod(0o644)

    _train_into(folder, name, recipe, get_device(device), progress, before_swap=publish)
    with atomic_write(root / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return folder
