"""The HTML book's in-browser explorer (_assets/explorer/explorer.js), in headless Chromium, offline.

Two layers:

* the JavaScript rules on fixed inputs, against lmcore: ``filterProbs`` keeps the same tokens as
  ``lmcore.decoding.filter_probs`` with probabilities within 1e-6 (temperature, top-k, top-p, min-p,
  both filter orders), ``drawIndex`` is ``sample_next``'s inverse-CDF rule, and ``isValidToy``
  agrees with ``ToyLanguage.is_valid``;
* the built chapter 8 page (and chapter 1's), opened from disk with every non-``file://`` request
  blocked: the explorer runs the exported model with onnxruntime-web, a typed prompt and a moved
  slider show the distribution Python computes for them (within 1e-4), the saved-state ipywidgets
  explorer is gone, the page logs no errors, and a corrupt model file is refused.
"""
from __future__ import annotations

import base64
import gzip
import itertools
import json
import math
import random

import numpy as np
import pytest
import torch
from _book import ROOT
from test_browser import browser  # noqa: F401  (the shared headless-Chromium fixture)

import lmcore
from lmcore.data import ToyLanguage
from lmcore.decoding import filter_probs
from lmcore.widgets import explore

pytestmark = pytest.mark.browser
# Known noise unrelated to the explorer (see tests/test_sampling_widget_browser.py).
NOISE = ("THEBE_JS_URL", "invalid theme mode", "reading 'Queue'")
READY = "() => { const r = document.querySelector('.lm-explorer'); return r && ['ready', 'error'].includes(r.dataset.state); }"


def _open(browser, url):  # noqa: F811
    """A page with every request that is not file:// blocked, and its console errors collected."""
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.errors, page.blocked = [], []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))

    def route(r):
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            page.blocked.append(r.request.url)
            r.abort()
    page.route("**/*", route)
    page.goto(url, wait_until="load")
    return page


def _real_errors(page):
    return [e for e in page.errors if not any(n in e for n in NOISE)]


# ---- the rules, on fixed inputs ------------------------------------------------------------------

@pytest.fixture(scope="module")
def js(browser, tmp_path_factory):  # noqa: F811
    html = tmp_path_factory.mktemp("js") / "rules.html"
    scripts = [ROOT / "_assets" / "explorer" / "explorer.js", ROOT / "_assets" / "models" / "toy-grammar.js"]
    html.write_text('<!DOCTYPE html><meta charset="utf-8">' + "".join(f'<script src="{p.as_uri()}"></script>' for p in scripts))
    page = _open(browser, html.as_uri())
    # the grammar make web-assets exported from lmcore.data (tools/export_onnx.py), as the pages load it
    page.grammar = page.evaluate("() => window.lmGrammars && window.lmGrammars.toy || null")
    yield page
    page.close()


def _logit_rows() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    rows = [torch.randn(26, generator=g) * s for s in (0.5, 2.0, 4.0)]
    tied = torch.randn(26, generator=g)
    tied[[3, 7, 11]] = tied.max() + 1.0                      # three tokens tied at the top
    forbidden = torch.randn(26, generator=g) * 2
    forbidden[[0, 5, 9, 20]] = -math.inf                      # -inf: forbidden tokens
    model, tok = lmcore.pretrained("toy-char", device="cpu")
    with torch.no_grad():
        real = model(torch.tensor([tok.encode("\ntom likes the ")]), last_only=True)[0][0, -1]
    return torch.stack(rows + [tied, forbidden, real]).float()


SETTINGS = [dict(temperature=t, top_k=k, top_p=p, min_p=m, filter_order=o)
            for t, k, p, m, o in itertools.product([0.0, 0.5, 1.0, 1.7], [None, 1, 3, 10], [None, 0.5, 0.9],
                                                   [None, 0.05, 0.3], ["temperature-first", "temperature-last"])]


