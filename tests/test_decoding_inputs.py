"""Every public function of lmcore.decoding, fed bad input: a clear ValueError/TypeError naming the argument.

``BAD`` is the sweep of issue 15 (wrong types, out-of-range values, NaN, empty, wrong shapes and dtypes);
``GOOD`` holds valid inputs of every integer kind (numpy ints, 0-d tensors, arrays, sets) and an MLP
scored beyond its window; half of them used to fail with a cryptic error.
"""
import math

import numpy as np
import pytest
import torch

from lmcore import GPT, GPTConfig, MLPConfig, MLPLanguageModel
from lmcore.decoding import (
    apply_temperature,
    beam_search,
    context_window_start,
    filter_probs,
    generate,
    min_p_filter,
    sample_next,
    sequence_logprob,
    sequence_logprobs,
    top_k_filter,
    top_p_filter,
    validate_sampling_args,
)

V = 11
with torch.random.fork_rng():          # seeded weights, without touching other tests' random state
    torch.manual_seed(0)
    GPT_M = GPT(GPTConfig(vocab_size=V, context_length=8, n_layer=1, n_head=2, n_embd=8)).eval()
    MLP_M = MLPLanguageModel(MLPConfig(vocab_size=V, context_length=3, n_embd=4, n_hidden=8)).eval()
P = torch.tensor([1, 2])                       # a prompt
Z = torch.zeros(1, V)                          # logits
PROBS = torch.full((1, V), 1 / V)
ROWS = torch.tensor([[1, 2, 3], [1, 4, -100]])
NAN, INF = math.nan, math.inf


def logits_with(value, col=3):
    z = torch.zeros(2, V)
    z[1, col] = value
    return z


def gen(**kw):
    args = dict(model=GPT_M, idx=P[None], max_new_tokens=3)
    args.update(kw)
    return generate(**args)


def beam(**kw):
    args = dict(model=GPT_M, idx=P, max_new_tokens=3)
    args.update(kw)
    return beam_search(**args)


