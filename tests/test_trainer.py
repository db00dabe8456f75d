"""The Trainer: schedule, optimiser groups, accumulation, NaN handling, validation, learning."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmcore import data
from lmcore.models import GPT, GPTConfig
from lmcore.tokenizers import CharTokenizer
from lmcore.training import NonFiniteLossError, TrainConfig, Trainer


@dataclass
class TinyConfig:
    vocab_size: int = 11
    n_embd: int = 16


class TinyLM(nn.Module):
    """A bigram-ish model with a matrix, an embedding, a bias and a LayerNorm: enough to test the
    Trainer without depending on GPT.  ``nan_at`` makes the loss NaN from that forward call on."""

    def __init__(self, config: TinyConfig | None = None, nan_at: int | None = None) -> None:
        super().__init__()
        self.config = config = config or TinyConfig()
        self.emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.ln = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, x, targets=None):
        logits = self.head(self.ln(self.emb(x)))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
            if self.training:
                self.calls += 1
                if self.nan_at is not None and self.calls > self.nan_at:
                    loss = loss * float("nan")
        return logits, loss


def _stream(n: int = 2000, vocab: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.randint(vocab, (n,), generator=torch.Generator().manual_seed(seed))


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=5, batch_size=4, seq_len=8, warmup_steps=2, eval_interval=5, eval_iters=2,
                progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_lr_schedule_matches_formula():
    cfg = TrainConfig(max_steps=110, lr=1.0, min_lr=0.1, warmup_steps=10)
    assert [cfg.lr_at(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert cfg.lr_at(10) == pytest.approx(1.0)
    assert cfg.lr_at(60) == pytest.approx(0.55)          # half-way down the cosine: the mean of lr and min_lr
    assert cfg.lr_at(35) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert cfg.lr_at(110) == cfg.lr_at(500) == pytest.approx(0.1)
    lrs = [cfg.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("bad, exc", [
    (dict(lr=0.0), ValueError), (dict(lr=-1e-3), ValueError), (dict(max_steps=0), ValueError),
    (dict(min_lr=1.0, lr=0.1), ValueError), (dict(batch_size=0), ValueError), (dict(grad_accum_steps=0), ValueError),
    (dict(dtype="fp8"), ValueError), (dict(beta2=1.0), ValueError), (dict(max_steps=2.5), TypeError),
    (dict(max_steps=True), TypeError), (dict(lr=float("nan")), ValueError), (dict(grad_clip=-1.0), ValueError),
    (dict(warmup_steps=50, lr_decay_steps=10), ValueError), (dict(seed=2**63), ValueError),
    (dict(seed=-1), ValueError), (dict(overwrite="yes"), TypeError),
])
def test_bad_config_values(bad, exc):
    with pytest.raises(exc, match=next(iter(bad))):
        TrainConfig(**bad)


def test_weight_decay_only_on_matrices():
    trainer = Trainer(TinyLM(), _cfg(weight_decay=0.3), _stream())
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    m = trainer.model
    assert {id(p) for p in decay["params"]} == {id(m.emb.weight), id(m.head.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(m.ln.weight), id(m.ln.bias), id(m.head.bias)}


def test_gradient_accumulation_equals_one_big_batch():
    rows = torch.randint(11, (8, 9), generator=torch.Generator().manual_seed(1))

    def fixed_batches(size):
        calls = iter(range(100))

        def batch_fn(split, generator):
            i = next(calls) % (8 // size)
            chunk = rows[i * size:(i + 1) * size]
            return chunk[:, :-1], chunk[:, 1:]
        return batch_fn

    params = []
    for bs, accum in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        trainer = Trainer(TinyLM(), _cfg(max_steps=1, batch_size=bs, grad_accum_steps=accum, grad_clip=0.0),
                          batch_fn=fixed_batches(bs))
        trainer.train_step()
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=1e-6)


def test_nan_loss_raises_naming_the_step_and_leaves_model_finite():
    trainer = Trainer(TinyLM(nan_at=3), _cfg(max_steps=10), _stream())
    with pytest.raises(NonFiniteLossError, match="at step 3") as info:
        trainer.train()
    assert info.value.step == 3 and trainer.step == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_batch_fn_with_masked_targets_and_shape_check():
    def batch_fn(split, generator):
        x = torch.randint(11, (4, 8), generator=generator)
        y = torch.roll(x, -1, dims=1)
        y[:, :4] = -100                        # only the second half of each row is trained on
        return x, y

    trainer = Trainer(TinyLM(), _cfg(), batch_fn=batch_fn)
    trainer.train()
    assert math.isfinite(trainer.history[-1]["val_loss"])
    bad = Trainer(TinyLM(), _cfg(), batch_fn=lambda split, g: (torch.zeros(3, 8, dtype=torch.long),) * 2)
    with pytest.raises(ValueError, match="batch_size=4"):
        bad.train_step()


def test_bad_data_and_arguments():
    with pytest.raises(ValueError, match="train_data must be a 1-D"):
        Trainer(TinyLM(), _cfg(), _stream().view(40, 50))
    with pytest.raises(ValueError, match="fewer than seq_len"):
        Trainer(TinyLM(), _cfg(), _stream(n=8))
    gpt = GPT(GPTConfig(vocab_size=11, context_length=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="exceeds the model's context_length=8"):
        Trainer(gpt, _cfg(seq_len=16), _stream())
    assert Trainer(gpt, _cfg(seq_len=None), _stream()).seq_len == 8      # a GPT's whole context
    with pytest.raises(ValueError, match="set TrainConfig.seq_len"):     # TinyLM has no context_length
        Trainer(TinyLM(), _cfg(seq_len=None), _stream())
    with pytest.raises(ValueError, match="train_data"):
        Trainer(TinyLM(), _cfg())
    with pytest.raises(ValueError, match="float16"):
        Trainer(TinyLM(), _cfg(dtype="float16"), _stream())
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer(TinyLM(), {"lr": 1e-3}, _stream())
    with pytest.raises(ValueError, match="steps"):
        Trainer(TinyLM(), _cfg(), _stream()).train(steps=0)
    with pytest.raises(ValueError, match="out_dir"):
        Trainer(TinyLM(), _cfg(), _stream()).save_checkpoint()


def test_history_and_series():
    trainer = Trainer(TinyLM(), _cfg(max_steps=6, eval_interval=3), _stream(), _stream(seed=1))
    trainer.train()
    steps, losses = trainer.series("train_loss")
    assert steps == list(range(6)) and all(math.isfinite(v) for v in losses)
    eval_steps, val = trainer.series("val_loss")
    assert eval_steps == [0, 3, 6]
    _, ppl = trainer.series("val_ppl")
    assert ppl == pytest.approx([math.exp(v) for v in val])
    assert [r["tokens"] for r in trainer.history if "train_loss" in r] == [32 * (s + 1) for s in range(6)]
    _, lrs = trainer.series("lr")
    assert lrs == pytest.approx([trainer.config.lr_at(s) for s in range(6)])
    with pytest.raises(KeyError, match="known keys"):
        trainer.series("accuracy")


def test_estimate_loss_is_repeatable_and_leaves_batch_stream_alone():
    trainer = Trainer(TinyLM(), _cfg(), _stream(), _stream(seed=1))
    state = trainer.generator.get_state()
    first, second = trainer.estimate_loss(), trainer.estimate_loss()
    assert first == second and set(first) == {"train", "val"}
    assert torch.equal(trainer.generator.get_state(), state)
    assert trainer.model.training


@pytest.mark.slow
def test_gpt_learns_the_toy_language():
    text = data.toy_corpus("val")
    tok = CharTokenizer().train(text)
    ids = torch.tensor(tok.encode(text))
    train, val = data.train_val_split(ids)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=32, n_layer=1, n_head=2, n_embd=32))
    trainer = Trainer(model, _cfg(max_steps=60, batch_size=16, seq_len=32, lr=1e-2, min_lr=1e-3,
                                  warmup_steps=5, eval_interval=60, eval_iters=5), train, val)
    trainer.train()
    _, val_loss = trainer.series("val_loss")
    # from uniform guessing (ln 27 = 3.30 nats) to well below the unigram entropy (about 2.9)
    assert val_loss[0] > 3.0 and val_loss[-1] < 2.4


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_a_plain_checkpoint(tmp_path):
    """``compile=True`` trains the same model as eager mode (to float rounding), and its
    checkpoint holds the plain module's weights (no ``_orig_mod.`` prefixes) that load into a GPT."""
    pytest.importorskip("torch._inductor")
    from lmcore.training.checkpoint import load_checkpoint

    config = GPTConfig(vocab_size=11, context_length=8, n_layer=1, n_head=2, n_embd=16)
    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        out = tmp_path / ("compiled" if compiled else "eager")
        trainer = Trainer(GPT(config), _cfg(max_steps=4, compile=compiled, out_dir=str(out)), _stream(), _stream(seed=1))
        trainer.train()
        assert hasattr(trainer._fwd, "_orig_mod") == compiled      # the compiled wrapper was used
        runs[compiled] = (trainer.series("train_loss")[1], trainer.series("val_loss")[1], out)
    (eager_train, eager_val, _), (comp_train, comp_val, comp_dir) = runs[False], runs[True]
    assert comp_train == pytest.approx(eager_train, rel=1e-5)
    assert comp_val == pytest.approx(eager_val, rel=1e-5)
    state = load_checkpoint(comp_dir / "last.pt")
    assert not any(k.startswith("_orig_mod") for k in state["model"])
    reloaded = GPT(config)
    reloaded.load_state_dict(state["model"])
