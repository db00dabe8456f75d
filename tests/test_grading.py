"""The grader (tools/grading.py) cannot be fooled, and the nbgrader export (tools/nbgrader_export.py) works.

Issue 18: `course grade` scraped `PASS name` lines from a notebook's output, so a notebook holding only
`print("PASS top_p")` scored full marks.  These tests grade a folder of submissions against a small
synthetic chapter (two code exercises with real lmcore checks and one prose exercise), in one run of
the command line; the nbgrader test runs nbgrader itself on chapter 2 in its own environment.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from course import main
from grading import chapter_exercises, parse_check_call, write_report
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader_export import export_nbgrader

import lmcore

ROOT = Path(__file__).resolve().parents[1]
NBGRADER = ROOT / "_build" / "nbgrader" / "bin"

TOP_P = '''def top_p_filter(probs, p):
    """The nucleus of probs, renormalised."""
    ### BEGIN SOLUTION
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = (sorted_probs.cumsum(-1) - sorted_probs) < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = torch.where(keep, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)
    ### END SOLUTION'''
# No BEGIN/END SOLUTION lines: the export must take the whole cell as the solution.
BIGRAM = '''def bigram_probs(ids, vocab_size, eps):
    counts = np.zeros((vocab_size, vocab_size))
    np.add.at(counts, (np.asarray(ids[:-1]), np.asarray(ids[1:])), 1)
    return (counts + eps) / (counts.sum(axis=1, keepdims=True) + eps * vocab_size)'''
WRONG_BIGRAM = BIGRAM.replace("+ eps * vocab_size", "+ eps")     # forgets the vocabulary size
STUB = 'def top_p_filter(probs, p):\n    raise NotImplementedError("Exercise ex-t-1: not solved yet")'
CHECKS = ["lmcore.exercises.check_top_p(top_p_filter)", "lmcore.exercises.check_bigram_probs(bigram_probs)"]


def _solution(src: str):
    cell = new_code_cell(src)
    cell.metadata["tags"] = ["solution"]
    return cell


def chapter(top_p: str = TOP_P, bigram: str = BIGRAM, checks: bool = True):
    """The synthetic source chapter (``checks=False``: a student who deleted the check cells)."""
    cells = [new_markdown_cell("# A small chapter"), new_code_cell("import lmcore\nimport numpy as np\nimport torch"),
             new_markdown_cell("## Exercises\n\n```{exercise} Top-p\n:label: ex-t-1\n\nWrite `top_p_filter(probs, p)`.\n```"),
             new_markdown_cell("```{solution-start} ex-t-1\n:class: dropdown\n```"), _solution(top_p),
             new_markdown_cell("```{solution-end}\n```"), new_code_cell(CHECKS[0]),
             new_markdown_cell("```{exercise} Bigrams\n:label: ex-t-2\n\nWrite `bigram_probs(ids, vocab_size, eps)`.\n```"),
             _solution(bigram), new_code_cell(CHECKS[1]),
             new_markdown_cell("```{exercise} Why renormalise?\n:label: ex-t-3\n\nExplain.\n```\n\n"
                               "```{solution} ex-t-3\n:class: dropdown\n\nThe kept mass is below 1.\n```")]
    if not checks:
        cells = [c for c in cells if c.source not in CHECKS]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


FAKE_PASS = new_notebook(cells=[new_code_cell('print("PASS top_p")\nprint("PASS bigram_probs")')])
# Replaces the checks, run_check and the built-ins the grader might call by name, then prints PASS.
MONKEYPATCH = new_notebook(cells=[new_code_cell('''import lmcore, lmcore.exercises as ex
from lmcore.exercises import _check, ch02, ch08
class Passed:
    status, hint, name = "pass", "", "top_p"
    def __bool__(self): return True
fake = lambda *a, **k: Passed()
ex.check_top_p = ex.check_bigram_probs = ch08.check_top_p = ch02.check_bigram_probs = _check.run_check = fake
ex.CheckResult = Passed
getattr = lambda *a: fake
def top_p_filter(probs, p): return probs
print("PASS top_p")''')])


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One run of `course.py grade` over every kind of submission; its exit status, rows and summary."""
    tmp = tmp_path_factory.mktemp("grading")
    nbformat.write(chapter(), tmp / "chapter.ipynb")
    subs = tmp / "subs"
    (subs / "alice").mkdir(parents=True)
    nbformat.write(chapter(checks=False), subs / "alice" / "chapter.ipynb")   # correct, check cells deleted
    nbformat.write(FAKE_PASS, subs / "bob.ipynb")
    nbformat.write(chapter(top_p=STUB), subs / "carol.ipynb")                 # ex-t-1 not attempted
    nbformat.write(MONKEYPATCH, subs / "dave.ipynb")
    nbformat.write(chapter(bigram=WRONG_BIGRAM), subs / "erin.ipynb")
    (subs / "frank.ipynb").write_text("{not a notebook")
    # mallory ships an lmcore package of her own next to her notebook, whose checks always pass.
    (subs / "mallory" / "lmcore" / "exercises").mkdir(parents=True)
    (subs / "mallory" / "lmcore" / "__init__.py").write_text("")
    (subs / "mallory" / "lmcore" / "exercises" / "__init__.py").write_text(
        "class CheckResult:\n    status, hint = 'pass', ''\ncheck_top_p = check_bigram_probs = lambda *a, **k: CheckResult()\n")
    nbformat.write(new_notebook(cells=[new_code_cell("import lmcore\nbigram_probs = top_p_filter = print")]),
                   subs / "mallory" / "chapter.ipynb")
    out = tmp / "report"
    status = main(["grade", str(subs), "--chapter", str(tmp / "chapter.ipynb"), "--out", str(out)])
    report = json.loads((tmp / "report.json").read_text())
    with open(tmp / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    rows = {(r["student"], r["exercise"]): r for r in report["rows"]}
    summary = {s["student"]: s for s in report["summary"]}
    return {"status": status, "rows": rows, "summary": summary, "table": table, "report": report, "tmp": tmp}


def test_the_fake_pass_notebook_scores_zero(graded):
    assert graded["summary"]["bob"]["points"] == 0
    assert graded["rows"]["bob", "ex-t-1"]["status"] == "unsolved"
    assert "not defined: top_p_filter" in graded["rows"]["bob", "ex-t-1"]["hint"]


def test_monkeypatched_checks_and_builtins_are_not_believed(graded):
    assert graded["summary"]["dave"]["points"] == 0
    assert graded["rows"]["dave", "ex-t-1"]["status"] == "fail"        # the real check judged the identity
    assert graded["rows"]["dave", "ex-t-2"]["status"] == "unsolved"


def test_a_correct_solution_scores_full_marks_even_without_its_check_cells(graded):
    s = graded["summary"]["alice"]
    assert (s["points"], s["max_points"], s["pass"], s["manual"]) == (2, 2, 2, 1)
    assert graded["rows"]["alice", "ex-t-3"]["status"] == "manual"


def test_a_wrong_answer_fails_with_its_hint(graded):
    namespace = {"np": np}
    exec(WRONG_BIGRAM, namespace)
    expected = lmcore.exercises.check_bigram_probs(namespace["bigram_probs"], quiet=True)
    row = graded["rows"]["erin", "ex-t-2"]
    assert (row["status"], row["points"]) == ("fail", 0)
    assert expected.status == "fail" and row["hint"] == expected.hint
    assert graded["rows"]["erin", "ex-t-1"]["status"] == "pass"


def test_an_unsolved_exercise_is_reported_unsolved(graded):
    row = graded["rows"]["carol", "ex-t-1"]
    assert (row["status"], row["points"]) == ("unsolved", 0)
    assert "NotImplementedError" in row["hint"]
    assert graded["rows"]["carol", "ex-t-2"]["status"] == "pass"


def test_a_submission_with_its_own_lmcore_is_not_believed(graded):
    assert graded["summary"]["mallory"]["points"] == 0
    assert graded["rows"]["mallory", "ex-t-1"]["status"] == "error"
    assert "not from the course's package" in graded["rows"]["mallory", "ex-t-1"]["hint"]


def test_an_unreadable_submission_is_reported_and_the_others_are_graded(graded):
    assert graded["status"] == 0, "grading ran: exit 0 although students failed"
    row = graded["rows"]["frank", "ex-t-1"]
    assert row["status"] == "error" and "not a valid notebook" in row["hint"]


def test_the_csv_and_json_reports_hold_the_same_rows(graded):
    fields = ["student", "chapter", "exercise", "title", "check", "status", "hint", "points", "max_points"]
    assert list(graded["table"][0]) == fields
    assert graded["table"] == [{k: str(r[k]) for k in fields} for r in graded["report"]["rows"]]
    assert sorted(graded["summary"]) == ["alice", "bob", "carol", "dave", "erin", "frank", "mallory"]
    assert all(s["max_points"] == 2 for s in graded["summary"].values())


def test_an_existing_report_is_refused_without_force(graded, capsys):
    tmp = graded["tmp"]
    before = (tmp / "report.csv").read_text()
    assert main(["grade", str(tmp / "subs"), "--chapter", str(tmp / "chapter.ipynb"), "--out", str(tmp / "report")]) == 2
    assert "exists; choose another name, or pass --force" in capsys.readouterr().err
    assert (tmp / "report.csv").read_text() == before
    row = {"student": "x", "chapter": "c", "exercise": "e", "title": "t", "check": "", "status": "manual",
           "hint": "", "points": 0, "max_points": 0}
    write_report([row], tmp / "report", force=True)
    assert json.loads((tmp / "report.json").read_text())["rows"] == [row]
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".report")) == [], "no temporary file left"


