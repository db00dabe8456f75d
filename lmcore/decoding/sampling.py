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

That order, temperature first, is Hugging Face's (``generate``'s warpers). ``filter_order =
"temperature-last"`` is llama.cpp's default chain instead: top-k, top-p and min-p choose the kept
set on the model's own distribution ``softmax(logits)``, and the temperature then reshapes only
the kept tokens, ``softmax(logits / T)`` renormalised over that set. The two agree at ``T = 1``;
at ``T > 1`` temperature-first keeps more tokens (a flatter distribution reaches ``p`` later and
has more tokens above ``min_p`` times its maximum), at ``T < 1`` fewer (top-k keeps the same set
either way, the ranking does not change).

``apply_repetition_penalty`` is the CTRL penalty (Keskar et al., 2019), applied to the logits
before all of the above, as Hugging Face's ``RepetitionPenaltyLogitsProcessor`` does.
``sample_next`` then draws one token per row by inverting the cumulative distribution with one
uniform number per row: the same generator state always gives the same token.

Logits of ``-inf`` mean "this token is forbidden" and are allowed; NaN, ``+inf`` or a row with every
logit ``-inf`` raise ``ValueError`` (checked on CPU tensors in eager mode, with one read of a result per
call; on an accelerator or under ``torch.compile`` nothing is read back: see ``_reads_values``). Any other logits
give a distribution, however extreme: where ``logits / T`` overflows, a row gets the ``T -> 0`` limit
(see ``apply_temperature``), so a sampler never returns an id outside the vocabulary.
"""
from __future__ import annotations

import math

import torch

from .._checks import ArgumentTypeError, check_choice, check_float, check_int, check_token_ids

__all__ = ["validate_sampling_args", "apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter",
           "filter_probs", "sample_next", "apply_repetition_penalty", "FILTER_ORDERS"]

#: ``filter_order`` values: temperature before the filters (Hugging Face, the default) or after (llama.cpp).
FILTER_ORDERS = ("temperature-first", "temperature-last")


def validate_sampling_args(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                           min_p: float | None = None, filter_order: str = "temperature-first") -> None:
    """Raise ``ValueError`` naming the first bad argument."""
    check_float("temperature", temperature, low=0)          # 0 = greedy
    check_int("top_k", top_k, low=1, optional=True)
    check_float("top_p", top_p, low=0, high=1, low_open=True, optional=True)
    check_float("min_p", min_p, low=0, high=1, optional=True)
    check_choice("filter_order", filter_order, FILTER_ORDERS)


def _check_scores(name: str, x: torch.Tensor, what: str) -> None:
    """Type and shape checks shared by logits and probabilities: they read no values."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"a tensor of {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ArgumentTypeError(f"{name} must be a floating-point tensor of {what} (..., vocab), got {got}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have shape (..., vocab), got a 0-d tensor")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has an empty vocabulary axis, shape {tuple(x.shape)}: there is no token to choose")


def _reads_values(x: torch.Tensor) -> bool:
    """Whether the value checks run: on CPU tensors in eager mode only. Elsewhere reading a result back
    to the host stalls the device (a GPU) on every token, and under ``torch.compile`` it splits the
    graph; there NaN logits are not caught here (run the same model on the CPU to get the error)."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def _check_logits(logits: torch.Tensor) -> None:
    _check_scores("logits", logits, "scores")
    if not _reads_values(logits):
        return
    # one read for both checks (x < inf is False exactly for NaN and +inf); the messages need more
    if bool((logits < math.inf).all() & (logits > -math.inf).any(dim=-1).all()):
        return
    if not bool((logits < math.inf).all()):
        raise ValueError("logits contain NaN or +inf; check the model's output (use -inf to forbid a token)")
    raise ValueError("logits: every logit of a row is -inf, so no token can be sampled")


def _check_probs(probs: torch.Tensor, normalised: bool = False) -> None:
    """Probabilities for the public filters: finite, >= 0, some mass in every row (on a CPU; see above)."""
    _check_scores("probs", probs, "probabilities")
    if not _reads_values(probs):
        return
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise ValueError("probs must be finite and >= 0 (probabilities, e.g. from apply_temperature, not logits)")
    total = probs.sum(dim=-1, dtype=torch.float64)
    if bool((total == 0).any()):
        raise ValueError("probs: every probability of a row is 0, so no token can be kept")
    # top-p compares cumulative mass with p, so it needs rows that sum to 1 (scale does not matter elsewhere)
    tol = 1e-2 if probs.dtype in (torch.float16, torch.bfloat16) else 1e-4
    if normalised and bool(((total - 1).abs() > tol).any()):
        raise ValueError(f"probs must sum to 1 along the last axis (within {tol}), got row sums up to "
                         f"{float(total.max()):.6g}; normalise them (e.g. softmax)")


def _renormalise(probs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    kept = probs * keep
    return kept / kept.sum(dim=-1, keepdim=True)


def _temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    scaled = logits / temperature
    # A tiny T (or extreme logits) overflows: finite logits become +-inf, and softmax's own max
    # subtraction then computes inf - inf = NaN (and a NaN row samples an id past the vocabulary).
    # Those rows are scaled relative to their maximum instead: the maxima become 0 and the rest
    # finite or -inf, which is the T -> 0 limit (all mass on the arg-max, shared by exact ties).
    # Every other row keeps softmax(logits / T) bit for bit. torch.where reads nothing back to the
    # host, so this costs no GPU sync.
    peak = logits.amax(dim=-1, keepdim=True)
    # only rows with a finite maximum: NaN, +inf or all -inf logits stay invalid (see _check_logits)
    overflow = scaled.amax(dim=-1, keepdim=True).isinf() & peak.isfinite()
    # the maxima are set to 0 directly: (peak - peak) / T is 0 / 0 when T rounds to 0 in the dtype
    shifted = torch.where(logits == peak, 0.0, (logits - peak) / temperature)
    return torch.softmax(torch.where(overflow, shifted, scaled), dim=-1)


def _top_k(probs: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, probs.shape[-1])
    kth = probs.topk(k, dim=-1).values[..., -1:]          # (..., 1) the k-th largest
    return _renormalise(probs, probs >= kth)


def _top_p(probs: torch.Tensor, p: float) -> torch.Tensor:
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs   # probability of the tokens ranked above
    keep_sorted = mass_before < p                               # rank 0 has 0 before it: always kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return _renormalise(probs, keep)


def _min_p(probs: torch.Tensor, min_p: float) -> torch.Tensor:
    return _renormalise(probs, probs >= min_p * probs.amax(dim=-1, keepdim=True))


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities ``softmax(logits / T)`` (..., vocab); ``T = 0`` gives a one-hot at the arg-max.

    For any finite logits the result is a distribution: where ``logits / T`` overflows (a tiny
    ``T``), a row gets the ``T -> 0`` limit, all mass on its largest logit (split among exact ties).
    """
    check_float("temperature", temperature, low=0)
    _check_logits(logits)
    return _temperature(logits, temperature)


def top_k_filter(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest probabilities (and ties with the ``k``-th), renormalised."""
    k = check_int("k", k, low=1)
    _check_probs(probs)
    return _top_k(probs, k)


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest most-probable set with total ``>= p`` (always the top token), renormalised.

    ``probs`` must sum to 1 along the last axis (the mass is compared with ``p``)."""
    check_float("p", p, low=0, high=1, low_open=True)
    _check_probs(probs, normalised=True)
    return _top_p(probs, p)


def min_p_filter(probs: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens with ``prob >= min_p * max(prob)``, renormalised."""
    check_float("min_p", min_p, low=0, high=1)
    _check_probs(probs)
    return _min_p(probs, min_p)


def _filters(probs: torch.Tensor, top_k: int | None, top_p: float | None, min_p: float | None) -> torch.Tensor:
    if top_k is not None:
        probs = _top_k(probs, top_k)
    if top_p is not None and top_p < 1:
        probs = _top_p(probs, top_p)
    if min_p is not None and min_p > 0:
        probs = _min_p(probs, min_p)
    return probs


def filter_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, min_p: float | None = None,
                 filter_order: str = "temperature-first") -> torch.Tensor:
    """Logits (..., vocab) -> filtered, renormalised probabilities (..., vocab), in float32 or wider.

    ``filter_order="temperature-first"`` (the default, Hugging Face's): temperature, top-k, top-p,
    min-p. ``"temperature-last"`` (llama.cpp's): top-k, top-p, min-p on ``softmax(logits)``, then
    ``softmax(logits / T)`` over the kept tokens (see the module docstring). Removed tokens get
    probability exactly 0.
    """
    validate_sampling_args(temperature, top_k, top_p, min_p, filter_order)
    _check_logits(logits)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()          # cumulative sums in half precision drift visibly
    if filter_order == "temperature-first":
        return _filters(_temperature(logits, temperature), top_k, top_p, min_p)
    kept = _filters(_temperature(logits, 1.0), top_k, top_p, min_p) > 0
    # the top token is always kept, so every row keeps a finite logit
    return _temperature(logits.masked_fill(~kept, -math.inf), temperature)


def apply_repetition_penalty(logits: torch.Tensor, context: torch.Tensor, penalty: float) -> torch.Tensor:
    """The CTRL repetition penalty (Keskar et al., 2019): logits (B, vocab) with every token that
    occurs in ``context`` (B, T) (ids; the prompt and what was generated so far) penalised once,
    however often it occurs: a logit ``z > 0`` becomes ``z / penalty``, any other ``z * penalty``.

    ``penalty > 1`` discourages repeats, ``1`` changes nothing, ``< 1`` encourages them. The same rule
    as Hugging Face's ``RepetitionPenaltyLogitsProcessor``; apply it before ``filter_probs`` /
    ``sample_next``. Returns a new tensor.
    """
    check_float("penalty", penalty, low=0, low_open=True)
    _check_scores("logits", logits, "scores")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {tuple(logits.shape)}")
    if not isinstance(context, torch.Tensor) or context.dim() != 2 or context.shape[0] != logits.shape[0]:
        got = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
        raise ValueError(f"context must be a (batch, time) tensor of token ids with the logits' batch size "
                         f"{logits.shape[0]}, got {got}")
    if not torch.compiler.is_compiling():      # the range is read on the CPU only (see check_token_ids)
        check_token_ids("context", context, logits.shape[-1])
    context = context.long()                   # gather and scatter index with int64
    seen = logits.gather(-1, context)
    return logits.scatter(-1, context, torch.where(seen > 0, seen / penalty, seen * penalty))


def _uniform(n: int, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``n`` uniform numbers (n, 1) on ``device``, drawn on the generator's own device.

    ``torch.rand`` refuses a generator of another device (a CPU generator with a CUDA model), so the
    numbers are drawn where the generator lives and then moved: the same generator state gives the
    same numbers on every device. Towards a GPU they go through pinned memory, so the copy is queued
    instead of waiting for the device (from pageable memory it would synchronise).
    """
    if generator is None or generator.device == device:
        return torch.rand(n, 1, generator=generator, device=device, dtype=dtype)
    u = torch.rand(n, 1, generator=generator, device=generator.device, dtype=dtype)
    if device.type == "cuda" and u.device.type == "cpu":
        u = u.pin_memory()
    return u.to(device, non_blocking=True)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, min_p: float | None = None,
                generator: torch.Generator | None = None, filter_order: str = "temperature-first") -> torch.Tensor:
    """Draw one token per row of ``logits`` (B, vocab); returns ids (B, 1).

    Greedy (``temperature=0``) takes the arg-max and uses no random numbers. Otherwise one uniform
    ``u`` per row is drawn from ``generator`` and the token is the first whose cumulative
    probability exceeds ``u`` (inverse-CDF sampling). Tokens with probability 0 are never chosen.
    ``filter_order``: see :func:`filter_probs`.
    """
    _check_scores("logits", logits, "scores")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {tuple(logits.shape)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")
    probs = filter_probs(logits, temperature, top_k, top_p, min_p, filter_order)
    if temperature == 0:
        return probs.argmax(dim=-1, keepdim=True)
    cdf = probs.cumsum(dim=-1)                                                 # (B, V)
    u = _uniform(probs.shape[0], generator, probs.device, cdf.dtype)
    # Scale u by the row total so rounding in the cumulative sum can never push u past the end.
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
