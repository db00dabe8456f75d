"""Checks for the exercises of the chapter "Sampling".

``check_top_p(fn)`` and ``check_min_p(fn)`` run the student's filter on fixed and random
distributions, compare it with a reference written here (a plain loop over sorted probabilities,
independent of ``lmcore.decoding.sampling``) and print ``PASS`` or ``FAIL`` with a hint.
``check_penalty_window(repeats)`` checks a measurement: the repeated word 4-grams of greedy decoding
with a repetition penalty that sees only the last W characters, against the same run made here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import torch

from ..decoding import apply_repetition_penalty, context_window_start
from ..zoo import pretrained
from ._check import CheckFailed, CheckResult, expect_measurements, run_check

__all__ = ["check_top_p", "check_min_p", "check_penalty_window", "PENALTY_WINDOWS", "PENALTY", "PENALTY_CHARS"]

#: the experiment of the penalty-window exercise: greedy decoding of PENALTY_CHARS characters after a
#: newline, penalty PENALTY on every character among the last W of the text, for each W here
PENALTY_WINDOWS = (16, 32, 64, 128)
PENALTY, PENALTY_CHARS = 1.5, 600


def _reference_top_p(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Row by row: walk down the sorted probabilities until the kept mass reaches ``p``."""
    out = torch.zeros_like(probs, dtype=torch.float64)
    flat_in, flat_out = probs.reshape(-1, probs.shape[-1]).double(), out.view(-1, probs.shape[-1])
    for row, dst in zip(flat_in, flat_out):
        mass = 0.0
        for i in sorted(range(len(row)), key=lambda j: -float(row[j])):
            if mass >= p:
                break
            dst[i] = row[i]
            mass += float(row[i])
        dst /= dst.sum()
    return out


def _reference_min_p(probs: torch.Tensor, min_p: float) -> torch.Tensor:
    probs = probs.double()
    kept = torch.where(probs >= min_p * probs.max(dim=-1, keepdim=True).values, probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)


def _distributions(generator: torch.Generator) -> torch.Tensor:
    """A (3, 4, 12) batch of distinct-valued distributions, from nearly flat to very peaked."""
    scale = torch.tensor([0.3, 1.5, 4.0])[:, None, None]
    return torch.softmax(scale * torch.randn(3, 4, 12, generator=generator), dim=-1)


def _shown(values) -> list[float]:
    """Probabilities as a reader would write them: 0.05, not float32's 0.05000000074505806."""
    return [round(float(x), 4) for x in values]


def _mask(probs: torch.Tensor, keep: Callable[[list[float]], list[bool]]) -> torch.Tensor:
    """The boolean mask ``keep`` gives to every row of ``probs`` (a plain-Python rule per row)."""
    rows = probs.reshape(-1, probs.shape[-1]).double().tolist()
    return torch.tensor([keep(r) for r in rows], dtype=torch.bool).reshape(probs.shape)


def _compare(fn: Callable, probs: torch.Tensor, param: float, reference: Callable, what: str,
             mistakes: Callable[[torch.Tensor, float], list[tuple[torch.Tensor, str]]], fewer: str, more: str) -> None:
    """Compare ``fn(probs, param)`` with ``reference``.  ``mistakes(probs, param)`` lists the kept
    masks of known wrong answers with the hint each deserves; ``fewer`` / ``more`` are the hints
    for any other set that keeps more / fewer tokens than the right one."""
    out = fn(probs.clone(), param)
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what}: return a tensor of probabilities, got {type(out).__name__}")
    if out.shape != probs.shape:
        raise CheckFailed(f"{what}: the result should have the input's shape {tuple(probs.shape)}, "
                          f"got {tuple(out.shape)}")
    want = reference(probs, param)
    kept_out, kept_want = out.double() > 0, want > 0
    if not torch.equal(kept_out, kept_want):
        V = probs.shape[-1]
        row = int((kept_out != kept_want).reshape(-1, V).any(-1).nonzero()[0, 0])
        n_out, n_want = int(kept_out.reshape(-1, V)[row].sum()), int(kept_want.reshape(-1, V)[row].sum())
        values = probs.reshape(-1, V)[row]
        where = f"for the distribution {_shown(values)}" if V <= 8 else (
            f"for the row {row} of the batch (sorted: {_shown(values.sort(descending=True)[0][:6])}, ...)")
        known = [hint for mask, hint in mistakes(probs, param) if torch.equal(kept_out, mask)]
        if known:
            raise CheckFailed(f"{what}: {where} you kept {n_out} token(s): {known[0]}")
        if n_out == n_want:
            raise CheckFailed(f"{what}: {where} you kept as many tokens as the right set ({n_out}) but not the "
                              "same ones")
        raise CheckFailed(f"{what}: {where} you kept {n_out} token(s); the right set has "
                          f"{'more' if n_want > n_out else 'fewer'}. {more if n_want > n_out else fewer}")
    if not torch.allclose(out.double(), want, atol=1e-5):
        raise CheckFailed(f"{what}: you kept the right tokens but their probabilities are off: renormalise the "
                          "kept probabilities so they sum to 1")


