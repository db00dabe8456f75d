"""Open the built pages in headless Chromium: maths typeset, images loaded, no missing local asset.

Screenshots land in _build/screenshots/ for a human to look at.
"""
from __future__ import annotations

import shutil

import pytest
from _book import toc_files

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, path):
    """Load a page, wait for MathJax, and collect failed requests and console errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    failed, errors = [], []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=20000)
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    page.wait_for_timeout(500)
    return page, failed, errors


@pytest.mark.parametrize("doc", toc_files())
def test_page_renders(built_book, browser, doc):
    path = built_book / f"{doc}.html"
    page, failed, errors = open_page(browser, path)
    local_failed = [u for u in failed if u.startswith("file:")]
    assert not local_failed, f"{doc}: missing local assets {local_failed}"
    missing = [e for e in errors if "ERR_FILE_NOT_FOUND" in e]
    assert not missing, f"{doc}: console reports missing files {missing}"
    n_math = page.evaluate("document.querySelectorAll('.math').length")
    n_untypeset = page.evaluate(
        "Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container')).length")
    assert n_untypeset == 0, f"{doc}: {n_untypeset} of {n_math} formulas were not typeset by MathJax"
    leaked = page.evaluate(r"""() => {
        const root = document.querySelector('article') || document.body;
        const clone = root.cloneNode(true);
        clone.querySelectorAll('pre, code, mjx-container, .cell_output, script, style').forEach(e => e.remove());
        return (clone.innerText.match(/\\(frac|sum|log|mid|text|mathbf|theta|alpha|beta|left|right)\b|\$\$/g) || []);
    }""")
    assert not leaked, f"{doc}: raw TeX leaked into the page text (a formula broken by markdown?): {leaked[:5]}"
    search = page.evaluate("Array.from(document.querySelectorAll('.search-button-field')).filter(e => e.offsetParent).length")
    assert search == 1, f"{doc}: {search} search fields are visible at 1280 px; the page should show one"
    broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"{doc}: images failed to load: {broken}"
    shots = built_book.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / f"{doc.replace('/', '_')}.png"), full_page=True)
    page.close()


def test_chapter_one_has_typeset_maths_and_plots(built_book, browser):
    page, _, _ = open_page(browser, built_book / "chapters" / "01_language_models.html")
    assert page.evaluate("document.querySelectorAll('mjx-container').length") >= 10
    assert page.evaluate("document.querySelectorAll('.cell_output img').length") >= 2
    page.close()
