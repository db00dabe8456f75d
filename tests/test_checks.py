"""The shared argument checks and eval_mode (lmcore._checks)."""
import math

import pytest
import torch.nn as nn

from lmcore._checks import ArgumentTypeError, check_choice, check_float, check_int, eval_mode


def test_check_int_accepts_ints_in_range_and_returns_them():
    assert check_int("n", 3, low=1, high=3) == 3
    assert check_int("n", None, optional=True) is None
    assert check_int("n", -5) == -5


@pytest.mark.parametrize("value", [True, 2.0, "2", None])
def test_check_int_rejects_other_types_as_type_and_value_errors(value):
    with pytest.raises(ArgumentTypeError, match=r"^n must be an int >= 1, got") as info:
        check_int("n", value, low=1)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("value, message", [(0, "an int in \\[1, 3\\], got 0"), (4, "got 4")])
def test_check_int_range(value, message):
    with pytest.raises(ValueError, match=message) as info:
        check_int("n", value, low=1, high=3)
    assert not isinstance(info.value, TypeError)


def test_check_float_bounds_open_and_closed():
    assert check_float("p", 1, low=0, high=1) == 1
    with pytest.raises(ValueError, match=r"p must be a finite number in \(0, 1\], got 0"):
        check_float("p", 0, low=0, high=1, low_open=True)
    with pytest.raises(ValueError, match=r"< 1"):
        check_float("d", 1.0, high=1, high_open=True)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            check_float("x", bad)
    with pytest.raises(ArgumentTypeError):
        check_float("x", False)
    assert check_float("x", None, optional=True) is None


def test_check_choice():
    assert check_choice("norm", "pre", ("pre", "post")) == "pre"
    with pytest.raises(ValueError, match=r"norm must be one of \('pre', 'post'\), got 'mid'"):
        check_choice("norm", "mid", ("pre", "post"))


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_previous_mode_even_after_an_error(training):
    model = nn.Sequential(nn.Dropout(0.5)).train(training)
    with eval_mode(model) as m:
        assert m is model and not model.training
    assert model.training is training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("inside")
    assert model.training is training


def test_check_key_looks_up_a_name_or_lists_the_known_ones():
    from lmcore._checks import check_key
    table = {"toy": 1, "tinyshakespeare": 2}
    assert check_key("name", "toy", table, "unknown {value!r}; known: {known}") == 1
    with pytest.raises(ValueError, match=r"unknown 'wiki'; known: \['tinyshakespeare', 'toy'\]"):
        check_key("name", "wiki", table, "unknown {value!r}; known: {known}")
    with pytest.raises(ArgumentTypeError, match="name must be a str, got int"):
        check_key("name", 3, table, "{value}")


def test_check_int_accepts_numpy_and_0d_tensor_integers_as_python_ints():
    import numpy as np
    import torch
    for value in (np.int64(3), torch.tensor(3), np.uint8(3)):
        out = check_int("n", value, low=1)
        assert out == 3 and type(out) is int
    for bad in (np.float64(3.0), torch.tensor(3.0), torch.tensor([3]), np.bool_(True), torch.tensor(True)):
        with pytest.raises(ArgumentTypeError, match="n must be an int"):
            check_int("n", bad)


def test_check_token_ids_rejects_floats_bools_and_out_of_range_ids():
    import numpy as np
    import torch

    from lmcore._checks import check_token_ids
    for ok in ([0, 1, 4], (2,), np.array([0, 4]), torch.tensor([[1, 2]]), [], torch.zeros(0, dtype=torch.long)):
        assert check_token_ids("ids", ok, 5) is ok
    for bad in ([1.0, 2], [True], torch.tensor([1.5]), torch.tensor([float("nan")]), np.array([0.0]), "ab", 3):
        with pytest.raises(ArgumentTypeError, match="ids must"):
            check_token_ids("ids", bad, 5)
    for bad, first in (([0, 5], "5"), (torch.tensor([3, -1]), "-1"), (np.array([7]), "7")):
        with pytest.raises(ValueError, match=rf"ids must hold token ids in \[0, 5\), got {first}"):
            check_token_ids("ids", bad, 5)
    with pytest.raises(ValueError, match=">= 0, got -2"):
        check_token_ids("ids", [-2])


# --- The exercise checks' result (lmcore.exercises.CheckResult, run_check) --------------------------

def test_run_check_returns_a_result_for_each_status(capsys):
    from lmcore.exercises import CheckFailed, CheckResult, run_check
    from lmcore.exercises._check import CheckUnsolved

    def fails():
        raise CheckFailed("a hint")

    def stub():
        raise NotImplementedError("Exercise ex-1: not solved yet")

    def empty():
        raise CheckUnsolved("results is empty: run the sweep")

    def crashes():
        return 1 / 0

    got = [run_check("demo", body) for body in (lambda: None, fails, stub, empty, crashes)]
    assert [r.status for r in got] == ["pass", "fail", "unsolved", "unsolved", "fail"]
    assert [bool(r) for r in got] == [True, False, False, False, False]
    assert got[0] == CheckResult("demo", "pass", "") and got[1].hint == "a hint"
    assert "ZeroDivisionError" in got[4].hint
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "PASS demo" and lines[1] == "FAIL demo: a hint"
    assert lines[2].startswith("NOT SOLVED YET demo: ") and "NotImplementedError" in lines[2]
    assert lines[3] == "NOT SOLVED YET demo: results is empty: run the sweep"
    assert run_check("demo", fails, quiet=True).status == "fail" and capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="status must be one of"):
        CheckResult("demo", "passed")


def test_a_check_result_displays_nothing_in_ipython():
    """IPython asks ``_ipython_display_`` first: a check as a cell's last line shows no True/False or repr."""
    from IPython.core.formatters import DisplayFormatter

    from lmcore.exercises import CheckResult

    formatter = DisplayFormatter()
    assert formatter.format(True) == ({"text/plain": "True"}, {}), "the formatter shows what a bool would echo"
    for status in ("pass", "fail", "unsolved"):
        assert formatter.format(CheckResult("demo", status, "")) == ({}, {})


def test_a_check_as_the_last_line_of_a_kernel_cell_prints_only_its_line():
    """In a real kernel (what Jupyter and Colab run), the cell's only output is the check's line."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch, lmcore\n"
                                          "def perplexity(logprobs):\n    return float(torch.exp(-logprobs.mean()))"),
                nbformat.v4.new_code_cell("lmcore.exercises.check_perplexity(perplexity)"),
                nbformat.v4.new_code_cell("def perplexity(logprobs):\n    raise NotImplementedError\n"
                                          "lmcore.exercises.check_perplexity(perplexity)")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    for cell, line in ((nb.cells[1], "PASS perplexity\n"), (nb.cells[2], "NOT SOLVED YET perplexity: ")):
        assert [o.output_type for o in cell.outputs] == ["stream"], cell.outputs
        assert cell.outputs[0].text.startswith(line) and cell.outputs[0].text.count("\n") == 1
