"""Grading a folder of submissions by the exercise checks (the export to nbgrader: nbgrader_export.py).

    python tools/course.py grade submissions/ --chapter chapters/08_sampling.ipynb --out grades
    python tools/course.py grade student/08_sampling.ipynb        # one notebook, its chapter by name

The grader does not read what a notebook prints.  It executes each student's notebook (a copy, in a
temporary folder) in a fresh kernel, errors allowed, then runs every check that the instructor's
*source chapter* expects, itself, in that kernel: against a copy of ``lmcore.exercises`` loaded again
from the course's package (so a notebook that redefines a check or ``run_check`` is not believed),
with ``quiet=True``, from code executed with Python's own built-ins (a notebook's ``print``, ``open``
or ``getattr`` of the same name are not used), and the result comes back in a file whose random name
the grader picks only after the student's code ran.  It is not a sandbox: a notebook runs with the
instructor's rights, and one that rewrites Python's ``builtins`` module or torch in its kernel could
still lie; grade untrusted work in a container.
"""
from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from course import CourseError, _read_notebook
from student_edition import _source

__all__ = ["chapter_exercises", "find_submissions", "grade_submission", "grade", "write_report",
           "summarize", "report_paths", "FIELDS", "STATUSES"]

STATUSES = ("pass", "fail", "unsolved", "error", "manual")   # manual: a prose answer, graded by hand
FIELDS = ["student", "chapter", "exercise", "title", "check", "status", "hint", "points", "max_points"]
_EXERCISE = re.compile(r"`{3,}\{exercise\}[ \t]*(?P<title>[^\n]*)\n(?:[ \t]*:[\w-]+:[^\n]*\n)*?"
                       r"[ \t]*:label:[ \t]*(?P<label>[\w:.-]+)")
_LMCORE = Path(__file__).resolve().parents[1] / "lmcore"


def parse_check_call(src: str) -> tuple[str, str] | None:
    """``(check_name, argument source)`` if ``src`` is exactly one call
    ``lmcore.exercises.check_<name>(<arguments>)`` (the form of the chapters' check cells), else None.
    A ``quiet=`` argument is dropped: the grader passes its own."""
    try:
        node = ast.parse(src.strip(), mode="eval").body
    except SyntaxError:
        return None
    func = getattr(node, "func", None)
    if not (isinstance(node, ast.Call) and isinstance(func, ast.Attribute) and func.attr.startswith("check_")
            and isinstance(func.value, ast.Attribute) and func.value.attr == "exercises"
            and isinstance(func.value.value, ast.Name) and func.value.value.id == "lmcore"):
        return None
    text = src.strip()
    parts = [ast.get_source_segment(text, a) or "" for a in node.args]
    parts += [f"{k.arg}={ast.get_source_segment(text, k.value)}" if k.arg else f"**{ast.get_source_segment(text, k.value)}"
              for k in node.keywords if k.arg != "quiet"]
    return func.attr, ", ".join(parts)


def chapter_exercises(nb: dict) -> list[dict]:
    """Every exercise of a source chapter, in order: ``label``, ``title``, ``checks`` (a list of
    ``(check_name, argument source)`` from the check cells between this exercise and the next one;
    empty for a prose exercise) and ``cell`` (the index of the markdown cell that states it)."""
    exercises: list[dict] = []
    for i, cell in enumerate(nb["cells"]):
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            exercises += [{"label": m.group("label"), "title": m.group("title").strip(), "checks": [], "cell": i}
                          for m in _EXERCISE.finditer(src)]
        elif cell["cell_type"] == "code" and exercises and (call := parse_check_call(src)):
            exercises[-1]["checks"].append(call)
    return exercises


def find_submissions(path: Path, chapter_name: str) -> list[tuple[str, Path | None, str]]:
    """``(student, notebook, problem)`` for each submission in the folder ``path``: a notebook
    ``<student>.ipynb``, or a folder ``<student>/`` holding ``chapter_name`` or exactly one notebook.
    ``notebook`` is None when ``problem`` says why there is none (that student's rows say so)."""
    path = Path(path)
    if not path.is_dir():
        raise CourseError(f"{path}: no such folder of submissions")
    found: list[tuple[str, Path | None, str]] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            found.append((entry.stem, entry, ""))
        elif entry.is_dir():
            notebooks = sorted(p for p in entry.glob("*.ipynb"))
            named = [p for p in notebooks if p.name == chapter_name]
            if named or len(notebooks) == 1:
                found.append((entry.name, (named or notebooks)[0], ""))
            else:
                found.append((entry.name, None, f"the folder {entry.name}/ holds {len(notebooks)} notebooks and none is "
                                                f"named {chapter_name}: name the submission {chapter_name}"))
    if not found:
        raise CourseError(f"{path} holds no submission: put one notebook per student (<student>.ipynb) or one "
                          "folder per student (<student>/<chapter>.ipynb) in it")
    students = [s for s, _, _ in found]
    if len(set(students)) < len(students):
        twice = sorted({s for s in students if students.count(s) > 1})
        raise CourseError(f"{path} has both a notebook and a folder for {', '.join(twice)}: keep one of them")
    return found


