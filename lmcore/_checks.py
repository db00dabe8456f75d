"""One set of argument checks for the whole package, and ``eval_mode``.

Every public function checks its arguments in one line each, through these helpers, so a bad value
always gets the same kind of message: the argument's name, what it must be, and what it was::

    check_int("max_new_tokens", max_new_tokens, low=0)
    check_float("top_p", top_p, low=0, high=1, low_open=True, optional=True)
    check_choice("pos_encoding", pos_encoding, POS_ENCODINGS)

A value of the wrong type raises :class:`ArgumentTypeError`, which is a ``TypeError`` and also a
``ValueError`` (numpy's ``AxisError`` does the same), so callers may catch either. A value of the
right type outside its range raises ``ValueError``.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Collection, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn as nn

__all__ = ["ArgumentTypeError", "check_int", "check_float", "check_choice", "check_key", "check_token_ids",
           "check_bool", "check_forward_ids", "check_idx", "describe", "check_targets", "eval_mode"]

M = TypeVar("M", bound=nn.Module)
V = TypeVar("V")


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError`` that ``except ValueError`` also catches)."""


def _range(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None, *,
              optional: bool = False) -> Any:
    """Return ``value`` as a Python int if it is an integer in ``[low, high]``; ``optional`` allows None.

    Integers of any kind count (``int``, ``numpy.int64``, a 0-d integer tensor); bools and floats do
    not, even ``2.0``: a float where a count belongs is usually a bug upstream.
    """
    if value is None and optional:
        return value
    want = f"{'None or ' if optional else ''}an int{_range(low, high)}"
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.dtype.is_floating_point \
            and not value.dtype.is_complex and value.dtype != torch.bool:
        value = value.item()
    # bool is a subclass of int, but True is never meant as a count
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {want}, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return value


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, optional: bool = False) -> Any:
    """Return ``value`` if it is a finite real number (int or float, not bool) within the bounds.

    ``low_open`` / ``high_open`` exclude the bound itself: ``low=0, low_open=True`` means ``> 0``.
    """
    if value is None and optional:
        return value
    want = f"{'None or ' if optional else ''}a finite number{_range(low, high, low_open, high_open)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be {want}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_key(name: str, value: Any, table: Mapping[str, V], unknown: str) -> V:
    """``table[value]`` for a str ``value``; ``unknown`` is the message when it is not a key
    (formatted with ``value`` and ``known``, the sorted keys)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str, got {type(value).__name__}")
    if value not in table:
        raise ValueError(unknown.format(value=value, known=sorted(table)))
    return table[value]


def check_token_ids(name: str, ids: Any, vocab_size: int | None = None) -> Any:
    """Return ``ids`` if it holds integer token ids in ``[0, vocab_size)``: a list or tuple of ints,
    or an integer numpy array or tensor.  Float or bool ids raise :class:`ArgumentTypeError` (they
    would be truncated silently); ids out of range raise ``ValueError`` naming the first one.

    The range of a tensor on an accelerator is not checked: reading it would stall the device
    (its kernels report an out-of-range index themselves).
    """
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ArgumentTypeError(f"{name} must hold integer token ids, got a tensor of {ids.dtype}")
        values = ids.detach().flatten() if ids.device.type == "cpu" else None
    elif isinstance(ids, np.ndarray):
        if ids.dtype.kind not in "iu":
            raise ArgumentTypeError(f"{name} must hold integer token ids, got an array of {ids.dtype}")
        values = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64).ravel())
    elif isinstance(ids, (list, tuple)):
        bad = next((i for i in ids if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral)), None)
        if bad is not None:
            raise ArgumentTypeError(f"{name} must hold integer token ids, got {bad!r}")
        values = torch.tensor([int(i) for i in ids], dtype=torch.long)
    else:
        raise ArgumentTypeError(f"{name} must be a list of token ids, an integer array or tensor, "
                                f"got {type(ids).__name__}")
    if values is not None and values.numel():
        low = values < 0
        high = values >= vocab_size if vocab_size is not None else torch.zeros_like(low)
        if bool((low | high).any()):
            first = int(values[low | high][0])
            limit = f"[0, {vocab_size})" if vocab_size is not None else ">= 0"
            raise ValueError(f"{name} must hold token ids in {limit}, got {first}")
    return ids


def describe(x: object) -> str:
    """What a bad argument was, for an error message: a tensor's dtype and shape, else its type."""
    return f"a {x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


# --- a model's forward-pass inputs (GPT and MLPLanguageModel) ---
def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool if it is one: a truthy string such as ``"no"`` must not switch a flag on."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_forward_ids(name: str, ids: torch.Tensor, vocab_size: int, ignore_index: int | None = None) -> None:
    """The dtype of ``ids`` always; its values only in eager mode on the CPU, where reading them is
    free (on an accelerator it would stall every step, and torch.compile cannot trace it)."""
    if ids.device.type != "cpu" or torch.compiler.is_compiling():
        ids = ids.flatten()[:0]
    elif ignore_index is not None:
        ids = ids[ids != ignore_index]
    check_token_ids(name, ids, vocab_size)


def check_idx(idx: Any, vocab_size: int) -> None:
    """A model's input ``idx``: a non-empty (batch, time) tensor of int64 or int32 ids (what
    ``nn.Embedding`` reads), in ``[0, vocab_size)`` where that is cheap to read (:func:`check_forward_ids`)."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        raise ValueError("idx must be an integer tensor of token ids with shape (batch, time), got "
                         f"{type(idx).__name__} {tuple(getattr(idx, 'shape', ()))}")
    check_forward_ids("idx", idx, vocab_size)
    if idx.dtype not in (torch.long, torch.int32):
        raise ArgumentTypeError(f"idx must be int64 or int32 (what nn.Embedding reads), got {idx.dtype}")
    if idx.numel() == 0:
        raise ValueError(f"idx is empty (shape {tuple(idx.shape)}); give at least one token per sequence")


def check_targets(idx: torch.Tensor, targets: torch.Tensor | None, vocab_size: int, last_only: bool) -> None:
    """The loss arguments of a forward pass (GPT's and MLPLanguageModel's), before any compute:
    ``targets`` of the shape of ``idx`` holding ids in ``[0, vocab_size)`` or -100 (ignored)."""
    if check_bool("last_only", last_only) and targets is not None:
        raise ValueError("last_only=True cannot be combined with targets (the loss needs every position)")
    if targets is None:
        return
    if not isinstance(targets, torch.Tensor) or not isinstance(idx, torch.Tensor) or targets.shape != idx.shape:
        raise ValueError(f"targets must be a tensor of the shape of idx {tuple(getattr(idx, 'shape', ()))}, "
                         f"got {type(targets).__name__} {tuple(getattr(targets, 'shape', ()))}")
    check_forward_ids("targets", targets, vocab_size, ignore_index=-100)


@contextlib.contextmanager
def eval_mode(model: M) -> Iterator[M]:
    """Switch ``model`` to eval mode (dropout off) for the body, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
