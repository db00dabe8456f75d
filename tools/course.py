"""Course tools for instructors: the student edition and grading by the exercise checks.

    python tools/course.py student --out student/            # every chapter
    python tools/course.py student --out student/ --chapter 05
    python tools/course.py grade student/05_transformer.ipynb  # which checks pass
    python tools/course.py instructor-book --out _build/instructor_src   # book without solutions

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
import sys
from pathlib import Path

__all__ = ["make_student_notebook", "write_student_edition", "make_public_notebook", "write_instructor_book", "list_exercises", "grade_notebook", "main"]

SOLUTION_TAG = "solution"
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}(?P<arg>[^\n]*)$")
_GATE_START = re.compile(r"^\s*(`{3,}|:{3,})\{solution-start\}\s*(?P<label>[\w:.-]+)")
_GATE_END = re.compile(r"^\s*(`{3,}|:{3,})\{solution-end\}")


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


def write_student_edition(chapters: Path, out: Path, chapter: str | None = None) -> list[Path]:
    """Write student notebooks for every chapter in ``chapters`` (or those matching ``chapter``)."""
    chapters, out = Path(chapters), Path(out)
    paths = sorted(chapters.glob("*.ipynb"))
    if chapter is not None:
        paths = [p for p in paths if p.stem.startswith(chapter) or p.stem == chapter]
        if not paths:
            raise ValueError(f"no chapter matches {chapter!r}; chapters: {[p.stem for p in sorted(chapters.glob('*.ipynb'))]}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        student = make_student_notebook(json.loads(path.read_text(encoding="utf-8")))
        target = out / path.name
        target.write_text(json.dumps(student, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


def write_instructor_book(root: Path, out: Path) -> Path:
    """Write a copy of the book's sources into ``out`` with every solution removed from the
    chapters (their stored outputs kept) and execution turned off; build it with
    ``jupyter-book build <out>``.  sphinx-exercise's ``hide_solutions`` is not enough: it leaves the
    code cells of gated solutions on the page."""
    import shutil

    import yaml

    root, out = Path(root), Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "chapters").mkdir(parents=True)
    cfg = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    cfg["execute"]["execute_notebooks"] = "off"
    (out / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    for name in ["_toc.yml", "references.bib", *[p.name for p in root.glob("*.md") if p.name != "README.md"]]:
        shutil.copy(root / name, out / name)
    shutil.copytree(root / "_assets", out / "_assets")
    for path in sorted((root / "chapters").glob("*.ipynb")):
        public = make_public_notebook(json.loads(path.read_text(encoding="utf-8")))
        (out / "chapters" / path.name).write_text(json.dumps(public, indent=1, ensure_ascii=False), encoding="utf-8")
    return out


def list_exercises(chapters: Path) -> list[dict[str, str]]:
    """Every exercise of every chapter: chapter, label, title, kind (code with a check, or prose)."""
    rows = []
    for path in sorted(Path(chapters).glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
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
    """Run a student's notebook top to bottom (errors allowed) and collect the PASS/FAIL check lines."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
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
    s = sub.add_parser("student", help="write the student edition of the chapters")
    s.add_argument("--out", required=True, type=Path, help="folder to write the student notebooks into")
    s.add_argument("--chapters", default=Path("chapters"), type=Path, help="folder holding the chapters")
    s.add_argument("--chapter", default=None, help="only this chapter (e.g. 05 or 05_transformer)")
    c = sub.add_parser("instructor-book", help="write the book's sources with every solution removed")
    c.add_argument("--root", default=Path("."), type=Path, help="the book's folder")
    c.add_argument("--out", required=True, type=Path)
    e = sub.add_parser("exercises", help="list every chapter's exercises and their checks (markdown table)")
    e.add_argument("--chapters", default=Path("chapters"), type=Path)
    g = sub.add_parser("grade", help="run a student notebook and report which checks pass")
    g.add_argument("notebook", type=Path)
    args = parser.parse_args(argv)
    if args.command == "student":
        for p in write_student_edition(args.chapters, args.out, args.chapter):
            print(f"wrote {p}")
        return 0
    if args.command == "exercises":
        print("| chapter | exercise | check |\n| --- | --- | --- |")
        for r in list_exercises(args.chapters):
            print(f"| {r['chapter']} | {r['title']} (`{r['label']}`) | {('`' + r['check'] + '`') if r['check'] else 'prose answer'} |")
        return 0
    if args.command == "instructor-book":
        print(f"wrote {write_instructor_book(args.root, args.out)}; build it with: jupyter-book build {args.out}")
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