@pytest.mark.parametrize("args, message", [
    (["missing"], "missing: no such notebook file or folder of submissions"),
    (["{subs}"], "is a folder of submissions: name the chapter"),
    (["{subs}", "--chapter", "{notjson}"], "is not a notebook: it is not JSON"),
    (["{subs}", "--chapter", "{plain}"], "has no exercise"),
    (["{empty}", "--chapter", "{chapter}"], "holds no submission"),
    (["{notjson}", "--chapter", "{chapter}"], "is not a notebook"),
    (["{subs}", "--chapter", "{chapter}", "--timeout", "0"], "--timeout must be"),
    (["{subs}", "--chapter", "{chapter}", "--out", "{tmp}/nowhere/report"], "does not exist"),
], ids=["missing folder", "no chapter", "chapter not json", "chapter without exercises", "empty folder",
        "submission not a notebook", "timeout", "report folder"])
def test_bad_input_exits_2_with_a_clear_message_before_any_kernel(tmp_path, capsys, args, message):
    nbformat.write(chapter(), tmp_path / "chapter.ipynb")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# no exercises")]), tmp_path / "plain.ipynb")
    (tmp_path / "notjson.ipynb").write_text("{oops")
    (tmp_path / "subs").mkdir()
    (tmp_path / "empty").mkdir()
    nbformat.write(FAKE_PASS, tmp_path / "subs" / "bob.ipynb")
    names = {k: tmp_path / f"{k}.ipynb" for k in ("chapter", "plain", "notjson")}
    names.update(subs=tmp_path / "subs", empty=tmp_path / "empty", tmp=tmp_path)
    assert main(["grade", *[a.format(**names) for a in args]]) == 2
    assert message in capsys.readouterr().err


