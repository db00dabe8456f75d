"""From logits to the next token (chapter 8): temperature, top-k, top-p (nucleus), min-p, and the draw.

``filter_probs`` applies the transformations in this fixed, documented order:

1. **temperature** ``T``: ``softmax(logits / T)``. ``T < 1`` sharpens, ``T > 1`` flattens,
   ``T = 0`` is greedy (all mass on the arg-max; the first one on ties).
2. **top-k**: keep the ``k`` most probable tokens (tokens tied with the ``k``-th are kept too).
3. **top-p** (nucleus): of what is left, keep the smallest set of most probable tokens whose
   total probability is ``>= p``; the most probable token is always kept.
4. **min-p**: keep tokens with ``prob >= min_p * max_prob``.

After each filter the kept probabilities are renormalised to sum to 1, so top-p is measured on the
distribution top-k left behind (min-p is a ratio, so renormalising does not change it).
``sample_next`` then draws one token per row by inverting the cumulative distribution with one
uniform number per row: the same generator state always gives the same token.

Logits of ``-inf`` mean "this token is forbidden" and are allowed; NaN, ``+inf`` or a row with every
logit ``-inf`` raise ``ValueError`` (checked on CPU tensors; see ``_check_logits``).
"""
from __future__ import annotations

import torch

from .._checks import check_float, check_int

__all__ = ["validate_sampling_args", "apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter",
           "filter_probs", "sample_next"]


def validate_sampling_args(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                           min_p: float | None = None) -> None:
    """Raise ``ValueError`` naming the first bad argument."""
    check_float("temperature", temperature, low=0)          # 0 = greedy
    check_int("top_k", top_k, low=1, optional=True)
    check_float("top_p", top_p, low=0, high=1, low_open=True, optional=True)
    check_float("min_p", min_p, low=0, high=1, optional=True)


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() == 0:
        raise ValueError(f"logits must be a floating-point tensor (..., vocab), got {type(logits).__name__}")
    # The value checks read a result back to the host: free on a CPU, but on a GPU a stall on every
    # token, which generation avoids everywhere else. So on a GPU they are skipped and NaN logits are
    # not caught here; run the same model on the CPU to get the error.
    if logits.device.type != "cpu":
        return
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ValueError("logits contain NaN or +inf; check the model's output (use -inf to forbid a token)")
    if torch.isneginf(logits).all(dim=-1).any():
        raise ValueError("every logit of a row is -inf: no token can be sampled")


def _renormalise(probs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    kept = probs * keep
    return kept / kept.sum(dim=-1, keepdim=True)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities ``softmax(logits / T)`` (..., vocab); ``T = 0`` gives a one-hot at the arg-max."""
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    return torch.softmax(logits / temperature, dim=-1)


def top_k_filter(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest probabilities (and ties with the ``k``-th), renormalised."""
    k = min(k, probs.shape[-1])
    kth = probs.topk(k, dim=-1).values[..., -1:]          # (..., 1) the k-th largest
    return _renormalise(probs, probs >= kth)


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest most-probable set with total ``>= p`` (always the top token), renormalised."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs   # probability of the tokens ranked above
    keep_sorted = mass_before < p                               # rank 0 has 0 before it: always kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return _renormalise(probs, keep)


def min_p_filter(probs: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens with ``prob >= min_p * max(prob)``, renormalised."""
    return _renormalise(probs, probs >= min_p * probs.amax(dim=-1, keepdim=True))


def filter_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, min_p: float | None = None) -> torch.Tensor:
    """Logits (..., vocab) -> filtered, renormalised probabilities (..., vocab), in float32 or wider.

    Order: temperature, top-k, top-p, min-p (see the module docstring). Removed tokens get
    probability exactly 0.
    """
    validate_sampling_args(temperature, top_k, top_p, min_p)
    _check_logits(logits)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()          # cumulative sums in half precision drift visibly
    probs = apply_temperature(logits, temperature)
    if top_k is not None:
        probs = top_k_filter(probs, top_k)
    if top_p is not None and top_p < 1:
        probs = top_p_filter(probs, top_p)
    if min_p is not None and min_p > 0:
        probs = min_p_filter(probs, min_p)
    return probs


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, min_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of ``logits`` (B, vocab); returns ids (B, 1).

    Greedy (``temperature=0``) takes the arg-max and uses no random numbers. Otherwise one uniform
    ``u`` per row is drawn from ``generator`` and the token is the first whose cumulative
    probability exceeds ``u`` (inverse-CDF sampling). Tokens with probability 0 are never chosen.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {tuple(logits.shape)}")
    probs = filter_probs(logits, temperature, top_k, top_p, min_p)
    if temperature == 0:
        return probs.argmax(dim=-1, keepdim=True)
    cdf = probs.cumsum(dim=-1)                                                 # (B, V)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=cdf.dtype)
    # Scale u by the row total so rounding in the cumulative sum can never push u past the end.
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
