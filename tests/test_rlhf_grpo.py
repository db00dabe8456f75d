"""lmcore.alignment.rlhf: GRPO's advantage and loss against direct computations, RFT, prompted DPO, step history,
and the 0/1 reward's closed-form posterior against the enumerated one."""
from __future__ import annotations

import copy
import math
import random
import statistics

import pytest
import torch
from _rlhf import enumerable_prior

import lmcore
from lmcore.alignment import rlhf

MAX_LEN = 3

prior, space = enumerable_prior(MAX_LEN)


def _config(steps: int, batch_size: int, lr: float = 3e-3) -> lmcore.TrainConfig:
    return lmcore.TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_steps=2,
                              weight_decay=0.0, device="cpu", progress=False, seed=0)


def _exact(model, rows):
    with torch.no_grad():
        return rlhf.sequence_logprobs(model, rows).double()


def _cycle(texts):
    return [float(t in ("abc", "bca", "cab")) for t in texts]


# --- group advantages and the GRPO loss -------------------------------------------------------------

def test_group_advantages_match_a_direct_computation():
    rng = random.Random(0)
    for group_size in (2, 3, 8):
        rewards = [rng.choice([0.0, 1.0, rng.gauss(0, 2)]) for _ in range(4 * group_size)]
        want = []
        for k in range(0, len(rewards), group_size):
            grp = rewards[k:k + group_size]
            mean, sd = statistics.mean(grp), statistics.stdev(grp)     # sample standard deviation
            want += [(r - mean) / (sd + 1e-4) for r in grp]
        got = rlhf.group_advantages(torch.tensor(rewards, dtype=torch.float64), group_size)
        assert got.tolist() == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_group_advantages_of_a_uniform_group_are_zero_and_bad_shapes_are_refused():
    adv = rlhf.group_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]), 3)
    assert adv[:3].tolist() == [0.0, 0.0, 0.0] and adv[3:].abs().min() > 0.5
    with pytest.raises(ValueError, match="multiple of group_size=4"):
        rlhf.group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="group_size"):
        rlhf.group_advantages(torch.zeros(6), 1)
    with pytest.raises(TypeError, match="rewards must be a torch.Tensor"):
        rlhf.group_advantages([0.0, 1.0], 2)


def test_grpo_loss_gradient_matches_the_formula():
    torch.manual_seed(0)
    logp = torch.randn(8, dtype=torch.float64, requires_grad=True)
    logp_ref = torch.randn(8, dtype=torch.float64)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 1.0], dtype=torch.float64)
    beta = 0.3
    loss = rlhf.grpo_loss(logp, logp_ref, rewards, 4, beta)
    loss.backward()
    adv = rlhf.group_advantages(rewards, 4)
    # d/dlogp of -A·logp/N + β (e^{ref-logp} - (ref - logp) - 1)/N
    want = (-adv + beta * (1 - torch.exp(logp_ref - logp.detach()))) / 8
    assert torch.allclose(logp.grad, want, atol=1e-12)
    ratio = logp_ref - logp.detach()
    assert loss.item() == pytest.approx((-(adv * logp.detach()).mean() + beta * (ratio.exp() - ratio - 1).mean()).item())
    no_kl = rlhf.grpo_loss(logp.detach(), logp_ref, rewards, 4, None)
    assert no_kl.item() == pytest.approx(-(adv * logp.detach()).mean().item())
    with pytest.raises(ValueError, match="one shape"):
        rlhf.grpo_loss(logp.detach()[:4], logp_ref, rewards, 4, beta)


# --- training ---------------------------------------------------------------------------------------

