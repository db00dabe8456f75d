"""generate() with an RNNLanguageModel: the hidden state is its cache (lmcore.decoding.generation)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lmcore
from lmcore.models import RNNConfig, RNNLanguageModel


def _model(cell: str, seed: int = 0) -> RNNLanguageModel:
    torch.manual_seed(seed)
    model = RNNLanguageModel(RNNConfig(vocab_size=11, n_embd=5, n_hidden=12, n_layer=2, cell=cell))
    return model.double().eval()


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_stepping_with_the_state_gives_the_full_forward_logits(cell):
    """Prefill a prompt, then one token at a time from the returned state: the logits of every step
    equal those of one forward pass over the whole sequence."""
    model = _model(cell)
    idx = torch.randint(0, 11, (3, 20))
    full, _ = model(idx)
    logits, h = model.forward_state(idx[:, :7])                  # the prefill
    steps = [logits]
    for t in range(7, 20):
        logits, h = model.forward_state(idx[:, t:t + 1], h)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-12, rtol=0)
    last, h_last = model.forward_state(idx, last_only=True)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-12, rtol=0)
    torch.testing.assert_close(h_last, h, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_cached_and_uncached_generation_draw_the_same_samples(cell):
    """The state path (prefill once, one token per step) and the uncached path (the whole text
    reread every step) see the same text, so with the same generator state they draw the same tokens."""
    model = _model(cell, seed=1)
    prompt = torch.randint(0, 11, (4, 6))
    outs = []
    for use_cache in (True, False):
        gen = torch.Generator().manual_seed(7)
        outs.append(lmcore.generate(model, prompt, 40, temperature=1.3, use_cache=use_cache, generator=gen))
    assert outs[0].shape == (4, 46)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0][:, :6], prompt)
    greedy = [lmcore.generate(model, prompt[0], 25, temperature=0, use_cache=c) for c in (True, False)]
    assert greedy[0].shape == (31,) and torch.equal(greedy[0], greedy[1])


def test_the_cached_path_reads_each_token_once():
    """The prompt is read once and each new token once: T0 + n_new - 1 tokens in all (the last sample
    is never fed back), where the uncached path reads the whole text at every step."""
    model = _model("gru", seed=2)
    read = []
    hook = model.wte.register_forward_hook(lambda m, args, out: read.append(args[0].shape[1]))
    lmcore.generate(model, torch.zeros(2, 5, dtype=torch.long), 10, use_cache=True,
                    generator=torch.Generator().manual_seed(0))
    assert read == [5] + [1] * 9
    read.clear()
    lmcore.generate(model, torch.zeros(2, 5, dtype=torch.long), 10, use_cache=False,
                    generator=torch.Generator().manual_seed(0))
    hook.remove()
    assert read == list(range(5, 15))


def test_sampled_tokens_follow_the_model_distribution():
    """One step of generate at temperature 1 draws from softmax(logits) of the prompt's last position."""
    model = _model("rnn", seed=3).float()
    prompt = torch.randint(0, 11, (1, 4))
    probs = F.softmax(model(prompt)[0][0, -1].double(), dim=-1)
    gen = torch.Generator().manual_seed(0)
    draws = lmcore.generate(model, prompt.expand(4000, 4), 1, generator=gen)[:, -1]
    freq = torch.bincount(draws, minlength=11).double() / 4000
    assert (freq - probs).abs().max() < 0.03


def test_stop_tokens_and_bad_models():
    model = _model("gru", seed=4)
    out = lmcore.generate(model, torch.zeros(3, 2, dtype=torch.long), 200, stop_tokens=[3, 4],
                          generator=torch.Generator().manual_seed(0))
    assert out.shape[1] < 202 and torch.isin(out[:, 2:], torch.tensor([3, 4])).any(1).all()
    with pytest.raises(TypeError, match="RNNLanguageModel"):
        lmcore.generate(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long), 3)   # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lmcore.generate(model, torch.tensor([[0, 11]]), 3)
