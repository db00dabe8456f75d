"""Widget logic without a browser: the callbacks produce lmcore.decoding.sampling's distributions."""
import html
import math
import os
import re
from unittest import mock

import pytest
import torch

from lmcore import GPT, CharTokenizer, GPTConfig, generate
from lmcore.decoding.sampling import filter_probs
from lmcore.widgets import (
    BOOK_PLOTLYJS,
    SamplingExplorer,
    bars_html,
    building_book,
    explore,
    fmt_number,
    sampler_settings,
    show_figure,
    static_explorer,
    token_label,
)

ALPHABET = "\n .abcdeghlot"


@pytest.fixture(scope="module")
def model_tok():
    torch.manual_seed(0)
    tok = CharTokenizer().train(ALPHABET)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():          # spread the logits so filters keep different sets
        model.lm_head.weight.mul_(6)
    return model, tok


def next_logits(model, tok, prompt):
    ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        return model(ids)[0][0, -1]


def test_slider_conventions_switch_filters_off():
    assert sampler_settings(0.7, 0, 1.0, 0.0) == dict(temperature=0.7, top_k=None, top_p=None, min_p=None)
    assert sampler_settings(1, 3, 0.9, 0.05) == dict(temperature=1.0, top_k=3, top_p=0.9, min_p=0.05)
    assert token_label(" a\n") == "␣a⏎" and token_label("") == "∅"


@pytest.mark.parametrize("setting", [dict(temperature=1.0), dict(temperature=0.5, top_k=3),
                                     dict(temperature=1.3, top_p=0.6), dict(temperature=0.8, min_p=0.2),
                                     dict(temperature=0.0), dict(temperature=2.0, top_k=5, top_p=0.8, min_p=0.1)])
def test_explore_matches_filter_probs(model_tok, setting):
    model, tok = model_tok
    ex = explore(model, tok, "the cat", seed=3, max_new_tokens=20, **setting)
    logits = next_logits(model, tok, "the cat")
    torch.testing.assert_close(ex.filtered, filter_probs(logits, **setting))
    T = setting["temperature"]
    want_tempered = torch.softmax(logits / T, -1) if T > 0 else torch.nn.functional.one_hot(
        logits.argmax(), len(logits)).float()
    torch.testing.assert_close(ex.tempered, want_tempered)
    torch.testing.assert_close(ex.probs, torch.softmax(logits, -1))
    assert torch.equal(ex.kept, ex.filtered > 0)
    p = ex.filtered.double()
    assert ex.entropy_filtered == pytest.approx(-sum(float(x) * math.log(float(x)) for x in p if x > 0), abs=1e-9)
    assert ex.entropy <= math.log(len(ALPHABET)) + 1e-9
    if T == 0:       # one-hot: exactly +0.0, never the -0.0 that prints as "-0.000"
        assert math.copysign(1.0, ex.entropy) == 1.0 and f"{ex.entropy:.3f}" == "0.000"
    # the continuations are what one batched generate() samples with the same seed and settings, each
    # cut after its first newline
    g = torch.Generator().manual_seed(3)
    out = generate(model, torch.tensor([tok.encode("the cat")] * 8), 20, generator=g, stop_tokens=tok.encode("\n")[0],
                   **{k: setting.get(k) for k in ("temperature", "top_k", "top_p", "min_p")})
    texts = [tok.decode(row[len("the cat"):]) for row in out.tolist()]
    assert ex.continuations == [t[:t.index("\n") + 1] if "\n" in t else t for t in texts]
    assert all("\n" not in c[:-1] for c in ex.continuations) and ex.valid == [None] * 8


def test_explore_rejects_bad_prompts(model_tok):
    model, tok = model_tok
    with pytest.raises(ValueError, match="prompt"):
        explore(model, tok, "")
    with pytest.raises(ValueError):
        explore(model, tok, "the zebra")          # 'z' is not in the vocabulary
    with pytest.raises(ValueError, match="top_p"):
        explore(model, tok, "the", top_p=1.5)


def test_explorer_callbacks_recompute_the_distributions(model_tok):
    pytest.importorskip("ipywidgets")
    model, tok = model_tok
    ui = SamplingExplorer(model, tok, prompt="the dog", max_new_tokens=15, top_n=None)
    first = ui.result
    torch.testing.assert_close(first.filtered, filter_probs(next_logits(model, tok, "the dog")))
    # moving sliders fires the observers: the widget now shows exactly filter_probs at the new setting
    ui.temperature.value, ui.top_k.value, ui.top_p.value, ui.min_p.value = 0.6, 4, 0.7, 0.05
    want = filter_probs(next_logits(model, tok, "the dog"), temperature=0.6, top_k=4, top_p=0.7, min_p=0.05)
    torch.testing.assert_close(ui.result.filtered, want)
    n_kept = int((want > 0).sum())
    assert 1 <= n_kept < 4
    assert ui.chart.value.count('data-kept="1"') == n_kept
    assert ui.chart.value.count("<tr data-token") == tok.vocab_size
    assert f"kept {n_kept} of {tok.vocab_size}" in ui.summary.value
    ui.prompt.value = "a hole"
    torch.testing.assert_close(ui.result.filtered, filter_probs(next_logits(model, tok, "a hole"), temperature=0.6,
                                                                top_k=4, top_p=0.7, min_p=0.05))
    assert all(html.escape(c.replace("\n", "⏎")) in ui.continuation.value for c in ui.result.continuations)
    before = ui.result
    ui.prompt.value = "a zebra"                   # unknown character: an error message, no exception
    assert ui.result is before and "color" in ui.summary.value and "z" in ui.summary.value
    # IPython displays the explorer through _ipython_display_ (ipywidgets 7 and 8): it shows the box
    with mock.patch("IPython.display.display") as display:
        ui._ipython_display_()
    assert display.call_args.args == (ui.widget,)


