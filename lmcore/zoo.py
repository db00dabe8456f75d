"""Small pretrained models, trained on first use and cached: ``model, tok = lmcore.pretrained("toy-char")``.

No weights are downloaded: a *recipe* (corpus, tokenizer, model size, training settings) is
trained on this machine the first time it is asked for, with a progress bar, and the checkpoint
is cached in ``lmcore.data.cache_dir() / "models" / "<name>-<recipe hash>-<lmcore version>"``.
Later calls load it in about a second.  The hash covers the whole recipe, so changing a recipe
(or the lmcore version) never serves a stale model.  On a CUDA GPU a larger recipe is used
automatically (it has its own cache entry).  On a CPU the recipes train on one thread, so that
every machine gets the same weights bit for bit: about 2.3 minutes for ``"toy-char"`` and 1.6
minutes for ``"shakespeare-char"`` on a quiet 2-core machine (``benchmarks/RESULTS.md``).

Recipes:

* ``"toy-char"``: a character-level GPT on the toy language (``lmcore.data.toy_corpus``), with a
  context of 128 characters, enough for whole stories, and half of every batch's windows starting
  at a story's newline (the prompt generation uses); it learns subject-verb agreement across
  relative clauses.  Its validation cross-entropy can be compared with the language's exact
  entropy, ``ToyLanguage().entropy_per_char``.
* ``"shakespeare-char"``: a character-level GPT on Tiny Shakespeare (the corpus must be available
  offline: cached, or in ``$LMCORE_LOCAL_DATA``, or downloadable).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from . import __version__, data
from .checkpoint import load_checkpoint, resolve_checkpoint
from .model import GPT, GPTConfig
from .runtime import get_device, seed_everything, single_thread
from .tokenizers import CharTokenizer, Tokenizer, load_tokenizer
from .trainer import TrainConfig, Trainer

__all__ = ["Recipe", "RECIPES", "pretrained", "list_models", "load_model", "model_dir"]


@dataclass(frozen=True)
class Recipe:
    """How to train one zoo model: corpus, model sizes (``GPTConfig`` fields except the vocabulary
    size) and ``TrainConfig`` fields."""

    corpus: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    #: fraction of each batch's rows that start at a document (a toy story's newline): see
    #: ``lmcore.data.get_batch``; 0 = every window starts anywhere
    aligned: float = 0.0

    def key(self) -> str:
        """A short hash of everything that determines the trained weights."""
        blob = json.dumps({"corpus": self.corpus, "model": self.model, "train": self.train, "seed": self.seed,
                           "aligned": self.aligned, "tokenizer": "char"}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


_TOY_CPU = Recipe(
    corpus="toy",
    description="char-level GPT on the toy language (4 layers, 4 heads, 128 dims, context 128)",
    model=dict(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
    train=dict(max_steps=500, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_steps=50, weight_decay=0.1,
               eval_interval=250, eval_iters=20),
    aligned=0.5,
)
_SHAKESPEARE_CPU = Recipe(
    corpus="tinyshakespeare",
    description="char-level GPT on Tiny Shakespeare (4 layers, 4 heads, 128 dims, context 64)",
    model=dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
    train=dict(max_steps=1000, batch_size=12, lr=2e-3, min_lr=2e-4, warmup_steps=50, weight_decay=0.1,
               eval_interval=250, eval_iters=20),
)
#: name -> {"cpu": recipe, "cuda": larger recipe}; MPS uses the CPU recipe.
RECIPES: dict[str, dict[str, Recipe]] = {
    "toy-char": {
        "cpu": _TOY_CPU,
        "cuda": Recipe(corpus="toy", description=_TOY_CPU.description.replace("4 layers, 4 heads, 128 dims",
                                                                               "6 layers, 6 heads, 384 dims"),
                       model=dict(block_size=128, n_layer=6, n_head=6, n_embd=384, dropout=0.0),
                       train=dict(max_steps=2000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                                  weight_decay=0.1, eval_interval=500, eval_iters=20),
                       aligned=0.5),
    },
    "shakespeare-char": {
        "cpu": _SHAKESPEARE_CPU,
        "cuda": Recipe(corpus="tinyshakespeare",
                       description="char-level GPT on Tiny Shakespeare (6 layers, 6 heads, 384 dims, context 256)",
                       model=dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
                       train=dict(max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                                  weight_decay=0.1, eval_interval=500, eval_iters=50)),
    },
}


def list_models() -> dict[str, str]:
    """Names of the zoo's models and what each is (the CPU recipe's description)."""
    return {name: variants["cpu"].description for name, variants in RECIPES.items()}


def _recipe(name: str, device: torch.device) -> Recipe:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; lmcore.zoo.list_models() has {sorted(RECIPES)}")
    return RECIPES[name]["cuda" if device.type == "cuda" else "cpu"]


def model_dir(name: str, device: str | torch.device | None = None) -> Path:
    """The cache directory of model ``name`` for ``device`` (it exists once trained)."""
    recipe = _recipe(name, get_device(device))
    return data.cache_dir() / "models" / f"{name}-{recipe.key()}-{__version__}"


def load_model(path: str | os.PathLike, device: str | torch.device | None = None,
               tag: str = "last") -> tuple[GPT, Tokenizer]:
    """``(model, tokenizer)`` from a run directory (``python -m lmcore.train --out DIR``, or a zoo
    entry): the GPT in eval mode on ``device``, and the run's ``tokenizer.json``."""
    device = get_device(device)
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