def _kernel_check(lmcore_dir: str, check: str, args_src: str, out_path: str, ns: dict) -> None:
    """Runs in the student's kernel (its source is sent there): call ``check`` of a freshly loaded
    ``lmcore.exercises`` on ``args_src`` evaluated in the notebook's namespace ``ns``, and write
    ``{"status", "hint"}`` to ``out_path``.  Executed with globals holding only the real builtins."""
    import importlib
    import importlib.util
    import json as _json
    import os as _os
    import sys

    def outcome() -> tuple[str, str]:
        try:
            args, kwargs = eval(f"(lambda *a, **k: (a, k))({args_src})", ns)
        except NameError as err:
            return "unsolved", f"not defined: {err.name} (write it, and run its cell, before you submit)"
        except Exception as err:
            return "error", f"evaluating the check's arguments ({args_src}) raised {type(err).__name__}: {err}"
        package = sys.modules.get("lmcore") or importlib.import_module("lmcore")
        where = _os.path.dirname(_os.path.realpath(getattr(package, "__file__", None) or "."))
        if where != _os.path.realpath(lmcore_dir):
            return "error", f"the notebook's lmcore comes from {where}, not from the course's package"
        for name in [n for n in sys.modules if n == "lmcore.exercises" or n.startswith("lmcore.exercises.")]:
            del sys.modules[name]
        folder = _os.path.join(lmcore_dir, "exercises")
        spec = importlib.util.spec_from_file_location("lmcore.exercises", _os.path.join(folder, "__init__.py"),
                                                      submodule_search_locations=[folder])
        fresh = importlib.util.module_from_spec(spec)
        sys.modules["lmcore.exercises"] = fresh
        spec.loader.exec_module(fresh)
        result = getattr(fresh, check)(*args, **kwargs, quiet=True)
        if type(result) is not fresh.CheckResult:
            return "error", f"{check} returned {type(result).__name__}, not a CheckResult"
        return result.status, result.hint

    try:
        status, hint = outcome()
    except KeyboardInterrupt:   # the grader interrupts a check that runs past its time limit
        status, hint = "error", "the check ran past the grader's time limit (--timeout) and was interrupted"
    except BaseException as err:
        status, hint = "error", f"the check raised {type(err).__name__}: {err}"
    with open(out_path, "w", encoding="utf-8") as f:
        _json.dump({"status": status, "hint": hint}, f)


def _check_cell(check: str, args_src: str, out_path: str) -> str:
    """The code of the cell the grader runs in the student's kernel for one check."""
    import inspect

    call = f"_kernel_check({str(_LMCORE)!r}, {check!r}, {args_src!r}, {out_path!r}, NS)"
    code = inspect.getsource(_kernel_check) + "\n" + call + "\n"
    # `import` and attribute access cannot be redirected by names the notebook defined; the check's
    # code then runs with globals that hold only Python's builtins (and the notebook's namespace as NS).
    return f"import builtins\nbuiltins.exec({code!r}, {{'__builtins__': builtins, 'NS': builtins.globals()}})"


def _rows(student: str, chapter: str, exercises: list[dict], results: dict) -> list[dict]:
    rows = []
    for ex in exercises:
        base = {"student": student, "chapter": chapter, "exercise": ex["label"], "title": ex["title"]}
        if not ex["checks"]:
            rows.append({**base, "check": "", "status": "manual", "hint": "a prose answer: grade it by hand",
                         "points": 0, "max_points": 0})
        for check, args in ex["checks"]:
            status, hint = results.get((ex["label"], check, args), ("error", "no result"))
            rows.append({**base, "check": check, "status": status, "hint": "" if status == "pass" else hint,
                         "points": int(status == "pass"), "max_points": 1})
    return rows


def _load_notebook(path: Path):
    """The notebook at ``path`` as an nbformat node; CourseError saying what is wrong otherwise."""
    import nbformat

    _read_notebook(path)
    try:
        nb = nbformat.reads(Path(path).read_text(encoding="utf-8"), as_version=4)   # joins list sources
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        raise CourseError(f"{path} is not a valid notebook: {err.message}") from None
    return nb