BAD = [
    # --- sample_next / filter_probs: the logits ---
    ("sample_next logits list", lambda: sample_next([[0.0, 1.0]]), "logits"),
    ("sample_next logits int", lambda: sample_next(torch.zeros(1, V, dtype=torch.long)), "logits"),
    ("sample_next logits bool", lambda: sample_next(torch.zeros(1, V, dtype=torch.bool)), "logits"),
    ("sample_next logits complex", lambda: sample_next(torch.zeros(1, V, dtype=torch.complex64)), "logits"),
    ("sample_next logits 1-d", lambda: sample_next(torch.zeros(V)), "logits"),
    ("sample_next logits 3-d", lambda: sample_next(torch.zeros(1, 1, V)), "logits"),
    ("sample_next empty vocabulary", lambda: sample_next(torch.zeros(1, 0)), "logits"),
    ("sample_next NaN logit", lambda: sample_next(logits_with(NAN)), "logits"),
    ("sample_next +inf logit", lambda: sample_next(logits_with(INF)), "logits"),
    ("sample_next all -inf row", lambda: sample_next(torch.full((1, V), -INF)), "logits"),
    ("filter_probs logits 0-d", lambda: filter_probs(torch.tensor(1.0)), "logits"),
    ("filter_probs empty vocabulary", lambda: filter_probs(torch.zeros(1, 0)), "logits"),
    ("filter_probs NaN logit", lambda: filter_probs(logits_with(NAN)), "logits"),
    ("filter_probs logits numpy", lambda: filter_probs(np.zeros((1, V))), "logits"),
    # --- the sampling settings ---
    ("temperature str", lambda: sample_next(Z, temperature="1"), "temperature"),
    ("temperature None", lambda: sample_next(Z, temperature=None), "temperature"),
    ("temperature bool", lambda: sample_next(Z, temperature=True), "temperature"),
    ("temperature negative", lambda: sample_next(Z, temperature=-1.0), "temperature"),
    ("temperature NaN", lambda: sample_next(Z, temperature=NAN), "temperature"),
    ("temperature inf", lambda: sample_next(Z, temperature=INF), "temperature"),
    ("top_k zero", lambda: sample_next(Z, top_k=0), "top_k"),
    ("top_k negative", lambda: sample_next(Z, top_k=-2), "top_k"),
    ("top_k float", lambda: sample_next(Z, top_k=2.5), "top_k"),
    ("top_k bool", lambda: sample_next(Z, top_k=True), "top_k"),
    ("top_p zero", lambda: sample_next(Z, top_p=0.0), "top_p"),
    ("top_p above one", lambda: sample_next(Z, top_p=1.5), "top_p"),
    ("top_p NaN", lambda: sample_next(Z, top_p=NAN), "top_p"),
    ("top_p str", lambda: sample_next(Z, top_p="0.9"), "top_p"),
    ("min_p negative", lambda: sample_next(Z, min_p=-0.1), "min_p"),
    ("min_p above one", lambda: sample_next(Z, min_p=1.5), "min_p"),
    ("min_p NaN", lambda: sample_next(Z, min_p=NAN), "min_p"),
    ("generator int", lambda: sample_next(Z, generator=0), "generator"),
    ("generator str", lambda: sample_next(Z, generator="seed"), "generator"),
    ("validate_sampling_args top_k str", lambda: validate_sampling_args(top_k="3"), "top_k"),
    ("validate_sampling_args temperature complex", lambda: validate_sampling_args(1j), "temperature"),
    # --- the building blocks ---
    ("apply_temperature negative", lambda: apply_temperature(Z, -1.0), "temperature"),
    ("apply_temperature NaN", lambda: apply_temperature(Z, NAN), "temperature"),
    ("apply_temperature logits list", lambda: apply_temperature([1.0, 2.0], 1.0), "logits"),
    ("apply_temperature empty vocabulary", lambda: apply_temperature(torch.zeros(1, 0), 1.0), "logits"),
    ("apply_temperature NaN logit", lambda: apply_temperature(logits_with(NAN), 1.0), "logits"),
    ("top_k_filter k zero", lambda: top_k_filter(PROBS, 0), "k"),
    ("top_k_filter k float", lambda: top_k_filter(PROBS, 1.5), "k"),
    ("top_k_filter probs int", lambda: top_k_filter(torch.ones(1, V, dtype=torch.long), 2), "probs"),
    ("top_k_filter probs negative", lambda: top_k_filter(PROBS - 1, 2), "probs"),
    ("top_k_filter probs NaN", lambda: top_k_filter(logits_with(NAN).abs(), 2), "probs"),
    ("top_k_filter empty vocabulary", lambda: top_k_filter(torch.zeros(1, 0), 2), "probs"),
    ("top_k_filter all-zero row", lambda: top_k_filter(torch.zeros(1, V), 2), "probs"),
    ("top_p_filter p zero", lambda: top_p_filter(PROBS, 0.0), "p"),
    ("top_p_filter p NaN", lambda: top_p_filter(PROBS, NAN), "p"),
    ("top_p_filter probs not normalised", lambda: top_p_filter(PROBS * 3, 0.5), "probs"),
    ("top_p_filter probs 0-d", lambda: top_p_filter(torch.tensor(1.0), 0.5), "probs"),
    ("min_p_filter min_p above one", lambda: min_p_filter(PROBS, 2.0), "min_p"),
    ("min_p_filter probs list", lambda: min_p_filter([0.5, 0.5], 0.1), "probs"),
    ("min_p_filter probs +inf", lambda: min_p_filter(logits_with(INF), 0.1), "probs"),
    # --- generate ---
    ("generate model None", lambda: gen(model=None), "model"),
    ("generate model Linear", lambda: gen(model=torch.nn.Linear(2, 2)), "model"),
    ("generate model compiled Linear", lambda: gen(model=torch.compile(torch.nn.Linear(2, 2))), "model"),
    ("generate idx list", lambda: gen(idx=[[1, 2]]), "idx"),
    ("generate idx float", lambda: gen(idx=torch.tensor([[0.5]])), "idx"),
    ("generate idx bool", lambda: gen(idx=torch.tensor([[True]])), "idx"),
    ("generate idx 3-d", lambda: gen(idx=torch.zeros(1, 1, 2, dtype=torch.long)), "idx"),
    ("generate idx empty time", lambda: gen(idx=torch.zeros(1, 0, dtype=torch.long)), "idx"),
    ("generate idx empty batch", lambda: gen(idx=torch.zeros(0, 2, dtype=torch.long)), "idx"),
    ("generate idx too large", lambda: gen(idx=torch.tensor([[1, V]])), "idx"),
    ("generate idx negative", lambda: gen(idx=torch.tensor([[-1, 2]])), "idx"),
    ("generate max_new_tokens negative", lambda: gen(max_new_tokens=-1), "max_new_tokens"),
    ("generate max_new_tokens float", lambda: gen(max_new_tokens=2.0), "max_new_tokens"),
    ("generate max_new_tokens None", lambda: gen(max_new_tokens=None), "max_new_tokens"),
    ("generate max_new_tokens 10**13", lambda: gen(max_new_tokens=10**13), "max_new_tokens"),
    ("generate max_new_tokens 2**63", lambda: gen(max_new_tokens=2**63), "max_new_tokens"),
    ("generate temperature negative", lambda: gen(temperature=-0.5), "temperature"),
    ("generate top_p above one", lambda: gen(top_p=1.5), "top_p"),
    ("generate use_cache str", lambda: gen(use_cache="no"), "use_cache"),
    ("generate use_cache None", lambda: gen(use_cache=None), "use_cache"),
    ("generate stop_tokens empty", lambda: gen(stop_tokens=[]), "stop_tokens"),
    ("generate stop_tokens too large", lambda: gen(stop_tokens=[V]), "stop_tokens"),
    ("generate stop_tokens negative int", lambda: gen(stop_tokens=-1), "stop_tokens"),
    ("generate stop_tokens float", lambda: gen(stop_tokens=1.0), "stop_tokens"),
    ("generate stop_tokens str", lambda: gen(stop_tokens="a"), "stop_tokens"),
    ("generate stop_tokens bool", lambda: gen(stop_tokens=True), "stop_tokens"),
    ("generate stop_tokens float in list", lambda: gen(stop_tokens=[1, 2.0]), "stop_tokens"),
    ("generate stop_tokens numpy too large", lambda: gen(stop_tokens=np.array([1, 99])), "stop_tokens"),
    ("generate stop_tokens float tensor", lambda: gen(stop_tokens=torch.tensor([1.0])), "stop_tokens"),
    ("generate stop_tokens 0-d too large", lambda: gen(stop_tokens=torch.tensor(V)), "stop_tokens"),
    ("generate generator int", lambda: gen(temperature=1.0, generator=0), "generator"),
    ("generate MLP idx too large", lambda: gen(model=MLP_M, idx=torch.tensor([[V]])), "idx"),
    # --- context_window_start ---
    ("context_window_start context_length 0", lambda: context_window_start(5, 0, 0), "context_length"),
    ("context_window_start start negative", lambda: context_window_start(5, -1, 4), "start"),
    ("context_window_start start beyond n", lambda: context_window_start(5, 6, 4), "start"),
    ("context_window_start n_tokens float", lambda: context_window_start(5.0, 0, 4), "n_tokens"),
    ("context_window_start n_tokens negative", lambda: context_window_start(-5, 0, 4), "n_tokens"),
    # --- beam_search ---
    ("beam_search model MLP", lambda: beam(model=MLP_M), "model"),
    ("beam_search idx list", lambda: beam(idx=[1, 2]), "idx"),
    ("beam_search idx float", lambda: beam(idx=torch.tensor([1.0])), "idx"),
    ("beam_search idx two rows", lambda: beam(idx=torch.zeros(2, 3, dtype=torch.long)), "idx"),
    ("beam_search idx empty", lambda: beam(idx=torch.zeros(0, dtype=torch.long)), "idx"),
    ("beam_search idx too large", lambda: beam(idx=torch.tensor([V])), "idx"),
    ("beam_search max_new_tokens 0", lambda: beam(max_new_tokens=0), "max_new_tokens"),
    ("beam_search max_new_tokens float", lambda: beam(max_new_tokens=2.5), "max_new_tokens"),
    ("beam_search max_new_tokens beyond context", lambda: beam(max_new_tokens=8), "max_new_tokens"),
    ("beam_search beam_width 0", lambda: beam(beam_width=0), "beam_width"),
    ("beam_search beam_width str", lambda: beam(beam_width="4"), "beam_width"),
    ("beam_search beam_width bool", lambda: beam(beam_width=True), "beam_width"),
    ("beam_search length_penalty NaN", lambda: beam(length_penalty=NAN), "length_penalty"),
    ("beam_search length_penalty None", lambda: beam(length_penalty=None), "length_penalty"),
    ("beam_search stop_token too large", lambda: beam(stop_token=V), "stop_token"),
    ("beam_search stop_token negative", lambda: beam(stop_token=-1), "stop_token"),
    ("beam_search stop_token float", lambda: beam(stop_token=1.0), "stop_token"),
    # --- sequence_logprob ---
    ("sequence_logprob continuation too large", lambda: sequence_logprob(GPT_M, P, torch.tensor([[1, V]])),
     "continuation"),
    ("sequence_logprob continuation negative", lambda: sequence_logprob(GPT_M, P, torch.tensor([[1, -100]])),
     "continuation"),
    ("sequence_logprob continuation float", lambda: sequence_logprob(GPT_M, P, torch.tensor([[1.0]])),
     "continuation"),
    ("sequence_logprob continuation list", lambda: sequence_logprob(GPT_M, P, [[1, 2]]), "continuation"),
    ("sequence_logprob continuation 3-d", lambda: sequence_logprob(GPT_M, P, torch.ones(1, 1, 2, dtype=torch.long)),
     "continuation"),
    ("sequence_logprob continuation empty", lambda: sequence_logprob(GPT_M, P, torch.zeros(1, 0, dtype=torch.long)),
     "continuation"),
    ("sequence_logprob prompt empty", lambda: sequence_logprob(GPT_M, torch.zeros(0, dtype=torch.long), P),
     "prompt"),
    ("sequence_logprob prompt two rows", lambda: sequence_logprob(GPT_M, torch.ones(2, 2, dtype=torch.long), P),
     "prompt"),
    ("sequence_logprob prompt too large", lambda: sequence_logprob(GPT_M, torch.tensor([V]), P), "prompt"),
    ("sequence_logprob beyond context", lambda: sequence_logprob(GPT_M, P, torch.ones(1, 8, dtype=torch.long)),
     "continuation"),
    ("sequence_logprob model Linear", lambda: sequence_logprob(torch.nn.Linear(2, 2), P, P), "model"),
    # --- sequence_logprobs ---
    ("sequence_logprobs model None", lambda: sequence_logprobs(None, ROWS), "model"),
    ("sequence_logprobs rows float", lambda: sequence_logprobs(GPT_M, ROWS.float()), "rows"),
    ("sequence_logprobs rows 1-d", lambda: sequence_logprobs(GPT_M, ROWS[0]), "rows"),
    ("sequence_logprobs rows one column", lambda: sequence_logprobs(GPT_M, ROWS[:, :1]), "rows"),
    ("sequence_logprobs rows too large", lambda: sequence_logprobs(GPT_M, torch.tensor([[1, V]])), "rows"),
    ("sequence_logprobs rows negative", lambda: sequence_logprobs(GPT_M, torch.tensor([[1, -1]])), "rows"),
    ("sequence_logprobs rows left padded", lambda: sequence_logprobs(GPT_M, torch.tensor([[-100, 1, 2]])), "rows"),
    ("sequence_logprobs rows beyond context", lambda: sequence_logprobs(GPT_M, torch.ones(1, 10, dtype=torch.long)),
     "rows"),
    ("sequence_logprobs start 0", lambda: sequence_logprobs(GPT_M, ROWS, start=0), "start"),
    ("sequence_logprobs start too large", lambda: sequence_logprobs(GPT_M, ROWS, start=3), "start"),
    ("sequence_logprobs batch_size 0", lambda: sequence_logprobs(GPT_M, ROWS, batch_size=0), "batch_size"),
    ("sequence_logprobs batch_size float", lambda: sequence_logprobs(GPT_M, ROWS, batch_size=1.5), "batch_size"),
    ("sequence_logprobs dtype long", lambda: sequence_logprobs(GPT_M, ROWS, dtype=torch.long), "dtype"),
    ("sequence_logprobs dtype str", lambda: sequence_logprobs(GPT_M, ROWS, dtype="float64"), "dtype"),
]

