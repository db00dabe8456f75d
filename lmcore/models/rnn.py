"""Recurrent language models: an Elman RNN and a GRU, written out step by step, chapter 4.

Where the MLP model of :mod:`lmcore.models.mlp` sees a fixed window of ``context_length`` tokens,
a recurrent model reads the text one token at a time and carries everything it has read in a
hidden state ``h`` of fixed size. Each token ``x_t`` (its embedding) updates the state, and the
state predicts the next token::

    Elman RNN:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    GRU:        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)            reset gate
                z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)            update gate
                n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))  candidate state
                h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
    logits_t = U h_t + b     (of the last layer's state, when layers are stacked)

The context is unbounded in principle, but every step multiplies the gradient flowing back by
``W_hh`` and a tanh derivative, so the influence of distant tokens tends to vanish:
:func:`gradient_norm_by_distance` measures it. The GRU's update gate gives the state a path that
is copied from step to step (``z_t ≈ 1``), along which gradients survive longer.

The loop over time is plain PyTorch (:class:`Recurrence`), not ``torch.nn.RNN`` / ``torch.nn.GRU``,
so every step can be read; its parameters are named and shaped like theirs (``weight_ih_l0``,
``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, … with the GRU's gates stacked in the order r, z,
n), so ``model.rnn.load_state_dict(torch_gru.state_dict())`` loads a ``torch.nn.GRU``'s weights.

``forward(idx, targets)`` has the interface of :class:`lmcore.GPT` (logits for every position,
``(logits, loss)``), so :class:`lmcore.Trainer` trains it unchanged (give ``TrainConfig.seq_len``:
the model has no maximum input length to default to). Every sequence starts from a zero state.

The state is the recurrent model's cache: ``forward_state(idx, h)`` continues from state ``h`` and
returns the new one, so ``lmcore.decoding.generate`` reads a prompt once and then feeds one token
per step, at the same cost per token however long the text already is (a transformer's KV cache
grows with the text instead).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import (
    check_choice,
    check_float,
    check_idx,
    check_int,
    check_targets,
    check_token_ids,
    eval_mode,
)

__all__ = ["CELLS", "RNNConfig", "Recurrence", "RNNLanguageModel", "gradient_norm_by_distance"]

CELLS = ("rnn", "gru")
_GATES = {"rnn": 1, "gru": 3}      # rows of W_ih per hidden unit: the GRU stacks r, z, n


@dataclass
class RNNConfig:
    """Sizes of an :class:`RNNLanguageModel`; invalid values raise ``ValueError`` at construction."""
    vocab_size: int            # number of token ids
    n_embd: int                # size of each token's embedding (the input of the first layer)
    n_hidden: int              # size of the hidden state h of every layer
    n_layer: int = 1           # stacked recurrent layers: layer l reads the states of layer l - 1
    cell: str = "rnn"          # "rnn" (Elman, tanh) or "gru"
    dropout: float = 0.0       # on every layer's output states, during training

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_embd", "n_hidden", "n_layer"):   # stored as Python ints
            setattr(self, name, check_int(name, getattr(self, name), low=1))
        check_choice("cell", self.cell, CELLS)
        check_float("dropout", self.dropout, low=0, high=1, high_open=True)

    def to_dict(self) -> dict:
        return asdict(self)


class Recurrence(nn.Module):
    """``n_layer`` stacked Elman-RNN or GRU layers, a Python loop over time.

    Parameters are those of ``torch.nn.RNN(input_size, hidden_size, n_layer)`` (``cell="rnn"``) or
    ``torch.nn.GRU(...)`` (``cell="gru"``), under the same names and shapes, initialised the same way
    (uniform in ±1/√hidden_size). ``forward(x (B, T, input_size), h0=None)`` returns
    ``(outputs (B, T, hidden_size), h_n (n_layer, B, hidden_size))`` like those modules with
    ``batch_first=True``; ``h0`` (``(n_layer, B, hidden_size)``, default zeros) is the initial state.
    ``dropout`` applies to every layer's outputs in training mode (``torch.nn.RNN``'s applies
    between layers only).
    """

    def __init__(self, input_size: int, hidden_size: int, n_layer: int = 1, cell: str = "rnn",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.input_size = check_int("input_size", input_size, low=1)
        self.hidden_size = H = check_int("hidden_size", hidden_size, low=1)
        self.n_layer = check_int("n_layer", n_layer, low=1)
        self.cell = check_choice("cell", cell, CELLS)
        self.drop = nn.Dropout(check_float("dropout", dropout, low=0, high=1, high_open=True))
        g = _GATES[cell]
        for layer in range(self.n_layer):
            n_in = self.input_size if layer == 0 else H
            for name, shape in (("weight_ih", (g * H, n_in)), ("weight_hh", (g * H, H)),
                                ("bias_ih", (g * H,)), ("bias_hh", (g * H,))):
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W_ih, W_hh, b_ih, b_hh)`` of layer ``layer``."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        w_ih, w_hh, b_ih, b_hh = (getattr(self, f"{n}_l{layer}") for n in names)
        return w_ih, w_hh, b_ih, b_hh

    def step(self, layer: int, gx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One time step of one layer: the new state from ``gx = W_ih x_t + b_ih`` and ``h = h_{t-1}``."""
        _, w_hh, _, b_hh = self.layer_weights(layer)
        gh = F.linear(h, w_hh, b_hh)
        if self.cell == "rnn":
            return torch.tanh(gx + gh)
        xr, xz, xn = gx.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)           # the reset gate scales only the recurrent part of n
        return (1 - z) * n + z * h

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be a tensor of shape (batch, time, {self.input_size}), got "
                             f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        B, T, _ = x.shape
        want = (self.n_layer, B, self.hidden_size)
        if h0 is None:
            h0 = x.new_zeros(want)
        elif not isinstance(h0, torch.Tensor) or tuple(h0.shape) != want:
            raise ValueError(f"h0 must be None or a tensor of shape {want}, got "
                             f"{type(h0).__name__} {tuple(getattr(h0, 'shape', ()))}")
        finals = []
        for layer in range(self.n_layer):
            w_ih, _, b_ih, _ = self.layer_weights(layer)
            # The input projection does not depend on the state: one matrix product for all T steps,
            # so only the W_hh product remains inside the loop.
            gx = F.linear(x, w_ih, b_ih)                     # (B, T, gates · H)
            h = h0[layer]
            states = []
            for t in range(T):
                h = self.step(layer, gx[:, t], h)
                states.append(h)
            finals.append(h)
            x = self.drop(torch.stack(states, dim=1))         # (B, T, H): the next layer's input
        return x, torch.stack(finals)


