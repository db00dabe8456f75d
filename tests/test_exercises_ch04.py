"""The chapter 4 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _checks import assert_check_behaves

from lmcore import exercises
from lmcore.exercises.ch04 import SWEEP_KS, _sweep_references, _val_pairs_entropy, check_context_sweep
from lmcore.models.mlp import MLPConfig, MLPLanguageModel

# --- reference solutions (written as a student would, independently of the checks) ---------------

def context_windows(idx, context, pad_id):
    padded = F.pad(idx, (context - 1, 0), value=pad_id)
    return torch.stack([padded[:, j:j + idx.shape[1]] for j in range(context)], dim=-1)


def mlp_logits(windows, C, H, d, U, b):
    x = C[windows].flatten(1)
    return torch.tanh(x @ H.T + d) @ U.T + b


def stub(*args):
    raise NotImplementedError("write your solution here")


# --- plausible wrong answers ----------------------------------------------------------------------

def windows_shifted(idx, context, pad_id):      # predicts token t from tokens before t (excludes t)
    padded = F.pad(idx, (context, 0), value=pad_id)
    return torch.stack([padded[:, j:j + idx.shape[1]] for j in range(context)], dim=-1)


def windows_reversed(idx, context, pad_id):     # newest token first
    return context_windows(idx, context, pad_id).flip(-1)


def windows_right_padded(idx, context, pad_id):  # zero padding instead of pad_id
    return context_windows(idx, context, 0)


def windows_no_padding(idx, context, pad_id):   # only the positions with a full window
    return idx.unfold(1, context, 1) if idx.shape[1] >= context else idx[:, :0, None].expand(-1, -1, context)


def mlp_summed(windows, C, H, d, U, b):         # bag of embeddings: order lost (and wrong size)
    x = C[windows].sum(1).repeat(1, windows.shape[1])
    return torch.tanh(x @ H.T + d) @ U.T + b


def mlp_linear(windows, C, H, d, U, b):          # forgot the non-linearity
    return (C[windows].flatten(1) @ H.T + d) @ U.T + b


def mlp_transposed(windows, C, H, d, U, b):      # interleaves features of different tokens
    x = C[windows].transpose(1, 2).flatten(1)
    return torch.tanh(x @ H.T + d) @ U.T + b


def test_references_agree_with_lmcore_mlp():
    """The reference solutions are what MLPLanguageModel computes."""
    torch.manual_seed(0)
    model = MLPLanguageModel(MLPConfig(vocab_size=9, context_length=3, n_embd=4, n_hidden=8))
    idx = torch.randint(0, 9, (2, 6))
    windows = context_windows(idx, 3, model.pad_id)
    assert torch.equal(windows, model.contexts(idx))
    with torch.no_grad():
        want, _ = model(idx)
        got = mlp_logits(windows.flatten(0, 1), model.wte.weight, model.hidden.weight, model.hidden.bias,
                         model.lm_head.weight, model.lm_head.bias)
    torch.testing.assert_close(got.view_as(want), want)


@pytest.mark.parametrize("check,good,bad", [
    ("check_context_windows", context_windows,
     [stub, windows_shifted, windows_reversed, windows_right_padded, windows_no_padding]),
    ("check_mlp_logits", mlp_logits, [stub, mlp_summed, mlp_linear, mlp_transposed]),
])
def test_check_passes_reference_and_fails_wrong_answers(check, good, bad, capsys):
    assert_check_behaves(getattr(exercises, check), good, [w for w in bad if w is not stub], capsys)


def test_hints_name_the_mistake(capsys):
    exercises.check_context_windows(windows_shifted)
    assert "end with token t itself" in capsys.readouterr().out
    exercises.check_mlp_logits(mlp_linear)
    assert "tanh" in capsys.readouterr().out
    exercises.check_mlp_logits(stub)
    assert "NOT SOLVED YET" in capsys.readouterr().out


# --- exercise 4: the context-length experiment ---------------------------------------------------

def _toy_ids():
    from lmcore.data import ToyLanguage, toy_corpus
    from lmcore.tokenizers import CharTokenizer

    tok = CharTokenizer().train(ToyLanguage().alphabet)
    return tok, torch.tensor(tok.encode(toy_corpus("train"))), torch.tensor(tok.encode(toy_corpus("val")))


def context_sweep(ks):
    """The reference solution, as the chapter's solution cell runs it."""
    from lmcore.training import TrainConfig, Trainer

    tok, train_ids, val_ids = _toy_ids()
    config = TrainConfig(max_steps=400, batch_size=32, seq_len=32, lr=3e-3, min_lr=3e-4, warmup_steps=50,
                         eval_interval=200, eval_iters=10, progress=False, device="cpu")
    out = {}
    for k in ks:
        torch.manual_seed(0)
        model = MLPLanguageModel(MLPConfig(tok.vocab_size, k, 16, 128))
        Trainer(model, config, train_ids, val_ids).train()
        out[k] = model.cross_entropy(val_ids)
    return out


