"""The chapter 5 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import math

import pytest
import torch
from _checks import assert_check_behaves

from lmcore import exercises

# --- reference solutions (written as a student would, independently of the checks) ---------------

def causal_attention(q, k, v):
    T, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    allowed = torch.tril(torch.ones(T, T, dtype=torch.bool))
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v


def layer_norm(x, gain, bias, eps):
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + eps) * gain + bias


def stub(*args):
    raise NotImplementedError("write your solution here")


# --- plausible wrong answers ----------------------------------------------------------------------

def attention_no_mask(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def attention_no_scale(q, k, v):
    return causal_attention(q * math.sqrt(q.shape[-1]), k, v)


def attention_scale_by_d(q, k, v):
    return causal_attention(q / math.sqrt(q.shape[-1]), k, v)


def attention_zero_mask(q, k, v):        # masks with 0 instead of -inf: the future still gets weight
    T = q.shape[-2]
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])) * torch.tril(torch.ones(T, T))
    return torch.softmax(scores, dim=-1) @ v


def attention_upper_mask(q, k, v):       # attends to the future instead of the past
    return causal_attention(q.flip(-2), k.flip(-2), v.flip(-2)).flip(-2)


def attention_softmax_over_queries(q, k, v):
    T = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
    return torch.softmax(scores, dim=-2).nan_to_num() @ v


def layer_norm_unbiased(x, gain, bias, eps):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * gain + bias


def layer_norm_eps_outside(x, gain, bias, eps):
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True, unbiased=False) + eps) * gain + bias


def layer_norm_wrong_dim(x, gain, bias, eps):  # batch-norm-like: statistics over the first dimension
    mu, var = x.mean(0, keepdim=True), x.var(0, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + eps) * gain + bias


def layer_norm_no_affine(x, gain, bias, eps):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], eps=eps)


@pytest.mark.parametrize("check,good,bad", [
    ("check_causal_attention", causal_attention,
     [stub, attention_no_mask, attention_no_scale, attention_scale_by_d, attention_zero_mask,
      attention_upper_mask, attention_softmax_over_queries]),
    ("check_layer_norm", layer_norm,
     [stub, layer_norm_unbiased, layer_norm_eps_outside, layer_norm_wrong_dim, layer_norm_no_affine]),
])
def test_check_passes_reference_and_fails_wrong_answers(check, good, bad, capsys):
    assert_check_behaves(getattr(exercises, check), good, [w for w in bad if w is not stub], capsys)


def test_reference_matches_torch_sdpa():
    """The reference solution the check is tested with is PyTorch's own causal attention."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 16, generator=g) for _ in range(3))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(causal_attention(q, k, v), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wrong,phrase", [(attention_no_mask, "no causal mask"), (attention_no_scale, "not scaled"),
                                          (attention_scale_by_d, "divided by d"),
                                          (attention_zero_mask, "-inf"),
                                          (layer_norm_unbiased, "unbiased"), (layer_norm_eps_outside, "inside")])
def test_hints_name_the_mistake(wrong, phrase, capsys):
    check = exercises.check_layer_norm if wrong.__name__.startswith("layer") else exercises.check_causal_attention
    check(wrong)
    assert phrase in capsys.readouterr().out


# --- exercise 5: how sharp must a lookup be ------------------------------------------------------

def _lookup_error(K, V, q, i, s, scale_by):
    weights = torch.softmax(s * (K @ q) / scale_by, dim=0)
    return (weights @ V - V[i]).abs().max().item()


def sharpest_needed(K, V, q, i, tol):
    s = 1
    while _lookup_error(K, V, q, i, s, math.sqrt(K.shape[1])) >= tol:
        s += 1
    return s


def sharpest_one_too_few(K, V, q, i, tol):
    return sharpest_needed(K, V, q, i, tol) - 1


def sharpest_without_sqrt_d(K, V, q, i, tol):
    s = 1
    while _lookup_error(K, V, q, i, s, 1.0) >= tol:
        s += 1
    return s


def sharpest_by_weight(K, V, q, i, tol):    # the weight on key i within tol of 1, not the output
    s = 1
    while 1 - torch.softmax(s * (K @ q) / math.sqrt(K.shape[1]), dim=0)[i].item() >= tol:
        s += 1
    return s


def test_sharpest_needed_check(capsys):
    assert_check_behaves(exercises.check_sharpest_needed, sharpest_needed,
                         [(sharpest_one_too_few, "first one"), (sharpest_without_sqrt_d, "√d"), sharpest_by_weight],
                         capsys)


def test_sharpest_needed_on_the_chapter_example():
    """The chapter's query needs a scale of 7 for 0.01 (computed by hand: key 2 scores 2 s / √3,
    keys 3 and 4 score 0.5 s / √3, key 1 scores 0)."""
    K = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]])
    V = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    q = torch.tensor([0.0, 2, 0.5])
    s = sharpest_needed(K, V, q, 1, 0.01)
    w = [math.exp(s * x / math.sqrt(3)) for x in (0, 2, 0.5, 0.5)]
    err = max(abs(w[0] - w[2]) / sum(w), abs(1 - (w[1] - w[3]) / sum(w)))
    w1 = [math.exp((s - 1) * x / math.sqrt(3)) for x in (0, 2, 0.5, 0.5)]
    err1 = max(abs(w1[0] - w1[2]) / sum(w1), abs(1 - (w1[1] - w1[3]) / sum(w1)))
    assert err < 0.01 <= err1
