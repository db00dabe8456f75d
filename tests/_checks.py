"""The contract every exercise check must honour, shared by the tests/test_exercises_chNN.py files."""
from __future__ import annotations


def _stub(*args, **kwargs):
    raise NotImplementedError("the student edition's stub")


def assert_check_behaves(check, solution, wrong_answers, capsys) -> None:
    """``check`` passes the reference ``solution``, reports the stub as not implemented, and fails
    every plausible wrong answer with a FAIL line (a hint), never a traceback.

    ``wrong_answers``: functions, or ``(function, hint)`` pairs whose FAIL line must contain ``hint``.
    """
    capsys.readouterr()
    assert check(solution).status == "pass"
    assert "PASS" in capsys.readouterr().out
    assert check(_stub).status == "unsolved"
    assert "NOT SOLVED YET" in capsys.readouterr().out
    for item in wrong_answers:
        fn, hint = item if isinstance(item, tuple) else (item, "")
        assert check(fn).status == "fail", fn.__name__
        out = capsys.readouterr().out
        assert out.startswith("FAIL") and "Traceback" not in out and hint in out, (fn.__name__, out)
