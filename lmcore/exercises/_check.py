"""The machinery shared by every exercise check."""
from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CheckFailed", "CheckUnsolved", "CheckResult", "run_check", "expect_tensor", "expect_measurements"]

PASS, FAIL, UNSOLVED = "pass", "fail", "unsolved"


class CheckFailed(AssertionError):
    """Raised inside a check's body with a hint for the student (never the answer)."""


class CheckUnsolved(Exception):
    """Raised inside a check's body when there is nothing to check yet (a results dict that is still
    empty, a measurement still ``None``); its message says what to run.  Not a :class:`CheckFailed`,
    so a check's own ``except CheckFailed`` never turns it into a failure."""


@dataclass(frozen=True)
class CheckResult:
    """What a check found: ``name`` (e.g. ``"top_p"``), ``status`` (``"pass"``, ``"fail"`` or
    ``"unsolved"``) and ``hint`` (``""`` on a pass).  ``bool(result)`` is whether it passed.

    IPython shows nothing for it (``_ipython_display_``), so a check called as the last line of a
    cell shows only its printed line, not a ``True`` / ``False`` or a repr under it."""

    name: str
    status: str
    hint: str = ""

    def __post_init__(self) -> None:
        if self.status not in (PASS, FAIL, UNSOLVED):
            raise ValueError(f"status must be one of {PASS!r}, {FAIL!r}, {UNSOLVED!r}, got {self.status!r}")

    def __bool__(self) -> bool:
        return self.status == PASS

    def _ipython_display_(self) -> None:
        """Display nothing: the check has already printed its one line."""

    @property
    def line(self) -> str:
        """The line the check prints: ``PASS name``, ``FAIL name: hint`` or ``NOT SOLVED YET name: hint``."""
        if self.status == PASS:
            return f"PASS {self.name}"
        return f"{'FAIL' if self.status == FAIL else 'NOT SOLVED YET'} {self.name}: {self.hint}"


def run_check(name: str, body: Callable[[], None], quiet: bool = False) -> CheckResult:
    """Run ``body`` and return its :class:`CheckResult`, printing its line unless ``quiet``.

    ``body`` raises :class:`CheckFailed` with a hint when the student's answer is wrong, and
    :class:`CheckUnsolved` when there is nothing to check yet.  A ``NotImplementedError`` (the
    student-edition starter ``def``) is "unsolved" too; any other exception the student's code raises
    is a failure reported with its type, message and line.  Nothing the student's answer does makes
    a check raise, so "Run All" goes on past an unsolved exercise."""
    try:
        body()
    except CheckFailed as e:
        result = CheckResult(name, FAIL, str(e))
    except CheckUnsolved as e:
        result = CheckResult(name, UNSOLVED, str(e))
    except NotImplementedError:
        result = CheckResult(name, UNSOLVED, "your function still raises NotImplementedError: write its body "
                                             "(replace the raise), run its cell, then run this check again")
    except Exception as e:  # the student's code crashed: show where, briefly
        last = traceback.extract_tb(e.__traceback__)[-1]
        result = CheckResult(name, FAIL, f"your function raised {type(e).__name__}: {e} (line {last.lineno})")
    else:
        result = CheckResult(name, PASS)
    if not quiet:
        print(result.line)
    return result


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
        raise CheckUnsolved(f"{name} is empty: no results yet. {empty_hint}")
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
