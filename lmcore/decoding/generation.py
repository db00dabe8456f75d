"""Autoregressive generation with or without a KV cache (chapters 7 and 8).

``generate(model, idx, ...)`` drives every neural model of the package: a ``GPT`` (with or without
its KV cache) and an ``MLPLanguageModel`` (which sees a fixed window of ``context_length`` tokens,
so each step feeds it just that window; it has nothing to cache).

``generate`` samples one token at a time with ``lmcore.decoding.sample_next``. With
``use_cache=True`` the prompt is run once (the *prefill*) and then every step feeds only the newest
token, reading earlier keys/values from a preallocated ``KVCache``; with ``use_cache=False`` every
step reruns the model on the whole visible context. Both paths see exactly the same context at
every step, so they produce the same tokens: identical greedy outputs, and identical samples for the
same ``generator`` state (each sampled step draws one uniform number per row).

**Contexts longer than ``context_length``.** The model can only attend to ``context_length`` positions
(learned and sinusoidal encodings have no rows beyond it). The visible context is therefore a
window ``seq[start:]``:

- a prompt longer than ``context_length`` is cropped to its last ``context_length`` tokens;
- when the window is full and one more token must be read, the window restarts on the last
  ``context_length // 2`` tokens, which are given positions ``0, 1, ...`` again. With the cache this
  is a re-prefill of those tokens (one full forward pass every ``context_length // 2`` steps rather than
  a cache shift per step, which would be wrong for absolute positions); without the cache the same
  window is used, so the two paths stay identical.

**Stop tokens.** A row that samples one of ``stop_tokens`` is finished: the stop token is kept and
its later positions repeat it (so the batch stays one rectangular tensor); generation ends early
once every row has finished.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from .._checks import check_int, eval_mode
from ..models import GPT, MLPLanguageModel
from .sampling import sample_next, validate_sampling_args

__all__ = ["generate", "context_window_start"]


def context_window_start(n_tokens: int, start: int, context_length: int) -> int:
    """Where the visible window of a sequence of ``n_tokens`` begins (see the module docstring).

    ``start`` is the previous window start. The window is kept while it fits in ``context_length``;
    otherwise it restarts on the last ``context_length // 2`` tokens (at least one).
    """
    if n_tokens - start <= context_length:
        return start
    return n_tokens - max(1, context_length // 2)


def _stop_tensor(stop_tokens, vocab_size: int, device: torch.device) -> torch.Tensor | None:
    if stop_tokens is None:
        return None
    ids = [stop_tokens] if isinstance(stop_tokens, int) else list(stop_tokens)
    if not ids or any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size for t in ids):
        raise ValueError(f"stop_tokens must be a token id or a non-empty list of ids in [0, {vocab_size}), "
                         f"got {stop_tokens!r}")
    return torch.tensor(ids, device=device)


@torch.inference_mode()
def generate(model: GPT | MLPLanguageModel, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
             use_cache: bool = True, stop_tokens: int | Iterable[int] | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue the prompts ``idx`` (B, T) (or one prompt (T,)) by up to ``max_new_tokens`` tokens.

    Returns the prompts followed by the new tokens: (B, T + n_new) (or (T + n_new,)), where
    ``n_new < max_new_tokens`` only when every row hit a stop token. The model runs in eval mode
    (dropout off) and is put back in its previous mode afterwards.
    """
    if not isinstance(model, (GPT, MLPLanguageModel)):
        raise TypeError(f"model must be a GPT or an MLPLanguageModel, got {type(model).__name__}")
    validate_sampling_args(temperature, top_k, top_p, min_p)
    check_int("max_new_tokens", max_new_tokens, low=0)
    if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.long, torch.int32) or idx.dim() not in (1, 2):
        raise ValueError("idx must be an integer tensor of token ids, shape (batch, time) or (time,)")
    squeeze = idx.dim() == 1
    idx = idx[None] if squeeze else idx
    B, T0 = idx.shape
    if B == 0 or T0 == 0:
        raise ValueError(f"idx (the prompt) is empty, shape {tuple(idx.shape)}; give at least one token "
                         "(for example a beginning-of-text token)")
    vocab_size, context_length = model.config.vocab_size, model.config.context_length
    if int(idx.min()) < 0 or int(idx.max()) >= vocab_size:
        raise ValueError(f"idx contains token ids outside the vocabulary [0, {vocab_size}): "
                         f"min {int(idx.min())}, max {int(idx.max())}")
    stops = _stop_tensor(stop_tokens, vocab_size, idx.device)

    seq = torch.empty(B, T0 + max_new_tokens, dtype=torch.long, device=idx.device)  # filled in place
    seq[:, :T0] = idx
    n, start = T0, max(0, T0 - context_length)      # a long prompt is cropped to its last context_length tokens
    # A GPT has absolute positions up to context_length, so its window restarts (see above); the MLP
    # only ever reads its last context_length tokens, so its window slides and there is no cache.
    sliding = isinstance(model, MLPLanguageModel)
    cache = model.make_cache(B) if use_cache and isinstance(model, GPT) else None
    finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
    with eval_mode(model):
        for _ in range(max_new_tokens):
            start = max(0, n - context_length) if sliding else context_window_start(n, start, context_length)
            if cache is None:
                logits, _ = model(seq[:, start:n], last_only=True)
            elif cache.length == n - 1 - start:          # cache holds the window but its last token
                logits, _ = model(seq[:, n - 1:n], kv_cache=cache, last_only=True)
            else:                                        # first step, or the window restarted
                cache.reset()
                logits, _ = model(seq[:, start:n], kv_cache=cache, last_only=True)
            next_id = sample_next(logits[:, -1], temperature, top_k, top_p, min_p, generator)[:, 0]
            if stops is not None:
                next_id = torch.where(finished, seq[:, n - 1], next_id)   # finished rows repeat their stop
                finished |= torch.isin(next_id, stops)
            seq[:, n] = next_id
            n += 1
            if stops is not None and bool(finished.all()):
                break
    out = seq[:, :n]
    return out[0] if squeeze else out
