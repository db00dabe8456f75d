"""The exact RLHF posterior, and sampling it with the prior alone (chapter 11).

On an enumerated space, ``π*(x) = π0(x) · exp(r(x)/β) / Z`` is computed exactly
(``exact_posterior``, with ``log Z``), and so are ``kl_divergence``, ``entropy`` and the objective
``J = E_πθ[r] - β KL(πθ ‖ π0)`` (``kl_regularised_objective``). For a 0/1 reward (a verifier) the
posterior needs only the prior's pass rate (``binary_posterior``), on any space. Without fine-tuning, samples of the
prior can be turned into posterior samples: ``rejection_sample`` (exact), ``importance_weights`` /
``importance_resample`` with ``effective_sample_size``, and ``best_of_n``.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from ..._checks import ArgumentTypeError, check_float, check_int
from .rewards import _check_finite, _check_vectors
from .sequences import _check_generator

__all__ = ["Posterior", "exact_posterior", "BinaryPosterior", "binary_posterior",
           "kl_divergence", "entropy", "kl_regularised_objective",
           "rejection_sample", "importance_weights", "effective_sample_size", "importance_resample", "best_of_n"]


def _check_beta(beta: float | None, allow_none: bool = False) -> None:
    try:
        check_float("beta", beta, low=0, low_open=True, optional=allow_none)
    except ValueError as e:   # ArgumentTypeError too: keep its type, add what beta means
        extra = " (pass beta=None to drop the KL term)" if allow_none else ""
        raise type(e)(f"{e}: it is the temperature of the evidence exp(r/beta){extra}") from None


def _as_float64(name: str, values: Any) -> torch.Tensor:
    """``values`` (a tensor or a list of numbers) as a detached float64 CPU tensor."""
    try:
        return torch.as_tensor(values).detach().double().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ArgumentTypeError(f"{name} must be a tensor or a list of numbers, got {type(values).__name__}") from None


def _rewards(rewards: Any) -> torch.Tensor:
    """The rewards of N samples as a float64 CPU tensor (N,), N >= 1, every one finite."""
    r = _as_float64("rewards", rewards)
    if r.ndim != 1 or r.numel() == 0:
        raise ValueError(f"rewards must be a non-empty 1-D tensor (one per sample), got shape {tuple(r.shape)}")
    _check_finite("rewards", r)
    return r


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
    check_float("atol", atol, low=0)
    lp0 = _as_float64("prior_logprobs", prior_logprobs)
    r = _as_float64("rewards", rewards)
    if lp0.dim() != 1 or r.shape != lp0.shape:
        raise ValueError(f"prior_logprobs and rewards must be 1-D of equal length, got {tuple(lp0.shape)} "
                         f"and {tuple(r.shape)}")
    _check_finite("rewards", r)
    # -inf is a probability of 0, allowed; NaN or +inf would make Z NaN and pass the mass check below
    if bool((lp0.isnan() | (lp0 == math.inf)).any()):
        raise ValueError("prior_logprobs must be log-probabilities: no NaN or +inf (-inf, probability 0, is fine)")
    mass = float(torch.logsumexp(lp0, 0).exp())
    if abs(mass - 1.0) > atol:
        raise ValueError(f"the prior's probabilities over the space sum to {mass:.6f}, not 1: the space misses "
                         "sequences the prior can produce (enumerate every string up to the prior's max_len)")
    # in log space: exp(r/β) overflows for small β, log π0 + r/β does not
    unnorm = lp0 + r / beta
    log_z = float(torch.logsumexp(unnorm, 0))
    return Posterior(unnorm - log_z, log_z)


class BinaryPosterior(NamedTuple):
    """The posterior of a 0/1 reward: its pass rate ``reward``, ``kl`` = KL(π* ‖ π0) and ``log_z``."""
    reward: float
    kl: float
    log_z: float


def binary_posterior(p: float, beta: float) -> BinaryPosterior:
    """The exact posterior of a 0/1 reward from the prior's pass rate ``p`` alone, on any space.

    With ``r(x) ∈ {0, 1}``, ``Z = 1 - p + p·e^{1/β}``; the posterior passes with
    ``p* = p·e^{1/β} / Z`` and, since ``log π*/π0 = r/β - log Z``, ``KL(π* ‖ π0) = p*/β - log Z``.
    Inside the passing and the failing texts it keeps the prior's proportions, so this is also the
    least KL at which any policy passes with rate ``p*``: the Bernoulli KL of ``p*`` against ``p``.
    ``p`` in [0, 1], ``beta`` > 0; computed in log space, so a tiny ``beta`` does not overflow.
    """
    check_float("p", p, low=0.0, high=1.0)
    _check_beta(beta)
    if p in (0.0, 1.0):         # one class holds all the mass: the evidence changes nothing
        return BinaryPosterior(float(p), 0.0, 0.0 if p == 0.0 else 1.0 / beta)
    log_z = float(torch.logaddexp(torch.tensor(math.log1p(-p), dtype=torch.float64),
                                  torch.tensor(math.log(p) + 1.0 / beta, dtype=torch.float64)))
    p_star = math.exp(math.log(p) + 1.0 / beta - log_z)
    return BinaryPosterior(p_star, max(0.0, p_star / beta - log_z), log_z)


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Exact ``KL(p ‖ q) = Σ p (log p - log q)`` from log-probabilities over the same space (N,) -> ()."""
    _check_vectors(logp=logp, logq=logq)
    p = logp.exp()
    return (p * (logp - logq)).sum()


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Exact entropy ``-Σ p log p`` in nats (N,) -> ()."""
    _check_vectors(logp=logp)
    return -(logp.exp() * logp).sum()


def kl_regularised_objective(policy_logprobs: torch.Tensor, prior_logprobs: torch.Tensor,
                             rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """Exact ``J = E_πθ[r] - β KL(πθ ‖ π0)`` over an enumerated space (differentiable in the policy)."""
    _check_beta(beta)
    _check_vectors(policy_logprobs=policy_logprobs, prior_logprobs=prior_logprobs, rewards=rewards)
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
    check_float("r_max", r_max)   # NaN would reject every sample silently, inf accept none
    _check_generator(generator)
    r = _rewards(rewards)
    if float(r.max()) > r_max:
        raise ValueError(f"r_max={r_max} is below a reward ({float(r.max())}); rejection sampling needs an "
                         "upper bound on every reward")
    return torch.rand(r.shape, generator=generator, dtype=torch.float64) < torch.exp((r - r_max) / beta)


def importance_weights(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """Self-normalised weights of prior samples for the posterior: ``softmax(r/β)`` (N,) float64."""
    _check_beta(beta)
    r = _rewards(rewards)
    # π*/π0 ∝ exp(r/β): the prior cancels, and Z with it once the weights are normalised
    return torch.softmax(r / beta, dim=0)


def effective_sample_size(weights: torch.Tensor) -> float:
    """Kish's effective sample size ``(Σ w)² / Σ w²`` of importance weights (N,): finite, >= 0, not all 0."""
    w = _as_float64("weights", weights)
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(f"weights must be a non-empty 1-D tensor, got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not bool((w > 0).any()):
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got min {float(w.min())}, "
                         f"max {float(w.max())}")
    return float(w.sum() ** 2 / (w ** 2).sum())


def importance_resample(rewards: torch.Tensor, beta: float, n: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``n`` draws (with replacement) of prior samples in proportion to ``exp(r/β)`` (n,)."""
    check_int("n", n, low=1)
    _check_generator(generator)
    return torch.multinomial(importance_weights(rewards, beta), n, replacement=True, generator=generator)


def best_of_n(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """Best-of-n: split the samples into groups of ``n`` and keep each group's highest reward.

    Returns the indices of the winners, (N // n,); a last incomplete group is dropped.
    """
    check_int("n", n, low=1)
    r = _rewards(rewards)
    groups = r.shape[0] // n
    if groups == 0:
        raise ValueError(f"need at least n={n} samples, got {r.shape[0]}")
    winners = r[:groups * n].view(groups, n).argmax(dim=1)
    return winners + torch.arange(groups) * n