@pytest.fixture(scope="module")
def measured_sweep():
    return context_sweep(SWEEP_KS)


def _counting_sweep(extra_context=0):
    """Kneser–Ney n-gram cross-entropies with n = k + 1 + extra_context: counting models that see
    k characters (a legitimate answer's kind of number), or more than k (a wrong one)."""
    from lmcore.models import NGramConfig, NGramLM

    tok, train_ids, val_ids = _toy_ids()
    return {k: NGramLM(NGramConfig(k + 1 + extra_context, tok.vocab_size)).fit(train_ids.numpy())
            .cross_entropy(val_ids.numpy()) for k in SWEEP_KS}


def _entropy_brute_force(ids, k, pad_id):
    from collections import Counter
    padded = [pad_id] * (k - 1) + list(ids)
    pairs = [(tuple(padded[t:t + k]), ids[t + 1]) for t in range(len(ids) - 1)]
    joint, ctx = Counter(pairs), Counter(c for c, _ in pairs)
    return -sum(n * np.log(n / ctx[c]) for (c, _), n in joint.items()) / len(pairs)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_sweep_bound_is_the_empirical_conditional_entropy(k):
    rng = np.random.default_rng(k)
    ids = rng.integers(0, 4, 300)
    assert _val_pairs_entropy(ids, k, 4) == pytest.approx(_entropy_brute_force(ids.tolist(), k, 4), rel=1e-12)


def test_sweep_bound_is_below_every_k_character_model():
    """No k-character model beats the bound: the counting n-grams (n = k + 1) and a trained MLP sit above it."""
    refs = _sweep_references()
    for k, ce in _counting_sweep().items():
        assert refs[k][0] <= ce


def test_context_sweep_passes_real_runs_and_counting_models(measured_sweep, capsys):
    assert check_context_sweep(measured_sweep).status == "pass"
    assert check_context_sweep(_counting_sweep()).status == "pass"    # any k-character model's numbers pass
    assert capsys.readouterr().out.count("PASS context_sweep") == 2


def test_context_sweep_fails_wrong_answers_with_hints(measured_sweep, capsys):
    bits = {k: v / np.log(2) for k, v in measured_sweep.items()}
    under_trained = {**measured_sweep, 8: measured_sweep[4] + 1e-3}
    assert check_context_sweep({}).status == "unsolved"      # the starter cell: nothing measured yet
    assert capsys.readouterr().out.startswith("NOT SOLVED YET context_sweep: sweep is empty: no results yet")
    wrong = [(context_sweep, "pass the dict"),
             ({k: v for k, v in measured_sweep.items() if k != 8}, "no result for k = 8"),
             ({**measured_sweep, 2: float("nan")}, "finite number"),
             (bits, "not bits"),
             (_counting_sweep(extra_context=1), "context_length=k"),   # models that saw k + 1 characters
             (under_trained, "not below sweep[4]")]
    capsys.readouterr()
    for answer, hint in wrong:
        assert check_context_sweep(answer).status == "fail", hint
        out = capsys.readouterr().out
        assert out.startswith("FAIL context_sweep") and hint in out and "Traceback" not in out, (hint, out)
