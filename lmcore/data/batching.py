"""From a token stream to training batches (chapter 1; the Trainer of chapter 4 draws them).

A language model is trained on *every prefix* of its text at once: a window ``x`` of
``seq_len`` tokens and the same window shifted by one, ``y``, give ``seq_len`` next-token
prediction examples in one row.
"""
from __future__ import annotations

import torch

from .._checks import check_float

__all__ = ["train_val_split", "get_batch"]


def train_val_split(ids: torch.Tensor | list[int], val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a token stream into a training head and a validation tail (no shuffling, no leak)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.ndim != 1 or ids.numel() < 2:
        raise ValueError(f"ids must be a 1-D stream of at least 2 tokens, got shape {tuple(ids.shape)}")
    # at least one token on each side, however small the stream or extreme the fraction
    n_val = min(max(1, int(round(ids.numel() * val_fraction))), ids.numel() - 1)
    return ids[:-n_val], ids[-n_val:]


def get_batch(data: torch.Tensor, batch_size: int, seq_len: int, device: str | torch.device = "cpu",
              generator: torch.Generator | None = None, doc_starts: torch.Tensor | None = None,
              aligned: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``batch_size`` random windows from a 1-D token tensor.

    Returns ``(x, y)``, both ``(batch_size, seq_len)`` int64 on ``device``, with
    ``y[:, t] == x[:, t + 1]``: the target of every position is the next token.

    ``doc_starts`` (1-D positions in ``data`` where documents begin, e.g. the separator before each
    story) and ``aligned`` (a fraction in [0, 1]): the first ``round(aligned * batch_size)`` rows
    start at a random document start instead of anywhere. Random windows mostly begin mid-document,
    while a model is prompted at a document's start; aligned rows train that case too.
    """
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"data must be a torch.Tensor of token ids, got {type(data).__name__}; "
                        "wrap it with torch.tensor(ids, dtype=torch.long)")
    if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
        raise TypeError(f"data must hold integer token ids, got dtype {data.dtype}")
    if data.ndim != 1:
        raise ValueError(f"data must be a 1-D token tensor, got shape {tuple(data.shape)}")
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    if data.numel() <= seq_len:
        raise ValueError(f"data has {data.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1}; "
                         "use more text or a smaller seq_len")
    check_float("aligned", aligned, low=0, high=1)
    starts = torch.randint(data.numel() - seq_len, (batch_size,), generator=generator)
    n_aligned = round(aligned * batch_size)
    if n_aligned:
        if doc_starts is None:
            raise ValueError("aligned > 0 needs doc_starts, the positions where documents begin")
        doc_starts = torch.as_tensor(doc_starts, dtype=torch.long)
        usable = doc_starts[(doc_starts >= 0) & (doc_starts < data.numel() - seq_len)]
        if doc_starts.ndim != 1 or usable.numel() == 0:
            raise ValueError("doc_starts must be a 1-D tensor with at least one position that leaves a "
                             f"whole window (< {data.numel() - seq_len})")
        starts[:n_aligned] = usable[torch.randint(usable.numel(), (n_aligned,), generator=generator)]
    offsets = torch.arange(seq_len + 1)
    windows = data[starts[:, None] + offsets]
    x, y = windows[:, :-1], windows[:, 1:]
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":  # only CPU tensors can be pinned
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)