def test_js_filters_equal_lmcore(js):
    logits = _logit_rows()
    got = js.evaluate("([rows, settings]) => settings.map(s => rows.map(r => Array.from(lmExplorer.filterProbs("
                      "r.map(z => z === null ? -Infinity : z), s))))",
                      [[[None if math.isinf(z) else z for z in row] for row in logits.tolist()], SETTINGS])
    assert len(got) == len(SETTINGS)
    split_ties = 0
    for s, rows in zip(SETTINGS, got):
        want = filter_probs(logits, **s).double().numpy()
        got_s = np.array(rows)
        np.testing.assert_allclose(got_s.sum(axis=1), 1, atol=1e-12)
        for r, (g, w) in enumerate(zip(got_s, want)):
            differ = np.flatnonzero((g > 0) != (w > 0))
            if len(differ):
                # Where the top-p boundary runs through exactly tied tokens, which of them stay is
                # torch.sort's unspecified order in lmcore and the lower ids in the page: the same
                # number of the same probabilities, other members of the tie.
                assert (g > 0).sum() == (w > 0).sum() and len(set(logits[r, differ].tolist())) == 1, \
                    f"{s}, row {r}: other kept sets"
                g, w = np.sort(g), np.sort(w)
                split_ties += 1
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-6, err_msg=f"{s}, row {r}")
    assert split_ties < len(SETTINGS) // 10


def test_js_entropy_and_draw_rule_equal_lmcore(js):
    g = torch.Generator().manual_seed(1)
    probs = filter_probs(torch.randn(4, 26, generator=g) * 2, top_p=0.9).double()
    us = torch.rand(4, 20, generator=g, dtype=torch.float64)
    got = js.evaluate("([ps, us]) => ps.map((p, i) => [lmExplorer.entropy(p), us[i].map(u => lmExplorer.drawIndex(p, u))])",
                      [probs.tolist(), us.tolist()])
    for p, u, (h, ids) in zip(probs, us, got):
        q = p[p > 0]
        assert abs(h - float(-(q * q.log()).sum())) < 1e-12
        cdf = p.cumsum(0)
        assert ids == torch.searchsorted(cdf, u * cdf[-1], right=True).tolist()   # sample_next's rule
        assert all(p[i] > 0 for i in ids)


def _grammar_cases() -> list[str]:
    """Stories of the language and plausible near misses (a model's typical errors)."""
    toy = ToyLanguage()
    stories = toy.sample(300, seed=3)
    rnd = random.Random(0)
    swaps = [("he ", "she "), ("she ", "he "), ("chases ", "chase "), ("sees ", "see "), ("that ", "who "),
             (" the ", " the the "), ("cats", "cat"), ("dog ", "dogs "), (".\n", "\n"), (". ", " "), ("bird", "birds")]
    cases = list(stories[:150])
    for s in stories[150:]:
        a, b = rnd.choice(swaps)
        cases.append(s.replace(a, b, 1))
        cases.append(s[:rnd.randrange(1, len(s))])                       # cut short: no newline
    cases += ["".join(stories[:3]), stories[0] + stories[1][:-1], "\n", "", ".\n", "tom likes the cat\n",
              "tom likes the cat.\n\n", "tom likes the cat. he likes the cat. he likes the cat. he likes the cat.\n",
              "tom likes the cat. he likes the cat. he likes the cat. he likes the cat. he likes the cat.\n",
              "constructor likes the cat.\n", "tom likes the old happy cat.\n", " tom likes the cat.\n"]
    return cases


def test_js_grammar_equals_toy_language(js):
    assert js.grammar is not None, "_assets/models/toy-grammar.js is missing: run `make web-assets`"
    cases = _grammar_cases()
    got = js.evaluate("([texts, g]) => texts.map(t => lmExplorer.isValidToy(t, g))", [cases, js.grammar])
    want = [ToyLanguage().is_valid(t) if t else False for t in cases]
    assert 100 < sum(want) < len(cases) - 100                       # both verdicts are well represented
    wrong = [(t, w) for t, g, w in zip(cases, got, want) if g != w]
    assert not wrong, f"{len(wrong)} verdicts differ from ToyLanguage.is_valid, e.g. {wrong[:3]}"


# ---- the built pages -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return lmcore.pretrained("toy-char", device="cpu")


def _check_fresh(built_book):
    """The built book serves this checkout's explorer and model files (Sphinx copies the static
    folder only when some page changed, so an incremental build can keep old copies)."""
    stale = [f for f in ("explorer/explorer.js", "explorer/explorer.css", "models/toy-char.js", "models/toy-grammar.js")
             if not (built_book / "_static" / f).is_file()
             or (built_book / "_static" / f).read_bytes() != (ROOT / "_assets" / f).read_bytes()]
    assert not stale, f"the built book's _static/ holds other copies of {stale}: delete {built_book} and build again"


