"""The machinery shared by every exercise check."""
from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["CheckFailed", "run_check", "expect_tensor", "expect_measurements"]


class CheckFailed(AssertionError):
    """Raised inside a check's body with a hint for the student (never the answer)."""


def run_check(name: str, body: Callable[[], None], quiet: bool = False) -> bool:
    """Run ``body``; print ``PASS name`` or ``FAIL name: hint`` and return whether it passed.

    ``body`` raises :class:`CheckFailed` with a hint when the student's answer is wrong.  A
    ``NotImplementedError`` (the student-edition stub) is reported as "not attempted yet"; any
    other exception is reported with its type and message so the student can debug it.
    """
    try:
        body()
    except CheckFailed as e:
        msg = f"FAIL {name}: {e}"
    except NotImplementedError as e:
        msg = f"FAIL {name}: not implemented yet ({e})"
    except Exception as e:  # the student's code crashed: show where, briefly
        last = traceback.extract_tb(e.__traceback__)[-1]
        msg = f"FAIL {name}: your function raised {type(e).__name__}: {e} (line {last.lineno})"
    else:
        if not quiet:
            print(f"PASS {name}")
        return True
    if not quiet:
        print(msg)
    return False


def expect_tensor(value, what: str):
    """Return ``value`` if it is a ``torch.Tensor``, else fail the check saying what was returned."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} should return a torch.Tensor, got {type(value).__name__}")
    return value


def expect_measurements(results: Any, name: str, keys: Sequence, symbol: str, unit: str,
                        empty_hint: str) -> dict:
    """An experiment's results as ``{key: float}``: ``results`` must be a dict with a finite number
    (a Python, numpy or 0-d tensor number) for every key in ``keys``; otherwise fail the check,
    naming ``name`` (the student's variable), the ``symbol`` its keys stand for and the ``unit``.
    ``empty_hint`` says what to run when the dict is still empty."""
    if callable(results) or not isinstance(results, Mapping):
        raise CheckFailed(f"pass the dict of your results {{{symbol}: {unit}}}, got {type(results).__name__}")
    if not results:
        raise CheckFailed(f"{name} is empty: no results yet. {empty_hint}")
    missing = [k for k in keys if k not in results]
    if missing:
        raise CheckFailed(f"{name} has no result for {symbol} = {', '.join(map(str, missing))}; "
                          f"the keys are {tuple(keys)}")
    values = {}
    for k in keys:
        v = results[k]
        v = v.item() if hasattr(v, "item") else v          # a 0-d tensor or numpy number
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CheckFailed(f"{name}[{k}] should be a finite number ({unit}), got {v!r}")
        values[k] = float(v)
    return values
