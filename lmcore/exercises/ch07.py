"""Checks for the exercises of chapter 7, "Generation and the KV cache".

Each ``check_<name>(fn)`` runs the student's ``fn`` on fixed and random cases, compares it with an
independent reference computed here, and prints ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..models import KVCache
from ._check import CheckFailed, CheckResult, CheckUnsolved, run_check

__all__ = ["check_kv_cache_bytes", "check_cached_attention_step", "check_window_step_flops",
           "WINDOW_CONFIG", "WINDOW_POSITIONS"]


# --- exercise 1: the memory of a KV cache ---------------------------------------------------------

def _measured_cache_bytes(n_layer: int, n_kv_head: int, head_dim: int, seq_len: int, dtype: torch.dtype,
                          batch_size: int, window: int | None) -> int:
    """Bytes of real cache buffers, allocated on the ``meta`` device (shapes only, no memory used).

    A sliding-window cache keeps only the last ``window`` positions (a rolling buffer).
    """
    kept = seq_len if window is None else min(seq_len, window)
    return KVCache(n_layer, batch_size, n_kv_head, kept, head_dim, device="meta", dtype=dtype).nbytes


def check_kv_cache_bytes(kv_cache_bytes: Callable[..., int], quiet: bool = False) -> CheckResult:
    """Check ``kv_cache_bytes(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element,
    batch_size=1, window=None)`` → the bytes a KV cache needs (an int).

    The reference allocates real cache buffers on PyTorch's ``meta`` device and reads their size.
    """
    cases = [  # (description, n_layer, n_kv_head, head_dim, seq_len, dtype, batch_size, window)
        ("GPT-2 small, 1,024 tokens, fp32", 12, 12, 64, 1024, torch.float32, 1, None),
        ("Llama-2 7B, 4,096 tokens, bf16", 32, 32, 128, 4096, torch.bfloat16, 1, None),
        ("8 key/value heads (grouped-query), 8,192 tokens, fp8", 32, 8, 128, 8192, torch.float8_e4m3fn, 1, None),
        ("a batch of 4 sequences of 100 tokens, fp32", 2, 3, 16, 100, torch.float32, 4, None),
        ("a 4,096-token sliding window over 32,768 tokens, bf16", 32, 8, 128, 32768, torch.bfloat16, 1, 4096),
        ("a 4,096-token sliding window over only 1,000 tokens, bf16", 32, 8, 128, 1000, torch.bfloat16, 1, 4096),
    ]

    def body() -> None:
        for case, n_layer, n_kv_head, head_dim, seq_len, dtype, batch, window in cases:
            nbytes = torch.empty((), dtype=dtype).element_size()
            got = kv_cache_bytes(n_layer, n_kv_head, head_dim, seq_len, nbytes, batch_size=batch, window=window)
            want = _measured_cache_bytes(n_layer, n_kv_head, head_dim, seq_len, dtype, batch, window)
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if isinstance(got, float) and float(got).is_integer():
                got = int(got)
            if isinstance(got, bool) or not isinstance(got, int):
                raise CheckFailed(f"{case}: return a whole number of bytes (an int), got {got!r}")
            if got == want:
                continue
            if got * 2 == want:
                hint = "the cache stores two tensors per layer, keys and values"
            elif window is not None and got == _measured_cache_bytes(n_layer, n_kv_head, head_dim, seq_len,
                                                                     dtype, batch, None):
                hint = "with a sliding window only the last `window` positions are ever kept"
            elif window is not None and seq_len < window and got == _measured_cache_bytes(
                    n_layer, n_kv_head, head_dim, window, dtype, batch, None):
                hint = "a sequence shorter than the window needs only seq_len positions"
            elif batch > 1 and got * batch == want:
                hint = "every sequence of the batch has its own cache"
            else:
                hint = ("count every stored number: which dimensions does each cached tensor have, and how many "
                        "tensors are there?")
            raise CheckFailed(f"{case}: you returned {got:,} bytes, which is not the size of the cache; {hint}")

    return run_check("kv_cache_bytes", body, quiet)


# --- exercise 2: one cached attention step --------------------------------------------------------

def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full causal attention, all positions at once: (B, H, T, D) x3 -> (B, H, T, D), in float64."""
    T, D = q.shape[-2], q.shape[-1]
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(D)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v.double()


