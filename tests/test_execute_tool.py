"""tools/execute.py stores a chapter's outputs as the book shows them, in the repository's layout."""
from __future__ import annotations

import execute
import nbformat
import pytest


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def test_executes_in_place_with_the_book_settings(tmp_path):
    nb = tmp_path / "ch.ipynb"
    _notebook(nb, "import os\nprint(os.environ['LMCORE_BOOK'], os.environ['LMCORE_PROGRESS'])", "print('π ≈ 3.14')")
    assert execute.main([str(nb)]) == 0
    text = nb.read_text(encoding="utf-8")
    cells = nbformat.reads(text, as_version=4).cells
    assert [c.outputs[0].text for c in cells] == ["1 0\n", "π ≈ 3.14\n"]
    assert text == nbformat.writes(nbformat.reads(text, as_version=4)) + "\n"   # the repository's layout
    assert "π ≈" in text                                                          # non-ASCII kept as is


def test_a_failing_notebook_is_left_as_it_was(tmp_path):
    nb = tmp_path / "ch.ipynb"
    _notebook(nb, "raise RuntimeError('boom')")
    before = nb.read_bytes()
    with pytest.raises(Exception, match="boom"):
        execute.main([str(nb)])
    assert nb.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ch.ipynb"]


def test_refuses_what_is_not_a_notebook(tmp_path, capsys):
    with pytest.raises(SystemExit):
        execute.main([str(tmp_path / "notes.txt")])
    assert "not a notebook file" in capsys.readouterr().err


def test_an_edit_made_while_it_runs_is_not_undone(tmp_path):
    nb = tmp_path / "ch.ipynb"
    # The notebook's own cell edits the file on disk, as a person saving the chapter meanwhile would.
    _notebook(nb, f"import pathlib; p = pathlib.Path({str(nb)!r}); p.write_text(p.read_text() + ' ')")
    with pytest.raises(RuntimeError, match="changed on disk"):
        execute.main([str(nb)])
    assert nb.read_text(encoding="utf-8").endswith(" ")        # the edit made meanwhile is still there
