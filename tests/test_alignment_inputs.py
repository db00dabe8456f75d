"""Bad input to ``lmcore.alignment`` (the chat template, SFT, RLHF) and ``lmcore.scaling`` gets a
clear ``ValueError`` / ``TypeError`` that names the argument, at the call: never a silent result
(a broadcast, a NaN, an empty answer) or a failure at some later training step.
"""
from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import pytest
import torch

from lmcore import GPT, CharTokenizer, GPTConfig, TrainConfig, data, scaling
from lmcore._checks import ArgumentTypeError
from lmcore.alignment import ChatEncoding, ChatTemplate, exact_match, generate_replies, rlhf, sft_batch_fn, sft_example

TOK = CharTokenizer().train("\nabc")
torch.manual_seed(0)
PRIOR = GPT(GPTConfig(vocab_size=4, context_length=12, n_layer=1, n_head=1, n_embd=8)).eval()
CTOK = CharTokenizer().train(data.ToyLanguage().alphabet)
CHAT = ChatTemplate(CTOK)
CGPT = GPT(GPTConfig(vocab_size=CTOK.vocab_size, context_length=64, n_layer=1, n_head=1, n_embd=8)).eval()
CONV = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
ENCS = [CHAT.encode(CONV), CHAT.encode([{"role": "user", "content": "what"}, {"role": "assistant", "content": "no"}])]
REWARD = rlhf.LexiconReward({"a": 1.0})
LP = torch.log_softmax(torch.randn(5, dtype=torch.float64), 0)
R5 = torch.randn(5, dtype=torch.float64)
CFG = GPTConfig(vocab_size=4, context_length=8, n_layer=1, n_head=1, n_embd=8)
TC = TrainConfig(max_steps=1, batch_size=2, progress=False, device="cpu")
NAN, INF = float("nan"), float("inf")


def _objective(**kw):
    return rlhf.KLRegularisedObjective(copy.deepcopy(PRIOR), PRIOR, TOK, kw.pop("reward", REWARD), 1.0, **kw)


@lru_cache(maxsize=1)
def _chinchilla():
    N = np.array([1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6, 1e5, 4e5])
    D = np.array([1e7, 2e7, 1e7, 4e7, 2e7, 8e7, 8e7, 4e7])
    return scaling.fit_chinchilla(N, D, 1.7 + 400 / N ** 0.34 + 400 / D ** 0.28, n_bootstrap=0)


