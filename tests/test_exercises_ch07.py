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
    assert check(solution).status == "pass"
    assert capsys.readouterr().out.strip() == f"PASS {name}"


@pytest.mark.parametrize("name", CHECKS)
def test_check_reports_stub_as_not_implemented(name, capsys):
    check, _, _ = CHECKS[name]
    assert check(stub).status == "unsolved"
    assert "NOT SOLVED YET" in capsys.readouterr().out


@pytest.mark.parametrize("name, wrong", [(name, w) for name, (_, _, ws) in CHECKS.items() for w in ws],
                         ids=lambda x: getattr(x, "__name__", x))
def test_check_fails_on_wrong_answer(name, wrong, capsys):
    check, _, _ = CHECKS[name]
    assert check(wrong).status == "fail"
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
    assert exercises.check_kv_cache_bytes(kv_cache_bytes, quiet=True).status == "pass"
    assert exercises.check_cached_attention_step(step_unscaled, quiet=True).status == "fail"
    assert capsys.readouterr().out == ""


# --- exercise 4: the FLOPs of a cached step with a sliding window (measured, as a student would) ----

def _measure(prefill=lambda t: t, whole=False, **overrides) -> dict[int, int]:
    """{t: FLOPs} counted by FlopCounterMode for the step after a prefill of ``prefill(t)`` tokens of a
    model built from WINDOW_CONFIG with ``overrides`` (``whole``: count a forward over the whole sequence)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lmcore import GPT, GPTConfig
    from lmcore.exercises.ch07 import WINDOW_CONFIG, WINDOW_POSITIONS

    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**WINDOW_CONFIG, **overrides})).eval()
    out = {}
    for t in WINDOW_POSITIONS:
        ids = torch.zeros(1, t + 1, dtype=torch.long)
        cache = model.make_cache(1)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode():
            if whole:
                with counter:
                    model(ids, last_only=True)
            else:
                model(ids[:, :prefill(t)], kv_cache=cache)
                with counter:
                    model(ids[:, prefill(t):prefill(t) + 1], kv_cache=cache, last_only=True)
        out[t] = counter.get_total_flops()
    return out


@pytest.fixture(scope="module")
def window_measurements() -> dict[str, dict[int, int]]:
    return {"right": _measure(), "fused attention": _measure(attn_impl="sdpa"), "no window": _measure(window=None),
            "whole sequence": _measure(whole=True), "prefill one short": _measure(prefill=lambda t: t - 1)}


def test_window_check_passes_on_a_real_measurement(window_measurements, capsys):
    assert exercises.check_window_step_flops(window_measurements["right"]).status == "pass"
    assert capsys.readouterr().out.strip() == "PASS window_step_flops"


@pytest.mark.parametrize("wrong, phrase", [("fused attention", "attn_impl='reference'"),
                                           ("no window", "every cached position"),
                                           ("whole sequence", "whole sequence"),
                                           ("prefill one short", "wrong position")])
def test_window_check_names_the_mistake_of_a_wrong_measurement(window_measurements, wrong, phrase, capsys):
    assert exercises.check_window_step_flops(window_measurements[wrong]).status == "fail"
    out = capsys.readouterr().out
    assert out.startswith("FAIL window_step_flops:") and phrase in out, out


def test_window_check_reports_the_empty_starter_dict_as_unsolved(capsys):
    assert exercises.check_window_step_flops({}).status == "unsolved"
    assert capsys.readouterr().out.startswith("NOT SOLVED YET window_step_flops: window_flops is empty")


@pytest.mark.parametrize("bad, phrase", [({8: 1.0}, "no measurement"), (lambda: 0, "pass the dict"),
                                         ({t: "many" for t in (8, 16, 32, 64, 128, 256)}, "a number of FLOPs")])
def test_window_check_refuses_what_is_not_a_measurement(bad, phrase, capsys):
    assert exercises.check_window_step_flops(bad).status == "fail"
    assert phrase in capsys.readouterr().out


def test_window_check_rejects_a_count_off_by_one_key(window_measurements, capsys):
    """A count that is one key short everywhere (a plausible hand formula) fails: the check is exact."""
    from lmcore.exercises.ch07 import WINDOW_CONFIG
    d, n_layer = WINDOW_CONFIG["n_embd"], WINDOW_CONFIG["n_layer"]
    short = {t: f - 4 * n_layer * d for t, f in window_measurements["right"].items()}
    assert exercises.check_window_step_flops(short).status == "fail"
    assert capsys.readouterr().out.startswith("FAIL window_step_flops:")
