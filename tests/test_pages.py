"""The pages a course needs (setup, notation, glossary), the book's cross-references, and the HTML
fixes of issue 18 item 7 (no duplicated thebe script, the book's CSS, sentences only the HTML shows)."""
from __future__ import annotations

import json
import re

import pytest
from _book import ROOT, chapter_notebooks, toc_files

PAGES = ["setup", "notation", "glossary"]
# Phrases that point at a chapter without naming its number, or at notes the reader does not have.
VAGUE = re.compile(r"\b(the (previous|next|last|preceding|following) chapter|the chapter on|(course|lecture) notes|"
                   r"the notes\b)", re.I)
# Sentences about the static HTML page, which make no sense in JupyterLab or Colab.
STATIC_ONLY = re.compile(r"(static page|no Python kernel runs|this static)", re.I)
HTML_ONLY = re.compile(r'<p class="lm-html-only" style="display:none">(.*?)</p>', re.S)
def _chapters():
    return [pytest.param(nb, id=nb.stem) for nb in chapter_notebooks()]


def _markdown(nb):
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"]


def slug(heading: str) -> str:
    """myst-parser's default heading slug (myst_heading_anchors): from the heading's text and inline
    code only (inline maths is left out), lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", re.sub(r"\$[^$]*\$", "", heading))
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def chapter_sections():
    """{notebook name: (chapter number, [slug of section 1, section 2, ...])}, numbered as the toc numbers them."""
    out = {}
    for number, nb in enumerate(chapter_notebooks(), 1):
        heads = [line[3:].strip() for _, text in _markdown(nb) for line in text.splitlines() if line.startswith("## ")]
        out[nb.name] = (number, [slug(h) for h in heads])
    return out


def test_slug_matches_myst():
    assert slug("Generating text, one token at a time, until `<EOS>`") == "generating-text-one-token-at-a-time-until-eos"
    assert slug("Cross-entropy = entropy + KL divergence") == "cross-entropy--entropy--kl-divergence"
    assert slug("Memorisation: training vs validation perplexity as $n$ grows") == \
        "memorisation-training-vs-validation-perplexity-as--grows"


def test_pages_exist_are_in_the_toc_and_linked_from_the_front_page():
    toc, intro = toc_files(), (ROOT / "intro.md").read_text(encoding="utf-8")
    for page in PAGES:
        assert (ROOT / f"{page}.md").is_file(), f"{page}.md is missing"
        assert page in toc, f"{page} is not in _toc.yml"
        assert f"]({page}.md)" in intro, f"intro.md does not link to {page}.md"


def test_setup_page_names_every_way_to_run_the_book():
    text = (ROOT / "setup.md").read_text(encoding="utf-8")
    for needle in ["Colab", "make lab", "environment.yml", "pip install", "make book", "LMCORE_DEVICE", "LMCORE_LOCAL_DATA"]:
        assert needle in text, f"setup.md does not mention {needle}"
    assert len(re.findall(r"^`[^`\n]+`$|^[^\n|#].*\n: ", text, re.M)) >= 6, "setup.md lists fewer than 6 common errors"


def runtime_rows():
    text = (ROOT / "setup.md").read_text(encoding="utf-8")
    table = text.split("<!-- runtimes:begin", 1)[1].split("<!-- runtimes:end -->", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()[3:] if line.startswith("|")]


def test_runtime_table_has_one_row_per_chapter_in_toc_order():
    rows = runtime_rows()
    titles = []
    for nb in chapter_notebooks():
        first = next(text for _, text in _markdown(nb))
        titles.append(first.splitlines()[0].lstrip("# ").strip())
    assert [r[0] for r in rows] == [f"{n}. {t}" for n, t in enumerate(titles, 1)], "setup.md's run-time rows"
    for n, row in enumerate(rows, 1):
        assert len(row) == 4, row
        for cell in row[1:3]:
            assert cell == "—" or re.fullmatch(r"\d+(\.\d+)?", cell), f"{row[0]}: {cell!r} is not a number or —"
        budget = 180 if n <= 5 else 240          # issue budgets: chapters 1-5 three minutes, 6-11 four
        if row[1] != "—":
            assert float(row[1]) <= budget, f"{row[0]}: over the {budget // 60}-minute budget"
            assert row[3], f"{row[0]}: say where it was measured"


@pytest.mark.parametrize("nb", _chapters())
def test_cross_references_are_numbered_links(nb):
    sections = chapter_sections()
    number = sections[nb.name][0]
    bad = []
    for i, text in _markdown(nb):
        for m in VAGUE.finditer(text):
            bad.append(f"cell {i}: {m.group(0)!r}: name the chapter as [Chapter N](NN_name.ipynb)")
        for m in re.finditer(r"\[Chapters? (\d+)\]\(([\w.-]+\.ipynb)(#[\w-]+)?\)", text):
            want = sections.get(m.group(2), (None,))[0]
            if int(m.group(1)) != want:
                bad.append(f"cell {i}: {m.group(0)} links to chapter {want}")
        for m in re.finditer(r"\[[Ss]ection (\d+)\.(\d+)\]\(([\w.-]*)#([\w-]+)\)", text):
            target = m.group(3) or nb.name
            n_target, slugs = sections.get(target, (None, []))
            s = int(m.group(2))
            if int(m.group(1)) != n_target or not 1 <= s <= len(slugs) or slugs[s - 1] != m.group(4):
                bad.append(f"cell {i}: {m.group(0)} is not that section's anchor")
        unlinked = re.sub(r"\[[Ss]ection \d+\.\d+\]\([^)]*\)", "", text)
        for m in re.finditer(r"\b[Ss]ection (\d+)\.(\d+)\b", unlinked):
            bad.append(f"cell {i}: 'section {m.group(1)}.{m.group(2)}' is not a link")
    assert number and not bad, f"{nb.name}:\n" + "\n".join(bad)


@pytest.mark.parametrize("nb", _chapters())
def test_static_page_sentences_are_shown_only_in_the_html(nb):
    """A sentence about the static HTML page sits in <p class="lm-html-only" style="display:none">:
    hidden in JupyterLab (whose sanitiser keeps the inline style but strips `hidden`), shown by the
    book's CSS (_assets/lmbook.css)."""
    bad = []
    for i, text in _markdown(nb):
        for m in STATIC_ONLY.finditer(HTML_ONLY.sub("", text)):
            bad.append(f"cell {i}: {text[max(0, m.start() - 40):m.end() + 40]!r}")
    assert not bad, f"{nb.name}: wrap these in <p class=\"lm-html-only\" style=\"display:none\">...</p>:\n" + "\n".join(bad)


