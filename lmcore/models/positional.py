"""Positional encodings: how a transformer learns *where* each token sits.

Self-attention on its own is permutation-equivariant: shuffle the input tokens and the outputs
are shuffled the same way, so without extra information "dog bites man" and "man bites dog" look
alike. This module holds the four standard ways to add order, each as a small pure function the
model calls (and a chapter can plot):

- **sinusoidal** (Vaswani et al., 2017): a fixed table ``PE[pos, 2i] = sin(pos / 10000^(2i/C))``,
  ``PE[pos, 2i+1] = cos(...)`` added to the token embeddings. Nothing is learned.
- **learned** (GPT-2): a trainable ``nn.Embedding(context_length, n_embd)`` added to the token
  embeddings. It lives in the model (``GPT.transformer.wpe``); there is no maths to put here.
- **RoPE** (Su et al., 2021): rotate each (even, odd) pair of query/key features by an angle
  proportional to the position. The dot product of a rotated query at position ``m`` and a rotated
  key at position ``n`` then depends on ``m - n`` only: relative position for free.
  ``rope_scaling`` stretches the angles so a model can read longer contexts than it was trained on
  (linear *position interpolation*, *NTK-aware* scaling of the base, *dynamic NTK*, which enlarges
  the base only once a sequence outgrows the training length, or *YaRN*, which interpolates only
  the slow frequencies and sharpens attention to compensate).
- **ALiBi** (Press et al., 2022): no change to the embeddings at all; each head adds
  ``-slope_h * (query_pos - key_pos)`` to its attention scores, a linear penalty on distance.

Every function that depends on where a sequence starts takes an ``offset`` (or explicit
positions): with a KV cache the new token at step ``t`` has position ``t``, not ``0``.
"""
from __future__ import annotations

import math

import torch

from .._checks import check_choice, check_float, check_int

__all__ = [
    "sinusoidal_table",
    "rope_inv_freq",
    "rope_cos_sin",
    "apply_rope",
    "alibi_slopes",
    "alibi_bias",
    "table_dtype",
    "yarn_mscale",
    "ROPE_SCALINGS",
]

ROPE_SCALINGS = (None, "linear", "ntk", "yarn", "dynamic")


