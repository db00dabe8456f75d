"""A fixed-shape decode step for ``torch.compile``, used by ``generate`` for a compiled ``GPT`` (the KV
cache of chapter 7, in a form the compiler sees as one graph).

``GPT.forward`` with a ``KVCache`` takes the cache length as a Python int: it picks the positions,
the slice of the cache that attention reads and the mask. ``torch.compile`` specialises on that
int, so a compiled model recompiled on every generated token (with ``dynamic=False`` and, because
the int is an attribute of the cache, with dynamic shapes too) until it hit the recompile limit and
fell back to eager.

Here every shape is fixed for a whole generation:

- ``StaticKVCache`` holds ``(batch, n_kv_head, context_length, head_dim)`` buffers per layer and the
  next position as a one-element *tensor* on the model's device, moved on in place (no host value
  is read or written per token);
- ``static_forward(model, idx, cache)`` runs the model's own blocks on the new tokens, writes their
  keys and values at ``pos, pos + 1, ...`` and lets attention read the whole buffer with a mask that
  hides the positions not written yet (``key position <= query position``) and, with a sliding
  ``window``, the keys that fell out of it (the buffers keep all ``context_length`` positions: the
  rolling buffer of ``KVCache`` would need position-dependent slots, which this fixed graph avoids).

The decode step ``decode_step`` (one token per row) therefore has the same input shapes at every
token and compiles once; the prefill runs ``static_forward`` eagerly (its length changes with the
prompt, and it runs once per call and once per window restart). The embedding is the model's own
(``GPT.embed_tokens``) at tensor positions; ``tests/test_generation_compile.py`` checks that the
logits match ``GPT.forward`` for every position encoding.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import GPT
from ..models.attention import AttentionInputs, activation_dtype, band_mask

__all__ = ["StaticKVCache", "static_forward", "decode_step", "compile_decode_step"]


class StaticKVCache:
    """Key/value buffers of a fixed length with the write position as a device tensor.

    ``keys[l]`` and ``values[l]`` are ``(batch, n_kv_head, max_len, head_dim)``; ``pos`` (1,) int64 on
    the buffers' device is where the next token goes and ``length`` the same number kept on the host
    (from the token counts, never read back from the device).
    """

    def __init__(self, model: GPT, batch_size: int, dtype: torch.dtype | None = None):
        """Buffers for ``model`` and ``batch_size`` rows, in ``dtype`` (default: the dtype the keys are
        computed in, the autocast dtype inside ``torch.autocast``, as ``GPT.make_cache``)."""
        cfg, weight = model.config, next(model.parameters())   # the model's device and dtype
        device, dtype = weight.device, activation_dtype(weight.device, weight.dtype) if dtype is None else dtype
        self.max_len = cfg.context_length
        shape = (batch_size, cfg.kv_heads, self.max_len, cfg.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k``, ``v`` (B, n_kv_head, T, head_dim) at positions ``pos .. pos + T - 1``; return the
        whole buffers (attention masks the positions not written yet)."""
        at = self.pos + torch.arange(k.shape[2], device=k.device)
        keys, values = self.keys[layer], self.values[layer]
        keys.index_copy_(2, at, k.to(keys.dtype))
        values.index_copy_(2, at, v.to(values.dtype))
        return keys, values

    def advance(self, n_tokens: int) -> None:
        """Move the write position on by ``n_tokens`` (in place on the device, and on the host)."""
        self.pos += n_tokens
        self.length += n_tokens

    def reset(self) -> None:
        """Start writing at position 0 again (stale entries stay hidden behind the mask)."""
        self.pos.zero_()
        self.length = 0


def static_forward(model: GPT, idx: torch.Tensor, cache: StaticKVCache) -> torch.Tensor:
    """Logits (B, 1, vocab_size) for the last of the tokens ``idx`` (B, T), which sit at positions
    ``cache.pos .. cache.pos + T - 1``; their keys and values are written into ``cache``.

    ``cache.pos`` itself is not moved (``cache.advance(T)`` does that), so the function has no side
    effect besides the buffer writes. A padded vocabulary's extra columns are dropped, as ``GPT.forward`` does.
    """
    cfg, T = model.config, idx.shape[1]
    positions = cache.pos + torch.arange(T, device=idx.device)             # (T,) absolute positions
    x, rope = model.embed_tokens(idx, positions)
    # the whole buffer, with the positions not written yet (and, with a window, too old) hidden
    key_pos = torch.arange(cache.max_len, device=idx.device)
    slopes = model.alibi_slopes if cfg.pos_encoding == "alibi" else None
    mask = band_mask(positions, key_pos, cfg.window, slopes, x.dtype)
    inputs = AttentionInputs(rope, mask, False, cache)  # type: ignore[arg-type]  # duck-typed cache
    x = model.transformer.drop(x)
    for block in model.transformer.h:
        x, _ = block(x, inputs)
    logits = model.lm_head(model.transformer.ln_f(x[:, -1:]))
    return logits[..., :cfg.vocab_size]


def decode_step(model: GPT, idx: torch.Tensor, cache: StaticKVCache) -> torch.Tensor:
    """One token per row (``idx`` (B, 1)): the function that is compiled (its shapes never change)."""
    return static_forward(model, idx, cache)


def compile_decode_step(compiled: torch.nn.Module) -> Callable[[GPT, torch.Tensor, StaticKVCache], torch.Tensor]:
    """``decode_step`` compiled with the settings of ``compiled`` (what ``torch.compile(model, ...)``
    returned): its ``dynamo_ctx`` is what torch itself wraps the model's ``forward`` with, so the
    backend, ``mode``, ``dynamic`` and ``fullgraph`` the caller chose apply to the decode step."""
    return compiled.dynamo_ctx(decode_step)
