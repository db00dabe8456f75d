"""The chapter-8 checks pass the reference solutions and fail stubs and plausible wrong answers."""
import torch

from lmcore.decoding import sampling
from lmcore.exercises import check_min_p, check_top_p


def top_p_solution(probs, p):
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, before < p)
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def top_p_one_too_few(probs, p):
    """The classic off-by-one: keeps tokens while the running total stays *at most* p."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = sorted_probs.cumsum(-1) <= p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def top_p_not_renormalised(probs, p):
    return top_p_solution(probs, p) * (probs * (top_p_solution(probs, p) > 0)).sum(-1, keepdim=True)


def top_p_forgets_to_unsort(probs, p):
    sorted_probs, _ = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs
    kept = sorted_probs * (before < p)
    return kept / kept.sum(-1, keepdim=True)


def min_p_solution(probs, min_p):
    kept = probs * (probs >= min_p * probs.amax(-1, keepdim=True))
    return kept / kept.sum(-1, keepdim=True)


def min_p_absolute(probs, min_p):
    """Wrong: an absolute threshold instead of one relative to the top probability."""
    kept = probs * (probs >= min_p)
    return kept / kept.sum(-1, keepdim=True)


def min_p_strict(probs, min_p):
    kept = probs * (probs > min_p * probs.amax(-1, keepdim=True))
    return kept / kept.sum(-1, keepdim=True)


def stub(probs, param):
    raise NotImplementedError("write your filter here")


def test_top_p_check_passes_solutions_and_lmcore():
    assert check_top_p(top_p_solution)
    assert check_top_p(sampling.top_p_filter)


def test_top_p_check_fails_wrong_answers(capsys):
    for wrong in (stub, top_p_one_too_few, top_p_not_renormalised, top_p_forgets_to_unsort):
        assert not check_top_p(wrong), wrong.__name__
    out = capsys.readouterr().out
    assert "FAIL top_p_filter: not implemented" in out
    assert "the right set has more" in out            # the one-too-few answer is told it kept too few
    assert "renormalise" in out


def test_min_p_check_passes_solutions_and_lmcore():
    assert check_min_p(min_p_solution)
    assert check_min_p(sampling.min_p_filter)


def test_min_p_check_fails_wrong_answers(capsys):
    for wrong in (stub, min_p_absolute, min_p_strict):
        assert not check_min_p(wrong), wrong.__name__
    assert "relative" in capsys.readouterr().out


def test_penalty_window_check_passes_the_measured_runs_and_fails_wrong_ones(capsys):
    from lmcore.exercises import PENALTY_WINDOWS, check_penalty_window
    from lmcore.exercises.ch08 import _greedy_penalised, _penalty_references, _repeated_4grams

    refs = _penalty_references()
    # the reference solution, as the chapter's student writes it: the chapter's measure on each run
    solution = {w: _repeated_4grams(_greedy_penalised(w)) for w in PENALTY_WINDOWS}
    assert check_penalty_window(solution)
    assert len({round(refs[w], 2) for w in PENALTY_WINDOWS}) > 1          # the window matters
    assert not check_penalty_window({})                   # the starter cell: an empty dict
    assert not check_penalty_window(stub)
    assert not check_penalty_window({w: refs[None] for w in PENALTY_WINDOWS})      # the whole text penalised
    assert not check_penalty_window({w: 100 * v for w, v in solution.items()})   # percent
    assert not check_penalty_window({w: solution[w] for w in PENALTY_WINDOWS[:-1]})
    worst = max(PENALTY_WINDOWS, key=lambda w: abs(refs[w] - refs[PENALTY_WINDOWS[0]]))
    shuffled = {**solution, worst: solution[PENALTY_WINDOWS[0]]}             # one window's number is wrong
    assert not check_penalty_window(shuffled)
    out = capsys.readouterr().out
    assert "PASS penalty_window" in out and "no results yet" in out and "pass the dict of your results" in out
    assert "penalise only the ids among the last W" in out
    assert "not 25 (%)" in out and "no result for W" in out and f"repeats[{worst}] is off" in out
