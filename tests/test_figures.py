"""Every figure of the book has a caption and alt text, and the diagrams are drawn by code.

A figure is either a code cell whose stored output holds an image (image/png or image/svg+xml), whose
caption and alt text live in the cell's metadata (`mystnb.figure.caption`, `mystnb.image.alt`), or a
MyST ``{figure}`` directive in a markdown cell (its `:alt:` option and its caption body).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from _book import ROOT, chapter_notebooks

IMAGE_MIMES = {"image/png", "image/svg+xml"}
FIGURE = re.compile(r"^(`{3,}|:{3,})\{figure\}[ \t]*(?P<src>\S*)[ \t]*\n(?P<body>.*?)^\1[ \t]*$", re.M | re.S)
MD_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)")
HTML_IMAGE = re.compile(r"<img\b[^>]*>", re.I)
DIAGRAMS_DIR = ROOT / "_assets" / "figures"

def _chapters():
    return [pytest.param(nb, id=nb.stem) for nb in chapter_notebooks()]


def _cells(nb):
    return json.loads(nb.read_text(encoding="utf-8"))["cells"]


def _src(cell):
    return "".join(cell["source"])


def figures(nb):
    """Every figure of a chapter: (cell index, kind, caption, alt text, image source or None)."""
    found = []
    for i, cell in enumerate(_cells(nb)):
        if cell["cell_type"] == "code":
            if any(set(out.get("data", {})) & IMAGE_MIMES for out in cell.get("outputs", [])):
                meta = cell["metadata"].get("mystnb", {})
                found.append((i, "image output", meta.get("figure", {}).get("caption", ""),
                              meta.get("image", {}).get("alt", ""), None))
        elif cell["cell_type"] == "markdown":
            text = _src(cell)
            for m in FIGURE.finditer(text):
                options = dict(re.findall(r"^:(\w+):[ \t]*(.*)$", m["body"], re.M))
                caption = "\n".join(line for line in m["body"].splitlines() if not line.startswith(":")).strip()
                found.append((i, "{figure}", caption, options.get("alt", ""), m["src"]))
            for m in MD_IMAGE.finditer(text):
                found.append((i, "![]()", "-", m["alt"], m["src"]))
            for tag in HTML_IMAGE.findall(text):
                alt = re.search(r"""\balt=["']([^"']*)""", tag)
                found.append((i, "<img>", "-", alt.group(1) if alt else "", None))
    return found


def test_the_figure_finder_sees_every_kind_of_figure(tmp_path):
    """The counter itself: a notebook with one figure of each kind, two of them without alt text."""
    png = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}, "metadata": {}}
    cells = [
        {"cell_type": "code", "metadata": {"mystnb": {"figure": {"caption": "c"}, "image": {"alt": "a"}}},
         "source": ["plt.plot()"], "outputs": [png], "execution_count": 1},
        {"cell_type": "code", "metadata": {}, "source": ["plt.plot()"], "outputs": [png], "execution_count": 2},
        {"cell_type": "code", "metadata": {}, "source": ["print(1)"], "outputs": [], "execution_count": 3},
        {"cell_type": "markdown", "metadata": {}, "source": [
            "```{figure} ../_assets/figures/x.svg\n:alt: the alt text\n:name: fig-x\n\nThe caption.\n```\n\n"
            "![](pic.png) and <img src='y.png'>"]},
    ]
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert figures(nb) == [(0, "image output", "c", "a", None), (1, "image output", "", "", None),
                           (3, "{figure}", "The caption.", "the alt text", "../_assets/figures/x.svg"),
                           (3, "![]()", "-", "", "pic.png"), (3, "<img>", "-", "", None)]


def test_every_chapter_is_checked():
    assert len(chapter_notebooks()) >= 11 and all(nb.exists() for nb in chapter_notebooks())


@pytest.mark.parametrize("nb", _chapters())
def test_every_figure_has_a_caption_and_alt_text(nb):
    bad = [f"cell {i} ({kind}): " + ", ".join(what for what, value in (("no caption", caption), ("no alt text", alt))
                                             if not value.strip())
           for i, kind, caption, alt, _ in figures(nb) if not caption.strip() or not alt.strip()]
    assert not bad, f"{nb.name}: figures without a caption or alt text (see tests/test_figures.py):\n" + "\n".join(bad)


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_alt_text_describes_the_figure(nb):
    """Alt text is a description, not a file name and not the caption repeated."""
    for i, _kind, caption, alt, _ in figures(nb):
        if alt:
            assert not re.fullmatch(r"[\w.-]+\.(png|svg|jpe?g)", alt.strip()), f"{nb.name} cell {i}: alt text is a file name"
            assert alt.strip() != caption.strip(), f"{nb.name} cell {i}: the alt text only repeats the caption"
            assert len(alt.split()) >= 8, f"{nb.name} cell {i}: alt text {alt!r} is too short to describe a figure"


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_figure_files_exist(nb):
    for i, kind, _, _, src in figures(nb):
        if src and kind == "{figure}":
            assert (nb.parent / src).is_file(), f"{nb.name} cell {i}: {src} does not exist"


