"""The sampling chapter's static explorers move in headless Chromium: a slider step changes the bars.

On the built page no kernel runs; every plotly figure from ``lmcore.widgets.static_explorer`` holds
precomputed slider steps. We click the slider rail at its left end (the first step), then check that
the slider moved, the data of the bars changed, the drawn bars (SVG paths) changed and the title
now names the new value. The saved state of the live ipywidgets explorer must render too.
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
          label: gd.layout.sliders[0].steps[0].label};
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
    page.errors = errors
    yield page
    page.close()


def test_plotly_is_served_offline_and_loads_without_errors(page):
    sources = page.evaluate("Array.from(document.scripts).map(s => s.src).filter(s => s.includes('plotly'))")
    assert sources and all(s.startswith("file:") and s.endswith("_static/vendor/plotly.min.js") for s in sources)
    assert not page.errors, page.errors


@pytest.mark.parametrize("i", [0, 1, 2])
def test_slider_step_changes_the_bars(page, i):
    before = page.evaluate(STATE, i)
    assert before["active"] != 0
    rail = page.locator(".plotly-graph-div").nth(i).locator(".slider-rail-rect")
    rail.scroll_into_view_if_needed()
    box = rail.bounding_box()
    page.mouse.click(box["x"] + 3, box["y"] + box["height"] / 2)      # the left end: the first step
    page.wait_for_function(f"() => document.querySelectorAll('.plotly-graph-div')[{i}].layout.sliders[0].active === 0",
                           timeout=10000)
    page.wait_for_timeout(300)
    after = page.evaluate(STATE, i)
    assert after["y"] != before["y"]                       # the figure's data changed ...
    assert after["paths"] != before["paths"]               # ... and so did the drawn bars
    assert f"= {after['label']}:" in after["title"] and after["title"] != before["title"]
    assert not page.errors, page.errors


def test_live_widget_state_renders(page):
    page.wait_for_function("() => document.querySelectorAll('.widget-html-content').length >= 3", timeout=20000)
    text = page.evaluate("Array.from(document.querySelectorAll('.widget-html-content')).map(e => e.innerText).join(' ')")
    assert "kept" in text and "entropy" in text and "sampled continuation" in text
    assert page.locator(".widget-slider").count() >= 4
