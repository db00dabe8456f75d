"""Skip-gram with negative sampling (lmcore.models.word2vec): the hand-written gradient against
autograd, the loss against a naive loop, the pair builder against brute force."""
from __future__ import annotations

import math

import pytest
import torch

from lmcore.models.word2vec import Word2Vec, Word2VecConfig, noise_distribution, skipgram_pairs


def _model(seed: int = 0, V: int = 9, d: int = 4, K: int = 3) -> Word2Vec:
    torch.manual_seed(seed)
    model = Word2Vec(Word2VecConfig(V, d, K)).double()
    with torch.no_grad():                      # out_embed starts at zero: give it values to test with
        model.out_embed.weight.normal_()
        model.in_embed.weight.normal_()
    return model


def _batch(seed: int, N: int = 12, V: int = 9, K: int = 3):
    g = torch.Generator().manual_seed(seed)
    # repeated ids on purpose: a word's gradient rows must add up
    return (torch.randint(0, V, (N,), generator=g), torch.randint(0, V, (N,), generator=g),
            torch.randint(0, V, (N, K), generator=g))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_manual_gradients_equal_autograd(seed):
    model = _model(seed)
    center, context, negatives = _batch(seed)
    model.zero_grad()
    model.loss(center, context, negatives).backward()
    grad_in, grad_out = model.gradients(center, context, negatives)
    torch.testing.assert_close(grad_in, model.in_embed.weight.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_out, model.out_embed.weight.grad, atol=1e-12, rtol=0)
    assert grad_out.abs().sum() > 0 and grad_in.abs().sum() > 0


def test_loss_equals_a_naive_loop():
    model = _model(3)
    center, context, negatives = _batch(3)
    W, U = model.in_embed.weight.detach(), model.out_embed.weight.detach()
    sig = lambda x: 1 / (1 + math.exp(-x))                              # noqa: E731
    total = 0.0
    for i in range(len(center)):
        v = W[center[i]]
        total -= math.log(sig(float(U[context[i]] @ v)))
        for n in negatives[i]:
            total -= math.log(sig(-float(U[n] @ v)))
    assert model.loss(center, context, negatives).item() == pytest.approx(total / len(center), rel=1e-12)


def test_sgd_step_moves_by_the_gradient_and_lowers_the_loss():
    model = _model(4)
    center, context, negatives = _batch(4)
    before = [p.detach().clone() for p in (model.in_embed.weight, model.out_embed.weight)]
    grads = model.gradients(center, context, negatives)
    loss0 = model.loss(center, context, negatives).item()
    model.sgd_step(center, context, negatives, lr=0.1)
    for b, g, p in zip(before, grads, (model.in_embed.weight, model.out_embed.weight)):
        torch.testing.assert_close(p.detach(), b - 0.1 * g)
    assert model.loss(center, context, negatives).item() < loss0


def test_initial_state_and_vectors():
    model = Word2Vec(Word2VecConfig(7, 10, 2))
    assert model.out_embed.weight.abs().max() == 0 and model.in_embed.weight.abs().max() <= 0.05
    unit = model.vectors()
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(7))
    # with u = 0 every score is 0, so the loss is (1 + K) log 2
    c, o, n = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([[4, 5], [6, 0]])
    assert model.loss(c, o, n).item() == pytest.approx(3 * math.log(2))


def test_skipgram_pairs_equal_brute_force():
    ids = torch.tensor([5, 1, 4, 1, 0, 2, 6])
    for window in (1, 2, 10):
        centers, contexts = skipgram_pairs(ids, window)
        expected = [(int(ids[i]), int(ids[j])) for i in range(len(ids))
                    for j in [*range(i - window, i), *range(i + 1, i + window + 1)] if 0 <= j < len(ids)]
        assert list(zip(centers.tolist(), contexts.tolist())) == expected


def test_subsampling_keeps_tokens_with_their_probability_and_closes_gaps():
    ids = torch.tensor([0, 1, 0, 2] * 5000)
    keep = torch.tensor([0.0, 1.0, 0.5])
    centers, contexts = skipgram_pairs(ids, 1, keep_prob=keep, generator=torch.Generator().manual_seed(0))
    assert 0 not in centers.tolist()                                  # never kept
    assert ((centers == 1) & (contexts == 2)).any()                   # neighbours once 0 is dropped
    n_two, n_one = int((centers == 2).sum()), int((centers == 1).sum())
    assert abs(n_two / n_one - 0.5) < 0.03


def test_noise_distribution():
    p = noise_distribution([16, 1, 0, 81])
    expected = torch.tensor([8.0, 1.0, 0.0, 27.0], dtype=torch.float64) / 36
    torch.testing.assert_close(p, expected)
    torch.testing.assert_close(noise_distribution([2, 6], power=1.0), torch.tensor([0.25, 0.75], dtype=torch.float64))
    for bad in ([], [0, 0], [1, -1], [[1, 2]]):
        with pytest.raises(ValueError, match="counts"):
            noise_distribution(bad)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_embd"):
        Word2VecConfig(5, n_embd=0)
    with pytest.raises(TypeError, match="Word2VecConfig"):
        Word2Vec(5)                                                   # type: ignore[arg-type]
    model = Word2Vec(Word2VecConfig(5, 3, 2))
    with pytest.raises(ValueError, match="negatives"):
        model.loss(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="context"):
        model.loss(torch.tensor([0]), torch.tensor([5]), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="window"):
        skipgram_pairs(torch.tensor([1, 2]), 0)
    with pytest.raises(ValueError, match="ids"):
        skipgram_pairs(torch.tensor([[1, 2]]), 1)
    with pytest.raises(ValueError, match="lr"):
        model.sgd_step(torch.tensor([0]), torch.tensor([1]), torch.tensor([[1, 2]]), lr=-1.0)
