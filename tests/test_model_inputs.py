"""Bad input to lmcore.models (issue 15, items 13 and 14): every argument that cannot work raises a
TypeError/ValueError naming it, at the call that received it; and valid input still works exactly."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmcore.models import GPT, GPTConfig, KVCache, MLPConfig, MLPLanguageModel
from lmcore.models.hf_gpt2 import from_hf_gpt2, gpt2_config_from_hf
from lmcore.models.positional import alibi_bias, alibi_slopes, apply_rope, rope_cos_sin, rope_inv_freq, sinusoidal_table

BASE = dict(vocab_size=37, context_length=16, n_layer=2, n_head=4, n_embd=32)
HF = dict(n_embd=16, n_layer=1, n_head=2, vocab_size=10, n_positions=8)


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**BASE, **kw})


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(tiny()).eval()


IDX = torch.zeros(1, 4, dtype=torch.long)


# --------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("kw,error,match", [
    (dict(bias="yes"), TypeError, "bias must be True or False"),
    (dict(bias=None), TypeError, "bias must be True or False"),
    (dict(tie_weights="no"), TypeError, "tie_weights must be True or False"),   # "no" is truthy
    (dict(layer_norm_eps="1e-5"), TypeError, "layer_norm_eps"),
    (dict(layer_norm_eps=math.inf), ValueError, "layer_norm_eps"),
    (dict(pos_encoding="rope", rope_base=math.inf), ValueError, "rope_base"),
    # head_dim 2: the NTK base exponent head_dim / (head_dim - 2) divided by zero when the model was built
    (dict(pos_encoding="rope", n_embd=8, rope_scaling="ntk", rope_scaling_factor=2.0), ValueError, "head_dim >= 4"),
    # settings that would do nothing at all
    (dict(pos_encoding="rope", rope_scaling_factor=2.0), ValueError, "rope_scaling_factor=2.0 has no effect"),
    (dict(pos_encoding="learned", rope_base=500.0), ValueError, "rope_base=500.0 needs pos_encoding='rope'"),
])
def test_gpt_config_rejects_at_construction(kw, error, match):
    with pytest.raises(error, match=match):
        tiny(**kw)


def test_configs_store_numpy_integers_as_python_ints():
    """A numpy int64 once overflowed NGramConfig's vocab_size ** n check silently (and cannot be
    written to meta.json); every integer field comes out a Python int."""
    from lmcore.models import NGramConfig
    with pytest.raises(ValueError, match="int64"):
        NGramConfig(np.int64(5), np.int64(50_000))
    config = tiny(n_embd=np.int64(32), n_kv_head=np.int64(2))
    assert type(config.n_embd) is int and type(config.n_kv_head) is int
    assert json.loads(json.dumps(config.to_dict()))["n_embd"] == 32
    assert type(MLPConfig(np.int64(5), 3, 4, 8).vocab_size) is int


# ------------------------------------------------------------------------------------ GPT.forward
@pytest.mark.parametrize("targets,error,match", [
    (torch.zeros(1, 4), TypeError, "targets must hold integer token ids, got a tensor of torch.float32"),
    (torch.full((1, 4), 37), ValueError, r"targets must hold token ids in \[0, 37\), got 37"),
    (torch.tensor([[0, -100, -5, 1]]), ValueError, r"targets must hold token ids in \[0, 37\), got -5"),
    ([[0, 1, 2, 3]], ValueError, "targets must be a tensor"),
])
def test_forward_rejects_bad_targets(model, targets, error, match):
    with pytest.raises(error, match=match):
        model(IDX, targets)


def test_minus_100_targets_are_still_ignored(model):
    targets = torch.tensor([[3, -100, 5, -100]])
    logits, loss = model(IDX, targets)
    want = F.cross_entropy(logits[0, [0, 2]], torch.tensor([3, 5]))
    torch.testing.assert_close(loss, want, rtol=0, atol=0)


@pytest.mark.parametrize("idx,error,match", [
    (torch.zeros(1, 4, dtype=torch.bool), TypeError, "integer token ids"),
    (torch.zeros(1, 4, dtype=torch.uint8), TypeError, "idx must be int64 or int32"),
])
def test_forward_rejects_idx_dtypes_the_embedding_cannot_read(model, idx, error, match):
    with pytest.raises(error, match=match):
        model(idx)


def test_last_only_must_be_a_bool(model):
    with pytest.raises(TypeError, match="last_only must be True or False"):
        model(IDX, last_only="no")


def test_checks_read_no_values_off_the_cpu():
    """On an accelerator the ids are not read back (that would sync the device every step): run the
    whole forward, targets and cache included, on the meta device, where any read-back raises."""
    torch.manual_seed(0)
    meta = GPT(tiny()).to("meta")
    idx = torch.full((2, 4), 99, dtype=torch.long, device="meta")   # out of range, but unreadable here
    logits, loss = meta(idx, idx)
    assert logits.device.type == "meta" and logits.shape == (2, 4, 37)
    cache = meta.make_cache(2)
    meta(idx, kv_cache=cache)
    cache.reorder(torch.tensor([1, 0], device="meta"))
    with pytest.raises(TypeError, match="targets must hold integer token ids"):   # the dtype still is checked
        meta(idx, idx.float())


# -------------------------------------------------------------------------------------- KV cache
@pytest.mark.parametrize("make,idx,match", [
    (lambda m: KVCache(2, 1, 4, 16, 4), IDX, "head_dim=4 but the keys have head_dim=8"),
    (lambda m: m.make_cache(2), IDX, "batch_size=2 but the keys have batch_size=1"),     # silently broadcast before
    (lambda m: m.make_cache(1), torch.zeros(2, 4, dtype=torch.long), "batch_size=1 but the keys have batch_size=2"),
    (lambda m: KVCache(2, 1, 2, 16, 8), IDX, "n_kv_head=2 but the keys have n_kv_head=4"),
    (lambda m: KVCache(3, 1, 4, 16, 8), IDX, "kv_cache has 3 layers but the model has 2"),
    (lambda m: m.make_cache(1, dtype=torch.float64), IDX, "holds torch.float64 on cpu but the keys are torch.float32"),
    (lambda m: {}, IDX, "kv_cache must be a KVCache"),
])
def test_a_cache_that_does_not_fit_is_named(model, make, idx, match):
    cache = make(model)
    with pytest.raises((TypeError, ValueError), match=match):
        model(idx, kv_cache=cache)
    if isinstance(cache, KVCache):
        assert cache.length == 0 and all(torch.count_nonzero(k) == 0 for k in cache.keys)   # nothing written


@pytest.mark.parametrize("call,error,match", [
    (lambda m: m.make_cache(1, max_len=0), ValueError, "max_len"),          # was silently context_length
    (lambda m: m.make_cache(1, max_len=17), ValueError, "max_len"),
    (lambda m: m.make_cache(1, dtype=torch.long), TypeError, "floating-point"),   # would truncate keys
    (lambda m: KVCache(2, 1, 2, 4, 8).advance(-1), ValueError, "n_tokens"),
    (lambda m: KVCache(2, 1, 2, 4, 8).advance(5), ValueError, "n_tokens"),
    (lambda m: KVCache(2, 1, 2, 4, 8).update(2, torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 1, 8)), ValueError, "layer"),
    (lambda m: KVCache(2, 1, 2, 4, 8).update(0, torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 2, 8)), ValueError,
     "k and v"),
    (lambda m: KVCache(2, 2, 2, 4, 8).reorder(torch.tensor([2])), ValueError, r"row indices in \[0, 2\)"),
    (lambda m: KVCache(2, 2, 2, 4, 8).reorder(torch.tensor([-1])), ValueError, r"row indices in \[0, 2\)"),
    (lambda m: KVCache(2, 2, 2, 4, 8).reorder(torch.tensor([], dtype=torch.long)), ValueError, "rows is empty"),
])
def test_cache_arguments(model, call, error, match):
    with pytest.raises(error, match=match):
        call(model)


def test_valid_cache_use_is_unchanged(model):
    """The cached forward still equals the uncached one exactly for a fitting cache."""
    idx = torch.randint(37, (2, 6), generator=torch.Generator().manual_seed(0))
    cache = model.make_cache(2)
    first, _ = model(idx[:, :4], kv_cache=cache)
    last, _ = model(idx[:, 4:], kv_cache=cache)
    torch.testing.assert_close(torch.cat([first, last], 1), model(idx)[0], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------- positional
@pytest.mark.parametrize("call,match", [
    (lambda: sinusoidal_table(-1, 8), "context_length"),
    (lambda: sinusoidal_table(4.0, 8), "context_length"),
    (lambda: sinusoidal_table(4, 0), "n_embd"),
    (lambda: sinusoidal_table(4, 8, base=math.inf), "base"),
    (lambda: rope_inv_freq(8, base=math.nan), "base"),
    (lambda: rope_inv_freq(8, scaling="cubic"), "scaling"),
    (lambda: rope_inv_freq(8, scaling="ntk", factor=0.0), "factor"),
    (lambda: rope_inv_freq(2, scaling="ntk", factor=2.0), "head_dim >= 4"),
    (lambda: rope_cos_sin([0, 1], rope_inv_freq(8)), "positions"),
    (lambda: rope_cos_sin(torch.arange(4), rope_inv_freq(8), "linear", 0.0), "factor"),
    (lambda: apply_rope(torch.zeros(1, 1, 4, 8), torch.zeros(4, 3), torch.zeros(4, 3)), "cos and sin of shape"),
    (lambda: apply_rope(torch.zeros(1, 1, 4, 8), torch.zeros(5, 4), torch.zeros(5, 4)), "cos and sin of shape"),
    (lambda: alibi_slopes(2.5), "n_head"),
    (lambda: alibi_slopes("4"), "n_head"),
    (lambda: alibi_bias(alibi_slopes(4), -1, 4), "q_len"),
    (lambda: alibi_bias(alibi_slopes(4), 2, 1.5), "k_len"),
    (lambda: alibi_bias(alibi_slopes(4)[None], 2, 2), "slopes"),
])
def test_positional_functions_name_the_bad_argument(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


# -------------------------------------------------------------------------------------------- MLP
def test_mlp_checks_targets_chunk_and_ids():
    torch.manual_seed(0)
    mlp = MLPLanguageModel(MLPConfig(5, 3, 4, 8))
    idx = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(TypeError, match="targets must hold integer token ids"):
        mlp(idx, torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"targets must hold token ids in \[0, 5\), got 5"):
        mlp(idx, torch.full((1, 2), 5))
    with pytest.raises(TypeError, match="last_only"):
        mlp(idx, last_only="no")
    with pytest.raises(ValueError, match="chunk"):
        mlp.cross_entropy(torch.zeros(5, dtype=torch.long), chunk=0)
    with pytest.raises(TypeError, match="ids must hold integer token ids"):
        mlp.cross_entropy(torch.zeros(5))


def test_mlp_never_reads_its_padding_row_for_an_unchecked_id(monkeypatch):
    """Where the ids' values are not read (a GPU, torch.compile), id == vocab_size would pick the
    padding row silently; it fails in the embedding like any id out of range. Simulated on the CPU
    by switching the value check off as torch.compile does."""
    torch.manual_seed(0)
    mlp = MLPLanguageModel(MLPConfig(5, 3, 4, 8))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with pytest.raises(IndexError):
        mlp(torch.tensor([[0, 5]]))
    valid = torch.tensor([[0, 4, 1]])
    monkeypatch.undo()
    torch.testing.assert_close(mlp.contexts(valid), torch.tensor([[[5, 5, 0], [5, 0, 4], [0, 4, 1]]]), rtol=0, atol=0)


# --------------------------------------------------------------------------------- HF config.json
def hf_dir(tmp_path, config_text: str, weights: dict | None = None):
    from safetensors.torch import save_file
    (tmp_path / "config.json").write_text(config_text)
    save_file(weights or {"wte.weight": torch.zeros(10, 16)}, str(tmp_path / "model.safetensors"))
    return tmp_path


@pytest.mark.parametrize("text,error,match", [
    ("{not json", ValueError, r"config\.json is not valid JSON"),
    ("[1, 2]", ValueError, r"config\.json holds a JSON list"),
    (json.dumps({"n_embd": 16}), ValueError, r"config\.json: the GPT-2 config lacks \['vocab_size', 'n_positions'"),
    (json.dumps({**HF, "n_layer": "1"}), TypeError, r"config\.json: n_layer must be an int"),
    (json.dumps({**HF, "layer_norm_epsilon": "1e-5"}), TypeError, r"config\.json: layer_norm_eps"),
    (json.dumps({**HF, "tie_word_embeddings": "false"}), TypeError, r"config\.json: tie_weights must be True or False"),
])
def test_malformed_config_json_is_named(tmp_path, text, error, match):
    with pytest.raises(error, match=match):
        from_hf_gpt2(hf_dir(tmp_path, text))


def test_weights_that_do_not_fit_their_config_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)model\.safetensors do not fit .*Missing key"):
        from_hf_gpt2(hf_dir(tmp_path, json.dumps(HF)))


def test_gpt2_config_from_hf_checks_its_dict():
    with pytest.raises(TypeError, match="hf_config must be a dict"):
        gpt2_config_from_hf([1, 2])
    with pytest.raises(ValueError, match="lacks"):
        gpt2_config_from_hf({})
