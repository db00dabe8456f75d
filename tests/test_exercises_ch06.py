"""The chapter 6 exercise checks pass on reference solutions and fail on stubs and wrong answers."""
from __future__ import annotations

import pytest
import torch

from lmcore import exercises

# --- reference solutions (written as a student would, independently of the checks) ---------------

def sinusoidal_table(context_length: int, n_embd: int) -> torch.Tensor:
    t = torch.arange(context_length, dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(0, n_embd, 2, dtype=torch.float64) / n_embd)
    pe = torch.zeros(context_length, n_embd)
    pe[:, 0::2] = torch.sin(t * omega)
    pe[:, 1::2] = torch.cos(t * omega)
    return pe


def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    D = x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    angle = positions.float()[:, None] * theta
    cos, sin = angle.cos(), angle.sin()
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def alibi_bias(n_head: int, T: int) -> torch.Tensor:
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_head + 1) / n_head)
    i = torch.arange(T)
    distance = (i[:, None] - i[None, :]).float()
    bias = -slopes[:, None, None] * distance
    return bias.masked_fill(distance < 0, float("-inf"))


def stub(*args):
    raise NotImplementedError("write your solution here")


# --- plausible wrong answers ----------------------------------------------------------------------

def table_swapped(context_length, n_embd):
    pe = sinusoidal_table(context_length, n_embd)
    return torch.stack((pe[:, 1::2], pe[:, 0::2]), dim=-1).flatten(1)


