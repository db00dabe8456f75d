"""The student edition of every chapter, checked statically (cheap), and one short chapter run with
"Run All" in a fresh kernel: every stub keeps its exercise's signature and docstring and none of the
solution, every exercise has a check or an answer cell, and the chapter runs to its end."""
from __future__ import annotations

import ast
import json
import re

import nbformat
import pytest
from _book import ROOT, chapter_notebooks
from nbclient import NotebookClient
from student_edition import BEGIN, END, _exercise_rows, make_student_notebook

CHAPTERS = chapter_notebooks()


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _solutions(nb) -> list[str]:
    return [_src(c) for c in nb["cells"] if c["cell_type"] == "code" and "solution" in c["metadata"].get("tags", [])]


def _region_lines(source: str) -> list[str]:
    """The non-blank lines between BEGIN and END SOLUTION markers."""
    out, inside = [], False
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif inside and line.strip():
            out.append(line.strip())
    return out


def _defs(source: str) -> dict[str, tuple[str, str | None]]:
    """Top-level function name -> (its signature as written, its docstring)."""
    tree = ast.parse(source)
    return {n.name: (ast.unparse(n.args), ast.get_docstring(n)) for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.fixture(scope="module")
def editions():
    return {p.stem: (json.loads(p.read_text()), make_student_notebook(json.loads(p.read_text()))) for p in CHAPTERS}


@pytest.mark.parametrize("name", [p.stem for p in CHAPTERS])
def test_every_solution_cell_marks_its_region_and_every_starter_def_has_a_docstring(name, editions):
    source, _ = editions[name]
    for sol in _solutions(source):
        lines = sol.split("\n")
        marks = [line.strip() for line in lines if line.strip() in (BEGIN, END)]
        assert marks and marks == [BEGIN, END] * (len(marks) // 2), f"missing, unbalanced or nested markers:\n{sol}"
        inside, outside = False, set()
        for number, line in enumerate(lines, start=1):
            inside = (inside or line.strip() == BEGIN) and line.strip() != END
            if not inside:
                outside.add(number)
        for fn in (n for n in ast.parse(sol).body if isinstance(n, ast.FunctionDef)):
            if fn.lineno in outside:     # a starter def: the student sees its signature and docstring
                assert ast.get_docstring(fn), f"{name}: {fn.name} needs a docstring (its shapes and contract)"


@pytest.mark.parametrize("name", [p.stem for p in CHAPTERS])
def test_stubs_keep_signature_and_docstring_and_none_of_the_solution(name, editions):
    source, student = editions[name]
    sols = _solutions(source)
    stubs = [_src(c) for c in student["cells"] if "exercise" in c["metadata"].get("tags", [])]
    assert len(stubs) == len(sols)
    text = json.dumps(student)
    assert "{solution" not in text and BEGIN not in text and END not in text
    for sol, stub in zip(sols, stubs):
        compile(stub, f"{name} stub", "exec")
        kept = set(stub.split("\n"))
        leaked = [line for line in _region_lines(sol) if line in {k.strip() for k in kept}
                  and not line.startswith("#") and line not in ("return out", "else:", "pass")]
        assert not leaked, f"solution lines left in the stub:\n{leaked}"
        want = {n: d for n, d in _defs(sol).items() if n in _defs(stub)}
        assert _defs(stub) == want, "a stub's def lost its signature or docstring"
        for fn in ast.parse(stub).body:
            if isinstance(fn, ast.FunctionDef) and fn.name in want:
                assert 'raise NotImplementedError("Exercise ' in ast.get_source_segment(stub, fn)


@pytest.mark.parametrize("name", [p.stem for p in CHAPTERS])
def test_every_exercise_has_a_check_or_an_answer_cell(name, editions):
    source, student = editions[name]
    answers = {c["metadata"].get("exercise") for c in student["cells"] if "answer" in c["metadata"].get("tags", [])}
    rows = _exercise_rows(source["cells"])
    assert rows, f"{name} has no exercise"
    for r in rows:
        assert r["checks"] or r["label"] in answers, f"{r['label']} has neither a check cell nor an answer cell"
    written = set(re.findall(r"\{solution\}\s*([\w:.-]+)", json.dumps(source)))
    assert written <= answers, "an exercise with a written solution needs an answer cell in its place"


@pytest.mark.parametrize("name", [p.stem for p in CHAPTERS])
def test_every_check_cell_reads_only_what_the_student_edition_defines(name, editions):
    """A check cell gets the student's function or the results dict made outside the region, so
    "Run All" reaches it with no NameError."""
    _, student = editions[name]
    bound = set()
    for cell in student["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = _src(cell)
        if re.match(r"^lmcore\.exercises\.check_\w+\(", src.strip()):
            args = ast.parse(src.strip()).body[0].value.args
            for name_ in (a.id for a in args if isinstance(a, ast.Name)):
                assert name_ in bound, f"{src.strip()}: {name_} is not defined outside a solution region"
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        bound |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        bound |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}


@pytest.mark.slow
def test_the_student_edition_of_chapter_3_runs_to_its_end():
    """Run All in a fresh kernel, as a student does: no cell fails, every check says NOT SOLVED YET
    (and shows nothing else), and the last cell runs."""
    path = next(p for p in CHAPTERS if p.stem.startswith("03_"))
    student = nbformat.reads(json.dumps(make_student_notebook(json.loads(path.read_text()))), as_version=4)
    NotebookClient(student, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ROOT / "chapters")}}).execute()
    codes = [c for c in student.cells if c.cell_type == "code"]
    errors = [(c.source[:80], o.get("ename"), o.get("evalue")) for c in codes for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    assert codes[-1].execution_count, "the last cell did not run"
    checks = [c for c in codes if c.source.strip().startswith("lmcore.exercises.check_")]
    assert len(checks) == 4
    for c in checks:
        assert [o.output_type for o in c.outputs] == ["stream"], c.outputs   # no True/False, no repr echo
        assert c.outputs[0].text.startswith("NOT SOLVED YET ") and c.outputs[0].text.count("\n") == 1