def test_finetune_grpo_learns_a_verifiable_reward(prior, space):
    model, tok = prior
    texts, rows, _ = space
    passed = torch.tensor(_cycle(texts), dtype=torch.float64)
    before = (_exact(model, rows).exp() * passed).sum().item()
    policy = copy.deepcopy(model)
    torch.manual_seed(0)
    objective = rlhf.finetune_grpo(policy, model, tok, _cycle, 0.04, _config(15, 32), group_size=8, max_len=MAX_LEN)
    after = (_exact(policy, rows).exp() * passed).sum().item()
    assert after > before + 0.2, (before, after)
    assert len(objective.history) == 15 and set(objective.history[0]) == {"reward", "kl"}
    with pytest.raises(ValueError, match="multiple of group_size"):
        rlhf.finetune_grpo(copy.deepcopy(model), model, tok, _cycle, 0.04, _config(1, 12), group_size=8,
                           max_len=MAX_LEN)


def test_finetune_rft_raises_the_likelihood_of_its_texts(prior, space):
    model, tok = prior
    texts, rows, _ = space
    keep = ["abc", "bca"]
    idx = [texts.index(t) for t in keep]
    policy = copy.deepcopy(model)
    rlhf.finetune_rft(policy, tok, keep, _config(20, 8), max_len=MAX_LEN)
    assert _exact(policy, rows)[idx].exp().sum() > _exact(model, rows)[idx].exp().sum() + 0.3
    assert not policy.training
    with pytest.raises(ValueError, match="empty"):
        rlhf.finetune_rft(policy, tok, [], _config(1, 8))


def test_kl_objective_records_one_history_entry_per_step(prior, space):
    model, tok = prior
    texts, _, _ = space
    reward = rlhf.LexiconReward({"c": 1.0})
    trainer = rlhf.finetune_kl(copy.deepcopy(model), model, tok, reward, 1.0, _config(4, len(texts)),
                               max_len=MAX_LEN, exact_space=texts)
    history = trainer.model.history
    assert len(history) == 4 and history[0]["kl"] == pytest.approx(0.0, abs=1e-5)


# --- DPO with prompts -------------------------------------------------------------------------------

def test_prompted_dpo_scores_the_reply_given_the_prompt(prior, space):
    model, tok = prior
    texts, rows, _ = space
    torch.manual_seed(1)
    policy = copy.deepcopy(model)
    with torch.no_grad():                     # move the policy off the reference, so the loss is not log 2
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    chosen, rejected = ["ab", "cc", "b"], ["aa", "cab", "bca"]
    objective = rlhf.DPOObjective(policy, model, tok, 0.5, prompt_len=1)
    c_rows = rlhf.encode_sequences(tok, chosen + rejected, MAX_LEN)
    with torch.no_grad():
        _, loss = objective(c_rows[:3], c_rows[3:])
    # reference: log π(y | x) = log π(xy) - log Σ_{y'} π(xy'), from the enumerated joint

    def conditional(lp, t):
        same = [i for i, s in enumerate(texts) if s[:1] == t[0]]
        return lp[texts.index(t)] - lp[same].logsumexp(0)
    lp, lp0 = _exact(policy, rows), _exact(model, rows)
    margins = [(conditional(lp, c) - conditional(lp0, c)) - (conditional(lp, r) - conditional(lp0, r))
               for c, r in zip(chosen, rejected)]
    want = sum(-math.log(1 / (1 + math.exp(-0.5 * m.item()))) for m in margins) / 3
    assert loss.item() == pytest.approx(want, abs=1e-4)


def test_finetune_dpo_refuses_pairs_with_different_prompts(prior):
    model, tok = prior
    with pytest.raises(ValueError, match="different prompts"):
        rlhf.finetune_dpo(copy.deepcopy(model), model, tok, ["ab", "ca"], ["ac", "ba"], 1.0, _config(1, 2),
                          max_len=MAX_LEN, prompt_len=1)
    with pytest.raises(ValueError, match="nothing after its prompt"):
        rlhf.finetune_dpo(copy.deepcopy(model), model, tok, ["abc"], ["ab"], 1.0, _config(1, 1),
                          max_len=MAX_LEN, prompt_len=3)
    with pytest.raises(ValueError, match="prompt_len"):
        rlhf.DPOObjective(copy.deepcopy(model), model, tok, 1.0, prompt_len=-1)


