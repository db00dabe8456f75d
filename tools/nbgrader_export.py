"""The export of a source chapter to nbgrader (https://nbgrader.readthedocs.io), the autograder.

    python tools/course.py export-nbgrader --chapter chapters/02_ngrams.ipynb --out course/
    cd course && nbgrader generate_assignment 02_ngrams && nbgrader autograde 02_ngrams

nbgrader rather than otter-grader: the chapters already mark what a student writes with nbgrader's
own ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines (otter uses ``# BEGIN SOLUTION`` and question
cells of its own), and nbgrader 0.9 installs beside JupyterLab 4.5 (contributing.md, "Grading").
"""
from __future__ import annotations

import re
from pathlib import Path

from course import CourseError, _read_notebook
from grading import _EXERCISE, _atomic_write, chapter_exercises, parse_check_call
from student_edition import SOLUTION_TAG, _source

__all__ = ["export_nbgrader"]

# --- The export to nbgrader --------------------------------------------------------------------------
_GATE = re.compile(r"^\s*(`{3,}|:{3,})\{solution-(start|end)\}")
_SOLUTION_BLOCK = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$\n?",
                             re.M | re.S)
_NBGRADER_CONFIG = """c = get_config()  # noqa: F821 (nbgrader defines it)
# A chapter's cell may train a model for minutes on a CPU; nbgrader's default is 30 s per cell.
c.Execute.timeout = 900
c.Execute.interrupt_on_timeout = True
"""
_HIDDEN_TEST = """{visible}
### BEGIN HIDDEN TESTS
# The check again, from lmcore.exercises loaded afresh: a notebook that redefined a check is not believed.
import importlib, sys
for _name in [n for n in sys.modules if n == "lmcore.exercises" or n.startswith("lmcore.exercises.")]:
    del sys.modules[_name]
_result = importlib.import_module("lmcore.exercises").{check}({args}quiet=True)
assert _result, f"{{_result.status}}: {{_result.hint}}"
### END HIDDEN TESTS"""


def _nbgrader_meta(grade_id: str, *, solution: bool, grade: bool, locked: bool, points: int) -> dict:
    meta = {"grade": grade, "grade_id": re.sub(r"[^\w-]", "_", grade_id), "locked": locked,
            "schema_version": 3, "solution": solution, "task": False}
    return {**meta, "points": points} if grade else meta


def _prose_answers(cells: list[dict]) -> dict[str, list[str]]:
    """label -> the bodies of the ``{solution}`` blocks that follow that exercise (its model answer)."""
    answers: dict[str, list[str]] = {}
    label = None
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        src = _source(cell)
        marks = [(m.start(), m.group("label"), None) for m in _EXERCISE.finditer(src)]
        marks += [(m.start(), None, m.group("body")) for m in _SOLUTION_BLOCK.finditer(src)]
        for _, new_label, body in sorted(marks, key=lambda t: t[0]):
            if new_label:
                label = new_label
            elif label:
                options = re.match(r"(?:[ \t]*:[\w-]+:[^\n]*\n)*", body)
                answers.setdefault(label, []).append(body[options.end() if options else 0:].strip())
    return answers


def export_nbgrader(chapter: Path, out: Path, force: bool = False, points: int = 1) -> Path:
    """Write the nbgrader *source* version of ``chapter`` as ``<out>/source/<stem>/<name>`` (``out``
    is the nbgrader course folder; its ``nbgrader_config.py`` is written if it has none) and return
    the notebook's path.  Solution cells become "autograded answer" cells (their ``### BEGIN
    SOLUTION`` / ``### END SOLUTION`` region, or the whole cell when it has none), each check cell an
    "autograder tests" cell worth ``points`` that asserts the check passes (in hidden tests, against
    a fresh ``lmcore.exercises``), and each prose exercise gets a manually graded answer cell holding
    the model answer; the solution directives leave the markdown, outputs are cleared.  An existing
    notebook is refused without ``force``."""
    import nbformat

    chapter, out = Path(chapter), Path(out)
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise CourseError(f"--points must be a whole number, at least 1, got {points!r}")
    nb = _read_notebook(chapter)
    exercises = chapter_exercises(nb)
    if not exercises:
        raise CourseError(f"{chapter} has no exercise (a {{exercise}} block with a :label:); is it a source chapter?")
    target = out / "source" / chapter.stem / chapter.name
    if out.exists() and not out.is_dir():
        raise CourseError(f"--out {out} is a file; name the nbgrader course folder")
    if target.exists() and not force:
        raise CourseError(f"{target} exists; pass --force to overwrite it")
    answers = _prose_answers(nb["cells"])
    cells: list[dict] = []
    label, seen = "solution", {}

    def grade_id(name: str) -> str:
        """nbgrader needs unique ids: a check called twice gets ``-2`` on its second cell."""
        seen[name] = seen.get(name, 0) + 1
        return name if seen[name] == 1 else f"{name}-{seen[name]}"

    for i, cell in enumerate(nb["cells"]):
        cell, src = dict(cell, metadata=dict(cell.get("metadata", {}))), _source(cell)
        if cell["cell_type"] == "markdown":
            if _GATE.match(src):
                continue
            text = re.sub(r"\n{3,}", "\n\n", _SOLUTION_BLOCK.sub("", src)).strip("\n")
            if text.strip():
                cells.append({**cell, "source": text})
            for ex in [e for e in exercises if e["cell"] == i]:
                label = ex["label"]
                if not ex["checks"]:
                    answer = nbformat.v4.new_markdown_cell("\n\n".join(answers.get(label, [])) or "YOUR ANSWER HERE")
                    answer.metadata["nbgrader"] = _nbgrader_meta(grade_id(f"{label}-answer"), solution=True,
                                                                 grade=True, locked=False, points=points)
                    cells.append(dict(answer))
            continue
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            call = parse_check_call(src)
            if SOLUTION_TAG in cell["metadata"].get("tags", []):
                if "### BEGIN SOLUTION" not in src:
                    src = f"### BEGIN SOLUTION\n{src}\n### END SOLUTION"
                cell["source"] = src
                cell["metadata"]["nbgrader"] = _nbgrader_meta(grade_id(f"{label}-solution"), solution=True,
                                                              grade=False, locked=False, points=0)
            elif call and label != "solution":
                check, args = call
                cell["source"] = _HIDDEN_TEST.format(visible=src.strip(), check=check,
                                                     args=f"{args}, " if args else "")
                cell["metadata"]["nbgrader"] = _nbgrader_meta(grade_id(f"{label}-{check}"), solution=False,
                                                              grade=True, locked=True, points=points)
        cells.append(cell)
    result = nbformat.from_dict({**nb, "cells": cells})
    nbformat.validate(result)
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, nbformat.writes(result) + "\n")
    if not (out / "nbgrader_config.py").exists():
        _atomic_write(out / "nbgrader_config.py", _NBGRADER_CONFIG)
    return target