def check_cached_attention_step(cached_attention_step: Callable[..., torch.Tensor], quiet: bool = False) -> CheckResult:
    """Check ``cached_attention_step(q, k, v, k_cache, v_cache, pos)``.

    ``q``, ``k``, ``v``: (B, H, 1, D), the query, key and value of the token at position ``pos``;
    ``k_cache``, ``v_cache``: (B, H, max_len, D) preallocated buffers holding positions ``0..pos-1``.
    The function writes ``k``, ``v`` into position ``pos`` of the buffers (in place) and returns the
    attention output (B, H, 1, D) of the new query over positions ``0..pos``.

    The reference is full causal attention computed over the whole sequence at once.
    """
    def body() -> None:
        g = torch.Generator().manual_seed(7)
        for B, H, T, D, max_len in ((1, 1, 5, 4, 8), (2, 3, 12, 8, 16)):
            q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
            want = _causal_attention(q, k, v)
            k_cache, v_cache = torch.zeros(B, H, max_len, D), torch.zeros(B, H, max_len, D)
            for pos in range(T):
                out = cached_attention_step(q[:, :, pos:pos + 1].clone(), k[:, :, pos:pos + 1].clone(),
                                            v[:, :, pos:pos + 1].clone(), k_cache, v_cache, pos)
                case = f"B={B}, H={H}, D={D}, step pos={pos}"
                if not isinstance(out, torch.Tensor) or out.shape != (B, H, 1, D):
                    raise CheckFailed(f"{case}: return a tensor of shape {(B, H, 1, D)} (one output per "
                                      f"head for the new token), got {getattr(out, 'shape', type(out).__name__)}")
                if not (torch.equal(k_cache[:, :, :pos + 1], k[:, :, :pos + 1])
                        and torch.equal(v_cache[:, :, :pos + 1], v[:, :, :pos + 1])):
                    raise CheckFailed(f"{case}: after this step, positions 0..{pos} of k_cache and v_cache "
                                      f"should hold the keys and values of tokens 0..{pos}; write the new "
                                      "key and value into the buffers in place, at index pos")
                if k_cache[:, :, pos + 1:].abs().sum() + v_cache[:, :, pos + 1:].abs().sum() != 0:
                    raise CheckFailed(f"{case}: you wrote past position {pos}: the buffers must stay empty "
                                      "after the current position")
                if not torch.isfinite(out).all():
                    raise CheckFailed(f"{case}: your output contains NaN or inf; does the new query attend "
                                      "to at least one key (its own)?")
                if not torch.allclose(out.double(), want[:, :, pos:pos + 1], rtol=1e-4, atol=1e-5):
                    raise CheckFailed(f"{case}: the output differs from full causal attention at this "
                                      f"position. The query at position {pos} attends to keys 0..{pos} "
                                      "(itself included), with scores scaled by 1/sqrt(head_dim)")

    return run_check("cached_attention_step", body, quiet)


# --- exercise 4 (an experiment): the FLOPs of a cached step with a sliding window -----------------

#: The model of the experiment: the chapter's CPU timing model with a window of 32 positions, and the
#: written-out attention, whose matrix products FlopCounterMode counts (it does not see the fused kernel).
WINDOW_CONFIG: dict[str, Any] = dict(vocab_size=256, context_length=512, n_layer=4, n_head=4, n_embd=192, window=32,
                                     attn_impl="reference")
#: The positions ``t`` at which a cached step is measured (the step feeds the token at position ``t``).
WINDOW_POSITIONS = (8, 16, 32, 64, 128, 256)


def _flops(T: int, keys: int, fused_attention: bool = False) -> int:
    """FLOPs of one forward pass of WINDOW_CONFIG with ``T`` new tokens whose queries each read ``keys``
    keys, logits for the last token only, summed from the shapes of the matrix products: weights,
    attention (left out if ``fused_attention``: FlopCounterMode does not see that kernel) and the head."""
    c = WINDOW_CONFIG
    d, n_layer, vocab = int(c["n_embd"]), int(c["n_layer"]), int(c["vocab_size"])
    per_layer = 2 * T * (d * 3 * d + d * d + d * 4 * d + 4 * d * d)    # qkv, output proj., MLP up, MLP down
    if not fused_attention:
        per_layer += 2 * 2 * T * keys * d                               # Q Kᵀ and A V over all heads
    return n_layer * per_layer + 2 * d * vocab


def check_window_step_flops(measured: Mapping[int, float], quiet: bool = False) -> CheckResult:
    """Check ``measured``: ``{t: FLOPs}`` counted by ``FlopCounterMode`` for one cached step of a model
    built from ``WINDOW_CONFIG`` (after a prefill of ``t`` tokens, one new token at position ``t``, logits
    for it only), for every ``t`` in ``WINDOW_POSITIONS``.

    The reference counts the matrix products from their shapes: the step's query reads its own key
    and the cached ones, at most ``window`` in all."""
    W = int(WINDOW_CONFIG["window"])

    def body() -> None:
        if callable(measured) or not isinstance(measured, Mapping):
            raise CheckFailed(f"pass the dict of your measurements {{t: FLOPs}}, got {type(measured).__name__}")
        if not measured:
            raise CheckUnsolved("window_flops is empty: no results yet. Count the FLOPs of one cached step at "
                                "every t in WINDOW_POSITIONS and fill in the dict")
        missing = [t for t in WINDOW_POSITIONS if t not in measured]
        if missing:
            raise CheckFailed(f"no measurement for t = {', '.join(map(str, missing))}; the keys are the "
                              f"positions {WINDOW_POSITIONS}")
        for t in WINDOW_POSITIONS:
            got = measured[t]
            got = got.item() if hasattr(got, "item") else got
            if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
                raise CheckFailed(f"measured[{t}] should be a number of FLOPs, got {got!r}")
            if got == _flops(1, min(t + 1, W)):        # its own key and the cached ones, at most W
                continue
            if got == _flops(1, 0, fused_attention=True):
                hint = ("your count has no attention in it: FlopCounterMode does not see the fused attention "
                        "kernel, so build the model with attn_impl='reference'")
            elif got == _flops(1, t + 1):
                hint = ("your step reads every cached position: build the model with the window "
                        "(WINDOW_CONFIG includes window=32)")
            elif got in (_flops(t + 1, t + 1), _flops(t, t)):
                hint = ("you counted a forward pass over the whole sequence, or the prefill: count only the "
                        "one-token step that follows a prefill of t tokens")
            elif got in (_flops(1, min(t, W)), _flops(1, min(t + 2, W))):
                hint = ("your step sits at the wrong position: prefill exactly t tokens, so that the step feeds "
                        "the token at position t (whose query reads its own key as well)")
            else:
                hint = ("count one cached step of a model built from WINDOW_CONFIG, after a prefill of t tokens, "
                        "with last_only=True, as counted_flops does in the chapter")
            raise CheckFailed(f"measured[{t}] = {got:,.0f} is not the FLOPs of that step; {hint}")

    return run_check("window_step_flops", body, quiet)
