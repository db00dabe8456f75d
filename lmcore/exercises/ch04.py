"""Checks for the exercises of chapter 4, "From counts to neural language models".

Each ``check_<name>(fn)`` runs the student's ``fn`` on fixed and random cases, compares it with an
independent reference computed here, and prints ``PASS`` or ``FAIL`` with a hint.  The experiment's
check, ``check_context_sweep(sweep)``, takes the measured numbers instead (training is the student's
run) and tests them against bounds computed here from the toy corpus.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np
import torch

from ..data import ToyLanguage, toy_corpus
from ..models import NGramConfig, NGramLM
from ..tokenizers import CharTokenizer
from ._check import CheckFailed, CheckResult, expect_measurements, run_check
from ._check import expect_tensor as _tensor

__all__ = ["check_context_windows", "check_mlp_logits", "check_context_sweep", "SWEEP_KS"]


# --- exercise 1: the context window of every position ---------------------------------------------

def _reference_windows(idx: torch.Tensor, context: int, pad_id: int) -> torch.Tensor:
    B, T = idx.shape
    out = torch.full((B, T, context), pad_id, dtype=torch.long)
    for t in range(T):
        for j in range(context):           # slot j holds the token context-1-j steps before t
            s = t - (context - 1 - j)
            if s >= 0:
                out[:, t, j] = idx[:, s]
    return out


def check_context_windows(context_windows: Callable[[torch.Tensor, int, int], torch.Tensor],
                          quiet: bool = False) -> CheckResult:
    """Check ``context_windows(idx, context, pad_id)``: ids ``(B, T)`` → ``(B, T, context)`` where
    row ``[b, t]`` is ``idx[b, t-context+1 … t]`` (oldest first), left-padded with ``pad_id``."""
    def body() -> None:
        g = torch.Generator().manual_seed(0)
        cases = [("idx = [[1, 2, 3, 4]], context 2, pad 9", torch.tensor([[1, 2, 3, 4]]), 2, 9),
                 ("a (3, 7) batch, context 4, pad 20", torch.randint(0, 20, (3, 7), generator=g), 4, 20),
                 ("context longer than the sequence", torch.randint(0, 5, (2, 3), generator=g), 5, 5),
                 ("context 1 (a bigram model)", torch.randint(0, 5, (2, 6), generator=g), 1, 5)]
        for case, idx, k, pad in cases:
            got = _tensor(context_windows(idx.clone(), k, pad), "context_windows")
            want = _reference_windows(idx, k, pad)
            if tuple(got.shape) != tuple(want.shape):
                raise CheckFailed(f"{case}: expected shape {tuple(want.shape)} = (B, T, context), got "
                                  f"{tuple(got.shape)}; every position needs a window, the first ones padded")
            if not torch.equal(got.long(), want):
                b, t = [int(i) for i in (got.long() != want).nonzero()[0][:2]]
                hint = ("the window of position t must end with token t itself (it predicts token t+1)"
                        if torch.equal(got[:, 1:].long(), want[:, :-1]) else
                        "keep the tokens in their original order, oldest first, with padding on the left")
                raise CheckFailed(f"{case}: the window of position t={t} in row {b} is "
                                  f"{got[b, t].tolist()}; {hint}")

    return run_check("context_windows", body, quiet)


# --- exercise 2: the MLP's forward pass -----------------------------------------------------------

def check_mlp_logits(mlp_logits: Callable[..., torch.Tensor], quiet: bool = False) -> CheckResult:
    """Check ``mlp_logits(windows, C, H, d, U, b)``: windows ``(N, k)`` of ids, embedding table ``C``
    ``(V, e)``, hidden layer ``H`` ``(h, k·e)`` and ``d`` ``(h,)``, output ``U`` ``(V, h)`` and ``b``
    ``(V,)`` → logits ``(N, V) = tanh(x Hᵀ + d) Uᵀ + b`` with ``x`` the concatenated embeddings."""
    def body() -> None:
        g = torch.Generator().manual_seed(1)
        V, k, e, h = 7, 3, 4, 10
        C = torch.randn(V, e, generator=g)
        H, d = torch.randn(h, k * e, generator=g), torch.randn(h, generator=g)
        U, b = torch.randn(V, h, generator=g), torch.randn(V, generator=g)
        windows = torch.randint(0, V, (12, k), generator=g)
        windows[0] = torch.tensor([1, 2, 3])
        windows[1] = torch.tensor([3, 2, 1])         # same tokens, other order
        got = _tensor(mlp_logits(windows.clone(), C, H, d, U, b), "mlp_logits")
        x = C[windows].reshape(len(windows), k * e)
        want = torch.tanh(x @ H.T + d) @ U.T + b
        if tuple(got.shape) != (len(windows), V):
            raise CheckFailed(f"expected logits of shape (N, V) = {(len(windows), V)}, got {tuple(got.shape)}")
        if torch.allclose(got, want, rtol=1e-4, atol=1e-4):
            return
        if torch.allclose(got[0], got[1], atol=1e-5):
            raise CheckFailed("the windows [1, 2, 3] and [3, 2, 1] get the same logits: the model must "
                              "see the order of the context, so concatenate the embeddings, do not add them")
        if torch.allclose(got, (x @ H.T + d) @ U.T + b, rtol=1e-4, atol=1e-4):
            raise CheckFailed("your logits are linear in the embeddings: apply tanh to the hidden layer")
        raise CheckFailed("your logits differ from tanh(x Hᵀ + d) Uᵀ + b; x must be the k embeddings of a "
                          "window laid side by side, oldest first, giving a vector of k·e numbers")

    return run_check("mlp_logits", body, quiet)


# --- exercise 4: how much context does the MLP use? (an experiment) --------------------------------

#: the context lengths the experiment asks for
SWEEP_KS = (1, 2, 4, 8)
# How far above the Kneser–Ney (k+1)-gram a 400-step MLP may land. Measured: 0.013–0.043 nats/char
# over seeds 0–1 and two kernel settings; reporting bits instead of nats adds at least 0.1 at every k.
_SWEEP_SLACK = 0.1


def _val_pairs_entropy(ids: np.ndarray, k: int, pad_id: int) -> float:
    """Empirical conditional entropy (nats) of each next id given its k predecessors, over the pairs
    an MLP's ``cross_entropy`` scores (left-padded with ``pad_id``): no model that sees only those k
    ids can score these pairs lower, since the pairs' own conditional frequencies minimise it."""
    padded = np.concatenate([np.full(k - 1, pad_id), ids])
    base = pad_id + 1
    keys = np.zeros(len(ids) - 1, dtype=np.int64)
    for j in range(k):                                     # context of target ids[t+1]: ids[t-k+1 … t]
        keys = keys * base + padded[j:j + len(ids) - 1]
    _, ctx_index, ctx_count = np.unique(keys, return_inverse=True, return_counts=True)
    _, pair_count = np.unique(ctx_index.astype(np.int64) * base + ids[1:], return_counts=True)
    n = len(ids) - 1
    # H(Y | C) = H(C, Y) - H(C) over the empirical joint of the pairs
    return float(-(pair_count * np.log(pair_count / n)).sum() / n + (ctx_count * np.log(ctx_count / n)).sum() / n)