def test_css_shows_html_only_sentences_and_scrolls_wide_content():
    css = (ROOT / "_assets" / "lmbook.css").read_text(encoding="utf-8")
    assert re.search(r"\.lm-html-only\s*\{\s*display:\s*block\s*!important", css)
    assert css.count("overflow-x: auto") >= 2


@pytest.mark.book
def test_built_pages_have_no_duplicate_inline_scripts_and_load_the_css(built_book):
    """Each page declares every inline `const` once (a duplicated `const THEBE_JS_URL` threw a
    SyntaxError in every page's console) and links the book's stylesheet."""
    for f in toc_files():
        html = (built_book / f"{f}.html").read_text(encoding="utf-8")
        consts = re.findall(r"<script>\s*const (\w+)", html)
        assert len(consts) == len(set(consts)), f"{f}.html declares {consts} more than once"
        assert "lmbook.css" in html, f"{f}.html does not load _assets/lmbook.css"
    assert (built_book / "_static" / "lmbook.css").is_file()


@pytest.mark.book
def test_built_section_links_resolve(built_book):
    """Every in-page link of chapters 1-3 points at an id on the page (the section links)."""
    for nb in chapter_notebooks()[:3]:
        html = (built_book / "chapters" / f"{nb.stem}.html").read_text(encoding="utf-8")
        ids = set(re.findall(r'\bid="([^"]+)"', html))
        targets = re.findall(r'<a class="reference internal" href="#([^"]+)"', html)
        assert targets, nb.stem
        missing = sorted(set(targets) - ids)
        assert not missing, f"{nb.stem}: links to missing ids {missing}"


CUT_OFF = """() => [...document.querySelectorAll('article.bd-article *')]
  .filter(e => !e.tagName.startsWith('MJX') && e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1
               && !['auto', 'scroll', 'visible'].includes(getComputedStyle(e).overflowX))
  .map(e => e.tagName + '.' + String(e.className).slice(0, 40) + ': ' + e.textContent.slice(0, 40))"""


@pytest.mark.book
@pytest.mark.browser
def test_pages_cut_nothing_off_and_log_no_errors_of_ours(built_book):
    """In an 800-px-wide window no element of any page cuts its content off (wide code, outputs and
    tables scroll; inline formulas were clipped by the theme's `span.math {overflow: hidden}`), no
    page logs the duplicated-thebe SyntaxError, and an `lm-html-only` sentence is displayed."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for f in toc_files():
            page = browser.new_page(viewport={"width": 800, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((built_book / f"{f}.html").as_uri())
            page.wait_for_timeout(800)
            cut = page.evaluate(CUT_OFF)
            assert not cut, f"{f}.html cuts off {len(cut)} elements: {cut[:5]}"
            assert not [e for e in errors if "THEBE" in e or "already been declared" in e], f"{f}.html: {errors}"
            page.close()
        page = browser.new_page()
        page.goto((built_book / "intro.html").as_uri())
        shown = page.evaluate("""() => { const p = document.createElement('p'); p.className = 'lm-html-only';
            p.style.display = 'none'; p.textContent = 'x'; document.querySelector('article').appendChild(p);
            return getComputedStyle(p).display; }""")
        assert shown == "block", 'the book\'s CSS must show <p class="lm-html-only" style="display:none"> sentences'
        browser.close()