def test_progress_true_draws_a_fine_tuning_bar_and_the_switch_turns_it_off(prior, space, monkeypatch, capsys):
    model, tok = prior
    texts, _, _ = space
    reward = rlhf.LexiconReward({"c": 1.0})
    config = lmcore.TrainConfig(max_steps=2, batch_size=len(texts), lr=1e-3, warmup_steps=1, weight_decay=0.0,
                                device="cpu", progress=True, seed=0)
    monkeypatch.setenv("LMCORE_PROGRESS", "1")
    rlhf.finetune_kl(copy.deepcopy(model), model, tok, reward, 1.0, config, max_len=MAX_LEN, exact_space=texts)
    assert "fine-tuning" in capsys.readouterr().err
    monkeypatch.setenv("LMCORE_PROGRESS", "0")
    rlhf.finetune_kl(copy.deepcopy(model), model, tok, reward, 1.0, config, max_len=MAX_LEN, exact_space=texts)
    assert "fine-tuning" not in capsys.readouterr().err


def _passes(texts):
    # a 0/1 verifier on the enumerable space: the string contains a "c"
    return torch.tensor([float("c" in t) for t in texts], dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.05, 0.25, 1.0, 4.0])
def test_binary_posterior_matches_the_enumerated_posterior(space, beta):
    texts, _, lp0 = space
    lp0 = lp0 - torch.logsumexp(lp0, 0)         # float32 scores sum to one only within 1e-6
    v = _passes(texts)
    p = float((lp0.exp() * v).sum())
    assert 0.05 < p < 0.95                      # both classes carry mass: the check is not trivial
    post = rlhf.exact_posterior(lp0, v, beta)
    closed = rlhf.binary_posterior(p, beta)
    assert closed.reward == pytest.approx(float((post.logprobs.exp() * v).sum()), abs=1e-9)
    assert closed.kl == pytest.approx(float(rlhf.kl_divergence(post.logprobs, lp0)), abs=1e-9)
    assert closed.log_z == pytest.approx(post.log_z, abs=1e-9)
    # the frontier: the posterior's KL is the Bernoulli KL of its pass rate against the prior's
    q = closed.reward
    assert closed.kl == pytest.approx(q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p)), abs=1e-9)


def test_a_policy_that_reshuffles_inside_a_class_pays_more_kl_than_the_posterior(space):
    # any other policy with the posterior's pass rate is further from the prior
    texts, _, lp0 = space
    lp0 = lp0 - torch.logsumexp(lp0, 0)
    v = _passes(texts)
    post = rlhf.exact_posterior(lp0, v, 0.5)
    closed = rlhf.binary_posterior(float((lp0.exp() * v).sum()), 0.5)
    probs = post.logprobs.exp()
    passing = v.bool()
    other = probs.clone()
    best = int(torch.where(passing, probs, torch.zeros_like(probs)).argmax())
    other[passing] = 0.0
    other[best] = probs[passing].sum()          # all the passing mass on one string: same pass rate
    assert float((other * v).sum()) == pytest.approx(closed.reward, abs=1e-12)
    kl_other = float((other[other > 0] * (other[other > 0].log() - lp0[other > 0])).sum())
    assert kl_other > closed.kl + 0.1


def test_binary_posterior_edges_and_bad_arguments():
    assert rlhf.binary_posterior(0.0, 0.5) == (0.0, 0.0, 0.0)
    assert rlhf.binary_posterior(1.0, 0.5) == (1.0, 0.0, 2.0)
    tiny = rlhf.binary_posterior(0.25, 1e-3)           # e^(1/beta) would overflow a float
    assert tiny.reward == pytest.approx(1.0) and tiny.kl == pytest.approx(-math.log(0.25), abs=1e-9)
    assert rlhf.binary_posterior(0.25, 1e6).kl == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="p must be"):
        rlhf.binary_posterior(1.5, 1.0)
    with pytest.raises(TypeError, match="p must be"):
        rlhf.binary_posterior("0.5", 1.0)
    with pytest.raises(ValueError, match="beta"):
        rlhf.binary_posterior(0.5, 0.0)