def _top_p_mistakes(probs: torch.Tensor, p: float) -> list[tuple[torch.Tensor, str]]:
    """The masks of the usual wrong answers to top-p, each with the hint it deserves."""
    def rank_mask(row: list[float], keep_rank: Callable[[float, float], bool]) -> list[bool]:
        order = sorted(range(len(row)), key=lambda j: -row[j])
        kept, mass = [False] * len(row), 0.0
        for i in order:
            kept[i] = keep_rank(mass, row[i])
            mass += row[i]
        return kept

    def sorted_order(row: list[float]) -> list[bool]:
        # the right mask, but laid over the positions of the sorted row, not the vocabulary's
        return rank_mask(sorted(row, reverse=True), lambda before, _: before < p)

    return [
        (_mask(probs, lambda r: rank_mask(r, lambda before, x: before + x <= p or before == 0)),
         "the token whose probability makes the total reach p is missing: check the comparison at the boundary"),
        (_mask(probs, sorted_order),
         "the mask you built is in sorted order, but the input is not sorted: put the mask (or the "
         "probabilities) back in vocabulary order before using it"),
    ]


def _min_p_mistakes(probs: torch.Tensor, min_p: float) -> list[tuple[torch.Tensor, str]]:
    return [
        (_mask(probs, lambda r: [x >= min_p for x in r]),
         "you compared the probabilities with min_p itself; what should the threshold depend on?"),
        (_mask(probs, lambda r: [x > min_p * max(r) for x in r]),
         "a token exactly at the threshold should be kept (>=, not >)"),
    ]


def check_top_p(top_p_filter: Callable[[torch.Tensor, float], torch.Tensor], quiet: bool = False) -> CheckResult:
    """Check ``top_p_filter(probs, p)``: probabilities (..., V) -> the nucleus (the smallest set of most
    probable tokens whose total is at least ``p``) renormalised, other entries 0."""
    more = "Is the token that makes the total reach p included?"
    fewer = "Do you stop as soon as the kept total reaches p?"

    def body() -> None:
        probs = torch.tensor([0.05, 0.5, 0.15, 0.3])       # unsorted on purpose
        for p in (0.45, 0.7, 0.9, 0.97):
            _compare(top_p_filter, probs, p, _reference_top_p, f"p = {p}", _top_p_mistakes, fewer, more)
        g = torch.Generator().manual_seed(8)
        batch = _distributions(g)
        for p in (0.3, 0.6, 0.9, 0.99):
            _compare(top_p_filter, batch, p, _reference_top_p, f"a (3, 4, 12) batch with p = {p}",
                     _top_p_mistakes, fewer, more)

    return run_check("top_p_filter", body, quiet)


