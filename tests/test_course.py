"""The student edition: solutions become stubs, solution text disappears, the rest is unchanged."""
from __future__ import annotations

import json

import nbformat
import pytest
from _book import ROOT, chapter_notebooks
from course import make_student_notebook, write_student_edition
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def _nb(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


def _toy_chapter():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    return _nb([
        md("# Toy\n\nSome text."),
        code("x = 2\nprint(x)", outputs=[nbformat.v4.new_output("stream", text="2\n")]),
        md("```{exercise} Square\n:label: ex-toy-1\n\nWrite `square`.\n```"),
        md("```{solution-start} ex-toy-1\n:class: dropdown\n```"),
        code("def square(v):\n    return v * v", metadata={"tags": ["solution"]}),
        md("```{solution-end}\n```"),
        code("assert square(3) == 9"),
        md("```{exercise} Why\n:label: ex-toy-2\n\nExplain.\n```\n\n```{solution} ex-toy-2\n:class: dropdown\n\nSECRET ANSWER\n```\n\nAfter."),
    ])


def test_student_edition_replaces_solutions_and_keeps_the_rest():
    nb = _toy_chapter()
    student = make_student_notebook(nb)
    text = json.dumps(student)
    assert "SECRET ANSWER" not in text and "return v * v" not in text
    assert "solution-start" not in text and "solution-end" not in text and "{solution}" not in text
    stub = [c for c in student["cells"] if "exercise" in c.get("metadata", {}).get("tags", [])]
    assert len(stub) == 1 and 'NotImplementedError("Exercise ex-toy-1' in stub[0]["source"]
    assert all(c.get("outputs", []) == [] for c in student["cells"] if c["cell_type"] == "code")
    assert "".join(student["cells"][0]["source"]) == "".join(nb["cells"][0]["source"])
    assert "Explain." in text and "After." in text
    assert "".join(nb["cells"][4]["source"]) == "def square(v):\n    return v * v", "the input must not change"


def test_student_edition_runs_until_the_stub(tmp_path):
    student = nbformat.reads(json.dumps(make_student_notebook(_toy_chapter())), as_version=4)
    with pytest.raises(CellExecutionError) as err:
        NotebookClient(student, timeout=60, kernel_name="python3").execute()
    assert "NotImplementedError" in str(err.value) and "ex-toy-1" in str(err.value)
    ran = [c for c in student.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(ran) == 2, "every cell before the stub ran, nothing after it"


def test_bad_chapter_name(tmp_path):
    with pytest.raises(ValueError, match="no chapter matches"):
        write_student_edition(ROOT / "chapters", tmp_path, chapter="99_nope")


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.stem)
def test_every_chapter_student_edition_has_no_solution_and_same_prefix(nb_path, tmp_path):
    """The cells before the first stub are exactly the chapter's (which nbval executes), so the
    student edition runs until its first stub; the stub itself raises NotImplementedError."""
    out = write_student_edition(ROOT / "chapters", tmp_path, chapter=nb_path.stem)[0]
    original = json.loads(nb_path.read_text())
    student = json.loads(out.read_text())
    text = json.dumps(student)
    assert "{solution" not in text, "solution directives left in the student edition"
    originals = [c for c in original["cells"] if c["cell_type"] == "code"]
    solutions = [c for c in originals if "solution" in c.get("metadata", {}).get("tags", [])]
    stubs = [c for c in student["cells"] if "exercise" in c.get("metadata", {}).get("tags", [])]
    assert len(stubs) == len(solutions)
    for sol in solutions:
        assert "".join(sol["source"]) not in text
    codes = [c for c in student["cells"] if c["cell_type"] == "code"]
    if stubs:
        first = codes.index(stubs[0])
        assert ["".join(c["source"]) for c in codes[:first]] == ["".join(c["source"]) for c in originals[:first]]
