"""The book's shared models, shipped as weights: ``model, tok = lmcore.pretrained("toy-char")``.

Taught in chapter 5 (and used by chapters 7, 8, 10 and 11).  Every machine computes slightly
different floating-point results (another CPU's vector kernels, a GPU), and training amplifies
those differences.  So the book does not train its shared models on the reader's machine: they
were trained once from a *recipe* and ship with the package as safetensors files::

    lmcore/zoo/weights/manifest.json            sha256 of every shipped file
    lmcore/zoo/weights/<name>/model.safetensors the weights
    lmcore/zoo/weights/<name>/tokenizer.json    its tokenizer
    lmcore/zoo/weights/<name>/meta.json         recipe, model config, training history, measurements

:func:`pretrained` checks every file against the manifest and loads the model in well under a
second; a file that fails its checksum is a clear error, never a silent retrain.
``pretrained(name, retrain=True)`` (:func:`retrain_model`, or ``python -m lmcore zoo retrain NAME``) trains the recipe
again on this machine, caches the result under ``lmcore.data.cache_dir()`` and reports how far its
validation loss is from the shipped model's, against the recipe's stated tolerance.

Models:

* ``"toy-char"``: a character-level GPT on the toy language (4 layers, 4 heads, 128 dims, context
  128 characters), 0.8M parameters; half of every training batch's windows start at a story's
  newline, the prompt generation uses.
* ``"shakespeare-char"``: a character-level GPT on Tiny Shakespeare (4 layers, 4 heads, 128 dims,
  context 64).  Its corpus is needed only to retrain it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

from .. import data
from .._checks import check_key, eval_mode
from .._io import atomic_write, sha256_file
from .._version import __version__
from ..models import GPT, GPTConfig
from ..runtime import get_device, seed_everything, torch_threads
from ..tokenizers import CharTokenizer, Tokenizer, load_tokenizer
from ..training import TrainConfig, Trainer
from ..training.checkpoint import load_checkpoint, resolve_checkpoint

__all__ = ["Recipe", "RECIPES", "RetrainReport", "pretrained", "retrain_model", "ship", "list_models", "model_info",
           "verify", "load_model", "validation_loss", "weights_dir", "FILES"]

#: the files each shipped model consists of, all listed with their sha256 in ``manifest.json``
FILES = ("model.safetensors", "tokenizer.json", "meta.json")


@dataclass(frozen=True)
class Recipe:
    """How to train one zoo model: corpus, model sizes (``GPTConfig`` fields except the vocabulary
    size) and ``TrainConfig`` fields."""

    corpus: str                       # "toy" or a name of lmcore.data.CORPORA
    description: str
    model: dict[str, Any] = field(default_factory=dict)   # GPTConfig fields
    train: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields
    seed: int = 0                     # seeds the initialisation and the batches
    aligned: float = 0.0              # fraction of each batch's rows starting at a document (a newline)
    val_tolerance: float = 0.01       # |retrained - shipped| validation loss allowed, nats/token

    def key(self) -> str:
        """A short hash of everything that determines the trained weights."""
        blob = json.dumps({"corpus": self.corpus, "model": self.model, "train": self.train, "seed": self.seed,
                           "aligned": self.aligned, "tokenizer": "char"}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


RECIPES: dict[str, Recipe] = {
    "toy-char": Recipe(
        corpus="toy",
        description="char-level GPT on the toy language (4 layers, 4 heads, 128 dims, context 128)",
        model=dict(context_length=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
        # 2000 steps, chosen by measurement (benchmarks/RESULTS.md): in 500 sampled stories pronoun
        # errors fall from 51% (chance) at step 500 to 5% by step 1000 and 2% at 2000, valid stories
        # from 41% to 92%, and the validation estimate from 0.391 to 0.355 (the floor is 0.3425).
        train=dict(max_steps=2000, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=50, weight_decay=0.1,
                   eval_interval=250, eval_iters=20),
        aligned=0.5,
    ),
    "shakespeare-char": Recipe(
        corpus="tinyshakespeare",
        description="char-level GPT on Tiny Shakespeare (4 layers, 4 heads, 128 dims, context 64)",
        model=dict(context_length=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
        train=dict(max_steps=1000, batch_size=12, lr=2e-3, min_lr=2e-4, warmup_steps=50, weight_decay=0.1,
                   eval_interval=250, eval_iters=20),
        val_tolerance=0.02,
    ),
}


def list_models() -> dict[str, str]:
    """Names of the zoo's models and what each is."""
    return {name: recipe.description for name, recipe in RECIPES.items()}


