"""Widget logic without a browser: the callbacks produce lmcore.decoding.sampling's distributions."""
import math
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
    explore,
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
    # the continuation is what generate() samples with the same seed and settings, cut after a newline
    g = torch.Generator().manual_seed(3)
    out = generate(model, torch.tensor(tok.encode("the cat")), 20, generator=g, stop_tokens=tok.encode("\n")[0],
                         **{k: setting.get(k) for k in ("temperature", "top_k", "top_p", "min_p")})
    assert ex.continuation == tok.decode(out[len("the cat"):].tolist())
    assert "\n" not in ex.continuation[:-1]


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
    assert ui.result.continuation in ui.continuation.value
    before = ui.result
    ui.prompt.value = "a zebra"                   # unknown character: an error message, no exception
    assert ui.result is before and "color" in ui.summary.value and "z" in ui.summary.value
    assert ui._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]


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
        show_figure(fig)
    bundle = display.call_args.args[0]
    assert display.call_args.kwargs == {"raw": True}
    assert f'src="{BOOK_PLOTLYJS}"' in bundle["text/html"]
    assert "cdn" not in bundle["text/html"].lower() and "https://" not in bundle["text/html"]
    assert len(bundle["application/vnd.plotly.v1+json"]["layout"]["sliders"][0]["steps"]) == 2
