"""Chapter 10 weights its SFT mixture by repeating a task in ``toy_instructions(tasks=...)``."""
import collections

from lmcore.data import TOY_TASKS, toy_instructions


def _task(conv):
    return next(t for t, instruction in TOY_TASKS.items() if conv[0]["content"].startswith(instruction + " "))


def test_repeating_a_task_weights_the_mixture_in_cycle_order():
    mix = ("name", "plural", "count", "plural")
    convs = toy_instructions(40, seed=1, max_chars=70, tasks=mix)
    assert [_task(c) for c in convs] == [mix[i % len(mix)] for i in range(40)]
    assert collections.Counter(_task(c) for c in convs) == {"plural": 20, "name": 10, "count": 10}
    assert len({c[0]["content"] for c in convs}) == 40            # repeats of a task are new questions


def test_a_weighted_mixture_respects_exclude():
    held_out = toy_instructions(30, seed=3, max_chars=70)
    convs = toy_instructions(60, seed=1, max_chars=70, tasks=("plural", "name", "plural"), exclude=held_out)
    assert not {c[0]["content"] for c in convs} & {c[0]["content"] for c in held_out}
