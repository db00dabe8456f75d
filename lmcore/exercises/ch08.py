"""Checks for the exercises of the chapter "Sampling".

``check_top_p(fn)`` and ``check_min_p(fn)`` run the student's filter on fixed and random
distributions, compare it with a reference written here (a plain loop over sorted probabilities,
independent of ``lmcore.decoding.sampling``) and print ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ._check import CheckFailed, run_check

__all__ = ["check_top_p", "check_min_p"]


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


def _compare(fn: Callable, probs: torch.Tensor, param: float, reference: Callable, what: str, hint: str) -> None:
    out = fn(probs.clone(), param)
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what}: return a tensor of probabilities, got {type(out).__name__}")
    if out.shape != probs.shape:
        raise CheckFailed(f"{what}: the result should have the input's shape {tuple(probs.shape)}, "
                          f"got {tuple(out.shape)}")
    want = reference(probs, param)
    kept_out, kept_want = out.double() > 0, want > 0
    if not torch.equal(kept_out, kept_want):
        row = (kept_out != kept_want).reshape(-1, probs.shape[-1]).any(-1).nonzero()[0, 0]
        n_out, n_want = int(kept_out.reshape(-1, probs.shape[-1])[row].sum()), int(kept_want.reshape(
            -1, probs.shape[-1])[row].sum())
        shown = sorted(probs.reshape(-1, probs.shape[-1])[row].tolist(), reverse=True)[:8]
        raise CheckFailed(f"{what}: for the distribution {[round(x, 3) for x in shown]}... (sorted) you kept "
                          f"{n_out} token(s); the right set has {'more' if n_want > n_out else 'fewer'}. {hint}")
    if not torch.allclose(out.double(), want, atol=1e-5):
        raise CheckFailed(f"{what}: you kept the right tokens but their probabilities are off: renormalise the "
                          "kept probabilities so they sum to 1")


def check_top_p(top_p_filter: Callable[[torch.Tensor, float], torch.Tensor], quiet: bool = False) -> bool:
    """Check ``top_p_filter(probs, p)``: probabilities (..., V) -> the nucleus (the smallest set of most
    probable tokens whose total is at least ``p``) renormalised, other entries 0."""
    hint = ("The nucleus is the *smallest* set whose total probability is at least p: a token is kept when "
            "the mass of the tokens ranked above it is still below p (the top token is always kept)")

    def body() -> None:
        probs = torch.tensor([0.05, 0.5, 0.15, 0.3])       # unsorted on purpose
        for p, n in [(0.45, 1), (0.7, 2), (0.9, 3), (0.97, 4)]:
            _compare(top_p_filter, probs, p, _reference_top_p, f"p = {p} on {probs.tolist()} (keeps {n})", hint)
        g = torch.Generator().manual_seed(8)
        batch = _distributions(g)
        for p in (0.3, 0.6, 0.9, 0.99):
            _compare(top_p_filter, batch, p, _reference_top_p, f"a (3, 4, 12) batch with p = {p}", hint)

    return run_check("top_p_filter", body, quiet)


def check_min_p(min_p_filter: Callable[[torch.Tensor, float], torch.Tensor], quiet: bool = False) -> bool:
    """Check ``min_p_filter(probs, min_p)``: probabilities (..., V) -> tokens with probability at least
    ``min_p`` times the largest one in their row kept, renormalised, other entries 0."""
    hint = "The threshold is relative: min_p times the largest probability of the same row (a token at it is kept)"

    def body() -> None:
        probs = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.7, 0.05, 0.15, 0.1]])
        for m in (0.0, 0.3, 0.5, 1.0):
            _compare(min_p_filter, probs, m, _reference_min_p, f"min_p = {m} on {probs.tolist()}", hint)
        g = torch.Generator().manual_seed(9)
        batch = _distributions(g)
        for m in (0.05, 0.2, 0.6):
            _compare(min_p_filter, batch, m, _reference_min_p, f"a (3, 4, 12) batch with min_p = {m}", hint)

    return run_check("min_p_filter", body, quiet)
