"""Device choice and seeding: what the first cell of every chapter calls.

``setup()`` picks CUDA, then Apple's MPS, then the CPU (the environment variable ``LMCORE_DEVICE``
overrides the choice), seeds Python, NumPy and PyTorch, and returns the device, so the same
notebook runs on a laptop, on Colab's GPU and in CI without edits.  ``progress()`` is the one
progress bar every long run in a chapter shows (off where ``LMCORE_PROGRESS=0``: the tests and the
HTML build, whose stored outputs would otherwise hold a frozen bar).
"""
from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from ._checks import check_int
from ._version import __version__

__all__ = ["get_device", "seed_everything", "setup", "cpu_threads", "torch_threads", "progress", "progress_enabled"]


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Resolve ``device`` (or ``$LMCORE_DEVICE``, or the best available) to a ``torch.device``.

    Raises ``ValueError`` when a device is requested that this machine does not have.
    """
    if device is None:
        device = os.environ.get("LMCORE_DEVICE") or None
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r} is not a device name; use 'cpu', 'cuda', 'cuda:0' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available on this machine; "
                         "use device='cpu' (or unset LMCORE_DEVICE)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} was requested but MPS is not available; use device='cpu'")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (all devices)."""
    check_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_threads(threads: int | None = None) -> int:
    """How many CPU threads the chapters use: ``threads``, else ``$LMCORE_THREADS``, else 1.

    One thread is the default because it makes every CPU result reproducible bit for bit, whatever
    the number of cores (a reduction split over more threads adds in another order).  The small
    models of the chapters gain little from more threads.  ``0`` means torch's own default.
    """
    if threads is None:
        threads = int(os.environ.get("LMCORE_THREADS", "1"))
    check_int("threads", threads, low=0)       # 0 = torch's default
    return threads


@contextlib.contextmanager
def torch_threads(n: int | None = 1) -> Iterator[None]:
    """Run the body with ``n`` torch CPU threads (None: leave the count alone), then restore it.

    One thread (the default) makes CPU training reproducible bit for bit.
    """
    check_int("n", n, low=1, optional=True)
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def setup(seed: int = 0, device: str | None = None, threads: int | None = None, quiet: bool = False,
          tf32: bool = True) -> torch.device:
    """Seed everything, fix the CPU thread count (see :func:`cpu_threads`) and return the device a
    chapter should use.

    ``tf32``: on a CUDA device, float32 matrix products use TensorFloat-32 tensor cores (10-bit
    mantissa inputs, float32 sums; several times faster on A100 and later), as nanoGPT and nanochat
    set with ``torch.set_float32_matmul_precision("high")``; ``tf32=False`` keeps full float32.  Only
    CUDA's setting is changed (``torch.backends.cuda.matmul.allow_tf32``): the global call would also
    let oneDNN's CPU matmuls use TF32, and CPU results must not change.  On another device nothing
    is set.
    """
    if not isinstance(tf32, bool):
        raise TypeError(f"tf32 must be True or False, got {tf32!r}")
    seed_everything(seed)
    dev = get_device(device)
    n = cpu_threads(threads)
    if n:
        torch.set_num_threads(n)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    if not quiet:
        print(f"lmcore {__version__} | torch {torch.__version__} | device: {dev.type} | seed: {seed}"
              + (f" | tf32 matmul: {'on' if tf32 else 'off'}" if dev.type == "cuda" else ""))
    return dev


def progress_enabled() -> bool:
    """False where the environment sets ``LMCORE_PROGRESS=0`` (``make test`` and ``make book`` do)."""
    return os.environ.get("LMCORE_PROGRESS", "1").strip() != "0"


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
             **kwargs: Any) -> Any:
    """A ``tqdm.auto`` progress bar with an ETA over ``iterable`` (or ``total`` steps, advanced by
    ``bar.update()``), disabled when :func:`progress_enabled` is False; other keywords go to tqdm."""
    from tqdm.auto import tqdm

    disable = bool(kwargs.pop("disable", False)) or not progress_enabled()
    return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, disable=disable, **kwargs)
