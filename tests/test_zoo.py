"""The model zoo: recipes, caching, loading, errors (with tiny stand-in recipes, no long training)."""
from __future__ import annotations

import json

import pytest
import torch

import lmcore
from lmcore import zoo
from lmcore.model import GPT
from lmcore.tokenizers import CharTokenizer

TINY = zoo.Recipe(corpus="toy", description="tiny test recipe",
                  model=dict(block_size=16, n_layer=1, n_head=2, n_embd=16),
                  train=dict(max_steps=3, batch_size=4, warmup_steps=1, eval_interval=3, eval_iters=1))


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path))
    monkeypatch.setitem(zoo.RECIPES, "toy-char", {"cpu": TINY, "cuda": TINY})
    return tmp_path


def test_list_models_names_the_recipes():
    models = lmcore.zoo.list_models()
    assert {"toy-char", "shakespeare-char"} <= set(models) and all(models.values())
    cpu, cuda = zoo.RECIPES["toy-char"]["cpu"], zoo.RECIPES["toy-char"]["cuda"]
    assert cpu.key() != cuda.key() and cpu.model["block_size"] >= 128


def test_train_once_then_load_from_cache(tiny_zoo, monkeypatch):
    model, tok = lmcore.pretrained("toy-char", device="cpu", progress=False)
    assert isinstance(model, GPT) and isinstance(tok, CharTokenizer) and not model.training
    entry = zoo.model_dir("toy-char", "cpu")
    assert entry.name == f"toy-char-{TINY.key()}-{lmcore.__version__}" and entry.parent == tiny_zoo / "models"
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["steps"] == 3 and meta["val_loss"] > 0
    assert set(tok.decode(tok.encode(lmcore.data.ToyLanguage().alphabet))) == set(lmcore.data.ToyLanguage().alphabet)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been loaded, not retrained")

    monkeypatch.setattr(zoo, "_train", no_training)
    again, _ = lmcore.pretrained("toy-char", device="cpu")
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="not retrained"):
        lmcore.pretrained("toy-char", device="cpu", retrain=True)
    assert [p.name for p in (tiny_zoo / "models").iterdir() if p.is_dir()] == [entry.name]  # no leftovers


def test_changed_recipe_gets_a_new_cache_entry(tiny_zoo, monkeypatch):
    before = zoo.model_dir("toy-char", "cpu")
    changed = zoo.Recipe(**{**TINY.__dict__, "train": {**TINY.train, "max_steps": 4}})
    monkeypatch.setitem(zoo.RECIPES, "toy-char", {"cpu": changed, "cuda": changed})
    assert zoo.model_dir("toy-char", "cpu") != before


def test_errors(tiny_zoo, monkeypatch):
    with pytest.raises(ValueError, match="unknown model 'gpt-5'.*toy-char"):
        lmcore.pretrained("gpt-5")
    with pytest.raises(TypeError, match="name must be a str"):
        lmcore.pretrained(3)
    monkeypatch.setattr(lmcore.data, "available", lambda name: False)

    def offline(name, url=None, timeout=30.0):
        raise ConnectionError("offline")

    monkeypatch.setattr(lmcore.data, "fetch_corpus", offline)
    with pytest.raises(ValueError, match="needs the corpus 'tinyshakespeare'"):
        lmcore.pretrained("shakespeare-char", device="cpu", progress=False)


def test_aligned_recipe_trains_on_story_starts(tiny_zoo, monkeypatch):
    """With ``aligned`` the first half of every training batch starts at a story's newline (the
    prompt the chapters generate from), and the fraction is part of the cache key."""
    aligned = zoo.Recipe(**{**TINY.__dict__, "aligned": 0.5})
    assert aligned.key() != TINY.key()
    monkeypatch.setitem(zoo.RECIPES, "toy-char", {"cpu": aligned, "cuda": aligned})
    seen = []
    original = lmcore.data.get_batch

    def spy(*args, **kwargs):
        x, y = original(*args, **kwargs)
        seen.append(x)
        return x, y

    monkeypatch.setattr(lmcore.data, "get_batch", spy)
    _, tok = lmcore.pretrained("toy-char", device="cpu", progress=False)
    newline = tok.encode("\n")[0]
    assert seen and all((x[:2, 0] == newline).all() for x in seen)      # batch_size 4: 2 aligned rows
    assert not all((x[2:, 0] == newline).all() for x in seen)           # the others start anywhere
