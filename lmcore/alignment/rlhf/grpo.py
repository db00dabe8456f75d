"""Verifiable rewards: GRPO's group-relative policy gradient and rejection-sampling fine-tuning (chapter 11).

When the reward is a *verifier* (a checker that says pass or fail, like a grammar or a unit test),
two recipes are common:

* **GRPO** (Shao et al., 2024, DeepSeekMath) samples a *group* of ``G`` answers, scores each, and
  uses the group itself as the baseline: the advantage of answer ``i`` is
  ``(r_i - mean(r)) / (std(r) + eps)`` over its group (``group_advantages``), so no value network
  is needed. The KL to the reference is a separate penalty, estimated per sample with
  ``exp(log π0 - log πθ) - (log π0 - log πθ) - 1`` (non-negative, unbiased for ``KL(πθ ‖ π0)``).
  Here each step takes one gradient step on fresh samples, so PPO's clipped ratio is 1 and drops
  out; the log-probabilities are of whole sequences.
* **Rejection-sampling fine-tuning** (best-of-n, then supervised fine-tuning on the winners):
  ``finetune_rft`` maximises the likelihood of a fixed list of accepted texts.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ..._checks import ArgumentTypeError, check_float, check_int
from ...models import GPT
from ...tokenizers import Tokenizer
from ...training import TrainConfig
from .objectives import KLRegularisedObjective, _check_model, _check_run, _run
from .posterior import _check_beta
from .rewards import Reward, _check_texts, compute_rewards
from .sequences import decode_sequences, encode_sequences, sequence_logprobs

__all__ = ["group_advantages", "grpo_loss", "GRPOObjective", "finetune_grpo", "finetune_rft"]


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages: each reward minus its group's mean, over the group's standard deviation.

    ``rewards`` (N,) holds ``N / group_size`` groups, one after another (answers ``k·G … k·G + G - 1``
    share a prompt). The standard deviation is the sample one (divided by ``G - 1``); ``eps`` keeps
    a group whose answers all score the same at advantage 0 instead of 0/0. Returns (N,).
    """
    if not isinstance(rewards, torch.Tensor):
        raise ArgumentTypeError(f"rewards must be a torch.Tensor, got {type(rewards).__name__}")
    group_size = check_int("group_size", group_size, low=2)
    check_float("eps", eps, low=0.0)
    if rewards.ndim != 1 or rewards.numel() == 0 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (N,) with N a positive multiple of group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    groups = rewards.view(-1, group_size)
    adv = (groups - groups.mean(dim=1, keepdim=True)) / (groups.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)