def _train(name: str, recipe: Recipe, device: torch.device, out: Path, progress: bool) -> dict[str, Any]:
    """Train ``recipe`` into the directory ``out``; returns facts about the run."""
    if recipe.corpus == "toy":
        train_text, val_text = data.toy_corpus("train"), data.toy_corpus("val")
        tok = CharTokenizer().train(data.ToyLanguage().alphabet)
    else:
        if recipe.corpus in data.CORPORA and not data.available(recipe.corpus):
            try:
                data.fetch_corpus(recipe.corpus)
            except ConnectionError as e:
                raise ValueError(f"pretrained({name!r}) needs the corpus {recipe.corpus!r}, which is not "
                                 f"available offline: {e}") from e
        text = data.load_text(recipe.corpus)
        cut = int(len(text) * 0.9)
        train_text, val_text = text[:cut], text[cut:]
        tok = CharTokenizer().train(text)
    train_ids = torch.tensor(tok.encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(tok.encode(val_text), dtype=torch.long)
    seed_everything(recipe.seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **recipe.model))
    config = TrainConfig(**recipe.train, seed=recipe.seed, device=str(device), out_dir=str(out),
                         save_best=False, progress=progress)
    if recipe.aligned:
        # Each story follows a newline, and generation is prompted with one: windows that start
        # there teach the model how stories begin, and show it whole stories.
        newline = tok.encode("\n")[0]
        splits = {name: (ids, torch.nonzero(ids == newline).flatten())
                  for name, ids in (("train", train_ids), ("val", val_ids))}

        def batch_fn(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            ids, starts = splits[split]
            return data.get_batch(ids, config.batch_size, recipe.model["block_size"], "cpu", generator,
                                  doc_starts=starts, aligned=recipe.aligned)

        trainer = Trainer(model, config, batch_fn=batch_fn)
    else:
        trainer = Trainer(model, config, train_ids, val_ids)
    t0 = time.perf_counter()
    # One thread on the CPU: whoever trains this recipe gets the same weights, bit for bit, so
    # the numbers the chapters print do not depend on the machine's core count.
    with single_thread() if device.type == "cpu" else contextlib.nullcontext():
        trainer.train()
    tok.save(out / "tokenizer.json")
    _, val = trainer.series("val_loss")
    return {"name": name, "recipe": recipe.key(), "lmcore_version": __version__, "device": device.type,
            "train_seconds": round(time.perf_counter() - t0, 1), "val_loss": val[-1],
            "steps": trainer.step, "tokens": trainer.tokens}


def pretrained(name: str, device: str | torch.device | None = None, retrain: bool = False,
               progress: bool = True) -> tuple[GPT, Tokenizer]:
    """``(model, tokenizer)`` of zoo model ``name`` on ``device``, in eval mode.

    Trains the model the first time (or with ``retrain=True``) and caches it; see the module
    docstring and :func:`list_models`.  The cache entry appears atomically: training happens in
    a temporary directory that is renamed into place when complete.
    """
    device = get_device(device)
    recipe = _recipe(name, device)
    final = model_dir(name, device)
    if retrain or not (final / "last.pt").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        # One process trains, others wait for it (notebooks may be executed in parallel).
        with _lock(final.with_name(final.name + ".lock")):
            if retrain or not (final / "last.pt").is_file():
                _train_into(final, name, recipe, device, progress)
    return load_model(final, device)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (POSIX ``flock``; no locking elsewhere)."""
    try:
        import fcntl
    except ImportError:          # Windows: concurrent first calls just train twice
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _train_into(final: Path, name: str, recipe: Recipe, device: torch.device, progress: bool) -> None:
    """Train in a temporary directory, then rename it to ``final`` (replacing an old entry)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        meta = _train(name, recipe, device, tmp, progress)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if final.exists():   # retrain: move the old entry aside, then swap the new one in
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
            os.replace(final, old / "entry")
            shutil.rmtree(old)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
