"""Checks for the exercises of chapter 5, "Attention and the transformer".

Each ``check_<name>(fn)`` runs the student's ``fn`` on fixed and random cases, compares it with an
independent reference computed here, and prints ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._check import CheckFailed, CheckResult, run_check
from ._check import expect_tensor as _tensor

__all__ = ["check_causal_attention", "check_layer_norm", "check_sharpest_needed"]


# --- exercise 1: causal scaled dot-product attention ----------------------------------------------

def _attention(q, k, v, scale: float, causal: bool) -> torch.Tensor:
    scores = q.double() @ k.double().transpose(-2, -1) * scale
    if causal:
        T = q.shape[-2]
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v.double()


def check_causal_attention(causal_attention: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                           quiet: bool = False) -> CheckResult:
    """Check ``causal_attention(q, k, v)``: queries and keys ``(..., T, d)``, values ``(..., T, d_v)``
    → ``softmax(q kᵀ / √d + mask) v`` ``(..., T, d_v)``, where position t attends to positions ≤ t only."""
    def body() -> None:
        g = torch.Generator().manual_seed(0)
        cases = [("one sequence, T=5, d=4", (5, 4, 3)), ("a (2, 3) batch of heads, T=7, d=16", (2, 3, 7, 16, 16))]
        for case, shape in cases:
            *batch, T, d, dv = shape
            q = torch.randn(*batch, T, d, generator=g)
            k = torch.randn(*batch, T, d, generator=g)
            v = torch.randn(*batch, T, dv, generator=g)
            got = _tensor(causal_attention(q.clone(), k.clone(), v.clone()), "causal_attention").double()
            want = _attention(q, k, v, 1 / math.sqrt(d), causal=True)
            if tuple(got.shape) != tuple(want.shape):
                raise CheckFailed(f"{case}: expected shape {tuple(want.shape)} (..., T, d_v), got {tuple(got.shape)}")
            if torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                continue
            wrong = [("no causal mask: position t also reads later positions",
                      _attention(q, k, v, 1 / math.sqrt(d), causal=False)),
                     ("the scores are not scaled: divide q kᵀ by √d", _attention(q, k, v, 1.0, causal=True)),
                     ("the scores are divided by d; divide by √d, which keeps their variance near 1",
                      _attention(q, k, v, 1 / d, causal=True))]
            for hint, alt in wrong:
                if torch.allclose(got, alt, rtol=1e-4, atol=1e-5):
                    raise CheckFailed(f"{case}: {hint}")
            if not torch.allclose(got[..., 0, :], v[..., 0, :].double(), atol=1e-5):
                raise CheckFailed(f"{case}: the first position can only attend to itself, so its output must "
                                  "equal v[0]; mask the future with -inf *before* the softmax (a 0 score is "
                                  "not a masked score), over the last dimension")
            raise CheckFailed(f"{case}: your output differs from softmax(q kᵀ / √d + mask) v; take the softmax "
                              "over the keys (the last dimension of the scores)")
        # the future must not leak: changing the last token's key/value leaves earlier outputs unchanged
        q, k, v = (torch.randn(6, 8, generator=g) for _ in range(3))
        k2, v2 = k.clone(), v.clone()
        k2[-1] += 5
        v2[-1] -= 5
        a = _tensor(causal_attention(q, k, v), "causal_attention")
        b = _tensor(causal_attention(q, k2, v2), "causal_attention")
        if not torch.allclose(a[:-1], b[:-1], atol=1e-5):
            raise CheckFailed("changing the last position's key and value changed earlier outputs: the future leaks")

    return run_check("causal_attention", body, quiet)


# --- exercise 2: layer normalisation --------------------------------------------------------------

def check_layer_norm(layer_norm: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor],
                     quiet: bool = False) -> CheckResult:
    """Check ``layer_norm(x, gain, bias, eps)``: ``x`` ``(..., C)``, ``gain`` and ``bias`` ``(C,)`` →
    each vector of ``C`` features standardised (mean 0, variance 1, with ``eps`` added to the variance)
    then scaled by ``gain`` and shifted by ``bias``; must match ``torch.nn.LayerNorm``."""
    def body() -> None:
        g = torch.Generator().manual_seed(1)
        cases = (("x of shape (4, 6)", (4, 6), 1e-5), ("x of shape (2, 3, 8), eps = 0.5", (2, 3, 8), 0.5))
        for case, shape, eps in cases:
            C = shape[-1]
            x = 3 * torch.randn(*shape, generator=g) + 2
            gain, bias = torch.randn(C, generator=g), torch.randn(C, generator=g)
            ln = torch.nn.LayerNorm(C, eps=eps)
            with torch.no_grad():
                ln.weight.copy_(gain)
                ln.bias.copy_(bias)
                want = ln(x)
            got = _tensor(layer_norm(x.clone(), gain, bias, eps), "layer_norm")
            if tuple(got.shape) != tuple(want.shape):
                raise CheckFailed(f"{case}: the output must have the shape of x, {tuple(shape)}, "
                                  f"got {tuple(got.shape)}")
            if torch.allclose(got, want, rtol=1e-4, atol=1e-4):
                continue
            mean = x.mean(-1, keepdim=True)
            unbiased = (x - mean) / torch.sqrt(x.var(-1, keepdim=True, unbiased=True) + eps) * gain + bias
            outside = (x - mean) / (x.var(-1, keepdim=True, unbiased=False).sqrt() + eps) * gain + bias
            if torch.allclose(got, unbiased, rtol=1e-4, atol=1e-4):
                raise CheckFailed(f"{case}: you used the unbiased variance (divided by C - 1); LayerNorm divides by C")
            if torch.allclose(got, outside, rtol=1e-4, atol=1e-4):
                raise CheckFailed(f"{case}: eps goes inside the square root, added to the variance")
            raise CheckFailed(f"{case}: your output differs from nn.LayerNorm; normalise each vector over its "
                              "last dimension (the features), then apply gain and bias")

    return run_check("layer_norm", body, quiet)


# --- exercise 5: how sharp must a lookup be -------------------------------------------------------

def _lookup_error(K: torch.Tensor, V: torch.Tensor, q: torch.Tensor, i: int, s: int, scale_by: float) -> float:
    weights = torch.softmax(s * (K.double() @ q.double()) / scale_by, dim=0)
    return (weights @ V.double() - V[i].double()).abs().max().item()


def _sharpest(K, V, q, i, tol, scale_by, limit=10_000) -> int:
    return next(s for s in range(1, limit) if _lookup_error(K, V, q, i, s, scale_by) < tol)


def check_sharpest_needed(sharpest_needed: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, float], int],
                          quiet: bool = False) -> CheckResult:
    """Check ``sharpest_needed(K, V, q, i, tol)``: keys ``(N, d)``, values ``(N, d_v)``, a query ``(d,)``
    → the smallest integer ``s ≥ 1`` for which attention with the query ``s · q`` (scores divided by
    √d) returns ``V[i]`` to within ``tol`` in every coordinate."""
    def body() -> None:
        g = torch.Generator().manual_seed(5)
        K = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]])
        V = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
        cases = [("the chapter's keys, tol = 0.01", K, V, torch.tensor([0.0, 2, 0.5]), 1, 0.01),
                 ("the chapter's keys, tol = 0.001", K, V, torch.tensor([0.0, 2, 0.5]), 1, 0.001)]
        Kr = torch.randn(6, 8, generator=g)
        cases.append(("six random keys in 8 dimensions, tol = 0.005", Kr, torch.randn(6, 3, generator=g),
                      Kr[4] + 0.1 * torch.randn(8, generator=g), 4, 0.005))
        for case, K, V, q, i, tol in cases:
            d = K.shape[1]
            got = sharpest_needed(K.clone(), V.clone(), q.clone(), i, tol)
            try:
                got = int(got)
            except (TypeError, ValueError):
                raise CheckFailed(f"{case}: return an integer scale, got {type(got).__name__}") from None
            want = _sharpest(K, V, q, i, tol, math.sqrt(d))
            if got == want:
                continue
            if got == want - 1:
                raise CheckFailed(f"{case}: you returned the last scale that is *not* close enough; "
                                  "return the first one that is")
            if got == _sharpest(K, V, q, i, tol, 1.0):
                raise CheckFailed(f"{case}: divide the scores by √d, as attention does")
            raise CheckFailed(f"{case}: you returned {got}; measure the largest |output - V[i]| over the "
                              "coordinates of the output, and increase s one step at a time from 1")

    return run_check("sharpest_needed", body, quiet)