def test_check_cells_are_parsed_from_the_source_chapter():
    assert parse_check_call("lmcore.exercises.check_top_p(top_p_filter)") == ("check_top_p", "top_p_filter")
    assert parse_check_call("lmcore.exercises.check_verifier_kl(kl, lp0, passed, 0.05, quiet=False)\n") == \
        ("check_verifier_kl", "kl, lp0, passed, 0.05")
    for src in ['print("PASS top_p")', "check_top_p(f)", "lmcore.exercises.check_top_p(f); x = 1", "x = (", ""]:
        assert parse_check_call(src) is None
    ch08 = {e["label"]: e["checks"] for e in chapter_exercises(json.loads((ROOT / "chapters/08_sampling.ipynb").read_text()))}
    # The prose exercises ex-08-3 and ex-08-4 have no check of their own (the next exercise's is not theirs).
    assert ch08 == {"ex-08-1": [("check_top_p", "top_p_filter")], "ex-08-2": [("check_min_p", "min_p_filter")],
                    "ex-08-3": [], "ex-08-4": [], "ex-08-5": [("check_penalty_window", "window_repeats")]}
    ch02 = {e["label"]: [c for c, _ in e["checks"]]
            for e in chapter_exercises(json.loads((ROOT / "chapters/02_ngrams.ipynb").read_text()))}
    assert ch02 == {"ex-02-1": ["check_bigram_probs"], "ex-02-2": ["check_jelinek_mercer", "check_best_lambda"],
                    "ex-02-3": []}


def _nbgrader_cells(nb) -> dict[str, dict]:
    return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"] if "nbgrader" in c["metadata"]}


