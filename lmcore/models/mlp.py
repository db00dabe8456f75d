"""A neural n-gram model: the multilayer-perceptron language model of Bengio et al. (2003), chapter 4.

Like an n-gram model it predicts the next token from the previous ``context_length = n - 1``
tokens only; unlike it, it does not count. Each context token is looked up in a shared embedding
table ``C`` (``vocab_size × n_embd``), the ``context_length`` vectors are concatenated, passed
through one tanh hidden layer and a linear layer to logits::

    x = [C[w_{t-n+2}], …, C[w_t]]               (context_length · n_embd,)
    h = tanh(H x + d)                            (n_hidden,)
    logits = U h + b                             (vocab_size,)   →  p(w_{t+1} | context) = softmax

Because every context is mapped through the same few parameters, contexts that were never seen
in training still get sensible predictions when their tokens have embeddings close to those of
seen ones: the model generalises where counts cannot.

``forward(idx, targets)`` has the interface of :class:`lmcore.GPT` (logits for every position,
``(logits, loss)``), so :class:`lmcore.Trainer` trains it unchanged (give ``TrainConfig.seq_len``:
the model has no maximum input length to default to). Position ``t`` of ``idx`` is predicted from
``idx[t - context_length + 1 … t]``; where that reaches before the start of ``idx`` the missing
tokens are a dedicated padding id (``vocab_size``, one extra embedding row), as at the start of a
text.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import (
    check_float,
    check_idx,
    check_int,
    check_targets,
    check_token_ids,
    eval_mode,
)

__all__ = ["MLPConfig", "MLPLanguageModel"]


@dataclass
class MLPConfig:
    """Sizes of an :class:`MLPLanguageModel`; invalid values raise ``ValueError`` at construction."""
    vocab_size: int            # number of token ids
    context_length: int        # previous tokens the model sees (n - 1 for an n-gram-like model)
    n_embd: int                # size of each token's embedding (the table C)
    n_hidden: int              # width of the tanh hidden layer
    dropout: float = 0.0       # on the hidden layer, during training

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "n_embd", "n_hidden"):   # stored as Python ints
            setattr(self, name, check_int(name, getattr(self, name), low=1))
        check_float("dropout", self.dropout, low=0, high=1, high_open=True)

    def to_dict(self) -> dict:
        return asdict(self)


class MLPLanguageModel(nn.Module):
    """Bengio-style MLP language model; see the module docstring.

    >>> model = MLPLanguageModel(MLPConfig(vocab_size=10, context_length=3, n_embd=8, n_hidden=32))
    >>> logits, loss = model(torch.zeros(2, 5, dtype=torch.long))
    >>> tuple(logits.shape), loss
    ((2, 5, 10), None)
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        if not isinstance(config, MLPConfig):
            raise TypeError(f"config must be an MLPConfig, got {type(config).__name__}")
        self.config = config
        V, k, E = config.vocab_size, config.context_length, config.n_embd
        self.pad_id = V                   # the extra embedding row stands for "before the text"
        self.wte = nn.Embedding(V + 1, E)                   # the shared table C
        self.hidden = nn.Linear(k * E, config.n_hidden)     # H, d
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.n_hidden, V)        # U, b

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def contexts(self, idx: torch.Tensor) -> torch.Tensor:
        """The ids each position is predicted from: ``(B, T)`` → ``(B, T, context_length)``.

        Row ``[b, t]`` is ``idx[b, t - context_length + 1 … t]``, left-padded with ``pad_id``.
        The ids' values are checked on the CPU only (reading them from a GPU would stall every step);
        elsewhere an id out of range fails in the embedding, like :class:`lmcore.GPT`'s.
        """
        check_idx(idx, self.config.vocab_size)
        k = self.config.context_length
        # Where the values were not checked, an id equal to vocab_size would read the padding row
        # silently: move every id >= vocab_size past the table, so the embedding's bound check fires.
        ids = idx.long().masked_fill(idx >= self.config.vocab_size, self.pad_id + 1)
        padded = F.pad(ids, (k - 1, 0), value=self.pad_id)           # (B, T + k - 1)
        return padded.unfold(1, k, 1)                                 # (B, T, k), a view: no copy

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, last_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx`` (B, T) → ``(logits (B, T, vocab_size), mean cross-entropy or None)``.

        ``targets`` (B, T): the next token of every position (-100 = ignored). ``last_only``:
        logits of the last position only, (B, 1, vocab_size).
        """
        check_targets(idx, targets, self.config.vocab_size, last_only)
        ctx = self.contexts(idx)
        if last_only:
            ctx = ctx[:, -1:]
        x = self.wte(ctx).flatten(2)                      # (B, T, context_length · n_embd): concatenation
        h = self.drop(torch.tanh(self.hidden(x)))         # (B, T, n_hidden)
        logits = self.lm_head(h)                          # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def cross_entropy(self, ids: torch.Tensor, chunk: int = 65536) -> float:
        """Mean negative log-likelihood (nats/token) of a 1-D token stream, every token scored from
        its ``context_length`` real predecessors (the first ones from padding), in chunks of ``chunk``."""
        check_int("chunk", chunk, low=1)
        ids = torch.as_tensor(check_token_ids("ids", ids, self.config.vocab_size))
        if ids.dim() != 1 or ids.numel() < 2:
            raise ValueError(f"ids must be a 1-D stream of at least 2 tokens, got shape {tuple(ids.shape)}")
        device = self.wte.weight.device
        ctx = self.contexts(ids[None].to(device))[0, :-1]    # (N-1, context_length): predict ids[1:]
        targets = ids[1:].to(device)
        total = 0.0
        with eval_mode(self):
            for i in range(0, len(targets), chunk):
                h = torch.tanh(self.hidden(self.wte(ctx[i:i + chunk]).flatten(1)))
                total += F.cross_entropy(self.lm_head(h), targets[i:i + chunk], reduction="sum").item()
        return total / len(targets)
