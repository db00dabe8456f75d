"""Chapter 8 in a real JupyterLab, driven by headless Chromium (issue 18, "JupyterLab").

A throwaway Lab server (tests/_lab.py: free port, temporary Jupyter folders, stopped by PID)
serves a copy of chapter 8 with its stored outputs and widget state removed, so whatever renders
was computed here. The checks: every exercise renders as a jupyterlab-myst box with no raw
directive text left; the chapter's own cells run, in order, up to the live explorer, whose
widget renders; and a slider step changes the distribution the explorer shows.

To stay cheap, the chapter runs only the cells the explorer needs (:func:`cells_needed` reads
which earlier cells define the names it uses): running every cell above it costs about three
minutes, which `make test` already spends on chapter 8 under nbval. Screenshots land in
_build/screenshots/ for a human to look at.
"""
from __future__ import annotations

import ast
import importlib.util
import re

import nbformat
import pytest
from _lab import isolated_env, jupyter_lab
from IPython.core.inputtransformer2 import TransformerManager
from test_browser import browser  # noqa: F401  (the shared headless-Chromium fixture)

CHAPTER = "08_sampling.ipynb"
PANEL = "window.jupyterapp.shell.currentWidget"
RUN_TIMEOUT_MS = 6 * 60 * 1000       # generous: a loaded two-core machine runs the cells slowly
LAB_SETTINGS = {
    # every cell in the DOM (Lab otherwise renders only the cells near the viewport)
    "@jupyterlab/notebook-extension": {"tracker.jupyterlab-settings": {"windowingMode": "none"}},
    "@jupyterlab/docmanager-extension": {"plugin.jupyterlab-settings": {"autosave": False}},
    "@jupyterlab/apputils-extension": {"notification.jupyterlab-settings": {"fetchNews": "false"}},
}


def _names(source: str) -> tuple[set[str], set[str]] | None:
    """The names a cell binds and the names it reads (anywhere, function bodies included), or None
    for a cell with IPython magics, whose code hides in strings (``%time x = f()``)."""
    python = TransformerManager().transform_cell(source)
    if "get_ipython()" in python:
        return None
    bound, read = set(), set()
    for node in ast.walk(ast.parse(python)):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound, read


def cells_needed(cells: list, target: int) -> list[int]:
    """Indices of the code cells to run, in order, for cell ``target`` to run: ``target``, the
    first code cell (the setup cell, which seeds), and every earlier code cell that binds a name
    ``target`` reads or a kept cell reads. Over-approximates (a name read inside a function counts);
    with a magic in any of these cells, every code cell up to ``target``."""
    code = [i for i, c in enumerate(cells) if c.cell_type == "code" and i <= target]
    names = [_names(cells[i].source) for i in code]
    if any(n is None for n in names):
        return code
    need, keep = names[-1][1], {target, code[0]}
    for i, (bound, read) in reversed(list(zip(code[:-1], names[:-1]))):
        if bound & need:
            keep.add(i)
            need |= read
    return sorted(keep)


def test_cells_needed_follows_the_names_back():
    cell = nbformat.v4.new_code_cell
    cells = [cell("import lmcore"), cell("import math\nx = 1"), nbformat.v4.new_markdown_cell("x = 2"),
             cell("def f():\n    return x"), cell("y = 3"), cell("z = f()"), cell("print(z)")]
    assert cells_needed(cells, 6) == [0, 1, 3, 5, 6]
    assert cells_needed(cells, 4) == [0, 4]
    cells[5] = cell("%time z = f()")            # a magic hides its code: run everything up to the target
    assert cells_needed(cells, 6) == [0, 1, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def lab(browser, root, tmp_path_factory):  # noqa: F811
    if importlib.util.find_spec("jupyterlab") is None:
        pytest.skip("JupyterLab is not installed (the dev extra has it)")
    tmp = tmp_path_factory.mktemp("lab")
    nb = nbformat.read(root / "chapters" / CHAPTER, as_version=4)
    nb.metadata.pop("widgets", None)                     # no saved widget state ...
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None      # ... and no stored outputs: all renders live
    (tmp / "root").mkdir()
    (tmp / "root" / CHAPTER).write_text(nbformat.writes(nb))
    with jupyter_lab(tmp / "root", tmp / "home", LAB_SETTINGS, isolated_env(tmp / "home")) as (url, token):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(f"{url}/lab/tree/{CHAPTER}?token={token}")
        page.wait_for_function(f"""() => {{ const p = window.jupyterapp && {PANEL};
            const k = p && p.sessionContext && p.sessionContext.session && p.sessionContext.session.kernel;
            return k && k.status === 'idle'; }}""", timeout=180_000)
        page.shots = root / "_build" / "screenshots"
        page.shots.mkdir(parents=True, exist_ok=True)
        page.cells = nb.cells
        yield page
        page.close()


@pytest.mark.browser
def test_exercises_render_as_boxes(lab):
    labels = [m for c in lab.cells if c.cell_type == "markdown"
              for m in re.findall(r"```\{exercise\}[^\n]*\n:label: (\S+)", c.source)]
    assert len(labels) >= 3
    n_markdown = sum(c.cell_type == "markdown" for c in lab.cells)
    # every markdown cell rendered, by jupyterlab-myst (.myst) or by Lab's own renderer
    lab.wait_for_function(f"""() => document.querySelectorAll(
        '.jp-MarkdownCell .myst, .jp-MarkdownCell .jp-RenderedMarkdown').length === {n_markdown}""", timeout=60_000)
    assert lab.locator(".jp-MarkdownCell .myst").count() == n_markdown, "is jupyterlab-myst installed and enabled?"
    for i, label in enumerate(labels, 1):
        box = lab.locator(f".jp-MarkdownCell aside.myst-exercise#{label}")
        assert box.count() == 1, f"exercise {label} is not a box"
        assert box.locator(".myst-exercise-title").inner_text().startswith(f"Exercise {i} (")
        assert box.locator(".myst-exercise-body").inner_text().strip()
    # innerText skips the hidden editor holding the source: only what a reader sees is searched
    shown = lab.evaluate("() => Array.from(document.querySelectorAll('.jp-MarkdownCell .myst')).map(e => e.innerText)")
    raw = [t[:200] for t in shown if ":label:" in t or "```{" in t or ":class:" in t]
    assert not raw, f"raw MyST directives are visible: {raw}"
    lab.locator(f"#{labels[0]}").scroll_into_view_if_needed()
    lab.screenshot(path=str(lab.shots / "lab-08-exercise.png"))



@pytest.mark.browser
def test_sentences_for_the_static_page_are_not_shown(lab):
    """<p class="lm-html-only" style="display:none"> (tests/test_pages.py) stays hidden in Lab."""
    sentences = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", m))[:60] for c in lab.cells if c.cell_type == "markdown"
                 for m in re.findall(r'<p class="lm-html-only"[^>]*>(.*?)</p>', c.source, re.S)]
    assert sentences, "chapter 8 has no static-page sentence any more: test another chapter"
    n_markdown = sum(c.cell_type == "markdown" for c in lab.cells)
    lab.wait_for_function(f"() => document.querySelectorAll('.jp-MarkdownCell .myst').length === {n_markdown}",
                          timeout=60_000)
    shown = re.sub(r"\s+", " ", lab.evaluate(
        "() => Array.from(document.querySelectorAll('.jp-MarkdownCell .myst')).map(e => e.innerText).join(' ')"))
    visible = [t for t in sentences if t in shown]
    assert not visible, f"JupyterLab shows sentences meant for the static page: {visible}"

