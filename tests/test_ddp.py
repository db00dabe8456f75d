"""DistributedDataParallel: two CPU processes (gloo) stay in sync and match one process."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lmcore.models import GPT, GPTConfig
from lmcore.training import TrainConfig, Trainer
from lmcore.training.distributed import DistInfo, dist_info

VOCAB, STEPS = 13, 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out_dir: str, grad_accum: int) -> Trainer:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=16, n_layer=1, n_head=2, n_embd=16))
    data = torch.randint(VOCAB, (2000,), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(max_steps=STEPS, batch_size=8, grad_accum_steps=grad_accum, warmup_steps=1,
                      eval_interval=STEPS, eval_iters=2, progress=False, device="cpu", out_dir=out_dir)
    trainer = Trainer(model, cfg, data, data)
    trainer.train()
    return trainer


def _worker(rank: int, world: int, port: int, out_dir: str, grad_accum: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        trainer = _run(out_dir, grad_accum)
        saved = trainer.save_checkpoint("probe")
        torch.save({"params": [p.detach() for p in trainer.model.parameters()],
                    "losses": trainer.series("train_loss")[1], "val": trainer.series("val_loss")[1],
                    "wrote": saved is not None}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
# grad_accum=2 exercises both paths: micro-steps without gradient sync, then the synced one
@pytest.mark.parametrize("grad_accum", [2])
def test_two_gloo_ranks_stay_in_sync_and_match_one_process(tmp_path, grad_accum):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), grad_accum), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # identical replicas: DDP averaged the gradients, so every rank took the same step
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"]))
    assert r0["losses"] == r1["losses"] and r0["val"] == r1["val"]   # logged losses are all-reduced
    assert r0["wrote"] and not r1["wrote"]                            # only rank 0 writes files
    assert (tmp_path / "last.pt").is_file()

    single = _run(str(tmp_path / "single"), grad_accum)              # one process, the whole batch
    for a, b in zip(r0["params"], single.model.parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-5)
    assert r0["losses"] == pytest.approx(single.series("train_loss")[1], abs=1e-5)


def test_single_process_defaults():
    assert dist_info() == DistInfo() and DistInfo().is_main and not DistInfo().enabled
    assert DistInfo(rank=1, world_size=2).enabled and not DistInfo(rank=1, world_size=2).is_main
