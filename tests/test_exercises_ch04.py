"""The chapter 4 exercise checks pass on a reference solution and fail on stubs and wrong answers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _checks import assert_check_behaves

from lmcore import exercises
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
    assert "not implemented" in capsys.readouterr().out