def _recipe(name: str) -> Recipe:
    return check_key("name", name, RECIPES, "unknown model {value!r}; the known models are {known} "
                     "(lmcore.zoo.list_models())")


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


def _load_folder(folder: Path, device: torch.device) -> tuple[GPT, Tokenizer]:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    model = GPT(GPTConfig(**meta["model_config"]))
    load_safetensors(model, str(folder / "model.safetensors"), strict=True, device="cpu")
    return model.to(device).eval(), load_tokenizer(folder / "tokenizer.json")


def pretrained(name: str, device: str | torch.device | None = None, retrain: bool = False,
               progress: bool = True) -> tuple[GPT, Tokenizer]:
    """``(model, tokenizer)`` of zoo model ``name`` on ``device``, in eval mode.

    Loads the shipped weights after checking them against the manifest (see the module docstring).
    With ``retrain=True`` trains the recipe again on this machine instead, prints how far it lands
    from the shipped model, and returns the retrained model (see :func:`retrain_model`).
    """
    if not isinstance(retrain, bool):
        raise TypeError(f"retrain must be a bool, got {type(retrain).__name__}")
    device = get_device(device)
    if retrain:
        report = retrain_model(name, device=device, progress=progress)
        print(report)
        return _load_folder(report.path, device)
    return _load_folder(verify(name), device)


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


def validation_loss(model: GPT, ids: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy of ``model`` over a whole token stream (nats/token).

    Deterministic, unlike a loss estimated on random batches: windows of ``context_length`` tokens
    overlap by half, and every token after the first window is scored with at least half a block of
    context (the first window scores all its tokens).
    """
    block = model.config.context_length
    stride = block // 2
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.ndim != 1 or ids.numel() <= block:
        raise ValueError(f"ids must be a 1-D stream longer than context_length={block}, got shape {tuple(ids.shape)}")
    device = next(model.parameters()).device
    starts = list(range(0, ids.numel() - block, stride))
    total, count = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(starts), batch_size):
            chunk = starts[i:i + batch_size]
            batch = torch.stack([ids[s:s + block + 1] for s in chunk]).to(device)
            logits, _ = model(batch[:, :-1])
            nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")   # (B, T)
            for row, s in zip(nll, chunk):
                scored = row if s == 0 else row[block - stride:]   # only tokens not scored before
                total += scored.double().sum().item()
                count += scored.numel()
    return total / count


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
    temporary folder and renamed into place when complete; an existing ``out`` is replaced only
    with ``force=True`` (the default cache folder is always replaced).
    """
    recipe = _recipe(name)
    device = get_device(device)
    shipped = json.loads((verify(name) / "meta.json").read_text(encoding="utf-8"))
    final = Path(out) if out is not None else data.cache_dir() / "models" / f"{name}-{recipe.key()}"
    if out is not None and final.exists() and not force:
        raise FileExistsError(f"{final} exists; pass force=True (--force) to replace it")
    _train_into(final, name, recipe, device, progress)
    meta = json.loads((final / "meta.json").read_text(encoding="utf-8"))
    return RetrainReport(name, final, meta["val_loss"], shipped["val_loss"], recipe.val_tolerance,
                         meta["train_seconds"])


def load_model(path: str | os.PathLike, device: str | torch.device | None = None,
               tag: str = "last") -> tuple[GPT, Tokenizer]:
    """``(model, tokenizer)`` from a training run's directory (``python -m lmcore train --out DIR``)
    or a zoo model's folder: the GPT in eval mode on ``device``, and its ``tokenizer.json``."""
    device = get_device(device)
    folder = Path(path)
    if (folder / "model.safetensors").is_file() and (folder / "meta.json").is_file():
        return _load_folder(folder, device)
    ckpt_path = resolve_checkpoint(path, tag)
    state = load_checkpoint(ckpt_path, map_location="cpu")
    if not state.get("model_config"):
        raise ValueError(f"{ckpt_path} has no model config: it was not written for a GPT")
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    tok_path = ckpt_path.parent / "tokenizer.json"
    if not tok_path.is_file():
        raise FileNotFoundError(f"no tokenizer next to the checkpoint: {tok_path} is missing")
    return model.to(device).eval(), load_tokenizer(tok_path)


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
