"""Draw the book's four explanatory diagrams as SVG files, by code, byte-identical on every rerun.

    python tools/diagrams.py [--out DIR]      # default: _assets/figures/

The diagrams are source: the SVG files are committed, and tests/test_figures.py redraws them into a
temporary folder and compares the bytes. They live in `_assets/` (the book's static folder, which the
instructor build copies too), and chapters show them with a MyST ``{figure}`` directive that carries
the caption and the alt text. `DIAGRAMS` names each file with its title, alt text and caption, so
the chapters and the test quote one source.

Reruns are byte-identical because matplotlib's SVG writer is given a fixed hash salt (the ids of
clip paths and glyphs), no date, and text drawn as paths (no dependence on the reader's fonts). The
numbers in the attention diagram come from a seeded generator.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_assets" / "figures"

DIAGRAMS = {
    "generation_loop.svg": {
        "title": "The generation loop",
        "alt": ("Flow diagram: the context tokens go into the language model, which outputs one logit per "
                "vocabulary token; softmax turns the logits into the next-token distribution; one token is "
                "sampled from it; if it is the end-of-sequence token the loop stops and returns the text, "
                "otherwise the token is appended to the context and the loop runs again."),
        "caption": ("The generation loop. The model maps the context to logits, softmax turns them into "
                    "$p(\\cdot \\mid x_{<t})$, one token is sampled, and the loop appends it and repeats until "
                    "it draws `<EOS>`. The samplers of [Chapter 8](08_sampling.ipynb) change only the sampling step."),
    },
    "mlp_lm.svg": {
        "title": "The MLP language model",
        "alt": ("Diagram of the MLP language model: the previous k tokens are each looked up in one shared "
                "embedding table C, the k embedding vectors are concatenated into one vector x of length k "
                "times e, a tanh hidden layer maps it to m hidden units, and an output layer gives one logit "
                "per vocabulary token, which softmax turns into the distribution of the next token."),
        "caption": ("The MLP language model {cite}`bengio2003`, as `lmcore.MLPLanguageModel` builds it: the "
                    "$k$ previous tokens share one embedding table $C$, their embeddings are concatenated into "
                    "$x$, and the hidden layer $h = \\tanh(Hx + d)$ and the output layer $Uh + b$ give one "
                    "logit per vocabulary token."),
    },
    "transformer_block.svg": {
        "title": "A pre-norm transformer block inside GPT",
        "alt": ("Diagram of a GPT-style transformer: token and position embeddings are summed into the "
                "residual stream; inside each of L blocks, the stream passes through layer norm and causal "
                "multi-head self-attention, whose output is added back to the stream, then through layer norm "
                "and an MLP (linear layer to 4C, GELU, linear layer back to C), whose output is added back "
                "too; after the last block a final layer norm and the output layer give the logits."),
        "caption": ("A pre-norm transformer block (GPT-2's arrangement {cite}`radford2019`, `lmcore.GPT`'s default). Each "
                    "sub-layer reads a layer-normalised copy of the residual stream and adds its output back, "
                    "so the stream itself passes from embedding to output unchanged except by additions."),
    },
    "attention_matrices.svg": {
        "title": "Causal self-attention as matrix products",
        "alt": ("Attention for four positions drawn as heat-mapped matrices: Q (4 by 3) times K transposed "
                "(3 by 4) gives the 4 by 4 score matrix, divided by the square root of d; adding the causal "
                "mask sets every entry above the diagonal to minus infinity; softmax along each row gives a "
                "lower-triangular weight matrix whose rows sum to 1 (the first row is 1, 0, 0, 0); that matrix "
                "times V (4 by 3) gives the output, one row per position, each a weighted average of the value "
                "rows at or before it."),
        "caption": ("Causal self-attention as matrices, for $T = 4$ positions and $d = 3$ (random numbers, "
                    "seed 0): the scores $QK^\\top / \\sqrt d$, the causal mask ($-\\infty$ above the diagonal), "
                    "softmax along each row, and the weighted sum of the values: row $t$ of the output mixes only "
                    "the value rows $1 \\dots t$."),
    },
}

BOX = dict(boxstyle="round,pad=0.02,rounding_size=0.06", linewidth=1.2)
COLORS = {"data": "#e8f1fb", "model": "#fde9d9", "op": "#eaf6e6", "stop": "#f3e8f8", "edge": "#333333"}


def _box(ax, x, y, w, h, text, kind="op", size=11):
    """A rounded box centred at (x, y) with centred text."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, facecolor=COLORS[kind], edgecolor=COLORS["edge"], **BOX))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, linespacing=1.35)