def grpo_loss(logp: torch.Tensor, logp_ref: torch.Tensor, rewards: torch.Tensor, group_size: int,
              beta: float | None, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's loss on ``N`` sampled sequences in groups of ``group_size``, all (N,) -> ().

    ``-mean(A_i · log πθ(x_i)) + β · mean(k3_i)`` with ``A = group_advantages(rewards)`` (detached)
    and ``k3 = exp(log π0 - log πθ) - (log π0 - log πθ) - 1``, differentiated through ``log πθ``.
    ``beta=None`` drops the KL penalty.
    """
    _check_beta(beta, allow_none=True)
    for name, t in (("logp", logp), ("logp_ref", logp_ref)):
        if not isinstance(t, torch.Tensor):
            raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    adv = group_advantages(rewards, group_size, eps)
    if logp.shape != rewards.shape or logp_ref.shape != rewards.shape:
        raise ValueError(f"logp, logp_ref and rewards must have one shape (N,), got {tuple(logp.shape)}, "
                         f"{tuple(logp_ref.shape)}, {tuple(rewards.shape)}")
    loss = -(adv.detach().to(logp.dtype) * logp).mean()
    if beta is not None:
        log_ratio = logp_ref.detach() - logp      # log(π0/πθ)
        loss = loss + beta * (log_ratio.exp() - log_ratio - 1).mean()
    return loss


class GRPOObjective(KLRegularisedObjective):
    """``grpo_loss`` on samples of the policy, as a module ``lmcore.Trainer`` can minimise.

    Each batch is ``batch_size`` fresh samples (a multiple of ``group_size``), all after the same
    (empty) prompt, cut into consecutive groups. ``stats`` and ``history`` as in
    ``KLRegularisedObjective`` (the batch's mean reward and mean ``log πθ - log π0``).
    """

    def __init__(self, policy: GPT, reference: GPT, tokenizer: Tokenizer, reward: Reward, beta: float | None,
                 group_size: int, max_len: int, reference_tokenizer: Tokenizer | None = None) -> None:
        check_int("max_len", max_len, low=1)   # GRPO samples: no exact_space, so max_len is required
        super().__init__(policy, reference, tokenizer, reward, beta, max_len, None, reference_tokenizer)
        self.group_size = check_int("group_size", group_size, low=2)

    def forward(self, rows: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[None, torch.Tensor]:
        logp = sequence_logprobs(self.policy, rows)
        texts = decode_sequences(self.tokenizer, rows.cpu())
        rewards = compute_rewards(self.reward, texts).to(logp.device)
        logp_ref = self.reference_logprobs(rows)
        loss = grpo_loss(logp, logp_ref, rewards, self.group_size, self.beta)
        self.stats = {"reward": float(rewards.mean()), "kl": float((logp.detach() - logp_ref).mean())}
        if self.training:
            self.history.append(self.stats)
        return None, loss


def finetune_grpo(policy: GPT, reference: GPT, tokenizer: Tokenizer, reward: Reward, beta: float | None,
                  config: TrainConfig, group_size: int, max_len: int,
                  reference_tokenizer: Tokenizer | None = None,
                  callback: Callable[[int], None] | None = None) -> GRPOObjective:
    """Fine-tune ``policy`` (in place) with GRPO; ``config.batch_size`` samples a step, in groups.

    Returns the objective: its ``history`` holds each step's mean reward and KL estimate.
    """
    _check_run(config, callback)
    objective = GRPOObjective(policy, reference, tokenizer, reward, beta, group_size, max_len, reference_tokenizer)
    if config.batch_size % objective.group_size:
        raise ValueError(f"batch_size={config.batch_size} must be a multiple of group_size={group_size}")
    _run(objective, config, objective.batch_fn(config.batch_size), callback)
    return objective


class _LikelihoodObjective(nn.Module):
    """Mean negative log-likelihood of whole rows (supervised fine-tuning on complete texts)."""

    def __init__(self, policy: GPT) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, rows: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[None, torch.Tensor]:
        return None, -sequence_logprobs(self.policy, rows).mean()


def finetune_rft(policy: GPT, tokenizer: Tokenizer, texts: Sequence[str], config: TrainConfig,
                 max_len: int | None = None, callback: Callable[[int], None] | None = None) -> None:
    """Rejection-sampling fine-tuning: maximise ``log πθ(x)`` of accepted ``texts``, in place.

    ``config.batch_size`` texts a step, drawn with replacement with the Trainer's generator. Feed it
    the winners of best-of-n (``best_of_n``) or the samples a verifier accepted.
    """
    _check_run(config, callback)
    _check_model("policy", policy, tokenizer)
    _check_texts("texts", texts)
    if not texts:
        raise ValueError("texts is empty: fine-tune on at least one accepted text")
    rows = encode_sequences(tokenizer, texts, max_len)
    if rows.shape[1] > policy.config.context_length + 1:   # a row of width W is W - 1 input positions
        raise ValueError(f"the longest text needs {rows.shape[1] - 1} positions, more than the policy's "
                         f"context_length={policy.config.context_length}")
    policy.requires_grad_(True)

    def batch_fn(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(0, rows.shape[0], (config.batch_size,), generator=generator)
        return rows[i], rows[i]
    _run(_LikelihoodObjective(policy), config, batch_fn, callback)