def sinusoidal_table(context_length: int, n_embd: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed sinusoidal position table, shape ``(context_length, n_embd)``.

    Column pair ``(2i, 2i+1)`` is ``(sin, cos)`` of ``pos * base^(-2i/n_embd)``: wavelengths grow
    geometrically from ``2π`` to ``2π·base``, so nearby positions have similar rows and the dot
    product of two rows depends only on their distance.
    """
    check_int("context_length", context_length, low=1)
    if check_int("n_embd", n_embd, low=2) % 2:
        raise ValueError(f"n_embd must be even for the sinusoidal table, got {n_embd}")
    check_float("base", base, low=1, low_open=True)
    pos = torch.arange(context_length, dtype=torch.float64)[:, None]                 # (T, 1)
    inv_freq = base ** (-torch.arange(0, n_embd, 2, dtype=torch.float64) / n_embd)  # (C/2,)
    angles = pos * inv_freq                                                       # (T, C/2)
    table = torch.empty(context_length, n_embd, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table.float()


def table_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype rotary tables are kept in on ``device``: float64, or float32 where the device has
    no float64 (Apple's MPS). Never the model's dtype: frequencies rounded to bfloat16 (up to 2^-9
    relative) are multiplied by the position, so with head_dim 64 the cosines are off by up to 0.44
    at positions 512-1023, against 0.002 when only the finished table is rounded."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def yarn_mscale(factor: float) -> float:
    """YaRN's attention temperature as a scale on cos/sin: ``sqrt(1/t) = 0.1·ln(factor) + 1``.

    Both queries and keys are rotated by tables scaled by this value, so attention logits grow by
    ``1/t``: interpolated positions spread attention thinner, and the sharper softmax undoes that
    (Peng et al., 2023, eq. 22). It is 1 at ``factor=1``.
    """
    if not torch.compiler.is_compiling():   # as in rope_cos_sin: traced, factor may be symbolic
        check_float("factor", factor, low=1)
    return 0.1 * math.log(factor) + 1.0


def rope_inv_freq(head_dim: int, base: float = 10000.0, scaling: str | None = None,
                  factor: float = 1.0, device: torch.device | str | None = None, *,
                  original_length: int | None = None, alpha: float = 1.0, beta: float = 32.0) -> torch.Tensor:
    """RoPE's rotation frequencies, one per feature pair: shape ``(head_dim // 2,)``, computed in
    float64 on the CPU and returned there, or on ``device`` in ``table_dtype(device)``.

    ``theta_i = base^(-2i/head_dim)``. With ``scaling="ntk"`` the base is enlarged to
    ``base * factor^(head_dim/(head_dim-2))``: the slowest pair is stretched by exactly ``factor``
    (so long-range positions stay inside the trained angle range) while the fastest pairs, which
    encode local order, barely change. ``scaling="linear"`` leaves the frequencies alone and
    divides the *positions* instead (see ``rope_cos_sin``); so does ``scaling="dynamic"``, whose
    base depends on the current sequence length and is recomputed in ``rope_cos_sin``.

    ``scaling="yarn"`` (the "NTK-by-parts" frequencies of YaRN) needs ``original_length``, the
    training context length L. Pair ``i`` makes ``r_i = L·theta_i/(2π)`` full turns over L
    positions; with the ramp ``gamma = clamp((r_i - alpha)/(beta - alpha), 0, 1)`` its frequency
    becomes ``(1 - gamma)·theta_i/factor + gamma·theta_i``: pairs that turn fewer than ``alpha``
    times are interpolated like ``"linear"``, pairs that turn more than ``beta`` times keep their
    trained frequency, and the ramp is linear in ``r`` between them (the paper's eq. 18). The
    reference and Hugging Face code ramp linearly in the pair *index* instead, between rounded
    boundaries; both agree outside the ramp. ``original_length``, ``alpha`` and ``beta`` are
    refused for the other scalings, which do not use them here.
    """
    if check_int("head_dim", head_dim, low=2) % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    check_float("base", base, low=1, low_open=True)
    check_choice("scaling", scaling, ROPE_SCALINGS)
    check_float("factor", factor, low=1)
    if scaling in ("ntk", "dynamic") and head_dim < 4:
        raise ValueError(f"scaling={scaling!r} needs head_dim >= 4 (the base grows by a power "
                         f"head_dim/(head_dim-2)), got {head_dim}")
    if scaling != "yarn" and (original_length is not None or (alpha, beta) != (1.0, 32.0)):
        raise ValueError(f"original_length, alpha and beta are used only by scaling='yarn' here, got "
                         f"scaling={scaling!r}: leave them at their defaults")
    if scaling == "ntk":
        base = base * factor ** (head_dim / (head_dim - 2))
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device="cpu") / head_dim)
    if scaling == "yarn":
        if original_length is None:
            raise ValueError("scaling='yarn' needs original_length, the context length the model was "
                             "trained on (e.g. context_length / factor)")
        check_int("original_length", original_length, low=1)
        check_float("alpha", alpha, low=0)
        if check_float("beta", beta) <= alpha:
            raise ValueError(f"beta must be larger than alpha (turns at which the ramp ends and starts), "
                             f"got alpha={alpha}, beta={beta}")
        turns = original_length * inv_freq / (2 * math.pi)
        gamma = ((turns - alpha) / (beta - alpha)).clamp(0.0, 1.0)
        inv_freq = (1 - gamma) * inv_freq / factor + gamma * inv_freq
    return inv_freq if device is None else inv_freq.to(device=device, dtype=table_dtype(device))


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, scaling: str | None = None,
                 factor: float = 1.0, dtype: torch.dtype = torch.float32, *,
                 original_length: int | None = None,
                 seq_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of the rotation angles ``pos * theta_i``, each ``(T, head_dim // 2)``.

    ``positions`` are absolute positions (``offset + arange(T)`` with a KV cache). With
    ``scaling="linear"`` (position interpolation) they are divided by ``factor``, squeezing a
    ``factor``-times longer context into the position range seen in training. The angles are
    computed in ``inv_freq``'s dtype (at least float32: float64 from ``rope_inv_freq``, float32 on
    a device without float64, see ``table_dtype``) and only the results are rounded to ``dtype``.

    ``scaling="yarn"`` multiplies both tables by ``yarn_mscale(factor)`` (the frequencies come
    from ``rope_inv_freq(..., "yarn", ...)``). ``scaling="dynamic"`` (dynamic NTK, Hugging Face's
    ``"dynamic"`` rope type) needs ``original_length`` L: once the sequence length ``seq_len``
    exceeds L the base becomes ``base·(factor·seq_len/L - (factor - 1))^(d/(d-2))``, applied to
    the plain ``inv_freq`` as a factor per pair; up to L nothing changes. ``seq_len`` defaults to
    ``max(positions) + 1``; a model with a KV cache passes ``offset + T`` (known without reading
    the positions back from the device).
    """
    if not isinstance(positions, torch.Tensor) or positions.dim() != 1:
        raise ValueError(f"positions must be a 1-D tensor of positions, got {type(positions).__name__} "
                         f"{tuple(getattr(positions, 'shape', ()))}")
    check_choice("scaling", scaling, ROPE_SCALINGS)
    if not torch.compiler.is_compiling():   # traced with dynamic=True, factor is symbolic (isfinite: graph break)
        check_float("factor", factor, low=1)
    if not isinstance(inv_freq, torch.Tensor) or not inv_freq.is_floating_point():
        raise ValueError(f"inv_freq must be a floating-point tensor (rope_inv_freq(head_dim)), got {inv_freq!r}")
    if scaling != "dynamic" and (original_length is not None or seq_len is not None):
        raise ValueError(f"original_length and seq_len are used only by scaling='dynamic' here, got "
                         f"scaling={scaling!r}: leave them at None")
    exact = torch.promote_types(inv_freq.dtype, torch.float32)
    pos = positions.to(exact)
    inv_freq = inv_freq.to(device=positions.device, dtype=exact)
    if scaling == "linear":
        pos = pos / factor
    if scaling == "dynamic":
        inv_freq = _dynamic_ntk(inv_freq, positions, factor, original_length, seq_len)
    angles = pos[:, None] * inv_freq[None, :]
    cos, sin = torch.cos(angles), torch.sin(angles)
    if scaling == "yarn":
        mscale = yarn_mscale(factor)
        cos, sin = cos * mscale, sin * mscale
    return cos.to(dtype), sin.to(dtype)


def _dynamic_ntk(inv_freq: torch.Tensor, positions: torch.Tensor, factor: float,
                 original_length: int | None, seq_len: int | None) -> torch.Tensor:
    """``inv_freq`` with the base enlarged for dynamic NTK (see ``rope_cos_sin``)."""
    if original_length is None:
        raise ValueError("scaling='dynamic' needs original_length, the context length the model was trained on")
    original_length = check_int("original_length", original_length, low=1)
    if seq_len is None:
        seq_len = int(positions.max()) + 1 if positions.numel() else 0
    seq_len = check_int("seq_len", seq_len, low=0)
    head_dim = 2 * inv_freq.numel()
    if head_dim < 4:
        raise ValueError(f"scaling='dynamic' needs head_dim >= 4, got inv_freq for head_dim {head_dim}")
    if seq_len <= original_length:
        return inv_freq
    # base'^(-2i/d) = base^(-2i/d) · ratio^(-2i/(d-2)): the new base as a per-pair factor, so the
    # base itself need not be passed in
    ratio = factor * seq_len / original_length - (factor - 1)
    i = torch.arange(head_dim // 2, dtype=inv_freq.dtype, device=inv_freq.device)
    return inv_freq * ratio ** (-2 * i / (head_dim - 2))


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs ``(x[..., 2i], x[..., 2i+1])`` of ``x`` (B, H, T, D) by the angles.

    ``cos``/``sin`` are ``(T, D/2)``. A 2-D rotation of ``(a, b)`` by ``φ`` is
    ``(a cos φ - b sin φ, a sin φ + b cos φ)``; rotating a query by ``mφ`` and a key by ``nφ``
    leaves their dot product a function of ``(m - n)φ``. The result has ``x``'s dtype (``cos`` and
    ``sin`` are cast to it): a bfloat16 query under autocast stays bfloat16 for the attention kernel
    instead of being promoted to float32 by float32 tables.
    """
    # shapes only: a mismatch would otherwise surface as a broadcasting error inside the rotation
    if cos.dim() != 2 or sin.shape != cos.shape or x.dim() < 2 or x.shape[-2:] != (cos.shape[0], 2 * cos.shape[1]):
        raise ValueError(f"x (..., T, D) needs cos and sin of shape (T, D/2); got x {tuple(x.shape)}, "
                         f"cos {tuple(cos.shape)}, sin {tuple(sin.shape)}")
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)      # no-ops when the model built them in x's dtype
    a, b = x[..., 0::2], x[..., 1::2]                 # (B, H, T, D/2) each
    rotated = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)   # (B, H, T, D/2, 2)
    return rotated.flatten(-2)                        # interleave back to (B, H, T, D)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's per-head slopes, shape ``(n_head,)``.

    For ``n`` a power of two the slopes are the geometric sequence ``2^(-8/n), 2^(-16/n), ...,
    2^(-8)``. Otherwise take the sequence for the largest power of two ``m < n`` and fill the
    remaining ``n - m`` heads with every other slope of the sequence for ``2m`` (the recipe of
    the ALiBi paper), so slopes still span short- and long-range heads.
    """
    n_head = check_int("n_head", n_head, low=1)

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    m = 2 ** math.floor(math.log2(n_head))
    slopes = geometric(m)
    if m < n_head:
        slopes += geometric(2 * m)[0::2][: n_head - m]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, q_len: int, k_len: int, offset: int = 0) -> torch.Tensor:
    """ALiBi's additive attention bias, shape ``(n_head, q_len, k_len)``.

    Query ``i`` sits at absolute position ``offset + i``, key ``j`` at position ``j``; the bias is
    ``-slope_h * (offset + i - j)``: zero on the diagonal, more negative the further back the key.
    Entries for future keys (``j > offset + i``) are positive here; the causal mask removes them.
    """
    if not isinstance(slopes, torch.Tensor) or slopes.dim() != 1:
        raise ValueError(f"slopes must be a 1-D tensor (one slope per head), got {tuple(getattr(slopes, 'shape', ()))}")
    q_len, k_len, offset = (check_int(name, value, low=0) for name, value in
                            (("q_len", q_len), ("k_len", k_len), ("offset", offset)))
    q_pos = torch.arange(offset, offset + q_len, device=slopes.device)
    k_pos = torch.arange(k_len, device=slopes.device)
    distance = (q_pos[:, None] - k_pos[None, :]).to(slopes.dtype)    # (q_len, k_len)
    return -slopes[:, None, None] * distance
