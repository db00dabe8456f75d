"""GPT model and positional encodings: each checked against an independent, hand-written reference."""
import math

import pytest
import torch

from lmcore.models import GPT, AttentionInputs, GPTConfig
from lmcore.models.positional import alibi_bias, alibi_slopes, apply_rope, rope_cos_sin, rope_inv_freq, sinusoidal_table

POS = ["learned", "sinusoidal", "rope", "alibi", "none"]


def tiny(**overrides) -> GPTConfig:
    kw = dict(vocab_size=37, context_length=16, n_layer=2, n_head=4, n_embd=32)
    kw.update(overrides)
    return GPTConfig(**kw)


def pair(seed=0, **overrides):
    """Two models with identical weights, one per attention implementation."""
    torch.manual_seed(seed)
    sdpa = GPT(tiny(attn_impl="sdpa", **overrides)).eval()
    ref = GPT(tiny(attn_impl="reference", **overrides)).eval()
    ref.load_state_dict(sdpa.state_dict())
    return sdpa, ref


# ------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("field,value", [
    ("vocab_size", 0), ("context_length", -1), ("n_layer", 1.5), ("n_head", 3), ("n_kv_head", 3),
    ("n_kv_head", 0), ("dropout", 1.0), ("pos_encoding", "absolute"), ("norm", "sandwich"),
    ("attn_impl", "flash"), ("activation", "relu"), ("rope_scaling", "cubic"), ("layer_norm_eps", 0.0),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny(**{field: value})


def test_config_rejects_rope_scaling_without_rope():
    with pytest.raises(ValueError, match="rope_scaling"):
        tiny(pos_encoding="learned", rope_scaling="linear", rope_scaling_factor=2.0)


def test_model_requires_a_config():
    with pytest.raises(TypeError, match="config"):
        GPT({"vocab_size": 10})


# -------------------------------------------------------------------------- attention implementations
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("pos", POS)
def test_reference_attention_equals_sdpa(pos, norm):
    sdpa, ref = pair(pos_encoding=pos, norm=norm)
    idx = torch.randint(0, 37, (3, 16))
    with torch.no_grad():
        a, la = sdpa(idx, idx)
        b, lb = ref(idx, idx)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(la, lb, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("n_kv_head", [1, 2])
@pytest.mark.parametrize("pos", ["rope", "alibi"])
def test_reference_attention_equals_sdpa_with_grouped_query_attention(pos, n_kv_head):
    sdpa, ref = pair(pos_encoding=pos, n_kv_head=n_kv_head)
    idx = torch.randint(0, 37, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(sdpa(idx)[0], ref(idx)[0], atol=1e-5, rtol=1e-5)


def test_grouped_query_attention_equals_multi_head_with_repeated_kv_heads():
    """GQA with 2 kv heads == ordinary MHA whose kv heads are copies within each group of 2."""
    torch.manual_seed(0)
    gqa = GPT(tiny(n_kv_head=2)).eval()
    mha = GPT(tiny()).eval()
    state = gqa.state_dict()
    hd, C = 8, 32
    for layer in range(2):
        for kind in ("weight", "bias"):
            w = state[f"transformer.h.{layer}.attn.c_attn.{kind}"]
            q, k, v = w.split([C, 2 * hd, 2 * hd], dim=0)
            rep = lambda t: t.reshape(2, hd, *t.shape[1:]).repeat_interleave(2, dim=0).reshape(4 * hd, *t.shape[1:])  # noqa: E731
            state[f"transformer.h.{layer}.attn.c_attn.{kind}"] = torch.cat([q, rep(k), rep(v)])
    mha.load_state_dict(state)
    idx = torch.randint(0, 37, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", POS)
def test_attention_maps_are_causal_distributions_matching_a_manual_softmax(pos):
    torch.manual_seed(1)
    model = GPT(tiny(pos_encoding=pos, n_layer=1)).eval()
    idx = torch.randint(0, 37, (2, 9))
    (maps,) = model.attention_maps(idx)
    assert maps.shape == (2, 4, 9, 9)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 4, 9))
    assert torch.all(maps.triu(1) == 0)
    # recompute layer 0's weights by hand from its parameters
    attn = model.transformer.h[0].attn
    with torch.no_grad():
        x = model.transformer.wte(idx)
        if pos == "learned":
            x = x + model.transformer.wpe.weight[:9]
        if pos == "sinusoidal":
            x = x + sinusoidal_table(16, 32)[:9]
        q, k, _ = attn.c_attn(model.transformer.h[0].ln_1(x)).split(32, dim=2)
        q, k = (t.view(2, 9, 4, 8).transpose(1, 2) for t in (q, k))
        if pos == "rope":
            cos, sin = rope_cos_sin(torch.arange(9), rope_inv_freq(8))
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        scores = q @ k.transpose(-1, -2) / math.sqrt(8)
        if pos == "alibi":
            scores = scores + alibi_bias(alibi_slopes(4), 9, 9)
        scores = scores.masked_fill(torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(maps, scores.softmax(-1), atol=1e-6, rtol=1e-5)


def test_attention_without_positions_is_permutation_equivariant():
    """Without a mask and positions, permuting tokens permutes the outputs the same way."""
    torch.manual_seed(0)
    attn = GPT(tiny(pos_encoding="none")).transformer.h[0].attn.eval()
    x = torch.randn(1, 10, 32)
    perm = torch.randperm(10)
    free = AttentionInputs(rope=None, mask=None, is_causal=False, cache=None)
    with torch.no_grad():
        y, _ = attn(x, free)
        y_perm, _ = attn(x[:, perm], free)
    torch.testing.assert_close(y_perm, y[:, perm], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("pos", POS)
def test_last_token_sees_the_prefix_as_a_set_only_without_positions(pos):
    """Causal attention without positions: the last logits ignore the order of earlier tokens.
    Every positional encoding must break that symmetry."""
    torch.manual_seed(0)
    model = GPT(tiny(pos_encoding=pos, n_layer=1)).eval()   # deeper, earlier positions see different prefixes
    with torch.no_grad():   # sharpen attention: at init it is nearly uniform, which hides positions
        model.transformer.h[0].attn.c_attn.weight.mul_(20)
    idx = torch.randint(0, 37, (1, 12))
    shuffled = torch.cat([idx[:, :-1][:, torch.randperm(11)], idx[:, -1:]], dim=1)
    assert not torch.equal(shuffled, idx)
    with torch.no_grad():
        same = torch.allclose(model(idx)[0][:, -1], model(shuffled)[0][:, -1], atol=1e-5)
    assert same == (pos == "none")


# ---------------------------------------------------------------------------------- positional maths
def test_sinusoidal_table_matches_the_formula():
    table = sinusoidal_table(7, 6)
    for pos in range(7):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_rope_equals_complex_rotation():
    x = torch.randn(1, 1, 5, 8, dtype=torch.float64)
    inv_freq = rope_inv_freq(8)
    cos, sin = rope_cos_sin(torch.arange(5), inv_freq, dtype=torch.float64)
    z = torch.view_as_complex(x.reshape(1, 1, 5, 4, 2).contiguous())
    angles = torch.arange(5, dtype=torch.float64)[:, None] * inv_freq
    expected = torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).reshape(1, 1, 5, 8)
    torch.testing.assert_close(apply_rope(x, cos, sin), expected)


def test_rope_score_depends_only_on_the_offset():
    torch.manual_seed(0)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    inv_freq = rope_inv_freq(8)

    def score(m, n):
        cm, sm = rope_cos_sin(torch.tensor([m]), inv_freq, dtype=torch.float64)
        cn, sn = rope_cos_sin(torch.tensor([n]), inv_freq, dtype=torch.float64)
        return (apply_rope(q.view(1, 1, 1, 8), cm, sm) * apply_rope(k.view(1, 1, 1, 8), cn, sn)).sum().item()

    for m, n in [(5, 2), (9, 9), (3, 7)]:
        for shift in (1, 13, 100):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-10)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)   # different offsets, different scores