def _arrow(ax, start, end, text=None, offset=(0.0, 0.12), connection="arc3", size=9.5):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, linewidth=1.3,
                                 color=COLORS["edge"], connectionstyle=connection, shrinkA=0, shrinkB=0))
    if text:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, text, ha="center", va="bottom", fontsize=size, color="#444444")


def _canvas(width, height, title):
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    ax.text(width / 2, height - 0.3, title, ha="center", va="center", fontsize=13, weight="bold")
    return fig, ax


def draw_generation_loop():
    fig, ax = _canvas(10.5, 4.8, DIAGRAMS["generation_loop.svg"]["title"])
    y, y2 = 3.4, 1.9
    _box(ax, 1.25, y, 2.1, 1.0, "context\n$x_1, \\dots, x_{t-1}$", "data")
    _box(ax, 3.9, y, 1.6, 1.0, "language\nmodel", "model")
    _box(ax, 6.2, y, 1.5, 1.0, "softmax", "op")
    _box(ax, 8.85, y, 2.3, 1.0, "sample $x_t$ from\n$p(\\cdot \\mid x_{<t})$", "op")
    _arrow(ax, (2.3, y), (3.1, y))
    _arrow(ax, (4.7, y), (5.45, y), "logits $z$", offset=(0, 0.06))
    _arrow(ax, (6.95, y), (7.7, y), "$p$", offset=(0, 0.06))
    # The decision: stop at <EOS>, otherwise append and go round again.
    _box(ax, 8.85, y2, 2.3, 0.8, "$x_t$ = <EOS>?", "stop")
    _arrow(ax, (8.85, y - 0.5), (8.85, y2 + 0.4))
    _box(ax, 3.9, y2, 3.4, 0.8, "append $x_t$: the context grows by one", "data", size=10)
    _arrow(ax, (7.7, y2), (5.6, y2), "no", offset=(0, 0.05))
    _arrow(ax, (2.2, y2), (1.25, y - 0.5), connection="arc3,rad=-0.3")
    _box(ax, 8.85, 0.55, 2.3, 0.6, "stop: return the text", "stop", size=10)
    _arrow(ax, (8.85, y2 - 0.4), (8.85, 0.85), "yes", offset=(0.3, -0.12))
    ax.text(0.2, 0.55, "one model call per token;\nonly the sampling step differs between samplers",
            ha="left", va="center", fontsize=9, style="italic", color="#555555")
    return fig


def draw_mlp_lm():
    fig, ax = _canvas(11.5, 4.6, DIAGRAMS["mlp_lm.svg"]["title"])
    rows = [3.3, 2.3, 1.3]
    for y, name in zip(rows, ["$x_{t-3}$", "$x_{t-2}$", "$x_{t-1}$"]):
        _box(ax, 0.75, y, 0.95, 0.65, name, "data")
        _box(ax, 2.45, y, 1.5, 0.65, f"C[{name}]", "model", size=10)
        _arrow(ax, (1.23, y), (1.7, y))
        _arrow(ax, (3.2, y), (4.15, 2.3 + (y - 2.3) * 0.35))
    ax.text(0.75, 0.55, "previous k tokens\n(here k = 3)", ha="center", va="center", fontsize=9.5, color="#444444")
    ax.text(2.45, 0.55, "one shared table C\n(|V| × e), a row per token", ha="center", va="center", fontsize=9.5, color="#444444")
    _box(ax, 4.95, 2.3, 1.6, 1.9, "concatenate\n\nvector $x$ of\nlength k·e", "op", size=10)
    _box(ax, 7.05, 2.3, 1.8, 1.3, "hidden layer\n$h = \\tanh(H x + d)$\nm units", "model", size=10)
    _box(ax, 9.0, 2.3, 1.4, 1.3, "logits\n$U h + b$\n|V| scores", "model", size=10)
    _box(ax, 10.75, 2.3, 1.3, 1.3, "softmax:\nnext-token\ndistribution", "op", size=10)
    _arrow(ax, (5.75, 2.3), (6.15, 2.3))
    _arrow(ax, (7.95, 2.3), (8.3, 2.3))
    _arrow(ax, (9.7, 2.3), (10.1, 2.3))
    ax.text(8.0, 0.55, "the same weights at every position: a sliding window of k tokens",
            ha="center", va="center", fontsize=9.5, style="italic", color="#555555")
    return fig


