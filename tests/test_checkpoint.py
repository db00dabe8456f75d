"""Checkpoints: exact resume, integrity checks, config mismatches, safe loading, the LR schedule on resume."""
from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import random

import pytest
import torch

from lmcore._io import atomic_write
from lmcore.models import GPT, GPTConfig
from lmcore.training import TrainConfig, Trainer
from lmcore.training.checkpoint import MAGIC, load_checkpoint, save_checkpoint
from lmcore.training.schedule import resumed_schedule

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


def _wrap(payload: bytes) -> bytes:
    """The documented file format, built independently of save_checkpoint."""
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def test_checkpoint_is_one_file_with_its_checksum_inside(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train(steps=2)
    blob = (tmp_path / "last.pt").read_bytes()
    header = len(MAGIC) + 65
    assert blob[:len(MAGIC)] == MAGIC and blob[header - 1:header] == b"\n"
    assert blob[len(MAGIC):header - 1].decode() == hashlib.sha256(blob[header:]).hexdigest()
    state = torch.load(io.BytesIO(blob[header:]), weights_only=True)      # the payload needs no pickle code
    assert state["step"] == 2
    assert state["model_config"]["n_embd"] == 16 and state["train_config"]["max_steps"] == 10
    assert set(state["rng"]) >= {"torch", "data"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]    # no sidecar to go stale


def test_every_single_byte_flip_is_detected(tmp_path):
    """A copied last.pt (no sidecar exists any more) is verified too: every byte of the header and
    a sample of payload bytes, flipped, is refused, never loaded with other weights."""
    trainer = _trainer(tmp_path / "run")
    trainer.train(steps=1)
    blob = (tmp_path / "run" / "last.pt").read_bytes()
    rng = random.Random(0)
    offsets = list(range(len(MAGIC) + 65)) + rng.sample(range(len(MAGIC) + 65, len(blob)), 100)
    path = tmp_path / "copy" / "last.pt"
    path.parent.mkdir()
    for off in offsets:
        flipped = bytearray(blob)
        flipped[off] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match="corrupt or truncated|not an lmcore checkpoint"):
            load_checkpoint(path)
    path.write_bytes(blob)
    assert load_checkpoint(path.parent)["step"] == 1                         # the intact copy loads


def test_truncated_or_damaged_checkpoint_is_detected(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train(steps=1)
    path = tmp_path / "last.pt"
    blob = path.read_bytes()
    for cut in (len(blob) // 2, len(blob) - 1, len(MAGIC) + 30, 3):
        path.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="corrupt or truncated|not an lmcore checkpoint"):
            load_checkpoint(path)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt"):
        _trainer(tmp_path).resume()


def test_old_format_is_read_only_with_a_matching_sidecar(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": "lmcore.checkpoint", "format_version": 1, "x": torch.arange(3)}, path)
    sidecar = tmp_path / "last.pt.sha256"
    with pytest.raises(ValueError, match="no checksum.*without its last.pt.sha256"):
        load_checkpoint(path)
    sidecar.write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))
    sidecar.write_text("0" * 64 + "\n")                                      # a stale sidecar
    with pytest.raises(ValueError, match="corrupt or truncated.*last.pt.sha256 records"):
        load_checkpoint(path)
    save_checkpoint({"x": torch.ones(1)}, path)                            # the new format replaces both
    assert not sidecar.exists() and torch.equal(load_checkpoint(path)["x"], torch.ones(1))


class _Evil:
    def __reduce__(self):
        return (print, ("this would have run code",))


@pytest.mark.parametrize("container", ["header", "old format with sidecar"])
def test_a_pickle_that_runs_code_is_refused_without_suggesting_weights_only_false(tmp_path, container):
    buffer = io.BytesIO()
    torch.save({"format": "lmcore.checkpoint", "format_version": 1, "x": _Evil()}, buffer)
    path = tmp_path / "last.pt"
    if container == "header":          # a checksum is no signature: the payload is still loaded safely
        path.write_bytes(_wrap(buffer.getvalue()))
    else:
        path.write_bytes(buffer.getvalue())
        (tmp_path / "last.pt.sha256").write_text(hashlib.sha256(buffer.getvalue()).hexdigest())
    with pytest.raises(ValueError, match="refused: it holds objects other than tensors") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__   # torch's advice is not chained


def test_save_removes_temp_files_of_killed_saves_only(tmp_path):
    path = tmp_path / "last.pt"
    stale = [tmp_path / ".last.pt.k1ll3d00.tmp", tmp_path / ".last.pt.sha256.abcd1234.tmp"]
    others = [tmp_path / ".best.pt.k1ll3d00.tmp", tmp_path / "notes.tmp", tmp_path / "last.pt.tmp"]
    for f in stale + others:
        f.write_bytes(b"half a checkpoint")
    save_checkpoint({"x": torch.zeros(1)}, path)
    assert not any(f.exists() for f in stale) and all(f.exists() for f in others)


