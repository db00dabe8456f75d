"""The book builds offline with warnings as errors; every page exists, has no traceback, loads no
remote script; the chapters all follow the book's conventions."""
from __future__ import annotations

import json
import re

import pytest
import tomllib
from _book import ROOT, chapter_notebooks, repository_url, toc_files

# The install pins the package to the book's version, tagged v<version> in the repository (set once,
# in pyproject.toml), so a notebook and the code it runs stay in step. tf32=False: the chapters
# compare floats at 1e-6, which TensorFloat-32's 10-bit products would break on a GPU.
SETUP_CELL = """# Setup: on Colab, install lmcore at this book's version; everywhere, pick the device and seed.
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "lmcore @ git+{url}@v{version}"])
import lmcore
device = lmcore.setup(seed=0, tf32=False)   # full float32 on a GPU too: the checks compare at 1e-6"""

REMOTE = re.compile(r"""<(script|link)\b[^>]*\b(src|href)=["'](https?:)?//""", re.I)


def _first_code_cell(path):
    nb = json.loads(path.read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def test_toc_names_existing_sources():
    for f in toc_files():
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f"{f} is in _toc.yml but missing"


def test_every_chapter_in_toc():
    listed = {p.resolve() for p in chapter_notebooks()}
    on_disk = {p.resolve() for p in (ROOT / "chapters").glob("*.ipynb")}
    assert on_disk == listed, f"chapters not in _toc.yml: {sorted(map(str, on_disk - listed))}"


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_first_cell_installs_from_the_configured_repository(nb):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _first_code_cell(nb) == SETUP_CELL.format(url=repository_url(), version=version), (
        f"{nb.name}: the first code cell must be the standard setup cell (see tests/test_book.py), "
        f"installing the version pyproject.toml sets (v{version})")


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_has_three_exercises_and_checked_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    md = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert md.count("{exercise}") >= 3, f"{nb.name} has fewer than three exercises"
    checked = [c for c in cells if c["cell_type"] == "code" and "nbval-check-output" in _tags(c)]
    assert checked, f"{nb.name} has no cell tagged `nbval-check-output`: nothing would catch a changed number"
    for c in checked:
        assert c.get("outputs"), f"{nb.name}: a checked cell has no stored output to compare against"


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_no_nbval_marker_in_the_source_readers_see(nb):
    cells = json.loads(nb.read_text())["cells"]
    marked = [i for i, c in enumerate(cells) if re.search(r"#\s*NBVAL_", "".join(c["source"]))]
    assert not marked, f"{nb.name}: cells {marked} carry an nbval marker comment; use the cell tag instead"


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_claim_cells_are_tagged_hidden_and_follow_prose(nb):
    """Every `lmcore.claim` call sits in a cell tagged `claim` and `remove-cell` (hidden from the HTML,
    visible in Lab), that cell does nothing else, and each chapter asserts at least one claim."""
    cells = json.loads(nb.read_text())["cells"]
    claims = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "lmcore.claim(" in "".join(c["source"])]
    assert claims, f"{nb.name} asserts no claim of its prose (lmcore.claim)"
    for i in claims:
        tags = _tags(cells[i])
        assert "claim" in tags and "remove-cell" in tags, f"{nb.name} cell {i}: a claim cell needs tags claim + remove-cell"
        assert "nbval-check-output" not in tags, f"{nb.name} cell {i}: a claim cell's output is not an exact check"
    for i, c in enumerate(cells):
        if "claim" in _tags(c):
            assert i in claims, f"{nb.name} cell {i} is tagged claim but calls no lmcore.claim"


def test_readme_names_the_repository_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert repository_url() in readme


@pytest.mark.book
def test_every_page_built_without_tracebacks_or_remote_scripts(built_book):
    for f in toc_files():
        page = built_book / f"{f}.html"
        assert page.exists(), f"{page} was not built"
        html = page.read_text(encoding="utf-8")
        assert "Traceback (most recent call last)" not in html, f"{page.name} shows a traceback"
        assert 'class="output traceback' not in html and "ansi-red-fg\">---------" not in html, \
            f"{page.name} shows an error output"
        assert "claim holds:" not in html and "lmcore.claim(" not in html, f"{page.name} shows a claim cell"
        remote = [m.group(0) for m in REMOTE.finditer(html)]
        assert not remote, f"{page.name} loads remote assets: {remote}"


def _solution_texts(nb_path):
    """Distinctive lines of every solution in a chapter: code cells tagged `solution` and the
    bodies of prose `{solution}` blocks."""
    cells = json.loads(nb_path.read_text())["cells"]
    elsewhere = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"
                        and "solution" not in c.get("metadata", {}).get("tags", []))
    texts = []
    for c in cells:
        src = "".join(c["source"])
        if c["cell_type"] == "code" and "solution" in c.get("metadata", {}).get("tags", []):
            texts += [line.strip() for line in src.splitlines() if len(line.strip()) > 25]
        elif c["cell_type"] == "markdown" and "{solution}" in src:
            body = src.split("{solution}", 1)[1].split("```", 1)[0]
            texts += [line.strip() for line in body.splitlines()[1:]
                      if len(line.strip()) > 25 and not line.strip().startswith(":") and "$" not in line]
    return [t for t in texts if t not in elsewhere]   # a line a visible cell also shows proves nothing


@pytest.mark.book
def test_instructor_build_hides_every_solution(built_book, tmp_path):
    import html as html_lib
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "instructor_src"
    subprocess.run([sys.executable, str(ROOT / "tools" / "course.py"), "instructor-book", "--out", str(src)], cwd=ROOT, check=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(src), "-W", "-n", "--keep-going"], cwd=src, capture_output=True,
                          text=True, env=os.environ.copy())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    instructor_html = src / "_build" / "html"

    def page_text(html_root, nb):
        page = html_root / "chapters" / f"{nb.stem}.html"
        return page, html_lib.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))

    for nb in chapter_notebooks():
        _, public = page_text(built_book, nb)
        lines = _solution_texts(nb)
        assert "Solution to" in public and any(line in public for line in lines), \
            f"{nb.stem}: the normal build should show solutions (otherwise this test proves nothing)"
        page, text = page_text(instructor_html, nb)
        assert "Solution to" not in text, f"{page.name}: a solution heading is still there"
        for line in lines:
            assert line not in text, f"{page.name} still shows solution text: {line!r}"


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_links_to_colab(nb):
    cells = json.loads(nb.read_text())["cells"]
    title = "".join(next(c for c in cells if c["cell_type"] == "markdown")["source"])
    repo = repository_url().removeprefix("https://github.com/")
    assert f"https://colab.research.google.com/github/{repo}/blob/main/chapters/{nb.name}" in title


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_exercise_code_never_redefines_a_function_of_the_chapter(nb):
    """A student who solves an exercise and then re-runs earlier cells must not find them broken: no
    code cell from the first exercise on (stubs and solutions) may define a function that a cell
    before the exercises defines (ex-05-2 once redefined the chapter's layer_norm with a required eps)."""
    import ast

    cells = json.loads(nb.read_text())["cells"]
    first = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                  and "{exercise}" in "".join(c["source"])), len(cells))

    def defs(cell):
        if cell["cell_type"] != "code":
            return set()
        lines = "".join(cell["source"]).split("\n")
        tree = ast.parse("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!"))))
        return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}

    chapter = set().union(*(defs(c) for c in cells[:first]))
    clashes = {i: sorted(defs(c) & chapter) for i, c in enumerate(cells[first:], first) if defs(c) & chapter}
    assert not clashes, f"exercise cells redefine the chapter's own functions (cell: names): {clashes}"
