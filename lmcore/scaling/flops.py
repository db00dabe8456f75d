"""Counting (chapter 9): the parameters and training FLOPs of a ``GPT`` from its config alone.

``param_count(config)`` is the number of parameters of ``GPT(config)`` without building it;
``flops_breakdown(config)`` the matrix-multiply FLOPs of one forward pass per token, part by part;
``flops_per_token(config)`` and ``training_flops(config, tokens)`` the forward + backward cost,
either counted (``method="count"``) or by the rule of thumb ``C ≈ 6·N·D`` (``method="6N"``), N the
non-embedding parameters and D the training tokens.

FLOP convention: one multiply-add is 2 FLOPs, and only matrix multiplies are counted. Training
costs 3 × forward, because the backward pass of a matmul is two products (one for the gradient of
each operand).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_bool, check_choice, check_int
from ..models import GPTConfig

__all__ = ["flops_breakdown", "flops_per_token", "param_count", "training_flops"]

FLOP_METHODS = ("count", "6N")


def _check_config(config: Any) -> GPTConfig:
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a lmcore.GPTConfig, got {type(config).__name__}")
    return config


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds; anything else unchanged."""
    # Counts often come out of numpy (np.int64 from an array of budgets); the checks in
    # lmcore._checks take Python numbers only, and the sweep's cache key must be JSON.
    return value.item() if isinstance(value, np.generic) else value


def param_count(config: GPTConfig, non_embedding: bool = True) -> int:
    """Parameters of ``GPT(config)``, computed from the sizes alone (no weights are allocated).

    With ``non_embedding`` (the convention of Kaplan et al. and of ``GPT.num_params``) the token
    and learned position embeddings are left out; an untied output head is counted.
    """
    cfg = _check_config(config)
    E, V = cfg.n_embd, cfg.vocab_size
    b = 1 if cfg.bias else 0
    ln = E * (1 + b)                                           # gain (+ bias)
    qkv_out = (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim
    attn = E * qkv_out + b * qkv_out + E * E + b * E           # c_attn, c_proj
    mlp = E * 4 * E + b * 4 * E + 4 * E * E + b * E            # c_fc, c_proj
    n = cfg.n_layer * (2 * ln + attn + mlp)
    n += ln if cfg.norm == "pre" else 0                        # ln_f exists only with pre-norm
    n += 0 if cfg.tie_weights else V * E                       # an untied lm_head is a real matrix
    if not check_bool("non_embedding", non_embedding):
        n += V * E + (cfg.context_length * E if cfg.pos_encoding == "learned" else 0)
    return n


def flops_breakdown(config: GPTConfig, seq_len: int | None = None) -> dict[str, int]:
    """Forward-pass matmul FLOPs per token of ``GPT(config)`` on sequences of ``seq_len`` tokens
    (default ``context_length``), by part, summed over layers: ``qkv``, ``attn_scores`` (Q·Kᵀ),
    ``attn_values`` (weights·V), ``attn_proj``, ``mlp`` and ``lm_head``."""
    cfg = _check_config(config)
    check_int("seq_len", seq_len, low=1, high=cfg.context_length, optional=True)
    T = cfg.context_length if seq_len is None else seq_len
    E, L = cfg.n_embd, cfg.n_layer
    # LayerNorm, GELU, softmax and the residual additions cost a few FLOPs per activation,
    # negligible next to the matmuls, so they are left out.
    return {
        "qkv": L * 2 * E * (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim,
        # each of the T queries meets T keys in every head: T·T·head_dim·n_head per sequence. The
        # full T × T matrix is counted: the causal mask hides half of it, but the kernels compute it all.
        "attn_scores": L * 2 * T * E,
        "attn_values": L * 2 * T * E,
        "attn_proj": L * 2 * E * E,
        "mlp": L * 2 * 2 * E * 4 * E,
        "lm_head": 2 * E * cfg.vocab_size,
    }


def flops_per_token(config: GPTConfig, method: str = "count", seq_len: int | None = None) -> int:
    """Training FLOPs (forward + backward) per token: ``3 × sum(flops_breakdown)`` for
    ``method="count"``, or ``6 · param_count(config)`` for ``method="6N"``."""
    check_choice("method", method, FLOP_METHODS)
    if method == "6N":
        return 6 * param_count(config)
    return 3 * sum(flops_breakdown(config, seq_len).values())


def training_flops(config: GPTConfig, tokens: int, method: str = "count", seq_len: int | None = None) -> int:
    """FLOPs to train ``GPT(config)`` on ``tokens`` tokens (see :func:`flops_per_token`)."""
    tokens = check_int("tokens", _plain(tokens), low=0)
    return flops_per_token(config, method, seq_len) * tokens
