"""The model zoo: shipped weights verified against the manifest, retraining from a recipe, errors.

Retraining is tested with a tiny stand-in recipe; the shipped models themselves are only loaded."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import torch

import lmcore
from lmcore import zoo
from lmcore.models import GPT
from lmcore.tokenizers import CharTokenizer

TINY = zoo.Recipe(corpus="toy", description="tiny test recipe",
                  model=dict(context_length=16, n_layer=1, n_head=2, n_embd=16),
                  train=dict(max_steps=3, batch_size=4, warmup_steps=1, eval_interval=3, eval_iters=1),
                  val_tolerance=10.0)


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A private copy of the shipped weights, so tests may corrupt it."""
    root = tmp_path / "weights"
    shutil.copytree(zoo.weights_dir(), root)
    monkeypatch.setattr(zoo, "weights_dir", lambda: root)
    return root


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """An empty weights folder and cache, and the tiny recipe under the name toy-char."""
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "weights"
    monkeypatch.setattr(zoo, "weights_dir", lambda: root)
    monkeypatch.setitem(zoo.RECIPES, "toy-char", TINY)
    return root


def test_every_model_is_shipped_and_verifies():
    manifest = json.loads((zoo.weights_dir() / "manifest.json").read_text())
    assert set(manifest) == set(zoo.RECIPES) == set(zoo.list_models())
    for name in zoo.RECIPES:
        folder = zoo.verify(name)
        assert set(manifest[name]) == set(zoo.FILES)
        assert (folder / "model.safetensors").stat().st_size < 8_000_000          # a few MB each
        info = zoo.model_info(name)
        assert info["recipe_key"] == zoo.RECIPES[name].key(), \
            f"{name}: the shipped weights were trained from another recipe; ship them again"
        assert info["history"] and info["val_loss"] > 0


def test_pretrained_loads_the_shipped_model_without_training(tmp_path, monkeypatch):
    """(How long loading takes is measured in benchmarks/bench_quality.py, column "call s".)"""
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path))          # an empty cache
    monkeypatch.setattr(zoo, "_train", lambda *a, **k: pytest.fail("pretrained() must not train"))
    model, tok = lmcore.pretrained("toy-char", device="cpu")
    assert isinstance(model, GPT) and isinstance(tok, CharTokenizer) and not model.training
    assert set(tok.decode(tok.encode(lmcore.data.ToyLanguage().alphabet))) == set(lmcore.data.ToyLanguage().alphabet)
    assert not any(tmp_path.iterdir()), "loading a shipped model wrote to the cache"


def test_shipped_toy_char_reaches_its_recorded_loss():
    """The shipped weights are the ones meta.json describes: their loss over the validation split,
    recomputed here, equals the recorded one (to float noise across CPU kernels)."""
    model, tok = lmcore.pretrained("toy-char", device="cpu")
    val = zoo.validation_loss(model, torch.tensor(tok.encode(lmcore.data.toy_corpus("val"))))
    info = zoo.model_info("toy-char")
    assert val == pytest.approx(info["val_loss"], abs=1e-4)
    assert val - lmcore.data.ToyLanguage().entropy_per_char < 0.05


def test_validation_loss_equals_a_naive_token_by_token_computation():
    torch.manual_seed(0)
    model = GPT(lmcore.GPTConfig(vocab_size=7, context_length=8, n_layer=1, n_head=1, n_embd=8)).eval()
    ids = torch.randint(7, (41,))
    total = count = 0.0
    for t in range(1, ids.numel()):         # each token with the context validation_loss gives it
        first = t <= 8
        start = 0 if first else ((t - 1 - 8) // 4 + 1) * 4
        ctx = ids[start:t]
        logp = torch.log_softmax(model(ctx[None])[0][0, -1], -1)
        total -= logp[ids[t]].item()
        count += 1
    assert zoo.validation_loss(model, ids) == pytest.approx(total / count, rel=1e-5)
    with pytest.raises(ValueError, match="longer than context_length"):
        zoo.validation_loss(model, ids[:8])


@pytest.mark.parametrize("victim", zoo.FILES)
def test_a_corrupt_shipped_file_is_a_clear_error_naming_it(shipped_copy, victim, monkeypatch):
    monkeypatch.setattr(zoo, "_train", lambda *a, **k: pytest.fail("a corrupt file must not trigger a retrain"))
    path = shipped_copy / "toy-char" / victim
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01                                      # one flipped bit
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"{victim} fails its checksum.*Nothing was retrained"):
        lmcore.pretrained("toy-char", device="cpu")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=f"{victim} is missing"):
        lmcore.pretrained("toy-char", device="cpu")


