"""The student edition: solutions become stubs, solution text disappears, the rest is unchanged.
The command line never writes into the sources, never deletes what it did not create, and answers
bad arguments with a message and exit status 2 (tested on a small fake book, never the real chapters)."""
from __future__ import annotations

import json

import nbformat
import pytest
from _book import ROOT, chapter_notebooks
from course import MARKER, main, make_student_notebook, write_student_edition
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


# --- Output folders and bad arguments: nothing lost, nothing silent (tools/course.py main) ---------

def _fake_book(base):
    """A small book under ``base/book`` (two chapters, one with a solution), in the layout of the real one."""
    book = base / "book"
    (book / "chapters").mkdir(parents=True)
    (book / "_assets").mkdir()
    (book / "_config.yml").write_text("title: Toy\nexecute:\n  execute_notebooks: force\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (book / "references.bib").write_text("")
    (book / "intro.md").write_text("# Intro\n")
    (book / "_assets" / "style.css").write_text("p {}\n")
    (book / "chapters" / "01_toy.ipynb").write_text(json.dumps(_toy_chapter()))
    (book / "chapters" / "02_two.ipynb").write_text(json.dumps(_nb([nbformat.v4.new_code_cell("y = 1")])))
    return book


def _files(base):
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def _main(argv):
    """main(argv)'s exit status; argparse's own errors exit through SystemExit."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture
def book(tmp_path, monkeypatch):
    book = _fake_book(tmp_path)
    monkeypatch.chdir(book)   # the defaults --chapters chapters and --root . name the fake book
    return book


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
@pytest.mark.parametrize("argv", [["student", "--out", "chapters"], ["student", "--out", "."],
                                  ["student", "--out", "chapters/sub"], ["student", "--out", ".."],
                                  ["instructor-book", "--out", "."], ["instructor-book", "--out", "chapters"],
                                  ["instructor-book", "--out", "_assets"], ["instructor-book", "--out", ".."],
                                  ["instructor-book", "--out", "chapters/../chapters/x/.."]],
                         ids=lambda a: " ".join(a))
def test_out_into_the_sources_is_refused_even_with_force(book, tmp_path, capsys, argv, force):
    before = _files(tmp_path)
    assert _main(argv + force) == 2
    assert "refused" in capsys.readouterr().err
    assert _files(tmp_path) == before, "the sources changed (or something was written)"


@pytest.mark.parametrize("command", ["student", "instructor-book"])
def test_a_foreign_non_empty_folder_needs_force_and_then_loses_nothing(book, tmp_path, capsys, command):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the instructor's own notes\n")
    before = _files(tmp_path)
    assert _main([command, "--out", mine]) == 2
    assert "--force" in capsys.readouterr().err and _files(tmp_path) == before
    assert _main([command, "--out", mine, "--force"]) == 0
    assert (mine / "notes.txt").read_text() == "the instructor's own notes\n"
    assert (mine / "01_toy.ipynb").exists() or (mine / "chapters" / "01_toy.ipynb").exists()
    assert not (mine / MARKER).exists(), "a marker would let a later run empty the folder without --force"
    assert _main([command, "--out", mine, "--force"]) == 0 and (mine / "notes.txt").exists()


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
@pytest.mark.parametrize("command", ["student", "instructor-book"])
def test_a_git_repository_is_refused(book, tmp_path, capsys, command, force):
    repo = tmp_path / "clone"
    (repo / ".git").mkdir(parents=True)
    (repo / "README.md").write_text("another repository\n")
    before = _files(tmp_path)
    assert _main([command, "--out", repo, *force]) == 2
    assert "git repository" in capsys.readouterr().err and _files(tmp_path) == before


def test_each_command_rewrites_its_own_output_and_nothing_else(book, tmp_path, capsys):
    """What `make student` and `make book-instructor` do, run twice each, the latter inside the book."""
    for out in (tmp_path / "student", book / "_build" / "instructor_src"):
        command = "student" if out.name == "student" else "instructor-book"
        assert _main([command, "--out", out]) == 0
        (out / "chapters").mkdir(exist_ok=True)
        (out / "chapters" / "99_stale.ipynb").write_text("{}")
        assert _main([command, "--out", out]) == 0, capsys.readouterr().err
        assert (out / MARKER).read_text().split("\n")[0] == command
    assert (tmp_path / "student" / "chapters" / "99_stale.ipynb").exists(), "the student edition deletes nothing"
    assert not (book / "_build" / "instructor_src" / "chapters" / "99_stale.ipynb").exists(), "its own output is rebuilt"
    assert sorted(p.name for p in (book / "_build" / "instructor_src" / "chapters").iterdir()) == ["01_toy.ipynb", "02_two.ipynb"]
    student = tmp_path / "student"
    before = _files(student)
    assert _main(["instructor-book", "--out", student]) == 2, "another command's output is not its own"
    assert _files(student) == before


def test_instructor_book_bad_input_keeps_the_previous_output(book, tmp_path, capsys):
    out = tmp_path / "ib"
    assert _main(["instructor-book", "--out", out]) == 0
    before = _files(out)
    (book / "chapters" / "03_broken.ipynb").write_text("{oops")
    assert _main(["instructor-book", "--out", out]) == 2
    assert "03_broken.ipynb is not a notebook" in capsys.readouterr().err
    assert _files(out) == before, "every chapter is read before the old output is removed"


@pytest.mark.parametrize("argv, message", [
    (["student", "--out", "../new", "--chapter", "99"], "no chapter matches '99'"),
    (["student", "--out", "../new", "--chapter", ""], "not be empty"),
    (["student", "--out", "../new", "--chapters", "missing"], "chapters folder missing does not exist"),
    (["student", "--out", "../new", "--chapters", "_assets"], "holds no .ipynb"),
    (["student", "--out", "../new", "--chapters", "intro.md"], "is not a folder"),
    (["student", "--out", "../new", "--chapters", "../broken"], "01_bad.ipynb is not a notebook"),
    (["student", "--out", ""], "must be a path"),
    (["student", "--out", "intro.md"], "is a file"),
    (["student", "--out", "intro.md/sub"], "Not a directory"),
    (["exercises", "--chapters", "missing"], "chapters folder missing does not exist"),
    (["exercises", "--chapters", "_assets"], "holds no .ipynb"),
    (["exercises", "--chapters", "../broken"], "01_bad.ipynb is not a notebook"),
    (["instructor-book", "--root", "missing", "--out", "../ib"], "book folder missing does not exist"),
    (["instructor-book", "--root", "chapters", "--out", "../ib"], "has no _config.yml"),
    (["instructor-book", "--root", "../badyaml", "--out", "../ib"], "not valid YAML"),
    (["instructor-book", "--out", "_config.json"], "is a file"),
    (["grade", "missing.ipynb"], "no such notebook file"),
    (["grade", "chapters"], "is a folder"),
    (["grade", "intro.md"], "not JSON"),
    (["grade", "../broken/01_bad.ipynb"], "not JSON"),
    (["grade", "_config.json"], "expected a JSON object with nbformat 4"),
    (["grade", "../list.json"], "expected a JSON object"),
    (["grade", "../v3.ipynb"], "nbformat 4"),
    (["grade", "../nosource.ipynb"], "not a valid notebook"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_bad_arguments_exit_2_with_a_message_and_write_nothing(book, tmp_path, capsys, argv, message):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "01_bad.ipynb").write_text("{oops")
    (tmp_path / "badyaml").mkdir()
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        (tmp_path / "badyaml" / name).write_text("title: [unclosed\n")
    for name in ("_assets", "chapters"):
        (tmp_path / "badyaml" / name).mkdir()
    (book / "_config.json").write_text('{"title": "not a notebook"}')
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "v3.ipynb").write_text('{"worksheets": [], "nbformat": 3}')
    (tmp_path / "nosource.ipynb").write_text('{"cells": [{"cell_type": "code", "id": "a"}], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}')
    before = _files(tmp_path)
    assert _main(argv) == 2
    assert message in capsys.readouterr().err
    assert _files(tmp_path) == before
