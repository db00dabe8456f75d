"""Checks for the exercises of chapter 2, "N-gram models".

Each ``check_<name>(fn)`` runs the student's function on fixed and random cases, compares it with
``lmcore.NGramLM`` (or a direct formula) and prints ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from ..data import toy_corpus
from ..models import NGramConfig, NGramLM
from ..tokenizers import CharTokenizer
from ._check import CheckFailed, CheckResult, run_check

__all__ = ["check_bigram_probs", "check_jelinek_mercer", "check_best_lambda"]


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


def _bigram_hint(got: np.ndarray, want: np.ndarray, ids: list[int], V: int, eps: float) -> str:
    """Which of the usual add-ε mistakes ``got`` shows (pointing at it, not stating the formula)."""
    counts = np.zeros((V, V))
    np.add.at(counts, (np.asarray(ids[:-1]), np.asarray(ids[1:])), 1)
    unigram = np.bincount(ids, minlength=V)[:, None].astype(float)   # counts the last id as a context too
    known = [
        ((counts + eps) / (counts.sum(1, keepdims=True) + eps), "the denominator is missing part of the eps "
         "you added: how much eps did you add to the whole row?"),
        ((counts + eps) / (unigram + eps * V), "the count of a context is how often it is followed by "
         "something: the id at the very end of the list is followed by nothing"),
        (want.T, "row a should be the distribution of the token after a: are your rows and columns swapped?"),
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        known.append((counts / counts.sum(1, keepdims=True), "pairs never seen get probability 0: where is eps?"))
    for candidate, hint in known:
        if np.allclose(got, candidate, atol=1e-9, equal_nan=True):
            return hint
    rows = got.sum(axis=1)
    if not np.allclose(rows, 1.0, atol=1e-9):
        a = int(np.argmax(np.abs(rows - 1)))
        return f"row {a} sums to {rows[a]:.4f}, not 1, but each row is a distribution over the next token"
    a, b = (int(i) for i in np.unravel_index(np.argmax(np.abs(got - want)), got.shape))
    return f"p({b} | {a}) is {got[a, b]:.4f}, which is wrong; count this one by hand on the ids"


# --- exercise 1: add-ε bigram probabilities ---------------------------------------------------------

def check_bigram_probs(bigram_probs: Callable[[list[int], int, float], np.ndarray], quiet: bool = False) -> CheckResult:
    """Check ``bigram_probs(ids, vocab_size, eps)`` → ``(V, V)`` array, row ``a`` = p(· | a) with add-ε."""
    def body() -> None:
        for case, ids, V in _cases():
            for eps in (1.0, 0.1):
                got = _as_matrix(bigram_probs(list(ids), V, eps), (V, V), f"{case}, eps={eps}")
                lm = NGramLM(NGramConfig(2, V, smoothing="add-eps", eps=eps)).fit(ids)
                want = np.stack([lm.next_token_probs([a]) for a in range(V)])
                if not np.allclose(got, want, atol=1e-9):
                    raise CheckFailed(f"{case}, eps={eps}: {_bigram_hint(got, want, list(ids), V, eps)}")

    return run_check("bigram_probs", body, quiet)


# --- exercise 2: Jelinek–Mercer interpolation, tuned on validation ---------------------------------

# The experiment of exercise 2: an 8-gram counted without smoothing (sharp but sparse) mixed with an
# add-ε trigram (blunt but never zero), both fitted on the first `num_chars` training characters.
_JM_HIGH, _JM_LOW, _JM_EPS = 8, 3, 0.01
_JM_LAMBDAS = np.linspace(0.0, 1.0, 21)   # the grid the exercise searches: 0, 0.05, …, 1
_JM_TOL = 5e-4                           # nats/char a reported λ may lose against the grid's best


def _mix(logp_high: np.ndarray, logp_low: np.ndarray, lam: float) -> np.ndarray:
    """log(λ·p_high + (1-λ)·p_low) without leaving log space (λ = 0 or 1 gives log 0 = -inf terms)."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(lam) + logp_high, np.log1p(-lam) + logp_low)