def check_min_p(min_p_filter: Callable[[torch.Tensor, float], torch.Tensor], quiet: bool = False) -> CheckResult:
    """Check ``min_p_filter(probs, min_p)``: probabilities (..., V) -> tokens with probability at least
    ``min_p`` times the largest one in their row kept, renormalised, other entries 0."""
    more = "Is your threshold too high?"
    fewer = "Is your threshold too low?"

    def body() -> None:
        probs = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.7, 0.05, 0.15, 0.1]])
        for m in (0.0, 0.3, 0.5, 1.0):
            _compare(min_p_filter, probs, m, _reference_min_p, f"min_p = {m}", _min_p_mistakes, fewer, more)
        g = torch.Generator().manual_seed(9)
        batch = _distributions(g)
        for m in (0.05, 0.2, 0.6):
            _compare(min_p_filter, batch, m, _reference_min_p, f"a (3, 4, 12) batch with min_p = {m}",
                     _min_p_mistakes, fewer, more)

    return run_check("min_p_filter", body, quiet)


def _repeated_4grams(text: str) -> float:
    """Fraction of the word 4-grams of ``text`` that already occurred earlier in it (the chapter's measure)."""
    words = text.split()
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    return sum(g in set(grams[:i]) for i, g in enumerate(grams)) / max(1, len(grams))


@torch.no_grad()
def _greedy_penalised(window: int | None) -> str:
    """The chapter's toy-char model, greedy, with the penalty on the last ``window`` ids (None: all);
    the same context window and KV cache as ``lmcore.generate``."""
    model, tok = pretrained("toy-char", device="cpu", progress=False)
    seq = torch.tensor([tok.encode("\n") + [0] * PENALTY_CHARS])
    cache, start, n = model.make_cache(1), 0, 1
    for _ in range(PENALTY_CHARS):
        start = context_window_start(n, start, model.config.context_length)
        if cache.length != n - 1 - start:            # first step, or the window restarted
            cache.reset()
            logits = model(seq[:, start:n], kv_cache=cache, last_only=True)[0][:, -1]
        else:
            logits = model(seq[:, n - 1:n], kv_cache=cache, last_only=True)[0][:, -1]
        seen = seq[:, :n] if window is None else seq[:, max(0, n - window):n]
        seq[0, n] = apply_repetition_penalty(logits, seen, PENALTY).argmax(-1)[0]
        n += 1
    return tok.decode(seq[0, 1:].tolist())


@lru_cache(maxsize=1)
def _penalty_references() -> dict[int | None, float]:
    return {w: _repeated_4grams(_greedy_penalised(w)) for w in (*PENALTY_WINDOWS, None)}


def check_penalty_window(repeats: Mapping[int, float], quiet: bool = False) -> CheckResult:
    """Check the measured ``repeats``: ``{W: fraction of repeated word 4-grams}`` of greedy decoding of
    ``PENALTY_CHARS`` characters after a newline, with the repetition penalty ``PENALTY`` applied to
    the characters among the last ``W`` of the text so far, for every W in ``PENALTY_WINDOWS``.
    Each value must be within 0.02 of the same run made here."""
    def body() -> None:
        values = expect_measurements(repeats, "window_repeats", PENALTY_WINDOWS, "W", "a fraction of word 4-grams",
                                     "run the greedy decoding once per window W and fill in the dict")
        if any(not 0 <= v <= 1 for v in values.values()):
            raise CheckFailed("a fraction lies in [0, 1]: report 0.25, not 25 (%)")
        refs = _penalty_references()
        if len(set(refs[w] for w in PENALTY_WINDOWS)) > 1 and all(abs(values[w] - refs[None]) <= 0.02
                                                                  for w in PENALTY_WINDOWS):
            raise CheckFailed("every W gives the same number, the one of a penalty on the whole text: penalise "
                              "only the ids among the last W of the sequence, recomputed at every step")
        for w in PENALTY_WINDOWS:
            if abs(values[w] - refs[w]) > 0.02:
                raise CheckFailed(f"window_repeats[{w}] is off: decode greedily (temperature 0) for {PENALTY_CHARS} "
                                  f"characters without stopping at newlines, apply the penalty {PENALTY} to the "
                                  "logits before the arg-max, and count word 4-grams with the chapter's "
                                  "repeated_ngram_fraction")

    return run_check("penalty_window", body, quiet)