@pytest.fixture(scope="module")
def explorer(lab):
    """The explorer's cell, after the chapter's cells it needs ran in Lab, in order."""
    target = next(i for i, c in enumerate(lab.cells) if c.cell_type == "code" and "SamplingExplorer(" in c.source)
    node = lab.locator(".jp-Notebook .jp-Cell").nth(target)
    assert node.locator(".widget-slider").count() == 0          # nothing rendered before the run
    for i in cells_needed(lab.cells, target):
        ok = lab.evaluate(f"""async ([i, ms]) => {{ {PANEL}.content.activeCellIndex = i;
            const run = window.jupyterapp.commands.execute('notebook:run-cell');
            return await Promise.race([run, new Promise(r => setTimeout(() => r('timeout'), ms))]); }}""",
                          [i, RUN_TIMEOUT_MS])
        assert ok is True, f"cell {i} of {CHAPTER} did not run ({ok}):\n{lab.cells[i].source[:300]}"
    node.locator(".widget-slider .noUi-handle").first.wait_for(timeout=60_000)
    return node


def _shown(node) -> dict:
    """What the explorer shows: its summary line and, per bar row, the token and its numbers."""
    return {"summary": node.locator(".widget-html-content").first.inner_text(),
            "rows": [r.inner_text().split("\t") for r in node.locator("tr[data-token]").all()],
            "kept": [r.get_attribute("data-kept") for r in node.locator("tr[data-token]").all()]}


@pytest.mark.browser
def test_chapter_runs_to_the_explorer(explorer, lab):
    labels = [e.inner_text() for e in explorer.locator(".widget-slider .widget-label").all()]
    assert labels == ["temperature", "top-k (0 = off)", "top-p (1 = off)", "min-p (0 = off)"]
    shown = _shown(explorer)
    assert shown["summary"].startswith("kept ") and "entropy" in shown["summary"]
    assert len(shown["rows"]) == 15 and set(shown["kept"]) == {"1"}     # no filter yet: all kept
    assert "sampled continuations (8)" in explorer.inner_text()
    explorer.scroll_into_view_if_needed()
    lab.screenshot(path=str(lab.shots / "lab-08-explorer.png"))
    assert not lab.errors, lab.errors


@pytest.mark.browser
def test_top_k_slider_step_changes_the_distribution(explorer, lab):
    before = _shown(explorer)
    slider = explorer.locator(".widget-slider").filter(has_text="top-k")
    slider.locator(".noUi-handle").focus()
    lab.keyboard.press("ArrowRight")                                   # top-k 0 (off) -> 1
    # the kernel sends the summary, then the bars: wait for the new bars (a removed token) to arrive
    explorer.locator('tr[data-kept="0"]').first.wait_for(timeout=120_000)
    after = _shown(explorer)
    assert after["summary"].startswith("kept 1 of "), after["summary"]
    assert slider.locator(".widget-readout").inner_text() == "1"
    assert after["rows"] != before["rows"]
    # top-1 keeps the most probable token with all the mass: the first row before (most probable)
    assert after["kept"] == ["1"] + ["0"] * (len(after["kept"]) - 1)
    assert after["rows"][0][0] == before["rows"][0][0] and after["rows"][0][-1].endswith("→ 1.000")
    assert all(r[-1].endswith("→ 0.000") for r in after["rows"][1:])
    lab.screenshot(path=str(lab.shots / "lab-08-explorer-top-k-1.png"))
    assert not lab.errors, lab.errors
