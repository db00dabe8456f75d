"""Checks for the exercises of chapter 7, "Generation and the KV cache".

Each ``check_<name>(fn)`` runs the student's ``fn`` on fixed and random cases, compares it with an
independent reference computed here, and prints ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..models import KVCache
from ._check import CheckFailed, run_check

__all__ = ["check_kv_cache_bytes", "check_cached_attention_step"]


# --- exercise 1: the memory of a KV cache ---------------------------------------------------------

def _measured_cache_bytes(n_layer: int, n_kv_head: int, head_dim: int, seq_len: int, dtype: torch.dtype,
                          batch_size: int, window: int | None) -> int:
    """Bytes of real cache buffers, allocated on the ``meta`` device (shapes only, no memory used).

    A sliding-window cache keeps only the last ``window`` positions (a rolling buffer).
    """
    kept = seq_len if window is None else min(seq_len, window)
    return KVCache(n_layer, batch_size, n_kv_head, kept, head_dim, device="meta", dtype=dtype).nbytes


def check_kv_cache_bytes(kv_cache_bytes: Callable[..., int], quiet: bool = False) -> bool:
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
                hint = "count every stored number: layers x (keys, values) x heads x positions x head_dim"
            raise CheckFailed(f"{case}: you returned {got:,} bytes, which is not the size of the cache; {hint}")

    return run_check("kv_cache_bytes", body, quiet)


# --- exercise 2: one cached attention step --------------------------------------------------------

def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full causal attention, all positions at once: (B, H, T, D) x3 -> (B, H, T, D), in float64."""
    T, D = q.shape[-2], q.shape[-1]
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(D)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v.double()


def check_cached_attention_step(cached_attention_step: Callable[..., torch.Tensor], quiet: bool = False) -> bool:
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
