"""Sliding-window attention (``GPTConfig.window``): the band mask against a hand-written reference, the
rolling-buffer KV cache (W positions of memory, cached == uncached generation), and the receptive
field W × L."""
import math

import pytest
import torch
import torch.nn.functional as F

from lmcore import GPT, GPTConfig, KVCache, generate
from lmcore.decoding.static import StaticKVCache, static_forward

V = 19


def _model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = {**dict(vocab_size=V, context_length=24, n_layer=2, n_head=2, n_embd=16), **kw}
    return GPT(GPTConfig(**cfg)).eval()


def _ids(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def _naive_logits(model: GPT, idx: torch.Tensor, window: int) -> torch.Tensor:
    """The model's forward pass written out from its weights: softmax attention with an explicit band
    mask ``i - window < j <= i`` built entry by entry, RoPE rotating pairs (2i, 2i+1) by pos·base^(-2i/d)."""
    cfg, (B, T) = model.config, idx.shape
    H, D, C = cfg.n_head, cfg.head_dim, cfg.n_embd
    band = torch.tensor([[i - window < j <= i for j in range(T)] for i in range(T)])
    x = model.transformer.wte.weight[idx]
    if cfg.pos_encoding == "learned":
        x = x + model.transformer.wpe.weight[:T]
    angles = torch.arange(T, dtype=torch.float64)[:, None] * cfg.rope_base ** (-torch.arange(0, D, 2) / D)

    def rotate(t):        # (B, H, T, D): pair (a, b) -> (a cos - b sin, a sin + b cos)
        a, b = t[..., 0::2], t[..., 1::2]
        return torch.stack((a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()), -1).flatten(-2)

    for blk in model.transformer.h:
        h = F.layer_norm(x, (C,), blk.ln_1.weight, blk.ln_1.bias, cfg.layer_norm_eps)
        q, k, v = (h @ blk.attn.c_attn.weight.T + blk.attn.c_attn.bias).split(C, dim=2)
        q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        if cfg.pos_encoding == "rope":
            q, k = rotate(q), rotate(k)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(D)).masked_fill(~band, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ blk.attn.c_proj.weight.T + blk.attn.c_proj.bias
        h = F.layer_norm(x, (C,), blk.ln_2.weight, blk.ln_2.bias, cfg.layer_norm_eps)
        h = F.gelu(h @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias)
        x = x + h @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias
    x = F.layer_norm(x, (C,), model.transformer.ln_f.weight, model.transformer.ln_f.bias, cfg.layer_norm_eps)
    return x @ model.transformer.wte.weight.T


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("attn_impl", ["sdpa", "reference"])
@pytest.mark.parametrize("window,T", [(1, 9), (3, 9), (5, 17), (8, 24), (24, 24)])
def test_window_matches_a_hand_written_band_mask(pos, attn_impl, window, T):
    model = _model(pos_encoding=pos, attn_impl=attn_impl, window=window).double()
    idx = _ids(2, T)
    with torch.no_grad():
        logits, _ = model(idx)
        reference = _naive_logits(model, idx, window)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-10)
    if window < T:    # the reference really differs from full causal attention: the band matters
        assert not torch.allclose(reference, _naive_logits(model, idx, T), atol=1e-6)


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi", "none"])
def test_a_window_at_least_the_sequence_is_bit_identical_to_no_window(pos):
    plain = _model(pos_encoding=pos)
    idx = _ids(2, 11)
    for window in (11, 24, 100):
        windowed = _model(pos_encoding=pos, window=window)
        windowed.load_state_dict(plain.state_dict())
        with torch.no_grad():
            assert torch.equal(windowed(idx)[0], plain(idx)[0])
        for use_cache in (True, False):    # 3 + 8 positions: the window never bites
            assert torch.equal(generate(windowed, idx[:, :3], 8, temperature=0, use_cache=use_cache),
                               generate(plain, idx[:, :3], 8, temperature=0, use_cache=use_cache))


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi", "none"])
@pytest.mark.parametrize("window", [1, 4, 7])
def test_cached_generation_equals_uncached_past_the_window_and_the_context(pos, window):
    model = _model(pos_encoding=pos, window=window, context_length=12, n_kv_head=1)
    with torch.no_grad():   # larger weights: sharp attention and logits, so a wrong key changes the tokens
        for p in model.parameters():
            p.mul_(6)
    prompt = _ids(3, 5)
    new = 40                                     # past W and, several times over, past context_length
    greedy = [generate(model, prompt, new, temperature=0, use_cache=c) for c in (True, False)]
    assert torch.equal(greedy[0], greedy[1])
    sampled = [generate(model, prompt, new, temperature=1.0, use_cache=c,
                        generator=torch.Generator().manual_seed(5)) for c in (True, False)]
    assert torch.equal(sampled[0], sampled[1])


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_rolling_cache_logits_equal_the_full_forward_token_by_token_and_in_chunks(pos):
    """Decode one token at a time and in chunks longer than the window (the T > 1 rolling path):
    every position's logits equal those of one forward pass over the whole sequence."""
    model = _model(pos_encoding=pos, window=4).double()
    idx = _ids(2, 24)
    with torch.no_grad():
        full, _ = model(idx)
        for chunks in ([1] * 24, [6, 1, 1, 9, 2, 5], [3, 7, 14]):
            cache = model.make_cache(2)
            assert cache.slots == 4
            outs, at = [], 0
            for n in chunks:
                outs.append(model(idx[:, at:at + n], kv_cache=cache)[0])
                at += n
            torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("window", [1, 3, 10])
