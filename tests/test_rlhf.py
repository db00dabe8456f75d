"""lmcore.alignment.rlhf: exact posterior vs brute force, the J identity, training to the posterior, Bradley–Terry."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from _rlhf import enumerable_prior
from scipy import stats

import lmcore
from lmcore.alignment import rlhf

MAX_LEN, ALPHABET, BETA = 4, "abc", 1.0
REWARD = rlhf.LexiconReward({"c": 1.0, "ab": -1.0})

prior, space = enumerable_prior(MAX_LEN, ALPHABET)


def _cpu_config(steps: int, batch_size: int, lr: float = 3e-3) -> lmcore.TrainConfig:
    return lmcore.TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_steps=5,
                              weight_decay=0.0, device="cpu", progress=False, seed=0)


# --- sequences --------------------------------------------------------------------------------------

def test_enumerate_sequences_counts_and_refuses_large_spaces():
    texts = rlhf.enumerate_sequences("ab", 3)
    assert texts[:3] == ["", "a", "b"] and len(texts) == len(set(texts)) == 1 + 2 + 4 + 8
    with pytest.raises(ValueError, match="1,111,111 members"):
        rlhf.enumerate_sequences("0123456789", 6)
    with pytest.raises(ValueError, match="distinct"):
        rlhf.enumerate_sequences("aa", 2)


def test_encode_decode_round_trip(prior):
    _, tok = prior
    texts = ["", "ab", "abca"]
    rows = rlhf.encode_sequences(tok, texts, MAX_LEN)
    nl = tok.encode("\n")[0]
    assert rows[0].tolist()[:2] == [nl, nl] and rows[2, -1].item() == tok.encode("a")[0]   # full length: no eos
    assert rlhf.decode_sequences(tok, rows) == texts
    with pytest.raises(ValueError, match="more than max_len"):
        rlhf.encode_sequences(tok, ["abcab"], MAX_LEN)
    with pytest.raises(ValueError, match="end marker"):
        rlhf.encode_sequences(tok, ["a\nb"])


def test_sequence_logprobs_match_a_token_by_token_loop(prior, space):
    model, tok = prior
    texts, rows, lp0 = space
    nl = tok.encode("\n")[0]
    for i in [0, 1, 5, 17, 40, len(texts) - 1]:
        ids = [nl] + tok.encode(texts[i]) + ([] if len(texts[i]) == MAX_LEN else [nl])
        want = 0.0
        for t in range(1, len(ids)):     # run the model on each prefix on its own
            with torch.no_grad():
                logits, _ = model(torch.tensor([ids[:t]]))
            want += torch.log_softmax(logits[0, -1].double(), -1)[ids[t]].item()
        assert lp0[i].item() == pytest.approx(want, abs=1e-5)
    assert lp0.exp().sum().item() == pytest.approx(1.0, abs=1e-5)     # the space holds all the mass
    with torch.no_grad():
        chunked = rlhf.sequence_logprobs(model, rows, batch_size=7).double()
    torch.testing.assert_close(chunked, lp0, atol=1e-5, rtol=0)


def test_samples_follow_the_exact_probabilities(prior, space):
    model, tok = prior
    texts, _, lp0 = space
    g = torch.Generator().manual_seed(0)
    samples = rlhf.sample_sequences(model, tok, 4000, MAX_LEN, g)
    _chi_square_agrees(samples, texts, lp0.exp())


def _chi_square_agrees(samples, texts, probs, top=12):
    """Chi-square of the counts of the ``top`` most probable texts (and the rest pooled)."""
    order = probs.argsort(descending=True)[:top].tolist()
    counts = [sum(s == texts[i] for s in samples) for i in order]
    expected = [probs[i].item() * len(samples) for i in order]
    counts.append(len(samples) - sum(counts))
    expected.append(len(samples) - sum(expected))
    assert stats.chisquare(counts, expected).pvalue > 1e-3


# --- rewards ----------------------------------------------------------------------------------------

def test_lexicon_reward_counts_words_caps_and_length():
    r = rlhf.LexiconReward({"cat": 1.0, "dog": -0.5}, length_weight=0.01, whole_words=True)
    assert r.score("the cats like the cat. a catalogue.") == pytest.approx(2.0 + 0.01 * 35)
    capped = rlhf.LexiconReward({"cat": 1.0}, cap=1, whole_words=True)
    torch.testing.assert_close(capped(["the cat and the cat", "the dog", "cat"]),
                               torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    assert rlhf.LexiconReward({"ab": 2.0}).score("abab") == 4.0
    with pytest.raises(TypeError, match="list of texts"):
        r("one text")


def test_rewards_with_nan_are_refused():
    with pytest.raises(ValueError, match="NaN or inf.*index 1"):
        rlhf.compute_rewards(lambda texts: [0.0, float("nan")], ["a", "b"])
    with pytest.raises(ValueError, match="one number per text"):
        rlhf.compute_rewards(lambda texts: [0.0], ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        rlhf.exact_posterior(torch.log(torch.tensor([0.5, 0.5])), torch.tensor([1.0, float("nan")]), 1.0)


def test_bradley_terry_loss_is_the_label_likelihood():
    rc, rr = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    want = -sum(math.log(1 / (1 + math.exp(-(a - b)))) for a, b in zip(rc.tolist(), rr.tolist())) / 3
    assert rlhf.bradley_terry_loss(rc, rr).item() == pytest.approx(want, rel=1e-6)


def test_sampled_preferences_follow_bradley_terry():
    g = torch.Generator().manual_seed(0)
    n = 4000
    chosen, _ = rlhf.sample_preferences(["ccc"] * n, ["c"] * n, REWARD, g)     # r = 3 vs 1
    wins = sum(c == "ccc" for c in chosen)
    p = 1 / (1 + math.exp(-2.0))
    assert stats.binomtest(wins, n, p).pvalue > 1e-3


@pytest.mark.slow
def test_reward_model_recovers_the_hidden_ranking(prior):
    _, tok = prior
    hidden = rlhf.LexiconReward({"c": 1.0, "ab": -1.0}, length_weight=0.3)
    texts = rlhf.enumerate_sequences(ALPHABET, MAX_LEN)
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, len(texts), (3000,), generator=g).tolist()
    b = torch.randint(0, len(texts), (3000,), generator=g).tolist()
    chosen, rejected = rlhf.sample_preferences([texts[i] for i in a], [texts[i] for i in b], hidden, g)
    torch.manual_seed(0)
    rm = rlhf.train_reward_model(tok, chosen, rejected,
                                 lmcore.GPTConfig(vocab_size=tok.vocab_size, context_length=8, n_layer=1, n_head=2,
                                                  n_embd=32),
                                 _cpu_config(150, 64, lr=3e-3), max_len=MAX_LEN)
    learned = rm.score(tok, texts, MAX_LEN)
    rho = stats.spearmanr(learned.numpy(), hidden(texts).numpy()).statistic
    assert rho >= 0.9, rho


# --- the posterior ----------------------------------------------------------------------------------

def test_exact_posterior_matches_brute_force(space):
    texts, _, lp0 = space
    r = REWARD(texts)
    for beta in (0.3, 1.0, 4.0):
        post = rlhf.exact_posterior(lp0, r, beta)
        unnorm = [math.exp(lp0[i].item()) * math.exp(r[i].item() / beta) for i in range(len(texts))]
        z = sum(unnorm)
        assert post.log_z == pytest.approx(math.log(z), rel=1e-9)
        for i in (0, 3, 50, 100):
            assert math.exp(post.logprobs[i].item()) == pytest.approx(unnorm[i] / z, rel=1e-9)


def test_exact_posterior_refuses_a_partial_space(space):
    _, _, lp0 = space
    with pytest.raises(ValueError, match="sum to"):
        rlhf.exact_posterior(lp0[:-30], torch.zeros(len(lp0) - 30), 1.0)


@pytest.mark.parametrize("beta", [0, -1.0, float("nan"), float("inf")])
def test_beta_must_be_positive(beta, space):
    _, _, lp0 = space
    r = torch.zeros_like(lp0)
    with pytest.raises(ValueError, match="beta must be"):
        rlhf.exact_posterior(lp0, r, beta)
    with pytest.raises(ValueError, match="beta must be"):
        rlhf.rejection_sample(r, beta, 0.0)
    with pytest.raises(ValueError, match="beta must be"):
        rlhf.dpo_loss(r, r, r, r, beta)
    with pytest.raises(ValueError, match="beta=None"):
        rlhf.reinforce_loss(r[:3], r[:3], r[:3], beta)


def test_j_identity_for_a_random_policy(prior, space):
    _, tok = prior
    texts, rows, lp0 = space
    torch.manual_seed(1)
    random_policy = lmcore.GPT(lmcore.GPTConfig(vocab_size=tok.vocab_size, context_length=8, n_layer=1, n_head=1,
                                                n_embd=16))
    with torch.no_grad():
        lp = rlhf.sequence_logprobs(random_policy, rows).double()
    r = REWARD(texts)
    for beta in (0.5, 2.0):
        post = rlhf.exact_posterior(lp0, r, beta)
        j = rlhf.kl_regularised_objective(lp, lp0, r, beta).item()
        # independent: E[r] and KL written out as plain sums
        p = [math.exp(v) for v in lp.tolist()]
        j_direct = sum(pi * (ri - beta * (a - b)) for pi, ri, a, b in zip(p, r.tolist(), lp.tolist(), lp0.tolist()))
        assert j == pytest.approx(j_direct, abs=1e-9)
        # float32 model: Σp = 1 ± 1e-7
        assert j == pytest.approx(-beta * rlhf.kl_divergence(lp, post.logprobs).item() + beta * post.log_z, abs=1e-6)


@pytest.mark.slow
def test_exact_kl_training_reaches_the_posterior(prior, space):
    model, tok = prior
    texts, rows, lp0 = space
    post = rlhf.exact_posterior(lp0, REWARD(texts), BETA)
    assert rlhf.kl_divergence(lp0, post.logprobs).item() > 0.3     # the prior starts far away
    policy = copy.deepcopy(model)
    rlhf.finetune_kl(policy, model, tok, REWARD, BETA, _cpu_config(40, len(texts)), max_len=MAX_LEN,
                     exact_space=texts)
    with torch.no_grad():
        lp = rlhf.sequence_logprobs(policy, rows).double()
    assert rlhf.kl_divergence(lp, post.logprobs).item() <= 0.05
    assert all(not p.requires_grad for p in model.parameters())    # the reference stayed frozen


@pytest.mark.slow
def test_reinforce_and_dpo_move_towards_the_posterior(prior, space):
    model, tok = prior
    texts, rows, lp0 = space
    post = rlhf.exact_posterior(lp0, REWARD(texts), BETA)
    start = rlhf.kl_divergence(lp0, post.logprobs).item()
    pg = copy.deepcopy(model)
    rlhf.finetune_kl(pg, model, tok, REWARD, BETA, _cpu_config(40, 64), max_len=MAX_LEN)
    g = torch.Generator().manual_seed(0)
    first = rlhf.sample_sequences(model, tok, 3000, MAX_LEN, g)
    second = rlhf.sample_sequences(model, tok, 3000, MAX_LEN, g)
    chosen, rejected = rlhf.sample_preferences(first, second, REWARD, g)
    dpo = copy.deepcopy(model)
    rlhf.finetune_dpo(dpo, model, tok, chosen, rejected, BETA, _cpu_config(60, 64), max_len=MAX_LEN)
    for policy in (pg, dpo):
        with torch.no_grad():
            lp = rlhf.sequence_logprobs(policy, rows).double()
        assert rlhf.kl_divergence(lp, post.logprobs).item() < start / 3


def test_reinforce_gradient_is_unbiased():
    """On a tabular policy the mean REINFORCE gradient equals the exact gradient of J."""
    torch.manual_seed(0)
    logits = torch.randn(5, dtype=torch.float64, requires_grad=True)
    lp0 = torch.log_softmax(torch.randn(5, dtype=torch.float64), 0)
    r = torch.tensor([1.0, -0.5, 2.0, 0.0, 0.3], dtype=torch.float64)
    beta = 0.7
    exact = torch.autograd.grad(rlhf.kl_regularised_objective(torch.log_softmax(logits, 0), lp0, r, beta), logits)[0]
    g = torch.Generator().manual_seed(0)
    x = torch.multinomial(torch.softmax(logits, 0).detach(), 200_000, replacement=True, generator=g)
    lp = torch.log_softmax(logits, 0)[x]
    estimate = -torch.autograd.grad(rlhf.reinforce_loss(lp, lp0[x], r[x], beta), logits)[0]
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)
    value = rlhf.reinforce_loss(lp, lp0[x], r[x], beta).item()     # the loss's value estimates -J
    assert -value == pytest.approx(rlhf.kl_regularised_objective(torch.log_softmax(logits, 0), lp0, r, beta).item(),
                                   abs=0.02)


def test_dpo_loss_formula():
    lc, lr, rc, rr = (torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.5))
    margin = (-1.0 + 1.5) - (-2.0 + 1.5)
    assert rlhf.dpo_loss(lc, lr, rc, rr, 0.5).item() == pytest.approx(math.log1p(math.exp(-0.5 * margin)))


# --- sampling with the prior alone ------------------------------------------------------------------

def test_rejection_samples_follow_the_posterior(prior, space):
    model, tok = prior
    texts, _, lp0 = space
    r_all = REWARD(texts)
    beta, r_max = 1.0, float(r_all.max())
    post = rlhf.exact_posterior(lp0, r_all, beta)
    g = torch.Generator().manual_seed(1)
    samples = rlhf.sample_sequences(model, tok, 8000, MAX_LEN, g)
    accepted = rlhf.rejection_sample(REWARD(samples), beta, r_max, g)
    kept = [s for s, a in zip(samples, accepted.tolist()) if a]
    rate = accepted.double().mean().item()
    assert rate == pytest.approx(math.exp(post.log_z - r_max / beta), abs=0.015)    # Z / M
    _chi_square_agrees(kept, texts, post.logprobs.exp())
    with pytest.raises(ValueError, match="upper bound"):
        rlhf.rejection_sample(r_all, beta, r_max - 1)


def test_importance_weights_ess_and_best_of_n():
    r = torch.tensor([0.0, 1.0, 2.0, 3.0, -1.0, 5.0])
    w = rlhf.importance_weights(r, 2.0)
    torch.testing.assert_close(w, torch.exp(r.double() / 2) / torch.exp(r.double() / 2).sum())
    assert rlhf.effective_sample_size(torch.ones(10)) == pytest.approx(10.0)
    assert rlhf.effective_sample_size(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert rlhf.best_of_n(r, 3).tolist() == [2, 5]
    assert rlhf.best_of_n(r, 4).tolist() == [3]
    g = torch.Generator().manual_seed(0)
    idx = rlhf.importance_resample(r, 0.05, 50, g)
    assert set(idx.tolist()) == {5}      # a tiny beta puts (almost) all weight on the best sample


# --- bad input ---------------------------------------------------------------------------------------

def test_mismatched_tokenizers_and_shared_policy_are_refused(prior, space):
    model, tok = prior
    texts = space[0]
    other = lmcore.CharTokenizer().train("\nabd")
    cfg = _cpu_config(1, len(texts))
    with pytest.raises(ValueError, match="differ at id 3"):
        rlhf.finetune_kl(copy.deepcopy(model), model, tok, REWARD, BETA, cfg, MAX_LEN, texts,
                         reference_tokenizer=other)
    with pytest.raises(ValueError, match="differ"):
        rlhf.check_same_tokenizer(tok, lmcore.CharTokenizer().train("\nabcd"))
    with pytest.raises(ValueError, match="vocab_size"):
        rlhf.finetune_dpo(copy.deepcopy(model), model, other.__class__().train("\nab"), ["a"], ["b"], BETA, cfg)
    with pytest.raises(ValueError, match="same object"):
        rlhf.finetune_kl(model, model, tok, REWARD, BETA, cfg, MAX_LEN, texts)
    with pytest.raises(ValueError, match="batch_size=121"):
        rlhf.finetune_kl(copy.deepcopy(model), model, tok, REWARD, BETA, _cpu_config(1, 8), MAX_LEN, texts)
