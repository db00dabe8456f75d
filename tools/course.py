"""Course tools for instructors: the student edition and grading by the exercise checks.

    python tools/course.py student --out student/            # every chapter
    python tools/course.py student --out student/ --chapter 05
    python tools/course.py grade student/05_transformer.ipynb  # which checks pass
    python tools/course.py instructor-book --out _build/instructor_src   # book without solutions

Output folders are safe to name: a folder the tool creates gets a marker file (``.lmcore-course-output``)
and may be rewritten by the same command later; a non-empty folder without that marker is refused
unless ``--force`` is given (then files of the same name are overwritten and nothing is deleted); the
sources (the chapters, the book's folder, any folder holding them) and any git repository are refused
even with ``--force``.
Bad arguments end with a message and exit status 2.

The student edition of a chapter is the chapter with every code cell tagged ``solution`` replaced by
a stub that raises ``NotImplementedError("Exercise <label>: ...")``, every solution directive
(``{solution}`` blocks and the ``{solution-start}`` / ``{solution-end}`` gates) removed from the
markdown, and all outputs cleared.  Everything else is unchanged, so the students' notebook runs
exactly like the book up to their first exercise.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
from pathlib import Path

__all__ = ["CourseError", "make_student_notebook", "write_student_edition", "make_public_notebook", "write_instructor_book",
           "list_exercises", "grade_notebook", "main", "MARKER"]

SOLUTION_TAG = "solution"
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}(?P<arg>[^\n]*)$")
_GATE_START = re.compile(r"^\s*(`{3,}|:{3,})\{solution-start\}\s*(?P<label>[\w:.-]+)")
_GATE_END = re.compile(r"^\s*(`{3,}|:{3,})\{solution-end\}")
# Written into every output folder the tool creates: its first line names the command that owns it.
MARKER = ".lmcore-course-output"


class CourseError(ValueError):
    """A bad argument or input file (the message says which and what to do); the command line
    prints it and exits with status 2."""


def _read_notebook(path: Path) -> dict:
    """The nbformat-4 notebook stored at ``path``, as a dict; CourseError naming the file otherwise."""
    path = Path(path)
    if path.is_dir():
        raise CourseError(f"{path} is a folder, not a notebook file")
    if not path.is_file():
        raise CourseError(f"{path}: no such notebook file")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CourseError(f"{path} is not a notebook: it is not JSON ({err})") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if (not isinstance(cells, list) or nb.get("nbformat") != 4
            or not all(isinstance(c, dict) and isinstance(c.get("cell_type"), str) for c in cells)):
        raise CourseError(f"{path} is not a notebook: expected a JSON object with nbformat 4 and a list of cells")
    return nb


def _chapter_paths(chapters: Path) -> list[Path]:
    """The notebooks in the folder ``chapters``; CourseError if it does not exist or holds none."""
    chapters = Path(chapters)
    if not chapters.is_dir():
        raise CourseError(f"the chapters folder {chapters} does not exist or is not a folder "
                          "(pass --chapters DIR, the folder holding the chapter notebooks)")
    paths = sorted(chapters.glob("*.ipynb"))
    if not paths:
        raise CourseError(f"the chapters folder {chapters} holds no .ipynb notebook (pass --chapters DIR)")
    return paths


def _prepare_out(out: Path, command: str, sources: list[Path], force: bool, fresh: bool) -> None:
    """Make the folder ``out`` ready for ``command`` to write into, or raise CourseError.

    Refused even with ``force``: ``out`` is one of ``sources`` (the inputs), lies inside a source
    folder, or contains a source (the book's folder, the repository, any folder above them); or it
    holds a ``.git`` (a repository).  Refused without ``force``: an existing non-empty folder without
    ``command``'s marker.  ``fresh`` empties a folder carrying the marker first (it holds only this
    command's earlier output).  A folder entered by ``force`` is never emptied and gets no marker,
    so no later run empties it either: only what the tool created is ever deleted."""
    target = Path(out).resolve()   # resolved: neither "..", "." nor a symlink hides a source folder
    for src in (s.resolve() for s in sources):
        if target == src or target in src.parents or (src.is_dir() and src in target.parents):
            raise CourseError(f"--out {out} is refused: it would write into the sources ({src}); "
                              "choose a folder outside them (--force does not change this)")
    if target.exists() and not target.is_dir():
        raise CourseError(f"--out {out} is a file, not a folder; choose a new or empty folder")
    if (target / ".git").exists():
        raise CourseError(f"--out {out} is refused: it is a git repository (--force does not change this)")
    if target.is_dir() and any(target.iterdir()):
        marker = target / MARKER
        ours = marker.is_file() and marker.read_text(encoding="utf-8", errors="replace").split("\n")[0] == command
        if not ours:
            if not force:
                raise CourseError(f"--out {out} is a non-empty folder that `{command}` did not create; choose a new "
                                  "or empty folder, or pass --force to write into it (files of the same name are "
                                  "overwritten, nothing is deleted)")
            return
        if fresh:
            shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)
    (target / MARKER).write_text(f"{command}\nWritten by `python tools/course.py {command}`, which may overwrite "
                                 "or replace this folder's content when run again with the same --out.\n", encoding="utf-8")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _strip_solution_blocks(markdown: str) -> str:
    """Remove every fenced ``{solution}`` directive (with its body) from a markdown string."""
    out, lines, i = [], markdown.split("\n"), 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if m and m.group("name") == "solution":
            fence = m.group("fence")
            i += 1
            depth = 0
            while i < len(lines):
                stripped = lines[i].strip()
                inner = _FENCE.match(stripped)
                if inner and inner.group("fence") == fence:
                    depth += 1
                elif stripped == fence:
                    if depth == 0:
                        break
                    depth -= 1
                i += 1
            i += 1
            continue
        out.append(lines[i])
        i += 1
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


def _without_solutions(nb: dict, stub: bool, clear_outputs: bool) -> dict:
    """Copy of ``nb`` with the solution gates and ``{solution}`` blocks removed from the markdown,
    and each code cell tagged ``solution`` replaced by a stub (``stub=True``) or dropped."""
    if not isinstance(nb, dict) or "cells" not in nb:
        raise TypeError("nb must be a notebook dict (json.load of an .ipynb file)")
    nb = copy.deepcopy(nb)
    cells, label, n_stub = [], None, 0
    for cell in nb["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            gate = _GATE_START.match(src)
            if gate:
                label = gate.group("label")
                continue
            if _GATE_END.match(src):
                continue
            stripped = _strip_solution_blocks(src)
            if not stripped.strip():
                continue
            cell["source"] = stripped
        elif cell["cell_type"] == "code":
            if clear_outputs:
                cell["outputs"], cell["execution_count"] = [], None
            if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
                if not stub:
                    continue
                n_stub += 1
                name = label or f"{n_stub}"
                cell["source"] = (f"# Exercise {name}: write your solution here, then run the check below.\n"
                                  f'raise NotImplementedError("Exercise {name}: not solved yet")')
                cell["outputs"], cell["execution_count"] = [], None
                cell["metadata"]["tags"] = [t for t in cell["metadata"]["tags"] if t != SOLUTION_TAG] + ["exercise"]
        cells.append(cell)
    nb["cells"] = cells
    return nb


def make_student_notebook(nb: dict) -> dict:
    """The student edition of one notebook (a dict in nbformat 4 JSON form): solutions become
    stubs that raise ``NotImplementedError``, written solutions disappear, outputs are cleared."""
    return _without_solutions(nb, stub=True, clear_outputs=True)


def make_public_notebook(nb: dict) -> dict:
    """The chapter as published without solutions: solution cells and written solutions removed,
    every other cell and its stored output kept (the book is built from them, not re-executed)."""
    return _without_solutions(nb, stub=False, clear_outputs=False)


def write_student_edition(chapters: Path, out: Path, chapter: str | None = None, force: bool = False) -> list[Path]:
    """Write student notebooks for every chapter in ``chapters`` (or those whose name starts with
    ``chapter``) into ``out`` and return their paths.  ``out`` is checked as the module docstring says
    (``force``: write into a non-empty folder the tool did not create); nothing is ever deleted."""
    chapters, out = Path(chapters), Path(out)
    paths = every = _chapter_paths(chapters)
    if chapter is not None:
        if not chapter.strip():
            raise CourseError("chapter must name a chapter (e.g. 05 or 05_transformer), not be empty")
        paths = [p for p in every if p.stem.startswith(chapter)]
        if not paths:
            raise CourseError(f"no chapter matches {chapter!r}; chapters: {[p.stem for p in every]}")
    # Every notebook is read and converted before anything is written: a bad one stops the run early.
    students = [(path.name, make_student_notebook(_read_notebook(path))) for path in paths]
    _prepare_out(out, "student", [chapters], force, fresh=False)
    written = []
    for name, student in students:
        target = out / name
        target.write_text(json.dumps(student, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


def write_instructor_book(root: Path, out: Path, force: bool = False) -> Path:
    """Write a copy of the book's sources into ``out`` with every solution removed from the
    chapters (their stored outputs kept) and execution turned off; build it with
    ``jupyter-book build <out>``.  sphinx-exercise's ``hide_solutions`` is not enough: it leaves the
    code cells of gated solutions on the page.  ``out`` is checked as the module docstring says; a
    folder this command created before is emptied first, one entered by ``force`` never is."""
    import yaml

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise CourseError(f"the book folder {root} does not exist (pass --root DIR, the folder holding _config.yml)")
    needed = ["_config.yml", "_toc.yml", "references.bib", "_assets", "chapters"]
    missing = [name for name in needed if not (root / name).exists()]
    if missing:
        raise CourseError(f"{root} is not the book's folder (--root): it has no {', '.join(missing)}")
    try:
        cfg = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CourseError(f"{root / '_config.yml'} is not valid YAML: {err}") from None
    execute = (cfg.get("execute") or {}) if isinstance(cfg, dict) else None
    if not isinstance(execute, dict):
        raise CourseError(f"{root / '_config.yml'} must be a mapping whose `execute` entry is a mapping")
    cfg["execute"] = {**execute, "execute_notebooks": "off"}
    pages = ["_toc.yml", "references.bib", *[p.name for p in sorted(root.glob("*.md")) if p.name != "README.md"]]
    # Every chapter is read and converted before `out` is touched: a bad input deletes nothing.
    public = [(path.name, make_public_notebook(_read_notebook(path))) for path in _chapter_paths(root / "chapters")]
    _prepare_out(out, "instructor-book", [root / name for name in ["_config.yml", "_assets", "chapters", *pages]],
                 force, fresh=True)
    (out / "chapters").mkdir(exist_ok=True)
    (out / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    for name in pages:
        shutil.copy(root / name, out / name)
    shutil.copytree(root / "_assets", out / "_assets", dirs_exist_ok=True)
    for name, nb in public:
        (out / "chapters" / name).write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
    return out


def list_exercises(chapters: Path) -> list[dict[str, str]]:
    """Every exercise of every chapter: chapter, label, title, kind (code with a check, or prose)."""
    rows = []
    for path in _chapter_paths(chapters):
        cells = _read_notebook(path)["cells"]
        text = [(c["cell_type"], _source(c)) for c in cells]
        for i, (kind, src) in enumerate(text):
            if kind != "markdown":
                continue
            for m in re.finditer(r"\{exercise\}\s*([^\n]*)\n:label:\s*([\w:.-]+)", src):
                title, label = m.group(1).strip(), m.group(2)
                after = "\n".join(s for _, s in text[i:i + 12])
                check = re.search(r"check_(\w+)\(", after)
                rows.append({"chapter": path.stem, "label": label, "title": title,
                             "check": f"check_{check.group(1)}" if check else ""})
    return rows


def grade_notebook(path: Path, timeout: int = 600) -> dict[str, bool]:
    """Run a student's notebook top to bottom (errors allowed) and collect the PASS/FAIL check lines.
    CourseError, before any kernel starts, if ``path`` is not a valid nbformat-4 notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.from_dict(_read_notebook(path))
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        raise CourseError(f"{path} is not a valid notebook: {err.message}") from None
    NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    results: dict[str, bool] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            for line in text.splitlines():
                m = re.match(r"^(PASS|FAIL) ([\w.-]+)", line)
                if m:
                    results[m.group(2)] = m.group(1) == "PASS"
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/course.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    force = "write into a non-empty folder this tool did not create (same-named files are overwritten, nothing is deleted)"
    s = sub.add_parser("student", help="write the student edition of the chapters")
    s.add_argument("--out", required=True, type=_path, help="folder to write the student notebooks into")
    s.add_argument("--chapters", default=Path("chapters"), type=_path, help="folder holding the chapters")
    s.add_argument("--chapter", default=None, help="only this chapter (e.g. 05 or 05_transformer)")
    s.add_argument("--force", action="store_true", help=force)
    c = sub.add_parser("instructor-book", help="write the book's sources with every solution removed")
    c.add_argument("--root", default=Path("."), type=_path, help="the book's folder")
    c.add_argument("--out", required=True, type=_path, help="folder to write the book into (rewritten on every run)")
    c.add_argument("--force", action="store_true", help=force)
    e = sub.add_parser("exercises", help="list every chapter's exercises and their checks (markdown table)")
    e.add_argument("--chapters", default=Path("chapters"), type=_path)
    g = sub.add_parser("grade", help="run a student notebook and report which checks pass")
    g.add_argument("notebook", type=_path)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (CourseError, OSError) as err:   # bad input, or a folder that cannot be written: no traceback
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2


def _path(text: str) -> Path:
    """argparse type of a path argument: an empty string would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path, not empty")
    return Path(text)


def _run(args: argparse.Namespace) -> int:
    if args.command == "student":
        for p in write_student_edition(args.chapters, args.out, args.chapter, force=args.force):
            print(f"wrote {p}")
        return 0
    if args.command == "exercises":
        print("| chapter | exercise | check |\n| --- | --- | --- |")
        for r in list_exercises(args.chapters):
            print(f"| {r['chapter']} | {r['title']} (`{r['label']}`) | {('`' + r['check'] + '`') if r['check'] else 'prose answer'} |")
        return 0
    if args.command == "instructor-book":
        print(f"wrote {write_instructor_book(args.root, args.out, force=args.force)}; build it with: jupyter-book build {args.out}")
        return 0
    results = grade_notebook(args.notebook)
    if not results:
        print(f"{args.notebook}: no check ran (did the notebook stop before its first check?)")
        return 1
    for name, ok in results.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"{sum(results.values())}/{len(results)} checks pass")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
