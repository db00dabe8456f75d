"""The sampling chapter's static explorers move in headless Chromium: a slider step changes the bars.

On the built page no kernel runs; every plotly figure from ``lmcore.widgets.static_explorer`` holds
precomputed slider steps. We click the slider rail at its left end (the first step), then check that
the slider moved, the data of the bars changed, the drawn bars (SVG paths) changed and the title
now names the new value.
"""
from __future__ import annotations

import pytest
from test_browser import browser  # noqa: F401  (the shared headless-Chromium fixture)

pytestmark = pytest.mark.browser
PAGE = "chapters/08_sampling.html"

STATE = """i => {
  const gd = document.querySelectorAll('.plotly-graph-div')[i];
  const bars = gd.querySelectorAll('.barlayer .trace')[1];
  return {y: Array.from(gd.data[1].y), active: gd.layout.sliders[0].active, title: gd.layout.title.text,
          paths: Array.from(bars.querySelectorAll('path')).map(p => p.getAttribute('d')),
          label: gd.layout.sliders[0].steps[gd.layout.sliders[0].active].label};
}"""


@pytest.fixture(scope="module")
def page(built_book, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((built_book / PAGE).as_uri(), wait_until="load")
    page.wait_for_function("() => window.Plotly && document.querySelectorAll('.plotly-graph-div .main-svg').length >= 3",
                           timeout=30000)
    # Known noise unrelated to the figures is ignored; anything else is a failure: sphinx-thebe
    # declares a constant twice, the theme has no saved mode in a fresh profile, and the ipywidgets
    # embed manager typesets widget labels with MathJax 2's API (`MathJax.Hub.Queue`), which the
    # book's MathJax 3 lacks (the labels are plain text, so nothing is lost on the page).
    noise = ("THEBE_JS_URL", "invalid theme mode", "reading 'Queue'")
    page.errors = errors
    page.real_errors = lambda: [e for e in errors if not any(n in e for n in noise)]
    yield page
    page.close()


def test_plotly_is_served_offline_and_loads_without_errors(page):
    sources = page.evaluate("Array.from(document.scripts).map(s => s.src).filter(s => s.includes('plotly'))")
    assert sources and all(s.startswith("file:") and s.endswith("_static/vendor/plotly.min.js") for s in sources)
    assert not page.real_errors(), page.real_errors()


@pytest.mark.parametrize("i", [0, 1, 2])
def test_slider_step_changes_the_bars(page, i):
    before = page.evaluate(STATE, i)
    n_steps = page.evaluate(f"document.querySelectorAll('.plotly-graph-div')[{i}].layout.sliders[0].steps.length")
    target = 0 if before["active"] != 0 else n_steps - 1     # click the end the slider is not at
    rail = page.locator(".plotly-graph-div").nth(i).locator(".slider-rail-rect")
    rail.scroll_into_view_if_needed()
    box = rail.bounding_box()
    x = box["x"] + 3 if target == 0 else box["x"] + box["width"] - 3
    page.mouse.click(x, box["y"] + box["height"] / 2)
    page.wait_for_function(f"() => document.querySelectorAll('.plotly-graph-div')[{i}].layout.sliders[0].active === {target}",
                           timeout=10000)
    page.wait_for_timeout(300)
    after = page.evaluate(STATE, i)
    assert after["y"] != before["y"]                       # the figure's data changed ...
    assert after["paths"] != before["paths"]               # ... and so did the drawn bars
    assert f"= {after['label']}:" in after["title"] and after["title"] != before["title"]
    assert not page.real_errors(), page.real_errors()

