"""generate's repetition penalty and filter order are sample_next's and apply_repetition_penalty's,
applied at every step: checked against the loop written out by hand at a fixed seed."""
from __future__ import annotations

import pytest
import torch

from lmcore import GPT, GPTConfig, generate
from lmcore.decoding.sampling import apply_repetition_penalty, sample_next


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=13, context_length=16, n_layer=2, n_head=2, n_embd=16)).eval()


def _by_hand(model, prompt, steps, penalty, seed, **sampling):
    g = torch.Generator().manual_seed(seed)
    seq = prompt.clone()
    for _ in range(steps):
        with torch.no_grad():
            logits = model(seq[:, -model.config.context_length:])[0][:, -1]
        if penalty is not None:
            logits = apply_repetition_penalty(logits, seq, penalty)
        seq = torch.cat([seq, sample_next(logits, generator=g, **sampling)], dim=1)
    return seq


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.3, top_p=0.8),
                                      dict(temperature=1.6, top_k=5, filter_order="temperature-last")])
@pytest.mark.parametrize("penalty", [None, 1.5, 0.7])
def test_generate_equals_the_loop_by_hand(model, sampling, penalty):
    prompt = torch.tensor([[1, 2, 3, 1], [4, 4, 5, 6]])
    got = generate(model, prompt, 12, repetition_penalty=penalty, generator=torch.Generator().manual_seed(3), **sampling)
    assert torch.equal(got, _by_hand(model, prompt, 12, penalty, 3, **sampling))


def test_a_penalty_makes_greedy_repeat_less(model):
    prompt = torch.tensor([[1, 2]])
    plain = generate(model, prompt, 10, temperature=0.0)[0].tolist()
    penalised = generate(model, prompt, 10, temperature=0.0, repetition_penalty=3.0)[0].tolist()
    assert len(set(plain)) <= 4 < len(set(penalised)), (plain, penalised)     # greedy loops; the penalty breaks it


@pytest.mark.parametrize("bad, match", [(dict(repetition_penalty=0.0), "repetition_penalty"),
                                        (dict(repetition_penalty="2"), "repetition_penalty"),
                                        (dict(filter_order="last"), "filter_order")])
def test_bad_arguments_are_named(model, bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        generate(model, torch.tensor([[1]]), 2, **bad)