def test_bars_html_marks_kept_and_removed_tokens(model_tok):
    model, tok = model_tok
    ex = explore(model, tok, "the", top_k=2, max_new_tokens=1)
    page = bars_html(ex, top_n=5)
    kept = re.findall(r'data-kept="(\d)"', page)
    assert kept == ["1", "1", "0", "0", "0"]       # rows sorted by probability: the top 2 are kept


def test_static_explorer_precomputes_each_slider_step(model_tok):
    pytest.importorskip("plotly")
    model, tok = model_tok
    values = [0.1, 0.5, 0.9]
    fig = static_explorer(model, tok, "the cat", vary="top_p", values=values, temperature=0.8, top_p=0.5,
                          max_new_tokens=10)
    slider = fig.layout.sliders[0]
    assert slider.active == 1 and [s.label for s in slider.steps] == ["0.1", "0.5", "0.9"]
    logits = next_logits(model, tok, "the cat")
    order = torch.softmax(logits, -1).argsort(descending=True, stable=True)
    assert list(fig.data[0].x) == [token_label(tok.decode([i])) for i in order.tolist()]
    sizes = []
    for value, step in zip(values, slider.steps):
        tempered, filtered = step.args[0]["y"]
        want = filter_probs(logits, temperature=0.8, top_p=value)[order]
        assert torch.allclose(torch.tensor(filtered, dtype=torch.float32), want, atol=1e-5)
        assert torch.allclose(torch.tensor(tempered, dtype=torch.float32),
                              torch.softmax(logits / 0.8, -1)[order], atol=1e-5)
        sizes.append(sum(v > 0 for v in filtered))
        assert f"kept {sizes[-1]} of" in step.args[1]["title.text"]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]     # a larger nucleus keeps more tokens
    assert list(fig.data[1].y) == slider.steps[1].args[0]["y"][1]   # the figure opens on the active step
    with pytest.raises(ValueError, match="vary"):
        static_explorer(model, tok, "the", vary="beam")


def test_show_figure_serves_plotly_offline(model_tok):
    pytest.importorskip("plotly")
    model, tok = model_tok
    fig = static_explorer(model, tok, "the", values=[0.5, 1.0], max_new_tokens=5)
    with mock.patch("IPython.display.display") as display:
        show_figure(fig, book=True)
    bundle = display.call_args.args[0]
    assert display.call_args.kwargs == {"raw": True}
    assert f'src="{BOOK_PLOTLYJS}"' in bundle["text/html"]
    assert "cdn" not in bundle["text/html"].lower() and "https://" not in bundle["text/html"]
    assert len(bundle["application/vnd.plotly.v1+json"]["layout"]["sliders"][0]["steps"]) == 2


def test_numbers_never_print_negative_zero():
    assert [fmt_number(x) for x in (-1e-9, -0.0, 0.0, -0.0004, -0.0005001, 2.5)] == \
        ["0.000", "0.000", "0.000", "0.000", "-0.001", "2.500"]
    assert fmt_number(-math.inf) == "-∞" and fmt_number(-1e-7, 1) == "0.0"


def test_a_near_certain_token_shows_no_negative_zero(model_tok):
    """ln p of a token with p just below 1 rounds to zero: it must print as 0.000, not -0.000."""
    model, tok = model_tok
    near_one = 0
    for T in (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4):
        ex = explore(model, tok, "the cat", temperature=T, max_new_tokens=3, n_samples=2, top_k=4)
        near_one += any(f"{math.log(float(p)):.3f}" == "-0.000" for p in ex.tempered if p > 0)
        for page in (bars_html(ex), bars_html(ex, log=True)):
            assert "-0.000" not in page
        assert "-0.000" not in f"{ex.entropy:.3f} {ex.entropy_filtered:.3f}"
    assert near_one          # some setting had a log-probability that a plain f-string prints as -0.000


