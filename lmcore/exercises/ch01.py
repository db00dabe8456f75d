"""Checks for the exercises of chapter 1, "What is a language model?".

Each ``check_<name>(fn)`` runs the student's ``fn`` on fixed and random cases, compares it with an
independent reference computed here, and prints ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._check import CheckFailed, CheckResult, run_check

__all__ = ["check_sample_from_logits", "check_cross_entropy", "check_perplexity", "check_bits_per_char_given"]


def _as_float(value, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise CheckFailed(f"{what} should be a number (a float or a 0-d tensor), got {type(value).__name__}") from e


# --- exercise 1: sampling by the cumulative sum ---------------------------------------------------

def _reference_sample(logits: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first cumulative probability above ``u``, and how far ``u`` is from any boundary."""
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)
    idx = torch.searchsorted(cdf, u.double().unsqueeze(-1), right=True).squeeze(-1)
    margin = (cdf - u.double().unsqueeze(-1)).abs().min(-1).values
    return idx.clamp(max=logits.shape[-1] - 1), margin


def _compare_sampler(fn: Callable, logits: torch.Tensor, u: torch.Tensor, case: str) -> None:
    out = fn(logits.clone(), u.clone())
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{case}: return a tensor of indices, got {type(out).__name__}")
    if out.shape != u.shape:
        raise CheckFailed(f"{case}: the result should have the shape of u, {tuple(u.shape)}, "
                          f"got {tuple(out.shape)}; take the cumulative sum along the last dimension only")
    if out.dtype != torch.long:
        raise CheckFailed(f"{case}: return int64 indices (dtype torch.long), got {out.dtype}")
    want, margin = _reference_sample(logits, u)
    clear = margin > 1e-5  # u within rounding of a boundary may fall either way; do not judge those
    wrong = (out != want) & clear
    if wrong.any():
        i = wrong.nonzero()[0].tolist()
        probs = torch.softmax(logits.double(), -1)[tuple(i)]
        raise CheckFailed(
            f"{case}: for probabilities {[round(p, 3) for p in probs.tolist()][:8]} and u = {float(u[tuple(i)]):.3f} "
            f"you returned index {int(out[tuple(i)])}. The sample is the first index whose cumulative "
            "probability exceeds u (zero-probability entries are never chosen)")


def check_sample_from_logits(sample_from_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                             quiet: bool = False) -> CheckResult:
    """Check ``sample_from_logits(logits, u)``: logits ``(..., V)``, uniforms ``u`` ``(...)`` in [0, 1)
    → int64 indices ``(...)``, the first index whose cumulative softmax probability exceeds ``u``."""
    def body() -> None:
        g = torch.Generator().manual_seed(0)
        probs = torch.tensor([0.2, 0.5, 0.3])
        u = torch.tensor([0.05, 0.15, 0.25, 0.6, 0.75, 0.95])
        _compare_sampler(sample_from_logits, probs.log().expand(len(u), 3), u, "one distribution")
        zero = torch.tensor([0.0, -math.inf, 0.0, -math.inf])  # probabilities 1/2, 0, 1/2, 0
        _compare_sampler(sample_from_logits, zero.expand(4, 4), torch.tensor([0.1, 0.49, 0.51, 0.9]),
                         "logits of -inf (probability zero)")
        logits = 3 * torch.randn(5, 7, 11, generator=g)
        _compare_sampler(sample_from_logits, logits, torch.rand(5, 7, generator=g), "a (5, 7) batch over 11 tokens")
        big = torch.tensor([[1000.0, 999.0, 0.0], [-1000.0, -1001.0, -1002.0]])
        try:
            _compare_sampler(sample_from_logits, big, torch.tensor([0.8, 0.8]), "large logits")
        except CheckFailed as e:
            raise CheckFailed(f"{e}. Hint: exp(1000) overflows to inf; which shift of all the logits "
                              "leaves the softmax unchanged?") from None

    return run_check("sample_from_logits", body, quiet)


# --- exercise 2: cross-entropy from logits --------------------------------------------------------

def check_cross_entropy(cross_entropy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        quiet: bool = False) -> CheckResult:
    """Check ``cross_entropy(logits, targets)``: logits ``(N, V)``, targets ``(N,)`` int64 → the mean
    negative log-probability of the targets, in nats (a 0-d tensor or float)."""
    def body() -> None:
        g = torch.Generator().manual_seed(1)
        cases = [("all-zero logits over 6 tokens", torch.zeros(4, 6)),
                 ("random logits", 2 * torch.randn(8, 10, generator=g)),
                 ("large logits", torch.tensor([[1000.0, 0.0, -5.0], [50.0, 1050.0, 999.0]]))]
        for case, logits in cases:
            targets = torch.randint(logits.shape[1], (logits.shape[0],), generator=g)
            got = _as_float(cross_entropy(logits.clone(), targets.clone()), "cross_entropy(...)")
            want = F.cross_entropy(logits.double(), targets).item()
            if not math.isfinite(got):
                raise CheckFailed(f"{case}: you returned {got}; exp of a large logit overflows to inf. Which "
                                  "constant can you take out of every logit without changing the softmax?")
            if math.isclose(got, want * logits.shape[0], rel_tol=1e-4):
                raise CheckFailed(f"{case}: you returned the sum over the {logits.shape[0]} examples; "
                                  "return the mean")
            if math.isclose(got, -want, rel_tol=1e-4):
                raise CheckFailed(f"{case}: you returned {got:.4f}; a loss to minimise is the *negative* "
                                  "log-probability, so it is never below 0")
            if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
                raise CheckFailed(f"{case}: you returned {got:.5f}, which is not the mean negative log "
                                  "softmax probability of the targets")

    return run_check("cross_entropy", body, quiet)


