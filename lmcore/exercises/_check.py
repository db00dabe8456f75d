"""The machinery shared by every exercise check."""
from __future__ import annotations

import traceback
from collections.abc import Callable

__all__ = ["CheckFailed", "run_check", "expect_tensor"]


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
