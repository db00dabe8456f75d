"""Beam search against brute-force enumeration of every continuation on a tiny model."""
import itertools
import math

import pytest
import torch

from lmcore import GPT, GPTConfig
from lmcore.decoding import beam_search, generate, sequence_logprob

V, L = 4, 4          # vocabulary size and number of new tokens: 4**4 = 256 continuations
PROMPT = torch.tensor([1, 2])


def tiny_model(seed: int, scale: float = 20.0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=V, context_length=8, n_layer=2, n_head=2, n_embd=16, tie_weights=False)).eval()
    with torch.no_grad():      # larger weights than the init so the distributions are far from uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(scale)
    return model


def all_hypotheses(model, stop_token=None):
    """Every possible continuation (ending at the first stop token, or after L tokens) with its log-prob."""
    out = {}
    for n in range(1, L + 1):
        conts = torch.tensor(list(itertools.product(range(V), repeat=n)))
        if stop_token is not None:
            early = (conts[:, :-1] == stop_token).any(1)     # stopped before its last token
            conts = conts[~early]
            if n < L:
                conts = conts[conts[:, -1] == stop_token]       # shorter ones exist only when they stop
        elif n < L:
            continue
        for c, lp in zip(conts, sequence_logprob(model, PROMPT, conts)):
            out[tuple(c.tolist())] = float(lp)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("stop_token", [None, 0, 3])
@pytest.mark.parametrize("length_penalty", [0.0, 0.5, 1.0, 2.0])
def test_wide_beam_finds_the_exhaustive_argmax(seed, stop_token, length_penalty):
    model = tiny_model(seed)
    hyps = all_hypotheses(model, stop_token)

    def score(c):
        return hyps[c] / len(c) ** length_penalty

    ranked = sorted(hyps, key=score, reverse=True)
    assert score(ranked[0]) - score(ranked[1]) > 1e-6           # a unique best, so the test is well posed
    result = beam_search(model, PROMPT, L, beam_width=V ** (L - 1), length_penalty=length_penalty, stop_token=stop_token)
    best = result[0]
    assert tuple(best.tokens[len(PROMPT):].tolist()) == ranked[0]
    assert best.logprob == pytest.approx(hyps[ranked[0]], abs=1e-4)
    assert best.score == pytest.approx(score(ranked[0]), abs=1e-4)
    assert best.finished == (stop_token is not None and ranked[0][-1] == stop_token)
    # the top few of an exhaustive beam are the top few of the enumeration, in order
    assert [tuple(h.tokens[len(PROMPT):].tolist()) for h in result[:5]] == ranked[:5]


def reference_beam(model, width, stop_token, length_penalty):
    """The documented search done naively: every extension scored from scratch by sequence_logprob.

    Returns every complete hypothesis the search holds, as (continuation, logprob, score): the
    finished ones it keeps (a stop among the first ``width`` extensions of a step) and the beams
    still open after L steps.
    """
    def score(c, lp):
        return lp / len(c) ** length_penalty

    beams, held = [()], []
    for _ in range(L):
        ext = [b + (t,) for b in beams for t in range(V)]
        ranked = sorted(zip(sequence_logprob(model, PROMPT, torch.tensor(ext)).tolist(), ext), key=lambda e: -e[0])
        lps = [lp for lp, _ in ranked]
        # a near-tie at a cut would make the case depend on rounding (the search sums per-step terms)
        for cut in (width, 1 + max([i for i, (_, c) in enumerate(ranked) if c[-1] != stop_token][:width], default=0)):
            assert cut >= len(lps) or lps[cut - 1] - lps[cut] > 1e-6, "near-tie at a cut: pick another case"
        held += [(c, lp, score(c, lp)) for lp, c in ranked[:width] if c[-1] == stop_token]
        opened = [(c, lp) for lp, c in ranked if c[-1] != stop_token][:width]
        beams = [c for c, _ in opened]
        if not beams:
            break
    return held + [(c, lp, score(c, lp)) for c, lp in opened]


# 162 random cases: 6 models x 3 widths x 3 length penalties x 3 stop tokens
CASES = list(itertools.product(range(6), (1, 2, 3), (0.5, 1.0, 2.0), (0, 1, 3)))


