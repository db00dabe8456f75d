"""Checks for the exercises of chapter 2, "N-gram models".

Each ``check_<name>(fn)`` runs the student's function on fixed and random cases, compares it with
``lmcore.NGramLM`` (or a direct formula) and prints ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..models import NGramConfig, NGramLM
from ._check import CheckFailed, run_check

__all__ = ["check_bigram_probs", "check_jelinek_mercer"]


def _as_matrix(out, shape: tuple[int, ...], what: str) -> np.ndarray:
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise CheckFailed(f"{what} should be an array of numbers, got {type(out).__name__}") from e
    if arr.shape != shape:
        raise CheckFailed(f"{what} should have shape {shape}, got {arr.shape}")
    return arr


def _cases(seed: int = 0):
    rng = np.random.default_rng(seed)
    yield "ids [0, 1, 0, 2, 0, 1] over 4 tokens", [0, 1, 0, 2, 0, 1], 4
    yield "300 random ids over 7 tokens", rng.integers(0, 7, 300).tolist(), 7
    yield "ids using only 3 of 10 tokens", rng.integers(0, 3, 50).tolist(), 10


# --- exercise 1: add-ε bigram probabilities ---------------------------------------------------------

def check_bigram_probs(bigram_probs: Callable[[list[int], int, float], np.ndarray], quiet: bool = False) -> bool:
    """Check ``bigram_probs(ids, vocab_size, eps)`` → ``(V, V)`` array, row ``a`` = p(· | a) with add-ε."""
    def body() -> None:
        for case, ids, V in _cases():
            for eps in (1.0, 0.1):
                got = _as_matrix(bigram_probs(list(ids), V, eps), (V, V), f"{case}, eps={eps}")
                lm = NGramLM(NGramConfig(2, V, smoothing="add-eps", eps=eps)).fit(ids)
                want = np.stack([lm.next_token_probs([a]) for a in range(V)])
                rows = got.sum(axis=1)
                if not np.allclose(rows, 1.0, atol=1e-9):
                    a = int(np.argmax(np.abs(rows - 1)))
                    raise CheckFailed(f"{case}, eps={eps}: row {a} sums to {rows[a]:.4f}, not 1. Each row "
                                      "is a distribution over the next token: divide by the count of the "
                                      "context plus eps times the vocabulary size")
                if not np.allclose(got, want, atol=1e-9):
                    a, b = (int(i) for i in np.unravel_index(np.argmax(np.abs(got - want)), got.shape))
                    raise CheckFailed(f"{case}, eps={eps}: p({b} | {a}) is {got[a, b]:.4f}, which is wrong. "
                                      "Count how often token a is followed by b, add eps, and normalise "
                                      "over every possible b (a context seen only at the very end of the "
                                      "ids is followed by nothing)")

    return run_check("bigram_probs", body, quiet)


# --- exercise 2: Jelinek–Mercer interpolation -------------------------------------------------------

def check_jelinek_mercer(jelinek_mercer: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
                         quiet: bool = False) -> bool:
    """Check ``jelinek_mercer(unigram, bigram, lam)`` → ``(V, V)``: λ·p(b|a) + (1-λ)·p(b)."""
    def body() -> None:
        rng = np.random.default_rng(1)
        for V in (3, 8):
            uni = rng.dirichlet(np.ones(V))
            bi = rng.dirichlet(np.ones(V), size=V)
            bi[0] = 0.0  # a context never seen: no bigram evidence
            bi[0, 0] = 1.0
            for lam in (0.0, 0.3, 0.9, 1.0):
                got = _as_matrix(jelinek_mercer(uni.copy(), bi.copy(), lam), (V, V), f"V={V}, lam={lam}")
                want = lam * bi + (1 - lam) * uni[None, :]
                if not np.allclose(got, want, atol=1e-12):
                    a, b = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
                    hint = ("lam weights the bigram (the longer context), 1 - lam the unigram"
                            if np.allclose(got, (1 - lam) * bi + lam * uni[None, :]) else
                            "mix the two distributions entry by entry; the unigram p(b) is the same for "
                            "every context a (broadcast it along the rows)")
                    raise CheckFailed(f"V={V}, lam={lam}: entry [{a}, {b}] is {got[a, b]:.4f}, which is "
                                      f"wrong. {hint}")

    return run_check("jelinek_mercer", body, quiet)