def draw_transformer_block():
    fig, ax = _canvas(8.2, 9.0, DIAGRAMS["transformer_block.svg"]["title"])
    sx = 2.3    # the residual stream runs up this vertical line
    ax.add_patch(FancyBboxPatch((0.55, 1.95), 7.2, 5.25, facecolor="#fafafa", edgecolor="#888888",
                                linestyle="--", boxstyle="round,pad=0.02,rounding_size=0.12", linewidth=1.0))
    ax.text(7.6, 7.0, "block, repeated L times\n(n_layer)", ha="right", va="top", fontsize=9.5, color="#444444")
    _box(ax, sx, 0.85, 3.6, 0.8, "token embedding + position embedding\n$x$: T × C", "data", size=10)
    _box(ax, sx, 8.05, 3.6, 0.8, "final layer norm, output layer\nlogits: T × |V|", "data", size=10)
    y_next = 1.25   # where the stream leaves the box or the sum below
    # Two sub-layers, each: branch off the stream, normalise, transform, add back.
    for y0, name, detail in [(2.55, "causal multi-head\nself-attention", "mixes positions"),
                             (4.75, "MLP: linear C → 4C,\nGELU, linear 4C → C", "per position")]:
        add_y = y0 + 1.75
        ax.add_patch(plt.Circle((sx, add_y), 0.2, facecolor="white", edgecolor=COLORS["edge"], linewidth=1.3))
        ax.text(sx, add_y, "+", ha="center", va="center", fontsize=14)
        ax.plot([sx, sx], [y_next, y0], color=COLORS["edge"], linewidth=1.3)
        _arrow(ax, (sx, y0), (sx, add_y - 0.2))
        ax.text(sx - 0.15, y0 + 0.85, "residual\nstream", ha="right", va="center", fontsize=9, color="#555555")
        _box(ax, 4.3, y0 + 0.45, 1.9, 0.55, "layer norm", "op", size=10)
        _box(ax, 4.3, y0 + 1.3, 2.5, 0.85, name, "model", size=10)
        ax.text(5.7, y0 + 1.3, detail, ha="left", va="center", fontsize=9, style="italic", color="#555555")
        _arrow(ax, (sx, y0 + 0.1), (3.35, y0 + 0.45), connection="arc3,rad=0.25")
        _arrow(ax, (4.3, y0 + 0.73), (4.3, y0 + 0.87))
        _arrow(ax, (4.3, y0 + 1.73), (sx + 0.2, add_y), connection="arc3,rad=0.3")
        y_next = add_y + 0.2
    _arrow(ax, (sx, y_next), (sx, 7.65))
    return fig