def test_figure_names_are_unique_across_the_book():
    seen = {}
    for nb in chapter_notebooks():
        for i, cell in enumerate(_cells(nb)):
            names = [cell["metadata"].get("mystnb", {}).get("figure", {}).get("name")] if cell["cell_type"] == "code" else \
                re.findall(r"^:name:[ \t]*(\S+)", _src(cell), re.M)
            for name in filter(None, names):
                assert name not in seen, f"figure name {name} is used by {seen[name]} and {nb.stem} cell {i}"
                seen[name] = f"{nb.stem} cell {i}"


def _diagrams():
    sys.path.insert(0, str(ROOT / "tools"))
    import diagrams
    return diagrams


def test_diagrams_are_listed_with_title_alt_and_caption():
    d = _diagrams()
    on_disk = {p.name for p in DIAGRAMS_DIR.glob("*.svg")}
    assert on_disk == set(d.DIAGRAMS) == set(d.DRAW), "every SVG in _assets/figures is drawn by tools/diagrams.py"
    for name, info in d.DIAGRAMS.items():
        assert info["title"] and len(info["alt"].split()) >= 20 and len(info["caption"].split()) >= 15, name
        svg = (DIAGRAMS_DIR / name).read_text(encoding="utf-8")
        assert f"<dc:title>{info['title']}</dc:title>" in svg, f"{name}: the SVG carries its title for screen readers"


def test_diagrams_redraw_byte_identical(tmp_path):
    """The committed SVGs are what tools/diagrams.py draws (run it after changing it), and a rerun
    writes the same bytes."""
    import matplotlib

    committed = (DIAGRAMS_DIR / "generation_loop.svg").read_text(encoding="utf-8")
    made_by = re.search(r"Matplotlib v([\w.]+)", committed)
    if not made_by or made_by.group(1) != matplotlib.__version__:
        pytest.skip(f"the SVGs were drawn with matplotlib {made_by and made_by.group(1)}, this is {matplotlib.__version__}")
    for out in (tmp_path / "a", tmp_path / "b"):
        subprocess.run([sys.executable, str(ROOT / "tools" / "diagrams.py"), "--out", str(out)], check=True,
                       capture_output=True)
    for name in _diagrams().DIAGRAMS:
        first, second = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert first == second, f"{name}: two runs of tools/diagrams.py differ"
        assert first == (DIAGRAMS_DIR / name).read_bytes(), f"{name}: run `python tools/diagrams.py` and commit the SVG"


@pytest.mark.parametrize("name", ["generation_loop.svg", "mlp_lm.svg", "transformer_block.svg",
                                  "attention_matrices.svg"])
def test_every_diagram_is_shown_with_its_alt_text(name):
    alt = _diagrams().DIAGRAMS[name]["alt"]
    uses = [(nb.stem, fig_alt) for nb in chapter_notebooks() for _, kind, _, fig_alt, src in figures(nb)
            if kind == "{figure}" and src and src.endswith("/" + name)]
    assert uses, f"no chapter shows {name}"
    for stem, fig_alt in uses:
        assert fig_alt == alt, f"{stem} shows {name} with other alt text than tools/diagrams.py's DIAGRAMS"


@pytest.mark.book
@pytest.mark.parametrize("nb", _chapters())
def test_built_pages_give_every_image_alt_text_and_a_caption(built_book, nb):
    """In the HTML, no image has an empty or hashed-file-name alt text, and each sits in a captioned figure."""
    html = (built_book / "chapters" / f"{nb.stem}.html").read_text(encoding="utf-8")
    article = html.split('<article class="bd-article"', 1)[-1].split("</article>", 1)[0]
    images = HTML_IMAGE.findall(article)
    assert len(images) >= len(figures(nb)), f"{nb.stem}: fewer images on the page than figures in the notebook"
    for tag in images:
        alt = re.search(r'\balt="([^"]*)"', tag)
        assert alt and alt.group(1).strip(), f"{nb.stem}: an image without alt text: {tag[:160]}"
        assert not re.fullmatch(r"[0-9a-f]{16,}\.(png|svg|jpe?g)", alt.group(1)), f"{nb.stem}: hashed alt text {alt.group(1)}"
    assert article.count("<figcaption") >= len(figures(nb)), f"{nb.stem}: a figure on the page has no caption"
