"""Shared fixtures of the RLHF tests: the tiny enumerable prior and the space of all its strings."""
from __future__ import annotations

import pytest
import torch

from lmcore.alignment import rlhf


def enumerable_prior(max_len: int, alphabet: str = "abc"):
    """Module-scoped fixtures ``prior`` -> (model, tokenizer) and ``space`` -> (texts, rows, lp0).

    ``texts`` are all strings up to ``max_len`` over ``alphabet``, ``rows`` their encodings and ``lp0``
    the prior's exact float64 log-probabilities of them (they sum to one: the space holds all the mass).
    A test module binds both names: ``prior, space = enumerable_prior(MAX_LEN)``.
    """
    @pytest.fixture(scope="module")
    def prior():
        torch.manual_seed(0)
        return rlhf.train_tiny_prior(max_len=max_len, steps=60, seed=0, device="cpu")

    @pytest.fixture(scope="module")
    def space(prior):
        model, tok = prior
        texts = rlhf.enumerate_sequences(alphabet, max_len)
        rows = rlhf.encode_sequences(tok, texts, max_len)
        with torch.no_grad():
            lp0 = rlhf.sequence_logprobs(model, rows).double()
        return texts, rows, lp0

    return prior, space