# --- exercise 3: perplexity from log-probabilities ------------------------------------------------

def check_perplexity(perplexity: Callable[[torch.Tensor], float], quiet: bool = False) -> CheckResult:
    """Check ``perplexity(logprobs)``: natural-log probabilities ``(T,)`` of the T tokens that occurred
    → exp of the mean negative log-probability."""
    def body() -> None:
        g = torch.Generator().manual_seed(2)
        for name, k in (("a fair coin", 2), ("a fair die", 6)):
            logprobs = torch.full((30,), -math.log(k))
            got = _as_float(perplexity(logprobs), "perplexity(...)")
            if not math.isclose(got, k, rel_tol=1e-5):
                raise CheckFailed(f"30 tosses of {name}, each with log-probability log(1/{k}): you returned "
                                  f"{got:.4g}. Perplexity is a per-token quantity, and it is at least 1")
        logprobs = torch.log(torch.rand(50, generator=g).clamp_min(1e-3))
        got = _as_float(perplexity(logprobs), "perplexity(...)")
        want = math.exp(-logprobs.double().mean().item())
        if not math.isclose(got, want, rel_tol=1e-5):
            raise CheckFailed(f"for 50 random log-probabilities you returned {got:.4g}; use natural logs "
                              "and the mean over tokens")
        long = torch.full((100_000,), -5.0)  # the product of these probabilities underflows to 0
        try:
            got = _as_float(perplexity(long), "perplexity(...)")
            ok, shown = math.isclose(got, math.exp(5.0), rel_tol=1e-4), f"{got:.4g}"
        except (ZeroDivisionError, OverflowError) as e:  # e.g. 0.0 ** (-1 / T)
            ok, shown = False, f"an error ({type(e).__name__})"
        if not ok:
            raise CheckFailed(f"for 100,000 tokens with log-probability -5 you returned {shown}: the "
                              "product of the probabilities underflows; stay in log space")

    return run_check("perplexity", body, quiet)


# --- exercise 7: what a compressor learns from data -----------------------------------------------

def _size(compress: Callable[[bytes], bytes], text: str) -> int:
    """Bytes of ``text`` after UTF-8 encoding and compression."""
    return len(compress(text.encode("utf-8")))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)

def check_bits_per_char_given(bits_per_char_given: Callable[[Callable[[bytes], bytes], str, str], float],
                              quiet: bool = False) -> CheckResult:
    """Check ``bits_per_char_given(compress, context, text)``: the extra bits per character of ``text``
    that ``compress`` (bytes → bytes) needs once it has read ``context``,
    ``8 * (len(compress(context + text)) - len(compress(context))) / len(text)``, both UTF-8 encoded."""
    import bz2
    import zlib

    from ..data import ToyLanguage

    def body() -> None:
        stories = ToyLanguage().sample(400, seed=7)
        context, text = "".join(stories[:300]), "".join(stories[300:])
        accented = "la café naïve " * 40  # 2 bytes for each of é and ï: characters are not bytes
        cases = [("zlib, toy-language text after 300 stories", lambda b: zlib.compress(b, 9), context, text),
                 ("bz2, toy-language text after 300 stories", lambda b: bz2.compress(b, 9), context, text),
                 ("zlib, accented text after toy stories", lambda b: zlib.compress(b, 9), context, accented)]
        for case, compress, ctx, txt in cases:
            got = _as_float(bits_per_char_given(compress, ctx, txt), "bits_per_char_given(...)")
            want = 8 * (_size(compress, ctx + txt) - _size(compress, ctx)) / len(txt)
            if _close(got, want):
                continue
            if _close(got, want / 8):
                raise CheckFailed(f"{case}: you returned {got:.4f}; len() of compressed data counts bytes, "
                                  "and a byte is 8 bits")
            if _close(got, 8 * _size(compress, txt) / len(txt)):
                raise CheckFailed(f"{case}: you returned {got:.4f}, the cost of the text compressed on its "
                                  "own; compress the context and the text together and subtract the context's cost")
            if _close(got, 8 * _size(compress, ctx + txt) / len(txt)):
                raise CheckFailed(f"{case}: you returned {got:.4f}; subtract the compressed size of the "
                                  "context alone, which the compressor would have paid anyway")
            if _close(got, want * len(txt) / len(ctx + txt)):
                raise CheckFailed(f"{case}: you returned {got:.4f}; divide by the characters of the text "
                                  "only, not of context and text")
            if _close(got, want * len(txt) / len(txt.encode("utf-8"))):
                raise CheckFailed(f"{case}: you returned {got:.4f}; the rate is per character, len(text), "
                                  "not per byte of its UTF-8 encoding")
            raise CheckFailed(f"{case}: you returned {got:.4f}, which is not the extra compressed size of "
                              "the text, in bits, per character of the text")

    return run_check("bits_per_char_given", body, quiet)
