"""The student edition: solutions become stubs, solution text disappears, the rest is unchanged.
The command line never writes into the sources, never deletes what it did not create, and answers
bad arguments with a message and exit status 2 (tested on a small fake book, never the real chapters)."""
from __future__ import annotations

import json

import nbformat
import pytest
from _book import ROOT, chapter_notebooks
from course import MARKER, main, make_student_notebook, write_student_branch, write_student_edition
from nbclient import NotebookClient
from student_edition import stub_source


def _nb(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


def _toy_chapter():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    return _nb([
        md("# Toy\n\n[Open in Colab](https://colab.research.google.com/github/x/y/blob/main/chapters/01_toy.ipynb)"),
        code("x = 2\nprint(x)", outputs=[nbformat.v4.new_output("stream", text="2\n")]),
        md("```{exercise} Square\n:label: ex-toy-1\n\nWrite `square`.\n```"),
        md("```{solution-start} ex-toy-1\n:class: dropdown\n```"),
        code('def square(v):\n    """v * v."""\n    ### BEGIN SOLUTION\n    return v * v\n    ### END SOLUTION\n\n'
             "### BEGIN SOLUTION\nsquares = [square(i) for i in range(3)]\n### END SOLUTION",
             metadata={"tags": ["solution"]}),
        md("Inside the gate: HIDDEN PROSE"),
        code('lmcore.claim("HIDDEN CLAIM", squares[2], lo=4, hi=4)', metadata={"tags": ["claim", "remove-cell"]}),
        md("```{solution-end}\n```"),
        code("assert square(3) == 9\nprint('after the stub')"),
        code('lmcore.claim("squares end in 4", squares[-1], lo=4, hi=4)', metadata={"tags": ["claim", "remove-cell"]}),
        md("```{exercise} Why\n:label: ex-toy-2\n\nExplain.\n```\n\n```{solution} ex-toy-2\n:class: dropdown\n\n"
           "SECRET ANSWER\n```\n\n```{exercise} How\n:label: ex-toy-3\n\nSay how.\n```\n\nAfter."),
        code("print('the end', x)"),
    ])


def _cells(nb, kind=None, tag=None):
    return [c for c in nb["cells"] if (kind is None or c["cell_type"] == kind)
            and (tag is None or tag in c.get("metadata", {}).get("tags", []))]


def test_student_edition_replaces_solutions_and_keeps_the_rest():
    nb = _toy_chapter()
    student = make_student_notebook(nb)
    text = json.dumps(student)
    for secret in ("SECRET ANSWER", "return v * v", "squares = ", "HIDDEN PROSE", "HIDDEN CLAIM", "squares end in 4",
                   "solution-start", "solution-end", "{solution}", "BEGIN SOLUTION", "END SOLUTION"):
        assert secret not in text, secret
    (stub,) = _cells(student, tag="exercise")
    assert "".join(stub["source"]) == ('def square(v):\n    """v * v."""\n'
                                       '    raise NotImplementedError("Exercise ex-toy-1: not solved yet")\n\n'
                                       "# Exercise ex-toy-1: your code here")
    assert all(c.get("outputs", []) == [] for c in _cells(student, "code"))
    assert "".join(student["cells"][0]["source"]) == "".join(nb["cells"][0]["source"])
    assert "Explain." in text and "After." in text and "Say how." in text
    assert "### BEGIN SOLUTION\n    return v * v" in "".join(nb["cells"][4]["source"]), "the input must not change"


def test_prose_exercises_get_an_answer_cell_right_after_them():
    student = make_student_notebook(_toy_chapter())
    sources = ["".join(c["source"]) for c in student["cells"]]
    answers = _cells(student, "markdown", "answer")
    # ex-toy-1 has no check cell here, so it gets an answer cell too, after its stub
    assert [c["metadata"]["exercise"] for c in answers] == ["ex-toy-1", "ex-toy-2", "ex-toy-3"]
    assert all("".join(c["source"]) == "**Your answer:** ..." for c in answers)
    why = next(i for i, s in enumerate(sources) if ":label: ex-toy-2" in s)
    how = next(i for i, s in enumerate(sources) if ":label: ex-toy-3" in s)
    stub = next(i for i, c in enumerate(student["cells"]) if "exercise" in c["metadata"].get("tags", []))
    assert student["cells"][stub + 1] is answers[0]
    assert student["cells"][why + 1] is answers[1] and student["cells"][how + 1] is answers[2]
    assert ":label: ex-toy-3" not in sources[why], "the cell holding two exercises is split at the answer"
    assert len({c["id"] for c in student["cells"]}) == len(student["cells"]), "cell ids stay unique"
    nbformat.validate(nbformat.reads(json.dumps(student), as_version=4))


def test_stub_source_keeps_defs_and_replaces_each_region():
    src = ('def f(a, b=1):\n    """Contract."""\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\n'
           "results = {}\n### BEGIN SOLUTION\nfor k in range(3):\n    results[k] = f(k)\n### END SOLUTION")
    assert stub_source(src, "ex-1") == ('def f(a, b=1):\n    """Contract."""\n'
                                        '    raise NotImplementedError("Exercise ex-1: not solved yet")\n'
                                        "results = {}\n# Exercise ex-1: your code here")
    assert stub_source("x = 1", "ex-2") == "# Exercise ex-2: your code here", "a cell without regions is all solution"
    for bad in ("### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION", "### BEGIN SOLUTION\n### BEGIN SOLUTION"):
        with pytest.raises(ValueError, match="Exercise ex-3"):
            stub_source(bad, "ex-3")


def test_a_cell_that_uses_a_solution_is_guarded_and_a_claim_about_it_dropped():
    student = make_student_notebook(_toy_chapter())
    sources = ["".join(c["source"]) for c in _cells(student, "code")]
    guarded = next(s for s in sources if "square(3)" in s)
    assert guarded.startswith("try:") and "except (NotImplementedError, NameError)" in guarded
    assert "print('the end', x)" in sources, "a cell that does not use a solution is unchanged"
    assert not _cells(student, tag="claim")


def test_student_edition_runs_to_the_end_with_run_all(tmp_path):
    """Run All, as a student does: the check says NOT SOLVED YET and the chapter goes on to its end."""
    nb = _toy_chapter()
    nb["cells"].insert(9, nbformat.v4.new_code_cell("lmcore.exercises.check_perplexity(square)"))
    nb["cells"].insert(1, nbformat.v4.new_code_cell("import lmcore"))
    student = nbformat.reads(json.dumps(make_student_notebook(nb)), as_version=4)
    NotebookClient(student, timeout=120, kernel_name="python3").execute()   # raises on any cell error
    outputs = {c.source: c.outputs for c in student.cells if c.cell_type == "code"}
    check = outputs["lmcore.exercises.check_perplexity(square)"]
    assert [o.output_type for o in check] == ["stream"] and check[0].text.startswith("NOT SOLVED YET perplexity: ")
    assert outputs["print('the end', x)"][0].text == "the end 2\n"
    assert "skipped until the exercise above is solved" in "".join(o.text for c in student.cells if "square(3)" in c.source
                                                                   for o in c.outputs)


def test_bad_chapter_name(tmp_path):
    with pytest.raises(ValueError, match="no chapter matches"):
        write_student_edition(ROOT / "chapters", tmp_path, chapter="99_nope")


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.stem)
def test_every_chapter_student_edition_has_no_solution_and_same_prefix(nb_path, tmp_path):
    """The cells before the first stub are exactly the chapter's (which nbval executes)."""
    out = write_student_edition(ROOT / "chapters", tmp_path, chapter=nb_path.stem)[0]
    original = json.loads(nb_path.read_text())
    student = json.loads(out.read_text())
    assert "{solution" not in json.dumps(student), "solution directives left in the student edition"
    originals = [c for c in original["cells"] if c["cell_type"] == "code"]
    stubs = _cells(student, "code", "exercise")
    assert len(stubs) == len(_cells(original, "code", "solution"))
    codes = _cells(student, "code")
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


