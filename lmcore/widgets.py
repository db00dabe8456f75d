"""Interactive explorers for sampling (chapter 8): a live ipywidgets panel and a static plotly fallback.

The logic lives in pure functions so it can be tested without a browser or a kernel:

- :func:`sampler_settings` turns slider positions into ``lmcore.decoding.sampling`` arguments
  (``top_k = 0``, ``top_p = 1`` and ``min_p = 0`` mean "filter off");
- :func:`explore` computes, for one prompt and one setting, the model's next-token distribution,
  the distribution after temperature, the distribution actually sampled from (after top-k, top-p
  and min-p; equal to ``lmcore.decoding.filter_probs``), the kept set, the entropies and a sampled
  continuation;
- :func:`bars_html` renders one :class:`Exploration` as an HTML bar chart.

:class:`SamplingExplorer` is an ``ipywidgets.VBox`` with sliders for temperature, top-k, top-p
and min-p, a seed and an editable prompt; every change calls :func:`explore` and redraws (works in
JupyterLab and Colab, ipywidgets 8). Its last result is ``explorer.result``.

Where no kernel runs (the HTML book), :func:`static_explorer` precomputes :func:`explore` for a
list of values of one setting and returns a plotly figure whose slider steps swap the bars, the
title and the continuation; :func:`show_figure` displays it as self-contained HTML that loads
plotly.js from the book's own copy (no CDN), plus plotly's JSON for JupyterLab.
"""
from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ._checks import eval_mode
from .decoding import apply_temperature, filter_probs, generate

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .models import GPT
    from .tokenizers import Tokenizer

__all__ = ["Exploration", "sampler_settings", "token_label", "explore", "bars_html", "SamplingExplorer",
           "static_explorer", "show_figure", "BOOK_PLOTLYJS"]

#: Where the book serves plotly.js, relative to a chapter page (the Makefile copies it there).
BOOK_PLOTLYJS = "../_static/vendor/plotly.min.js"
_LABELS = {" ": "␣", "\n": "⏎", "\t": "⇥"}
KEPT, DROPPED, TEMPERED = "#1f77b4", "#d62728", "#c7c7c7"


@dataclass(frozen=True)
class Exploration:
    """Everything the explorers show for one prompt and one sampler setting.

    ``labels``: printable token labels (V,). ``probs``: the model's next-token distribution
    ``softmax(logits)`` (V,). ``tempered``: ``softmax(logits / T)`` (V,). ``filtered``: what is
    sampled from, after top-k / top-p / min-p (V,), zero outside ``kept`` (V,) bool.
    ``entropy`` / ``entropy_filtered``: entropies in nats of ``tempered`` and ``filtered``.
    ``continuation``: text sampled with these settings (``seed`` fixes it). ``settings``: the
    ``filter_probs`` keyword arguments used.
    """

    labels: list[str]
    probs: torch.Tensor
    tempered: torch.Tensor
    filtered: torch.Tensor
    kept: torch.Tensor
    entropy: float
    entropy_filtered: float
    continuation: str
    settings: dict


def sampler_settings(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0) -> dict:
    """Slider positions -> keyword arguments of ``lmcore.decoding.filter_probs``.

    ``top_k = 0``, ``top_p = 1`` and ``min_p = 0`` switch that filter off (``None``).
    """
    return {"temperature": float(temperature), "top_k": int(top_k) if top_k else None,
            "top_p": None if top_p is None or top_p == 1 else float(top_p),
            "min_p": float(min_p) if min_p else None}


def token_label(text: str) -> str:
    """A visible label for a token: spaces and newlines as symbols, other text unchanged."""
    return "".join(_LABELS.get(c, c) for c in text) or "∅"


def _newline_id(tokenizer: Tokenizer) -> int | None:
    """The id of a newline when it is one token of ``tokenizer`` (a story ends there), else None."""
    try:
        ids = tokenizer.encode("\n")
    except ValueError:
        return None
    return ids[0] if len(ids) == 1 else None


def _entropy(p: torch.Tensor) -> float:
    p = p.double()
    # a one-hot distribution sums to -0.0, which prints as "-0.000"; an entropy is never below 0
    return max(0.0, float(-(p[p > 0] * p[p > 0].log()).sum()))


