"""Autoregressive generation with or without a KV cache (chapters 7 and 8).

``generate(model, idx, ...)`` drives every neural model of the package: a ``GPT`` (with or without
its KV cache) and an ``MLPLanguageModel`` (which sees a fixed window of ``context_length`` tokens,
so each step feeds it just that window; it has nothing to cache), and an ``RNNLanguageModel``
(chapter 4), whose cache is its hidden state: with ``use_cache=True`` the prompt is read once and
each step feeds the newest token to the state it left; without, every step rereads the whole text
from a zero state. A recurrent model has no ``context_length``: it sees the whole text, never a window.

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

**Stop tokens.** ``stop_tokens`` is one id (an int, a numpy integer or a 0-d tensor) or a
collection of ids (list, tuple, set, array, tensor). A row that samples one of them is finished:
the stop token is kept and its later positions repeat it (so the batch stays one rectangular
tensor); generation ends early once every row has finished.

On the CPU the check is free and runs after every token. On an accelerator reading ``finished`` back
would stall the device on every token, so it is read every ``STOP_CHECK_INTERVAL`` tokens: up to that
many - 1 extra steps are computed (and drawn from ``generator``), and the output is cut back to the
same tokens as on the CPU.

**Output.** The result is allocated once, at the call, for ``max_new_tokens`` new tokens; a size
larger than the device's memory raises ``ValueError`` there rather than after a long run.

**Compiled models.** ``generate(torch.compile(model), ...)`` runs compiled code. With the cache, each
new token goes through ``lmcore.decoding.static.decode_step``, compiled with the wrapper's settings:
a fixed-size cache and a position tensor give it the same shapes at every token, so it compiles once
(also with ``dynamic=False``), and the prefill runs eagerly. The result equals the eager one up to
float rounding (attention reads the whole fixed-size buffer, masked). Without the cache (and for an
``MLPLanguageModel``) the compiled module itself runs on the growing window, which recompiles for new
lengths unless dynamic shapes are on.
"""
from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from .._checks import ArgumentTypeError, check_float, check_int, check_token_ids, describe, eval_mode
from ..models import GPT, KVCache, MLPLanguageModel, RNNLanguageModel
from .sampling import apply_repetition_penalty, sample_next, validate_sampling_args
from .static import StaticKVCache, compile_decode_step, static_forward

__all__ = ["generate", "context_window_start", "STOP_CHECK_INTERVAL"]

STOP_CHECK_INTERVAL = 16      # tokens between reads of the "every row finished" flag off the CPU


def context_window_start(n_tokens: int, start: int, context_length: int) -> int:
    """Where the visible window of a sequence of ``n_tokens`` begins (see the module docstring).

    ``start`` (``0 <= start <= n_tokens``) is the previous window start. The window is kept while it
    fits in ``context_length`` (``>= 1``); otherwise it restarts on the last ``context_length // 2``
    tokens (at least one).
    """
    n_tokens = check_int("n_tokens", n_tokens, low=0)
    start = check_int("start", start, low=0, high=n_tokens)
    return _window_start(n_tokens, start, check_int("context_length", context_length, low=1))


