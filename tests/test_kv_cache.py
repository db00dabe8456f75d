"""KVCache owns its state changes: reorder (beam search) and prefill (one prompt, many samples)."""
import pytest
import torch

from lmcore import GPT, GPTConfig, KVCache, MLPConfig, MLPLanguageModel, generate
from lmcore.decoding import sample_next
from lmcore.models import apply_lora


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**dict(vocab_size=23, context_length=32, n_layer=2, n_head=4, n_embd=32,
                                   n_kv_head=2), **kw})).eval()


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_prefill_fans_one_prompt_out_to_a_batch(pos):
    """Prompt once in a batch-1 cache, prefill a batch-5 cache from it: the next step's logits equal
    those of running the prompt in every row of a batch-5 cache."""
    model = _model(pos_encoding=pos)
    prompt = torch.randint(0, 23, (1, 9), generator=torch.Generator().manual_seed(1))
    nxt = torch.randint(0, 23, (5, 1), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        one = model.make_cache(1)
        model(prompt, kv_cache=one)
        many = model.make_cache(5)
        many.prefill(one)
        assert many.length == 9
        fanned, _ = model(nxt, kv_cache=many)
        direct_cache = model.make_cache(5)
        model(prompt.expand(5, -1), kv_cache=direct_cache)
        direct, _ = model(nxt, kv_cache=direct_cache)
    torch.testing.assert_close(fanned, direct, rtol=0, atol=1e-6)


def test_prefill_refuses_mismatched_caches():
    a, b = KVCache(2, 1, 2, 16, 8), KVCache(2, 3, 2, 16, 8)
    a.advance(4)
    b.advance(1)
    with pytest.raises(ValueError, match="empty cache"):
        b.prefill(a)
    with pytest.raises(ValueError, match="layers, heads or head size"):
        KVCache(3, 3, 2, 16, 8).prefill(a)
    with pytest.raises(ValueError, match="1 row to many"):
        KVCache(2, 3, 2, 16, 8).prefill(KVCache(2, 2, 2, 16, 8))
    with pytest.raises(TypeError, match="KVCache"):
        KVCache(2, 3, 2, 16, 8).prefill("cache")


def test_reorder_follows_the_rows_it_is_given():
    cache = KVCache(n_layer=2, batch_size=3, n_kv_head=1, max_len=4, head_dim=2)
    for layer in range(2):
        k = torch.arange(3.0)[:, None, None, None].expand(3, 1, 2, 2) + 10 * layer
        cache.update(layer, k, -k)
    cache.advance(2)
    rows = torch.tensor([2, 2, 0, 1])                      # duplicates and a bigger batch
    before = [k.clone() for k in cache.keys]
    cache.reorder(rows)
    assert cache.batch_size == 4 and cache.length == 2
    for layer in range(2):
        assert torch.equal(cache.keys[layer], before[layer][rows])
        assert torch.equal(cache.values[layer], -before[layer][rows])
    cache.keys[0][0] += 1                                  # the copies are independent buffers
    assert not torch.equal(cache.keys[0][0], cache.keys[0][1])
    with pytest.raises(ValueError, match="rows"):
        cache.reorder(torch.tensor([[0]]))


def test_generate_drives_the_mlp_like_a_hand_written_loop():
    """One generate() for every model: the MLP reads only its last context_length tokens."""
    torch.manual_seed(0)
    mlp = MLPLanguageModel(MLPConfig(vocab_size=11, context_length=3, n_embd=4, n_hidden=16))
    prompt = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    got = generate(mlp, prompt, 12, temperature=0.9, top_k=5, min_p=0.05,
                   generator=torch.Generator().manual_seed(3))
    g, seq = torch.Generator().manual_seed(3), prompt
    with torch.no_grad():
        for _ in range(12):
            logits, _ = mlp(seq[:, -3:])
            seq = torch.cat([seq, sample_next(logits[:, -1], 0.9, 5, None, 0.05, g)], dim=1)
    assert torch.equal(got, seq)
    stop = int(got[0, 5])
    assert (generate(mlp, prompt[:1], 12, temperature=0.9, top_k=5, min_p=0.05, stop_tokens=stop,
                     generator=torch.Generator().manual_seed(3))[0, 6:] == stop).all()


def test_a_dtype_mismatch_names_the_keys_and_the_values():
    cache = KVCache(1, 1, 2, 8, 4)
    k = torch.zeros(1, 2, 3, 4)
    with pytest.raises(ValueError, match=r"holds torch.float32 on cpu but the keys are torch.float32 \(values torch.bfloat16\)"):
        cache.update(0, k, k.bfloat16())
    assert cache.length == 0 and not cache.keys[0].any()


def test_make_cache_works_with_a_lora_wrapped_output_layer():
    """make_cache read lm_head.weight, which a LoRALinear does not have."""
    model = apply_lora(_model(tie_weights=False), r=2, targets=("lm_head",))
    cache = model.make_cache(2)
    assert cache.keys[0].dtype == torch.float32 and cache.batch_size == 2
