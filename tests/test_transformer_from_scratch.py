"""A transformer forward pass written from the equations equals ``lmcore.GPT``; attention without
positions is permutation-equivariant (and exactly how a causal mask breaks that)."""
from __future__ import annotations

import math

import pytest
import torch

from lmcore.models import GPT, GPTConfig
from lmcore.models.positional import sinusoidal_table

# --- an independent forward pass: plain tensors and the equations, nothing from lmcore.models ------

def layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)          # biased variance, as LayerNorm uses
    return (x - mean) / torch.sqrt(var + eps) * gain + bias


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def attention(x: torch.Tensor, w: dict, p: str, n_head: int, causal: bool = True) -> torch.Tensor:
    """Multi-head self-attention of one sequence ``x`` (T, C) with the weights under prefix ``p``."""
    T, C = x.shape
    d = C // n_head
    qkv = x @ w[p + "c_attn.weight"].T + w[p + "c_attn.bias"]
    q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
    heads = []
    for h in range(n_head):
        sl = slice(h * d, (h + 1) * d)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(d)                       # (T, T)
        if causal:
            future = torch.arange(T)[None, :] > torch.arange(T)[:, None]
            scores = scores.masked_fill(future, float("-inf"))
        heads.append(torch.softmax(scores, dim=-1) @ v[:, sl])              # (T, d)
    return torch.cat(heads, dim=-1) @ w[p + "c_proj.weight"].T + w[p + "c_proj.bias"]


def from_scratch_logits(idx: torch.Tensor, w: dict, cfg: GPTConfig) -> torch.Tensor:
    """Logits (T, V) of one sequence of ids (T,), from a GPT state dict ``w``."""
    T = len(idx)
    x = w["transformer.wte.weight"][idx]
    if cfg.pos_encoding == "learned":
        x = x + w["transformer.wpe.weight"][:T]
    elif cfg.pos_encoding == "sinusoidal":
        pos = torch.arange(T)[:, None].double()
        freq = 10000.0 ** (-torch.arange(0, cfg.n_embd, 2).double() / cfg.n_embd)
        pe = torch.zeros(T, cfg.n_embd, dtype=torch.double)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        x = x + pe.float()
    eps = cfg.layer_norm_eps
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        ln1 = lambda z: layer_norm(z, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)  # noqa: E731
        ln2 = lambda z: layer_norm(z, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)  # noqa: E731
        ffn = lambda z: (gelu(z @ w[p + "mlp.c_fc.weight"].T + w[p + "mlp.c_fc.bias"])  # noqa: E731
                         @ w[p + "mlp.c_proj.weight"].T + w[p + "mlp.c_proj.bias"])
        if cfg.norm == "pre":
            x = x + attention(ln1(x), w, p + "attn.", cfg.n_head)
            x = x + ffn(ln2(x))
        else:
            x = ln1(x + attention(x, w, p + "attn.", cfg.n_head))
            x = ln2(x + ffn(x))
    if cfg.norm == "pre":
        x = layer_norm(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)
    return x @ w["lm_head.weight"].T


def _random_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(**{**dict(vocab_size=11, context_length=16, n_layer=2, n_head=4, n_embd=32), **overrides})
    model = GPT(cfg).eval()
    with torch.no_grad():   # GPT's init zeroes biases and LayerNorm shifts: randomise everything
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("pos_encoding,tie", [("learned", True), ("learned", False),
                                              ("sinusoidal", True), ("none", True)])