@pytest.fixture(scope="module")
def chapter8(built_book, browser):  # noqa: F811
    _check_fresh(built_book)
    page = _open(browser, (built_book / "chapters" / "08_sampling.html").as_uri())
    page.wait_for_function(READY, timeout=120_000)
    yield page
    page.close()


def _shown(page):
    return page.evaluate("""() => {
      const r = document.querySelector('.lm-explorer'), ex = r.lmExplorer, s = r.querySelector('.lm-ex-summary');
      return {state: r.dataset.state, error: r.dataset.error || null, prompt: ex.result.prompt, settings: ex.result.settings,
              texts: ex.texts, valid: Array.from(r.querySelectorAll('.lm-ex-sample')).map(e => e.dataset.valid),
              kept: Number(s.dataset.kept), entropy: Number(s.dataset.entropy), entropyFiltered: Number(s.dataset.entropyFiltered),
              rows: Array.from(r.querySelectorAll('tr[data-token]')).map(t => ({token: Number(t.dataset.token),
                 model: Number(t.dataset.pModel), tempered: Number(t.dataset.pTempered), filtered: Number(t.dataset.pFiltered)}))};
    }""")


def _check_against_python(shown, model, **settings):
    gpt, tok = model
    ex = explore(gpt, tok, shown["prompt"], n_samples=1, max_new_tokens=1, **settings)
    assert shown["rows"], "no bars shown"
    for row in shown["rows"]:
        i = row["token"]
        for key, want in (("model", ex.probs), ("tempered", ex.tempered), ("filtered", ex.filtered)):
            assert abs(row[key] - float(want[i])) < 1e-4, f"token {i} ({ex.labels[i]}), {key}: {row[key]} vs {float(want[i])}"
    tempered = [r["tempered"] for r in shown["rows"]]
    assert tempered == sorted(tempered, reverse=True)
    assert shown["kept"] == int(ex.kept.sum())
    assert abs(shown["entropy"] - ex.entropy) < 1e-4 and abs(shown["entropyFiltered"] - ex.entropy_filtered) < 1e-4


def test_chapter8_explorer_runs_offline_without_the_saved_widget(chapter8, model):
    shown = _shown(chapter8)
    assert shown["state"] == "ready", shown["error"]
    assert shown["prompt"] == "\ntom likes the "
    _check_against_python(shown, model)
    # the saved-state ipywidgets explorer (no kernel behind it) is not on the page
    assert chapter8.evaluate("document.querySelectorAll('.widget-slider, .widget-textarea').length") == 0
    scripts = chapter8.evaluate(r"Array.from(document.scripts).map(s => s.src).filter(s => /\/(vendor\/ort|explorer|models)\//.test(s))")
    assert len(scripts) == 5 and all(s.startswith("file:") and "/_static/" in s for s in scripts), scripts
    assert not _real_errors(chapter8), _real_errors(chapter8)


def test_typed_prompt_and_moved_slider_show_pythons_distribution(chapter8, model):
    prompt = "\nmary sees the big frogs. she likes the "
    root = chapter8.locator(".lm-explorer")
    root.locator("textarea").fill(prompt)
    root.locator("input[name=temperature]").fill("0.7")
    root.locator("input[name=top_p]").fill("0.8")
    chapter8.wait_for_function(f"""() => {{ const ex = document.querySelector('.lm-explorer').lmExplorer;
        return ex.root.dataset.state === 'ready' && ex.result.prompt === {json.dumps(prompt)}
               && ex.result.settings.temperature === 0.7 && ex.result.settings.top_p === 0.8; }}""", timeout=60_000)
    shown = _shown(chapter8)
    assert shown["settings"] == {"temperature": 0.7, "top_k": None, "top_p": 0.8, "min_p": None}
    _check_against_python(shown, model, temperature=0.7, top_p=0.8)
    assert shown["kept"] < 26
    # every continuation's mark is the toy language's verdict on the story it completes
    story = prompt.split("\n")[-1]
    assert len(shown["texts"]) == len(shown["valid"]) == 8
    assert shown["valid"] == [str(int(ToyLanguage().is_valid(story + t))) for t in shown["texts"]]
    assert not _real_errors(chapter8), _real_errors(chapter8)
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    root.screenshot(path=str(shots / "explorer_chapter8.png"))


