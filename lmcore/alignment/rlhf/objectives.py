"""Fine-tuning towards the posterior: KL-regularised policy gradient and DPO (chapter 11).

``reinforce_loss`` (REINFORCE with a leave-one-out baseline) and ``dpo_loss`` are the losses;
``KLRegularisedObjective`` (REINFORCE, or the exact objective on an enumerable space) and
``DPOObjective`` wrap them as modules, and ``finetune_kl`` / ``finetune_dpo`` run them through
``lmcore.Trainer`` (AdamW groups, warm-up/cosine schedule, clipping, NaN guard).
``sample_kl_estimate`` estimates ``KL(πθ ‖ π0)`` and the reward from samples, on any space.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..._checks import ArgumentTypeError, check_int
from ...models import GPT
from ...runtime import progress
from ...tokenizers import Tokenizer
from ...training import TrainConfig, Trainer
from .posterior import _check_beta, kl_divergence
from .rewards import Reward, _check_texts, _check_vectors, _encode_pairs, _pair_batches, compute_rewards
from .sequences import (
    _check_max_len,
    _device_generator,
    decode_sequences,
    encode_sequences,
    sample_sequences,
    sequence_logprobs,
)

__all__ = ["reinforce_loss", "dpo_loss", "KLRegularisedObjective", "DPOObjective", "finetune_kl", "finetune_dpo",
           "sample_kl_estimate", "check_same_tokenizer"]


# ------------------------------------------------------------------------------------ validation

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
    for name, t in (("logp", logp), ("logp_ref", logp_ref), ("rewards", rewards)):
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    n = logp.shape[0] if logp.ndim == 1 else 0
    if n < 2 or logp_ref.shape != logp.shape or rewards.shape != logp.shape:
        raise ValueError(f"logp, logp_ref and rewards must be (N,) with N >= 2, got {tuple(logp.shape)}, "
                         f"{tuple(logp_ref.shape)}, {tuple(rewards.shape)}")
    ret = rewards.to(logp.dtype)
    if beta is not None:
        # the KL term as a per-sample penalty on the return, detached: since E[∇ log πθ] = 0, the
        # score-function term below alone is an unbiased gradient of the KL too
        ret = ret - beta * (logp.detach() - logp_ref.detach())
    baseline = (ret.sum() - ret) / (n - 1)   # leave-one-out: independent of sample i, so no bias
    surrogate = -((ret - baseline) * logp).mean()
    # the value of -mean(R) (the estimate of -J) with the surrogate's gradient
    return surrogate - surrogate.detach() - ret.mean()


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO (Rafailov et al., 2023): Bradley–Terry on the implicit reward ``β log(πθ/π0)``, all (N,) -> ().

    ``-log σ(β[(log πθ(c) - log π0(c)) - (log πθ(r) - log π0(r))])``. Its minimiser is the
    posterior ``π0 exp(r/β)/Z`` when the labels follow ``σ(r(c) - r(r))``; a larger ``β`` needs
    smaller log-ratios for the same preferences, so it keeps ``πθ`` closer to ``π0``.
    """
    _check_beta(beta)
    _check_vectors(logp_chosen=logp_chosen, logp_rejected=logp_rejected, ref_chosen=ref_chosen,
                   ref_rejected=ref_rejected)
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

    def train(self, mode: bool = True) -> _FrozenReference:
        super().train(mode)
        self.reference.eval()   # the Trainer switches the whole module to train mode: not the reference
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
    reward and mean ``log πθ - log π0`` (the KL estimate, or the exact KL on a space), and
    ``history`` holds the ``stats`` of every training-mode forward (one per optimiser step).
    """

    space_rewards: torch.Tensor            # buffers, set when exact_space is given
    space_ref_logprobs: torch.Tensor


    def __init__(self, policy: GPT, reference: GPT, tokenizer: Tokenizer, reward: Reward,
                 beta: float | None, max_len: int | None = None, exact_space: Sequence[str] | None = None,
                 reference_tokenizer: Tokenizer | None = None) -> None:
        super().__init__(policy, reference, tokenizer, reference_tokenizer)
        _check_beta(beta, allow_none=True)
        if not callable(reward):      # else found only in the first training step
            raise TypeError(f"reward must be callable as reward(texts), got {type(reward).__name__}")
        if max_len is not None:
            _check_max_len(max_len, policy)
        if exact_space is not None:
            _check_texts("exact_space", exact_space)
            if not exact_space:
                raise ValueError("exact_space is empty: pass every text of the space (enumerate_sequences)")
        self.reward, self.beta, self.max_len = reward, beta, max_len
        self.stats: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
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
        if self.training:
            self.history.append(self.stats)
        return None, loss

    def batch_fn(self, batch_size: int) -> Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
        """The Trainer's batches: the whole space (exact) or ``batch_size`` fresh samples of the policy."""
        check_int("batch_size", batch_size, low=1)
        if self.space_rows is not None:
            if batch_size != self.space_rows.shape[0]:
                raise ValueError(f"with exact_space the batch is the whole space: set batch_size="
                                 f"{self.space_rows.shape[0]}, got {batch_size}")
            space = self.space_rows
            return lambda split, generator: (space, space)
        max_len = self.max_len
        if max_len is None:
            raise ValueError("REINFORCE samples from the policy: set max_len (the longest text to generate)")
        if batch_size < 2:
            raise ValueError(f"REINFORCE needs batch_size >= 2 samples a step (its baseline is the mean of the "
                             f"others), got {batch_size}")

        def sample(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            device = next(self.policy.parameters()).device
            texts = sample_sequences(self.policy, self.tokenizer, batch_size, max_len,
                                     _device_generator(generator, device))
            rows = encode_sequences(self.tokenizer, texts, self.max_len)
            return rows, rows
        return sample


class DPOObjective(_FrozenReference):
    """``dpo_loss`` on (chosen rows, rejected rows) as a module ``lmcore.Trainer`` can minimise.

    ``prompt_len`` tokens after ``bos`` are a prompt ``x`` shared by both halves of a pair: they are
    context, not scored, so the log-probabilities are the conditional ``log π(y | x)`` (default 0:
    no prompt, the whole text is scored).
    """

    def __init__(self, policy: GPT, reference: GPT, tokenizer: Tokenizer, beta: float,
                 reference_tokenizer: Tokenizer | None = None, prompt_len: int = 0) -> None:
        super().__init__(policy, reference, tokenizer, reference_tokenizer)
        _check_beta(beta)
        self.beta, self.start = beta, 1 + check_int("prompt_len", prompt_len, low=0)

    def reference_logprobs(self, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return sequence_logprobs(self.reference, rows, start=self.start)

    def forward(self, chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[None, torch.Tensor]:
        both = torch.cat([chosen, rejected])   # one forward pass per model for both halves
        logp, ref = sequence_logprobs(self.policy, both, start=self.start), self.reference_logprobs(both)
        n = chosen.shape[0]
        return None, dpo_loss(logp[:n], logp[n:], ref[:n], ref[n:], self.beta)


def _check_run(config: TrainConfig, callback: Callable[[int], None] | None) -> None:
    """Checked before anything is built: a bad config or callback would otherwise fail later."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be None or callable as callback(step), got {type(callback).__name__}")


def _run(objective: nn.Module, config: TrainConfig, batch_fn, callback: Callable[[int], None] | None) -> Trainer:
    trainer = Trainer(objective, config, batch_fn=batch_fn)
    steps: Iterable[int] = range(config.max_steps)
    if config.progress:     # the Trainer draws its bar only in train(); this loop steps it by hand
        steps = progress(steps, total=config.max_steps, desc="fine-tuning", unit="step")
    for step in steps:
        trainer.train_step()
        if callback is not None:
            callback(step + 1)
    objective.policy.eval()   # handed back ready to sample from, like every trained model here
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
    _check_run(config, callback)
    objective = KLRegularisedObjective(policy, reference, tokenizer, reward, beta, max_len, exact_space,
                                       reference_tokenizer)
    return _run(objective, config, objective.batch_fn(config.batch_size), callback)


def finetune_dpo(policy: GPT, reference: GPT, tokenizer: Tokenizer, chosen: Sequence[str],
                 rejected: Sequence[str], beta: float, config: TrainConfig, max_len: int | None = None,
                 reference_tokenizer: Tokenizer | None = None,
                 callback: Callable[[int], None] | None = None, prompt_len: int = 0) -> Trainer:
    """Fine-tune ``policy`` (in place) with DPO on preference pairs; ``config.batch_size`` pairs a step.

    With ``prompt_len`` > 0 each text starts with a prompt of that many tokens, the same in both
    halves of a pair, and DPO fits the conditional ``π(y | x)`` (see ``DPOObjective``).
    """
    _check_run(config, callback)
    objective = DPOObjective(policy, reference, tokenizer, beta, reference_tokenizer, prompt_len)
    # sequence_logprobs reads a row of width W as W - 1 input positions
    c_rows, r_rows = _encode_pairs(tokenizer, chosen, rejected, max_len, policy.config.context_length + 1)
    if prompt_len:
        _check_same_prompts(c_rows, r_rows, prompt_len, chosen, rejected)
    return _run(objective, config, _pair_batches(c_rows, r_rows, config.batch_size), callback)


def _check_same_prompts(c_rows: torch.Tensor, r_rows: torch.Tensor, prompt_len: int,
                        chosen: Sequence[str], rejected: Sequence[str]) -> None:
    """Both halves of every pair start with the same ``prompt_len`` tokens, and have a reply after them."""
    # rows are [bos, prompt..., reply..., eos]: a reply (or its eos) must follow the prompt to be scored
    short = ((c_rows[:, 1 + prompt_len] < 0) | (r_rows[:, 1 + prompt_len] < 0)).nonzero() \
        if c_rows.shape[1] > 1 + prompt_len else torch.zeros((1, 1), dtype=torch.long)
    if len(short):
        i = int(short[0, 0])
        raise ValueError(f"pair {i} ({chosen[i]!r}, {rejected[i]!r}) has nothing after its prompt of "
                         f"prompt_len={prompt_len} tokens; every text must be a prompt and a reply")
    differ = (c_rows[:, 1:1 + prompt_len] != r_rows[:, 1:1 + prompt_len]).any(dim=1).nonzero()
    if len(differ):
        i = int(differ[0, 0])
        raise ValueError(f"pair {i} has different prompts ({chosen[i]!r} vs {rejected[i]!r} in their first "
                         f"{prompt_len} tokens): with prompt_len, DPO compares two replies to the same prompt")


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
    check_int("n", n, low=2)        # two samples at least: the standard error divides by n - 1
    if reward is not None and not callable(reward):     # before sampling, not after
        raise TypeError(f"reward must be None or callable as reward(texts), got {type(reward).__name__}")
    texts = sample_sequences(policy, tokenizer, n, max_len, generator)
    rows = encode_sequences(tokenizer, texts, max_len)
    diff = (sequence_logprobs(policy, rows) - sequence_logprobs(reference, rows)).double().cpu()
    out: dict[str, float | list[str]] = {"kl": float(diff.mean()), "kl_se": float(diff.std() / math.sqrt(n)),
                                         "texts": texts}
    if reward is not None:
        r = compute_rewards(reward, texts)
        out.update(reward=float(r.mean()), reward_se=float(r.std() / math.sqrt(n)))
    return out