def test_rope_linear_scaling_divides_positions():
    inv_freq = rope_inv_freq(8)
    scaled = rope_cos_sin(torch.arange(0, 40, 4), inv_freq, "linear", 4.0)
    plain = rope_cos_sin(torch.arange(10), inv_freq)
    torch.testing.assert_close(scaled, plain)


def test_rope_ntk_scaling_stretches_the_slowest_frequency_by_the_factor():
    plain, ntk = rope_inv_freq(16), rope_inv_freq(16, scaling="ntk", factor=8.0)
    assert ntk[0] == plain[0]                                     # fastest pair unchanged
    assert (plain[-1] / ntk[-1]).item() == pytest.approx(8.0)     # slowest stretched 8x
    assert torch.all(ntk <= plain)


def test_rope_scaled_model_reads_longer_context_with_the_same_weights():
    torch.manual_seed(0)
    short = GPT(tiny(pos_encoding="rope", context_length=16))
    long = GPT(tiny(pos_encoding="rope", context_length=64, rope_scaling="linear", rope_scaling_factor=4.0))
    long.load_state_dict(short.state_dict())        # RoPE has no position parameters
    logits, _ = long(torch.randint(0, 37, (1, 64)))
    assert logits.shape == (1, 64, 37)


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == [2.0 ** -i for i in range(1, 9)]
    assert alibi_slopes(4).tolist() == [2.0 ** -i for i in (2, 4, 6, 8)]
    # 6 heads: the 4-head sequence, then every other slope of the 8-head sequence
    assert alibi_slopes(6).tolist() == [2.0 ** -i for i in (2, 4, 6, 8, 1, 3)]


def test_alibi_bias_matches_a_hand_written_matrix():
    # two heads (slopes 1/16 and 1/256), queries at absolute positions 2 and 3, keys 0..3
    bias = alibi_bias(alibi_slopes(2), q_len=2, k_len=4, offset=2)
    s1, s2 = 2.0 ** -4, 2.0 ** -8
    expected = torch.tensor([
        [[-2 * s1, -1 * s1, 0.0, 1 * s1],
         [-3 * s1, -2 * s1, -1 * s1, 0.0]],
        [[-2 * s2, -1 * s2, 0.0, 1 * s2],
         [-3 * s2, -2 * s2, -1 * s2, 0.0]],
    ])
    torch.testing.assert_close(bias, expected)


