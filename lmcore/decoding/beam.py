"""Beam search: an approximate search for the most probable continuation (chapter 8).

Greedy decoding commits to the best token at every step, but the most probable *sequence* may
start with a token that is not the most probable one. Beam search keeps the ``beam_width`` best
partial sequences (by total log-probability) at every step instead of one: each is extended by
every token of the vocabulary, and the ``beam_width`` best extensions survive. A width of 1 is
greedy decoding; a width of at least ``vocab_size ** (max_new_tokens - 1)`` never prunes anything
and so finds the exact arg-max (what the tests check against brute-force enumeration).

**Stopping.** A hypothesis that produces ``stop_token`` is finished: it is kept aside and no longer
extended. Search ends after ``max_new_tokens`` steps or when no unfinished hypothesis is left; the finished
hypotheses and the beams still open at the end are then ranked together by ``score``.
At each step the extensions are ranked by total log-probability; a finished extension is kept
when it ranks among the first ``beam_width``, and the ``beam_width`` best *unfinished* extensions
carry on (so the beam stays full while unfinished candidates exist).

**Length normalisation.** Every token multiplies the probability by a number below one, so raw
log-probability favours short sequences. The final ranking uses
``score = logprob / n_new ** length_penalty`` where ``n_new`` counts the generated tokens
(including the stop token): ``length_penalty = 0`` ranks by raw log-probability, ``1`` by the
average log-probability per token. The pruning during the search always uses the raw total, so
every hypothesis at a given step has the same length and normalisation would not change it.

Hypotheses are extended with one batched forward pass per step using the model's KV cache; the
cache rows are reordered to follow the surviving beams. Scores are summed in float64 (ranking ties
stay rare over long searches), or in float32 on a device that has no float64 (Apple's MPS).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import ArgumentTypeError, check_float, check_int, describe, eval_mode
from ..models import GPT

__all__ = ["BeamHypothesis", "beam_search", "score_dtype"]


@dataclass(frozen=True)
class BeamHypothesis:
    """One result of :func:`beam_search`.

    ``tokens``: the prompt followed by the generated ids, (T0 + n_new,). ``logprob``: the model's
    total natural-log probability of the generated ids given the prompt. ``score``: ``logprob``
    divided by ``n_new ** length_penalty`` (what the results are ranked by). ``finished``: whether
    it ended with the stop token.
    """

    tokens: torch.Tensor
    logprob: float
    score: float
    finished: bool


def score_dtype(device: torch.device) -> torch.dtype:
    """The dtype beam scores are summed in on ``device``: float64, or float32 where the device has no
    float64 (MPS refuses it)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _check_prompt(model: GPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.long, torch.int32) or idx.dim() not in (1, 2) \
            or (idx.dim() == 2 and idx.shape[0] != 1):
        raise ValueError("idx must be one prompt of token ids, a torch.long or torch.int32 tensor of shape (T,) or "
                         f"(1, T), got {describe(idx)}")
    idx = idx.reshape(-1).long()
    if idx.numel() == 0:
        raise ValueError("idx (the prompt) is empty; give at least one token (e.g. a beginning-of-text token)")
    check_int("max_new_tokens", max_new_tokens, low=1)
    if idx.numel() + max_new_tokens > model.config.context_length + 1:
        raise ValueError(f"prompt ({idx.numel()} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                         f"context (context_length {model.config.context_length}) by more than one token; beam search "
                         "does not slide the window: shorten the prompt or max_new_tokens")
    vocab_size = model.config.vocab_size
    if int(idx.min()) < 0 or int(idx.max()) >= vocab_size:
        raise ValueError(f"idx contains token ids outside the vocabulary [0, {vocab_size})")
    return idx


@torch.inference_mode()
def beam_search(model: GPT, idx: torch.Tensor, max_new_tokens: int, beam_width: int = 4,
                length_penalty: float = 0.0, stop_token: int | None = None) -> list[BeamHypothesis]:
    """Search for the most probable continuation of one prompt ``idx`` (T0,) or (1, T0).

    Returns up to ``beam_width`` hypotheses, best ``score`` first (see the module docstring): the
    best of the finished ones and the unfinished ones still in the beam after ``max_new_tokens``
    steps, ranked together, so no hypothesis the search held scores higher than the first. The
    prompt plus the generated tokens must fit in the model's context
    (``T0 + max_new_tokens - 1 <= context_length``).
    """
    if not isinstance(model, GPT):
        raise ArgumentTypeError(f"model must be a GPT (beam search extends its KV cache), got {type(model).__name__}")
    check_int("beam_width", beam_width, low=1)
    check_float("length_penalty", length_penalty)         # 0 = rank by raw log-probability
    vocab_size = model.config.vocab_size
    check_int("stop_token", stop_token, low=0, high=vocab_size - 1, optional=True)
    prompt = _check_prompt(model, idx, max_new_tokens)

    def score(logprob: float, n_new: int) -> float:
        return logprob / n_new ** length_penalty

    dtype = score_dtype(prompt.device)
    with eval_mode(model):
        cache = model.make_cache(1)
        logits, _ = model(prompt[None], kv_cache=cache, last_only=True)     # (1, 1, V)
        beams = prompt[None]                                                # (n_beams, T0 + step)
        beam_lp = torch.zeros(1, dtype=dtype, device=prompt.device)     # (n_beams,)
        finished: list[BeamHypothesis] = []
        for step in range(1, max_new_tokens + 1):
            logp = torch.log_softmax(logits[:, -1].to(dtype), dim=-1)        # (n_beams, V)
            total = (beam_lp[:, None] + logp).flatten()                     # (n_beams * V,)
            order = total.argsort(descending=True, stable=True)
            order = order[total[order] > -math.inf]                         # forbidden tokens are never extended
            rows, toks = order // vocab_size, order % vocab_size
            is_stop = toks == stop_token if stop_token is not None else torch.zeros_like(toks, dtype=torch.bool)
            for j in torch.nonzero(is_stop[:beam_width]).flatten().tolist():
                seq = torch.cat([beams[rows[j]], toks[j:j + 1]])
                lp = float(total[order[j]])
                finished.append(BeamHypothesis(seq, lp, score(lp, step), True))
            live = torch.nonzero(~is_stop).flatten()[:beam_width]            # best unfinished extensions
            if live.numel() == 0:
                beams = beams[:0]
                break
            rows, toks = rows[live], toks[live]
            beams = torch.cat([beams[rows], toks[:, None]], dim=1)
            beam_lp = total[order[live]]
            if step == max_new_tokens:
                break
            cache.reorder(rows)
            logits, _ = model(toks[:, None], kv_cache=cache, last_only=True)
    # The beams still open after the last step compete with the finished ones: with a length
    # penalty (or a finished hypothesis kept at a low rank) an open beam can score higher.
    unfinished = [BeamHypothesis(seq, float(lp), score(float(lp), seq.numel() - prompt.numel()), False)
                  for seq, lp in zip(beams, beam_lp)]
    return sorted(finished + unfinished, key=lambda h: h.score, reverse=True)[:beam_width]