def test_a_missing_or_corrupt_manifest_is_a_clear_error(shipped_copy):
    (shipped_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json is corrupt"):
        zoo.verify("toy-char")
    (shipped_copy / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        zoo.verify("toy-char")


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'gpt-5'.*\['shakespeare-char', 'toy-char'\]"):
        lmcore.pretrained("gpt-5")
    with pytest.raises(TypeError, match="name must be a str"):
        lmcore.pretrained(3)
    with pytest.raises(TypeError, match="retrain must be a bool"):
        lmcore.pretrained("toy-char", retrain="yes")


def test_ship_then_retrain_reports_the_distance_to_the_shipped_model(tiny_zoo, capsys):
    folder = zoo.ship("toy-char", progress=False)
    assert zoo.verify("toy-char") == folder
    with pytest.raises(FileExistsError, match="force=True"):
        zoo.ship("toy-char", progress=False)                         # never replaced silently
    model, tok = lmcore.pretrained("toy-char", device="cpu", retrain=True, progress=False)
    report = capsys.readouterr().out
    assert "retrained toy-char" in report and "within the tolerance" in report
    shipped, _ = lmcore.pretrained("toy-char", device="cpu")
    # the same recipe on the same machine and thread count gives the same weights, bit for bit
    for a, b in zip(model.state_dict().values(), shipped.state_dict().values()):
        assert torch.equal(a, b)
    r = zoo.retrain_model("toy-char", progress=False)
    assert r.difference == 0.0 and r.within_tolerance and r.path.parent.name == "models"
    leftovers = [p.name for p in r.path.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary folders left behind: {leftovers}"


def test_retrain_into_an_existing_folder_needs_force(tiny_zoo, tmp_path):
    zoo.ship("toy-char", progress=False)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("a user's work")
    with pytest.raises(FileExistsError, match="force=True"):
        zoo.retrain_model("toy-char", out=out, progress=False)
    assert (out / "notes.txt").read_text() == "a user's work"
    zoo.retrain_model("toy-char", out=out, progress=False, force=True)
    assert (out / "model.safetensors").is_file()


def test_retrain_without_the_corpus_says_the_shipped_model_needs_none(tmp_path, monkeypatch):
    monkeypatch.setattr(lmcore.data, "available", lambda name: False)

    def offline(name, url=None, timeout=30.0):
        raise ConnectionError("offline")

    monkeypatch.setattr(lmcore.data, "fetch_corpus", offline)
    with pytest.raises(ValueError, match="needs the corpus 'tinyshakespeare'.*needs no corpus"):
        zoo.retrain_model("shakespeare-char", out=tmp_path / "x", progress=False)


def test_aligned_recipe_trains_on_story_starts(tiny_zoo, monkeypatch):
    """With ``aligned`` the first half of every training batch starts at a story's newline (the
    prompt the chapters generate from), and the fraction is part of the recipe key."""
    aligned = zoo.Recipe(**{**TINY.__dict__, "aligned": 0.5})
    assert aligned.key() != TINY.key()
    monkeypatch.setitem(zoo.RECIPES, "toy-char", aligned)
    seen = []
    original = lmcore.data.get_batch

    def spy(*args, **kwargs):
        x, y = original(*args, **kwargs)
        seen.append(x)
        return x, y

    monkeypatch.setattr(lmcore.data, "get_batch", spy)
    zoo.ship("toy-char", progress=False)
    _, tok = lmcore.pretrained("toy-char", device="cpu")
    newline = tok.encode("\n")[0]
    assert seen and all((x[:2, 0] == newline).all() for x in seen)      # batch_size 4: 2 aligned rows
    assert not all((x[2:, 0] == newline).all() for x in seen)           # the others start anywhere


def test_cli_list_verify_and_ship_without_force():
    run = lambda *a: subprocess.run([sys.executable, "-m", "lmcore", "zoo", *a], capture_output=True, text=True)  # noqa: E731
    listed = run("list")
    assert listed.returncode == 0 and "toy-char" in listed.stdout
    verified = run("verify")
    assert verified.returncode == 0 and verified.stdout.count("ok ") == len(zoo.RECIPES)
    refused = run("ship", "toy-char")
    assert refused.returncode == 2 and "--force" in refused.stderr
    unknown = run("retrain", "gpt-5")
    assert unknown.returncode == 2 and "toy-char" in unknown.stderr


def test_the_package_data_ships_every_weight_file():
    """pip installs (Colab, a wheel) get the weights: pyproject's package-data globs match every file
    the manifest lists, and the manifest itself."""
    import fnmatch
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lmcore.zoo"]
    manifest = json.loads((zoo.weights_dir() / "manifest.json").read_text())
    wanted = ["weights/manifest.json"] + [f"weights/{name}/{file}" for name in manifest for file in manifest[name]]
    for path in wanted:
        assert any(fnmatch.fnmatch(path, g) for g in globs), f"{path} is not in pyproject's package-data"


# --- every folder the zoo writes is verified on every load ---------------------------------------------

# a smaller model than the (tiny) toy-char recipe, as a 1-layer model is smaller than the real toy-char
SMALLER = zoo.Recipe(**{**TINY.__dict__, "model": dict(TINY.model, n_embd=8)})


@pytest.fixture
def cached(tiny_zoo):
    """The cache folder of a retrained tiny toy-char (after shipping it, which retraining compares with)."""
    zoo.ship("toy-char", progress=False)
    return zoo.retrain_model("toy-char", progress=False).path


def _flip(path, where=0.5):
    blob = bytearray(path.read_bytes())
    blob[int(len(blob) * where)] ^= 0x01
    path.write_bytes(bytes(blob))


def test_a_retrained_folder_records_the_checksum_of_every_file(cached):
    recorded = json.loads((cached / zoo.CHECKSUMS).read_text())
    assert recorded == {f: hashlib.sha256((cached / f).read_bytes()).hexdigest() for f in zoo.FILES}
    model, tok = zoo.load_model(cached, device="cpu")
    assert model.config.n_layer == TINY.model["n_layer"] and tok.vocab_size == model.config.vocab_size


@pytest.mark.parametrize("victim", zoo.FILES)
@pytest.mark.parametrize("where", [0.02, 0.5, 0.98])
def test_any_damaged_file_of_a_cached_model_is_refused_with_what_to_do(cached, victim, where):
    _flip(cached / victim, where)
    with pytest.raises(ValueError, match=rf"{victim} fails its checksum.*retrain=True.*lmcore.pretrained\('toy-char'\)"):
        zoo.load_model(cached, device="cpu")


@pytest.mark.parametrize("victim", (*zoo.FILES, zoo.CHECKSUMS))
def test_a_missing_file_of_a_cached_model_says_how_to_recover(cached, victim):
    (cached / victim).unlink()
    with pytest.raises((FileNotFoundError, ValueError), match=r"retrain=True") as info:
        zoo.load_model(cached, device="cpu")
    assert "best.pt" not in str(info.value) and "last.pt" not in str(info.value)


def test_a_one_letter_change_in_a_cached_tokenizer_is_refused(cached):
    path = cached / "tokenizer.json"
    from lmcore.tokenizers import CharTokenizer, load_tokenizer

    chars = "".join(load_tokenizer(path).chars)
    CharTokenizer().train(chars.replace("u", "v")).save(path)           # a valid tokenizer, of the same size
    with pytest.raises(ValueError, match="tokenizer.json fails its checksum"):
        zoo.load_model(cached, device="cpu")


def test_a_smaller_model_placed_in_the_cache_is_not_served_as_toy_char(cached, monkeypatch, tmp_path):
    monkeypatch.setitem(zoo.RECIPES, "toy-char", SMALLER)
    other = zoo.retrain_model("toy-char", out=tmp_path / "one", progress=False).path   # (compares with the shipped)
    monkeypatch.setitem(zoo.RECIPES, "toy-char", TINY)
    assert zoo.load_model(other, device="cpu")[0].config.n_embd == 8        # a consistent folder of its own
    for f in (*zoo.FILES, zoo.CHECKSUMS):                                   # the whole folder swapped in
        shutil.copy(other / f, cached / f)
    with pytest.raises(ValueError, match="holds another model than its recipe says.*recipe key"):
        zoo.load_model(cached, device="cpu")
    with pytest.raises(ValueError, match="holds another model.*n_embd=8, not 16"):
        zoo._load_entry(cached, "toy-char", torch.device("cpu"))           # as pretrained() checks an entry


def test_meta_that_contradicts_its_recipe_is_refused_even_with_matching_checksums(cached):
    meta = json.loads((cached / "meta.json").read_text())
    meta["model_config"]["n_layer"] = 2
    (cached / "meta.json").write_text(json.dumps(meta))
    zoo.folders.write_checksums(cached)                                   # consistent checksums, wrong content
    with pytest.raises(ValueError, match="n_layer=2, not 1"):
        zoo.load_model(cached, device="cpu")


def test_load_model_of_a_shipped_folder_checks_the_manifest(shipped_copy):
    model, _ = zoo.load_model(shipped_copy / "toy-char", device="cpu")
    assert model.config.n_layer == 4
    _flip(shipped_copy / "toy-char" / "tokenizer.json")
    with pytest.raises(ValueError, match="tokenizer.json fails its checksum"):
        zoo.load_model(shipped_copy / "toy-char", device="cpu")
