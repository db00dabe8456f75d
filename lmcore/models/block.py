"""The transformer block of chapter 5: attention and an MLP, each in a residual connection.

``MLP`` is ``n_embd → 4·n_embd → GELU → n_embd``. ``Block`` wraps attention and the MLP in residual
connections with LayerNorm either before the sublayer (pre-norm, GPT-2: ``x + f(LN(x))``) or after
the residual sum (post-norm, the original transformer: ``LN(x + f(x))``). ``GPT`` stacks them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .attention import AttentionInputs, CausalSelfAttention

if TYPE_CHECKING:
    from .gpt import GPTConfig

__all__ = ["MLP", "Block"]


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.act = nn.GELU(approximate="tanh" if config.activation == "gelu_new" else "none")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pre_norm:   # GPT-2: x + f(LN(x)); the residual stream itself is never normalised
            a, weights = self.attn(self.ln_1(x), inputs, need_weights)
            x = x + a
            x = x + self.mlp(self.ln_2(x))
        else:               # original transformer: LN(x + f(x))
            a, weights = self.attn(x, inputs, need_weights)
            x = self.ln_1(x + a)
            x = self.ln_2(x + self.mlp(x))
        return x, weights
