"""Checks for the exercises of chapter 6, "Positional encodings".

Each ``check_<name>(fn)`` runs the student's ``fn`` on fixed and random cases, compares it with an
independent reference written here (plain loops over the formulas, complex numbers for rotations),
and prints ``PASS`` or ``FAIL`` with a hint that names the mistake without giving the code.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from ._check import CheckFailed, CheckResult, CheckUnsolved, run_check

__all__ = ["check_sinusoidal_table", "check_apply_rope", "check_alibi_bias", "check_receptive_field",
           "RECEPTIVE_CASES"]


def _as_tensor(value, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} should return a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise CheckFailed(f"{what} should have shape {shape}, got {tuple(value.shape)}")
    if not value.dtype.is_floating_point:
        raise CheckFailed(f"{what} should be a floating-point tensor, got {value.dtype}")
    return value.detach().double()


# --- exercise: the sinusoidal table ---------------------------------------------------------------

def _sinusoidal_reference(context_length: int, n_embd: int, variant: str = "right") -> torch.Tensor:
    """The table by the formula, entry by entry; ``variant`` builds the usual wrong versions."""
    table = torch.empty(context_length, n_embd, dtype=torch.float64)
    for t in range(context_length):
        for i in range(n_embd // 2):
            exponent = (i if variant == "frequency" else 2 * i) / n_embd
            angle = t / 10000.0 ** exponent
            first, second = math.sin(angle), math.cos(angle)
            if variant == "swapped":
                first, second = second, first
            if variant == "halves":       # all sines first, then all cosines
                table[t, i], table[t, n_embd // 2 + i] = first, second
            else:
                table[t, 2 * i], table[t, 2 * i + 1] = first, second
    return table


def check_sinusoidal_table(sinusoidal_table: Callable[[int, int], torch.Tensor], quiet: bool = False) -> CheckResult:
    """Check ``sinusoidal_table(context_length, n_embd)`` → ``(context_length, n_embd)`` with
    ``PE[t, 2i] = sin(t / 10000^(2i/n_embd))`` and ``PE[t, 2i+1] = cos(t / 10000^(2i/n_embd))``."""
    hints = {
        "swapped": "even columns hold the sine and odd columns the cosine; yours are the other way round",
        "frequency": "columns 2i and 2i+1 share the angle t / 10000^(2i/n_embd); check the exponent",
        "halves": "the sine and cosine of one frequency sit side by side in columns 2i and 2i+1, "
                  "not in two halves of the row",
    }

    def body() -> None:
        for context_length, n_embd in ((1, 4), (8, 6), (50, 16), (200, 64)):
            case = f"context_length={context_length}, n_embd={n_embd}"
            got = _as_tensor(sinusoidal_table(context_length, n_embd), f"sinusoidal_table({context_length}, {n_embd})",
                             (context_length, n_embd))
            if torch.allclose(got, _sinusoidal_reference(context_length, n_embd), atol=1e-5):
                continue
            for variant, hint in hints.items():
                if torch.allclose(got, _sinusoidal_reference(context_length, n_embd, variant), atol=1e-5):
                    raise CheckFailed(f"{case}: {hint}")
            want = _sinusoidal_reference(context_length, n_embd)
            t, c = divmod(int((got - want).abs().argmax()), n_embd)
            raise CheckFailed(f"{case}: entry [t={t}, column={c}] is {got[t, c]:.5f}; "
                              "it should follow the formula above (position t, column pair 2i, 2i+1)")

    return run_check("sinusoidal_table", body, quiet)


# --- exercise: rotary position embedding ----------------------------------------------------------

def _rope_reference(x: torch.Tensor, positions: torch.Tensor, base: float, variant: str = "right") -> torch.Tensor:
    """Multiply feature pair ``(x[2i], x[2i+1])``, read as the complex number ``x[2i] + j·x[2i+1]``,
    by ``exp(j·t·θ_i)`` with ``θ_i = base^(-2i/D)``; ``variant`` builds the usual wrong versions."""
    D = x.shape[-1]
    i = torch.arange(D // 2, dtype=torch.float64)
    theta = base ** (-(i if variant == "frequency" else 2 * i) / D)
    angle = positions.double()[:, None] * theta[None, :]                  # (T, D/2)
    if variant == "direction":
        angle = -angle
    x = x.double()
    if variant == "halves":      # pairs (i, i + D/2): the other common layout
        pairs = torch.stack((x[..., : D // 2], x[..., D // 2:]), dim=-1)
    else:
        pairs = x.unflatten(-1, (D // 2, 2))
    z = torch.view_as_complex(pairs.contiguous()) * torch.polar(torch.ones_like(angle), angle)
    out = torch.view_as_real(z)                                           # (..., T, D/2, 2)
    if variant == "halves":
        return torch.cat((out[..., 0], out[..., 1]), dim=-1)
    return out.flatten(-2)


def check_apply_rope(apply_rope: Callable[..., torch.Tensor], quiet: bool = False) -> CheckResult:
    """Check ``apply_rope(x, positions, base=10000.0)``: ``x`` ``(..., T, D)``, ``positions`` ``(T,)``
    int64 → ``x`` with each pair ``(x[..., 2i], x[..., 2i+1])`` at position ``t`` rotated
    counter-clockwise by the angle ``t·base^(-2i/D)``."""
    hints = {
        "halves": "you rotate feature i together with feature i + D/2; this chapter pairs neighbours "
                  "(2i, 2i+1)",
        "frequency": "the pairs rotate at the wrong speeds: pair i turns by t·base^(-2i/D) per position",
        "direction": "you rotate clockwise; a rotation by φ maps (a, b) to (a cos φ - b sin φ, a sin φ + b cos φ)",
    }

    def body() -> None:
        g = torch.Generator().manual_seed(6)
        cases = [("one vector at positions 0..3", torch.randn(4, 2, generator=g), torch.arange(4), 10000.0),
                 ("a (2, 3, 7, 8) batch", torch.randn(2, 3, 7, 8, generator=g), torch.arange(7), 10000.0),
                 ("positions 100..104 with base 500", torch.randn(3, 5, 16, generator=g),
                  torch.arange(100, 105), 500.0)]
        for case, x, positions, base in cases:
            before = x.clone()
            got = apply_rope(x, positions, base)
            if not torch.equal(x, before):
                raise CheckFailed(f"{case}: your function changed its input x in place; return a new tensor")
            got = _as_tensor(got, f"apply_rope on {case}", tuple(x.shape))
            if torch.allclose(got, _rope_reference(x, positions, base), atol=1e-4):
                continue
            if torch.allclose(got, x.double(), atol=1e-6):
                raise CheckFailed(f"{case}: the output equals the input; nothing was rotated")
            for variant, hint in hints.items():
                if torch.allclose(got, _rope_reference(x, positions, base, variant), atol=1e-4):
                    raise CheckFailed(f"{case}: {hint}")
            if not torch.allclose(got.norm(dim=-1), x.double().norm(dim=-1), atol=1e-4):
                raise CheckFailed(f"{case}: the vector lengths changed; a rotation preserves the length of "
                                  "every pair (use cos and sin of the same angle for both entries)")
            raise CheckFailed(f"{case}: the result is not the rotation of each pair (2i, 2i+1) at position t "
                              f"by t·base^(-2i/D); try D=2 and a single position by hand")

    return run_check("apply_rope", body, quiet)


# --- exercise: the ALiBi bias ---------------------------------------------------------------------

def _alibi_reference(n_head: int, T: int) -> torch.Tensor:
    bias = torch.full((n_head, T, T), -math.inf, dtype=torch.float64)
    for h in range(n_head):
        slope = 2.0 ** (-8.0 * (h + 1) / n_head)
        for i in range(T):
            for j in range(i + 1):
                bias[h, i, j] = -slope * (i - j)
    return bias


def check_alibi_bias(alibi_bias: Callable[[int, int], torch.Tensor], quiet: bool = False) -> CheckResult:
    """Check ``alibi_bias(n_head, T)`` → ``(n_head, T, T)``: ``-m_h·(i - j)`` for keys ``j <= i`` and
    ``-inf`` for future keys ``j > i``, with slopes ``m_h = 2^(-8h/n_head)``, ``h = 1..n_head``."""
    def body() -> None:
        for n_head, T in ((1, 1), (2, 3), (4, 6), (8, 5)):
            case = f"n_head={n_head}, T={T}"
            got = _as_tensor(alibi_bias(n_head, T), f"alibi_bias({n_head}, {T})", (n_head, T, T))
            want = _alibi_reference(n_head, T)
            future = torch.isinf(want)
            if not torch.equal(torch.isneginf(got), future):
                raise CheckFailed(f"{case}: exactly the future keys (j > i) should be -inf, so the bias "
                                  "doubles as the causal mask")
            got, want = got.masked_fill(future, 0.0), want.masked_fill(future, 0.0)
            if torch.allclose(got, want, atol=1e-6):
                continue
            if torch.allclose(got, -want, atol=1e-6):
                raise CheckFailed(f"{case}: the bias has the wrong sign; distant keys should be penalised")
            if torch.allclose(got, want.flip(0), atol=1e-6):
                raise CheckFailed(f"{case}: the slopes are in reverse order; head 1 has the steepest slope")
            row = got[:, -1, 0] / max(T - 1, 1)
            raise CheckFailed(f"{case}: the slopes you used are {[round(s, 4) for s in (-row).tolist()]}; "
                              "they should form the geometric sequence 2^(-8h/n_head), h = 1..n_head, "
                              "and the bias should grow linearly with the distance i - j")

    return run_check("alibi_bias", body, quiet)


# --- exercise (an experiment): the receptive field of sliding-window attention ----------------------

#: The (window, n_layer) settings of the experiment; a context of 64 positions holds every reach.
RECEPTIVE_CASES = ((4, 1), (4, 2), (8, 3), (16, 2))


def check_receptive_field(measured: Mapping[tuple[int, int], int], quiet: bool = False) -> CheckResult:
    """Check ``measured``: ``{(window, n_layer): reach}`` for every case in ``RECEPTIVE_CASES``, where
    ``reach`` is how many positions before the last one the earliest token sits whose change alters
    the last position's logits, in a ``GPT`` with that ``window`` and ``n_layer``.

    The reference is the argument of the chapter: one layer passes on what its query's window saw,
    ``window - 1`` positions back, and the layers add up, ``n_layer * (window - 1)``."""
    def body() -> None:
        if callable(measured) or not isinstance(measured, Mapping):
            raise CheckFailed(f"pass the dict of your measurements {{(window, n_layer): reach}}, "
                              f"got {type(measured).__name__}")
        if not measured:
            raise CheckUnsolved("receptive is empty: no results yet. Measure the reach of every "
                                "(window, n_layer) in RECEPTIVE_CASES and fill in the dict")
        missing = [case for case in RECEPTIVE_CASES if case not in measured]
        if missing:
            raise CheckFailed(f"no measurement for (window, n_layer) = {', '.join(map(str, missing))}; the keys "
                              f"are the pairs {RECEPTIVE_CASES}")
        for (W, L) in RECEPTIVE_CASES:
            got = measured[(W, L)]
            got = got.item() if hasattr(got, "item") else got
            if isinstance(got, bool) or not isinstance(got, (int, float)) or not float(got).is_integer():
                raise CheckFailed(f"measured[{(W, L)}] should be a whole number of positions, got {got!r}")
            want = L * (W - 1)
            if got == want:
                continue
            if got in (want + 1, L * W):
                hint = ("report the distance back from the last position to the earliest one that matters, not "
                        "the number of positions that matter (the last one included): a window of W positions "
                        "includes the query's own, so one layer reaches W - 1 positions back")
            elif got == W - 1 and L > 1:
                hint = ("that is the reach of a single layer; every layer mixes in what the previous one's window "
                        "saw, so measure at the logits of the full model with n_layer layers")
            elif got > want:
                hint = ("tokens further back than the window allows changed the logits: did you build the model "
                        "with window=W?")
            else:
                hint = ("you found fewer positions than the model can reach: use a sequence longer than the reach, "
                        "perturb every earlier position, and compare the logits exactly (torch.equal), not within "
                        "a tolerance: a change that crossed several layers can be small")
            raise CheckFailed(f"for window={W}, n_layer={L} you measured a reach of {got}, which is not what the "
                              f"model does; {hint}")

    return run_check("receptive_field", body, quiet)
