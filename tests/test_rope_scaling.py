"""YaRN and dynamic NTK in ``lmcore.models.positional``, checked against the paper's formulas written
out here with plain floats, and against Hugging Face's rotary code where ``transformers`` is installed.
"""
from __future__ import annotations

import math

import pytest
import torch

from lmcore._checks import ArgumentTypeError
from lmcore.models.positional import ROPE_SCALINGS, rope_cos_sin, rope_inv_freq, yarn_mscale


def paper_yarn_freqs(head_dim, base, factor, original_length, alpha=1.0, beta=32.0):
    """Peng et al. (2023), eqs. 16-18: r = L/λ, γ(r) a ramp, h(θ) = (1-γ)θ/s + γθ; one pair at a time."""
    out = []
    for i in range(head_dim // 2):
        theta = base ** (-2 * i / head_dim)
        wavelength = 2 * math.pi / theta
        r = original_length / wavelength
        gamma = 0.0 if r < alpha else 1.0 if r > beta else (r - alpha) / (beta - alpha)
        out.append((1 - gamma) * theta / factor + gamma * theta)
    return out


@pytest.mark.parametrize("head_dim,base,factor,length", [(64, 10000.0, 4.0, 1024), (16, 500.0, 8.0, 512),
                                                         (128, 1e6, 2.5, 4096)])
def test_yarn_frequencies_follow_the_papers_ramp(head_dim, base, factor, length):
    got = rope_inv_freq(head_dim, base, "yarn", factor, original_length=length)
    want = paper_yarn_freqs(head_dim, base, factor, length)
    assert got.tolist() == pytest.approx(want, rel=1e-12)
    # the example must exercise all three regimes of the ramp, or the test checks less than it claims
    plain = rope_inv_freq(head_dim, base)
    ratio = (plain / got).tolist()
    assert ratio[0] == pytest.approx(1.0) and ratio[-1] == pytest.approx(factor)
    assert any(1.0 + 1e-9 < q < factor - 1e-9 for q in ratio)


def test_yarn_alpha_beta_move_the_ramp():
    got = rope_inv_freq(32, 10000.0, "yarn", 4.0, original_length=256, alpha=2.0, beta=8.0)
    assert got.tolist() == pytest.approx(paper_yarn_freqs(32, 10000.0, 4.0, 256, 2.0, 8.0), rel=1e-12)


@pytest.mark.parametrize("factor", [1.0, 2.0, 4.0, 16.0])
def test_yarn_mscale_is_the_papers_temperature(factor):
    assert yarn_mscale(factor) == pytest.approx(0.1 * math.log(factor) + 1.0)
    inv = rope_inv_freq(16, 10000.0, "yarn", factor, original_length=64)
    pos = torch.arange(50)
    cos, sin = rope_cos_sin(pos, inv, "yarn", factor, dtype=torch.float64)
    angles = pos.double()[:, None] * inv[None, :]
    torch.testing.assert_close(cos, yarn_mscale(factor) * torch.cos(angles), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sin, yarn_mscale(factor) * torch.sin(angles), rtol=1e-12, atol=1e-12)
    # logits scale by mscale² = 1/t: the rotated q·k grows by exactly that
    assert (cos[7] ** 2 + sin[7] ** 2).tolist() == pytest.approx([yarn_mscale(factor) ** 2] * 8)


def test_factor_one_is_plain_rope_for_every_static_scaling():
    pos = torch.arange(300)
    plain_inv = rope_inv_freq(32)
    plain = rope_cos_sin(pos, plain_inv, dtype=torch.float64)
    for scaling, extra in (("linear", {}), ("ntk", {}), ("yarn", {"original_length": 100})):
        inv = rope_inv_freq(32, 10000.0, scaling, 1.0, **extra)
        tol = 1e-15 if scaling == "yarn" else 0.0   # YaRN's blend (1-γ)θ + γθ rounds in the last bit
        torch.testing.assert_close(inv, plain_inv, rtol=tol, atol=0)
        for got, want in zip(rope_cos_sin(pos, inv, scaling, 1.0, dtype=torch.float64), plain):
            torch.testing.assert_close(got, want, rtol=0, atol=1e3 * tol)


def naive_dynamic_base(base, head_dim, factor, seq_len, original_length):
    if seq_len <= original_length:
        return base
    return base * ((factor * seq_len / original_length) - (factor - 1)) ** (head_dim / (head_dim - 2))


@pytest.mark.parametrize("seq_len", [1, 100, 128, 129, 300, 1000])
def test_dynamic_ntk_recomputes_the_base_from_the_length(seq_len):
    head_dim, base, factor, length = 16, 10000.0, 4.0, 128
    inv = rope_inv_freq(head_dim, base, "dynamic", factor)
    pos = torch.arange(seq_len)
    cos, sin = rope_cos_sin(pos, inv, "dynamic", factor, dtype=torch.float64, original_length=length)
    new_base = naive_dynamic_base(base, head_dim, factor, seq_len, length)
    angles = torch.tensor([[p * new_base ** (-2 * i / head_dim) for i in range(head_dim // 2)] for p in range(seq_len)],
                          dtype=torch.float64)
    torch.testing.assert_close(cos, torch.cos(angles), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sin, torch.sin(angles), rtol=1e-10, atol=1e-10)


def test_dynamic_ntk_leaves_the_trained_length_alone_and_follows_seq_len():
    inv = rope_inv_freq(32, 10000.0, "dynamic", 8.0)
    pos = torch.arange(64)
    plain = rope_cos_sin(pos, inv, dtype=torch.float64)
    short = rope_cos_sin(pos, inv, "dynamic", 8.0, dtype=torch.float64, original_length=64)
    for got, want in zip(short, plain):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # one decoding step at position 200 with a KV cache: the base follows seq_len = offset + T
    step = rope_cos_sin(torch.tensor([200]), inv, "dynamic", 8.0, dtype=torch.float64, original_length=64)
    full = rope_cos_sin(torch.arange(201), inv, "dynamic", 8.0, dtype=torch.float64, original_length=64)
    torch.testing.assert_close(step[0][0], full[0][200], rtol=0, atol=1e-15)
    explicit = rope_cos_sin(torch.tensor([3]), inv, "dynamic", 8.0, dtype=torch.float64, original_length=64, seq_len=201)
    torch.testing.assert_close(explicit[0][0], full[0][3], rtol=0, atol=1e-15)
    assert not torch.allclose(full[0][3], plain[0][3])   # beyond 64 every position's angle changes


def _hf():
    try:
        from transformers import LlamaConfig
        from transformers.modeling_rope_utils import _compute_dynamic_ntk_parameters, _compute_yarn_parameters
    except ImportError as exc:   # pragma: no cover - depends on the environment
        pytest.skip(f"transformers' rotary code is not importable: {exc}")
    return LlamaConfig, _compute_dynamic_ntk_parameters, _compute_yarn_parameters


@pytest.mark.parametrize("seq_len", [512, 513, 1000, 2048, 9000])
def test_dynamic_ntk_matches_hugging_face(seq_len):
    LlamaConfig, dynamic, _ = _hf()
    head_dim, factor = 64, 4.0
    cfg = LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, max_position_embeddings=512,
                      rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": factor})
    hf_inv, hf_scale = dynamic(cfg, seq_len=seq_len)
    inv = rope_inv_freq(head_dim, 10000.0, "dynamic", factor)
    pos = torch.arange(seq_len)
    cos, _ = rope_cos_sin(pos, inv, "dynamic", factor, dtype=torch.float64, original_length=512)
    want = torch.cos(pos.double()[:, None] * hf_inv.double()[None, :])   # HF works in float32
    torch.testing.assert_close(cos, want, rtol=0, atol=5e-3 * seq_len / 512)
    # the frequencies themselves, recovered as the angles at position 1 (all below π)
    ours_inv = torch.acos(rope_cos_sin(torch.tensor([1]), inv, "dynamic", factor, dtype=torch.float64,
                                       original_length=512, seq_len=seq_len)[0][0])
    torch.testing.assert_close(ours_inv, hf_inv.double(), rtol=1e-5, atol=1e-7)
    assert hf_scale == 1.0


@pytest.mark.parametrize("head_dim,factor,length", [(64, 4.0, 1024), (128, 8.0, 4096), (32, 2.0, 256)])
def test_yarn_matches_hugging_face_outside_the_ramp_and_in_temperature(head_dim, factor, length):
    LlamaConfig, _, yarn = _hf()
    cfg = LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, max_position_embeddings=int(length * factor),
                      rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": factor,
                                       "original_max_position_embeddings": length})
    hf_inv, hf_scale = yarn(cfg)
    ours = rope_inv_freq(head_dim, 10000.0, "yarn", factor, original_length=length)
    plain = rope_inv_freq(head_dim, 10000.0)
    assert yarn_mscale(factor) == pytest.approx(hf_scale, rel=1e-12)
    turns = (length * plain / (2 * math.pi)).tolist()
    outside = [i for i, r in enumerate(turns) if r > 32 or r < 1]
    inside = [i for i, r in enumerate(turns) if 1 <= r <= 32]
    assert outside and inside
    torch.testing.assert_close(ours[outside], hf_inv.double()[outside], rtol=1e-6, atol=0)
    # inside the ramp both blend between θ/s and θ; the paper ramps in r, HF in the pair index
    assert ((ours[inside] >= plain[inside] / factor - 1e-15) & (ours[inside] <= plain[inside] + 1e-15)).all()


def test_scalings_are_listed():
    assert ROPE_SCALINGS == (None, "linear", "ntk", "yarn", "dynamic")


@pytest.mark.parametrize("call,match", [
    (lambda: rope_inv_freq(16, scaling="yarn", factor=2.0), "original_length"),
    (lambda: rope_inv_freq(16, scaling="yarn", factor=2.0, original_length=0), "original_length"),
    (lambda: rope_inv_freq(16, scaling="yarn", factor=2.0, original_length=64, alpha=4.0, beta=2.0), "beta"),
    (lambda: rope_inv_freq(16, scaling="yarn", factor=0.5, original_length=64), "factor"),
    (lambda: rope_inv_freq(16, scaling="ntk", factor=2.0, original_length=64), "original_length"),
    (lambda: rope_inv_freq(2, scaling="dynamic", factor=2.0), "head_dim"),
    (lambda: rope_inv_freq(16, scaling="rope"), "scaling"),
    (lambda: rope_cos_sin(torch.arange(4), rope_inv_freq(16), "dynamic", 2.0), "original_length"),
    (lambda: rope_cos_sin(torch.arange(4), rope_inv_freq(16), "dynamic", 2.0, original_length=-1), "original_length"),
    (lambda: rope_cos_sin(torch.arange(4), rope_inv_freq(16), "dynamic", 2.0, original_length=4, seq_len=-2),
     "seq_len"),
    (lambda: rope_cos_sin(torch.arange(4), rope_inv_freq(16), "linear", 2.0, original_length=4), "original_length"),
    (lambda: yarn_mscale(0.5), "factor"),
])
def test_bad_arguments_are_refused_by_name(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_integer_lengths_are_type_errors():
    with pytest.raises(ArgumentTypeError, match="original_length"):
        rope_inv_freq(16, scaling="yarn", factor=2.0, original_length=64.0)
    with pytest.raises(ArgumentTypeError, match="seq_len"):
        rope_cos_sin(torch.arange(4), rope_inv_freq(16), "dynamic", 2.0, original_length=4, seq_len=True)


# --- the model uses them ----------------------------------------------------------------------------
def _rope_gpt(scaling, factor=4.0, context_length=32):
    from lmcore.models import GPT, GPTConfig
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, context_length=context_length, n_layer=2, n_head=2, n_embd=16,
                         pos_encoding="rope", rope_scaling=scaling, rope_scaling_factor=factor)).eval()


def test_a_yarn_model_uses_the_yarn_table_from_its_training_length():
    """GPTConfig's training length is context_length / factor; the model's table is rope_inv_freq's."""
    model = _rope_gpt("yarn")
    assert model.config.rope_original_length == 8
    want = rope_inv_freq(8, 10000.0, "yarn", 4.0, original_length=8)
    torch.testing.assert_close(model.rope_inv_freq, want, rtol=0, atol=0)
    idx = torch.randint(11, (2, 32), generator=torch.Generator().manual_seed(1))
    logits, _ = model(idx)
    assert torch.isfinite(logits).all()
    with torch.no_grad():   # the cache reproduces the full forward pass
        cache = model.make_cache(2)
        steps = [model(idx[:, :20], kv_cache=cache)[0]] + [model(idx[:, t:t + 1], kv_cache=cache)[0]
                                                           for t in range(20, 32)]
    torch.testing.assert_close(torch.cat(steps, 1), logits, rtol=1e-5, atol=1e-5)


def test_a_dynamic_ntk_model_is_plain_rope_up_to_its_training_length_and_stretches_beyond():
    dynamic, plain = _rope_gpt("dynamic"), _rope_gpt(None, factor=1.0)
    plain.load_state_dict(dynamic.state_dict())
    idx = torch.randint(11, (1, 32), generator=torch.Generator().manual_seed(2))
    short = idx[:, :8]                                   # within the training length (32 / 4)
    torch.testing.assert_close(dynamic(short)[0], plain(short)[0], rtol=0, atol=0)
    assert not torch.allclose(dynamic(idx)[0], plain(idx)[0])   # past it the base grows


def test_compiled_decoding_refuses_dynamic_ntk():
    from lmcore import generate
    model = _rope_gpt("dynamic")
    with pytest.raises(ValueError, match="rope_scaling='dynamic'"):
        generate(torch.compile(model, backend="eager"), torch.zeros(1, 2, dtype=torch.long), 3)