class RNNLanguageModel(nn.Module):
    """Embedding → :class:`Recurrence` → linear head; see the module docstring.

    >>> model = RNNLanguageModel(RNNConfig(vocab_size=10, n_embd=8, n_hidden=16, cell="gru"))
    >>> logits, loss = model(torch.zeros(2, 5, dtype=torch.long))
    >>> tuple(logits.shape), loss
    ((2, 5, 10), None)
    """

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        if not isinstance(config, RNNConfig):
            raise TypeError(f"config must be an RNNConfig, got {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.rnn = Recurrence(config.n_embd, config.n_hidden, config.n_layer, config.cell, config.dropout)
        self.lm_head = nn.Linear(config.n_hidden, config.vocab_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Checked token ids ``(B, T)`` → their embeddings ``(B, T, n_embd)``.

        The ids' values are checked on the CPU only (reading them from a GPU would stall every step);
        elsewhere an id out of range fails in the embedding, like :class:`lmcore.GPT`'s.
        """
        check_idx(idx, self.config.vocab_size)
        return self.wte(idx)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, last_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx`` (B, T) → ``(logits (B, T, vocab_size), mean cross-entropy or None)``.

        ``targets`` (B, T): the next token of every position (-100 = ignored). ``last_only``:
        logits of the last position only, (B, 1, vocab_size) (the state still reads every token).
        """
        check_targets(idx, targets, self.config.vocab_size, last_only)
        logits, _ = self.forward_state(idx, None, last_only)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def forward_state(self, idx: torch.Tensor, h: torch.Tensor | None = None, last_only: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Continue from state ``h`` (``(n_layer, B, n_hidden)``; ``None`` = zeros, a fresh start):
        ``idx`` (B, T) → ``(logits (B, T, vocab_size), the state after the last token)``.

        Reading a text in pieces, each from the state the previous piece returned, gives the
        logits of reading it at once (the recurrence is the same loop, cut in two).
        ``last_only``: logits of the last position only, (B, 1, vocab_size).
        """
        states, h_n = self.rnn(self.embed(idx), h)        # (B, T, n_hidden), the last layer's states
        if last_only:
            states = states[:, -1:]
        return self.lm_head(states), h_n

    def cross_entropy(self, ids: torch.Tensor, context: int = 256, n_pieces: int = 64) -> float:
        """Mean negative log-likelihood (nats/token) of a 1-D token stream, every token after the
        first scored from at least its ``context`` predecessors (all of them near the start).

        One pass over a long stream would take one step per token. Instead the stream is cut into
        ``n_pieces`` consecutive pieces read side by side as one batch, each from a zero state that
        starts ``context`` tokens before the piece (those tokens are read, not scored), so the
        pieces together score every token once, in about ``len(ids) / n_pieces + context`` steps.
        With ``context`` at least a document's length (a toy story is under 256 characters), every
        token is scored from its whole document.
        """
        context = check_int("context", context, low=0)
        n_pieces = check_int("n_pieces", n_pieces, low=1)
        ids = torch.as_tensor(check_token_ids("ids", ids, self.config.vocab_size))
        if ids.dim() != 1 or ids.numel() < 2:
            raise ValueError(f"ids must be a 1-D stream of at least 2 tokens, got shape {tuple(ids.shape)}")
        ids = ids.to(self.wte.weight.device).long()
        n = len(ids) - 1                                    # predictions: ids[1:] from what precedes them
        cuts = sorted({n * i // n_pieces for i in range(n_pieces + 1)})
        pieces = [(max(0, a - context), a, b) for a, b in zip(cuts, cuts[1:])]   # (read from, score from, to)
        width = max(b - r for r, _, b in pieces)
        # every row padded at its end to the same width; padding comes after what is scored
        x = torch.stack([F.pad(ids[r:b], (0, width - (b - r))) for r, _, b in pieces])
        with eval_mode(self), torch.no_grad():
            logits, _ = self.forward_state(x)
        total = 0.0
        for row, (r, a, b) in enumerate(pieces):
            total += F.cross_entropy(logits[row, a - r:b - r], ids[a + 1:b + 1], reduction="sum").item()
        return total / n


def gradient_norm_by_distance(model: RNNLanguageModel, idx: torch.Tensor) -> torch.Tensor:
    """How much the last prediction's loss depends on each earlier token: a ``(T - 1,)`` tensor.

    ``idx`` (B, T): the first ``T - 1`` tokens are read, the last is the target of the prediction
    made after the last of them. Entry ``d`` is ``‖∂ loss / ∂ x_{T-2-d}‖`` (the 2-norm over the
    embedding of the input token ``d`` steps before the last one, so ``d = 0`` is the last input),
    averaged over the batch; ``loss`` is that one prediction's cross-entropy. Dropout is off.
    """
    if not isinstance(model, RNNLanguageModel):
        raise TypeError(f"model must be an RNNLanguageModel, got {type(model).__name__}")
    if isinstance(idx, torch.Tensor) and idx.dim() == 2 and idx.shape[1] < 2:
        raise ValueError(f"idx must have at least 2 tokens per sequence (inputs and a target), got "
                         f"shape {tuple(idx.shape)}")
    with eval_mode(model), torch.enable_grad():
        x = model.embed(idx)[:, :-1].detach().requires_grad_(True)     # (B, T-1, n_embd)
        h, _ = model.rnn(x)
        # Sum over the batch: each sequence's loss depends on its own embeddings only, so the
        # gradient of the sum holds every sequence's own gradient.
        loss = F.cross_entropy(model.lm_head(h[:, -1]), idx[:, -1].long(), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.norm(dim=-1).mean(dim=0).flip(0)