GOOD = [
    ("generate stop_tokens numpy int", lambda: gen(stop_tokens=np.int64(1))),
    ("generate stop_tokens 0-d tensor", lambda: gen(stop_tokens=torch.tensor(1))),
    ("generate stop_tokens tensor", lambda: gen(stop_tokens=torch.tensor([1, 2]))),
    ("generate stop_tokens numpy array", lambda: gen(stop_tokens=np.array([1, 2]))),
    ("generate stop_tokens set", lambda: gen(stop_tokens={1, 2})),
    ("generate max_new_tokens numpy int", lambda: gen(max_new_tokens=np.int64(2))),
    ("beam_search stop_token numpy int", lambda: beam(stop_token=np.int64(1))),
    ("beam_search beam_width 0-d tensor", lambda: beam(beam_width=torch.tensor(2))),
    ("top_k numpy int", lambda: sample_next(Z, top_k=np.int64(3))),
    ("sequence_logprob MLP beyond its window", lambda: sequence_logprob(MLP_M, P, torch.ones(1, 6, dtype=torch.long))),
]


@pytest.mark.parametrize("call,name", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_gets_a_clear_error_naming_the_argument(call, name):
    # the name as a word of lmcore's message, not inside torch's ("generator=int", "argument 'k'", "model's")
    with pytest.raises((ValueError, TypeError), match=rf"(?<![\w'\"=.]){name}(?![\w'\"=])"):
        call()


@pytest.mark.parametrize("call", [c[1] for c in GOOD], ids=[c[0] for c in GOOD])
def test_integer_ids_of_every_kind_are_accepted(call):
    call()


def test_numpy_and_tensor_stop_tokens_stop_like_an_int():
    free = generate(GPT_M, P[None], 8, temperature=0)
    stop = int(free[0, 3])
    expected = generate(GPT_M, P[None], 8, temperature=0, stop_tokens=stop)
    for same in (np.int64(stop), torch.tensor(stop), torch.tensor([stop]), np.array([stop]), {stop}):
        assert torch.equal(generate(GPT_M, P[None], 8, temperature=0, stop_tokens=same), expected)


def test_an_mlp_is_scored_over_any_length_like_its_own_cross_entropy():
    """The MLP slides its window, so rows longer than its context_length are valid (they were refused
    as "beyond context"); the score is the sum its own per-token cross-entropy averages."""
    ids = torch.randint(0, V, (12,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lp = sequence_logprobs(MLP_M, ids[None], dtype=torch.float64)
    assert float(lp) == pytest.approx(-MLP_M.cross_entropy(ids) * (len(ids) - 1), rel=1e-5)
    assert float(sequence_logprob(MLP_M, ids[:1], ids[1:])) == pytest.approx(float(lp), rel=1e-9)