def test_the_cache_holds_window_positions_of_memory(window):
    model = _model(window=window, n_kv_head=1, context_length=32)
    cfg, B = model.config, 3
    cache = model.make_cache(B)
    assert cache.nbytes == 2 * cfg.n_layer * cfg.kv_heads * cfg.head_dim * window * 4 * B
    with torch.no_grad():                       # and stays that size while 32 positions go through it
        model(_ids(B, 20), kv_cache=cache)
        for t in range(12):
            model(_ids(B, 1, seed=t), kv_cache=cache)
    assert cache.length == 32 and cache.nbytes == 2 * cfg.n_layer * cfg.head_dim * window * 4 * B
    assert _model(context_length=32, n_kv_head=1).make_cache(B).nbytes == 32 * cache.nbytes // window


@pytest.mark.parametrize("n_layer,window", [(1, 3), (3, 3), (2, 5)])
def test_receptive_field_is_layers_times_window(n_layer, window):
    """Changing the token at position p changes the logits at positions p .. p + L·(W-1) and at no
    later position (nor any earlier one); without a window it reaches the end of the sequence."""
    model = _model(n_layer=n_layer, window=window, context_length=24).double()
    idx, p = _ids(1, 24), 2
    changed = idx.clone()
    changed[0, p] = (idx[0, p] + 1) % V
    reach = p + n_layer * (window - 1)
    with torch.no_grad():
        moved = (model(changed)[0] - model(idx)[0]).abs().amax(-1)[0]       # (T,) per position
        unwindowed = _model(n_layer=n_layer, context_length=24).double()
        unwindowed.load_state_dict(model.state_dict())
        moved_full = (unwindowed(changed)[0] - unwindowed(idx)[0]).abs().amax(-1)[0]
    assert torch.all(moved[:p] == 0) and torch.all(moved[reach + 1:] == 0)
    assert torch.all(moved[p:reach + 1] > 0)
    assert moved_full[-1] > 0


def test_prefill_copies_a_full_rolling_buffer():
    model = _model(window=4, pos_encoding="rope")
    prompt, nxt = _ids(1, 10), _ids(3, 1, seed=2)
    with torch.no_grad():
        one = model.make_cache(1)
        model(prompt, kv_cache=one)
        many = model.make_cache(3)
        many.prefill(one)
        fanned, _ = model(nxt, kv_cache=many)
        direct, _ = model(torch.cat([prompt.expand(3, -1), nxt], dim=1))
    torch.testing.assert_close(fanned, direct[:, -1:], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="window"):
        _model().make_cache(3).prefill(one)


@pytest.mark.parametrize("pos", ["learned", "alibi"])
def test_static_decode_step_applies_the_window(pos):
    """The compiled path's fixed-shape step (run eagerly here) masks keys outside the window too."""
    model = _model(pos_encoding=pos, window=3).double()
    idx = _ids(2, 15)
    with torch.no_grad():
        full, _ = model(idx)
        cache = StaticKVCache(model, 2)
        logits = [static_forward(model, idx[:, :5], cache)]
        cache.advance(5)
        for t in range(5, 15):
            logits.append(static_forward(model, idx[:, t:t + 1], cache))
            cache.advance(1)
    torch.testing.assert_close(torch.cat(logits, dim=1), full[:, 4:], rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_bad_windows_are_refused(bad):
    with pytest.raises((TypeError, ValueError), match="window"):
        GPTConfig(vocab_size=V, context_length=8, n_layer=1, n_head=1, n_embd=8, window=bad)
    with pytest.raises((TypeError, ValueError), match="window"):
        KVCache(1, 1, 1, 8, 4, window=bad)


@pytest.mark.parametrize("pos", ["rope", "alibi"])
def test_compiled_generation_with_a_window_equals_eager(pos):
    """``generate(torch.compile(model))`` decodes through the static step, whose mask has the window:
    its samples equal the eager windowed model's, which differ from those without the window."""
    torch._dynamo.reset()
    model = _model(pos_encoding=pos, window=3, context_length=12)
    unwindowed = _model(pos_encoding=pos, context_length=12)
    unwindowed.load_state_dict(model.state_dict())
    compiled = torch.compile(model, backend=lambda gm, example_inputs: gm.forward, dynamic=False)
    prompt = _ids(2, 4)

    def sample(m):
        return generate(m, prompt, 30, temperature=1.0, generator=torch.Generator().manual_seed(3))
    try:
        assert torch.equal(sample(compiled), sample(model))
        assert not torch.equal(sample(model), sample(unwindowed))
    finally:
        torch._dynamo.reset()