# --------------------------------------------------------------------------------- init, params, loss
def test_weights_are_tied_by_default_and_untied_on_request():
    tied, untied = GPT(tiny()), GPT(tiny(tie_weights=False))
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert untied.num_params(non_embedding=False) == tied.num_params(non_embedding=False) + 37 * 32


def test_num_params_matches_a_hand_count():
    C, V, T, L = 32, 37, 16, 2
    block = (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C) + 2 * 2 * C
    expected_all = V * C + T * C + L * block + 2 * C          # + final LayerNorm
    model = GPT(tiny())
    assert model.num_params(non_embedding=False) == expected_all
    assert model.num_params() == expected_all - V * C - T * C
    gqa = GPT(tiny(n_kv_head=1))   # keys and values: one head of 8 dims each instead of 32
    assert gqa.num_params() == model.num_params() - L * 2 * (C * 24 + 24)


def test_gpt2_initialisation_scales_residual_projections():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, context_length=64, n_layer=8, n_head=4, n_embd=256))
    blk = model.transformer.h[3]
    assert blk.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert blk.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.03)
    for w in (blk.attn.c_proj.weight, blk.mlp.c_proj.weight):
        assert w.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.03)
    assert torch.all(blk.attn.c_attn.bias == 0)


def test_loss_is_mean_cross_entropy_ignoring_minus_100():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    idx = torch.randint(0, 37, (2, 8))
    targets = torch.randint(0, 37, (2, 8))
    targets[0, :5] = -100
    logits, loss = model(idx, targets)
    logp = logits.log_softmax(-1)
    kept = [(b, t) for b in range(2) for t in range(8) if targets[b, t] != -100]
    manual = -sum(logp[b, t, targets[b, t]] for b, t in kept) / len(kept)
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    assert logits.shape == (2, 8, 37)


def test_initial_loss_is_near_uniform():
    torch.manual_seed(0)
    idx, targets = torch.randint(0, 37, (2, 4, 16))
    _, loss = GPT(tiny())(idx, targets)
    assert loss.item() == pytest.approx(math.log(37), rel=0.05)


def test_post_norm_output_is_layer_normalised_and_pre_norm_is_not_before_ln_f():
    torch.manual_seed(0)
    idx = torch.randint(0, 37, (2, 10))
    post = GPT(tiny(norm="post"))
    hidden, _ = post.transformer.h[-1](*post._embed(idx, None))
    torch.testing.assert_close(hidden.mean(-1), torch.zeros(2, 10), atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden.var(-1, unbiased=False), torch.ones(2, 10), atol=1e-3, rtol=0)
    pre = GPT(tiny(norm="pre"))
    hidden, _ = pre.transformer.h[-1](*pre._embed(idx, None))
    assert hidden.var(-1, unbiased=False).mean().item() < 0.5   # raw residual stream, small at init


def test_gelu_variants_differ_and_match_their_formulas():
    x = torch.linspace(-3, 3, 101)
    exact = GPT(tiny(activation="gelu")).transformer.h[0].mlp.act(x)
    tanh = GPT(tiny(activation="gelu_new")).transformer.h[0].mlp.act(x)
    torch.testing.assert_close(exact, 0.5 * x * (1 + torch.erf(x / math.sqrt(2))))
    torch.testing.assert_close(tanh, 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))))
    assert not torch.allclose(exact, tanh)


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = GPT(tiny(dropout=0.2))
    idx = torch.randint(0, 37, (2, 8))
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("idx,match", [
    (torch.zeros(2, 0, dtype=torch.long), "empty"),
    (torch.tensor([[1, 2, 37]]), r"token ids in \[0, 37\), got 37"),
    (torch.tensor([[-1, 2]]), r"token ids in \[0, 37\), got -1"),
    (torch.zeros(1, 17, dtype=torch.long), "context_length"),
    (torch.zeros(1, 4), "integer"),
    (torch.zeros(4, dtype=torch.long), "batch, time"),
])
def test_forward_rejects_bad_idx(idx, match):
    with pytest.raises(ValueError, match=match):
        GPT(tiny())(idx)


def test_forward_rejects_mismatched_targets():
    with pytest.raises(ValueError, match="targets"):
        GPT(tiny())(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi", "none"])
def test_forward_traces_without_graph_breaks(pos):
    """torch.compile sees the whole forward (loss included) as one graph: no host read-backs such
    as ``int(idx.max())`` on the training path, which would also stall a GPU every step."""
    model = GPT(GPTConfig(vocab_size=11, context_length=8, n_layer=1, n_head=2, n_embd=16, pos_encoding=pos))
    x = torch.randint(11, (2, 8), generator=torch.Generator().manual_seed(0))
    try:
        explanation = torch._dynamo.explain(model)(x, x)
    finally:
        torch._dynamo.reset()
    assert explanation.graph_break_count == 0, [str(b.reason)[:200] for b in explanation.break_reasons]
    assert explanation.graph_count == 1
