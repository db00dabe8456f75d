"""Alignment (chapters 10 and 11): the chat template and supervised fine-tuning, then RLHF.

- ``chat`` (chapter 10): ``ChatTemplate`` renders a conversation as one document and masks the
  assistant's tokens.
- ``sft`` (chapter 10): masked next-token targets, padded batches for ``lmcore.Trainer``, greedy
  replies and exact-match accuracy. The toy instruction set is data: ``lmcore.data.toy_instructions``.
- ``rlhf`` (chapter 11): RLHF as Bayesian inference, checked against an exact posterior.
"""
from . import rlhf
from .chat import ROLES, ChatEncoding, ChatTemplate
from .sft import exact_match, extend_vocab, generate_replies, sft_batch_fn, sft_example

__all__ = ["ROLES", "ChatTemplate", "ChatEncoding", "sft_example", "sft_batch_fn", "generate_replies", "exact_match",
           "rlhf", "extend_vocab"]
