"""RLHF as Bayesian inference, checked against an exactly computed posterior (chapter 11).

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

The pieces, one module each (all names are importable from ``lmcore.alignment.rlhf``):

* **sequences** (:mod:`.sequences`; the space itself in :mod:`lmcore.data.languages`) —
  ``enumerate_sequences``, ``encode_sequences`` (rows ``[bos, x1, …, xn, eos]`` padded with -100),
  ``decode_sequences``, ``sequence_logprobs`` (exact, batched, differentiable; the one of
  :mod:`lmcore.decoding.scoring`), ``sample_sequences``; ``tiny_language`` and
  ``train_tiny_prior`` give the small GPT the enumerable examples use.
* **rewards** (:mod:`.rewards`) — ``LexiconReward`` (a hand-written score on text),
  ``compute_rewards`` (validates any reward's output), ``sample_preferences`` (synthetic "human"
  labels from a hidden reward, ``P(a ≻ b) = σ(r(a) - r(b))``), ``bradley_terry_loss``,
  ``RewardModel`` and ``train_reward_model``.
* **the posterior** (:mod:`.posterior`) — ``exact_posterior`` (with ``log Z``), ``kl_divergence``,
  ``entropy``, ``kl_regularised_objective``, ``binary_posterior`` (a 0/1 reward's posterior from the
  prior's pass rate alone); and sampling with the prior alone:
  ``rejection_sample``, ``importance_weights``, ``effective_sample_size``,
  ``importance_resample``, ``best_of_n``.
* **fine-tuning** (:mod:`.objectives`) — ``KLRegularisedObjective`` (REINFORCE with a
  leave-one-out baseline, or the exact objective on an enumerable space), ``DPOObjective``;
  ``finetune_kl`` and ``finetune_dpo`` run them through ``lmcore.Trainer``;
  ``sample_kl_estimate`` estimates ``KL(πθ ‖ π0)`` and the reward from samples; with
  ``prompt_len``, DPO compares two replies to one prompt and fits the conditional ``π(y | x)``.
* **verifiable rewards** (:mod:`.grpo`) — ``group_advantages`` and ``grpo_loss`` (GRPO's
  group-relative policy gradient), ``GRPOObjective`` / ``finetune_grpo``, and ``finetune_rft``
  (rejection-sampling fine-tuning on accepted samples).
"""
from ...data.languages import enumerate_sequences, tiny_language
from .grpo import GRPOObjective, finetune_grpo, finetune_rft, group_advantages, grpo_loss
from .objectives import (
    DPOObjective,
    KLRegularisedObjective,
    check_same_tokenizer,
    dpo_loss,
    finetune_dpo,
    finetune_kl,
    reinforce_loss,
    sample_kl_estimate,
)
from .posterior import (
    BinaryPosterior,
    Posterior,
    best_of_n,
    binary_posterior,
    effective_sample_size,
    entropy,
    exact_posterior,
    importance_resample,
    importance_weights,
    kl_divergence,
    kl_regularised_objective,
    rejection_sample,
)
from .rewards import (
    LexiconReward,
    Reward,
    RewardModel,
    bradley_terry_loss,
    compute_rewards,
    sample_preferences,
    train_reward_model,
)
from .sequences import decode_sequences, encode_sequences, sample_sequences, sequence_logprobs, train_tiny_prior

__all__ = [
    "enumerate_sequences", "encode_sequences", "decode_sequences", "sequence_logprobs", "sample_sequences",
    "tiny_language", "train_tiny_prior",
    "Reward", "LexiconReward", "compute_rewards", "sample_preferences", "bradley_terry_loss", "RewardModel",
    "train_reward_model",
    "Posterior", "exact_posterior", "kl_divergence", "entropy", "kl_regularised_objective",
    "BinaryPosterior", "binary_posterior",
    "rejection_sample", "importance_weights", "effective_sample_size", "importance_resample", "best_of_n",
    "reinforce_loss", "dpo_loss", "KLRegularisedObjective", "DPOObjective", "finetune_kl", "finetune_dpo",
    "sample_kl_estimate", "check_same_tokenizer",
    "group_advantages", "grpo_loss", "GRPOObjective", "finetune_grpo", "finetune_rft",
]