@lru_cache(maxsize=1)
def _sweep_references() -> dict[int, tuple[float, float]]:
    """{k: (exact lower bound on the validation text, Kneser–Ney (k+1)-gram cross-entropy)}."""
    tok = CharTokenizer().train(ToyLanguage().alphabet)           # the chapter's tokenizer
    train, val = (np.array(tok.encode(toy_corpus(split))) for split in ("train", "val"))
    return {k: (_val_pairs_entropy(val, k, tok.vocab_size),
                NGramLM(NGramConfig(k + 1, tok.vocab_size)).fit(train).cross_entropy(val)) for k in SWEEP_KS}


def check_context_sweep(sweep: Mapping[int, float], quiet: bool = False) -> CheckResult:
    """Check the measured ``sweep``: ``{k: validation cross-entropy}`` (nats/char, ``model.cross_entropy(val_ids)``)
    of a fresh MLP with a k-character context trained like the chapter's ``mlp`` (400 steps), for every
    k in :data:`SWEEP_KS`.

    Each value must be at least the validation text's own conditional entropy given k characters (an
    exact bound for any k-character model), at most ``_SWEEP_SLACK`` above the Kneser–Ney (k+1)-gram,
    and fall as k grows."""
    def body() -> None:
        values = expect_measurements(sweep, "sweep", SWEEP_KS, "k", "cross-entropy in nats per character",
                                     "Train one MLP per context length and fill it in")
        refs = _sweep_references()
        for k in SWEEP_KS:
            bound, counting = refs[k]
            if values[k] < bound - 1e-9:
                raise CheckFailed(f"sweep[{k}] is lower than any model that sees only {k} character(s) can "
                                  "score on the validation text: did the model get context_length=k (not "
                                  "k + 1), and did you score it with model.cross_entropy(val_ids)?")
            if values[k] > counting + _SWEEP_SLACK:
                raise CheckFailed(f"sweep[{k}] is far above the counting model with the same context: report "
                                  "nats per character (not bits), score the whole validation text with "
                                  "model.cross_entropy(val_ids), and train each model with the chapter's config")
        for a, b in zip(SWEEP_KS, SWEEP_KS[1:]):
            if values[b] >= values[a]:
                raise CheckFailed(f"sweep[{b}] is not below sweep[{a}]: with the same training, more context "
                                  "helps here. Build a fresh model for every k and train each the same way")

    return run_check("context_sweep", body, quiet)