@torch.inference_mode()
def explore(model: GPT, tokenizer: Tokenizer, prompt: str, temperature: float = 1.0, top_k: int | None = None,
            top_p: float | None = None, min_p: float | None = None, seed: int = 0,
            max_new_tokens: int = 60) -> Exploration:
    """Next-token distributions of ``model`` after ``prompt`` for one sampler setting.

    ``top_k``, ``top_p``, ``min_p`` accept ``None`` or the slider conventions of
    :func:`sampler_settings` (0, 1, 0 = off). The continuation is ``max_new_tokens`` tokens drawn
    with ``lmcore.generate`` from a generator seeded with ``seed``; it stops after a
    newline when the tokenizer has one. Raises ``ValueError`` for an empty prompt or one with
    characters the tokenizer does not know.
    """
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty string")
    settings = sampler_settings(temperature, top_k or 0, 1.0 if top_p is None else top_p, min_p or 0.0)
    ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.long, device=model.lm_head.weight.device)
    ids = ids[-model.config.context_length:]
    with eval_mode(model):
        logits = model(ids[None], last_only=True)[0][0, -1].float()          # (V,)
    filtered = filter_probs(logits, **settings)
    tempered = apply_temperature(logits, settings["temperature"])
    g = torch.Generator(device=ids.device).manual_seed(int(seed))
    out = generate(model, ids, max_new_tokens, stop_tokens=_newline_id(tokenizer), generator=g, **settings)
    vocab = [token_label(tokenizer.decode([i])) for i in range(model.config.vocab_size)]
    return Exploration(labels=vocab, probs=torch.softmax(logits, -1).cpu(), tempered=tempered.cpu(),
                       filtered=filtered.cpu(), kept=(filtered > 0).cpu(), entropy=_entropy(tempered),
                       entropy_filtered=_entropy(filtered),
                       continuation=tokenizer.decode(out[ids.numel():].tolist()), settings=settings)


def _summary(ex: Exploration) -> str:
    return (f"kept {int(ex.kept.sum())} of {ex.kept.numel()} tokens · entropy {ex.entropy:.3f} nats "
            f"→ {ex.entropy_filtered:.3f} after filtering")


def bars_html(ex: Exploration, top_n: int | None = None) -> str:
    """An HTML bar chart of ``ex``: one row per token, most probable (after temperature) first.

    The grey bar is the probability after temperature, the coloured bar the probability actually
    sampled from: blue for kept tokens, red (empty) for tokens the filters removed.
    """
    order = ex.tempered.argsort(descending=True, stable=True)[:top_n]
    rows = []
    for i in order.tolist():
        t, f = float(ex.tempered[i]), float(ex.filtered[i])
        colour = KEPT if bool(ex.kept[i]) else DROPPED
        rows.append(
            f'<tr data-token="{i}" data-kept="{int(bool(ex.kept[i]))}">'
            f'<td style="font-family:monospace;text-align:right;padding-right:6px;color:{colour}">'
            f'{html.escape(ex.labels[i])}</td>'
            f'<td style="width:320px"><div style="background:{TEMPERED};height:7px;width:{100 * t:.2f}%"></div>'
            f'<div style="background:{KEPT};height:7px;width:{100 * f:.2f}%"></div></td>'
            f'<td style="font-family:monospace;padding-left:6px">{t:.3f} → {f:.3f}</td></tr>')
    return ('<table style="border-collapse:collapse;font-size:12px">'
            '<tr><th>token</th><th style="text-align:left">grey: after temperature · blue: sampled from</th>'
            f'<th>p</th></tr>{"".join(rows)}</table>')


class SamplingExplorer:
    """Live explorer: sliders for temperature, top-k, top-p, min-p, a seed and an editable prompt.

    Display it as the last expression of a cell (or with ``IPython.display.display``). Every
    change recomputes :func:`explore` and updates ``chart`` (the bars), ``summary`` (kept count,
    entropies) and ``continuation``; ``result`` holds the latest :class:`Exploration`. A prompt
    with characters the model does not know shows the error instead of raising.
    """

    def __init__(self, model: GPT, tokenizer: Tokenizer, prompt: str = "\n", max_new_tokens: int = 60,
                 top_n: int | None = 15):
        import ipywidgets as w

        self.model, self.tokenizer, self.max_new_tokens, self.top_n = model, tokenizer, max_new_tokens, top_n
        style, layout = {"description_width": "110px"}, w.Layout(width="420px")
        common = dict(continuous_update=False, style=style, layout=layout)
        self.prompt = w.Textarea(value=prompt, description="prompt", rows=2, continuous_update=False,
                                 style=style, layout=w.Layout(width="620px"))
        self.temperature = w.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.05, description="temperature",
                                         **common)
        self.top_k = w.IntSlider(value=0, min=0, max=model.config.vocab_size, description="top-k (0 = off)",
                                 **common)
        self.top_p = w.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p (1 = off)",
                                   **common)
        self.min_p = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.01, description="min-p (0 = off)",
                                   **common)
        self.seed = w.BoundedIntText(value=0, min=0, max=2**31 - 1, description="seed", style=style,
                                     layout=w.Layout(width="220px"))
        self.summary = w.HTML()
        self.chart = w.HTML()
        self.continuation = w.HTML()
        self.result: Exploration | None = None
        self.widget = w.VBox([self.prompt, w.HBox([w.VBox([self.temperature, self.top_k]),
                                                   w.VBox([self.top_p, self.min_p])]),
                              self.seed, self.summary, self.chart, self.continuation])
        for control in (self.prompt, self.temperature, self.top_k, self.top_p, self.min_p, self.seed):
            control.observe(self.update, names="value")
        self.update()

    def update(self, change=None) -> None:
        """Recompute from the controls' current values and redraw (the widgets' callback)."""
        try:
            ex = explore(self.model, self.tokenizer, self.prompt.value, self.temperature.value, self.top_k.value,
                         self.top_p.value, self.min_p.value, self.seed.value, self.max_new_tokens)
        except ValueError as e:
            self.summary.value = f'<b style="color:{DROPPED}">{html.escape(str(e))}</b>'
            return
        self.result = ex
        self.summary.value = html.escape(_summary(ex))
        self.chart.value = bars_html(ex, self.top_n)
        self.continuation.value = ("<b>sampled continuation:</b> <code style='white-space:pre-wrap'>"
                                   f"{html.escape(self.prompt.value)}<span style='color:{KEPT}'>"
                                   f"{html.escape(ex.continuation)}</span></code>")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