def grade_submission(notebook: Path | None, exercises: list[dict], timeout: int = 600,
                     problem: str = "") -> dict[tuple[str, str, str], tuple[str, str]]:
    """``{(label, check, args): (status, hint)}`` for one submission: its notebook run in a fresh kernel
    (from a copy of its folder, errors allowed, ``timeout`` seconds per cell), then every check of
    ``exercises`` called by the grader.  A submission that cannot be run gets "error" everywhere."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    wanted = [(ex["label"], c, a) for ex in exercises for c, a in ex["checks"]]
    if notebook is None:
        return {key: ("error", problem) for key in wanted}
    try:
        nb = _load_notebook(notebook)
    except CourseError as err:
        return {key: ("error", f"the submission is not a valid notebook: {err}") for key in wanted}
    results: dict[tuple[str, str, str], tuple[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="lmcore-grade-") as tmp:
        work = Path(tmp) / "work"    # a copy: the student's code never writes into the submissions
        shutil.copytree(notebook.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                                error_on_timeout={"ename": "CellTimeoutError", "evalue": f"over {timeout} s"},
                                kernel_name="python3", resources={"metadata": {"path": str(work)}})
        try:
            with client.setup_kernel():
                for index, cell in enumerate(nb.cells):
                    client.execute_cell(cell, index)
                # Named only now, after the student's code ran, so that code cannot know where to write.
                box = Path(tempfile.mkdtemp(prefix="lmcore-results-", dir=tmp))
                for key in wanted:
                    out = box / f"{secrets.token_hex(16)}.json"
                    cell = nbformat.v4.new_code_cell(_check_cell(key[1], key[2], str(out)))
                    nb.cells.append(cell)
                    client.execute_cell(cell, len(nb.cells) - 1)
                    if out.is_file():
                        got = json.loads(out.read_text(encoding="utf-8"))
                        results[key] = (got["status"], got["hint"])
        except DeadKernelError:
            pass
    dead = "the notebook's kernel died (or stopped answering) before this check ran"
    return {key: results.get(key, ("error", dead)) for key in wanted}


def summarize(rows: list[dict]) -> list[dict]:
    """One line per student: points, max_points and the count of each status."""
    out: dict[str, dict] = {}
    for r in rows:
        s = out.setdefault(r["student"], {"student": r["student"], "points": 0, "max_points": 0,
                                          **{k: 0 for k in STATUSES}})
        s["points"] += r["points"]
        s["max_points"] += r["max_points"]
        s[r["status"]] += 1
    return list(out.values())


def report_paths(out: Path) -> tuple[Path, Path]:
    """The report's two files: ``<out>.csv`` and ``<out>.json`` (a .csv or .json suffix of ``out`` is dropped)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".csv", ".json") else out
    return Path(f"{stem}.csv"), Path(f"{stem}.json")


def _check_report_target(out: Path, force: bool) -> None:
    for p in report_paths(out):
        if p.is_dir():
            raise CourseError(f"--out {out}: {p} is a folder; choose another report name")
        if p.exists() and not force:
            raise CourseError(f"--out {out}: {p} exists; choose another name, or pass --force to overwrite it")
        if not p.parent.is_dir():
            raise CourseError(f"--out {out}: the folder {p.parent} does not exist")


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it: no half-written report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(rows: list[dict], out: Path, force: bool = False) -> tuple[Path, Path]:
    """Write the rows as ``<out>.csv`` and ``<out>.json`` (with the per-student summary), each
    atomically; an existing report is refused without ``force``."""
    _check_report_target(out, force)
    csv_path, json_path = report_paths(out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(csv_path, buf.getvalue())
    _atomic_write(json_path, json.dumps({"rows": rows, "summary": summarize(rows)}, indent=1, ensure_ascii=False) + "\n")
    return csv_path, json_path


def grade(submissions: Path, chapter: Path | None = None, out: Path | None = None, force: bool = False,
          timeout: int = 600) -> list[dict]:
    """Grade ``submissions`` (a folder of them, or one notebook) against the source ``chapter``
    (for one notebook, by default ``chapters/<its file name>``) and return the report's rows; with
    ``out``, write them too.  Bad input raises CourseError before any kernel starts."""
    submissions = Path(submissions)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise CourseError(f"--timeout must be a whole number of seconds, at least 1, got {timeout!r}")
    if not submissions.exists():
        raise CourseError(f"{submissions}: no such notebook file or folder of submissions")
    if submissions.is_dir() and chapter is None:
        raise CourseError(f"{submissions} is a folder of submissions: name the chapter they answer with "
                          "--chapter chapters/NN_name.ipynb")
    if submissions.is_file():
        _load_notebook(submissions)       # a bad single notebook is bad input (exit 2), not a 0 score
        if chapter is None:
            chapter = Path("chapters") / submissions.name
            if not chapter.is_file():
                raise CourseError(f"{chapter} does not exist: name the chapter {submissions} answers with --chapter")
    assert chapter is not None
    exercises = chapter_exercises(_read_notebook(chapter))
    if not exercises:
        raise CourseError(f"{chapter} has no exercise (a {{exercise}} block with a :label:); is it a source chapter?")
    if out is not None:
        _check_report_target(out, force)
    found = find_submissions(submissions, chapter.name) if submissions.is_dir() else [(submissions.stem, submissions, "")]
    rows = []
    for student, notebook, problem in found:
        rows += _rows(student, chapter.stem, exercises, grade_submission(notebook, exercises, timeout, problem))
    if out is not None:
        write_report(rows, out, force)
    return rows