# --- Publishing the student edition on a branch (tools/course.py student-branch) ---------------------

def _git(repo, *args):
    import subprocess
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A tiny repository in the book's layout: one chapter with a solution, committed on main."""
    repo = tmp_path / "repo"
    (repo / "chapters").mkdir(parents=True)
    (repo / "chapters" / "01_toy.ipynb").write_text(json.dumps(_toy_chapter(), indent=1) + "\n")
    (repo / "README.md").write_text("# Toy\n")
    _git(repo, "init", "--quiet", "--initial-branch=main")
    for key, value in (("user.name", "Test"), ("user.email", "test@example.com")):
        _git(repo, "config", key, value)
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "toy book")
    return repo


def _state(repo):
    """What the student branch must never touch: HEAD, the current branch, the index and the working tree."""
    return (_git(repo, "rev-parse", "HEAD"), _git(repo, "branch", "--show-current"), _git(repo, "status", "--porcelain"),
            _git(repo, "ls-files", "--stage"), (repo / "chapters" / "01_toy.ipynb").read_bytes())


def test_student_branch_commits_the_student_edition_without_touching_the_checkout(repo, capsys):
    (repo / "notes.txt").write_text("uncommitted work\n")      # an untracked file stays as it is
    before = _state(repo)
    assert main(["student-branch", "--repo", str(repo)]) == 0
    assert "git push origin student" in capsys.readouterr().out
    assert _state(repo) == before
    assert _git(repo, "ls-tree", "-r", "--name-only", "student").split("\n") == ["README.md", "chapters/01_toy.ipynb"]
    assert _git(repo, "show", "student:README.md") == "# Toy"
    chapter = json.loads(_git(repo, "show", "student:chapters/01_toy.ipynb"))
    source = json.loads((repo / "chapters" / "01_toy.ipynb").read_text())
    assert "return v * v" not in json.dumps(chapter) and "SECRET ANSWER" not in json.dumps(chapter)
    title = "".join(chapter["cells"][0]["source"])
    assert title == "# Toy\n\n[Open in Colab](https://colab.research.google.com/github/x/y/blob/student/chapters/01_toy.ipynb)"
    edition = json.loads(json.dumps(make_student_notebook(source)))
    chapter["cells"][0]["source"] = edition["cells"][0]["source"]     # the only change besides the edition
    assert chapter == edition