def _matrix(ax, m, title, labels=None, cmap="Blues", vmin=None, vmax=None, fmt="{:.2f}"):
    """One matrix as a heat map with its entries written in."""
    finite = np.where(np.isfinite(m), m, np.nan)
    image = ax.imshow(finite, cmap=cmap, vmin=vmin, vmax=vmax)
    for (i, j), v in np.ndenumerate(m):
        if np.isneginf(v):   # a masked entry: grey, whatever the colour map
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color="#d9d9d9"))
            ax.text(j, i, "−∞", ha="center", va="center", fontsize=8.5)
            continue
        dark = image.norm(v) > 0.6   # white digits on the dark end of the colour map
        ax.text(j, i, fmt.format(v).replace("-", "−"), ha="center", va="center", fontsize=8.5,
                color="white" if dark else "black")
    ax.set_title(title, fontsize=10.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if labels:   # rows, columns
        ax.set_xlabel(f"rows: {labels[0]}, columns: {labels[1]}", fontsize=8.5)


def draw_attention_matrices():
    rng = np.random.default_rng(0)
    T, d = 4, 3
    q, k, v = (rng.normal(size=(T, d)).round(1) for _ in range(3))
    scores = q @ k.T / np.sqrt(d)
    mask = np.where(np.tril(np.ones((T, T))) == 1, 0.0, -np.inf)
    masked = scores + mask
    weights = np.exp(masked - masked.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    out = weights @ v
    assert np.allclose(weights.sum(axis=1), 1) and np.all(np.triu(weights, 1) == 0)

    fig = plt.figure(figsize=(12.5, 6.2))
    fig.suptitle(DIAGRAMS["attention_matrices.svg"]["title"], fontsize=13, weight="bold", y=0.98)
    grid = fig.add_gridspec(2, 9, width_ratios=[3, 0.55, 4, 0.55, 4, 0.55, 4, 0.55, 4],
                            left=0.02, right=0.98, top=0.86, bottom=0.06, hspace=0.45, wspace=0.05)
    top = [(0, q, "Q  (T × d)", ("position", "feature")), (2, k.T, "Kᵀ  (d × T)", ("feature", "key position")),
           (4, scores, "S = Q Kᵀ / √d", ("query", "key")), (6, masked, "S + mask", ("query", "key")),
           (8, weights, "A = softmax(S + mask)\nrow by row", ("query", "key"))]
    for col, m, title, labels in top:
        ax = fig.add_subplot(grid[0, col])
        _matrix(ax, m, title, labels, cmap="Greens" if col == 8 else "Blues",
                vmin=0 if col == 8 else None, vmax=1 if col == 8 else None)
    for col, sign in [(1, "·"), (3, "="), (5, "+"), (7, "→")]:
        ax = fig.add_subplot(grid[0, col])
        ax.set_axis_off()
        ax.text(0.5, 0.5, sign, ha="center", va="center", fontsize=20)
    bottom = [(2, weights, "A  (T × T)", "Greens"), (4, v, "V  (T × d)", "Blues"), (6, out, "output = A V  (T × d)", "Purples")]
    for col, m, title, cmap in bottom:
        ax = fig.add_subplot(grid[1, col])
        _matrix(ax, m, title, ("position", "key" if col == 2 else "feature"), cmap=cmap,
                vmin=0 if col == 2 else None, vmax=1 if col == 2 else None)
    for col, sign in [(3, "·"), (5, "=")]:
        ax = fig.add_subplot(grid[1, col])
        ax.set_axis_off()
        ax.text(0.5, 0.5, sign, ha="center", va="center", fontsize=20)
    note = fig.add_subplot(grid[1, 0])
    note.set_axis_off()
    note.text(0.0, 0.5, "Each row of A sums to 1\nand is zero right of the\ndiagonal: position t\nattends only to 1 … t.",
              ha="left", va="center", fontsize=9.5, color="#444444")
    return fig


DRAW = {"generation_loop.svg": draw_generation_loop, "mlp_lm.svg": draw_mlp_lm,
        "transformer_block.svg": draw_transformer_block, "attention_matrices.svg": draw_attention_matrices}


def write_all(out: Path = OUT) -> list[Path]:
    """Draw every diagram into ``out`` (created if missing) and return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with plt.rc_context({"svg.hashsalt": "lm-book-diagrams", "svg.fonttype": "path", "font.family": "DejaVu Sans",
                         "mathtext.fontset": "dejavusans", "font.size": 11}):
        for name, draw in DRAW.items():
            fig = draw()
            path = out / name
            fig.savefig(path, format="svg", metadata={"Date": None, "Title": DIAGRAMS[name]["title"],
                                                      "Description": DIAGRAMS[name]["alt"]})
            plt.close(fig)
            paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the SVG files (default: %(default)s)")
    for written in write_all(parser.parse_args().out):
        print(f"wrote {written.relative_to(ROOT) if written.is_relative_to(ROOT) else written} "
              f"({written.stat().st_size:,} bytes)")
