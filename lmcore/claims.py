"""Claim checks: the prose of every chapter states numbers, and a cell right after each statement
asserts it (``lmcore.claim``).  Used by every chapter; the convention is in ``contributing.md``.

A trained, sampled or timed result changes a little with the seed and with the CPU's floating-point
kernels, so a claim is a *range* measured over those, never an exact value::

    gap = val_loss - toy.entropy_per_char
    lmcore.claim("the gap to the floor is about 0.02 nats/char", gap, lo=0.01, hi=0.03)
    lmcore.claim("the beam returns a shorter story than greedy", len(beam) < len(greedy),
                 measured=f"beam {len(beam)} chars, greedy {len(greedy)} chars")

In the HTML book these cells are removed (cell tag ``remove-cell``); in JupyterLab they stay
visible, and each prints one line saying which claim it checked.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

__all__ = ["ClaimError", "claim"]


class ClaimError(AssertionError):
    """A statement in the prose does not hold for the numbers this run computed."""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def claim(statement: str, value: float | bool, *, lo: float | None = None, hi: float | None = None,
          measured: str | None = None) -> None:
    """Assert that ``statement`` holds: ``lo <= value <= hi`` for a number, ``value is True`` for a
    condition.

    ``statement`` is the claim as the prose words it.  For a number, give ``lo`` and/or ``hi``
    (inclusive; one side may be open).  For a condition (``value`` a bool), ``measured`` says what
    was measured, so a failure shows the reader why.  On success prints one line; on failure raises
    :class:`ClaimError` with the claim, the measured value and the tolerance.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise TypeError(f"statement must be the claim as a non-empty str, got {statement!r}")
    if measured is not None and not isinstance(measured, str):
        raise TypeError(f"measured must be a str describing the measurement, got {type(measured).__name__}")
    if isinstance(value, (bool, np.bool_)):
        if lo is not None or hi is not None:
            raise ValueError("lo/hi bound a number; a condition (bool value) takes no bounds")
        ok, shown, allowed = bool(value), measured or str(bool(value)), "the condition to be true"
    else:
        if not isinstance(value, Real):
            raise TypeError(f"value must be a real number or a bool, got {type(value).__name__}; "
                            "pass float(x) for a tensor or array element")
        if lo is None and hi is None:
            raise ValueError("give lo and/or hi: a numeric claim needs a tolerance")
        for name, bound in (("lo", lo), ("hi", hi)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, Real) or math.isnan(bound)):
                raise TypeError(f"{name} must be a real number or None, got {bound!r}")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"lo must be <= hi, got lo={lo}, hi={hi}")
        v = float(value)
        ok = not math.isnan(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
        shown = _fmt(v) + (f" ({measured})" if measured else "")
        allowed = f"[{_fmt(lo) if lo is not None else '-inf'}, {_fmt(hi) if hi is not None else 'inf'}]"
    if not ok:
        raise ClaimError(f"the prose says: {statement!r}\n  measured: {shown}\n  tolerance: {allowed}\n"
                         "The claim fails on this machine: reword the prose to what holds, or widen the "
                         "tolerance only if the spread over seeds / CPU kernels was measured wider.")
    print(f"claim holds: {statement} (measured {shown}; allowed {allowed})")