def test_student_branch_grows_by_fast_forward_and_skips_unchanged_runs(repo):
    first = write_student_branch(repo)
    assert write_student_branch(repo) == first, "nothing changed: no new commit"
    (repo / "README.md").write_text("# Toy, second edition\n")
    _git(repo, "commit", "--quiet", "-am", "edit")
    second = write_student_branch(repo)
    assert second != first and _git(repo, "rev-parse", f"{second}^") == first
    assert _git(repo, "show", "student:README.md") == "# Toy, second edition"


def test_student_branch_refuses_the_checked_out_branch_and_bad_input(repo, tmp_path, capsys):
    _git(repo, "checkout", "--quiet", "-b", "student")
    assert main(["student-branch", "--repo", str(repo)]) == 2
    assert "checked out" in capsys.readouterr().err
    assert _main(["student-branch", "--repo", repo, "--branch=-x"]) == 2
    assert main(["student-branch", "--repo", str(tmp_path / "nowhere")]) == 2
    assert "failed" in capsys.readouterr().err


def test_instructor_book_can_point_its_launch_buttons_at_the_student_branch(book, tmp_path):
    import yaml
    (book / "_config.yml").write_text("title: Toy\nrepository:\n  url: https://github.com/x/y\n  branch: main\n"
                                      "execute:\n  execute_notebooks: force\n")
    assert _main(["instructor-book", "--out", tmp_path / "ib", "--launch-branch", "student"]) == 0
    cfg = yaml.safe_load((tmp_path / "ib" / "_config.yml").read_text())
    assert cfg["repository"] == {"url": "https://github.com/x/y", "branch": "student"}
    assert _main(["instructor-book", "--out", tmp_path / "ib2"]) == 0
    assert yaml.safe_load((tmp_path / "ib2" / "_config.yml").read_text())["repository"]["branch"] == "main"
    assert _main(["instructor-book", "--out", tmp_path / "ib3", "--launch-branch", "-rf"]) == 2


def test_only_cells_that_use_a_solution_are_guarded_not_those_sharing_a_local_name():
    """A solution's locals and parameters are not the chapter's names: a later function with a
    parameter of the same name, or a cell that rebinds a name first, runs unguarded."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = _nb([
        md("```{exercise} F\n:label: ex-f\n\nWrite `f`.\n```"),
        md("```{solution-start} ex-f\n```"),
        code('def f(probs):\n    """Contract."""\n    ### BEGIN SOLUTION\n    total = sum(probs)\n    return total\n'
             "    ### END SOLUTION\n\n### BEGIN SOLUTION\nresult = f([1, 2])\n### END SOLUTION",
             metadata={"tags": ["solution"]}),
        md("```{solution-end}\n```"),
        code("def g(probs):\n    total = [p for p in probs]\n    return total"),
        code("result = 3\nprint(result)"),
        code("print([f(x) for x in ([1],)])"),
    ])
    codes = ["".join(c["source"]) for c in _cells(make_student_notebook(nb), "code")]
    assert codes[1] == "def g(probs):\n    total = [p for p in probs]\n    return total"
    assert codes[2] == "result = 3\nprint(result)"
    assert codes[3].startswith("try:  # this cell uses your solution"), "it calls the stub f"
