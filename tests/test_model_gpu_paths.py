"""The model's GPU-speed paths, checked on the CPU (issue 20): a padded vocabulary, RoPE tables that
bfloat16 does not round, rotary tables and the KV cache in the autocast dtype, no float64 where a
device (MPS) has none. What only a GPU can show (kernel choice, speed) is checked by construction:
the dtypes and masks SDPA receives."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import lmcore.models.positional as positional
from lmcore import generate
from lmcore.models import GPT, GPTConfig, kv_cache_bytes
from lmcore.models.attention import activation_dtype
from lmcore.models.positional import rope_cos_sin, rope_inv_freq, table_dtype

V = 37


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=V, context_length=32, n_layer=2, n_head=4, n_embd=32)
    base.update(kw)
    return GPTConfig(**base)


def seeded(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny(**kw)).eval()


# ------------------------------------------------------------------------------- padded vocabulary
def test_padded_vocab_size_rounds_up_to_the_multiple():
    gpt2 = dict(vocab_size=50257, context_length=8, n_layer=1, n_head=1, n_embd=8)
    assert GPTConfig(**gpt2).padded_vocab_size == 50257                     # default: no padding
    assert GPTConfig(**gpt2, pad_vocab_to=64).padded_vocab_size == 50304
    assert GPTConfig(**dict(gpt2, vocab_size=128), pad_vocab_to=64).padded_vocab_size == 128
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="pad_vocab_to"):
            GPTConfig(**gpt2, pad_vocab_to=bad)


@pytest.mark.parametrize("tie", [True, False])
def test_a_padded_model_draws_the_weights_of_an_unpadded_one_and_zero_rows(tie):
    plain, padded = seeded(tie_weights=tie), seeded(tie_weights=tie, pad_vocab_to=16)
    assert padded.transformer.wte.weight.shape == (48, 32) and padded.lm_head.weight.shape == (48, 32)
    assert (padded.lm_head.weight is padded.transformer.wte.weight) == tie
    mine = padded.state_dict()
    assert mine.keys() == plain.state_dict().keys()
    for name, value in plain.state_dict().items():
        rows = V if name in ("transformer.wte.weight", "lm_head.weight") else len(value)
        assert torch.equal(mine[name][:rows], value), name               # same seed, same real weights
        assert not mine[name][rows:].any(), name                         # the padding is zero


def test_padded_and_unpadded_give_the_same_loss_gradients_and_samples():
    plain, padded = seeded(pos_encoding="rope"), seeded(pos_encoding="rope", pad_vocab_to=64)
    idx = torch.randint(0, V, (3, 20), generator=torch.Generator().manual_seed(1))
    targets = idx.roll(-1, 1)
    a, loss_a = plain(idx, targets)
    b, loss_b = padded(idx, targets)
    assert b.shape == (3, 20, V)                                           # the padding never shows
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    torch.testing.assert_close(loss_b, loss_a, rtol=0, atol=1e-6)
    loss_a.backward()
    loss_b.backward()
    for (name, p), q in zip(plain.named_parameters(), padded.parameters()):
        torch.testing.assert_close(q.grad[:p.shape[0]], p.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert not padded.transformer.wte.weight.grad[V:].any()   # so AdamW keeps the padding at zero
    prompt = idx[:2, :5]
    for use_cache in (True, False):
        for kw in (dict(temperature=0), dict(temperature=1.0, top_k=10)):
            got = [generate(m, prompt, 20, use_cache=use_cache, generator=torch.Generator().manual_seed(3), **kw)
                   for m in (plain, padded)]
            assert torch.equal(got[0], got[1]), (use_cache, kw)
    with torch.no_grad():   # the cached forward of the padded model gives the uncached logits
        cache = padded.make_cache(3)
        steps = [padded(idx[:, :12], kv_cache=cache)[0]] + [padded(idx[:, t:t + 1], kv_cache=cache)[0]
                                                           for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(steps, 1), b.detach(), rtol=1e-5, atol=1e-6)


def test_a_padded_state_dict_round_trips_through_the_config():
    model = seeded(pad_vocab_to=64, tie_weights=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    again = GPT(GPTConfig(**model.config.to_dict()))
    again.load_state_dict(model.state_dict())
    idx = torch.randint(0, V, (2, 9))
    assert torch.equal(again(idx)[0], model(idx)[0])
    with pytest.raises(RuntimeError, match="size mismatch"):   # an unpadded model cannot take it silently
        GPT(tiny(tie_weights=False)).load_state_dict(model.state_dict())


def test_a_padded_model_still_refuses_ids_beyond_the_vocabulary():
    model = seeded(pad_vocab_to=64)
    bad = torch.tensor([[1, V]])                        # a row exists for id V, a token does not
    with pytest.raises(ValueError, match=rf"token ids in \[0, {V}\), got {V}"):
        model(bad)
    with pytest.raises(ValueError, match="targets"):
        model(torch.tensor([[1, 2]]), bad)
    # where the ids are not read on the host (compiled, or on a GPU) a device-side assert refuses them
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    try:
        assert compiled(torch.tensor([[1, V - 1]]))[0].shape == (1, 2, V)
        with pytest.raises(RuntimeError, match=f"token id >= vocab_size \\({V}\\)"):
            compiled(bad)
    finally:
        torch._dynamo.reset()
    meta = GPT(tiny(pad_vocab_to=64)).to("meta")        # and the assert reads nothing back
    assert meta(torch.zeros(2, 4, dtype=torch.long, device="meta"))[0].shape == (2, 4, V)


def test_a_padded_model_traces_as_one_graph():
    model = GPT(tiny(pad_vocab_to=64))
    x = torch.randint(V, (2, 8), generator=torch.Generator().manual_seed(0))
    try:
        explanation = torch._dynamo.explain(model)(x, x)
    finally:
        torch._dynamo.reset()
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


# ---------------------------------------------------------------------------------- RoPE precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_rope_table_is_not_rounded_by_a_half_precision_model(dtype):
    model = seeded(pos_encoding="rope", context_length=1024, n_head=2)
    exact = model.rope_inv_freq.clone()
    assert exact.dtype == torch.float64
    model.to(dtype)
    assert model.rope_inv_freq.dtype == torch.float64 and torch.equal(model.rope_inv_freq, exact)
    assert model.transformer.wte.weight.dtype == dtype
    positions = torch.arange(512, 1024)
    cos = rope_cos_sin(positions, model.rope_inv_freq, dtype=dtype)[0]
    reference = torch.cos(positions.double()[:, None] * rope_inv_freq(16)[None, :])
    # one rounding of the result: within half an ulp of 1 in bfloat16 (rounded frequencies: 0.18 in
    # bfloat16, 0.07 in float16)
    assert (cos.double() - reference).abs().max() <= 2 ** -9
    model.float()
    assert model.rope_inv_freq.dtype == torch.float64 and torch.equal(model.rope_inv_freq, exact)
    assert model.to("meta").rope_inv_freq.device.type == "meta"


def _record_sdpa(monkeypatch) -> list:
    seen = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, **kw):
        seen.append((q.dtype, k.dtype, v.dtype, attn_mask is None, kw.get("is_causal")))
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)
    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    return seen


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_under_autocast_sdpa_gets_half_precision_q_k_v_without_a_mask(pos, monkeypatch):
    """What the flash kernel needs: one half-precision dtype for q, k and v (RoPE used to promote
    q and k to float32) and no explicit mask, in training and in cached decoding."""
    model = seeded(pos_encoding=pos)
    idx = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(0))
    seen = _record_sdpa(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(idx, idx)
        cache = model.make_cache(2)
        model(idx, kv_cache=cache)
        model(idx[:, :1], kv_cache=cache)
    half = (torch.bfloat16,) * 3
    assert seen == [(*half, True, True)] * 4 + [(*half, True, False)] * 2


# ----------------------------------------------------------------------------------- KV-cache dtype
@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_a_cache_made_under_autocast_holds_the_compute_dtype(pos):
    model = seeded(pos_encoding=pos)
    assert model.make_cache(4).keys[0].dtype == torch.float32
    idx = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cache = model.make_cache(2)
        full = model(idx)[0]
        steps = [model(idx[:, :8], kv_cache=cache)[0]] + [model(idx[:, t:t + 1], kv_cache=cache)[0]
                                                          for t in range(8, 12)]
        sampled = generate(model, idx[:1, :4], 6, temperature=0, use_cache=True)   # used to raise
    assert cache.keys[0].dtype == cache.values[1].dtype == torch.bfloat16
    assert cache.nbytes == model.make_cache(2).nbytes // 2
    torch.testing.assert_close(torch.cat(steps, 1).float(), full.float(), rtol=0.05, atol=0.05)
    assert sampled.shape == (1, 10)
    assert model.make_cache(2, dtype=torch.float64).keys[0].dtype == torch.float64   # explicit wins


def test_gpt2_cache_memory_on_the_meta_device():
    """GPT-2 124M at 1024 positions: 72 MiB per sequence in float32; at batch 64, 2.25 GiB in bfloat16
    (what make_cache gives under bfloat16 autocast) instead of 4.5 GiB."""
    with torch.device("meta"):
        gpt2 = GPT(GPTConfig(vocab_size=50257, context_length=1024, n_layer=12, n_head=12, n_embd=768,
                             pad_vocab_to=64))
    assert gpt2.make_cache(1).nbytes == 72 * 2 ** 20 == kv_cache_bytes(12, 12, 64, 1024, 4)
    assert gpt2.make_cache(64, dtype=torch.bfloat16).nbytes == 2.25 * 2 ** 30
    assert gpt2.transformer.wte.weight.shape == (50304, 768)


def test_activation_dtype_is_what_a_linear_layer_outputs():
    """The prediction make_cache and the RoPE tables rely on, against nn.Linear itself."""
    cpu = torch.device("cpu")
    for autocast in (None, torch.bfloat16, torch.float16):
        for weights in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            layer = torch.nn.Linear(4, 4).to(weights)
            with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                assert activation_dtype(cpu, weights) == layer(torch.ones(1, 4, dtype=weights)).dtype
                assert activation_dtype(torch.device("meta"), weights) == weights   # no autocast there


# --------------------------------------------------------------------------- devices without float64
def test_table_dtype_is_float32_only_where_float64_is_missing():
    assert table_dtype(torch.device("mps")) == table_dtype("mps:0") == torch.float32
    for device in ("cpu", "cuda", "cuda:1", "meta", torch.device("xpu")):
        assert table_dtype(device) == torch.float64
    assert rope_inv_freq(8).dtype == torch.float64 and rope_inv_freq(8).device.type == "cpu"
    assert rope_inv_freq(8, device="meta").dtype == torch.float64


class _NoFloat64(TorchDispatchMode):
    """Raises on any operation that produces a float64 tensor (MPS cannot hold one)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in tree_flatten(out)[0]):
            raise AssertionError(f"{func} made a float64 tensor")
        return out


