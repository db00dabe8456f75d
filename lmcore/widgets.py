"""Interactive explorers for sampling (chapter 8): a live ipywidgets panel and a static plotly fallback.

The logic lives in pure functions, testable without a browser or a kernel: :func:`sampler_settings`
turns slider positions into ``lmcore.decoding.sampling`` arguments (``top_k = 0``, ``top_p = 1`` and
``min_p = 0`` mean "filter off"); :func:`explore` computes, for one prompt and one setting, the
model's next-token distribution (``T = 1``), the distribution after temperature, the one actually
sampled from (equal to ``lmcore.decoding.filter_probs``), the kept set, the entropies and a few
sampled continuations, each marked valid or invalid by a grammar when one is given; :func:`bars_html`
draws one :class:`Exploration` as HTML bars, on a probability or a log-probability scale.

:class:`SamplingExplorer` holds an ``ipywidgets.VBox`` of controls that call :func:`explore` on
every change; it displays through ``_ipython_display_``, which IPython calls on ipywidgets 7 (Colab)
and 8 alike. Where no kernel runs (the HTML book), :func:`static_explorer` precomputes a plotly
figure whose slider steps swap the bars, the title and the continuations; :func:`show_figure` shows
it with the book's own plotly.js while the book is built (:func:`building_book`), and with plotly's
own renderer in any other kernel. Numbers go through :func:`fmt_number`, which never writes ``-0.000``.
"""
from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ._checks import check_int, eval_mode
from .decoding import apply_temperature, filter_probs, generate

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .models import GPT
    from .tokenizers import Tokenizer

__all__ = ["Exploration", "sampler_settings", "token_label", "fmt_number", "explore", "bars_html",
           "SamplingExplorer", "static_explorer", "show_figure", "building_book", "BOOK_PLOTLYJS"]

#: Where the book serves plotly.js, relative to a chapter page (the Makefile copies it there).
BOOK_PLOTLYJS = "../_static/vendor/plotly.min.js"
_LABELS = {" ": "␣", "\n": "⏎", "\t": "⇥"}
_ONE_LINE = str.maketrans({"\n": "⏎"})          # a continuation on one line
KEPT, DROPPED, TEMPERED, MODEL, VALID = "#1f77b4", "#d62728", "#c7c7c7", "#333333", "#2ca02c"
LOG_FLOOR = 1e-6          # the log-probability scale starts here: a bar of p <= 1e-6 has length 0


@dataclass(frozen=True)
class Exploration:
    """Everything the explorers show for one prompt and one sampler setting.

    ``labels``: printable token labels (V,). ``probs``: the model's next-token distribution
    ``softmax(logits)``, i.e. at ``T = 1`` (V,). ``tempered``: ``softmax(logits / T)`` (V,).
    ``filtered``: what is sampled from, after top-k / top-p / min-p (V,), zero outside ``kept``
    (V,) bool. ``entropy`` / ``entropy_filtered``: entropies in nats of ``tempered`` and
    ``filtered``. ``continuations``: texts sampled with these settings (``seed`` fixes them), each
    cut after its first newline; ``valid``: for each, the grammar's verdict, or ``None`` without a
    grammar. ``settings``: the ``filter_probs`` keyword arguments used.
    """

    labels: list[str]
    probs: torch.Tensor
    tempered: torch.Tensor
    filtered: torch.Tensor
    kept: torch.Tensor
    entropy: float
    entropy_filtered: float
    continuations: list[str]
    valid: list[bool | None]
    settings: dict


def sampler_settings(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0) -> dict:
    """Slider positions -> keyword arguments of ``lmcore.decoding.filter_probs``.

    ``top_k = 0``, ``top_p = 1`` and ``min_p = 0`` switch that filter off (``None``).
    """
    return {"temperature": float(temperature), "top_k": int(top_k) if top_k else None,
            "top_p": None if top_p is None or top_p == 1 else float(top_p),
            "min_p": float(min_p) if min_p else None}


