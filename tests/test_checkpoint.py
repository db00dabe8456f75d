"""Checkpoints: exact resume, integrity checks, config mismatches, safe loading."""
from __future__ import annotations

import pickle

import pytest
import torch

from lmcore.models import GPT, GPTConfig
from lmcore.training import TrainConfig, Trainer
from lmcore.training.checkpoint import load_checkpoint, save_checkpoint

VOCAB = 13


def _data(seed: int) -> torch.Tensor:
    return torch.randint(VOCAB, (3000,), generator=torch.Generator().manual_seed(seed))


def _trainer(out_dir, model_seed=0, n_embd=16, **kw) -> Trainer:
    torch.manual_seed(model_seed)
    # dropout > 0 so that the global torch RNG matters too, not only the batch generator
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=16, n_layer=1, n_head=2, n_embd=n_embd, dropout=0.1))
    cfg = dict(max_steps=10, batch_size=4, warmup_steps=3, eval_interval=4, eval_iters=2, progress=False,
               device="cpu", out_dir=str(out_dir))
    return Trainer(model, TrainConfig(**{**cfg, **kw}), _data(0), _data(1))


def _params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()]


def test_resume_is_bit_exact(tmp_path):
    full = _trainer(tmp_path / "full")
    full.train()
    interrupted = _trainer(tmp_path / "split")
    interrupted.train(steps=5)                      # stops after 5 steps, writing last.pt
    assert interrupted.step == 5
    # a fresh process would rebuild the model with another init and another RNG state
    torch.manual_seed(12345)
    resumed = _trainer(tmp_path / "split", model_seed=99).resume()
    assert resumed.step == 5
    resumed.train()
    assert resumed.series("train_loss") == full.series("train_loss")        # == on floats: bit for bit
    assert resumed.series("val_loss") == full.series("val_loss")
    assert all(torch.equal(a, b) for a, b in zip(_params(resumed), _params(full)))
    assert resumed.tokens == full.tokens


def test_checkpoint_contents_load_with_weights_only(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train(steps=2)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == 2
    assert state["model_config"]["n_embd"] == 16 and state["train_config"]["max_steps"] == 10
    assert set(state["rng"]) >= {"torch", "data"}
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt.sha256").is_file()


def test_truncated_or_damaged_checkpoint_is_detected(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train(steps=1)
    path = tmp_path / "last.pt"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_checkpoint(path)
    (tmp_path / "last.pt.sha256").unlink()        # without the sidecar, the unpickler still notices
    with pytest.raises(ValueError, match="could not be loaded safely"):
        load_checkpoint(path)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    save_checkpoint({"x": torch.zeros(1)}, path)
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt"):
        _trainer(tmp_path).resume()


def test_not_a_checkpoint_and_missing(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an lmcore checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "empty_dir_or_missing")


def test_checkpoint_from_another_config_is_refused(tmp_path):
    _trainer(tmp_path).train(steps=1)
    with pytest.raises(ValueError, match=r"model config differs.*n_embd"):
        _trainer(tmp_path, n_embd=32).resume()
    with pytest.raises(ValueError, match="lr=0.001 .now 0.002"):
        _trainer(tmp_path, lr=2e-3).resume()
    longer = _trainer(tmp_path, max_steps=20).resume()   # running longer is allowed
    assert longer.step == 1


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"value": torch.ones(3)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):   # which one depends on where the lambda lives
        save_checkpoint({"value": lambda: None}, path)      # cannot be pickled
    assert torch.equal(load_checkpoint(path)["value"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