def _window_start(n_tokens: int, start: int, context_length: int) -> int:
    if n_tokens - start <= context_length:
        return start
    return n_tokens - max(1, context_length // 2)


def _stop_tensor(stop_tokens, vocab_size: int, device: torch.device) -> torch.Tensor | None:
    """``stop_tokens`` as a tensor of ids: one id (any integer, a 0-d tensor) or a collection of them."""
    if stop_tokens is None:
        return None
    ids: torch.Tensor | np.ndarray | list
    if isinstance(stop_tokens, torch.Tensor):
        ids = stop_tokens.detach().cpu().reshape(-1)     # on the host, so the range is checked (once a call)
    elif isinstance(stop_tokens, np.ndarray):
        ids = stop_tokens.reshape(-1)
    elif isinstance(stop_tokens, numbers.Integral):      # int or numpy int (a bool is refused below)
        ids = [stop_tokens]
    elif isinstance(stop_tokens, (str, bytes)) or not isinstance(stop_tokens, Iterable):
        raise ArgumentTypeError(f"stop_tokens must be a token id or a non-empty list of ids, got {stop_tokens!r}")
    else:
        ids = list(stop_tokens)
    check_token_ids("stop_tokens", ids, vocab_size)
    if len(ids) == 0:
        raise ValueError("stop_tokens is empty; pass None for no stop token, or at least one token id")
    return torch.tensor([int(i) for i in ids], dtype=torch.long, device=device)


def _memory_bytes(device: torch.device) -> int | None:
    """The device's total memory, where it is cheap to know (a CPU with sysconf, a CUDA device)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu" and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def _output_buffer(B: int, T0: int, max_new_tokens: int, device: torch.device) -> torch.Tensor:
    """The (B, T0 + max_new_tokens) output, allocated once and filled in place (``torch.empty``
    writes nothing, so memory is touched only as tokens are generated).

    An output larger than the device's whole memory, or one the allocator refuses, is refused
    here, at the call: without this check a huge ``max_new_tokens`` ended in an allocator
    traceback, or (where the system overcommits memory) in a run that could never finish.
    """
    n_bytes = B * (T0 + max_new_tokens) * 8
    memory = _memory_bytes(device)
    held = f"the {device} memory ({memory / 2 ** 30:.3g} GiB)" if memory is not None else f"what {device} can allocate"
    msg = (f"max_new_tokens is too large: {max_new_tokens} needs an output of {B} x {T0 + max_new_tokens} token "
           f"ids ({n_bytes / 2 ** 30:.3g} GiB), more than {held}; generate fewer tokens (in several calls if need be)")
    if n_bytes >= 2 ** 63 or (memory is not None and n_bytes > memory):
        raise ValueError(msg)
    try:
        return torch.empty(B, T0 + max_new_tokens, dtype=torch.long, device=device)
    except (RuntimeError, MemoryError) as err:       # torch.OutOfMemoryError is a RuntimeError
        raise ValueError(msg) from err


def _unwrap(model) -> tuple[GPT | MLPLanguageModel | RNNLanguageModel, torch.nn.Module | None]:
    """(the model, the ``torch.compile`` wrapper around it or ``None``)."""
    inner = getattr(model, "_orig_mod", None)
    if isinstance(inner, (GPT, MLPLanguageModel, RNNLanguageModel)) and hasattr(model, "dynamo_ctx"):
        return inner, model
    if not isinstance(model, (GPT, MLPLanguageModel, RNNLanguageModel)):
        raise TypeError(f"model must be a GPT, an MLPLanguageModel or an RNNLanguageModel (or torch.compile "
                        f"of one), got {type(model).__name__}")
    return model, None


class _RecurrentState:
    """An ``RNNLanguageModel``'s cache for ``generate``: its hidden state after ``length`` tokens."""

    def __init__(self) -> None:
        self.h: torch.Tensor | None = None
        self.length = 0

    def reset(self) -> None:
        self.h, self.length = None, 0


def _recurrent_steps(model: RNNLanguageModel) -> tuple[_RecurrentState, Step, Step]:
    """(state, decode one token, prefill): both continue the text from the state and advance it."""
    def forward(ids: torch.Tensor, state: Any) -> torch.Tensor:
        logits, state.h = model.forward_state(ids, state.h, last_only=True)
        state.length += ids.shape[1]
        return logits
    return _RecurrentState(), forward, forward


def _stop_check_interval(device: torch.device) -> int:
    """Tokens between reads of the stop flag: every token where reading is free (see the module docstring)."""
    return 1 if device.type == "cpu" else STOP_CHECK_INTERVAL


Step = Callable[[torch.Tensor, Any], torch.Tensor]


def _cached_steps(model: GPT, compiled: torch.nn.Module | None, batch_size: int
                  ) -> tuple[KVCache | StaticKVCache, Step, Step]:
    """(cache, decode one token, prefill a window): ``GPT.forward`` with a ``KVCache`` for an eager
    model, the fixed-shape compiled decode step for a compiled one."""
    if compiled is None:
        def forward(ids: torch.Tensor, cache: Any) -> torch.Tensor:
            return model(ids, kv_cache=cache, last_only=True)[0]
        return model.make_cache(batch_size), forward, forward
    if model.config.rope_scaling == "dynamic":
        raise ValueError("rope_scaling='dynamic' changes RoPE's base with the sequence length, which a "
                         "compiled decode step cannot follow; generate with the model itself (not compiled)")
    step = compile_decode_step(compiled)

    def decode(ids: torch.Tensor, cache: Any) -> torch.Tensor:
        # a view of the output has the output's row stride, which changes with max_new_tokens; the
        # compiled step guards on strides, so it gets a fresh (B, 1) tensor
        logits = step(model, ids.clone(memory_format=torch.contiguous_format), cache)
        cache.advance(1)
        return logits

    def prefill(ids: torch.Tensor, cache: Any) -> torch.Tensor:
        logits = static_forward(model, ids, cache)
        cache.advance(ids.shape[1])
        return logits
    return StaticKVCache(model, batch_size), decode, prefill


@torch.inference_mode()
def generate(model: GPT | MLPLanguageModel | RNNLanguageModel, idx: torch.Tensor, max_new_tokens: int,
             temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
             use_cache: bool = True, stop_tokens: int | Iterable[int] | None = None,
             generator: torch.Generator | None = None, filter_order: str = "temperature-first",
             repetition_penalty: float | None = None) -> torch.Tensor:
    """Continue the prompts ``idx`` (B, T) (or one prompt (T,)) by up to ``max_new_tokens`` tokens.

    Returns the prompts followed by the new tokens: (B, T + n_new) (or (T + n_new,)), where
    ``n_new < max_new_tokens`` only when every row hit a stop token. The model runs in eval mode
    (dropout off) and is put back in its previous mode afterwards. ``model`` may be what
    ``torch.compile`` returned for one (see the module docstring).

    ``filter_order`` and the filters are :func:`~lmcore.decoding.sampling.sample_next`'s.
    ``repetition_penalty`` (CTRL's, :func:`~lmcore.decoding.sampling.apply_repetition_penalty`;
    ``None`` = off) penalises, at every step, each token already in that row: prompt and output.
    """
    model, compiled = _unwrap(model)
    validate_sampling_args(temperature, top_k, top_p, min_p, filter_order)
    check_float("repetition_penalty", repetition_penalty, low=0, low_open=True, optional=True)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=0)
    if not isinstance(use_cache, bool):
        raise ArgumentTypeError(f"use_cache must be True or False, got {use_cache!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")
    if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.long, torch.int32) or idx.dim() not in (1, 2):
        raise ValueError(f"idx must be a torch.long or torch.int32 tensor of token ids, shape (batch, time) or "
                         f"(time,), got {describe(idx)}")
    squeeze = idx.dim() == 1
    idx = idx[None] if squeeze else idx
    B, T0 = idx.shape
    if B == 0 or T0 == 0:
        raise ValueError(f"idx (the prompt) is empty, shape {tuple(idx.shape)}; give at least one token "
                         "(for example a beginning-of-text token)")
    vocab_size = model.config.vocab_size
    # a recurrent model reads the whole text: a "context" as long as the output, so no window ever starts
    context_length = T0 + max_new_tokens if isinstance(model, RNNLanguageModel) else model.config.context_length
    if int(idx.min()) < 0 or int(idx.max()) >= vocab_size:
        raise ValueError(f"idx contains token ids outside the vocabulary [0, {vocab_size}): "
                         f"min {int(idx.min())}, max {int(idx.max())}")
    stops = _stop_tensor(stop_tokens, vocab_size, idx.device)
    check_every = _stop_check_interval(idx.device)

    seq = _output_buffer(B, T0, max_new_tokens, idx.device)                          # filled in place
    seq[:, :T0] = idx
    n, start = T0, max(0, T0 - context_length)      # a long prompt is cropped to its last context_length tokens
    # A GPT has absolute positions up to context_length, so its window restarts (see above); the MLP
    # only ever reads its last context_length tokens, so its window slides and there is no cache.
    sliding = isinstance(model, MLPLanguageModel)
    forward = model if compiled is None else compiled
    cache: KVCache | StaticKVCache | _RecurrentState | None = None
    if use_cache and isinstance(model, GPT):
        cache, decode, prefill = _cached_steps(model, compiled, B)
    elif use_cache and isinstance(model, RNNLanguageModel):       # the state is the cache (eager)
        cache, decode, prefill = _recurrent_steps(model)
    finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
    with eval_mode(model):
        for _ in range(max_new_tokens):
            start = max(0, n - context_length) if sliding else _window_start(n, start, context_length)
            if cache is None:
                logits, _ = forward(seq[:, start:n], last_only=True)
            elif cache.length == n - 1 - start:          # cache holds the window but its last token
                logits = decode(seq[:, n - 1:n], cache)
            else:                                        # first step, or the window restarted
                cache.reset()
                logits = prefill(seq[:, start:n], cache)
            scores = logits[:, -1]
            if repetition_penalty is not None:
                scores = apply_repetition_penalty(scores, seq[:, :n], repetition_penalty)
            next_id = sample_next(scores, temperature, top_k, top_p, min_p, generator, filter_order)[:, 0]
            if stops is not None:
                next_id = torch.where(finished, seq[:, n - 1], next_id)   # finished rows repeat their stop
                finished |= torch.isin(next_id, stops)
            seq[:, n] = next_id
            n += 1
            if stops is not None and (n - T0) % check_every == 0 and bool(finished.all()):
                break
    if stops is not None and check_every > 1 and bool(finished.all()):   # one read, after the loop
        first = torch.isin(seq[:, T0:n], stops).int().argmax(dim=1)      # each row's first stop token
        n = T0 + int(first.max()) + 1
    out = seq[:, :n]
    return out[0] if squeeze else out
