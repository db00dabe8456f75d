"""Rewards: hand-written scores, synthetic preferences and Bradley–Terry reward models (chapter 11).

``LexiconReward`` is a reward written by hand; ``compute_rewards`` checks any reward's output;
``sample_preferences`` plays the human labeller with a hidden reward, ``P(a ≻ b) = σ(r(a) - r(b))``;
``bradley_terry_loss``, ``RewardModel`` and ``train_reward_model`` learn a reward back from such
labels, as practitioners do.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..._checks import ArgumentTypeError, check_bool, check_float, check_int, eval_mode
from ...models import GPT, GPTConfig
from ...tokenizers import Tokenizer
from ...training import TrainConfig, Trainer
from .sequences import IGNORE, _check_generator, _check_tokenizer, encode_sequences

__all__ = ["Reward", "LexiconReward", "compute_rewards", "sample_preferences", "bradley_terry_loss", "RewardModel",
           "train_reward_model"]

#: A reward scores a batch of texts: ``reward(texts) -> (N,)`` numbers (a tensor or a sequence).
Reward = Callable[[Sequence[str]], "torch.Tensor | Sequence[float]"]


def _check_texts(name: str, texts: Sequence[str]) -> None:
    """A list (or tuple) of str: a str alone would be scored letter by letter."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise ArgumentTypeError(f"{name} must be a list of str, got {type(texts).__name__}")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ArgumentTypeError(f"{name} must hold str, got {type(texts[bad]).__name__} at index {bad}")


def _check_finite(name: str, values: torch.Tensor) -> None:
    bad = ~torch.isfinite(values)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{name} contain NaN or inf ({int(bad.sum())} of {values.numel()}, first at index "
                         f"{i}: {values[i].item()}); fix the reward so it returns a finite number for every text")


class LexiconReward:
    """A hand-written reward: weighted counts of words (or substrings), plus a length term.

    ``r(x) = Σ_w weights[w] · min(count_w(x), cap) + length_weight · len(x)``. With
    ``whole_words=True`` a key matches whole words only (and their plural in ``-s``), so
    ``{"cat": 1}`` scores "the cats" but not "catalogue"; otherwise any substring counts.
    ``cap`` (optional) saturates each count, e.g. ``cap=1`` scores *whether* a word appears.
    Called on a list of texts it returns a (N,) float64 tensor.
    """

    def __init__(self, weights: Mapping[str, float], length_weight: float = 0.0, cap: int | None = None,
                 whole_words: bool = False) -> None:
        if not isinstance(weights, Mapping) or not weights:
            raise ValueError("weights must be a non-empty mapping {word: weight}")
        for w, v in weights.items():
            if not isinstance(w, str) or not w:
                raise ValueError(f"every key of weights must be a non-empty string, got {w!r}")
            check_float(f"weights[{w!r}]", v)
        check_float("length_weight", length_weight)
        check_int("cap", cap, low=1, optional=True)
        self.weights, self.length_weight, self.cap = dict(weights), float(length_weight), cap
        self.whole_words = check_bool("whole_words", whole_words)
        self._patterns = {w: re.compile(rf"\b{re.escape(w)}s?\b" if whole_words else re.escape(w))
                          for w in self.weights}

    def score(self, text: str) -> float:
        """The reward of one text."""
        if not isinstance(text, str):
            raise ArgumentTypeError(f"text must be a str, got {type(text).__name__}")
        total = self.length_weight * len(text)
        for w, weight in self.weights.items():
            count = len(self._patterns[w].findall(text))
            total += weight * (count if self.cap is None else min(count, self.cap))
        return total

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            # a str is a sequence of characters: it would silently be scored letter by letter
            raise TypeError("a reward scores a list of texts; for one text use reward.score(text)")
        _check_texts("texts", texts)
        return torch.tensor([self.score(t) for t in texts], dtype=torch.float64)

    def __repr__(self) -> str:
        return (f"LexiconReward({self.weights}, length_weight={self.length_weight}, cap={self.cap}, "
                f"whole_words={self.whole_words})")


