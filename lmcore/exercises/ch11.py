"""Checks for the exercises of chapter 11, "RLHF as Bayesian inference".

Each ``check_<name>(fn)`` runs the student's ``fn`` on fixed and random cases, compares it with an
independent reference written here in plain Python floats, and prints ``PASS`` or ``FAIL`` with a hint.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch

from ._check import CheckFailed, CheckResult, CheckUnsolved, run_check

__all__ = ["check_bradley_terry_loss", "check_exact_posterior", "check_verifier_kl"]


def _as_float(x, what: str) -> float:
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise CheckFailed(f"{what}: return one number (a 0-d tensor), got shape {tuple(x.shape)}")
        x = x.item()
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        raise CheckFailed(f"{what}: return a number, got {type(x).__name__}")
    return float(x)


# --- exercise 1: the Bradley–Terry loss -------------------------------------------------------------

def _bt_reference(rc: list[float], rr: list[float]) -> float:
    # -log σ(d) = log(1 + e^{-d}), written to stay finite for large |d|
    return sum(max(-d, 0.0) + math.log1p(math.exp(-abs(d))) for d in (a - b for a, b in zip(rc, rr))) / len(rc)


def check_bradley_terry_loss(bradley_terry_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                             quiet: bool = False) -> CheckResult:
    """Check ``bradley_terry_loss(r_chosen, r_rejected)`` -> the mean of ``-log σ(r_chosen - r_rejected)``."""
    rng = random.Random(11)
    cases = [("one pair, chosen ahead by 2", [2.0], [0.0]),
             ("three pairs, one of them ranked the wrong way", [1.0, -0.5, 0.3], [0.0, 0.5, 0.3]),
             ("a confident pair (margin 50): the loss must stay finite", [50.0, -50.0], [0.0, 0.0])]
    cases += [(f"random batch {k}", [rng.gauss(0, 2) for _ in range(8)], [rng.gauss(0, 2) for _ in range(8)])
              for k in range(3)]

    def body() -> None:
        for case, rc, rr in cases:
            got = _as_float(bradley_terry_loss(torch.tensor(rc), torch.tensor(rr)), case)
            want = _bt_reference(rc, rr)
            if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
                continue
            if math.isclose(got, _bt_reference(rr, rc), rel_tol=1e-4, abs_tol=1e-5):
                hint = "the sign is flipped: the chosen answer should have the higher probability σ(r_c - r_r)"
            elif math.isclose(got, want * len(rc), rel_tol=1e-4, abs_tol=1e-5) and len(rc) > 1:
                hint = "average over the pairs rather than summing"
            elif not math.isfinite(got):
                hint = "compute log σ stably (torch.nn.functional.logsigmoid) so large margins stay finite"
            else:
                hint = "work out one pair by hand: with r_c = r_r the model is unsure, so what must the loss be?"
            raise CheckFailed(f"{case}: you returned {got:.6g}; {hint}")
    return run_check("bradley_terry_loss", body, quiet)


# --- exercise 2: the exact posterior ----------------------------------------------------------------

def _posterior_reference(prior: list[float], rewards: list[float], beta: float) -> tuple[list[float], float]:
    unnorm = [p * math.exp(r / beta) for p, r in zip(prior, rewards)]
    z = sum(unnorm)
    return [u / z for u in unnorm], math.log(z)


def check_exact_posterior(exact_posterior: Callable[[torch.Tensor, torch.Tensor, float], tuple],
                          quiet: bool = False) -> CheckResult:
    """Check ``exact_posterior(prior_logprobs, rewards, beta)`` -> ``(posterior_logprobs, log_z)``
    with ``π*(x) = π0(x) exp(r(x)/β) / Z`` over an enumerated space."""
    rng = random.Random(5)
    cases = []
    for n, beta in ((4, 1.0), (10, 0.25), (10, 4.0), (50, 0.5)):
        w = [rng.random() + 0.05 for _ in range(n)]
        prior = [v / sum(w) for v in w]
        cases.append((f"{n} sequences, beta={beta}", prior, [rng.gauss(0, 1.5) for _ in range(n)], beta))

    def body() -> None:
        for case, prior, rewards, beta in cases:
            out = exact_posterior(torch.tensor(prior, dtype=torch.float64).log(),
                                  torch.tensor(rewards, dtype=torch.float64), beta)
            if not isinstance(out, tuple) or len(out) != 2:
                raise CheckFailed(f"{case}: return a pair (posterior log-probabilities, log Z)")
            logprobs, log_z = out
            logprobs = torch.as_tensor(logprobs, dtype=torch.float64).flatten()
            log_z = _as_float(log_z, case + " (log Z)")
            want, want_log_z = _posterior_reference(prior, rewards, beta)
            if logprobs.shape != (len(prior),):
                raise CheckFailed(f"{case}: return one log-probability per sequence ({len(prior)}), "
                                  f"got {tuple(logprobs.shape)}")
            probs = logprobs.exp().tolist()
            if not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                raise CheckFailed(f"{case}: your posterior sums to {sum(probs):.6f}; divide by Z")
            if all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(probs, want)):
                if math.isclose(log_z, want_log_z, rel_tol=1e-6, abs_tol=1e-9):
                    continue
                raise CheckFailed(f"{case}: the posterior is right but log Z = {log_z:.6g} is not; Z sums "
                                  "prior times evidence over every sequence")
            wrong_side, _ = _posterior_reference(prior, [r * beta * beta for r in rewards], beta)  # exp(β r)
            if all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(probs, wrong_side)):
                hint = ("beta is on the wrong side: the evidence is exp(r/β), so a larger β must pull the "
                        "posterior towards the prior")
            else:
                no_prior, _ = _posterior_reference([1.0] * len(prior), rewards, beta)
                hint = ("the prior is missing: multiply π0(x) by the evidence" if all(
                    math.isclose(a, b, rel_tol=1e-6) for a, b in zip(probs, no_prior))
                    else "work out one sequence by hand: its prior, its evidence at this β, and the normaliser")
            raise CheckFailed(f"{case}: wrong posterior; {hint}")
    return run_check("exact_posterior", body, quiet)


# --- exercise 4 (experimental): what a verifier's posterior costs in KL -----------------------------

def _verifier_reference(prior: list[float], passed: list[float], beta: float) -> dict[str, float]:
    """KL(π* ‖ π0) and the other numbers a student may report instead, in plain Python floats."""
    total = sum(prior)
    prior = [p / total for p in prior]             # float32 log-probabilities sum to 1 only nearly
    z = sum(p * math.exp(v / beta) for p, v in zip(prior, passed))
    post = [p * math.exp(v / beta) / z for p, v in zip(prior, passed)]
    q = sum(p for p, v in zip(prior, passed) if v)
    reward = sum(w * v for w, v in zip(post, passed))
    reverse = sum(p * math.log(p / w) for p, w in zip(prior, post) if p > 0)
    return {"kl": reward / beta - math.log(z), "reverse": reverse, "limit": -math.log(q),
            "no_log_z": reward / beta, "reward": reward}


def check_verifier_kl(kl, prior_logprobs: torch.Tensor, passed: torch.Tensor, beta: float,
                      quiet: bool = False) -> CheckResult:
    """Check a measured ``kl`` = ``KL(π* ‖ π0)`` of the posterior for the 0/1 reward ``passed`` at ``beta``.

    ``prior_logprobs`` (N,) are the prior's log-probabilities of every string of the space and
    ``passed`` (N,) the verifier's verdicts (1 or 0), as the chapter computes them.
    """
    def body() -> None:
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta > 0:
            raise CheckFailed(f"beta must be a positive number, got {beta!r}")
        prior = torch.as_tensor(prior_logprobs, dtype=torch.float64).flatten().exp().tolist()
        verdicts = torch.as_tensor(passed, dtype=torch.float64).flatten().tolist()
        if len(prior) != len(verdicts) or any(v not in (0.0, 1.0) for v in verdicts) or not any(verdicts):
            raise CheckFailed("pass the prior's log-probabilities and the verifier's 0/1 verdicts of the "
                              "same strings, with at least one string that passes")
        if kl is None:
            raise CheckUnsolved("no measurement yet: compute the posterior's KL at this beta and store it")
        got = _as_float(kl, "kl")
        ref = _verifier_reference(prior, verdicts, float(beta))

        def near(x: float) -> bool:
            return math.isclose(got, x, rel_tol=1e-3, abs_tol=1e-4)
        if near(ref["kl"]):
            return
        if got < 0:
            hint = "a KL divergence is never negative"
        elif near(ref["reverse"]):
            hint = "that is KL(π0 ‖ π*); the objective penalises KL(π* ‖ π0), an average under the posterior"
        elif near(ref["no_log_z"]):
            hint = "E[r]/β is only part of it: what else does log π*(x)/π0(x) contain?"
        elif near(ref["limit"]) and not near(ref["kl"]):
            hint = f"-log q is the β → 0 limit; at beta={beta} the posterior still keeps some failing strings"
        elif near(ref["reward"]):
            hint = "that looks like the expected reward; report the KL divergence from the prior"
        else:
            hint = "compute the exact posterior at this beta first, then its KL from the prior (an average under π*)"
        raise CheckFailed(f"you reported {got:.6g}; {hint}")
    return run_check("verifier_kl", body, quiet)
