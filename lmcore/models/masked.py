"""A bidirectional masked language model, the encoder of BERT (chapter 5).

``MaskedLM`` is the transformer of :mod:`lmcore.models.gpt` without the causal mask: every
position attends to every other one, before and after it. It cannot be trained to predict the
next token (it would see it), so it is trained to fill in blanks: ``mask_tokens`` hides a random
fraction of the positions behind a ``[MASK]`` token (id ``vocab_size``), and the loss is the
cross-entropy of the hidden tokens only. It scores a blank with the context on both sides, but it
defines no probability of a whole sequence and no left-to-right sampler, which is why generative
models are decoders.

The blocks are ``lmcore.models.block.Block`` (pre-norm), called with ``is_causal=False``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_float, check_idx, check_int
from .attention import AttentionInputs
from .block import Block
from .gpt import GPTConfig

__all__ = ["MaskedLMConfig", "MaskedLM", "mask_tokens"]


@dataclass
class MaskedLMConfig:
    vocab_size: int                  # real tokens; the [MASK] token is one more, id vocab_size
    context_length: int = 64         # most positions one forward pass sees
    n_layer: int = 2                 # transformer blocks
    n_head: int = 4                  # attention heads per block
    n_embd: int = 64                 # width of the residual stream
    mask_rate: float = 0.15          # fraction of positions hidden in training (BERT's 15%)

    def __post_init__(self) -> None:
        self.vocab_size = check_int("vocab_size", self.vocab_size, low=2)
        self.context_length = check_int("context_length", self.context_length, low=1)
        self.n_layer = check_int("n_layer", self.n_layer, low=1)
        self.n_head = check_int("n_head", self.n_head, low=1)
        self.n_embd = check_int("n_embd", self.n_embd, low=1)
        self.mask_rate = check_float("mask_rate", self.mask_rate, low=0.0, high=1.0, low_open=True)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    @property
    def mask_id(self) -> int:
        return self.vocab_size


class MaskedLM(nn.Module):
    """Bidirectional transformer that predicts hidden tokens (see the module docstring).

    ``forward(idx, targets)`` takes ids (B, T) in ``[0, vocab_size]`` (``vocab_size`` = ``[MASK]``)
    and returns ``(logits (B, T, vocab_size), loss)``: logits over the real tokens only, and, given
    ``targets`` (B, T) with -100 at the positions that are not scored, the mean cross-entropy of
    the scored ones (what ``mask_tokens`` returns). ``lmcore.Trainer`` trains it through a
    ``batch_fn`` that calls ``mask_tokens``.
    """

    def __init__(self, config: MaskedLMConfig):
        super().__init__()
        if not isinstance(config, MaskedLMConfig):
            raise TypeError(f"config must be a MaskedLMConfig, got {type(config).__name__}")
        self.config = config
        # the blocks read their sizes from a GPTConfig; one more id for [MASK]
        block_config = GPTConfig(vocab_size=config.vocab_size + 1, context_length=config.context_length,
                                 n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd)
        self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd)
        self.wpe = nn.Embedding(config.context_length, config.n_embd)
        self.h = nn.ModuleList([Block(block_config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        # GPT-2's initialisation, as in lmcore.GPT
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm's output (B, T, n_embd): each position's vector, read in both directions."""
        check_idx(idx, self.config.vocab_size + 1)
        T = idx.shape[1]
        if T > self.config.context_length:
            raise ValueError(f"idx has {T} tokens but context_length is {self.config.context_length}; "
                             "crop the input")
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        every_key = AttentionInputs(rope=None, mask=None, is_causal=False, cache=None)   # no causal mask
        for block in self.h:
            x, _ = block(x, every_key)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.hidden(idx)
        # tied output layer over the real tokens: [MASK] is never a prediction
        logits = x @ self.wte.weight[:self.config.vocab_size].T
        loss = None
        if targets is not None:
            if not isinstance(targets, torch.Tensor) or targets.shape != idx.shape:
                raise ValueError(f"targets must be a tensor of idx's shape {tuple(idx.shape)}, "
                                 f"got {getattr(targets, 'shape', type(targets).__name__)}")
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss


def mask_tokens(idx: torch.Tensor, mask_rate: float, mask_id: int,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide each position of ``idx`` (B, T) independently with probability ``mask_rate``, and at
    least one per row. Returns ``(inputs, targets)``: ``inputs`` is ``idx`` with ``mask_id`` at the
    hidden positions; ``targets`` holds the hidden ids there and -100 everywhere else. (BERT also
    leaves 10% of the chosen tokens unchanged and swaps 10% for random ones; here every chosen
    token becomes ``[MASK]``.) ``generator`` lives on ``idx``' device."""
    mask_id = check_int("mask_id", mask_id, low=1)
    check_idx(idx, mask_id)            # real ids only: [0, mask_id)
    mask_rate = check_float("mask_rate", mask_rate, low=0.0, high=1.0, low_open=True)
    hidden = torch.rand(idx.shape, generator=generator, device=idx.device) < mask_rate
    # a row with nothing hidden would add nothing to the loss: hide one random position instead
    empty = ~hidden.any(dim=1)
    pick = torch.randint(0, idx.shape[1], (idx.shape[0],), generator=generator, device=idx.device)
    hidden[empty, pick[empty]] = True
    inputs = idx.masked_fill(hidden, mask_id)
    targets = idx.masked_fill(~hidden, -100)
    return inputs, targets