@pytest.mark.parametrize("pos", ["rope", "sinusoidal", "alibi", "learned"])
def test_with_the_mps_table_the_forward_makes_no_float64(pos, monkeypatch):
    model = seeded(pos_encoding=pos)
    idx = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = model(idx)[0]
    monkeypatch.setattr(positional, "table_dtype", lambda device: torch.float32)   # pretend: MPS
    model.to("cpu")                  # any move rebuilds the table for the device it lands on
    if pos == "rope":
        assert model.rope_inv_freq.dtype == torch.float32
    with torch.no_grad(), _NoFloat64():
        cache = model.make_cache(2)
        logits = torch.cat([model(idx[:, :6], kv_cache=cache)[0], model(idx[:, 6:], kv_cache=cache)[0]], 1)
    torch.testing.assert_close(logits, exact, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- cached decoding, compiled
@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_compiled_cached_decoding_compiles_prefill_and_decode_once(pos):
    """With dynamic shapes the decode step compiles once for every cache length (it used to
    recompile per token: a message formatted from the symbolic cache length, and a graph break on
    RoPE's factor check), and gives the eager logits."""
    model = seeded(pos_encoding=pos)
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    compiled = torch.compile(model, backend=counting, dynamic=True)
    idx = torch.randint(0, V, (2, 26), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            got, cache = [], model.make_cache(2)
            got.append(compiled(idx[:, :6], kv_cache=cache)[0])
            for t in range(6, 26):
                got.append(compiled(idx[:, t:t + 1].contiguous(), kv_cache=cache)[0])
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 2, [g.code[:300] for g in graphs]
    assert cache.length == 26
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(got, 1), model(idx)[0], rtol=1e-5, atol=1e-5)
