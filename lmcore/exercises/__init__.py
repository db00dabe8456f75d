"""Checks students call on their exercise solutions: ``lmcore.exercises.check_<name>(their_fn)``.

Every check compares the student's function with lmcore's reference on fixed and random cases,
prints one clear PASS / FAIL line with a hint (never the answer) and returns ``True`` / ``False``.
Chapter-specific checks live in ``lmcore/exercises/chNN.py`` and are re-exported here.
"""
from __future__ import annotations

from ._check import CheckFailed, run_check

__all__ = ["CheckFailed", "run_check"]
