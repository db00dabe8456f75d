"""The recurrent language models (lmcore.models.rnn): cells against torch.nn.RNN / torch.nn.GRU,
the loss against F.cross_entropy, training through the Trainer, argument checks, the gradient probe."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lmcore
from lmcore import data
from lmcore.models import RNNConfig, RNNLanguageModel, gradient_norm_by_distance
from lmcore.models.rnn import Recurrence
from lmcore.training import TrainConfig, Trainer

TORCH_CELLS = {"rnn": nn.RNN, "gru": nn.GRU}


@pytest.mark.parametrize("cell", ["rnn", "gru"])
@pytest.mark.parametrize("n_layer,B,T", [(1, 1, 1), (1, 3, 7), (3, 2, 11)])
def test_recurrence_equals_torch_with_copied_weights(cell, n_layer, B, T):
    torch.manual_seed(0)
    ours = Recurrence(5, 6, n_layer, cell).double()
    ref = TORCH_CELLS[cell](5, 6, n_layer, batch_first=True).double()
    ref.load_state_dict(ours.state_dict())        # same names and shapes: loads without renaming
    x = torch.randn(B, T, 5, dtype=torch.double)
    h0 = torch.randn(n_layer, B, 6, dtype=torch.double)
    for start in (None, h0):
        out, h_n = ours(x, start)
        ref_out, ref_h = ref(x, start)
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
        torch.testing.assert_close(h_n, ref_h, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_torch_weights_load_into_the_model_and_give_torch_outputs(cell):
    """The other direction: a torch module's weights in the language model, float32."""
    torch.manual_seed(1)
    ref = TORCH_CELLS[cell](4, 8, 2, batch_first=True)
    model = RNNLanguageModel(RNNConfig(vocab_size=9, n_embd=4, n_hidden=8, n_layer=2, cell=cell))
    model.rnn.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 9, (3, 6))
    logits, _ = model(idx)
    ref_h, _ = ref(model.wte(idx))
    torch.testing.assert_close(logits, model.lm_head(ref_h), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_loss_is_the_cross_entropy_by_hand_and_last_only_matches(cell):
    torch.manual_seed(2)
    model = RNNLanguageModel(RNNConfig(vocab_size=7, n_embd=3, n_hidden=5, cell=cell))
    idx = torch.randint(0, 7, (2, 6))
    targets = torch.randint(0, 7, (2, 6))
    targets[0, 2] = -100
    logits, loss = model(idx, targets)
    logp = logits.log_softmax(-1)
    keep = targets != -100
    by_hand = -logp[keep, targets[keep]].mean()
    torch.testing.assert_close(loss, by_hand)
    last, none = model(idx, last_only=True)
    assert none is None and last.shape == (2, 1, 7)
    torch.testing.assert_close(last, logits[:, -1:])


def test_prefix_predictions_do_not_depend_on_later_tokens():
    """Causality: the logits at position t use tokens 0..t only."""
    torch.manual_seed(3)
    model = RNNLanguageModel(RNNConfig(vocab_size=6, n_embd=4, n_hidden=8, n_layer=2, cell="gru"))
    idx = torch.randint(0, 6, (1, 8))
    changed = idx.clone()
    changed[0, 5:] = (idx[0, 5:] + 1) % 6
    torch.testing.assert_close(model(idx)[0][:, :5], model(changed)[0][:, :5])
    assert not torch.allclose(model(idx)[0][:, 5:], model(changed)[0][:, 5:])


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_trainer_lowers_the_loss_on_the_toy_language(cell):
    toy = data.ToyLanguage()
    tok = lmcore.CharTokenizer().train(toy.alphabet)
    train = torch.tensor(tok.encode(data.toy_corpus("train")[:50_000]))
    torch.manual_seed(0)
    model = RNNLanguageModel(RNNConfig(tok.vocab_size, n_embd=16, n_hidden=48, cell=cell))
    x = train[:16 * 33].view(16, 33)
    before = model(x[:, :-1], x[:, 1:])[1].item()
    config = TrainConfig(max_steps=40, batch_size=16, seq_len=32, lr=1e-2, min_lr=1e-3, warmup_steps=5,
                         eval_interval=1000, eval_iters=1, progress=False, device="cpu")
    Trainer(model, config, train).train()
    after = model(x[:, :-1], x[:, 1:])[1].item()
    assert after < before - 0.5, (before, after)


def test_state_dict_round_trip():
    torch.manual_seed(4)
    config = RNNConfig(vocab_size=8, n_embd=4, n_hidden=6, n_layer=2, cell="gru")
    a, b = RNNLanguageModel(config), RNNLanguageModel(RNNConfig(**config.to_dict()))
    idx = torch.randint(0, 8, (2, 5))
    assert not torch.allclose(a(idx)[0], b(idx)[0])
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(idx)[0], b(idx)[0], atol=0, rtol=0)
    assert "rnn.weight_hh_l1" in a.state_dict() and a.state_dict()["rnn.weight_ih_l0"].shape == (18, 4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(vocab_size=0), "vocab_size"), (dict(n_hidden=2.0), "n_hidden"), (dict(n_layer=True), "n_layer"),
    (dict(cell="lstm"), "cell"), (dict(dropout=1.0), "dropout"), (dict(n_embd=-1), "n_embd"),
])
def test_bad_configs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RNNConfig(**{**dict(vocab_size=5, n_embd=3, n_hidden=4), **kwargs})


