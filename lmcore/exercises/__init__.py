"""Checks students call on their exercise solutions: ``lmcore.exercises.check_<name>(their_fn)``.

Every check compares the student's function with lmcore's reference on fixed and random cases,
prints one line, ``PASS name``, ``FAIL name: hint`` (a hint, never the answer) or ``NOT SOLVED YET name: ...``
(the function still raises ``NotImplementedError``, or the results are still empty), and returns a
:class:`CheckResult` (``bool(result)`` is whether it passed; IPython displays nothing for it).
Chapter-specific checks live in ``lmcore/exercises/chNN.py`` and are re-exported here.
"""
from __future__ import annotations

from ._check import CheckFailed, CheckResult, run_check
from .ch01 import check_bits_per_char_given, check_cross_entropy, check_perplexity, check_sample_from_logits
from .ch02 import check_best_lambda, check_bigram_probs, check_jelinek_mercer
from .ch03 import check_apply_merges, check_merge, check_same_cut_fraction, check_train_bpe
from .ch04 import check_context_sweep, check_context_windows, check_mlp_logits
from .ch05 import check_causal_attention, check_layer_norm, check_sharpest_needed
from .ch06 import check_alibi_bias, check_apply_rope, check_receptive_field, check_sinusoidal_table
from .ch07 import check_cached_attention_step, check_kv_cache_bytes, check_window_step_flops
from .ch08 import PENALTY, PENALTY_CHARS, PENALTY_WINDOWS, check_min_p, check_penalty_window, check_top_p
from .ch09 import check_compute_optimal, check_fit_power_law, check_optimal_size_exponent, check_training_flops
from .ch10 import ADAPTER_SCALES, check_adapter_scale, check_assistant_mask, check_lora_forward, check_lora_param_count
from .ch11 import check_bradley_terry_loss, check_exact_posterior, check_verifier_kl

__all__ = [
    "CheckFailed", "CheckResult", "run_check",
    "check_sample_from_logits", "check_cross_entropy", "check_perplexity", "check_bits_per_char_given",
    "check_bigram_probs", "check_jelinek_mercer", "check_best_lambda",
    "check_merge", "check_apply_merges", "check_train_bpe", "check_same_cut_fraction",
    "check_context_windows", "check_mlp_logits", "check_context_sweep",
    "check_causal_attention", "check_layer_norm", "check_sharpest_needed",
    "check_sinusoidal_table", "check_apply_rope", "check_alibi_bias", "check_receptive_field",
    "check_kv_cache_bytes", "check_cached_attention_step", "check_window_step_flops",
    "check_top_p", "check_min_p", "check_penalty_window", "PENALTY_WINDOWS", "PENALTY", "PENALTY_CHARS",
    "check_training_flops", "check_fit_power_law", "check_compute_optimal", "check_optimal_size_exponent",
    "check_assistant_mask", "check_lora_forward", "check_lora_param_count", "check_adapter_scale", "ADAPTER_SCALES",
    "check_bradley_terry_loss", "check_exact_posterior", "check_verifier_kl",
]