def test_bars_show_the_model_at_t1_and_a_log_scale(model_tok):
    model, tok = model_tok
    ex = explore(model, tok, "the", temperature=2.0, top_k=3, max_new_tokens=1, n_samples=1)
    page, log_page = bars_html(ex), bars_html(ex, log=True)
    order = ex.tempered.argsort(descending=True, stable=True).tolist()
    widths = [float(w) for w in re.findall(r'background:#333333;height:3px;width:([0-9.]+)%', page)]
    assert widths == pytest.approx([100 * float(ex.probs[i]) for i in order], abs=0.006)   # T = 1, not T = 2
    log_widths = [float(w) for w in re.findall(r'background:#333333;height:3px;width:([0-9.]+)%', log_page)]
    want = [100 * max(0.0, 1 - math.log(float(ex.probs[i])) / math.log(1e-6)) for i in order]
    assert log_widths == pytest.approx(want, abs=0.006)
    first = order[0]
    assert f"{fmt_number(math.log(float(ex.tempered[first])))} →" in log_page and "ln p" in log_page
    assert "-∞" in log_page                               # removed tokens: ln 0


def test_continuations_are_marked_by_the_grammar(model_tok):
    model, tok = model_tok
    judged = []

    def is_valid(story):
        judged.append(story)
        return story.endswith("\n")

    ex = explore(model, tok, "\nthe cat", max_new_tokens=12, n_samples=8, seed=1, is_valid=is_valid)
    assert len(ex.continuations) == 8 and judged == ["the cat" + c for c in ex.continuations]
    assert ex.valid == [c.endswith("\n") for c in ex.continuations]
    assert len(set(ex.continuations)) > 1                  # eight draws, not one story eight times
    pytest.importorskip("ipywidgets")
    ui = SamplingExplorer(model, tok, prompt="\nthe cat", max_new_tokens=12, is_valid=is_valid)
    assert ui.continuation.value.count("✓ valid") == sum(ui.result.valid)
    assert ui.continuation.value.count("✗ invalid") == 8 - sum(ui.result.valid)
    ui.scale.value = "log probability"
    assert "ln p" in ui.chart.value


def test_static_explorer_has_a_reference_trace_log_buttons_and_marked_continuations(model_tok):
    pytest.importorskip("plotly")
    model, tok = model_tok
    fig = static_explorer(model, tok, "the cat", vary="min_p", values=[0.0, 0.5], temperature=1.5,
                          max_new_tokens=10, n_samples=4, is_valid=lambda s: s.endswith("\n"))
    logits = next_logits(model, tok, "the cat")
    order = torch.softmax(logits, -1).argsort(descending=True, stable=True)
    assert fig.data[2].name == "model (T = 1)"
    assert torch.allclose(torch.tensor(fig.data[2].y, dtype=torch.float32), torch.softmax(logits, -1)[order], atol=1e-6)
    assert [b.args[0]["yaxis.type"] for b in fig.layout.updatemenus[0].buttons] == ["linear", "log"]
    for step in fig.layout.sliders[0].steps:
        assert list(step.args[2]) == [0, 1]                      # the steps swap traces 0 and 1, never the reference
        assert step.args[1]["annotations[0].text"].count("valid") == 4


def test_show_figure_uses_plotly_renderers_outside_the_book(model_tok, monkeypatch):
    pytest.importorskip("plotly")
    model, tok = model_tok
    fig = static_explorer(model, tok, "the", values=[1.0], max_new_tokens=2, n_samples=1)
    monkeypatch.setenv("LMCORE_BOOK", "0")
    with mock.patch.object(type(fig), "show") as show, mock.patch("IPython.display.display") as display:
        show_figure(fig)
    show.assert_called_once_with()
    display.assert_not_called()
    monkeypatch.setenv("LMCORE_BOOK", "1")
    with mock.patch.object(type(fig), "show") as show, mock.patch("IPython.display.display") as display:
        show_figure(fig)
    show.assert_not_called()
    assert f'src="{BOOK_PLOTLYJS}"' in display.call_args.args[0]["text/html"]


def test_the_book_build_is_detected_from_the_processes_that_started_the_kernel(monkeypatch):
    from lmcore import widgets

    monkeypatch.delenv("LMCORE_BOOK", raising=False)
    kernel = ["python", "-m", "ipykernel_launcher", "-f", "k.json"]
    for builder, expected in ((["/x/.venv/bin/python", "/x/.venv/bin/jupyter-book", "build", "."], True),
                              (["/usr/bin/jb", "build", "."], True), (["sphinx-build", "-b", "html"], True),
                              (["/x/.venv/bin/python", "/x/.venv/bin/jupyter-lab"], False),
                              (["python", "-m", "pytest", "--nbval-lax", "chapters"], False)):
        monkeypatch.setattr(widgets, "_ancestor_commands", lambda b=builder: [kernel, b, ["/sbin/init"]])
        assert building_book() is expected, builder
    monkeypatch.setenv("LMCORE_BOOK", "0")
    monkeypatch.setattr(widgets, "_ancestor_commands", lambda: [["jupyter-book", "build"]])
    assert building_book() is False
    # this test process runs under pytest, not under a book build
    monkeypatch.delenv("LMCORE_BOOK")
    monkeypatch.undo()
    assert widgets._ancestor_commands() and not building_book() or os.environ.get("LMCORE_BOOK") == "1"