def test_the_export_marks_answers_tests_and_prose_for_nbgrader(tmp_path, capsys):
    nbformat.write(chapter(), tmp_path / "chapter.ipynb")
    path = export_nbgrader(tmp_path / "chapter.ipynb", tmp_path / "course")
    assert path == tmp_path / "course" / "source" / "chapter" / "chapter.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = _nbgrader_cells(nb)
    assert sorted(cells) == ["ex-t-1-check_top_p", "ex-t-1-solution", "ex-t-2-check_bigram_probs",
                             "ex-t-2-solution", "ex-t-3-answer"]
    assert cells["ex-t-1-solution"]["source"] == TOP_P, "a solution with its markers is kept as it is"
    assert cells["ex-t-2-solution"]["source"] == f"### BEGIN SOLUTION\n{BIGRAM}\n### END SOLUTION"
    test = cells["ex-t-1-check_top_p"]
    assert test["metadata"]["nbgrader"] == {"grade": True, "grade_id": "ex-t-1-check_top_p", "locked": True,
                                                 "points": 1, "schema_version": 3, "solution": False, "task": False}
    visible, hidden = test["source"].split("### BEGIN HIDDEN TESTS")
    assert visible.strip() == CHECKS[0]
    assert "check_top_p(top_p_filter, quiet=True)" in hidden and "assert _result" in hidden
    answer = cells["ex-t-3-answer"]
    assert (answer["cell_type"], answer["source"], answer["metadata"]["nbgrader"]["solution"]) == \
        ("markdown", "The kept mass is below 1.", True)
    text = "".join(c["source"] for c in nb["cells"] if c["cell_type"] == "markdown" and "nbgrader" not in c["metadata"])
    assert "{solution" not in text and "The kept mass" not in text, "the solution directives leave the markdown"
    assert (tmp_path / "course" / "nbgrader_config.py").is_file()
    assert main(["export-nbgrader", "--chapter", str(tmp_path / "chapter.ipynb"), "--out", str(tmp_path / "course")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


@pytest.mark.skipif(not (NBGRADER / "nbgrader").exists(),
                    reason="needs nbgrader's environment: make _build/nbgrader/.installed (about 40 s)")
def test_nbgrader_autogrades_the_export_of_chapter_2(tmp_path):
    """nbgrader itself (its own environment) generates the assignment and autogrades a solved and an
    unsolved submission; the kernel is this environment's Python (a kernelspec on JUPYTER_PATH)."""
    course = tmp_path / "course"
    export_nbgrader(ROOT / "chapters" / "02_ngrams.ipynb", course)
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"], "display_name": "lmcore", "language": "python"}))
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter"), "PATH": f"{NBGRADER}{os.pathsep}{os.environ['PATH']}",
           "LMCORE_PROGRESS": "0"}

    def nbgrader(*args: str) -> str:
        proc = subprocess.run([str(NBGRADER / "nbgrader"), *args], cwd=course, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    nbgrader("generate_assignment", "02_ngrams")
    release = nbformat.read(course / "release" / "02_ngrams" / "02_ngrams.ipynb", as_version=4)
    source = _nbgrader_cells(nbformat.read(course / "source" / "02_ngrams" / "02_ngrams.ipynb", as_version=4))
    assert "### BEGIN HIDDEN TESTS" not in json.dumps(release), "students do not see the hidden tests"
    solved = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in solved.cells:      # a student who wrote the model solutions into the answer cells
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = source[meta["grade_id"]]["source"]
    for student, nb in (("solved", solved), ("unsolved", release)):
        (course / "submitted" / student / "02_ngrams").mkdir(parents=True)
        nbformat.write(nb, course / "submitted" / student / "02_ngrams" / "02_ngrams.ipynb")
    nbgrader("autograde", "02_ngrams")
    script = ("import json\nfrom nbgrader.api import Gradebook\nwith Gradebook('sqlite:///gradebook.db') as gb:\n"
              "    print(json.dumps({s: {g.name: g.auto_score for g in gb.find_submission_notebook("
              "'02_ngrams', '02_ngrams', s).grades} for s in ('solved', 'unsolved')}))")
    proc = subprocess.run([str(NBGRADER / "python"), "-c", script], cwd=course, env=env, capture_output=True, text=True)
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    checks = ["ex-02-1-check_bigram_probs", "ex-02-2-check_jelinek_mercer", "ex-02-2-check_best_lambda"]
    assert {k: scores["solved"][k] for k in checks} == dict.fromkeys(checks, 1.0)
    assert scores["solved"]["ex-02-3-answer"] is None, "the prose answer waits for manual grading"
    assert scores["unsolved"] == dict.fromkeys([*checks, "ex-02-3-answer"], 0.0)
