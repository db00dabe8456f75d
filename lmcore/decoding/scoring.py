"""Scoring text with a model: the log-probability of a continuation (chapters 8 and 11).

Beam search ranks hypotheses by it, chapter 8 checks beam search against brute-force enumeration
with it, and the RLHF tools of chapter 11 compare a policy with its reference through it.

There is one implementation, :func:`sequence_logprobs`, on rows of token ids (padded with
``IGNORE_INDEX``). :func:`sequence_logprob` is its prompt-plus-continuation form for search.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_int, eval_mode
from ..models import GPT

__all__ = ["IGNORE_INDEX", "sequence_logprobs", "sequence_logprob"]

#: Padding in a row of token ids: never scored (the value ``GPT``'s loss ignores too).
IGNORE_INDEX = -100


def sequence_logprobs(model: GPT, rows: torch.Tensor, batch_size: int | None = None, *, start: int = 1,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``log π(row[start:] | row[:start])`` of every row (N, T): returns (N,) in ``dtype``.

    ``log π = Σ_{t >= start} log π(x_t | x_<t)``, summed over the tokens that are not
    ``IGNORE_INDEX`` (right padding). With the default ``start=1`` everything after the first token
    (``bos``) is scored. Differentiable when autograd is on, and it leaves the model's train/eval
    mode alone (the caller decides); ``batch_size`` splits the rows into chunks (the result is
    the same).
    """
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.dtype != torch.long or rows.shape[1] < 2:
        raise ValueError("rows must be a (N, T) long tensor of token ids (e.g. from encode_sequences), with T >= 2")
    if rows.shape[1] - 1 > model.config.context_length:
        raise ValueError(f"rows have {rows.shape[1] - 1} input positions, more than the model's "
                         f"context_length={model.config.context_length}")
    check_int("start", start, low=1, high=rows.shape[1] - 1)
    check_int("batch_size", batch_size, low=1, optional=True)
    device = next(model.parameters()).device
    rows = rows.to(device)
    chunks = [rows] if batch_size is None else rows.split(batch_size)
    out = []
    for chunk in chunks:
        x, y = chunk[:, :-1].clamp(min=0), chunk[:, 1:]    # padding fed as token 0, never scored
        logits, _ = model(x)
        # only the scored positions go through log_softmax and the sum: the prompt is context
        logits, y = logits[:, start - 1:], y[:, start - 1:]
        logp = F.log_softmax(logits.to(dtype), dim=-1)
        scored = y != IGNORE_INDEX
        tok = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)   # (B, T - start)
        out.append((tok * scored).sum(dim=1))
    return torch.cat(out)


@torch.inference_mode()
def sequence_logprob(model: GPT, prompt: torch.Tensor, continuation: torch.Tensor) -> torch.Tensor:
    """Total log-probability of ``continuation`` (B, N) after ``prompt`` (T0,) under ``model``.

    One forward pass over prompt + continuation, in eval mode; returns (B,) in float64. The whole
    sequence must fit in the model's context.
    """
    if continuation.dim() == 1:
        continuation = continuation[None]
    B, N = continuation.shape
    seq = torch.cat([prompt.reshape(1, -1).expand(B, -1), continuation], dim=1)
    # float64: search compares sums of many small log-probabilities with brute force
    with eval_mode(model):
        return sequence_logprobs(model, seq, start=seq.shape[1] - N, dtype=torch.float64)
