"""Scoring text with a model: the log-probability of a continuation (chapters 8 and 11).

Beam search ranks hypotheses by it, chapter 8 checks beam search against brute-force enumeration
with it, and the RLHF tools of chapter 11 compare a policy with its reference through it.

There is one implementation, :func:`sequence_logprobs`, on rows of token ids (padded with
``IGNORE_INDEX``). :func:`sequence_logprob` is its prompt-plus-continuation form for search. Both
score a ``GPT`` (rows up to its context) or an ``MLPLanguageModel`` (which slides its window, so any
length).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import ArgumentTypeError, check_int, check_token_ids, describe, eval_mode
from ..models import GPT, MLPLanguageModel

__all__ = ["IGNORE_INDEX", "sequence_logprobs", "sequence_logprob"]

#: Padding in a row of token ids: never scored (the value ``GPT``'s loss ignores too).
IGNORE_INDEX = -100


def _check_model(model: GPT | MLPLanguageModel) -> None:
    if not isinstance(model, (GPT, MLPLanguageModel)):
        raise ArgumentTypeError(f"model must be a GPT or an MLPLanguageModel, got {type(model).__name__}")


def _check_rows(rows: torch.Tensor, model: GPT | MLPLanguageModel) -> None:
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.dtype != torch.long or rows.shape[1] < 2:
        raise ValueError(f"rows must be a (N, T) long tensor of token ids (e.g. from encode_sequences), with T >= 2, "
                         f"got {describe(rows)}")
    # a GPT has positions up to context_length only; the MLP slides its window along any length
    if isinstance(model, GPT) and rows.shape[1] - 1 > model.config.context_length:
        raise ValueError(f"rows have {rows.shape[1] - 1} input positions, more than the model's "
                         f"context_length={model.config.context_length}")
    if rows.device.type != "cpu":       # reading the values would stall an accelerator (see _checks)
        return
    pad = rows == IGNORE_INDEX
    check_token_ids("rows", rows[~pad], model.config.vocab_size)
    # padding is fed to the model as token 0, so anywhere but at the right end it would change the context
    if bool((pad[:, :-1] & ~pad[:, 1:]).any()):
        raise ValueError(f"rows may be padded with IGNORE_INDEX ({IGNORE_INDEX}) only on the right")


def sequence_logprobs(model: GPT | MLPLanguageModel, rows: torch.Tensor, batch_size: int | None = None, *,
                      start: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``log π(row[start:] | row[:start])`` of every row (N, T): returns (N,) in ``dtype``.

    ``log π = Σ_{t >= start} log π(x_t | x_<t)``, summed over the tokens that are not
    ``IGNORE_INDEX`` (right padding). With the default ``start=1`` everything after the first token
    (``bos``) is scored. Differentiable when autograd is on, and it leaves the model's train/eval
    mode alone (the caller decides); ``batch_size`` splits the rows into chunks (the result is
    the same). Ids are checked against the vocabulary for rows on the CPU.
    """
    _check_model(model)
    _check_rows(rows, model)
    check_int("start", start, low=1, high=rows.shape[1] - 1)
    check_int("batch_size", batch_size, low=1, optional=True)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ArgumentTypeError(f"dtype must be a floating-point torch.dtype (e.g. torch.float64), got {dtype!r}")
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
def sequence_logprob(model: GPT | MLPLanguageModel, prompt: torch.Tensor, continuation: torch.Tensor) -> torch.Tensor:
    """Total log-probability of ``continuation`` (B, N) or (N,) after ``prompt`` (T0,) or (1, T0).

    One forward pass over prompt + continuation, in eval mode; returns (B,) in float64. Both hold
    token ids of the model's vocabulary (``N, T0 >= 1``); for a GPT the whole sequence must fit in its
    context (``T0 + N - 1 <= context_length``).
    """
    _check_model(model)
    vocab_size = model.config.vocab_size
    for name, ids, shapes in (("prompt", prompt, "(T0,) or (1, T0)"), ("continuation", continuation, "(B, N) or (N,)")):
        if not isinstance(ids, torch.Tensor) or ids.dim() not in (1, 2) or ids.dtype not in (torch.long, torch.int32) \
                or (name == "prompt" and ids.dim() == 2 and ids.shape[0] != 1):
            raise ValueError(f"{name} must be a torch.long or torch.int32 tensor of token ids, shape {shapes}, "
                             f"got {describe(ids)}")
        if ids.shape[-1] == 0:
            raise ValueError(f"{name} is empty, shape {tuple(ids.shape)}; give at least one token")
        check_token_ids(name, ids, vocab_size)
    if continuation.dim() == 1:
        continuation = continuation[None]
    B, N = continuation.shape
    seq = torch.cat([prompt.reshape(1, -1).expand(B, -1), continuation], dim=1).long()
    if isinstance(model, GPT) and seq.shape[1] - 1 > model.config.context_length:
        raise ValueError(f"prompt ({seq.shape[1] - N} tokens) + continuation ({N} tokens) do not fit in the "
                         f"model's context: {seq.shape[1] - 1} input positions, context_length "
                         f"{model.config.context_length}; shorten the continuation")
    # float64: search compares sums of many small log-probabilities with brute force
    with eval_mode(model):
        return sequence_logprobs(model, seq, start=seq.shape[1] - N, dtype=torch.float64)