_DEFAULT_VALUES: dict[str, list[float]] = {"temperature": [0.1, 0.3, 0.5, 0.7, 1.0, 1.3, 1.6, 2.0, 3.0, 5.0],
                   "top_k": [1, 2, 3, 5, 8, 12, 20], "top_p": [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0],
                   "min_p": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8]}


def static_explorer(model: GPT, tokenizer: Tokenizer, prompt: str, vary: str = "temperature",
                    values: Sequence[float] | None = None, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None, min_p: float | None = None, seed: int = 0,
                    max_new_tokens: int = 60) -> go.Figure:
    """A plotly figure with one slider over ``vary`` (one of temperature, top_k, top_p, min_p).

    Each slider step is a precomputed :func:`explore` with ``vary`` set to one of ``values`` and the
    other settings fixed. Bars (tokens in order of the model's probability): grey is the
    distribution after temperature, blue/red the distribution sampled from (red marks a removed
    token, with height 0). The title gives the kept count and entropies; the annotation under the
    plot the sampled continuation. The slider starts at the value closest to the fixed setting.
    """
    import plotly.graph_objects as go

    fixed: dict[str, Any] = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p}
    if vary not in fixed:
        raise ValueError(f"vary must be one of {sorted(fixed)}, got {vary!r}")
    values = list(_DEFAULT_VALUES[vary] if values is None else values)
    if not values:
        raise ValueError("values is empty: give at least one value for the slider")
    steps_data = [explore(model, tokenizer, prompt, seed=seed, max_new_tokens=max_new_tokens,
                          **{**fixed, vary: v}) for v in values]
    order = steps_data[0].probs.argsort(descending=True, stable=True).tolist()
    x = [steps_data[0].labels[i] for i in order]

    def view(ex: Exploration, value) -> tuple[dict, dict]:
        data = {"y": [[round(float(ex.tempered[i]), 5) for i in order],
                      [round(float(ex.filtered[i]), 5) for i in order]],
                "marker.color": [TEMPERED, [KEPT if bool(ex.kept[i]) else DROPPED for i in order]]}
        layout = {"title.text": f"{vary} = {value}: {_summary(ex)}",
                  "annotations[0].text": "continuation: " + html.escape(ex.continuation.replace("\n", "⏎"))}
        return data, layout

    start = min(range(len(values)), key=lambda i: abs(values[i] - (fixed[vary] if fixed[vary] is not None
                                                                     else values[0])))
    data, layout = view(steps_data[start], values[start])
    fig = go.Figure([go.Bar(x=x, y=data["y"][0], name="after temperature", marker_color=TEMPERED),
                     go.Bar(x=x, y=data["y"][1], name="sampled from (red: removed)",
                            marker_color=data["marker.color"][1])])
    steps = []
    for value, ex in zip(values, steps_data):
        d, lay = view(ex, value)
        steps.append(dict(method="update", label=str(value), args=[d, lay]))
    fig.update_layout(
        barmode="group", height=460, margin=dict(t=60, b=150),
        title=dict(text=layout["title.text"], font=dict(size=13)),
        xaxis=dict(title="next token (ordered by the model's probability)", type="category"),
        yaxis=dict(title="probability", range=[0, 1]),
        legend=dict(orientation="h", y=1.0, yanchor="bottom"),
        annotations=[dict(text=layout["annotations[0].text"], x=0, y=-0.55, xref="paper", yref="paper",
                          showarrow=False, xanchor="left", font=dict(family="monospace", size=11))],
        sliders=[dict(active=start, currentvalue=dict(prefix=f"{vary} = "), pad=dict(t=40), steps=steps)],
    )
    return fig


def show_figure(fig: go.Figure, plotlyjs: str = BOOK_PLOTLYJS) -> None:
    """Display ``fig`` as HTML that loads plotly.js from ``plotlyjs`` (default: the book's offline
    copy), together with plotly's JSON mimetype, which JupyterLab renders natively."""
    from IPython.display import display

    # typesetMath off: the book's MathJax 3 is not the MathJax 2 API plotly.js would call.
    page = fig.to_html(full_html=False, include_plotlyjs=plotlyjs, include_mathjax=False,
                       config={"typesetMath": False})
    display({"text/html": page, "application/vnd.plotly.v1+json": json.loads(fig.to_json())}, raw=True)
