"""The chapter 11 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lmcore import exercises

# --- reference solutions (written as a student would, independently of the checks) ---------------

def bradley_terry_loss(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def exact_posterior(prior_logprobs, rewards, beta):
    unnorm = prior_logprobs + rewards / beta
    log_z = torch.logsumexp(unnorm, 0)
    return unnorm - log_z, log_z


def stub(*args, **kwargs):
    raise NotImplementedError("write your solution here")


# --- plausible wrong answers ----------------------------------------------------------------------

def bt_flipped(r_chosen, r_rejected):
    return -F.logsigmoid(r_rejected - r_chosen).mean()


def bt_sum(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).sum()


def bt_no_log(r_chosen, r_rejected):
    return (1 - torch.sigmoid(r_chosen - r_rejected)).mean()


def posterior_beta_wrong_side(prior_logprobs, rewards, beta):
    return exact_posterior(prior_logprobs, rewards * beta * beta, beta)    # exp(β·r)


def posterior_unnormalised(prior_logprobs, rewards, beta):
    unnorm = prior_logprobs + rewards / beta
    return unnorm, torch.logsumexp(unnorm, 0)


def posterior_without_prior(prior_logprobs, rewards, beta):
    return exact_posterior(torch.zeros_like(prior_logprobs), rewards, beta)


def posterior_bad_log_z(prior_logprobs, rewards, beta):
    logprobs, _ = exact_posterior(prior_logprobs, rewards, beta)
    return logprobs, torch.logsumexp(rewards / beta, 0)


def test_bradley_terry_check(capsys):
    assert exercises.check_bradley_terry_loss(bradley_terry_loss)
    assert not exercises.check_bradley_terry_loss(stub)
    assert "not implemented" in capsys.readouterr().out
    assert not exercises.check_bradley_terry_loss(bt_flipped)
    assert "sign is flipped" in capsys.readouterr().out
    assert not exercises.check_bradley_terry_loss(bt_sum)
    assert "average" in capsys.readouterr().out
    assert not exercises.check_bradley_terry_loss(bt_no_log)


def test_exact_posterior_check(capsys):
    assert exercises.check_exact_posterior(exact_posterior)
    capsys.readouterr()
    assert not exercises.check_exact_posterior(stub)
    assert not exercises.check_exact_posterior(posterior_beta_wrong_side)
    out = capsys.readouterr().out
    assert "not implemented" in out and "wrong side" in out
    for wrong, hint in ((posterior_unnormalised, "divide by Z"), (posterior_without_prior, "prior is missing"),
                        (posterior_bad_log_z, "log Z")):
        assert not exercises.check_exact_posterior(wrong)
        assert hint in capsys.readouterr().out
