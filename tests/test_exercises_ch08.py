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


def test_top_p_check_reports_the_stub_as_unsolved(capsys):
    assert check_top_p(stub).status == "unsolved" and check_min_p(stub).status == "unsolved"
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("NOT SOLVED YET top_p_filter: ") and out[1].startswith("NOT SOLVED YET min_p_filter: ")


def _hint(check, wrong, capsys):
    """The FAIL line ``check`` prints for ``wrong`` (which must fail)."""
    capsys.readouterr()
    result = check(wrong)
    out = capsys.readouterr().out
    assert result.status == "fail" and out.startswith("FAIL ") and out.count("\n") == 1, out
    assert result.hint in out
    return out


def test_top_p_hint_for_the_off_by_one_names_the_boundary(capsys):
    out = _hint(check_top_p, top_p_one_too_few, capsys)
    assert "the token whose probability makes the total reach p is missing" in out
    assert "sorted order" not in out and "fewer" not in out


def test_top_p_hint_for_a_mask_left_in_sorted_order_says_so_and_does_not_contradict_itself(capsys):
    """Issue 18: it printed "(keeps 1) ... you kept 1 token(s); the right set has fewer"."""
    out = _hint(check_top_p, top_p_forgets_to_unsort, capsys)
    assert "in sorted order" in out and "vocabulary order" in out
    assert "fewer" not in out and "more" not in out and "keeps" not in out, "no count contradiction, no answer"


def test_top_p_hint_for_keeping_too_many_says_fewer(capsys):
    def top_p_too_many(probs, p):        # keeps one token past the nucleus
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = torch.zeros_like(probs, dtype=torch.bool).scatter(
            -1, order, sorted_probs.cumsum(-1) - sorted_probs - sorted_probs.roll(1, -1) < p)
        kept = probs * keep
        return kept / kept.sum(-1, keepdim=True)
    out = _hint(check_top_p, top_p_too_many, capsys)
    assert "the right set has fewer" in out and "reaches p" in out


def test_top_p_hints_show_rounded_inputs_and_do_not_state_the_rule(capsys):
    out = "".join(_hint(check_top_p, w, capsys) for w in (top_p_one_too_few, top_p_forgets_to_unsort))
    assert "[0.05, 0.5, 0.15, 0.3]" in out and "0000000" not in out, "float32 noise in the shown inputs"
    assert "mass of the tokens ranked above" not in out and "smallest set" not in out


def test_top_p_hint_for_a_missing_renormalisation(capsys):
    assert "renormalise" in _hint(check_top_p, top_p_not_renormalised, capsys)


def test_min_p_check_passes_solutions_and_lmcore():
    assert check_min_p(min_p_solution)
    assert check_min_p(sampling.min_p_filter)


def test_min_p_hints_point_at_each_mistake(capsys):
    absolute = _hint(check_min_p, min_p_absolute, capsys)
    assert "compared the probabilities with min_p itself" in absolute and ">=" not in absolute
    assert "(>=, not >)" in _hint(check_min_p, min_p_strict, capsys)
    assert "0000000" not in absolute


def test_penalty_window_check_passes_the_measured_runs_and_fails_wrong_ones(capsys):
    from lmcore.exercises import PENALTY_WINDOWS, check_penalty_window
    from lmcore.exercises.ch08 import _greedy_penalised, _penalty_references, _repeated_4grams

    refs = _penalty_references()
    # the reference solution, as the chapter's student writes it: the chapter's measure on each run
    solution = {w: _repeated_4grams(_greedy_penalised(w)) for w in PENALTY_WINDOWS}
    assert check_penalty_window(solution)
    assert len({round(refs[w], 2) for w in PENALTY_WINDOWS}) > 1          # the window matters
    assert check_penalty_window({}).status == "unsolved"   # the starter cell: an empty dict
    assert check_penalty_window(stub).status == "fail"     # a function, not the dict of results
    assert not check_penalty_window({w: refs[None] for w in PENALTY_WINDOWS})      # the whole text penalised
    assert not check_penalty_window({w: 100 * v for w, v in solution.items()})   # percent
    assert not check_penalty_window({w: solution[w] for w in PENALTY_WINDOWS[:-1]})
    worst = max(PENALTY_WINDOWS, key=lambda w: abs(refs[w] - refs[PENALTY_WINDOWS[0]]))
    shuffled = {**solution, worst: solution[PENALTY_WINDOWS[0]]}             # one window's number is wrong
    assert not check_penalty_window(shuffled)
    out = capsys.readouterr().out
    assert "PASS penalty_window" in out and "NOT SOLVED YET penalty_window: window_repeats is empty" in out and "pass the dict of your results" in out
    assert "penalise only the ids among the last W" in out
    assert "not 25 (%)" in out and "no result for W" in out and f"window_repeats[{worst}] is off" in out
