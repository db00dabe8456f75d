"""Course tools for instructors: the student edition and grading by the exercise checks.

    python tools/course.py student --out student/            # every chapter
    python tools/course.py student --out student/ --chapter 05
    python tools/course.py grade submissions/ --chapter chapters/05_transformer.ipynb --out grades  # tools/grading.py
    python tools/course.py export-nbgrader --chapter chapters/02_ngrams.ipynb --out course/       # for nbgrader
    python tools/course.py instructor-book --out _build/instructor_src   # book without solutions
    python tools/course.py student-branch                     # the student edition on the branch `student`

Output folders are safe to name: a folder the tool creates gets a marker file (``.lmcore-course-output``)
and may be rewritten by the same command later; a non-empty folder without that marker is refused
unless ``--force`` is given (then files of the same name are overwritten and nothing is deleted); the
sources (the chapters, the book's folder, any folder holding them) and any git repository are refused
even with ``--force``.
Bad arguments end with a message and exit status 2.

The student edition of a chapter is the chapter with, in every code cell tagged ``solution``, each
``### BEGIN SOLUTION`` / ``### END SOLUTION`` region replaced: inside a function by
``raise NotImplementedError("Exercise <label>: not solved yet")`` (its ``def`` line and docstring
stay), at the top level by a ``# your code here`` comment.  The written solutions (``{solution}``
blocks, and everything between a ``{solution-start}`` and its ``{solution-end}`` gate except the
solution cells) are removed; an exercise with a written solution or without a check gets a markdown
cell "**Your answer:** ..." in its place; claim cells about what only a solution computes are
dropped, and other cells that use a solution are wrapped so that they report "skipped" until it is
written; all outputs are cleared.  "Run All" runs the whole chapter: a check of an unsolved
exercise prints ``NOT SOLVED YET`` and the chapter goes on.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import shutil
import sys
from pathlib import Path

__all__ = ["CourseError", "make_student_notebook", "write_student_edition", "make_public_notebook", "write_instructor_book",
           "list_exercises", "main", "MARKER"]

SOLUTION_TAG = "solution"
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}(?P<arg>[^\n]*)$")
_GATE_START = re.compile(r"^\s*(`{3,}|:{3,})\{solution-start\}\s*(?P<label>[\w:.-]+)")
_GATE_END = re.compile(r"^\s*(`{3,}|:{3,})\{solution-end\}")
# The nbgrader-style lines around the part of a solution cell the student writes.
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_CHECK_CELL = re.compile(r"^lmcore\.exercises\.check_\w+\(.*\);?$")
_COLAB_LINK = re.compile(r"(colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/)[\w./-]+?(/chapters/)")
_ANSWER_SLOT = "\x00answer:"   # stands, inside one markdown string, where a written solution was
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


def _solution_blocks(markdown: str) -> tuple[str, list[str]]:
    """``markdown`` with every fenced ``{solution}`` directive (and its body) replaced by a line
    ``_ANSWER_SLOT`` + its label, and the labels in order."""
    out, labels, lines, i = [], [], markdown.split("\n"), 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if m and m.group("name") == "solution":
            fence = m.group("fence")
            labels.append(m.group("arg").strip())
            out.append(_ANSWER_SLOT + labels[-1])
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
    return "\n".join(out), labels


def _strip_solution_blocks(markdown: str) -> str:
    """Remove every fenced ``{solution}`` directive (with its body) from a markdown string."""
    text = _solution_blocks(markdown)[0]
    kept = "\n".join(line for line in text.split("\n") if not line.startswith(_ANSWER_SLOT))
    return re.sub(r"\n{3,}", "\n\n", kept).strip("\n")


def stub_source(source: str, label: str) -> str:
    """A solution cell's student-edition source: each ``### BEGIN SOLUTION`` / ``### END SOLUTION``
    region replaced by ``raise NotImplementedError("Exercise <label>: not solved yet")`` when it is
    indented (a function's body: its ``def`` line and docstring stay) or by a ``# your code here``
    comment at the top level (an experiment that fills a results dict made outside the region).
    A cell without regions is all solution.  ValueError on unbalanced markers."""
    out: list[str] = []
    region: str | None = None          # the BEGIN line's indentation while inside a region
    for line in source.split("\n"):
        marker = line.strip()
        if marker == BEGIN:
            if region is not None:
                raise ValueError(f"Exercise {label}: a {BEGIN} inside another region")
            region = line[:len(line) - len(line.lstrip())]
            out.append(f'{region}raise NotImplementedError("Exercise {label}: not solved yet")' if region
                       else f"# Exercise {label}: your code here")
        elif marker == END:
            if region is None:
                raise ValueError(f"Exercise {label}: an {END} without its {BEGIN}")
            region = None
        elif region is None:
            out.append(line)
    if region is not None:
        raise ValueError(f"Exercise {label}: a {BEGIN} without its {END}")
    if not any(line.strip() in (BEGIN, END) for line in source.split("\n")):
        return f"# Exercise {label}: your code here"
    return "\n".join(out)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _stores(nodes) -> set[str]:
    """The names ``nodes`` bind in their own scope (not inside the functions, classes, lambdas and
    comprehensions they contain, whose names are their own)."""
    out: set[str] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            todo += node.decorator_list
            continue
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
        todo += ast.iter_child_nodes(node)
    return out


def _reads(node: ast.AST) -> set[str]:
    """The names ``node`` reads from outside: a function's parameters and locals are its own."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
        body = node.body if isinstance(node.body, list) else [node.body]
        outer = [*args.defaults, *(d for d in args.kw_defaults if d), *getattr(node, "decorator_list", [])]
        inner = set().union(*(_reads(n) for n in body)) - params - _stores(body)
        return inner | set().union(*(_reads(n) for n in outer))
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        targets = _stores(g.target for g in node.generators)
        return set().union(*(_reads(n) for n in ast.iter_child_nodes(node))) - targets
    if isinstance(node, ast.Name):
        return {node.id} if not isinstance(node.ctx, ast.Store) else set()
    return set().union(*(_reads(n) for n in ast.iter_child_nodes(node)))


def _names(source: str) -> tuple[set[str], set[str]]:
    """(the names a cell binds at the top level, the names it reads that it does not bind); empty
    sets if it does not parse (a cell with IPython magics)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set()
    bound = _stores(tree.body)
    return bound, _reads(tree) - bound


def _is_check(source: str) -> bool:
    return bool(_CHECK_CELL.match(source.strip()))


def _guarded(source: str) -> str:
    """A cell that uses an exercise's solution, made to run on in the student edition until it is solved."""
    body = "\n".join(("    " + line) if line.strip() else line for line in source.split("\n"))
    return ("try:  # this cell uses your solution of an exercise above\n" + body + "\n"
            "except (NotImplementedError, NameError) as err:\n"
            '    print(f"skipped until the exercise above is solved ({type(err).__name__}: {err})")')


def _answer_cell(label: str) -> dict:
    return {"cell_type": "markdown", "id": re.sub(r"[^\w-]", "-", f"answer-{label}")[:64], "source": "**Your answer:** ...",
            "metadata": {"tags": ["answer"], "exercise": label}}


def _exercise_kinds(cells: list[dict]) -> tuple[list[str], set[str], set[str]]:
    """(every exercise label in order, the labels with a code solution gate, those with a check cell)."""
    rows = _exercise_rows(cells)
    labels = [r["label"] for r in rows]
    gated = {m.group("label") for c in cells if c["cell_type"] == "markdown" for m in [_GATE_START.match(_source(c))] if m}
    return labels, gated, {r["label"] for r in rows if r["check"]}


def _without_solutions(nb: dict, stub: bool, clear_outputs: bool) -> dict:
    """Copy of ``nb`` without its solutions: the ``{solution}`` blocks, the gates and everything between
    a ``{solution-start}`` and its ``{solution-end}`` except the code cells tagged ``solution``.  Those
    become stubs (``stub=True``, see :func:`stub_source`) or are dropped.  With ``stub``, the copy is the
    student edition: an exercise with a written solution or without a check gets a markdown answer
    cell (tag ``answer``) where its solution was, claim cells that read what only a solution computes
    are dropped, and other cells that do are guarded so that Run All goes on to the end."""
    if not isinstance(nb, dict) or "cells" not in nb:
        raise TypeError("nb must be a notebook dict (json.load of an .ipynb file)")
    nb = copy.deepcopy(nb)
    labels, gated, checked = _exercise_kinds(nb["cells"])
    answered: set[str] = set()
    # tainted: what a later cell cannot use in the student edition (a stub function, a name only a
    # solution region binds); defined: what the cells kept so far bind for sure
    cells, label, in_gate, n_stub, tainted, defined = [], None, False, 0, set(), set()
    for cell in nb["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            gate = _GATE_START.match(src)
            if gate:
                label, in_gate = gate.group("label"), True
                continue
            if _GATE_END.match(src):
                in_gate = False
                if stub and label and label not in checked and label not in answered:
                    answered.add(label)
                    cells.append(_answer_cell(label))
                continue
            if in_gate:
                continue
            text, written = _solution_blocks(src)
            pending = [x for x in re.findall(r"\{exercise\}[^\n]*\n:label:\s*([\w:.-]+)", src)
                       if x not in gated and x not in written]
            parts = re.split(r"^" + re.escape(_ANSWER_SLOT) + r"([^\n]*)$", text, flags=re.M)
            for k, part in enumerate(parts):
                part_label = part if k % 2 else None      # re.split puts the captured labels at odd places
                if part_label is None:
                    part = re.sub(r"\n{3,}", "\n\n", part).strip("\n")
                    if part.strip():
                        piece = {**copy.deepcopy(cell), "source": part}
                        if k and "id" in cell:           # a cell split in two needs a second id
                            piece["id"] = f"{cell['id']}-{k}"[-64:]
                        cells.append(piece)
                elif stub and part_label not in answered:
                    answered.add(part_label)
                    cells.append(_answer_cell(part_label))
            for x in pending:
                if stub and x not in answered:
                    answered.add(x)
                    cells.append(_answer_cell(x))
            continue
        if cell["cell_type"] != "code":
            cells.append(cell)
            continue
        if clear_outputs:
            cell["outputs"], cell["execution_count"] = [], None
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            if not stub:
                continue
            n_stub += 1
            cell["source"] = stub_source(src, label or f"{n_stub}")
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"]["tags"] = [t for t in tags if t != SOLUTION_TAG] + ["exercise"]
            bound = _names(cell["source"])[0]
            stubbed = {n.name for n in ast.parse(cell["source"]).body if isinstance(n, ast.FunctionDef)
                       and any(isinstance(s, ast.Raise) for s in n.body)}
            tainted |= stubbed | (_names(src)[0] - bound - defined)
            defined |= bound - stubbed
            cells.append(cell)
            continue
        if in_gate:              # the rest of a written solution: its claims, its extra cells
            continue
        bound, read = _names(src)
        if stub and not _is_check(src) and read & tainted:
            if "claim" in tags:  # it asserts the numbers of a solution the student edition does not show
                continue
            cell["source"] = _guarded(src)
            tainted |= bound - defined
        else:
            tainted -= bound
            defined |= bound
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


def write_instructor_book(root: Path, out: Path, force: bool = False, launch_branch: str | None = None) -> Path:
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
    if launch_branch is not None:
        # The launch buttons (Colab, Binder, JupyterHub) open chapters/<page>.ipynb of repository.branch:
        # pointed at the branch `student-branch` writes, students get the student edition, not the solutions.
        if not re.fullmatch(r"[\w./-]+", launch_branch) or launch_branch.startswith(("-", "/")):
            raise CourseError(f"--launch-branch must be a branch name such as student, got {launch_branch!r}")
        repository = cfg.get("repository") or {}
        if not isinstance(repository, dict) or not repository.get("url"):
            raise CourseError(f"{root / '_config.yml'} has no repository.url for the launch buttons to open")
        cfg["repository"] = {**repository, "branch": launch_branch}
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


def _exercise_rows(cells: list[dict]) -> list[dict]:
    """Every exercise of a notebook's ``cells`` in order: label, title and its check cells' functions
    (``checks``; ``check`` is the first or "").  An exercise owns the check cells up to the next
    exercise; of several exercises in one markdown cell, only the last can own any."""
    rows: list[dict] = []
    for cell in cells:
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            for m in re.finditer(r"\{exercise\}\s*([^\n]*)\n:label:\s*([\w:.-]+)", src):
                rows.append({"label": m.group(2), "title": m.group(1).strip(), "checks": []})
        elif cell["cell_type"] == "code" and rows and _is_check(src):
            rows[-1]["checks"].append(re.match(r"lmcore\.exercises\.(check_\w+)", src.strip()).group(1))
    return [{**r, "check": r["checks"][0] if r["checks"] else ""} for r in rows]


def _git(repo: Path, *args: str, env: dict | None = None, stdin: bytes | None = None) -> str:
    import os
    import subprocess

    done = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True,
                          env={**os.environ, **(env or {})})
    if done.returncode:
        raise CourseError(f"git {' '.join(args[:2])} failed in {repo}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode().strip()


def write_student_branch(repo: Path, branch: str = "student", ref: str = "HEAD", chapters: str = "chapters") -> str:
    """Commit the student edition of ``ref`` onto the local branch ``branch`` of the git repository
    ``repo`` and return the new commit's id.  The commit has ``ref``'s tree with every notebook in
    ``chapters/`` replaced by its student edition (same layout, so the book's launch buttons work
    with ``repository.branch: <branch>``); its parent is the branch's previous commit, so pushing it
    is a fast-forward.  Git plumbing in a temporary index: neither the working tree, the index nor
    the current branch changes.  CourseError if ``branch`` is checked out or ``repo`` is no repository."""
    import tempfile

    repo = Path(repo)
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*", branch) or branch.startswith("-"):
        raise CourseError(f"--branch must be a branch name such as student, got {branch!r}")
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    target = f"refs/heads/{branch}"
    if _git(repo, "rev-parse", "--symbolic-full-name", "HEAD") == target:
        raise CourseError(f"{branch} is the branch checked out in {repo}: switch to another one first")
    try:
        parent = _git(repo, "rev-parse", "--verify", "--quiet", target)
    except CourseError:
        parent = ""
    names = [n for n in _git(repo, "ls-tree", "--name-only", commit, f"{chapters}/").split("\n") if n.endswith(".ipynb")]
    if not names:
        raise CourseError(f"{ref} has no notebook in {chapters}/")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", commit, env=env)
        for name in names:
            student = make_student_notebook(json.loads(_git(repo, "cat-file", "blob", f"{commit}:{name}")))
            for cell in student["cells"]:        # the chapter's own "Open in Colab" link opens this branch too
                if cell["cell_type"] == "markdown":
                    cell["source"] = _COLAB_LINK.sub(rf"\g<1>{branch}\g<2>", _source(cell))
            blob = (json.dumps(student, indent=1, ensure_ascii=False) + "\n").encode()
            sha = _git(repo, "hash-object", "-w", "--stdin", stdin=blob)
            _git(repo, "update-index", "--cacheinfo", f"100644,{sha},{name}", env=env)
        tree = _git(repo, "write-tree", env=env)
    if parent and _git(repo, "rev-parse", f"{parent}^{{tree}}") == tree:
        return parent                      # nothing changed since the last run
    who = {k: v for k, v in {"GIT_AUTHOR_NAME": "lmcore course tool", "GIT_AUTHOR_EMAIL": "course@localhost",
                             "GIT_COMMITTER_NAME": "lmcore course tool", "GIT_COMMITTER_EMAIL": "course@localhost"}.items()
           if not _configured(repo, k)}
    new = _git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m",
               f"Student edition of {commit[:12]}\n\nWritten by `python tools/course.py student-branch`; do not edit.",
               env=who)
    _git(repo, "update-ref", "-m", "course.py student-branch", target, new, parent or "0" * 40)
    return new


def _configured(repo: Path, variable: str) -> bool:
    """Whether git already knows the identity part ``variable`` stands for (env or config)."""
    import os

    if os.environ.get(variable):
        return True
    key = "user.name" if variable.endswith("NAME") else "user.email"
    try:
        return bool(_git(repo, "config", key))
    except CourseError:
        return False


def list_exercises(chapters: Path) -> list[dict[str, str]]:
    """Every exercise of every chapter: chapter, label, title and check (its first check function,
    or "" for a prose answer)."""
    return [{"chapter": path.stem, "label": r["label"], "title": r["title"], "check": r["check"]}
            for path in _chapter_paths(chapters) for r in _exercise_rows(_read_notebook(path)["cells"])]


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
    c.add_argument("--launch-branch", default=None, help="point the launch buttons at this branch (e.g. student)")
    b = sub.add_parser("student-branch", help="commit the student edition onto a local branch (default: student)")
    b.add_argument("--branch", default="student", help="the branch to write (never the one checked out)")
    b.add_argument("--ref", default="HEAD", help="the commit whose chapters it is made from")
    b.add_argument("--repo", default=Path("."), type=_path, help="the repository")
    e = sub.add_parser("exercises", help="list every chapter's exercises and their checks (markdown table)")
    e.add_argument("--chapters", default=Path("chapters"), type=_path)
    g = sub.add_parser("grade", help="run each submission in a fresh kernel and call every check itself "
                                     "(tools/grading.py); report per student and exercise")
    g.add_argument("submissions", type=_path, help="a folder of submissions (<student>.ipynb or <student>/), or one notebook")
    g.add_argument("--chapter", type=_path, help="the source chapter they answer (default for one notebook: "
                                                 "chapters/<its name>)")
    g.add_argument("--out", type=_path, help="write the report as OUT.csv and OUT.json")
    g.add_argument("--timeout", type=int, default=600, help="seconds each cell and each check may run (default 600)")
    g.add_argument("--force", action="store_true", help="overwrite an existing report")
    x = sub.add_parser("export-nbgrader", help="write a chapter as an nbgrader source assignment (tools/nbgrader_export.py)")
    x.add_argument("--chapter", required=True, type=_path, help="the source chapter")
    x.add_argument("--out", required=True, type=_path, help="the nbgrader course folder (writes source/<chapter>/)")
    x.add_argument("--points", type=int, default=1, help="points per check and per prose answer (default 1)")
    x.add_argument("--force", action="store_true", help="overwrite the chapter's notebook there")
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
        out = write_instructor_book(args.root, args.out, force=args.force, launch_branch=args.launch_branch)
        print(f"wrote {out}; build it with: jupyter-book build {args.out}")
        return 0
    if args.command == "student-branch":
        commit = write_student_branch(args.repo, args.branch, args.ref)
        print(f"{args.branch} is at {commit}; publish it with: git push origin {args.branch}")
        return 0
    # tools/grading.py and tools/nbgrader_export.py import this module as `course`: run as a script, it is
    # `__main__`, and a second copy would raise a CourseError class that main() does not catch.
    sys.modules.setdefault("course", sys.modules[__name__])
    if args.command == "export-nbgrader":
        from nbgrader_export import export_nbgrader
        path = export_nbgrader(args.chapter, args.out, force=args.force, points=args.points)
        print(f"wrote {path}; then: cd {args.out} && nbgrader generate_assignment {args.chapter.stem}")
        return 0
    from grading import grade, report_paths, summarize
    rows = grade(args.submissions, args.chapter, args.out, force=args.force, timeout=args.timeout)
    for r in rows:
        print(f"{r['student']}  {r['exercise']}  {r['check'] or '(prose)'}  {r['status'].upper()}"
              + (f": {r['hint']}" if r["hint"] and r["status"] != "manual" else ""))
    for t in summarize(rows):
        print(f"{t['student']}: {t['points']}/{t['max_points']} points (pass {t['pass']}, fail {t['fail']}, unsolved "
              f"{t['unsolved']}, error {t['error']}; {t['manual']} prose answer(s) to grade by hand)")
    if args.out:
        print("wrote {} and {}".format(*report_paths(args.out)))
    return 0   # grading ran; the scores are in the report, not in the exit status


if __name__ == "__main__":
    sys.exit(main())
