"""Decoding: from a model's logits to text (chapters 7 and 8).

- ``sampling``: temperature, top-k, top-p, min-p and the draw (chapter 8).
- ``generate(model, idx, ...)``: one function for every neural model, with or without a KV cache
  (chapter 7).
- ``beam_search`` and ``sequence_logprob``: searching for, and scoring, whole continuations.
"""
from . import sampling
from .beam import BeamHypothesis, beam_search
from .generation import context_window_start, generate
from .sampling import (
                       FILTER_ORDERS,
                       apply_repetition_penalty,
                       apply_temperature,
                       filter_probs,
                       min_p_filter,
                       sample_next,
                       top_k_filter,
                       top_p_filter,
                       validate_sampling_args,
)
from .scoring import sequence_logprob, sequence_logprobs

__all__ = [
    "generate", "context_window_start", "beam_search", "BeamHypothesis", "sequence_logprob", "sequence_logprobs",
    "sampling", "validate_sampling_args", "apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter",
    "filter_probs", "sample_next", "apply_repetition_penalty", "FILTER_ORDERS",
]
