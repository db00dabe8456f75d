"""The mathematical properties chapter 6 teaches, checked on ``lmcore.models.positional`` and ``lmcore.GPT``
against naive references written here (explicit loops, complex-number rotations, hand-typed matrices).
"""
from __future__ import annotations

import math

import pytest
import torch

from lmcore.models import GPT, GPTConfig
from lmcore.models.positional import alibi_bias, alibi_slopes, apply_rope, rope_cos_sin, rope_inv_freq, sinusoidal_table


def rotation_for_offset(k: int, n_embd: int, base: float = 10000.0) -> torch.Tensor:
    """Block-diagonal R_k with one 2x2 block per frequency, built from the angle k·ω_i alone."""
    R = torch.zeros(n_embd, n_embd, dtype=torch.float64)
    for i in range(n_embd // 2):
        phi = k / base ** (2 * i / n_embd)
        c, s = math.cos(phi), math.sin(phi)
        # (sin(a + φ), cos(a + φ)) = [[c, s], [-s, c]] @ (sin a, cos a)
        R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    return R


def test_sinusoidal_table_matches_the_formula_entry_by_entry():
    table = sinusoidal_table(37, 10)
    for t in range(37):
        for i in range(5):
            angle = t / 10000.0 ** (2 * i / 10)
            assert table[t, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[t, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("k", [1, 3, 17, 250])
def test_sinusoidal_offset_is_a_rotation_independent_of_position(k):
    n_embd = 32
    table = sinusoidal_table(600, n_embd).double()
    R = rotation_for_offset(k, n_embd)
    shifted = table[:-k] @ R.T                      # R_k PE(t) for every t at once
    assert torch.allclose(shifted, table[k:], atol=1e-5)
    assert torch.allclose(R @ R.T, torch.eye(n_embd, dtype=torch.float64), atol=1e-12)   # orthogonal


def test_sinusoidal_dot_product_depends_only_on_the_offset():
    n_embd = 64
    table = sinusoidal_table(400, n_embd).double()
    omega = 10000.0 ** (-torch.arange(0, n_embd, 2, dtype=torch.float64) / n_embd)
    for k in (0, 1, 5, 60):
        dots = (table[: 400 - k] * table[k:]).sum(-1)         # PE(t)·PE(t+k) for every t
        assert torch.allclose(dots, torch.cos(k * omega).sum().expand_as(dots), atol=1e-4)


def rope_by_complex_numbers(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Naive RoPE: read features (2i, 2i+1) as x_2i + j·x_2i+1 and multiply by exp(j·t·base^(-2i/D))."""
    D = x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    z = torch.view_as_complex(x.double().unflatten(-1, (D // 2, 2)).contiguous())
    angle = positions.double()[:, None] * theta
    return torch.view_as_real(z * torch.polar(torch.ones_like(angle), angle)).flatten(-2)


def test_apply_rope_equals_complex_rotation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 16, generator=g, dtype=torch.float64)
    positions = torch.arange(5, 14)
    cos, sin = rope_cos_sin(positions, rope_inv_freq(16), dtype=torch.float64)
    assert torch.allclose(apply_rope(x, cos, sin), rope_by_complex_numbers(x, positions), atol=1e-12)


@pytest.mark.parametrize("offset", [0, 1, 7, 40])
def test_rope_score_depends_only_on_the_offset(offset):
    g = torch.Generator().manual_seed(offset)
    head_dim = 32
    q, k = torch.randn(2, head_dim, generator=g, dtype=torch.float64)
    inv_freq = rope_inv_freq(head_dim)

    def rotated(v: torch.Tensor, pos: int) -> torch.Tensor:
        cos, sin = rope_cos_sin(torch.tensor([pos]), inv_freq, dtype=torch.float64)
        return apply_rope(v.view(1, 1, 1, head_dim), cos, sin).view(head_dim)

    # the score of a query at position m + offset and a key at m, for many m
    scores = torch.stack([rotated(q, m + offset) @ rotated(k, m) for m in (0, 3, 50, 123, 999)])
    assert torch.allclose(scores, scores[0].expand_as(scores), atol=1e-9)
    # ... and it is the score of the unrotated query against the key rotated back by the offset
    expected = (rope_by_complex_numbers(q.view(1, head_dim), torch.tensor([0]))
                @ rope_by_complex_numbers(k.view(1, head_dim), torch.tensor([-offset])).T).item()
    assert scores[0].item() == pytest.approx(expected, abs=1e-9)
    if offset:   # the score does change with the offset: positions are not simply ignored
        assert abs(scores[0].item() - (q @ k).item()) > 1e-6


def test_rope_scalings_stretch_positions_as_documented():
    positions, factor = torch.arange(0, 64), 4.0
    inv_freq = rope_inv_freq(16)
    cos_lin, _ = rope_cos_sin(positions, inv_freq, "linear", factor, dtype=torch.float64)
    cos_plain, _ = rope_cos_sin(positions.double() / factor, inv_freq, dtype=torch.float64)
    assert torch.allclose(cos_lin, cos_plain, atol=1e-12)       # interpolation = positions / factor
    ntk = rope_inv_freq(16, scaling="ntk", factor=factor)
    assert ntk[0].item() == pytest.approx(inv_freq[0].item())        # the fastest pair is untouched
    assert (inv_freq[-1] / ntk[-1]).item() == pytest.approx(factor)   # the slowest is slowed by factor


def test_alibi_bias_for_four_heads_matches_a_hand_written_matrix():
    slopes = alibi_slopes(4)
    assert slopes.tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256]
    distance = torch.tensor([[0, -1, -2, -3],
                             [1, 0, -1, -2],
                             [2, 1, 0, -1],
                             [3, 2, 1, 0]], dtype=torch.float32)
    expected = torch.stack([-m * distance for m in (1 / 4, 1 / 16, 1 / 64, 1 / 256)])
    assert torch.equal(alibi_bias(slopes, 4, 4), expected)
    # a query arriving after 2 cached keys sits at position 2: its row is row 2 of the full matrix
    assert torch.equal(alibi_bias(slopes, 1, 3, offset=2), expected[:, 2:3, :3])


def test_alibi_slopes_for_a_non_power_of_two():
    # 6 heads: the 4-head sequence, then every other slope of the 8-head sequence (2^-1, 2^-3)
    assert alibi_slopes(6).tolist() == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]


def test_gpt_alibi_attention_uses_the_bias():
    """A one-layer ALiBi GPT's attention weights are softmax(q·k/√d - m_h(i-j)) over keys j <= i."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=11, context_length=8, n_layer=1, n_head=4, n_embd=16, pos_encoding="alibi",
                    attn_impl="reference")
    model = GPT(cfg).eval()
    idx = torch.randint(11, (2, 6))
    with torch.no_grad():
        weights = model.attention_maps(idx)[0]                        # (2, 4, 6, 6)
        block = model.transformer.h[0]
        h = block.ln_1(model.transformer.wte(idx))
        q, k, _ = block.attn.c_attn(h).split(16, dim=2)
        q, k = (t.view(2, 6, 4, 4).transpose(1, 2) for t in (q, k))
    i = torch.arange(6)
    slopes = torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256])
    scores = q @ k.transpose(-1, -2) / 2.0 - slopes[:, None, None] * (i[:, None] - i[None, :])
    scores = scores.masked_fill(i[None, :] > i[:, None], float("-inf"))
    assert torch.allclose(weights, scores.softmax(-1), atol=1e-6)


def test_gpt_rope_attention_is_shift_invariant():
    """With RoPE and no absolute embedding, the first layer's attention pattern of a sequence does
    not depend on where it starts: feeding it after a cached prefix gives the same weights."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=13, context_length=24, n_layer=1, n_head=2, n_embd=16, pos_encoding="rope",
                    attn_impl="reference")
    model = GPT(cfg).eval()
    idx = torch.randint(13, (1, 8))
    with torch.no_grad():
        block = model.transformer.h[0]
        h = block.ln_1(model.transformer.wte(idx))
        q, k, _ = block.attn.c_attn(h).split(16, dim=2)
        q, k = (t.view(1, 8, 2, 8).transpose(1, 2) for t in (q, k))
        patterns = []
        for start in (0, 5, 16):
            cos, sin = rope_cos_sin(torch.arange(start, start + 8), model.rope_inv_freq)
            scores = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2)
            patterns.append(scores)
        first = model.attention_maps(idx)[0]
    for p in patterns[1:]:
        assert torch.allclose(p, patterns[0], atol=1e-5)
    causal = torch.ones(8, 8, dtype=torch.bool).tril()
    expected = (patterns[0] / math.sqrt(8)).masked_fill(~causal, float("-inf")).softmax(-1)
    assert torch.allclose(first, expected, atol=1e-6)