# (call, exception, a pattern the message must match: the argument's name)
BAD = {
    # --- the chat template and SFT
    "role_markers list": (lambda: ChatTemplate(CTOK, role_markers=["a", "b", "c"]), ArgumentTypeError,
                          r"\brole_markers\b"),
    "end_marker empty": (lambda: ChatTemplate(CTOK, end_marker=""), ValueError, r"\bend_marker\b"),
    "end_marker int": (lambda: ChatTemplate(CTOK, end_marker=5), ArgumentTypeError, r"\bend_marker\b"),
    "sft_example str": (lambda: sft_example("x"), ArgumentTypeError, r"\bencoding\b"),
    "sft_example None": (lambda: sft_example(None), ArgumentTypeError, r"\bencoding\b"),
    "sft_example float ids": (lambda: sft_example(ChatEncoding([1.5, 2.5, 3.5], [False, True, True])),
                              ArgumentTypeError, r"encoding\.ids\b"),
    "sft_example negative ids": (lambda: sft_example(ChatEncoding([-1, 2, 3], [False, True, True])),
                                 ValueError, r"encoding\.ids\b"),
    "sft_example int mask": (lambda: sft_example(ChatEncoding([1, 2, 3], [0, 1, 1])), ArgumentTypeError,
                             r"encoding\.assistant_mask\b"),
    "sft pad_id -100": (lambda: sft_batch_fn(ENCS, None, 2, 64, pad_id=-100), ValueError, r"\bpad_id\b"),
    "sft pad_id float": (lambda: sft_batch_fn(ENCS, None, 2, 64, pad_id=1.5), ArgumentTypeError, r"\bpad_id\b"),
    "sft pad_id None": (lambda: sft_batch_fn(ENCS, None, 2, 64, pad_id=None), ArgumentTypeError, r"\bpad_id\b"),
    "sft seq_len str": (lambda: sft_batch_fn(ENCS, None, 2, "64", pad_id=0), ArgumentTypeError, r"\bseq_len\b"),
    "sft one encoding": (lambda: sft_batch_fn(ENCS[0], None, 2, 64, pad_id=0), ArgumentTypeError, r"\btrain\b"),
    "sft train None": (lambda: sft_batch_fn(None, None, 2, 64, pad_id=0), ArgumentTypeError, r"\btrain\b"),
    "sft bad val item": (lambda: sft_batch_fn(ENCS, [ENCS[0], ChatEncoding([1, 2], [True, False])], 2, 64, pad_id=0),
                         ValueError, r"val\[1\]: .*no assistant"),
    "sft unknown split": (lambda: sft_batch_fn(ENCS, None, 2, 64, pad_id=0)("test", None), ValueError, r"\bsplit\b"),
    "sft generator": (lambda: sft_batch_fn(ENCS, None, 2, 64, pad_id=0)("train", "g"), ArgumentTypeError,
                      r"\bgenerator\b"),
    "replies model": (lambda: generate_replies("m", CHAT, [CONV]), ArgumentTypeError, r"\bmodel\b"),
    "replies template": (lambda: generate_replies(CGPT, "t", [CONV]), ArgumentTypeError, r"\btemplate\b"),
    "replies str": (lambda: generate_replies(CGPT, CHAT, "hi"), ArgumentTypeError, r"\bconversations\b"),
    "replies one conversation": (lambda: generate_replies(CGPT, CHAT, CONV), ArgumentTypeError, r"\bconversations\b"),
    "replies bad message": (lambda: generate_replies(CGPT, CHAT, [CONV, [{"role": "bot", "content": "x"}]]),
                            ValueError, r"conversations\[1\]: messages\[0\]"),
    "replies other vocabulary": (lambda: generate_replies(PRIOR, CHAT, [CONV]), ValueError, r"\bvocab_size\b"),
    "exact_match no answer": (lambda: exact_match(CGPT, CHAT, [CONV, CONV[:1]]), ValueError,
                              r"conversations\[1\] has no assistant"),
    # --- RLHF: sequences and rewards
    "encode tokenizer": (lambda: rlhf.encode_sequences("x", ["ab"]), ArgumentTypeError, r"\btokenizer\b"),
    "encode max_len float": (lambda: rlhf.encode_sequences(TOK, ["a"], max_len=1.5), ArgumentTypeError,
                             r"\bmax_len\b"),
    "encode max_len 0": (lambda: rlhf.encode_sequences(TOK, [""], max_len=0), ValueError, r"\bmax_len\b"),
    "encode bos int": (lambda: rlhf.encode_sequences(TOK, ["a"], bos=5), ArgumentTypeError, r"\bbos\b"),
    "decode list": (lambda: rlhf.decode_sequences(TOK, [[0, 1, 0]]), ArgumentTypeError, r"\brows\b"),
    "decode 1-D": (lambda: rlhf.decode_sequences(TOK, torch.tensor([0, 1, 0])), ArgumentTypeError, r"\brows\b"),
    "decode float": (lambda: rlhf.decode_sequences(TOK, torch.tensor([[0.0, 1.0]])), ArgumentTypeError, r"\brows\b"),
    "decode out of vocabulary": (lambda: rlhf.decode_sequences(TOK, torch.tensor([[0, 9, 0]])), ValueError,
                                 r"rows\[0, 1\] = 9"),
    "sample model": (lambda: rlhf.sample_sequences("m", TOK, 2, 3), ArgumentTypeError, r"\bmodel\b"),
    "sample other vocabulary": (lambda: rlhf.sample_sequences(CGPT, TOK, 2, 3), ValueError, r"\bvocab_size\b"),
    "sample max_len > context": (lambda: rlhf.sample_sequences(PRIOR, TOK, 2, 20), ValueError,
                                 r"\bmax_len\b.*context_length"),
    "sample generator": (lambda: rlhf.sample_sequences(PRIOR, TOK, 2, 3, "g"), ArgumentTypeError, r"\bgenerator\b"),
    "prior alphabet newline": (lambda: rlhf.train_tiny_prior(alphabet="a\nb", steps=1), ValueError, r"\balphabet\b"),
    "prior alphabet empty": (lambda: rlhf.train_tiny_prior(alphabet="", steps=1), ValueError, r"\balphabet\b"),
    "prior max_len 0": (lambda: rlhf.train_tiny_prior(max_len=0, steps=1), ValueError, r"\bmax_len\b"),
    "prior steps 0": (lambda: rlhf.train_tiny_prior(steps=0), ValueError, r"\bsteps\b"),
    "reward ints": (lambda: REWARD([1, 2]), ArgumentTypeError, r"\btexts\b"),
    "reward score int": (lambda: REWARD.score(5), ArgumentTypeError, r"\btext\b"),
    "compute_rewards texts int": (lambda: rlhf.compute_rewards(REWARD, 5), ArgumentTypeError, r"\btexts\b"),
    "compute_rewards strings out": (lambda: rlhf.compute_rewards(lambda t: ["x"], ["a"]), ArgumentTypeError,
                                    r"reward\(texts\) must return numbers"),
    "preferences first int": (lambda: rlhf.sample_preferences(5, 5, REWARD), ArgumentTypeError, r"\bfirst\b"),
    "preferences generator": (lambda: rlhf.sample_preferences(["a"], ["b"], REWARD, "g"), ArgumentTypeError,
                              r"\bgenerator\b"),
    "bradley_terry lists": (lambda: rlhf.bradley_terry_loss([1.0], [0.0]), ArgumentTypeError, r"\br_chosen\b"),
    "bradley_terry empty (NaN)": (lambda: rlhf.bradley_terry_loss(R5[:0], R5[:0]), ValueError, r"\br_chosen\b"),
    "RewardModel config": (lambda: rlhf.RewardModel("cfg"), ArgumentTypeError, r"\bconfig\b"),
    "reward model vocabulary": (lambda: rlhf.train_reward_model(TOK, ["a"], ["b"], GPTConfig(
        vocab_size=2, context_length=8, n_layer=1, n_head=1, n_embd=8), TC), ValueError, r"\bvocab_size\b"),
    "reward model context": (lambda: rlhf.train_reward_model(TOK, ["aaaaaaaaaaaa"], ["b"], CFG, TC), ValueError,
                             r"\bchosen and rejected\b.*context_length"),
    # --- RLHF: the posterior and sampling with the prior
    "posterior prior NaN": (lambda: rlhf.exact_posterior(torch.tensor([NAN, 0.0]), torch.tensor([0.0, 1.0]), 1.0),
                            ValueError, r"\bprior_logprobs\b"),
    "posterior atol negative": (lambda: rlhf.exact_posterior(LP, R5, 1.0, atol=-1), ValueError, r"\batol\b"),
    "posterior atol NaN": (lambda: rlhf.exact_posterior(LP, R5, 1.0, atol=NAN), ValueError, r"\batol\b"),
    "posterior strings": (lambda: rlhf.exact_posterior(LP, ["a"] * 5, 1.0), ArgumentTypeError, r"\brewards\b"),
    "kl shapes (broadcast)": (lambda: rlhf.kl_divergence(LP, LP[:1]), ValueError, r"\blogq \(1,\)"),
    "kl 2-D against 1-D": (lambda: rlhf.kl_divergence(LP[None].expand(3, 5), LP), ValueError, r"\blogp \(3, 5\)"),
    "kl lists": (lambda: rlhf.kl_divergence([0.0], [0.0]), ArgumentTypeError, r"\blogp\b"),
    "entropy list": (lambda: rlhf.entropy([0.0]), ArgumentTypeError, r"\blogp\b"),
    "objective shapes": (lambda: rlhf.kl_regularised_objective(LP, LP, R5[:1], 1.0), ValueError, r"\brewards \(1,\)"),
    "rejection r_max NaN": (lambda: rlhf.rejection_sample(R5, 1.0, NAN), ValueError, r"\br_max\b"),
    "rejection r_max inf": (lambda: rlhf.rejection_sample(R5, 1.0, INF), ValueError, r"\br_max\b"),
    "rejection r_max str": (lambda: rlhf.rejection_sample(R5, 1.0, "1"), ArgumentTypeError, r"\br_max\b"),
    "rejection no rewards": (lambda: rlhf.rejection_sample(torch.tensor([]), 1.0, 1.0), ValueError, r"\brewards\b"),
    "rejection rewards 2-D": (lambda: rlhf.rejection_sample(R5.view(1, 5), 1.0, 10.0), ValueError, r"\brewards\b"),
    "rejection generator": (lambda: rlhf.rejection_sample(R5, 1.0, 10.0, "g"), ArgumentTypeError, r"\bgenerator\b"),
    "weights no rewards": (lambda: rlhf.importance_weights(torch.tensor([]), 1.0), ValueError, r"\brewards\b"),
    "weights rewards 2-D": (lambda: rlhf.importance_weights(R5.view(5, 1), 1.0), ValueError, r"\brewards\b"),
    "ess empty (NaN)": (lambda: rlhf.effective_sample_size([]), ValueError, r"\bweights\b"),
    "ess negative": (lambda: rlhf.effective_sample_size([0.5, -0.5, 1.0]), ValueError, r"\bweights\b.*>= 0"),
    "ess NaN": (lambda: rlhf.effective_sample_size([0.5, NAN]), ValueError, r"\bweights\b.*finite"),
    "ess all zero": (lambda: rlhf.effective_sample_size([0.0, 0.0]), ValueError, r"\bweights\b.*not all 0"),
    "ess str": (lambda: rlhf.effective_sample_size("ab"), ArgumentTypeError, r"\bweights\b"),
    "resample no rewards": (lambda: rlhf.importance_resample(torch.tensor([]), 1.0, 2), ValueError, r"\brewards\b"),
    "resample generator": (lambda: rlhf.importance_resample(R5, 1.0, 2, "g"), ArgumentTypeError, r"\bgenerator\b"),
    "best_of_n rewards 2-D": (lambda: rlhf.best_of_n(R5.view(5, 1).expand(5, 2), 2), ValueError, r"\brewards\b"),
    # --- RLHF: the objectives and fine-tuning
    "reinforce 0-d": (lambda: rlhf.reinforce_loss(*[torch.tensor(1.0)] * 3, 1.0), ValueError, r"\blogp\b"),
    "reinforce lists": (lambda: rlhf.reinforce_loss([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], 1.0), ArgumentTypeError,
                        r"\blogp\b"),
    "dpo shapes (broadcast)": (lambda: rlhf.dpo_loss(R5, R5[:1], R5, R5, 1.0), ValueError, r"\blogp_rejected \(1,\)"),
    "dpo ref shapes": (lambda: rlhf.dpo_loss(R5, R5, R5[:1], R5, 1.0), ValueError, r"\bref_chosen \(1,\)"),
    "dpo lists": (lambda: rlhf.dpo_loss([1.0], [1.0], [1.0], [1.0], 1.0), ArgumentTypeError, r"\blogp_chosen\b"),
    "dpo empty (NaN)": (lambda: rlhf.dpo_loss(*[R5[:0]] * 4, 1.0), ValueError, r"\blogp_chosen\b"),
    "objective reward": (lambda: _objective(reward="r", max_len=3), TypeError, r"\breward\b"),
    "objective max_len negative": (lambda: _objective(max_len=-1), ValueError, r"\bmax_len\b"),
    "objective max_len float": (lambda: _objective(max_len=2.5), ArgumentTypeError, r"\bmax_len\b"),
    "objective max_len > context": (lambda: _objective(max_len=20), ValueError, r"\bmax_len\b.*context_length"),
    "objective exact_space empty": (lambda: _objective(max_len=2, exact_space=[]), ValueError, r"\bexact_space\b"),
    "objective exact_space str": (lambda: _objective(max_len=2, exact_space="ab"), ArgumentTypeError,
                                  r"\bexact_space\b"),
    "objective batch_size 1": (lambda: _objective(max_len=3).batch_fn(1), ValueError, r"\bbatch_size\b"),
    "objective batch_size float": (lambda: _objective(max_len=3).batch_fn(2.5), ArgumentTypeError, r"\bbatch_size\b"),
    "finetune_kl config": (lambda: rlhf.finetune_kl(copy.deepcopy(PRIOR), PRIOR, TOK, REWARD, 1.0, "c", max_len=3),
                           TypeError, r"\bconfig\b"),
    "finetune_dpo config": (lambda: rlhf.finetune_dpo(copy.deepcopy(PRIOR), PRIOR, TOK, ["a"], ["b"], 1.0, "c"),
                            TypeError, r"\bconfig\b"),
    "finetune_dpo context": (lambda: rlhf.finetune_dpo(copy.deepcopy(PRIOR), PRIOR, TOK, ["a" * 20], ["b"], 1.0, TC),
                             ValueError, r"\bchosen and rejected\b.*context_length"),
    "kl estimate reward": (lambda: rlhf.sample_kl_estimate(PRIOR, PRIOR, TOK, 4, 3, reward="r"), TypeError,
                           r"\breward\b"),
    "kl estimate max_len > context": (lambda: rlhf.sample_kl_estimate(PRIOR, PRIOR, TOK, 4, 20), ValueError,
                                      r"\bmax_len\b"),
    # --- scaling
    "power law y strings": (lambda: scaling.fit_power_law([1, 2, 3], [1, 2, "a"]), ArgumentTypeError, r"\by\b"),
    "power law no points": (lambda: scaling.fit_power_law([], []), ValueError, r"\bx and y\b.*at least 3"),
    "chinchilla seed negative": (lambda: scaling.fit_chinchilla([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6],
                                                                [3, 3, 3, 2, 2, 2], seed=-1), ValueError, r"\bseed\b"),
    "chinchilla seed str": (lambda: scaling.fit_chinchilla([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6],
                                                           [3, 3, 3, 2, 2, 2], seed="x"), ArgumentTypeError, r"\bseed\b"),
    "chinchilla few runs": (lambda: scaling.fit_chinchilla([1, 2], [1, 2], [1, 2]), ValueError, r"\bN, D and L\b"),
    "allocation compute str": (lambda: _chinchilla().optimal_allocation("x"), ArgumentTypeError, r"\bcompute\b"),
    "allocation flops 0": (lambda: _chinchilla().optimal_allocation(1e10, flops_per_param_token=0), ValueError,
                           r"\bflops_per_param_token\b"),
    "allocation flops NaN": (lambda: _chinchilla().optimal_allocation(1e10, flops_per_param_token=NAN), ValueError,
                             r"\bflops_per_param_token\b"),
    "tokens_per_param list": (lambda: _chinchilla().tokens_per_param([1e10, 1e11]), ArgumentTypeError,
                              r"\bcompute\b"),
    "chinchilla predict N negative (NaN)": (lambda: _chinchilla().predict(-1.0, 1e7), ValueError, r"\bN\b"),
    "chinchilla predict D str": (lambda: _chinchilla().predict(1e6, "x"), ArgumentTypeError, r"\bD\b"),
    "power law predict negative (NaN)": (lambda: scaling.fit_power_law([1, 2, 4], [4, 2.1, 0.9]).predict(-1.0),
                                         ValueError, r"\bx\b"),
    "sweep one config": (lambda: scaling.run_sweep(CFG, [64], cache=False), ArgumentTypeError, r"\bconfigs\b"),
    "sweep one budget": (lambda: scaling.run_sweep([CFG], 64, cache=False), ArgumentTypeError, r"\btoken_budgets\b"),
    "pareto ints": (lambda: scaling.pareto_frontier([1, 2]), ArgumentTypeError, r"\bpoints\b.*index 0"),
    "pareto None": (lambda: scaling.pareto_frontier(None), ArgumentTypeError, r"\bpoints\b"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_refused_clearly(name):
    call, error, pattern = BAD[name]
    with pytest.raises(error, match=pattern):
        call()


def test_a_bad_pad_id_is_refused_before_any_batch():
    """It used to fail only at the first batch whose rows differ in length: some random later step."""
    fn = sft_batch_fn(ENCS, None, 2, 64, pad_id=0)
    x, _ = fn("train", torch.Generator().manual_seed(0))
    assert x.min() >= 0
    with pytest.raises(ValueError, match=r"pad_id must be an int >= 0, got -100"):
        sft_batch_fn(ENCS, None, 2, 64, pad_id=-100)


@pytest.mark.parametrize("reward, callback", [(5, None), (REWARD, 5)])
def test_finetuning_checks_everything_before_the_first_step(reward, callback):
    """A reward or callback that is not callable used to fail after the first step, with the policy
    already changed; now it fails before anything is trained."""
    policy = copy.deepcopy(PRIOR)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    with pytest.raises(TypeError, match=r"\breward\b" if callback is None else r"\bcallback\b"):
        rlhf.finetune_kl(policy, PRIOR, TOK, reward, 1.0, TC, max_len=3, callback=callback)
    if callback is not None:
        with pytest.raises(TypeError, match=r"\bcallback\b"):
            rlhf.finetune_dpo(policy, PRIOR, TOK, ["a"], ["b"], 1.0, TC, callback=callback)
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())


def test_a_sweep_checks_every_config_before_training_any(monkeypatch):
    trained = []
    monkeypatch.setattr(scaling.sweep, "_train_and_measure", lambda *a, **k: trained.append(a) or [])
    vocab = scaling.sweep_data().vocab_size
    good = GPTConfig(vocab_size=vocab, context_length=8, n_layer=1, n_head=1, n_embd=8)
    for bad, kw, pattern in [(GPTConfig(vocab_size=4, context_length=8, n_layer=1, n_head=1, n_embd=8), {}, "vocab_size"),
                             (GPTConfig(vocab_size=vocab, context_length=12, n_layer=1, n_head=1, n_embd=8), {},
                              "multiples"),
                             (GPTConfig(vocab_size=vocab, context_length=64, n_layer=1, n_head=1, n_embd=8),
                              {"eval_windows": scaling.sweep_data().val.numel() - 40}, "eval_windows")]:
        with pytest.raises(ValueError, match=pattern):
            scaling.run_sweep([good, bad], [128 * 1000], batch_size=16, cache=False, **kw)
    assert trained == []


def test_effective_sample_size_of_valid_weights():
    """Kish's (Σw)²/Σw², against the sum written out; unnormalised weights give the same."""
    w = [0.5, 0.25, 0.125, 0.125]
    want = sum(w) ** 2 / sum(x * x for x in w)
    assert rlhf.effective_sample_size(w) == pytest.approx(want, rel=1e-15)
    assert rlhf.effective_sample_size(torch.tensor(w) * 8) == pytest.approx(want, rel=1e-6)
    assert rlhf.effective_sample_size([0.0, 1.0]) == 1.0           # a zero weight is allowed


def test_kl_divergence_of_matching_shapes_is_the_sum():
    p, q = LP, torch.log_softmax(torch.randn(5, dtype=torch.float64), 0)
    assert rlhf.kl_divergence(p, q).item() == pytest.approx(sum(float(a.exp() * (a - b)) for a, b in zip(p, q)))
    assert rlhf.dpo_loss(R5, R5, R5, R5, 1.0).item() == pytest.approx(np.log(2))   # zero margin: -log σ(0)


def test_decode_accepts_padding_and_generated_rows():
    rows = rlhf.encode_sequences(TOK, ["ab", "c", ""], max_len=3)
    assert (rows == -100).any()
    assert rlhf.decode_sequences(TOK, rows) == ["ab", "c", ""]
    assert rlhf.decode_sequences(TOK, rows.int()) == ["ab", "c", ""]


def test_predict_takes_arrays_of_any_shape():
    law = _chinchilla()
    N, D = np.full((2, 3), 1e6), np.full((2, 3), 1e8)
    assert law.predict(N, D).shape == (2, 3) and np.allclose(law.predict(N, D), law.predict(1e6, 1e8))
    fit = scaling.fit_power_law([1, 2, 4], [4, 2.1, 0.9])
    assert fit.predict([[1.0, 2.0]]).shape == (1, 2)


@pytest.mark.parametrize("call, name", [
    (lambda: CHAT.render([{"role": "user", "content": "hi"}], add_generation_prompt="no"), "add_generation_prompt"),
    (lambda: CHAT.encode([{"role": "user", "content": "hi"}], add_generation_prompt=1), "add_generation_prompt"),
    (lambda: rlhf.LexiconReward({"cat": 1.0}, whole_words="yes"), "whole_words"),
    (lambda: data.ToyLanguage().logprob("the cat sees the dog.\n", strict="no"), "strict"),
    (lambda: scaling.param_count(GPTConfig(vocab_size=10, context_length=8, n_layer=1, n_head=1, n_embd=8), non_embedding=None), "non_embedding"),
])
def test_a_flag_must_be_a_bool_not_a_truthy_value(call, name):
    """A truthy string such as "no" must not switch a flag on."""
    with pytest.raises(TypeError, match=rf"^{name} must be True or False"):
        call()
