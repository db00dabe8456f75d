"""From a token stream to training batches (chapter 1; the Trainer of chapter 4 draws them).

A language model is trained on *every prefix* of its text at once: a window ``x`` of
``seq_len`` tokens and the same window shifted by one, ``y``, give ``seq_len`` next-token
prediction examples in one row.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._checks import ArgumentTypeError, check_float, check_int, check_token_ids

__all__ = ["train_val_split", "get_batch"]


def train_val_split(ids: torch.Tensor | list[int], val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a token stream into a training head and a validation tail (no shuffling, no leak).

    ``ids``: a list, integer array or tensor of token ids (floats are refused, not truncated).
    """
    check_float("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True)
    # a list of anything but plain ints (floats, bools, numpy ints): each element checked before the
    # conversion could truncate it; plain ints (the usual, long stream) are checked once converted
    if not isinstance(ids, (torch.Tensor, np.ndarray)) and not (isinstance(ids, list) and set(map(type, ids)) <= {int}):
        check_token_ids("ids", ids)
    t = torch.as_tensor(ids)
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"ids must be a 1-D stream of at least 2 tokens, got shape {tuple(t.shape)}")
    stream = check_token_ids("ids", t).long()
    # at least one token on each side, however small the stream or extreme the fraction
    n_val = min(max(1, int(round(stream.numel() * val_fraction))), stream.numel() - 1)
    return stream[:-n_val], stream[-n_val:]


def _doc_starts(doc_starts: Any, n: int) -> torch.Tensor:
    """``doc_starts`` as a 1-D long tensor of positions in ``[0, n)``, or a clear error."""
    try:
        starts = torch.as_tensor(doc_starts)     # no dtype: float positions are refused, not truncated
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(f"doc_starts must be a 1-D tensor or list of integer positions, "
                                f"got {type(doc_starts).__name__}") from None
    if starts.dtype.is_floating_point or starts.dtype.is_complex or starts.dtype == torch.bool:
        raise ArgumentTypeError(f"doc_starts must hold integer positions, got {starts.dtype}")
    if starts.ndim != 1:
        raise ValueError(f"doc_starts must be 1-D, got shape {tuple(starts.shape)}")
    # the values only on the CPU: reading them on an accelerator would stall it every batch
    if starts.device.type == "cpu" and starts.numel() and (int(starts.min()) < 0 or int(starts.max()) >= n):
        raise ValueError(f"doc_starts must be positions in data, in [0, {n}), got min {int(starts.min())} "
                         f"and max {int(starts.max())}")
    return starts.long()


def get_batch(data: torch.Tensor | np.ndarray, batch_size: int, seq_len: int, device: str | torch.device = "cpu",
              generator: torch.Generator | None = None, doc_starts: torch.Tensor | None = None,
              aligned: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``batch_size`` random windows from a 1-D token stream.

    ``data``: a tensor or NumPy array of integer ids in any integer dtype; a ``uint16`` stream (GPT-2's
    50,257 ids fit) takes a quarter of the memory of int64, and an ``np.memmap`` (e.g. of a prepared
    ``.bin`` file, :func:`lmcore.training.open_prepared`) stays on disk: only the drawn windows are
    read, and only they are converted to int64.

    Returns ``(x, y)``, both ``(batch_size, seq_len)`` int64 on ``device``, with
    ``y[:, t] == x[:, t + 1]``: the target of every position is the next token.  The same generator
    state draws the same windows from a tensor, an array or a memmap of the same ids.

    ``doc_starts`` (1-D positions in ``data`` where documents begin, e.g. the separator before each
    story) and ``aligned`` (a fraction in [0, 1]): the first ``round(aligned * batch_size)`` rows
    start at a random document start instead of anywhere. Random windows mostly begin mid-document,
    while a model is prompted at a document's start; aligned rows train that case too.

    A negative id in a drawn window raises ``ValueError`` when ``data`` is on the CPU and of a signed
    dtype (on an accelerator only the dtype is checked: reading values would stall it every step).
    """
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "iu":
            raise TypeError(f"data must hold integer token ids, got dtype {data.dtype}")
        # unsigned ids that fit in int64 cannot come out negative: no need to read them
        signed = data.dtype.kind == "i" or data.dtype.itemsize >= 8
    elif isinstance(data, torch.Tensor):
        if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
            raise TypeError(f"data must hold integer token ids, got dtype {data.dtype}")
        signed = data.dtype.is_signed or data.dtype.itemsize >= 8
    else:
        raise TypeError(f"data must be a torch.Tensor or a NumPy array of token ids, got {type(data).__name__}; "
                        "wrap it with torch.tensor(ids, dtype=torch.long)")
    if data.ndim != 1:
        raise ValueError(f"data must be a 1-D token tensor, got shape {tuple(data.shape)}")
    n = len(data)
    check_int("batch_size", batch_size, low=1)
    check_int("seq_len", seq_len, low=1)
    if n <= seq_len:
        raise ValueError(f"data has {n} tokens, fewer than seq_len + 1 = {seq_len + 1}; "
                         "use more text or a smaller seq_len")
    check_float("aligned", aligned, low=0, high=1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r} ({e})") from None
    if doc_starts is not None:
        doc_starts = _doc_starts(doc_starts, n)
    starts = torch.randint(n - seq_len, (batch_size,), generator=generator)
    n_aligned = round(aligned * batch_size)
    if n_aligned:
        if doc_starts is None:
            raise ValueError("aligned > 0 needs doc_starts, the positions where documents begin")
        # >= 0 too: the range of doc_starts on an accelerator is not checked above
        usable = doc_starts[(doc_starts >= 0) & (doc_starts < n - seq_len)]
        if usable.numel() == 0:
            raise ValueError("doc_starts must hold at least one position that leaves a "
                             f"whole window (< {n - seq_len})")
        starts[:n_aligned] = usable[torch.randint(usable.numel(), (n_aligned,), generator=generator)]
    index = starts[:, None] + torch.arange(seq_len + 1)
    # only the gathered windows become int64, never the whole stream
    if isinstance(data, np.ndarray):
        windows = torch.from_numpy(data[index.numpy()].astype(np.int64))
    else:
        windows = data[index].long()
    if signed and windows.device.type == "cpu" and int(windows.min()) < 0:
        raise ValueError(f"data holds negative token ids (e.g. {int(windows.min())}); token ids are >= 0")
    x, y = windows[:, :-1], windows[:, 1:]
    if device.type == "cuda" and x.device.type == "cpu":  # only CPU tensors can be pinned
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)
