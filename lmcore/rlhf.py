"""RLHF as Bayesian inference, checked against an exactly computed posterior.

Fine-tuning a pretrained model ``π0`` to maximise a reward ``r`` while staying close to ``π0``,

    J(θ) = E_{x~πθ}[r(x)] - β · KL(πθ ‖ π0),

is the same as fitting ``πθ`` to the *posterior*

    π*(x) = π0(x) · exp(r(x)/β) / Z,        Z = Σ_x π0(x) · exp(r(x)/β),

because ``J(θ) = -β · KL(πθ ‖ π*) + β · log Z`` (Korbak, Perez & Buckley, 2022): the prior is the
pretrained model, the evidence is ``exp(r/β)``, and KL-regularised RL is variational inference.
Larger ``β`` trusts the prior more (π* stays near π0); smaller ``β`` follows the reward harder.

On a space small enough to enumerate (all strings up to ``max_len`` characters over a small
alphabet) every quantity here is exact: ``sequence_logprobs`` scores every string with a real
``lmcore.GPT``, ``exact_posterior`` normalises, ``kl_divergence`` sums. The same code then runs on
spaces too large to enumerate, where only samples are available.

The pieces:

* **sequences** — ``enumerate_sequences``, ``encode_sequences`` (rows ``[bos, x1, …, xn, eos]``
  padded with -100), ``decode_sequences``, ``sequence_logprobs`` (exact, batched, differentiable),
  ``sample_sequences``; ``train_tiny_prior`` trains the small GPT the enumerable examples use.
* **rewards** — ``LexiconReward`` (a hand-written score on text), ``compute_rewards`` (validates
  any reward's output), ``sample_preferences`` (synthetic "human" labels from a hidden reward,
  ``P(a ≻ b) = σ(r(a) - r(b))``), ``bradley_terry_loss``, ``RewardModel`` and
  ``train_reward_model``.
* **the posterior** — ``exact_posterior`` (with ``log Z``), ``kl_divergence``, ``entropy``,
  ``kl_regularised_objective``.
* **sampling with the prior alone** — ``rejection_sample``, ``importance_weights``,
  ``effective_sample_size``, ``importance_resample``, ``best_of_n``.
* **fine-tuning** — ``KLRegularisedObjective`` (REINFORCE with a leave-one-out baseline, or the
  exact objective on an enumerable space), ``DPOObjective``; ``finetune_kl`` and ``finetune_dpo``
  run them through ``lmcore.Trainer`` (AdamW groups, warm-up/cosine schedule, clipping, NaN
  guard); ``sample_kl_estimate`` estimates ``KL(πθ ‖ π0)`` and the reward from samples.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import random
import re
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import GPT, GPTConfig
from .tokenizers import CharTokenizer, Tokenizer
from .trainer import TrainConfig, Trainer

__all__ = [
    "enumerate_sequences", "encode_sequences", "decode_sequences", "sequence_logprobs", "sample_sequences",
    "tiny_language", "train_tiny_prior",
    "Reward", "LexiconReward", "compute_rewards", "sample_preferences", "bradley_terry_loss", "RewardModel",
    "train_reward_model",
    "Posterior", "exact_posterior", "kl_divergence", "entropy", "kl_regularised_objective",
    "rejection_sample", "importance_weights", "effective_sample_size", "importance_resample", "best_of_n",
    "reinforce_loss", "dpo_loss", "KLRegularisedObjective", "DPOObjective", "finetune_kl", "finetune_dpo",
    "sample_kl_estimate", "check_same_tokenizer",
]

#: A reward scores a batch of texts: ``reward(texts) -> (N,)`` numbers (a tensor or a sequence).
Reward = Callable[[Sequence[str]], "torch.Tensor | Sequence[float]"]

IGNORE = -100          # padding in a row of token ids (the value the model's loss ignores too)


# ------------------------------------------------------------------------------------ validation

def _check_beta(beta: float, allow_none: bool = False) -> None:
    if beta is None and allow_none:
        return
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        extra = " (pass beta=None to drop the KL term)" if allow_none else ""
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}: it is the temperature of the "
                         f"evidence exp(r/beta){extra}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_finite(name: str, values: torch.Tensor) -> None:
    bad = ~torch.isfinite(values)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{name} contain NaN or inf ({int(bad.sum())} of {values.numel()}, first at index "
                         f"{i}: {values[i].item()}); fix the reward so it returns a finite number for every text")


def check_same_tokenizer(tokenizer: Tokenizer, other: Tokenizer) -> None:
    """Raise ``ValueError`` unless the two tokenizers map every id to the same string.

    Policy and reference must share a vocabulary: ``log πθ(x) - log π0(x)`` compares the
    probabilities of the *same* token ids.
    """
    for name, tok in (("tokenizer", tokenizer), ("reference_tokenizer", other)):
        if not isinstance(tok, Tokenizer):
            raise TypeError(f"{name} must be an lmcore Tokenizer, got {type(tok).__name__}")
    if type(tokenizer) is not type(other) or tokenizer.vocab_size != other.vocab_size:
        raise ValueError(f"the policy's tokenizer ({type(tokenizer).__name__}, {tokenizer.vocab_size} tokens) and "
                         f"the reference's ({type(other).__name__}, {other.vocab_size} tokens) differ: the "
                         "policy must be fine-tuned from the reference, with the same tokenizer")
    for i in range(tokenizer.vocab_size):
        if tokenizer.decode([i]) != other.decode([i]):
            raise ValueError(f"the policy's and the reference's tokenizers differ at id {i} "
                             f"({tokenizer.decode([i])!r} vs {other.decode([i])!r}); use the same tokenizer")


def _check_model(name: str, model: nn.Module, tokenizer: Tokenizer) -> None:
    if not isinstance(model, GPT):
        raise TypeError(f"{name} must be an lmcore.GPT, got {type(model).__name__}")
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"{name} has vocab_size={model.config.vocab_size} but the tokenizer has "
                         f"{tokenizer.vocab_size} tokens: they do not belong together")


# ------------------------------------------------------------------------------------ sequences

def enumerate_sequences(alphabet: str, max_len: int, max_size: int = 100_000) -> list[str]:
    """Every string over ``alphabet`` of length ``0 .. max_len``, shortest first.

    There are ``Σ_{n=0}^{max_len} |alphabet|^n`` of them; more than ``max_size`` raises
    ``ValueError`` with the size (enumerate a smaller space, or use samples instead).
    """
    if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet must be a non-empty string of distinct characters, got {alphabet!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 0:
        raise ValueError(f"max_len must be an int >= 0, got {max_len!r}")
    _check_positive_int("max_size", max_size)
    size = sum(len(alphabet) ** n for n in range(max_len + 1))
    if size > max_size:
        raise ValueError(f"the space of strings up to length {max_len} over {len(alphabet)} symbols has "
                         f"{size:,} members, more than max_size={max_size:,}; shorten max_len, shrink the "
                         "alphabet, or estimate from samples")
    return ["".join(t) for n in range(max_len + 1) for t in itertools.product(alphabet, repeat=n)]


def encode_sequences(tokenizer: Tokenizer, texts: Sequence[str], max_len: int | None = None,
                     bos: str = "\n", eos: str = "\n") -> torch.Tensor:
    """Rows ``[bos, x1, …, xn, eos]`` as a (N, T) long tensor, right-padded with -100.

    A text is a complete sequence *without* its end marker. With ``max_len`` set, generation
    stops after ``max_len`` tokens, so a text of exactly ``max_len`` tokens has no ``eos`` (the
    space of strings up to ``max_len`` then holds all of the model's probability).
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    (bos_id,), (eos_id,) = _single_token(tokenizer, bos, "bos"), _single_token(tokenizer, eos, "eos")
    rows = []
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must hold strings, got {type(text).__name__}")
        ids = tokenizer.encode(text)
        if eos_id in ids:
            raise ValueError(f"text {text!r} contains the end marker {eos!r}; pass texts without it")
        if max_len is not None and len(ids) > max_len:
            raise ValueError(f"text {text!r} has {len(ids)} tokens, more than max_len={max_len}")
        rows.append([bos_id] + ids + ([] if max_len is not None and len(ids) == max_len else [eos_id]))
    out = torch.full((len(rows), max(map(len, rows))), IGNORE, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out


def _single_token(tokenizer: Tokenizer, s: str, name: str) -> list[int]:
    ids = tokenizer.encode(s)
    if len(ids) != 1:
        raise ValueError(f"{name}={s!r} must be a single token of the tokenizer, got ids {ids}")
    return ids


def decode_sequences(tokenizer: Tokenizer, rows: torch.Tensor, eos: str = "\n") -> list[str]:
    """Texts of rows from ``encode_sequences`` (or of generated ids): drop ``bos``, stop at ``eos``."""
    (eos_id,) = _single_token(tokenizer, eos, "eos")
    texts = []
    for row in rows.tolist():
        ids = []
        for i in row[1:]:
            if i == eos_id or i == IGNORE:
                break
            ids.append(i)
        texts.append(tokenizer.decode(ids))
    return texts


def sequence_logprobs(model: GPT, rows: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Exact ``log π(x)`` of every row (N, T) from ``encode_sequences``: returns (N,) float32.

    ``log π(x) = Σ_t log π(x_t | x_<t)``, the sum running over every token after ``bos``
    (``eos`` included). Differentiable when autograd is on; ``batch_size`` splits the rows into
    chunks (the result is the same).
    """
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.dtype != torch.long or rows.shape[1] < 2:
        raise ValueError("rows must be a (N, T) long tensor from encode_sequences, with T >= 2")
    if rows.shape[1] - 1 > model.config.block_size:
        raise ValueError(f"rows have {rows.shape[1] - 1} input positions, more than the model's "
                         f"block_size={model.config.block_size}")
    device = next(model.parameters()).device
    rows = rows.to(device)
    chunks = [rows] if batch_size is None else rows.split(batch_size)
    out = []
    for chunk in chunks:
        x, y = chunk[:, :-1].clamp(min=0), chunk[:, 1:]    # padding fed as token 0, never scored
        logits, _ = model(x)
        logp = F.log_softmax(logits.float(), dim=-1)
        scored = y != IGNORE
        tok = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)   # (B, T-1)
        out.append((tok * scored).sum(dim=1))
    return torch.cat(out)


def sample_sequences(model: GPT, tokenizer: Tokenizer, n: int, max_len: int,
                     generator: torch.Generator | None = None, bos: str = "\n", eos: str = "\n",
                     temperature: float = 1.0) -> list[str]:
    """``n`` texts sampled from ``model`` after ``bos``, each ended by ``eos`` or by ``max_len`` tokens.

    These are exact samples of the distribution that ``sequence_logprobs`` scores (with the same
    ``max_len``) when ``temperature == 1``.
    """
    _check_positive_int("n", n)
    _check_positive_int("max_len", max_len)
    (bos_id,), (eos_id,) = _single_token(tokenizer, bos, "bos"), _single_token(tokenizer, eos, "eos")
    device = next(model.parameters()).device
    idx = torch.full((n, 1), bos_id, dtype=torch.long, device=device)
    out = model.generate(idx, max_len, temperature=temperature, stop_tokens=eos_id, generator=generator)
    return decode_sequences(tokenizer, out.cpu(), eos)


def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``generator`` (which may live on the CPU)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device).manual_seed(seed)


# ------------------------------------------------------------------------------------ the tiny prior

def tiny_language(n: int, max_len: int = 5, alphabet: str = "abc", seed: int = 0) -> list[str]:
    """``n`` strings of a small formal language: a Markov chain over ``alphabet``.

    Each string starts with the first symbol with probability 1/2 (else uniform), then moves
    to the *next* symbol of the alphabet (cyclically) with probability 0.6, repeats with 0.2 and
    jumps elsewhere otherwise; after every symbol it stops with probability 0.3. Strings are cut
    at ``max_len``. The model trained on it prefers runs like ``abcab``.
    """
    rng = random.Random(seed)
    k = len(alphabet)
    out = []
    for _ in range(n):
        s = []
        cur = 0 if rng.random() < 0.5 else rng.randrange(k)
        while len(s) < max_len:
            s.append(alphabet[cur])
            if rng.random() < 0.3:
                break
            u = rng.random()
            cur = (cur + 1) % k if u < 0.6 else cur if u < 0.8 else rng.randrange(k)
        out.append("".join(s))
    return out


def train_tiny_prior(max_len: int = 5, alphabet: str = "abc", steps: int = 300, seed: int = 0,
                     device: str | torch.device | None = None) -> tuple[GPT, CharTokenizer]:
    """Train a small ``GPT`` (2 layers, 32 dims) on ``tiny_language`` lines; returns (model, tokenizer).

    The vocabulary is ``alphabet`` plus ``"\\n"`` (which both begins and ends a string), so the
    strings up to ``max_len`` hold all of the model's probability: a prior we can enumerate.
    Deterministic on a CPU for a fixed ``seed``; takes a few seconds.
    """
    text = "\n" + "\n".join(tiny_language(4000, max_len, alphabet, seed)) + "\n"
    tok = CharTokenizer().train("\n" + alphabet)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=4 * (max_len + 1), n_layer=2, n_head=2, n_embd=32))
    config = TrainConfig(max_steps=steps, batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                         weight_decay=0.0, seed=seed, device=None if device is None else str(device),
                         progress=False, eval_interval=steps)
    trainer = Trainer(model, config, ids)
    for _ in range(steps):
        trainer.train_step()
    return model.eval(), tok


# ------------------------------------------------------------------------------------ rewards

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
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"weights[{w!r}] must be a finite number, got {v!r}")
        if not isinstance(length_weight, (int, float)) or not math.isfinite(length_weight):
            raise ValueError(f"length_weight must be a finite number, got {length_weight!r}")
        if cap is not None:
            _check_positive_int("cap", cap)
        self.weights, self.length_weight, self.cap = dict(weights), float(length_weight), cap
        self.whole_words = whole_words
        self._patterns = {w: re.compile(rf"\b{re.escape(w)}s?\b" if whole_words else re.escape(w))
                          for w in self.weights}

    def score(self, text: str) -> float:
        """The reward of one text."""
        total = self.length_weight * len(text)
        for w, weight in self.weights.items():
            count = len(self._patterns[w].findall(text))
            total += weight * (count if self.cap is None else min(count, self.cap))
        return total

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("a reward scores a list of texts; for one text use reward.score(text)")
        return torch.tensor([self.score(t) for t in texts], dtype=torch.float64)

    def __repr__(self) -> str:
        return (f"LexiconReward({self.weights}, length_weight={self.length_weight}, cap={self.cap}, "
                f"whole_words={self.whole_words})")


def compute_rewards(reward: Reward, texts: Sequence[str]) -> torch.Tensor:
    """``reward(texts)`` as a (N,) float64 CPU tensor, checked: one finite number per text."""
    if not callable(reward):
        raise TypeError(f"reward must be callable as reward(texts), got {type(reward).__name__}")
    out = reward(texts)
    values = torch.as_tensor(out.detach().cpu() if isinstance(out, torch.Tensor) else out, dtype=torch.float64)
    if values.shape != (len(texts),):
        raise ValueError(f"reward(texts) must return one number per text ({len(texts)}), got shape "
                         f"{tuple(values.shape)}")
    _check_finite("rewards", values)
    return values


def sample_preferences(first: Sequence[str], second: Sequence[str], true_reward: Reward,
                       generator: torch.Generator | None = None) -> tuple[list[str], list[str]]:
    """Synthetic human labels: for each pair ``(a, b)``, ``a`` is preferred with probability
    ``σ(r(a) - r(b))`` under the hidden ``true_reward`` (the Bradley–Terry model).

    Returns ``(chosen, rejected)``, two lists as long as ``first``.
    """
    if len(first) != len(second) or not first:
        raise ValueError(f"first and second must be non-empty and of equal length, got {len(first)} and {len(second)}")
    ra, rb = compute_rewards(true_reward, first), compute_rewards(true_reward, second)
    a_wins = torch.rand(len(first), generator=generator, dtype=torch.float64) < torch.sigmoid(ra - rb)
    chosen = [a if w else b for a, b, w in zip(first, second, a_wins.tolist())]
    rejected = [b if w else a for a, b, w in zip(first, second, a_wins.tolist())]
    return chosen, rejected


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the labels under Bradley–Terry: ``-log σ(r_c - r_r)`` (N,) -> ()."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected {tuple(r_rejected.shape)} must match")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


class RewardModel(nn.Module):
    """A reward model as practitioners build one: a ``GPT`` whose output layer is replaced by a
    scalar head, read at the last token of each row (which has seen the whole text).

    ``forward(rows)``: rows (N, T) from ``encode_sequences`` -> rewards (N,).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
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
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        out = self(encode_sequences(tokenizer, texts, max_len).to(device)).double().cpu()
        self.train(was)
        return out


class _PairObjective(nn.Module):
    """Wraps a loss on (chosen rows, rejected rows) so ``lmcore.Trainer`` can optimise it."""

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *modules: nn.Module) -> None:
        super().__init__()
        self.parts = nn.ModuleList(modules)
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
                  max_len: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    if len(chosen) != len(rejected) or not chosen:
        raise ValueError(f"chosen and rejected must be non-empty and of equal length, got {len(chosen)} "
                         f"and {len(rejected)}")
    rows = encode_sequences(tokenizer, list(chosen) + list(rejected), max_len)
    return rows[:len(chosen)], rows[len(chosen):]


def train_reward_model(tokenizer: Tokenizer, chosen: Sequence[str], rejected: Sequence[str],
                       config: GPTConfig, train: TrainConfig, max_len: int | None = None) -> RewardModel:
    """Fit a ``RewardModel`` to preference pairs with the Bradley–Terry loss, through ``lmcore.Trainer``."""
    if not isinstance(train, TrainConfig):
        raise TypeError(f"train must be a TrainConfig, got {type(train).__name__}")
    c_rows, r_rows = _encode_pairs(tokenizer, chosen, rejected, max_len)
    model = RewardModel(config)
    objective = _PairObjective(lambda c, r: bradley_terry_loss(model(c), model(r)), model)
    trainer = Trainer(objective, train, batch_fn=_pair_batches(c_rows, r_rows, train.batch_size))
    for _ in range(train.max_steps):
        trainer.train_step()
    return model.eval()


# ------------------------------------------------------------------------------------ the posterior

class Posterior(NamedTuple):
    """``logprobs`` (N,) float64: ``log π*(x)`` over the enumerated space; ``log_z``: ``log Z`` (a float)."""
    logprobs: torch.Tensor
    log_z: float


def exact_posterior(prior_logprobs: torch.Tensor, rewards: torch.Tensor, beta: float,
                    atol: float = 1e-3) -> Posterior:
    """``π*(x) = π0(x) exp(r(x)/β) / Z`` over an enumerated space, computed in log space.

    ``prior_logprobs`` must cover the prior's whole mass (``Σ π0 = 1`` within ``atol``): otherwise
    the space does not hold every sequence the prior can produce, and ``Z`` would be wrong.
    """
    _check_beta(beta)
    lp0 = torch.as_tensor(prior_logprobs).detach().double().cpu()
    r = torch.as_tensor(rewards).detach().double().cpu()
    if lp0.dim() != 1 or r.shape != lp0.shape:
        raise ValueError(f"prior_logprobs and rewards must be 1-D of equal length, got {tuple(lp0.shape)} "
                         f"and {tuple(r.shape)}")
    _check_finite("rewards", r)
    mass = float(torch.logsumexp(lp0, 0).exp())
    if abs(mass - 1.0) > atol:
        raise ValueError(f"the prior's probabilities over the space sum to {mass:.6f}, not 1: the space misses "
                         "sequences the prior can produce (enumerate every string up to the prior's max_len)")
    unnorm = lp0 + r / beta
    log_z = float(torch.logsumexp(unnorm, 0))
    return Posterior(unnorm - log_z, log_z)


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Exact ``KL(p ‖ q) = Σ p (log p - log q)`` from log-probabilities over the same space (N,) -> ()."""
    p = logp.exp()
    return (p * (logp - logq)).sum()


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Exact entropy ``-Σ p log p`` in nats (N,) -> ()."""
    return -(logp.exp() * logp).sum()


def kl_regularised_objective(policy_logprobs: torch.Tensor, prior_logprobs: torch.Tensor,
                             rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """Exact ``J = E_πθ[r] - β KL(πθ ‖ π0)`` over an enumerated space (differentiable in the policy)."""
    _check_beta(beta)
    p = policy_logprobs.exp()
    return (p * rewards).sum() - beta * kl_divergence(policy_logprobs, prior_logprobs)


# ------------------------------------------------------------------------------------ sampling with the prior

def rejection_sample(rewards: torch.Tensor, beta: float, r_max: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Which prior samples to keep so the kept ones are exact posterior samples: (N,) bool.

    With the bound ``π0(x) exp(r(x)/β) ≤ M π0(x)``, ``M = exp(r_max/β)``, sample ``x`` is kept with
    probability ``exp((r(x) - r_max)/β)``; the acceptance rate is ``Z / M``. ``r_max`` must bound
    every reward (else the samples would not follow π*).
    """
    _check_beta(beta)
    r = torch.as_tensor(rewards).detach().double().cpu()
    _check_finite("rewards", r)
    if float(r.max()) > r_max:
        raise ValueError(f"r_max={r_max} is below a reward ({float(r.max())}); rejection sampling needs an "
                         "upper bound on every reward")
    return torch.rand(r.shape, generator=generator, dtype=torch.float64) < torch.exp((r - r_max) / beta)


def importance_weights(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """Self-normalised weights of prior samples for the posterior: ``softmax(r/β)`` (N,) float64."""
    _check_beta(beta)
    r = torch.as_tensor(rewards).detach().double().cpu()
    _check_finite("rewards", r)
    return torch.softmax(r / beta, dim=0)


def effective_sample_size(weights: torch.Tensor) -> float:
    """Kish's effective sample size ``(Σ w)² / Σ w²`` of importance weights (N,)."""
    w = torch.as_tensor(weights).double()
    return float(w.sum() ** 2 / (w ** 2).sum())


def importance_resample(rewards: torch.Tensor, beta: float, n: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``n`` draws (with replacement) of prior samples in proportion to ``exp(r/β)`` (n,)."""
    _check_positive_int("n", n)
    return torch.multinomial(importance_weights(rewards, beta), n, replacement=True, generator=generator)


def best_of_n(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """Best-of-n: split the samples into groups of ``n`` and keep each group's highest reward.

    Returns the indices of the winners, (N // n,); a last incomplete group is dropped.
    """
    _check_positive_int("n", n)
    r = torch.as_tensor(rewards).detach().double().cpu()
    _check_finite("rewards", r)
    groups = r.shape[0] // n
    if groups == 0:
        raise ValueError(f"need at least n={n} samples, got {r.shape[0]}")
    winners = r[:groups * n].view(groups, n).argmax(dim=1)
    return winners + torch.arange(groups) * n


# ------------------------------------------------------------------------------------ fine-tuning

def reinforce_loss(logp: torch.Tensor, logp_ref: torch.Tensor, rewards: torch.Tensor,
                   beta: float | None) -> torch.Tensor:
    """REINFORCE for ``J = E[r] - β KL(πθ ‖ π0)`` on samples of the policy, all (N,) -> ().

    Each sample's return is ``R = r - β (log πθ(x) - log π0(x))``, its advantage ``R`` minus the
    mean return of the *other* samples (a leave-one-out baseline: it lowers the variance without
    biasing the gradient). The loss's gradient is ``-mean(advantage · ∇ log πθ(x))``, an unbiased
    estimate of ``-∇J``; its value is the estimate of ``-J`` itself (a number worth logging).
    ``beta=None`` drops the KL term (plain reward maximisation).
    """
    _check_beta(beta, allow_none=True)
    n = logp.shape[0]
    if n < 2 or logp_ref.shape != logp.shape or rewards.shape != logp.shape:
        raise ValueError(f"logp, logp_ref and rewards must be (N,) with N >= 2, got {tuple(logp.shape)}, "
                         f"{tuple(logp_ref.shape)}, {tuple(rewards.shape)}")
    ret = rewards.to(logp.dtype)
    if beta is not None:
        ret = ret - beta * (logp.detach() - logp_ref.detach())
    baseline = (ret.sum() - ret) / (n - 1)
    surrogate = -((ret - baseline) * logp).mean()
    return surrogate - surrogate.detach() - ret.mean()


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO (Rafailov et al., 2023): Bradley–Terry on the implicit reward ``β log(πθ/π0)``, all (N,) -> ().

    ``-log σ(β[(log πθ(c) - log π0(c)) - (log πθ(r) - log π0(r))])``. Its minimiser is the
    posterior ``π0 exp(r/β)/Z`` when the labels follow ``σ(r(c) - r(r))``; a larger ``β`` needs
    smaller log-ratios for the same preferences, so it keeps ``πθ`` closer to ``π0``.
    """
    _check_beta(beta)
    margin = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


class _FrozenReference(nn.Module):
    """Holds the policy and the reference, which it freezes in place (``requires_grad=False``, eval mode)."""

    def __init__(self, policy: GPT, reference: GPT, tokenizer: Tokenizer,
                 reference_tokenizer: Tokenizer | None) -> None:
        super().__init__()
        _check_model("policy", policy, tokenizer)
        _check_model("reference", reference, tokenizer)
        if reference_tokenizer is not None:
            check_same_tokenizer(tokenizer, reference_tokenizer)
        if policy is reference:
            raise ValueError("policy and reference are the same object; fine-tune a copy: "
                             "policy = copy.deepcopy(reference)")
        self.policy, self.reference, self.tokenizer = policy, reference, tokenizer
        policy.requires_grad_(True)      # trained (a deep copy of a frozen reference starts frozen)
        reference.requires_grad_(False)  # frozen in place: the optimiser only sees the policy
        reference.eval()

    def train(self, mode: bool = True) -> "_FrozenReference":
        super().train(mode)
        self.reference.eval()
        return self

    def reference_logprobs(self, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return sequence_logprobs(self.reference, rows)


class KLRegularisedObjective(_FrozenReference):
    """``-J(θ) = -(E_πθ[r] - β KL(πθ ‖ π0))`` as a module ``lmcore.Trainer`` can minimise.

    ``forward(rows, rows)`` -> ``(None, loss)`` (the Trainer's ``(x, y)``; ``y`` is unused: the
    reward comes from the decoded text). Two ways to get the gradient:

    * ``exact_space`` (a list of every text of an enumerable space): ``rows`` is the whole space
      and the loss is exactly ``-J = β KL(πθ ‖ π*) - β log Z``, differentiated by autograd;
    * otherwise REINFORCE (``reinforce_loss``) on rows sampled from the policy.

    ``beta=None`` drops the KL term. After each forward, ``stats`` holds the batch's mean
    reward and mean ``log πθ - log π0`` (the KL estimate, or the exact KL on a space).
    """

    def __init__(self, policy: GPT, reference: GPT, tokenizer: Tokenizer, reward: Reward,
                 beta: float | None, max_len: int | None = None, exact_space: Sequence[str] | None = None,
                 reference_tokenizer: Tokenizer | None = None) -> None:
        super().__init__(policy, reference, tokenizer, reference_tokenizer)
        _check_beta(beta, allow_none=True)
        self.reward, self.beta, self.max_len = reward, beta, max_len
        self.stats: dict[str, float] = {}
        self.space_rows = None
        if exact_space is not None:
            self.space_rows = encode_sequences(tokenizer, exact_space, max_len)
            self.register_buffer("space_rewards", compute_rewards(reward, exact_space).float(), persistent=False)
            self.register_buffer("space_ref_logprobs", self.reference_logprobs(self.space_rows), persistent=False)
            mass = float(self.space_ref_logprobs.logsumexp(0).exp())
            if abs(mass - 1) > 1e-3:
                raise ValueError(f"exact_space holds {mass:.6f} of the reference's probability, not 1: "
                                 "enumerate every string up to max_len")

    def forward(self, rows: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[None, torch.Tensor]:
        logp = sequence_logprobs(self.policy, rows)
        if self.space_rows is not None:
            rewards, logp_ref = self.space_rewards, self.space_ref_logprobs
            p = logp.exp()
            kl = kl_divergence(logp, logp_ref)
            loss = -(p * rewards).sum() + (0.0 if self.beta is None else self.beta * kl)
            self.stats = {"reward": float((p * rewards).sum().detach()), "kl": float(kl.detach())}
        else:
            texts = decode_sequences(self.tokenizer, rows.cpu())
            rewards = compute_rewards(self.reward, texts).to(logp.device)
            logp_ref = self.reference_logprobs(rows)
            loss = reinforce_loss(logp, logp_ref, rewards, self.beta)
            self.stats = {"reward": float(rewards.mean()), "kl": float((logp.detach() - logp_ref).mean())}
        return None, loss

    def batch_fn(self, batch_size: int) -> Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
        """The Trainer's batches: the whole space (exact) or ``batch_size`` fresh samples of the policy."""
        if self.space_rows is not None:
            if batch_size != self.space_rows.shape[0]:
                raise ValueError(f"with exact_space the batch is the whole space: set batch_size="
                                 f"{self.space_rows.shape[0]}, got {batch_size}")
            return lambda split, generator: (self.space_rows, self.space_rows)
        if self.max_len is None:
            raise ValueError("REINFORCE samples from the policy: set max_len (the longest text to generate)")

        def sample(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            device = next(self.policy.parameters()).device
            texts = sample_sequences(self.policy, self.tokenizer, batch_size, self.max_len,
                                     _device_generator(generator, device))
            rows = encode_sequences(self.tokenizer, texts, self.max_len)
            return rows, rows
        return sample


class DPOObjective(_FrozenReference):
    """``dpo_loss`` on (chosen rows, rejected rows) as a module ``lmcore.Trainer`` can minimise."""

    def __init__(self, policy: GPT, reference: GPT, tokenizer: Tokenizer, beta: float,
                 reference_tokenizer: Tokenizer | None = None) -> None:
        super().__init__(policy, reference, tokenizer, reference_tokenizer)
        _check_beta(beta)
        self.beta = beta

    def forward(self, chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[None, torch.Tensor]:
        both = torch.cat([chosen, rejected])
        logp, ref = sequence_logprobs(self.policy, both), self.reference_logprobs(both)
        n = chosen.shape[0]
        return None, dpo_loss(logp[:n], logp[n:], ref[:n], ref[n:], self.beta)


def _run(objective: nn.Module, config: TrainConfig, batch_fn, callback: Callable[[int], None] | None) -> Trainer:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    trainer = Trainer(objective, config, batch_fn=batch_fn)
    for step in range(config.max_steps):
        trainer.train_step()
        if callback is not None:
            callback(step + 1)
    objective.policy.eval()
    return trainer


def finetune_kl(policy: GPT, reference: GPT, tokenizer: Tokenizer, reward: Reward, beta: float | None,
                config: TrainConfig, max_len: int | None = None, exact_space: Sequence[str] | None = None,
                reference_tokenizer: Tokenizer | None = None,
                callback: Callable[[int], None] | None = None) -> Trainer:
    """Fine-tune ``policy`` (in place) to maximise ``E[r] - β KL(πθ ‖ π0)``; see ``KLRegularisedObjective``.

    ``config.batch_size`` samples per step (REINFORCE), or the size of ``exact_space`` (exact).
    ``callback(step)`` runs after every optimiser step. Returns the ``Trainer`` (its ``history``
    holds the loss, i.e. the estimate of ``-J``, per step).
    """
    objective = KLRegularisedObjective(policy, reference, tokenizer, reward, beta, max_len, exact_space,
                                       reference_tokenizer)
    return _run(objective, config, objective.batch_fn(config.batch_size), callback)


def finetune_dpo(policy: GPT, reference: GPT, tokenizer: Tokenizer, chosen: Sequence[str],
                 rejected: Sequence[str], beta: float, config: TrainConfig, max_len: int | None = None,
                 reference_tokenizer: Tokenizer | None = None,
                 callback: Callable[[int], None] | None = None) -> Trainer:
    """Fine-tune ``policy`` (in place) with DPO on preference pairs; ``config.batch_size`` pairs a step."""
    objective = DPOObjective(policy, reference, tokenizer, beta, reference_tokenizer)
    c_rows, r_rows = _encode_pairs(tokenizer, chosen, rejected, max_len)
    return _run(objective, config, _pair_batches(c_rows, r_rows, config.batch_size), callback)


@torch.no_grad()
def sample_kl_estimate(policy: GPT, reference: GPT, tokenizer: Tokenizer, n: int, max_len: int,
                       generator: torch.Generator | None = None, reward: Reward | None = None,
                       reference_tokenizer: Tokenizer | None = None) -> dict[str, float | list[str]]:
    """Monte-Carlo ``KL(πθ ‖ π0) = E_{x~πθ}[log πθ(x) - log π0(x)]`` from ``n`` policy samples.

    Returns ``kl`` and its standard error ``kl_se``, the samples ``texts``, and with a ``reward``
    its mean ``reward`` (and ``reward_se``). Exact in expectation on any space, however large.
    """
    _check_model("policy", policy, tokenizer)
    _check_model("reference", reference, tokenizer)
    if reference_tokenizer is not None:
        check_same_tokenizer(tokenizer, reference_tokenizer)
    _check_positive_int("n", n)
    if n < 2:
        raise ValueError("n must be >= 2 for a standard error")
    texts = sample_sequences(policy, tokenizer, n, max_len, generator)
    rows = encode_sequences(tokenizer, texts, max_len)
    diff = (sequence_logprobs(policy, rows) - sequence_logprobs(reference, rows)).double().cpu()
    out: dict[str, float | list[str]] = {"kl": float(diff.mean()), "kl_se": float(diff.std() / math.sqrt(n)),
                                         "texts": texts}
    if reward is not None:
        r = compute_rewards(reward, texts)
        out.update(reward=float(r.mean()), reward_se=float(r.std() / math.sqrt(n)))
    return out