def test_from_scratch_forward_equals_gpt(norm, pos_encoding, tie):
    model = _random_gpt(norm=norm, pos_encoding=pos_encoding, tie_weights=tie)
    idx = torch.randint(0, 11, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, _ = model(idx)
    w = model.state_dict()
    for b in range(2):
        torch.testing.assert_close(from_scratch_logits(idx[b], w, model.config), logits[b],
                                   rtol=1e-4, atol=1e-4)


def test_from_scratch_sinusoidal_table_is_lmcores():
    """The table written in this file agrees with the one the model uses."""
    pos = torch.arange(16)[:, None].double()
    freq = 10000.0 ** (-torch.arange(0, 32, 2).double() / 32)
    pe = torch.zeros(16, 32, dtype=torch.double)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    torch.testing.assert_close(sinusoidal_table(16, 32), pe.float(), rtol=0, atol=1e-6)


def test_the_reference_fails_on_a_wrong_model():
    """Sanity of the comparison itself: a GPT with different weights gives different logits."""
    a, b = _random_gpt(seed=0), _random_gpt(seed=1)
    idx = torch.arange(10) % 11
    with torch.no_grad():
        logits, _ = a(idx[None])
    assert not torch.allclose(from_scratch_logits(idx, b.state_dict(), b.config), logits[0], atol=1e-2)


# --- permutation equivariance -----------------------------------------------------------------

def test_attention_without_mask_is_permutation_equivariant():
    """Self-attention with no mask and no positions: f(P x) = P f(x), for GPT's trained-shape weights."""
    model = _random_gpt(pos_encoding="none")
    w = model.state_dict()
    x = torch.randn(9, 32, generator=torch.Generator().manual_seed(2))
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    out = attention(x, w, "transformer.h.0.attn.", 4, causal=False)
    out_perm = attention(x[perm], w, "transformer.h.0.attn.", 4, causal=False)
    torch.testing.assert_close(out_perm, out[perm], rtol=1e-5, atol=1e-5)
    # ... and with the causal mask it is not
    causal = attention(x, w, "transformer.h.0.attn.", 4)
    assert not torch.allclose(attention(x[perm], w, "transformer.h.0.attn.", 4), causal[perm], atol=1e-3)


def test_one_causal_layer_without_positions_sees_its_prefix_as_a_set():
    """One causal layer, no positions: the logits at the last position t depend on the tokens
    0..t-1 only as a multiset, so shuffling them leaves position t's logits unchanged. With learned
    positions the same shuffle changes them; and with two causal layers it does too, because the
    first layer's output at position s already depends on the order (how many tokens precede s):
    a causal stack can infer position without any positional encoding."""
    g = torch.Generator().manual_seed(4)
    idx = torch.randint(0, 11, (1, 12), generator=g)
    perm = torch.cat([torch.randperm(11, generator=g), torch.tensor([11])])  # keep the last token in place
    assert not torch.equal(idx[0, perm], idx[0])
    for pos_encoding, n_layer, invariant in (("none", 1, True), ("learned", 1, False), ("none", 2, False)):
        model = _random_gpt(pos_encoding=pos_encoding, n_layer=n_layer)
        with torch.no_grad():
            a, _ = model(idx)
            b, _ = model(idx[:, perm])
        same_last = torch.allclose(a[0, -1], b[0, -1], rtol=1e-4, atol=1e-4)
        assert same_last == invariant, (pos_encoding, n_layer)
        assert not torch.allclose(a[0, :-1], b[0, :-1], atol=1e-3)


def test_full_gpt_layer_without_mask_is_equivariant_via_reference_attention():
    """A whole block (attention + MLP + LayerNorms) without mask or positions commutes with P;
    checked on lmcore's own Block through its reference attention with no mask."""
    from lmcore.models import AttentionInputs
    model = _random_gpt(pos_encoding="none")
    block = model.transformer.h[0]
    x = torch.randn(1, 9, 32, generator=torch.Generator().manual_seed(5))
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(6))
    no_mask = AttentionInputs(rope=None, mask=None, is_causal=False, cache=None)
    with torch.no_grad():
        y, _ = block(x, no_mask)
        y_perm, _ = block(x[:, perm], no_mask)
    torch.testing.assert_close(y_perm, y[:, perm], rtol=1e-5, atol=1e-5)