def table_frequency(context_length, n_embd):  # exponent i/d instead of 2i/d
    t = torch.arange(context_length, dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-torch.arange(n_embd // 2, dtype=torch.float64) / n_embd)
    return torch.stack((torch.sin(t * omega), torch.cos(t * omega)), dim=-1).flatten(1).float()


def table_halves(context_length, n_embd):  # sines in the first half, cosines in the second
    pe = sinusoidal_table(context_length, n_embd)
    return torch.cat((pe[:, 0::2], pe[:, 1::2]), dim=1)


def table_positions_from_one(context_length, n_embd):
    return sinusoidal_table(context_length + 1, n_embd)[1:]


def rope_halves(x, positions, base=10000.0):  # pairs (i, i + D/2), the "rotate half" layout
    D = x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    angle = positions.float()[:, None] * theta
    a, b = x[..., : D // 2], x[..., D // 2:]
    return torch.cat((a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()), dim=-1)


def rope_frequency(x, positions, base=10000.0):  # base^(-i/D): pairs turn too slowly
    D = x.shape[-1]
    theta = base ** (-torch.arange(D // 2, dtype=torch.float32) / D)
    angle = positions.float()[:, None] * theta
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()), dim=-1).flatten(-2)


def rope_clockwise(x, positions, base=10000.0):
    return apply_rope(x, -positions, base)


def rope_in_place(x, positions, base=10000.0):
    x.copy_(apply_rope(x, positions, base))
    return x


def rope_identity(x, positions, base=10000.0):
    return x.clone()


def rope_scaled(x, positions, base=10000.0):  # a "rotation" that also stretches the vector
    return 1.5 * apply_rope(x, positions, base)


def alibi_positive(n_head, T):
    bias = alibi_bias(n_head, T)
    return torch.where(torch.isinf(bias), bias, -bias)


def alibi_reversed(n_head, T):
    return alibi_bias(n_head, T).flip(0)


def alibi_no_mask(n_head, T):
    return alibi_bias(n_head, T).nan_to_num(neginf=0.0)


def alibi_slopes_over_heads(n_head, T):  # slopes 2^(-h/n) instead of 2^(-8h/n)
    slopes = 2.0 ** (-torch.arange(1, n_head + 1) / n_head)
    i = torch.arange(T)
    distance = (i[:, None] - i[None, :]).float()
    return (-slopes[:, None, None] * distance).masked_fill(distance < 0, float("-inf"))


CASES = [
    (exercises.check_sinusoidal_table, sinusoidal_table,
     [table_swapped, table_frequency, table_halves, table_positions_from_one]),
    (exercises.check_apply_rope, apply_rope,
     [rope_halves, rope_frequency, rope_clockwise, rope_in_place, rope_identity, rope_scaled]),
    (exercises.check_alibi_bias, alibi_bias,
     [alibi_positive, alibi_reversed, alibi_no_mask, alibi_slopes_over_heads]),
]


@pytest.mark.parametrize("check, solution", [(c, s) for c, s, _ in CASES], ids=lambda v: getattr(v, "__name__", ""))
def test_reference_solution_passes(check, solution, capsys):
    assert check(solution).status == "pass"
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("check", [c for c, _, _ in CASES], ids=lambda c: c.__name__)
def test_stub_fails_as_not_implemented(check, capsys):
    assert check(stub).status == "unsolved"
    assert "NOT SOLVED YET" in capsys.readouterr().out


@pytest.mark.parametrize("check, wrong", [(c, w) for c, _, ws in CASES for w in ws],
                         ids=lambda v: getattr(v, "__name__", ""))
def test_wrong_answers_fail(check, wrong, capsys):
    assert check(wrong).status == "fail"
    out = capsys.readouterr().out
    assert out.startswith("FAIL")
    assert "raised" not in out, out   # the check diagnosed the mistake instead of crashing


def test_hints_name_the_mistake(capsys):
    expected = [(exercises.check_sinusoidal_table, table_swapped, "other way round"),
                (exercises.check_sinusoidal_table, table_frequency, "exponent"),
                (exercises.check_sinusoidal_table, table_halves, "side by side"),
                (exercises.check_apply_rope, rope_halves, "(2i, 2i+1)"),
                (exercises.check_apply_rope, rope_frequency, "wrong speeds"),
                (exercises.check_apply_rope, rope_clockwise, "clockwise"),
                (exercises.check_apply_rope, rope_in_place, "in place"),
                (exercises.check_apply_rope, rope_scaled, "lengths changed"),
                (exercises.check_alibi_bias, alibi_positive, "wrong sign"),
                (exercises.check_alibi_bias, alibi_reversed, "reverse order"),
                (exercises.check_alibi_bias, alibi_no_mask, "-inf"),
                (exercises.check_alibi_bias, alibi_slopes_over_heads, "geometric sequence")]
    for check, wrong, phrase in expected:
        check(wrong)
        out = capsys.readouterr().out
        assert phrase in out, (wrong.__name__, out)


def test_quiet_prints_nothing(capsys):
    assert exercises.check_alibi_bias(alibi_bias, quiet=True).status == "pass"
    assert exercises.check_alibi_bias(stub, quiet=True).status == "unsolved"
    assert capsys.readouterr().out == ""


# --- the receptive-field experiment: measured on real models, as a student would ------------------

def _reach(window, n_layer, T=64, count=False, tolerance=0.0, layers=None):
    """How far back the earliest token sits whose change alters the last position's logits.
    ``count``: report the number of positions that matter instead (a plausible slip); ``tolerance``:
    compare logits within it (another slip); ``layers``: build the model with that many layers instead."""
    from lmcore import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, context_length=T, n_layer=layers or n_layer, n_head=2, n_embd=16,
                          pos_encoding="rope", window=window)).eval()
    ids = torch.randint(30, (1, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = model(ids, last_only=True)[0]
        for j in range(T):
            changed = ids.clone()
            changed[0, j] = (changed[0, j] + 1) % 30
            if (model(changed, last_only=True)[0] - base).abs().max() > tolerance:
                return T - j if count else T - 1 - j
    return 0


def test_receptive_field_check_passes_on_real_measurements(capsys):
    measured = {(W, L): _reach(W, L) for W, L in exercises.ch06.RECEPTIVE_CASES}
    assert exercises.check_receptive_field(measured).status == "pass"
    assert capsys.readouterr().out.strip() == "PASS receptive_field"


@pytest.mark.parametrize("slip, phrase", [("count", "last one included"), ("one layer", "single layer"),
                                          ("no window", "window=W"), ("formula", "W - 1 positions back")])
def test_receptive_field_check_names_the_mistake(slip, phrase, capsys):
    cases = exercises.ch06.RECEPTIVE_CASES
    measured = {"count": lambda W, L: _reach(W, L, count=True),
                "one layer": lambda W, L: _reach(W, L, layers=1),
                "no window": lambda W, L: _reach(None, L),
                "formula": lambda W, L: W * L}[slip]
    assert exercises.check_receptive_field({(W, L): measured(W, L) for W, L in cases}).status == "fail"
    out = capsys.readouterr().out
    assert out.startswith("FAIL receptive_field:") and phrase in out, out


def test_receptive_field_check_refuses_non_measurements(capsys):
    assert exercises.check_receptive_field({}).status == "unsolved"     # the starter cell's empty dict
    assert capsys.readouterr().out.startswith("NOT SOLVED YET receptive_field: receptive is empty")
    for bad, phrase in (({(8, 1): 7}, "no measurement"), (lambda: 0, "pass the dict"),
                        ({case: 2.5 for case in exercises.ch06.RECEPTIVE_CASES}, "whole number")):
        assert exercises.check_receptive_field(bad).status == "fail"
        assert phrase in capsys.readouterr().out