def test_bad_inputs_are_refused():
    model = RNNLanguageModel(RNNConfig(vocab_size=5, n_embd=3, n_hidden=4))
    with pytest.raises(TypeError, match="RNNConfig"):
        RNNLanguageModel(lmcore.MLPConfig(5, 2, 3, 4))     # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idx"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="idx"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(TypeError, match="idx"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="last_only"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), last_only=True)
    with pytest.raises(ValueError, match="h0"):
        model.rnn(torch.zeros(2, 3, 3), torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(batch, time, 3\)"):
        model.rnn(torch.zeros(2, 3, 4))


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_gradient_norm_by_distance_equals_autograd_per_sequence(cell):
    """Against torch.nn's cell with the same weights, one sequence and one input position at a time."""
    torch.manual_seed(5)
    model = RNNLanguageModel(RNNConfig(vocab_size=6, n_embd=3, n_hidden=5, n_layer=2, cell=cell, dropout=0.5))
    model.double()
    ref = TORCH_CELLS[cell](3, 5, 2, batch_first=True).double()
    ref.load_state_dict(model.rnn.state_dict())
    idx = torch.randint(0, 6, (3, 7))
    got = gradient_norm_by_distance(model, idx)
    assert model.training                                   # the probe restores the mode
    T = idx.shape[1] - 1
    expected = torch.zeros(T, dtype=torch.double)
    for b in range(3):
        for t in range(T):
            x = model.wte(idx[b:b + 1, :-1]).detach().requires_grad_(True)
            h, _ = ref(x)
            loss = F.cross_entropy(model.lm_head(h[:, -1]), idx[b:b + 1, -1])
            (g,) = torch.autograd.grad(loss, x)
            expected[T - 1 - t] += g[0, t].norm() / 3
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        gradient_norm_by_distance(model, idx[:, :1])
    with pytest.raises(TypeError, match="RNNLanguageModel"):
        gradient_norm_by_distance(nn.Linear(2, 2), idx)      # type: ignore[arg-type]


@pytest.mark.parametrize("n_pieces", [1, 3, 7])
def test_cross_entropy_equals_one_pass_when_the_context_covers_the_stream(n_pieces):
    torch.manual_seed(6)
    model = RNNLanguageModel(RNNConfig(vocab_size=6, n_embd=3, n_hidden=5, n_layer=2, cell="gru")).double()
    ids = torch.randint(0, 6, (40,))
    expected = F.cross_entropy(model(ids[None, :-1])[0][0], ids[1:]).item()
    assert model.cross_entropy(ids, context=40, n_pieces=n_pieces) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_scores_each_token_from_at_least_its_context():
    """Brute force: token t (t >= 1) read from a zero state starting where lmcore's piece reading
    begins, max(0, piece start - context); every token scored exactly once."""
    torch.manual_seed(7)
    model = RNNLanguageModel(RNNConfig(vocab_size=5, n_embd=3, n_hidden=4, cell="rnn")).double()
    ids = torch.randint(0, 5, (23,))
    n, n_pieces, context = 22, 4, 3
    cuts = [n * i // n_pieces for i in range(n_pieces + 1)]
    total = 0.0
    for a, b in zip(cuts, cuts[1:]):
        r = max(0, a - context)
        logits = model(ids[None, r:b])[0][0]
        total += F.cross_entropy(logits[a - r:], ids[a + 1:b + 1], reduction="sum").item()
    got = model.cross_entropy(ids, context=context, n_pieces=n_pieces)
    assert got == pytest.approx(total / n, rel=1e-12)
    assert got != pytest.approx(model.cross_entropy(ids, context=22, n_pieces=1), rel=1e-6)   # context matters
    with pytest.raises(ValueError, match="ids"):
        model.cross_entropy(torch.tensor([1]))
    with pytest.raises(ValueError, match="context"):
        model.cross_entropy(ids, context=-1)
