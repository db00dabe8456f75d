"""The chapter 1 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import math

import pytest
import torch

import lmcore
from lmcore.exercises import ch01 as exercises  # every check of chapter 1, re-exported or not

# --- reference solutions (written as a student would, independently of the checks) ---------------

def sample_from_logits(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    probs = torch.softmax(logits, dim=-1)
    below = probs.cumsum(dim=-1) <= u.unsqueeze(-1)  # True for every index the draw has passed
    return below.sum(dim=-1).clamp(max=logits.shape[-1] - 1)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    m = logits.max(dim=-1, keepdim=True).values
    logsumexp = m.squeeze(-1) + (logits - m).exp().sum(dim=-1).log()
    return (logsumexp - logits.gather(-1, targets[:, None]).squeeze(-1)).mean()


def perplexity(logprobs: torch.Tensor) -> float:
    return math.exp(-logprobs.mean().item())


def bits_per_char_given(compress, context, text):
    extra_bytes = len(compress((context + text).encode())) - len(compress(context.encode()))
    return 8 * extra_bytes / len(text)


def stub(*args):
    raise NotImplementedError("write your solution here")


# --- plausible wrong answers ----------------------------------------------------------------------

def sampler_unnormalised(logits, u):  # cumulative sum of exp(logits), never divided by their sum
    return (logits.exp().cumsum(-1) <= u.unsqueeze(-1)).sum(-1).clamp(max=logits.shape[-1] - 1)


def sampler_naive_softmax(logits, u):  # exp without subtracting the maximum
    p = logits.exp() / logits.exp().sum(-1, keepdim=True)
    return (p.cumsum(-1) <= u.unsqueeze(-1)).sum(-1).clamp(max=logits.shape[-1] - 1)


def sampler_flat_cumsum(logits, u):  # cumulative sum over the whole batch, not per row
    p = torch.softmax(logits, -1)
    c = p.flatten().cumsum(0).view_as(p)
    return (c <= u.unsqueeze(-1)).sum(-1).clamp(max=logits.shape[-1] - 1)


def sampler_greedy(logits, u):
    return logits.argmax(-1)


def sampler_float_index(logits, u):
    return sample_from_logits(logits, u).float()


def sampler_off_by_one(logits, u):
    return (sample_from_logits(logits, u) + 1).clamp(max=logits.shape[-1] - 1)


def ce_sum(logits, targets):
    return cross_entropy(logits, targets) * len(targets)


def ce_naive(logits, targets):  # softmax by hand, without subtracting the maximum logit
    p = logits.exp() / logits.exp().sum(-1, keepdim=True)
    return -p.gather(-1, targets[:, None]).log().mean()


def ce_no_sign(logits, targets):
    return -cross_entropy(logits, targets)


def ce_no_normaliser(logits, targets):
    return -logits.gather(-1, targets[:, None]).mean()


def ppl_sum(logprobs):
    return math.exp(-logprobs.sum().item())


def ppl_sign(logprobs):
    return math.exp(logprobs.mean().item())


def ppl_base2(logprobs):
    return 2 ** (-logprobs.mean().item())


def ppl_product(logprobs):
    return logprobs.double().exp().prod().item() ** (-1 / len(logprobs))


def ppl_neg_mean(logprobs):
    return -logprobs.mean().item()


def bpc_bytes(compress, context, text):  # compressed bytes, not bits
    return bits_per_char_given(compress, context, text) / 8


def bpc_no_context(compress, context, text):  # the text compressed on its own
    return 8 * len(compress(text.encode())) / len(text)


def bpc_no_subtraction(compress, context, text):  # the context's own cost left in
    return 8 * len(compress((context + text).encode())) / len(text)


def bpc_all_chars(compress, context, text):  # divided by the characters of context and text
    return bits_per_char_given(compress, context, text) * len(text) / len(context + text)


def bpc_per_byte(compress, context, text):  # per UTF-8 byte of the text instead of per character
    return bits_per_char_given(compress, context, text) * len(text) / len(text.encode())


CASES = {
    "check_sample_from_logits": (sample_from_logits, [sampler_unnormalised, sampler_naive_softmax, sampler_flat_cumsum,
                                                      sampler_greedy, sampler_float_index, sampler_off_by_one]),
    "check_cross_entropy": (cross_entropy, [ce_sum, ce_naive, ce_no_sign, ce_no_normaliser]),
    "check_perplexity": (perplexity, [ppl_sum, ppl_sign, ppl_base2, ppl_product, ppl_neg_mean]),
    "check_bits_per_char_given": (bits_per_char_given, [bpc_bytes, bpc_no_context, bpc_no_subtraction,
                                                        bpc_all_chars, bpc_per_byte]),
}


@pytest.mark.parametrize("name", CASES)
def test_reference_passes(name, capsys):
    check = getattr(exercises, name)
    assert check(CASES[name][0]).status == "pass"
    assert capsys.readouterr().out.startswith("PASS ")


@pytest.mark.parametrize("name", CASES)
def test_stub_fails_as_not_attempted(name, capsys):
    assert getattr(exercises, name)(stub).status == "unsolved"
    assert "NOT SOLVED YET" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(n, w) for n, (_, ws) in CASES.items() for w in ws],
                         ids=[w.__name__ for _, ws in CASES.values() for w in ws])
def test_wrong_answers_fail_with_a_hint(name, wrong, capsys):
    assert getattr(exercises, name)(wrong).status == "fail"
    out = capsys.readouterr().out
    assert out.startswith("FAIL ") and len(out) > 40


def test_quiet_prints_nothing(capsys):
    assert exercises.check_perplexity(ppl_sum, quiet=True).status == "fail"
    assert exercises.check_perplexity(perplexity, quiet=True).status == "pass"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name, wrong, hint", [
    ("check_sample_from_logits", sampler_naive_softmax, "overflows"),
    ("check_sample_from_logits", sampler_flat_cumsum, "first index whose cumulative probability"),
    ("check_cross_entropy", ce_sum, "sum over"),
    ("check_cross_entropy", ce_naive, "overflow"),
    ("check_perplexity", ppl_product, "underflows"),
    ("check_perplexity", ppl_sum, "per-token"),
    ("check_bits_per_char_given", bpc_bytes, "8 bits"),
    ("check_bits_per_char_given", bpc_no_context, "on its own"),
    ("check_bits_per_char_given", bpc_no_subtraction, "context alone"),
    ("check_bits_per_char_given", bpc_all_chars, "text only"),
    ("check_bits_per_char_given", bpc_per_byte, "per character"),
])
def test_specific_hints(name, wrong, hint, capsys):
    getattr(exercises, name)(wrong)
    assert hint in capsys.readouterr().out


@pytest.mark.parametrize("name", exercises.__all__)
def test_every_check_is_reexported_by_the_package(name):
    assert getattr(lmcore.exercises, name, None) is getattr(exercises, name), (
        f"lmcore.exercises does not re-export {name}: add it to lmcore/exercises/__init__.py")


@pytest.mark.parametrize("name, wrong", [("check_sample_from_logits", sampler_naive_softmax),
                                         ("check_cross_entropy", ce_naive)])
def test_overflow_hints_point_at_the_mistake_without_giving_the_trick_away(name, wrong, capsys):
    """Issue 18: hints that state the whole rule give the answer away."""
    assert getattr(exercises, name)(wrong).status == "fail"
    out = capsys.readouterr().out
    assert "overflows to inf" in out and ("without changing the softmax" in out or "leaves the softmax unchanged" in out)
    assert "subtract max" not in out and "largest logit is subtracted" not in out and "logsumexp(z)" not in out
