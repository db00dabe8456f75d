"""Course tools for instructors: the student edition (made by tools/student_edition.py), the book without
solutions, the student branch, and grading (tools/grading.py).

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

What the student edition of a chapter holds is said in tools/student_edition.py.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

# The notebook transformation (tools/student_edition.py); this module reads and writes the files.
from student_edition import _exercise_rows, _source, make_public_notebook, make_student_notebook

__all__ = ["CourseError", "make_student_notebook", "write_student_edition", "make_public_notebook", "write_instructor_book",
           "list_exercises", "main", "MARKER"]

_COLAB_LINK = re.compile(r"(colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/)[\w./-]+?(/chapters/)")
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
