"""The chapter 11 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import math

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
    assert exercises.check_bradley_terry_loss(stub).status == "unsolved"
    assert "NOT SOLVED YET" in capsys.readouterr().out
    assert not exercises.check_bradley_terry_loss(bt_flipped)
    assert "sign is flipped" in capsys.readouterr().out
    assert not exercises.check_bradley_terry_loss(bt_sum)
    assert "average" in capsys.readouterr().out
    assert not exercises.check_bradley_terry_loss(bt_no_log)


def test_exact_posterior_check(capsys):
    assert exercises.check_exact_posterior(exact_posterior)
    capsys.readouterr()
    assert exercises.check_exact_posterior(stub).status == "unsolved"
    assert not exercises.check_exact_posterior(posterior_beta_wrong_side)
    out = capsys.readouterr().out
    assert "NOT SOLVED YET exact_posterior" in out and "wrong side" in out
    for wrong, hint in ((posterior_unnormalised, "divide by Z"), (posterior_without_prior, "prior is missing"),
                        (posterior_bad_log_z, "log Z")):
        assert not exercises.check_exact_posterior(wrong)
        assert hint in capsys.readouterr().out


# --- exercise 4 (experimental): the KL of a verifier's posterior -----------------------------------

def _verifier_case():
    g = torch.Generator().manual_seed(4)
    prior = torch.softmax(torch.randn(40, generator=g, dtype=torch.float64), 0)
    passed = (torch.rand(40, generator=g, dtype=torch.float64) < 0.3).double()
    return prior.log().float(), passed      # float32, as the chapter's log-probabilities are


def test_verifier_kl_check(capsys):
    lp, passed = _verifier_case()
    beta = 0.05
    post = exact_posterior(lp.double(), passed, beta)[0]
    kl = (post.exp() * (post - lp.double())).sum()
    assert exercises.check_verifier_kl(kl.item(), lp, passed, beta)
    assert exercises.check_verifier_kl(kl, lp, passed, beta)            # a 0-d tensor is a number too
    capsys.readouterr()
    assert exercises.check_verifier_kl(None, lp, passed, beta).status == "unsolved"   # the starter cell
    assert "NOT SOLVED YET verifier_kl: no measurement yet" in capsys.readouterr().out
    reverse = (lp.double().exp() * (lp.double() - post)).sum().item()
    q = (lp.double().exp() * passed).sum().item()
    log_z = exact_posterior(lp.double(), passed, beta)[1].item()
    wrong = {"KL(π0 ‖ π*)": reverse, "what else does log π*(x)/π0(x) contain": kl.item() + log_z, "never negative": -kl.item()}
    for hint, value in wrong.items():
        assert not exercises.check_verifier_kl(value, lp, passed, beta)
        assert hint in capsys.readouterr().out
    # at a moderate beta the beta -> 0 limit -log q is a wrong answer, and it is named as such
    post1 = exact_posterior(lp.double(), passed, 1.0)[0]
    kl1 = (post1.exp() * (post1 - lp.double())).sum().item()
    assert exercises.check_verifier_kl(kl1, lp, passed, 1.0)
    assert not exercises.check_verifier_kl(-math.log(q), lp, passed, 1.0)
    assert "β → 0 limit" in capsys.readouterr().out
    assert not exercises.check_verifier_kl(kl1, lp, passed, 0.0)
