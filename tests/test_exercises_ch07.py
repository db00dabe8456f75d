"""The chapter 7 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import math

import pytest
import torch

from lmcore import exercises

# --- reference solutions (written as a student would, independently of the checks) ---------------

def kv_cache_bytes(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element, batch_size=1, window=None):
    positions = seq_len if window is None else min(seq_len, window)
    return 2 * n_layer * n_kv_head * head_dim * positions * bytes_per_element * batch_size


def cached_attention_step(q, k, v, k_cache, v_cache, pos):
    k_cache[:, :, pos] = k[:, :, 0]
    v_cache[:, :, pos] = v[:, :, 0]
    keys, values = k_cache[:, :, :pos + 1], v_cache[:, :, :pos + 1]
    weights = torch.softmax(q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ values


def stub(*args, **kwargs):
    raise NotImplementedError("write your solution here")


# --- plausible wrong answers ----------------------------------------------------------------------

def bytes_no_values(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element, batch_size=1, window=None):
    return kv_cache_bytes(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element, batch_size, window) // 2


def bytes_ignore_window(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element, batch_size=1, window=None):
    return kv_cache_bytes(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element, batch_size)


def bytes_window_always(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element, batch_size=1, window=None):
    return kv_cache_bytes(n_layer, n_kv_head, head_dim, window or seq_len, bytes_per_element, batch_size)


def bytes_ignore_batch(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element, batch_size=1, window=None):
    return kv_cache_bytes(n_layer, n_kv_head, head_dim, seq_len, bytes_per_element, 1, window)


def bytes_in_gib(*args, **kwargs):  # a unit slip: gibibytes instead of bytes
    return kv_cache_bytes(*args, **kwargs) / 2**30


def step_writes_one_late(q, k, v, k_cache, v_cache, pos):  # off by one: writes at pos + 1
    k_cache[:, :, pos + 1] = k[:, :, 0]
    v_cache[:, :, pos + 1] = v[:, :, 0]
    keys, values = k_cache[:, :, :pos + 2], v_cache[:, :, :pos + 2]
    weights = torch.softmax(q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ values


def step_excludes_itself(q, k, v, k_cache, v_cache, pos):  # attends to 0..pos-1 only
    k_cache[:, :, pos] = k[:, :, 0]
    v_cache[:, :, pos] = v[:, :, 0]
    keys, values = k_cache[:, :, :pos], v_cache[:, :, :pos]
    weights = torch.softmax(q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ values


def step_attends_to_whole_buffer(q, k, v, k_cache, v_cache, pos):  # forgets the empty tail is not data
    k_cache[:, :, pos] = k[:, :, 0]
    v_cache[:, :, pos] = v[:, :, 0]
    weights = torch.softmax(q @ k_cache.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v_cache


def step_unscaled(q, k, v, k_cache, v_cache, pos):
    return cached_attention_step(q * math.sqrt(q.shape[-1]), k, v, k_cache, v_cache, pos)


def step_concatenates(q, k, v, k_cache, v_cache, pos):  # never fills the preallocated buffers
    keys = torch.cat([k_cache[:, :, :pos], k], dim=2)
    values = torch.cat([v_cache[:, :, :pos], v], dim=2)
    weights = torch.softmax(q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ values


# --- the checks -----------------------------------------------------------------------------------

CHECKS = {
    "kv_cache_bytes": (exercises.check_kv_cache_bytes, kv_cache_bytes,
                       [bytes_no_values, bytes_ignore_window, bytes_window_always, bytes_ignore_batch,
                        bytes_in_gib]),
    "cached_attention_step": (exercises.check_cached_attention_step, cached_attention_step,
                              [step_writes_one_late, step_excludes_itself, step_attends_to_whole_buffer,
                               step_unscaled, step_concatenates]),
}


@pytest.mark.parametrize("name", CHECKS)
def test_check_passes_on_reference(name, capsys):
    check, solution, _ = CHECKS[name]
    assert check(solution) is True
    assert capsys.readouterr().out.strip() == f"PASS {name}"


@pytest.mark.parametrize("name", CHECKS)
def test_check_reports_stub_as_not_implemented(name, capsys):
    check, _, _ = CHECKS[name]
    assert check(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(name, w) for name, (_, _, ws) in CHECKS.items() for w in ws],
                         ids=lambda x: getattr(x, "__name__", x))
def test_check_fails_on_wrong_answer(name, wrong, capsys):
    check, _, _ = CHECKS[name]
    assert check(wrong) is False
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL {name}:")


def test_hints_name_the_mistake(capsys):
    """The most common slips get a hint that points at them (but never the formula itself)."""
    expected = {bytes_no_values: "keys and values", bytes_ignore_window: "only the last `window`",
                bytes_window_always: "shorter than the window", bytes_ignore_batch: "every sequence",
                step_writes_one_late: "at index pos", step_excludes_itself: "itself included",
                step_concatenates: "in place", step_unscaled: "1/sqrt(head_dim)"}
    for wrong, phrase in expected.items():
        check = exercises.check_kv_cache_bytes if wrong.__name__.startswith("bytes") \
            else exercises.check_cached_attention_step
        check(wrong)
        assert phrase in capsys.readouterr().out, wrong.__name__


def test_quiet_prints_nothing(capsys):
    assert exercises.check_kv_cache_bytes(kv_cache_bytes, quiet=True) is True
    assert exercises.check_cached_attention_step(step_unscaled, quiet=True) is False
    assert capsys.readouterr().out == ""