def test_unknown_characters_are_reported_not_raised(chapter8):
    chapter8.locator(".lm-explorer textarea").fill("\nTom likes the ")
    chapter8.wait_for_function("() => document.querySelector('.lm-explorer').dataset.state === 'error'", timeout=30_000)
    assert '"T"' in chapter8.evaluate("document.querySelector('.lm-explorer').dataset.error")
    assert not _real_errors(chapter8), _real_errors(chapter8)


def test_chapter1_explorer_generates_with_temperature_only(built_book, browser, model):  # noqa: F811
    _check_fresh(built_book)
    page = _open(browser, (built_book / "chapters" / "01_language_models.html").as_uri())
    page.wait_for_function(READY, timeout=120_000)
    shown = _shown(page)
    assert shown["state"] == "ready", shown["error"]
    assert page.locator(".lm-explorer input[type=range]").count() == 1
    _check_against_python(shown, model)
    # the log-probability scale prints ln p (nats) and draws bars from p = 1e-6 (0 %) to 1 (100 %)
    page.locator(".lm-explorer select").select_option("log")
    first = page.locator(".lm-explorer tr[data-token]").first
    p_first = shown["rows"][0]["tempered"]
    assert first.locator(".lm-ex-value").inner_text() == f"{math.log(p_first):.3f} → {math.log(p_first):.3f}"
    width = first.locator(".lm-ex-tempered").evaluate("e => parseFloat(e.style.width)")
    assert abs(width - 100 * (1 - math.log(p_first) / math.log(1e-6))) < 0.01
    assert not _real_errors(page), _real_errors(page)
    page.close()


def test_runtime_is_loaded_only_by_the_explorer_pages(built_book):
    pages = {p.name for p in (built_book / "chapters").glob("*.html") if "vendor/ort/" in p.read_text(encoding="utf-8")}
    assert pages == {"01_language_models.html", "08_sampling.html"}


@pytest.mark.parametrize("damage", ["garbled", "other bytes"])
def test_corrupt_model_file_is_refused(built_book, browser, tmp_path, damage):  # noqa: F811
    """A model script whose payload does not decompress, or decompresses to other bytes than its
    metadata's sha256 names (a stale or tampered export), is refused with a message, never run."""
    _check_fresh(built_book)
    static = built_book / "_static"
    script = (static / "models" / "toy-char.js").read_text()
    head, body = script.split("] = ", 1)
    entry = json.loads(body.rstrip().removesuffix(";"))
    if damage == "garbled":
        b64 = entry["onnx_gzip_base64"]
        entry["onnx_gzip_base64"] = b64[:5000] + ("A" if b64[5000] != "A" else "B") + b64[5001:]
    else:
        onnx = bytearray(gzip.decompress(base64.b64decode(entry["onnx_gzip_base64"])))
        onnx[len(onnx) // 2] ^= 1
        entry["onnx_gzip_base64"] = base64.b64encode(gzip.compress(bytes(onnx))).decode()
    (tmp_path / "toy-char.js").write_text(f"{head}] = {json.dumps(entry)};\n")
    src = [static / "vendor/ort/ort.wasm.min.js", static / "vendor/ort/ort-wasm-runtime.js", tmp_path / "toy-char.js",
           static / "explorer/explorer.js"]
    html = tmp_path / "page.html"
    html.write_text('<!DOCTYPE html><meta charset="utf-8"><div class="lm-explorer" data-model="toy-char"></div>'
                    + "".join(f'<script src="{p.as_uri()}"></script>' for p in src))
    page = _open(browser, html.as_uri())
    page.wait_for_function(READY, timeout=120_000)
    state = page.evaluate("document.querySelector('.lm-explorer').dataset")
    why = "does not decompress" if damage == "garbled" else "sha256"
    assert state["state"] == "error" and "the model file toy-char is corrupt" in state["error"] and why in state["error"], state
    assert page.locator(".lm-ex-error").inner_text() == state["error"]
    page.close()
