"""Device choice and seeding: what the first cell of every chapter calls.

``setup()`` picks CUDA, then Apple's MPS, then the CPU (the environment variable ``LMCORE_DEVICE``
overrides the choice), seeds Python, NumPy and PyTorch, and returns the device, so the same
notebook runs on a laptop, on Colab's GPU and in CI without edits.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["get_device", "seed_everything", "setup"]


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
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(seed: int = 0, device: str | None = None, quiet: bool = False) -> torch.device:
    """Seed everything and return the device a chapter should use."""
    seed_everything(seed)
    dev = get_device(device)
    if not quiet:
        print(f"lmcore {__import__('lmcore').__version__} | torch {torch.__version__} | device: {dev.type} | seed: {seed}")
    return dev
