"""Hugging Face GPT-2 weights in lmcore.GPT: same logits, same greedy generation (offline, random init)."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lmcore import generate  # noqa: E402
from lmcore.models.hf_gpt2 import from_hf_gpt2, gpt2_config_from_hf  # noqa: E402


def hf_gpt2(**overrides):
    torch.manual_seed(0)
    kw = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=100, n_positions=64)
    kw.update(overrides)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**kw)).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    hf = hf_gpt2()
    path = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(path)
    return hf, path


def test_directory_and_object_give_the_same_logits_as_transformers(saved):
    hf, path = saved
    idx = torch.randint(0, 100, (2, 30))
    with torch.no_grad():
        expected = hf(idx).logits
    for source in (path, str(path), hf):
        model = from_hf_gpt2(source)
        assert model.config.activation == "gelu_new" and model.config.pos_encoding == "learned"
        assert model.lm_head.weight is model.transformer.wte.weight
        with torch.no_grad():
            torch.testing.assert_close(model(idx)[0], expected, atol=1e-5, rtol=1e-5)


def test_greedy_generation_matches_transformers_generate(saved):
    hf, path = saved
    model = from_hf_gpt2(path)
    prompt = torch.randint(0, 100, (1, 6))
    expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=25,
                           do_sample=False, pad_token_id=0)
    assert torch.equal(generate(model, prompt, 25, temperature=0, use_cache=True), expected)
    assert torch.equal(generate(model, prompt, 25, temperature=0, use_cache=False), expected)


def test_a_padded_vocabulary_keeps_gpt2s_logits_and_generation(saved):
    hf, path = saved
    idx = torch.randint(0, 100, (2, 30))
    with torch.no_grad():
        expected = hf(idx).logits
    for source in (path, hf):
        model = from_hf_gpt2(source, pad_vocab_to=64)
        wte = model.transformer.wte.weight
        assert model.config.padded_vocab_size == 128 and wte.shape == (128, 64) and model.lm_head.weight is wte
        assert not wte[100:].any()                                  # the padding rows are zero
        with torch.no_grad():
            torch.testing.assert_close(model(idx)[0], expected, atol=1e-5, rtol=1e-5)
    prompt = torch.randint(0, 100, (1, 6))
    greedy = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=25,
                         do_sample=False, pad_token_id=0)
    assert torch.equal(generate(model, prompt, 25, temperature=0, use_cache=True), greedy)
    with pytest.raises(ValueError, match="pad_vocab_to"):
        from_hf_gpt2(path, pad_vocab_to=0)


def test_pytorch_bin_checkpoint_and_untied_head(tmp_path):
    hf = hf_gpt2(tie_word_embeddings=False)
    with torch.no_grad():
        hf.lm_head.weight.normal_()
    hf.config.to_json_file(tmp_path / "config.json")
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    idx = torch.randint(0, 100, (1, 10))
    for pad in (1, 64):   # an untied head is padded with zero rows too
        model = from_hf_gpt2(tmp_path, pad_vocab_to=pad)
        assert model.lm_head.weight is not model.transformer.wte.weight
        assert model.lm_head.weight.shape[0] == model.config.padded_vocab_size and not model.lm_head.weight[100:].any()
        with torch.no_grad():
            torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_bad_sources_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="not a local directory"):
        from_hf_gpt2(tmp_path / "missing")
    with pytest.raises(ValueError, match="config.json"):
        from_hf_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(hf_gpt2().config.to_dict()))
    with pytest.raises(ValueError, match="model.safetensors"):
        from_hf_gpt2(tmp_path)
    with pytest.raises(TypeError, match="model_or_path"):
        from_hf_gpt2(42)


@pytest.mark.parametrize("change,match", [
    (dict(activation_function="relu"), "activation_function"),
    (dict(n_inner=100), "n_inner"),
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
    (dict(model_type="llama"), "model_type"),
])
def test_unsupported_gpt2_options_are_rejected(change, match):
    config = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=64)
    config.update(change)
    with pytest.raises(ValueError, match=match):
        gpt2_config_from_hf(config)