@pytest.mark.parametrize("seed", range(6))
def test_the_best_returned_is_never_beaten_by_a_hypothesis_the_search_held(seed):
    """Narrow beams with stop tokens and length penalties, against the naive search: the first result
    is its best, open beams included (before the fix an open beam was dropped once ``beam_width``
    hypotheses had finished: 14 of these 162 cases returned a worse one)."""
    model = tiny_model(seed, scale=4.0)         # flat enough that the beams keep several candidates
    for _, width, length_penalty, stop_token in [c for c in CASES if c[0] == seed]:
        held = reference_beam(model, width, stop_token, length_penalty)
        best = max(held, key=lambda h: h[2])
        result = beam_search(model, PROMPT, L, beam_width=width, length_penalty=length_penalty, stop_token=stop_token)
        assert tuple(result[0].tokens[len(PROMPT):].tolist()) == best[0], (width, length_penalty, stop_token)
        assert result[0].score == pytest.approx(best[2], abs=1e-5)
        # the results are the top of everything held, in order
        ranked = sorted(held, key=lambda h: -h[2])[:width]
        assert [tuple(h.tokens[len(PROMPT):].tolist()) for h in result] == [h[0] for h in ranked]


def test_width_one_is_greedy_and_wider_beams_never_do_worse():
    found_better = False
    for seed in range(4):
        model = tiny_model(seed, scale=4.0)    # flatter distributions: greedy misses the best on seed 3
        greedy = generate(model, PROMPT, L, temperature=0)
        lps = [beam_search(model, PROMPT, L, beam_width=w)[0] for w in (1, 2, 4)]
        assert torch.equal(lps[0].tokens, greedy)
        assert lps[0].logprob == pytest.approx(float(sequence_logprob(model, PROMPT, greedy[len(PROMPT):])), abs=1e-4)
        # the exhaustive width (V ** (L - 1) prunes nothing) is at least as good as any narrower beam
        exact = beam_search(model, PROMPT, L, beam_width=V ** (L - 1))[0].logprob
        assert all(h.logprob <= exact + 1e-6 for h in lps)
        found_better |= exact > lps[0].logprob + 1e-6
    assert found_better, "on some model greedy should miss the most probable sequence"


def test_results_are_sorted_and_scores_match_logprobs():
    model = tiny_model(3)
    result = beam_search(model, PROMPT, L, beam_width=5, length_penalty=1.0, stop_token=0)
    assert len(result) == 5
    assert [h.score for h in result] == sorted((h.score for h in result), reverse=True)
    for h in result:
        cont = h.tokens[len(PROMPT):]
        assert h.logprob == pytest.approx(float(sequence_logprob(model, PROMPT, cont)), abs=1e-4)
        assert h.score == pytest.approx(h.logprob / cont.numel(), abs=1e-9)
        assert h.finished == (int(cont[-1]) == 0)
        assert not (cont[:-1] == 0).any()


def test_bad_arguments_are_named():
    model = tiny_model(0)
    for kwargs, name in [(dict(beam_width=0), "beam_width"), (dict(length_penalty=math.nan), "length_penalty"),
                         (dict(stop_token=V), "stop_token")]:
        with pytest.raises(ValueError, match=name):
            beam_search(model, PROMPT, 3, **kwargs)
    with pytest.raises(ValueError, match="max_new_tokens"):
        beam_search(model, PROMPT, 0)
    with pytest.raises(ValueError, match="context_length"):
        beam_search(model, PROMPT, 8)
    with pytest.raises(ValueError, match="one prompt"):
        beam_search(model, torch.zeros(2, 3, dtype=torch.long), 2)


class NoFloat64(torch.overrides.TorchFunctionMode):
    """Refuse every float64 result, as Apple's MPS device does."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.dtype == torch.float64:
            raise TypeError(f"{func.__name__} made a float64 tensor, which this device does not support")
        return out


def test_scores_are_float32_on_a_device_without_float64(monkeypatch):
    """MPS has no float64: there beam scores are summed in float32 (a fake device type stands in for
    MPS, and a mode that refuses float64 results for the device), giving the same search."""
    from lmcore.decoding import beam
    assert beam.score_dtype(torch.device("mps")) == torch.float32
    assert beam.score_dtype(torch.device("cpu")) == beam.score_dtype(torch.device("cuda")) == torch.float64
    model = tiny_model(1)
    wide = beam_search(model, PROMPT, L, beam_width=3, length_penalty=1.0, stop_token=0)
    with NoFloat64(), pytest.raises(TypeError, match="float64"):
        beam_search(model, PROMPT, L, beam_width=3)             # the float64 path would fail there
    real = beam.score_dtype
    monkeypatch.setattr(beam, "score_dtype", lambda device: real(torch.device("mps")))
    with NoFloat64():
        narrow = beam_search(model, PROMPT, L, beam_width=3, length_penalty=1.0, stop_token=0)
    assert [h.tokens.tolist() for h in narrow] == [h.tokens.tolist() for h in wide]
    for a, b in zip(narrow, wide):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4) and a.finished == b.finished