def check_jelinek_mercer(jelinek_mercer: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
                         quiet: bool = False) -> CheckResult:
    """Check ``jelinek_mercer(logp_high, logp_low, lam)`` → ``(T,)`` log-probabilities (nats) of the
    mixture λ·p_high + (1-λ)·p_low, token by token; ``-inf`` inputs are zero probabilities."""
    def body() -> None:
        rng = np.random.default_rng(1)
        for T in (5, 200):
            high, low = np.log(rng.uniform(0.01, 1.0, T)), np.log(rng.uniform(0.01, 1.0, T))
            high[::4] = -np.inf  # tokens the sparse model never saw: probability zero
            for lam in (0.0, 0.3, 0.8, 1.0):
                case = f"T={T}, lam={lam}"
                got = _as_matrix(jelinek_mercer(high.copy(), low.copy(), lam), (T,), case)
                want = _mix(high, low, lam)
                if np.allclose(got, want, atol=1e-9):
                    continue
                if np.allclose(got, _mix(low, high, lam), atol=1e-9):
                    hint = "The weight lam belongs to the longer context (logp_high), 1 - lam to the shorter one"
                elif np.allclose(got, lam * high + (1 - lam) * low, atol=1e-9, equal_nan=True):
                    hint = ("That mixes log-probabilities (a weighted geometric mean); mix the "
                            "probabilities themselves, then take the log")
                elif np.allclose(got, np.exp(want), atol=1e-9):
                    hint = "Return log-probabilities in nats, like token_logprobs, not probabilities"
                elif np.allclose(got, want / np.log(2), atol=1e-9):
                    hint = "Use the natural log (nats), not log base 2"
                else:
                    hint = "Compare one entry with the mixture of the two probabilities, worked out by hand"
                i = int(np.argmax(~np.isclose(got, want, atol=1e-9)))
                raise CheckFailed(f"{case}: entry {i} is {got[i]:.4f}, which is wrong. {hint}")

    return run_check("jelinek_mercer", body, quiet)


@lru_cache(maxsize=8)
def _jm_logprobs(num_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-token validation log-probabilities of the exercise's two models fitted on ``num_chars``."""
    train, val = toy_corpus("train"), toy_corpus("val")
    tok = CharTokenizer().train(train)
    ids, val_ids = np.array(tok.encode(train))[:num_chars], np.array(tok.encode(val))
    V = tok.vocab_size
    high = NGramLM(NGramConfig(_JM_HIGH, V, smoothing="mle")).fit(ids).token_logprobs(val_ids)
    low = NGramLM(NGramConfig(_JM_LOW, V, smoothing="add-eps", eps=_JM_EPS)).fit(ids).token_logprobs(val_ids)
    return high, low


def _jm_cross_entropy(num_chars: int, lam: float) -> float:
    return float(-_mix(*_jm_logprobs(num_chars), lam).mean())


def check_best_lambda(best_lambda: Callable[[int], float], quiet: bool = False) -> CheckResult:
    """Check ``best_lambda(num_chars)`` → the λ in 0, 0.05, …, 1 whose mixture (8-gram MLE with an
    add-ε trigram, ε = 0.01, both fitted on the first ``num_chars`` training characters) has the
    lowest validation cross-entropy; any λ within 5e-4 nats/char of that grid's best passes."""
    def body() -> None:
        for num_chars in (10_000, 3_000, 30_000):   # the chapter's case first: its hint is the clearest
            out = best_lambda(num_chars)
            if isinstance(out, bool) or not isinstance(out, (int, float, np.integer, np.floating)):
                raise CheckFailed(f"best_lambda({num_chars:,}) should return a number, got {type(out).__name__}")
            lam = float(out)
            if not 0.0 <= lam <= 1.0:
                raise CheckFailed(f"best_lambda({num_chars:,}) returned {lam}, but a mixing weight lies in [0, 1]")
            curve = np.array([_jm_cross_entropy(num_chars, float(g)) for g in _JM_LAMBDAS])
            best, got = float(curve.min()), _jm_cross_entropy(num_chars, lam)
            if got <= best + _JM_TOL:
                continue
            where = f"best_lambda({num_chars:,}) = {lam:g} gives {got:.4f} nats/char on validation: "
            if lam == 1.0:
                hint = ("the 8-gram alone gives some validation characters probability zero. Did you score "
                        "the training text instead of the validation split?")
            elif lam == 0.0:
                hint = ("the trigram alone. If every mixture with lam > 0 came out infinite, you mixed "
                        "log-probabilities: mix the probabilities. If you kept the largest cross-entropy, "
                        "keep the argmin")
            elif got >= float(curve[np.isfinite(curve)].max()):
                hint = "the worst finite point of the validation curve; keep the argmin, not the argmax"
            else:
                hint = ("more than the best λ on the grid: evaluate every λ in 0, 0.05, …, 1 on the "
                        "validation split and keep the lowest")
            raise CheckFailed(where + hint)

    return run_check("best_lambda", body, quiet)
