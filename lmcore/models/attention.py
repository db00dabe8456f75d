"""Causal self-attention, the one layer of a transformer where tokens exchange information
(chapter 5; the cached path is chapter 7, RoPE and ALiBi chapter 6).

``CausalSelfAttention`` computes queries, keys and values with one projection, rotates queries and
keys when RoPE is on, appends keys and values to a ``KVCache`` when one is given, and then computes
``softmax(Q Kᵀ / √d + mask) V`` either with PyTorch's fused ``scaled_dot_product_attention``
("sdpa") or written out ("reference", which can also return the attention weights). Grouped-query
attention shares each key/value head between ``n_head // n_kv_head`` query heads.

On a GPU, SDPA picks its flash kernel only for queries, keys and values of one half-precision
dtype with no explicit mask (``is_causal`` or single-token decoding): hence RoPE tables in the
queries' dtype (``activation_dtype``), and a note wherever a mask is passed instead.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kv_cache import KVCache
from .positional import apply_rope

if TYPE_CHECKING:
    from .gpt import GPTConfig

__all__ = ["AttentionInputs", "CausalSelfAttention", "activation_dtype", "band_mask"]


def activation_dtype(device: torch.device, weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype a linear layer with ``weight_dtype`` weights on ``device`` outputs here and now:
    the autocast dtype inside ``torch.autocast`` for that device type (which leaves float64 alone),
    else ``weight_dtype``. Queries, keys and values, and so the KV cache, have this dtype."""
    if (weight_dtype != torch.float64 and torch.amp.is_autocast_available(device.type)
            and torch.is_autocast_enabled(device.type)):
        return torch.get_autocast_dtype(device.type)
    return weight_dtype


class AttentionInputs(NamedTuple):
    """What every attention layer needs besides ``x``, computed once per forward pass.

    ``rope``: ``(cos, sin)`` each ``(T, head_dim/2)``, or ``None``.
    ``mask``: ``None``, a boolean ``(T, L)`` mask (True = may attend) or an additive float bias
    ``(n_head, T, L)`` (ALiBi, with ``-inf`` on future keys); ``L`` = cached + new positions.
    Any mask rules out SDPA's flash kernel on a GPU (it takes ``is_causal`` only).
    ``is_causal``: the plain lower-triangular mask with ``T == L`` (sdpa builds it itself).
    ``cache``: the ``KVCache`` to read from and write to, or ``None``.
    """
    rope: tuple[torch.Tensor, torch.Tensor] | None
    mask: torch.Tensor | None
    is_causal: bool
    cache: KVCache | None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx          # which buffer of the KV cache belongs to this layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        self.attn_impl = config.attn_impl
        # one matmul for queries (n_head heads) and keys/values (n_kv_head heads each)
        self.c_attn = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_dim,
                                bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, T, n_embd) -> (output (B, T, n_embd), weights (B, n_head, T, L) or None)."""
        B, T, C = x.shape
        q_size, kv_size = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        q, k, v = self.c_attn(x).split([q_size, kv_size, kv_size], dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)       # (B, nh, T, hd)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)    # (B, nkv, T, hd)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)    # (B, nkv, T, hd)
        if inputs.rope is not None:
            q, k = apply_rope(q, *inputs.rope), apply_rope(k, *inputs.rope)
        if inputs.cache is not None:      # keys/values of all earlier positions, (B, nkv, L, hd)
            k, v = inputs.cache.update(self.layer_idx, k, v)
        dropout_p = self.dropout if self.training else 0.0
        if need_weights or self.attn_impl == "reference":
            y, weights = self.reference_attention(q, k, v, inputs, dropout_p)
        else:
            y, weights = F.scaled_dot_product_attention(
                q, k, v, attn_mask=inputs.mask, is_causal=inputs.is_causal, dropout_p=dropout_p,
                enable_gqa=self.n_kv_head != self.n_head), None
        y = y.transpose(1, 2).contiguous().view(B, T, C)    # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y)), weights

    def reference_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            inputs: AttentionInputs, dropout_p: float = 0.0
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """``softmax(Q Kᵀ / √d + bias) V`` spelled out; returns (output, weights (B, nh, T, L))."""
        if self.n_kv_head != self.n_head:     # each key/value head serves a group of query heads
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        T, L = q.shape[2], k.shape[2]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)      # (B, nh, T, L)
        mask = inputs.mask
        if inputs.is_causal:
            mask = torch.ones(T, L, dtype=torch.bool, device=q.device).tril()
        if mask is not None and mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, dim=-1)
        y = F.dropout(weights, p=dropout_p) @ v
        return y, weights


def band_mask(query_pos: torch.Tensor, key_pos: torch.Tensor, window: int | None = None,
              alibi_slopes: torch.Tensor | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Which keys each query may attend to: key position ``j`` from query position ``i`` when
    ``j <= i`` and, with a sliding ``window``, ``i - window < j``.  ``query_pos`` (T,) and ``key_pos``
    (K,) are absolute positions, keys in the order attention reads them.  Returns a bool (T, K) mask
    (True = visible), or with ALiBi's ``alibi_slopes`` (H,) its additive bias (H, T, K) in ``dtype``
    with ``-inf`` at the hidden keys.  An explicit mask rules out SDPA's flash kernel."""
    distance = query_pos[:, None] - key_pos[None, :]                 # (T, K): how far back each key is
    visible = distance >= 0
    if window is not None:
        visible &= distance < window
    if alibi_slopes is None:
        return visible
    bias = (-alibi_slopes[:, None, None] * distance.to(alibi_slopes.dtype)).to(dtype)
    return bias.masked_fill(~visible, float("-inf"))