def fmt_number(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals; a value that rounds to zero is ``0.000``, never ``-0.000``,
    and ``-inf`` (the log of a removed token) is ``-∞``."""
    if x == -math.inf:
        return "-∞"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


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


def _cut(text: str) -> str:
    return text[:text.index("\n") + 1] if "\n" in text else text


@torch.inference_mode()
def explore(model: GPT, tokenizer: Tokenizer, prompt: str, temperature: float = 1.0, top_k: int | None = None,
            top_p: float | None = None, min_p: float | None = None, seed: int = 0,
            max_new_tokens: int = 60, n_samples: int = 8,
            is_valid: Callable[[str], bool] | None = None) -> Exploration:
    """Next-token distributions of ``model`` after ``prompt`` for one sampler setting.

    ``top_k``, ``top_p``, ``min_p`` accept ``None`` or the slider conventions of
    :func:`sampler_settings` (0, 1, 0 = off). The ``n_samples`` continuations are one batched
    ``lmcore.generate`` call (the prompt repeated ``n_samples`` times) of up to ``max_new_tokens``
    tokens, from a generator seeded with ``seed``; each is cut after its first newline when the
    tokenizer has one. ``is_valid`` (e.g. ``ToyLanguage().is_valid``) judges each one: it gets the
    prompt's last line followed by the continuation, the story being written. Raises
    ``ValueError`` for an empty prompt or one with characters the tokenizer does not know.
    """
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty string")
    n_samples = check_int("n_samples", n_samples, low=1)
    settings = sampler_settings(temperature, top_k or 0, 1.0 if top_p is None else top_p, min_p or 0.0)
    ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.long, device=model.lm_head.weight.device)
    ids = ids[-model.config.context_length:]
    with eval_mode(model):
        logits = model(ids[None], last_only=True)[0][0, -1].float()          # (V,)
    filtered = filter_probs(logits, **settings)
    tempered = apply_temperature(logits, settings["temperature"])
    g = torch.Generator(device=ids.device).manual_seed(int(seed))
    newline = _newline_id(tokenizer)
    out = generate(model, ids[None].expand(n_samples, -1), max_new_tokens, stop_tokens=newline, generator=g,
                   **settings)
    texts = [tokenizer.decode(row) for row in out[:, ids.numel():].tolist()]
    texts = [_cut(t) for t in texts] if newline is not None else texts
    story = prompt.split("\n")[-1]
    valid = [None if is_valid is None else bool(is_valid(story + t)) for t in texts]
    vocab = [token_label(tokenizer.decode([i])) for i in range(model.config.vocab_size)]
    return Exploration(labels=vocab, probs=torch.softmax(logits, -1).cpu(), tempered=tempered.cpu(),
                       filtered=filtered.cpu(), kept=(filtered > 0).cpu(), entropy=_entropy(tempered),
                       entropy_filtered=_entropy(filtered), continuations=texts, valid=valid, settings=settings)


def _summary(ex: Exploration) -> str:
    return (f"kept {int(ex.kept.sum())} of {ex.kept.numel()} tokens · entropy {fmt_number(ex.entropy)} nats "
            f"→ {fmt_number(ex.entropy_filtered)} after filtering")


def _mark(valid: bool | None) -> str:
    return "" if valid is None else ("✓ valid  " if valid else "✗ invalid")


def _bar_length(p: float, log: bool) -> float:
    """Bar length in [0, 1]: ``p`` itself, or its place between ``LOG_FLOOR`` and 1 on a log scale."""
    if not log:
        return p
    return 0.0 if p <= LOG_FLOOR else 1 - math.log(p) / math.log(LOG_FLOOR)


def bars_html(ex: Exploration, top_n: int | None = None, log: bool = False) -> str:
    """An HTML bar chart of ``ex``: one row per token, most probable (after temperature) first.

    Three bars per token: dark, the model's own distribution (``T = 1``), the reference; grey, the
    probability after temperature; coloured, the probability actually sampled from (blue for kept
    tokens; a removed token's label is red and its bar empty). ``log=True`` draws log-probabilities
    (from ``LOG_FLOOR`` at the left to 1) and prints ``ln p`` in nats instead of ``p``.
    """
    order = ex.tempered.argsort(descending=True, stable=True)[:top_n]
    rows = []
    for i in order.tolist():
        m, t, f = float(ex.probs[i]), float(ex.tempered[i]), float(ex.filtered[i])
        colour = KEPT if bool(ex.kept[i]) else DROPPED
        bars = "".join(f'<div style="background:{c};height:{h}px;width:{100 * _bar_length(v, log):.2f}%"></div>'
                       for c, h, v in ((MODEL, 3, m), (TEMPERED, 7, t), (KEPT, 7, f)))
        shown = " → ".join(fmt_number((math.log(v) if v > 0 else -math.inf) if log else v) for v in (t, f))
        rows.append(
            f'<tr data-token="{i}" data-kept="{int(bool(ex.kept[i]))}">'
            f'<td style="font-family:monospace;text-align:right;padding-right:6px;color:{colour}">'
            f'{html.escape(ex.labels[i])}</td><td style="width:320px">{bars}</td>'
            f'<td style="font-family:monospace;padding-left:6px">{shown}</td></tr>')
    what = f"ln p (nats), bars from p = {LOG_FLOOR:g} to 1" if log else "p"
    return ('<table style="border-collapse:collapse;font-size:12px">'
            '<tr><th>token</th><th style="text-align:left">dark: model (T = 1) · grey: after temperature · '
            f'blue: sampled from</th><th>{what}</th></tr>{"".join(rows)}</table>')


def _continuations_html(ex: Exploration, prompt: str) -> str:
    """The sampled continuations, one per line after the prompt, each marked valid or invalid."""
    lines = []
    for text, ok in zip(ex.continuations, ex.valid):
        mark = "" if ok is None else f'<span style="color:{VALID if ok else DROPPED}">{_mark(ok)}</span> '
        lines.append(f"{mark}{html.escape(prompt[-20:].translate(_ONE_LINE))}"
                     f"<span style='color:{KEPT}'>{html.escape(text.translate(_ONE_LINE))}</span>")
    return (f"<b>sampled continuations ({len(lines)}):</b><br><code style='white-space:pre'>"
            + "<br>".join(lines) + "</code>")


class SamplingExplorer:
    """Live explorer: sliders for temperature, top-k, top-p, min-p, a scale switch (probability or
    log-probability), a seed and an editable prompt.

    Display it as the last expression of a cell or with ``display``: it shows through
    ``_ipython_display_``, on ipywidgets 7 and 8. Every change recomputes :func:`explore`
    and updates ``chart`` (the bars), ``summary`` (kept count, entropies) and ``continuation`` (the
    ``n_samples`` continuations, marked by ``is_valid`` when given); ``result`` holds the latest
    :class:`Exploration`. A prompt with characters the model does not know shows the error instead
    of raising.
    """

    def __init__(self, model: GPT, tokenizer: Tokenizer, prompt: str = "\n", max_new_tokens: int = 60,
                 top_n: int | None = 15, n_samples: int = 8, is_valid: Callable[[str], bool] | None = None):
        import ipywidgets as w

        self.model, self.tokenizer, self.max_new_tokens, self.top_n = model, tokenizer, max_new_tokens, top_n
        self.n_samples, self.is_valid = check_int("n_samples", n_samples, low=1), is_valid
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
        self.scale = w.ToggleButtons(options=["probability", "log probability"], value="probability",
                                     description="scale", style=style)
        self.seed = w.BoundedIntText(value=0, min=0, max=2**31 - 1, description="seed", style=style,
                                     layout=w.Layout(width="220px"))
        self.summary = w.HTML()
        self.chart = w.HTML()
        self.continuation = w.HTML()
        self.result: Exploration | None = None
        self.widget = w.VBox([self.prompt, w.HBox([w.VBox([self.temperature, self.top_k]),
                                                   w.VBox([self.top_p, self.min_p])]),
                              w.HBox([self.scale, self.seed]), self.summary, self.chart, self.continuation])
        for control in (self.prompt, self.temperature, self.top_k, self.top_p, self.min_p, self.scale, self.seed):
            control.observe(self.update, names="value")
        self.update()

    def update(self, change=None) -> None:
        """Recompute from the controls' current values and redraw (the widgets' callback)."""
        try:
            ex = explore(self.model, self.tokenizer, self.prompt.value, self.temperature.value, self.top_k.value,
                         self.top_p.value, self.min_p.value, self.seed.value, self.max_new_tokens,
                         self.n_samples, self.is_valid)
        except ValueError as e:
            self.summary.value = f'<b style="color:{DROPPED}">{html.escape(str(e))}</b>'
            return
        self.result = ex
        self.summary.value = html.escape(_summary(ex))
        self.chart.value = bars_html(ex, self.top_n, log=self.scale.value == "log probability")
        self.continuation.value = _continuations_html(ex, self.prompt.value)

    def _ipython_display_(self) -> None:
        # IPython calls this before any _repr_*_ method. ipywidgets 8 widgets display through
        # _repr_mimebundle_, ipywidgets 7 ones (Colab's) through _ipython_display_; display() of
        # the box picks whichever this version has.
        from IPython.display import display

        display(self.widget)


_DEFAULT_VALUES: dict[str, list[float]] = {"temperature": [0.1, 0.3, 0.5, 0.7, 1.0, 1.3, 1.6, 2.0, 3.0, 5.0],
                   "top_k": [1, 2, 3, 5, 8, 12, 20], "top_p": [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0],
                   "min_p": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8]}


def static_explorer(model: GPT, tokenizer: Tokenizer, prompt: str, vary: str = "temperature",
                    values: Sequence[float] | None = None, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None, min_p: float | None = None, seed: int = 0,
                    max_new_tokens: int = 60, n_samples: int = 8,
                    is_valid: Callable[[str], bool] | None = None) -> go.Figure:
    """A plotly figure with one slider over ``vary`` (one of temperature, top_k, top_p, min_p).

    Each slider step is a precomputed :func:`explore` with ``vary`` set to one of ``values`` and the
    other settings fixed. Bars (tokens in order of the model's probability), as traces 0-2: grey is
    the distribution after temperature, blue/red the distribution sampled from (red marks a removed
    token, with height 0), dark the model's own distribution (``T = 1``), the reference. Two buttons
    switch the y axis between probability and log-probability. The title gives the kept count and
    entropies; the annotation under the plot the ``n_samples`` continuations, marked by
    ``is_valid`` when given. The slider starts at the value closest to the fixed setting.
    """
    import plotly.graph_objects as go

    fixed: dict[str, Any] = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p}
    if vary not in fixed:
        raise ValueError(f"vary must be one of {sorted(fixed)}, got {vary!r}")
    values = list(_DEFAULT_VALUES[vary] if values is None else values)
    if not values:
        raise ValueError("values is empty: give at least one value for the slider")
    steps_data = [explore(model, tokenizer, prompt, seed=seed, max_new_tokens=max_new_tokens, n_samples=n_samples,
                          is_valid=is_valid, **{**fixed, vary: v}) for v in values]
    order = steps_data[0].probs.argsort(descending=True, stable=True).tolist()
    x = [steps_data[0].labels[i] for i in order]

    def view(ex: Exploration, value) -> tuple[dict, dict]:
        data = {"y": [[round(float(ex.tempered[i]), 7) for i in order],
                      [round(float(ex.filtered[i]), 7) for i in order]],
                "marker.color": [TEMPERED, [KEPT if bool(ex.kept[i]) else DROPPED for i in order]]}
        shown = [f"{_mark(ok)} {html.escape(t.translate(_ONE_LINE))}" for t, ok in zip(ex.continuations, ex.valid)]
        layout = {"title.text": f"{vary} = {value}: {_summary(ex)}",
                  "annotations[0].text": "continuations:<br>" + "<br>".join(shown)}
        return data, layout

    start = min(range(len(values)), key=lambda i: abs(values[i] - (fixed[vary] if fixed[vary] is not None
                                                                     else values[0])))
    data, layout = view(steps_data[start], values[start])
    model_probs = [round(float(steps_data[0].probs[i]), 7) for i in order]
    fig = go.Figure([go.Bar(x=x, y=data["y"][0], name="after temperature", marker_color=TEMPERED),
                     go.Bar(x=x, y=data["y"][1], name="sampled from (red: removed)",
                            marker_color=data["marker.color"][1]),
                     go.Bar(x=x, y=model_probs, name="model (T = 1)", marker_color=MODEL, opacity=0.6)])
    steps = []
    for value, ex in zip(values, steps_data):
        d, lay = view(ex, value)
        steps.append(dict(method="update", label=str(value), args=[d, lay, [0, 1]]))
    scales = [dict(label="probability", method="relayout", args=[{"yaxis.type": "linear", "yaxis.range": [0, 1],
                                                                  "yaxis.title.text": "probability"}]),
              dict(label="log probability", method="relayout",
                   args=[{"yaxis.type": "log", "yaxis.range": [math.log10(LOG_FLOOR), 0],
                          "yaxis.title.text": "probability (log scale)"}])]
    n_lines = len(steps_data[0].continuations)
    fig.update_layout(
        barmode="group", height=470 + 16 * n_lines, margin=dict(t=60, b=130 + 16 * n_lines),
        title=dict(text=layout["title.text"], font=dict(size=13)),
        xaxis=dict(title="next token (ordered by the model's probability)", type="category"),
        yaxis=dict(title="probability", range=[0, 1]),
        legend=dict(orientation="h", y=1.0, yanchor="bottom"),
        updatemenus=[dict(type="buttons", direction="right", buttons=scales, x=1.0, xanchor="right", y=1.18,
                          yanchor="bottom", showactive=True, active=0)],
        annotations=[dict(text=layout["annotations[0].text"], x=0, y=-0.3, xref="paper", yref="paper",
                          yanchor="top", showarrow=False, xanchor="left", align="left",
                          font=dict(family="monospace", size=11))],
        sliders=[dict(active=start, currentvalue=dict(prefix=f"{vary} = "), pad=dict(t=40), steps=steps)],
    )
    return fig


_BOOK_BUILDERS = ("jupyter-book", "jb", "sphinx-build")


def _ancestor_commands() -> list[list[str]]:
    """The command lines of this process's ancestors (Linux ``/proc``; empty elsewhere)."""
    commands: list[list[str]] = []
    pid = os.getppid()
    while pid > 1 and len(commands) < 16:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                commands.append([a.decode(errors="replace") for a in f.read().split(b"\0") if a])
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])      # field 4: the parent's pid
        except (OSError, ValueError, IndexError):
            break
    return commands