def compute_rewards(reward: Reward, texts: Sequence[str]) -> torch.Tensor:
    """``reward(texts)`` as a (N,) float64 CPU tensor, checked: one finite number per text."""
    if not callable(reward):
        raise TypeError(f"reward must be callable as reward(texts), got {type(reward).__name__}")
    _check_texts("texts", texts)
    out = reward(texts)
    try:
        values = torch.as_tensor(out.detach().cpu() if isinstance(out, torch.Tensor) else out, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(f"reward(texts) must return numbers (a tensor or a list of floats), got "
                                f"{out!r:.60}") from None
    if values.shape != (len(texts),):
        raise ValueError(f"reward(texts) must return one number per text ({len(texts)}), got shape "
                         f"{tuple(values.shape)}")
    # one NaN reward would turn the posterior's Z, and every gradient, into NaN
    _check_finite("rewards", values)
    return values


def sample_preferences(first: Sequence[str], second: Sequence[str], true_reward: Reward,
                       generator: torch.Generator | None = None) -> tuple[list[str], list[str]]:
    """Synthetic human labels: for each pair ``(a, b)``, ``a`` is preferred with probability
    ``σ(r(a) - r(b))`` under the hidden ``true_reward`` (the Bradley–Terry model).

    Returns ``(chosen, rejected)``, two lists as long as ``first``.
    """
    _check_texts("first", first)
    _check_texts("second", second)
    _check_generator(generator)
    if len(first) != len(second) or not first:
        raise ValueError(f"first and second must be non-empty and of equal length, got {len(first)} and {len(second)}")
    ra, rb = compute_rewards(true_reward, first), compute_rewards(true_reward, second)
    a_wins = torch.rand(len(first), generator=generator, dtype=torch.float64) < torch.sigmoid(ra - rb)
    chosen = [a if w else b for a, b, w in zip(first, second, a_wins.tolist())]
    rejected = [b if w else a for a, b, w in zip(first, second, a_wins.tolist())]
    return chosen, rejected


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the labels under Bradley–Terry: ``-log σ(r_c - r_r)`` (N,) -> ()."""
    _check_vectors(r_chosen=r_chosen, r_rejected=r_rejected)
    # logsigmoid, not log(sigmoid(...)): stays finite for a confident pair with a large margin
    return -F.logsigmoid(r_chosen - r_rejected).mean()


class RewardModel(nn.Module):
    """A reward model as practitioners build one: a ``GPT`` whose output layer is replaced by a
    scalar head, read at the last token of each row (which has seen the whole text).

    ``forward(rows)``: rows (N, T) from ``encode_sequences`` -> rewards (N,).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ArgumentTypeError(f"config must be a lmcore.GPTConfig, got {type(config).__name__}")
        config = dataclasses.replace(config, tie_weights=False)   # the head below is not the embedding
        self.config = config
        self.gpt = GPT(config)
        self.gpt.lm_head = nn.Linear(config.n_embd, 1)   # the "value head": one number per position

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        last = (rows != IGNORE).sum(dim=1) - 1                       # (N,) index of the final token
        out, _ = self.gpt(rows.clamp(min=0))                          # (N, T, 1)
        return out[torch.arange(rows.shape[0], device=rows.device), last, 0]

    @torch.no_grad()
    def score(self, tokenizer: Tokenizer, texts: Sequence[str], max_len: int | None = None) -> torch.Tensor:
        """Rewards of ``texts`` (N,) float64 on the CPU, in eval mode."""
        with eval_mode(self):
            device = next(self.parameters()).device
            return self(encode_sequences(tokenizer, texts, max_len).to(device)).double().cpu()


class _PairObjective(nn.Module):
    """Wraps a loss on (chosen rows, rejected rows) so ``lmcore.Trainer`` can optimise it."""

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *modules: nn.Module) -> None:
        super().__init__()
        self.parts = nn.ModuleList(modules)   # registered, so the Trainer's optimiser sees their parameters
        self.loss = loss

    def forward(self, chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, self.loss(chosen, rejected)


def _pair_batches(chosen_rows: torch.Tensor, rejected_rows: torch.Tensor, batch_size: int):
    """A ``batch_fn`` drawing ``batch_size`` random (chosen, rejected) pairs with the Trainer's generator."""
    def batch_fn(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(0, chosen_rows.shape[0], (batch_size,), generator=generator)
        return chosen_rows[i], rejected_rows[i]
    return batch_fn


def _encode_pairs(tokenizer: Tokenizer, chosen: Sequence[str], rejected: Sequence[str],
                  max_len: int | None, max_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of both halves (one width); ``max_width``: the widest row the model can read."""
    _check_texts("chosen", chosen)
    _check_texts("rejected", rejected)
    if len(chosen) != len(rejected) or not chosen:
        raise ValueError(f"chosen and rejected must be non-empty and of equal length, got {len(chosen)} "
                         f"and {len(rejected)}")
    # encoded together: both halves get the same width, so a pair's rows can be concatenated
    rows = encode_sequences(tokenizer, list(chosen) + list(rejected), max_len)
    if rows.shape[1] > max_width:      # found now, not at the first training step
        raise ValueError(f"the rows of chosen and rejected are {rows.shape[1]} tokens wide (bos, text, eos), more "
                         f"than the {max_width} the model's context_length allows; drop long texts or set max_len")
    return rows[:len(chosen)], rows[len(chosen):]


def _check_vectors(**tensors: torch.Tensor) -> None:
    """Each argument a non-empty 1-D tensor, all of one shape: broadcasting would pair wrong elements."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 1 or first[0] == 0 or any(s != first for s in shapes.values()):
        raise ValueError(f"{', '.join(shapes)} must be non-empty 1-D tensors of one shape (N,), got "
                         + ", ".join(f"{name} {s}" for name, s in shapes.items()))


def train_reward_model(tokenizer: Tokenizer, chosen: Sequence[str], rejected: Sequence[str],
                       config: GPTConfig, train: TrainConfig, max_len: int | None = None) -> RewardModel:
    """Fit a ``RewardModel`` to preference pairs with the Bradley–Terry loss, through ``lmcore.Trainer``."""
    if not isinstance(train, TrainConfig):
        raise TypeError(f"train must be a TrainConfig, got {type(train).__name__}")
    model = RewardModel(config)
    _check_tokenizer(tokenizer)
    if config.vocab_size < tokenizer.vocab_size:
        raise ValueError(f"config has vocab_size={config.vocab_size}, fewer than the tokenizer's "
                         f"{tokenizer.vocab_size} tokens; build it with vocab_size=tokenizer.vocab_size")
    # the reward model reads every token of a row, eos included
    c_rows, r_rows = _encode_pairs(tokenizer, chosen, rejected, max_len, config.context_length)
    objective = _PairObjective(lambda c, r: bradley_terry_loss(model(c), model(r)), model)
    trainer = Trainer(objective, train, batch_fn=_pair_batches(c_rows, r_rows, train.batch_size))
    for _ in range(train.max_steps):
        trainer.train_step()
    return model.eval()
