"""The book builds offline with warnings as errors; every page exists, has no traceback, loads no
remote script; the chapters all follow the book's conventions."""
from __future__ import annotations

import json
import re

import pytest

from _book import ROOT, chapter_notebooks, repository_url, toc_files

SETUP_CELL = """# Setup: on Colab, install lmcore from the book's repository; everywhere, pick the device and seed.
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "lmcore @ git+{url}"])
import lmcore
device = lmcore.setup(seed=0)"""

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
    assert _first_code_cell(nb) == SETUP_CELL.format(url=repository_url()), (
        f"{nb.name}: the first code cell must be the standard setup cell (see tests/test_book.py)")


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_has_three_exercises_and_checked_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    md = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert md.count("{exercise}") >= 3, f"{nb.name} has fewer than three exercises"
    checked = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked, f"{nb.name} has no `# NBVAL_CHECK_OUTPUT` cell: nothing would catch a changed number"
    for c in checked:
        assert c.get("outputs"), f"{nb.name}: a checked cell has no stored output to compare against"


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
        remote = [m.group(0) for m in REMOTE.finditer(html)]
        assert not remote, f"{page.name} loads remote assets: {remote}"