def building_book() -> bool:
    """Whether this kernel runs inside the HTML book's build (``jupyter-book build``).

    The environment variable ``LMCORE_BOOK`` decides when set (``1``: yes, ``0``: no). Otherwise the
    kernel looks for ``jupyter-book``, ``jb`` or ``sphinx-build`` among the programs that started it
    (myst-nb starts the kernel from the build process); where ``/proc`` is missing, that is False.
    """
    flag = os.environ.get("LMCORE_BOOK", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    return any(os.path.basename(arg) in _BOOK_BUILDERS for cmd in _ancestor_commands() for arg in cmd[:2])


def show_figure(fig: go.Figure, plotlyjs: str = BOOK_PLOTLYJS, book: bool | None = None) -> None:
    """Display ``fig``. In the book's build (``book=None`` asks :func:`building_book`): as HTML that
    loads plotly.js from ``plotlyjs`` (default: the book's offline copy, which exists only in the built
    book), together with plotly's JSON mimetype. Anywhere else: ``fig.show()``, plotly's renderer for
    this front end (JupyterLab's mimetype, Colab's HTML, a browser tab from a script)."""
    if not (building_book() if book is None else book):
        fig.show()
        return
    from IPython.display import display

    # typesetMath off: the book's MathJax 3 is not the MathJax 2 API plotly.js would call.
    page = fig.to_html(full_html=False, include_plotlyjs=plotlyjs, include_mathjax=False,
                       config={"typesetMath": False})
    display({"text/html": page, "application/vnd.plotly.v1+json": json.loads(fig.to_json())}, raw=True)