def test_atomic_write_gives_the_mode_a_plain_open_would(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "a.txt", "w") as f:
            f.write("x")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        os.umask(0o002)
        save_checkpoint({"x": torch.zeros(1)}, tmp_path / "last.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == 0o664


def test_fresh_run_refuses_to_overwrite_another_runs_checkpoints(tmp_path):
    _trainer(tmp_path).train(steps=2)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match=r"resume.*overwrite=True"):
        _trainer(tmp_path).train()
    assert (tmp_path / "last.pt").read_bytes() == before
    (tmp_path / "last.pt").unlink()                                        # best.pt alone is a run too
    with pytest.raises(FileExistsError, match="best.pt"):
        _trainer(tmp_path).train(steps=1)
    replaced = _trainer(tmp_path, overwrite=True)
    replaced.save_checkpoint("last")              # the old run's best.pt goes: nothing of it outlives it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    replaced.train(steps=1)
    assert load_checkpoint(tmp_path)["step"] == 1
    resumed = _trainer(tmp_path).resume()                                  # resuming is not overwriting
    resumed.train(steps=1)
    assert load_checkpoint(tmp_path)["step"] == 2
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(FileExistsError, match="is a file"):
        _trainer(tmp_path / "file").train(steps=1)
    with pytest.raises(TypeError, match="overwrite must be a bool"):
        TrainConfig(overwrite="yes")


def _cosine(start, start_lr, end, min_lr, step):
    """The continued schedule, written out independently of lmcore.training.schedule."""
    if step >= end:
        return min_lr
    return min_lr + (start_lr - min_lr) * (1 + math.cos(math.pi * (step - start) / (end - start))) / 2


def test_a_longer_resumed_run_continues_the_learning_rate_without_a_jump(tmp_path):
    first = _trainer(tmp_path, warmup_steps=3)
    first.train(steps=6)
    old = [first.config.lr_at(s) for s in range(6 + 1)]                    # the 10-step schedule
    longer = _trainer(tmp_path, max_steps=20).resume()
    longer.train()
    steps, lrs = longer.series("lr")
    assert steps == list(range(20))
    assert lrs[:6] == old[:6]                                              # the steps already taken
    expected = [_cosine(6, old[6], 20, 1e-4, s) for s in range(6, 20)]
    assert lrs[6:] == pytest.approx(expected, rel=1e-12)
    assert lrs[6] == pytest.approx(old[6]) and lrs[6] < lrs[5]             # no re-warming at the resume step
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] > 1e-4
    # extended again, from its own checkpoint: the third segment starts where the second was
    again = _trainer(tmp_path, max_steps=30).resume()
    again.train()
    _, lrs30 = again.series("lr")
    assert lrs30[:20] == lrs
    assert lrs30[20:] == pytest.approx([_cosine(20, _cosine(6, old[6], 20, 1e-4, 20), 30, 1e-4, s)
                                        for s in range(20, 30)], rel=1e-12)


def test_resumed_schedule_cases():
    cfg = TrainConfig(max_steps=20, lr=1.0, min_lr=0.1, warmup_steps=4)
    ten = {"train_config": {"max_steps": 10}}                              # a checkpoint without lr_schedule
    lr6 = TrainConfig(max_steps=10, lr=1.0, min_lr=0.1, warmup_steps=4).lr_at(6)
    assert resumed_schedule(cfg, ten, 6) == [[4, 1.0, 10], [6, lr6, 20]]
    assert resumed_schedule(cfg, ten, 3) == [[4, 1.0, 20]]                # during warm-up: the new cosine
    assert resumed_schedule(cfg, {"train_config": {"max_steps": 20}}, 6) == [[4, 1.0, 20]]   # same length
    fixed = TrainConfig(max_steps=20, lr=1.0, min_lr=0.1, warmup_steps=4, lr_decay_steps=10)
    assert resumed_schedule(fixed, {"lr_schedule": [[4, 1.0, 10]], "train_config": {}}, 6) == [[4, 1.0, 10]]
    done = resumed_schedule(cfg, ten, 10)                                  # a finished run goes on at min_lr
    assert done == [[4, 1.0, 10], [10, 0.1, 20]]


def test_not_a_checkpoint_and_missing(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no checksum: it is a plain torch.save file"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "other.pt.sha256").write_text(hashlib.sha256((tmp_path / "other.pt").read_bytes()).hexdigest())
    with pytest.raises(ValueError, match="not an lmcore checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "notes.pt").write_text("some text")
    with pytest.raises(ValueError, match="not an lmcore checkpoint"):
        load_checkpoint(tmp_path / "notes.pt")
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


def test_a_run_saved_before_a_config_field_existed_still_resumes(tmp_path):
    """A field added to GPTConfig later (with a default) is absent from older checkpoints: it counts
    as its default, so the run resumes bit-exactly; a field that really differs is still refused."""
    full = _trainer(tmp_path / "full")
    full.train()
    _trainer(tmp_path / "split").train(steps=5)
    path = tmp_path / "split" / "last.pt"
    state = load_checkpoint(path)
    del state["model_config"]["pad_vocab_to"]          # as written before the field existed
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "format_version")}, path)
    resumed = _trainer(tmp_path / "split").resume()
    resumed.train()
    assert resumed.series("train_loss") == full.series("train_loss")
    state["model_config"]["n_layer"] = 2
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "format_version")}, path)
    with pytest.raises(ValueError, match=r"model config differs .* \['n_layer'\]"):
        _trainer(tmp_path / "split").resume()
