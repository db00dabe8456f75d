"""The Bengio MLP language model: shapes, the loss against a hand-written reference, training."""
from __future__ import annotations

import math

import pytest
import torch

import lmcore
from lmcore import data
from lmcore.decoding import generate
from lmcore.models.mlp import MLPConfig, MLPLanguageModel
from lmcore.training import TrainConfig, Trainer


def _model(V=7, context=3, n_embd=4, n_hidden=16, seed=0) -> MLPLanguageModel:
    torch.manual_seed(seed)
    return MLPLanguageModel(MLPConfig(V, context, n_embd, n_hidden))


def _manual_logits(model: MLPLanguageModel, seq: list[int]) -> torch.Tensor:
    """Logits of every position of one sequence, one position at a time with Python lists."""
    k, pad = model.config.context_length, model.pad_id
    out = []
    for t in range(len(seq)):
        window = [pad] * max(0, k - 1 - t) + seq[max(0, t - k + 1):t + 1]
        x = torch.cat([model.wte.weight[i] for i in window])
        h = torch.tanh(model.hidden.weight @ x + model.hidden.bias)
        out.append(model.lm_head.weight @ h + model.lm_head.bias)
    return torch.stack(out)


def test_shapes_and_last_only():
    model = _model()
    idx = torch.randint(0, 7, (3, 5))
    logits, loss = model(idx)
    assert logits.shape == (3, 5, 7) and loss is None
    last, _ = model(idx, last_only=True)
    assert last.shape == (3, 1, 7)
    torch.testing.assert_close(last[:, 0], logits[:, -1])


def test_logits_and_loss_equal_a_manual_reference():
    model = _model()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 7, (2, 6), generator=g)
    targets = torch.randint(0, 7, (2, 6), generator=g)
    targets[0, 2] = -100                                # ignored position
    with torch.no_grad():
        logits, loss = model(idx, targets)
        manual = torch.stack([_manual_logits(model, row.tolist()) for row in idx])
    torch.testing.assert_close(logits, manual, rtol=1e-5, atol=1e-6)
    # cross-entropy by hand: -log softmax at the target, averaged over the non-ignored positions
    nll = [math.log(torch.exp(manual[b, t]).sum()) - manual[b, t, targets[b, t]].item()
           for b in range(2) for t in range(6) if targets[b, t] != -100]
    assert loss.item() == pytest.approx(sum(nll) / len(nll), rel=1e-5)


def test_prediction_depends_only_on_the_last_context_tokens():
    model = _model(context=3)
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[6, 0, 3, 4, 5, 6]])              # differs only more than 3 tokens back
    la, _ = model(a)
    lb, _ = model(b)
    torch.testing.assert_close(la[:, 4:], lb[:, 4:])
    assert not torch.allclose(la[:, 1:4], lb[:, 1:4])


def test_stream_cross_entropy_matches_forward_on_the_whole_stream():
    model = _model()
    ids = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(2))
    _, loss = model(ids[None, :-1], ids[None, 1:])
    assert model.cross_entropy(ids, chunk=7) == pytest.approx(loss.item(), rel=1e-5)


def test_generate_greedy_matches_argmax_and_keeps_prompt():
    model = _model()
    prompt = torch.tensor([[1, 2], [3, 4]])
    out = generate(model, prompt, 4, temperature=0)
    assert out.shape == (2, 6) and torch.equal(out[:, :2], prompt)
    for t in range(2, 6):
        logits, _ = model(out[:, :t])
        assert torch.equal(out[:, t], logits[:, -1].argmax(-1))


def test_generate_samples_follow_the_model_distribution():
    """Chi-square test at a fixed seed: 4000 one-token continuations of the same prompt."""
    from scipy.stats import chisquare
    model = _model(V=5)
    prompt = torch.tensor([[1, 2, 3]]).repeat(4000, 1)
    out = generate(model, prompt, 1, generator=torch.Generator().manual_seed(0))[:, -1]
    with torch.no_grad():
        # softmax in float64: chisquare needs the expected counts to sum to 4000 within 1.5e-8
        probs = torch.softmax(model(prompt[:1])[0][0, -1].double(), -1)
    observed = torch.bincount(out, minlength=5).double()
    assert chisquare(observed.numpy(), (probs * 4000).numpy()).pvalue > 1e-3


def test_bad_inputs_raise_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match=r"idx must hold token ids in \[0, 7\), got 7"):
        model(torch.tensor([[0, 7]]))    # 7 is the padding row: it must not be readable as a token
    with pytest.raises(ValueError, match="shape"):
        model(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets"):
        model(torch.tensor([[0, 1]]), torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="context_length"):
        MLPConfig(vocab_size=5, context_length=0, n_embd=4, n_hidden=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, torch.tensor([[0]]), -1)


@pytest.mark.slow
def test_trains_below_the_unigram_entropy_on_the_toy_language():
    """A few hundred Trainer steps take the MLP well below what any unigram model can reach."""
    toy = data.ToyLanguage()
    tok = lmcore.CharTokenizer().train(toy.alphabet)
    train = torch.tensor(tok.encode(data.toy_corpus("train")[:200_000]))
    val = torch.tensor(tok.encode(data.toy_corpus("val")[:20_000]))
    counts = torch.bincount(train, minlength=tok.vocab_size).double()
    p = counts / counts.sum()
    unigram_entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    torch.manual_seed(0)
    model = MLPLanguageModel(MLPConfig(tok.vocab_size, context_length=6, n_embd=12, n_hidden=128))
    config = TrainConfig(max_steps=300, batch_size=16, seq_len=32, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                         eval_interval=300, eval_iters=5, progress=False, device="cpu")
    Trainer(model, config, train, val).train()
    ce = model.cross_entropy(val)
    assert ce < unigram_entropy - 1.0, (ce, unigram_entropy)
