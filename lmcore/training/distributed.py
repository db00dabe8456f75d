"""Training on more than one process: DistributedDataParallel (DDP) helpers for the Trainer. No
chapter needs more than one process; this is for readers who take chapter 4's Trainer to a GPU box.

With DDP every process (a *rank*) holds a full copy of the model, computes gradients on its own
slice of the global batch, and the gradients are averaged across ranks during ``backward()``; all
copies therefore take the same optimiser step and stay identical.  The :class:`lmcore.Trainer`
notices an initialised process group by itself: it slices each global batch by rank, wraps the
model in DDP, all-reduces the logged losses, and lets only rank 0 write checkpoints and show a
progress bar.  ``python -m lmcore train`` calls :func:`init_distributed` when started by
``torchrun``.

Multi-GPU and multi-node launch
-------------------------------

One machine, all its GPUs (NCCL backend, one process per GPU)::

    torchrun --standalone --nproc_per_node=gpu -m lmcore train --corpus tinyshakespeare --out runs/shakespeare

Several machines (here 2 nodes with 8 GPUs each).  Run the same command on every node, changing
only ``--node_rank``; ``--master_addr`` is an address of node 0 that all nodes can reach, and
``--master_port`` a free TCP port on it::

    # on node 0
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
             --master_addr=10.0.0.1 --master_port=29500 \\
             -m lmcore train --corpus tinyshakespeare --batch-size 512 --out /shared/runs/shakespeare
    # on node 1
    torchrun --nnodes=2 --node_rank=1 --nproc_per_node=8 \\
             --master_addr=10.0.0.1 --master_port=29500 \\
             -m lmcore train --corpus tinyshakespeare --batch-size 512 --out /shared/runs/shakespeare

Notes:

* ``--batch-size`` is the *global* batch per micro-step; it must be divisible by the number of
  processes (16 above), and each rank trains on its own ``batch_size / world_size`` rows.  With the
  same seed, the result matches one process training on the whole batch (up to float rounding).
* Only rank 0 writes checkpoints.  To ``--resume``, every node must be able to read the run
  directory: put ``--out`` on a shared file system, or copy ``last.pt`` (its checksum is inside
  it) and ``tokenizer.json`` to each node first.
* Without GPUs the same commands work on CPUs with the gloo backend (e.g.
  ``torchrun --standalone --nproc_per_node=2 -m lmcore train ...``); useful for testing, slow
  for training.
* If NCCL hangs across nodes, ``NCCL_DEBUG=INFO`` shows which network interface it picked;
  ``NCCL_SOCKET_IFNAME=eth0`` (your interface name) pins it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DistInfo", "dist_info", "init_distributed", "cleanup_distributed", "all_reduce_mean", "wrap_ddp"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank among ``world_size`` processes, and its local GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 is the one that logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """The current process group's layout (a single process when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (RANK, WORLD_SIZE, ...).

    Does nothing (and returns a single-process ``DistInfo``) when ``WORLD_SIZE`` is unset or 1.
    The backend is NCCL when CUDA is available and gloo otherwise; on CUDA each process is bound
    to GPU ``LOCAL_RANK``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return dist_info()


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over all ranks (a no-op in a single process); returns a new tensor."""
    value = value.detach().clone()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def wrap_ddp(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` in DistributedDataParallel, on GPU ``device.index`` when ``device`` is CUDA.

    DDP copies rank 0's buffers to every rank before each forward (``broadcast_buffers``), which
    costs a collective per forward.  Only buffers that training changes need it: running statistics
    (modules with ``track_running_stats``, such as BatchNorm).  Other buffers (a GPT's causal mask
    and rotary tables) are constants that every rank builds alike, so they are not broadcast.
    """
    changing = any(getattr(m, "track_running_stats", False) for m in model.modules())
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=changing)
