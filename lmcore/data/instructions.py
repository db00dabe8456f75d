"""A toy instruction dataset whose answers the toy language's grammar determines (chapter 10).

Instruction tuning needs conversations with a right answer: here every user message asks about a
piece of toy-language text, and the grammar of :mod:`lmcore.data.toy` fixes the reply, so accuracy
is exact (no judge model). A conversation is a list of ``{"role", "content"}`` dicts, the format
``lmcore.alignment.ChatTemplate`` renders.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

from .._checks import ArgumentTypeError, check_int
from .toy import ADJECTIVES, NAMES, NOUNS, VERBS, ToyLanguage

__all__ = ["TOY_TASKS", "toy_instructions"]

_NUMBER_WORDS = ("one", "two", "three", "four")
#: task name -> the instruction that starts the user's message
TOY_TASKS = {
    "name": "what is the name.",
    "plural": "is the subject plural.",
    "count": "how many sentences.",
}
# The shortest text of each task, from the grammar: a one-sentence story "bob sees the cat." for
# "name" and "count", a sentence "the cat sees the cat." (or "the cats see the cat.") for "plural".
_SHORTEST_NP = len("the ") + min(map(len, NOUNS))
_SHORTEST_VERB = min(map(len, VERBS)) + 1    # "sees"; in "the cats see" the noun has the "s" instead
_SHORTEST_STORY = min(map(len, NAMES)) + 1 + _SHORTEST_VERB + 1 + _SHORTEST_NP + 1
_SHORTEST = {"name": _SHORTEST_STORY, "count": _SHORTEST_STORY,
             "plural": _SHORTEST_NP + 1 + _SHORTEST_VERB + 1 + _SHORTEST_NP + 1}
# stories in a row without a new conversation after which toy_instructions gives up: the settings
# leave too few distinct texts (a short max_chars, a large n, a large exclude)
_MAX_FAILED_DRAWS = 20_000


def _plural_subject(sentence: str) -> bool | None:
    """Number of the subject of a ``the [adj] NOUN ...`` sentence, or None for other sentences."""
    words = sentence.split()
    if not words or words[0] != "the":
        return None
    noun = words[2] if words[1] in ADJECTIVES else words[1]
    return noun.endswith("s")      # no singular noun of the language ends in "s"


def toy_instructions(n: int, seed: int = 0, tasks: Sequence[str] = tuple(TOY_TASKS), max_chars: int = 80,
                     exclude: Sequence[Sequence[Mapping[str, str]]] = ()) -> list[list[dict[str, str]]]:
    """``n`` two-turn conversations (user instruction, assistant answer) about toy-language text.

    Tasks (cycled in order, so they are balanced): ``"name"``: the name a story is about (its first
    word); ``"plural"``: "yes"/"no", is the subject of a ``the NOUN (that ...) VERB ...`` sentence
    plural (the main verb agrees with it, not with the nearer noun of a relative clause);
    ``"count"``: the number of sentences of a story, as a word.  The text of a user message has at
    most ``max_chars`` characters; conversations whose user message is in ``exclude`` are skipped
    (to keep a held-out set disjoint from training).  Deterministic for a given ``seed``.

    A ``max_chars`` below the shortest text of a task raises ``ValueError`` at once; settings that
    leave fewer than ``n`` distinct conversations raise it once 20,000 stories in a row gave no new
    one (a bound, so no setting runs forever).
    """
    check_int("n", n, low=0)
    check_int("max_chars", max_chars, low=1)
    if isinstance(tasks, str) or not isinstance(tasks, Sequence):
        raise ArgumentTypeError(f"tasks must be a list or tuple of task names from {tuple(TOY_TASKS)}, got {tasks!r}")
    unknown = [t for t in tasks if t not in tuple(TOY_TASKS)]
    if not tasks or unknown:
        raise ValueError(f"tasks must be a non-empty subset of {tuple(TOY_TASKS)}, got {tasks!r}")
    too_short = {t: _SHORTEST[t] for t in tasks if _SHORTEST[t] > max_chars}
    if too_short:
        raise ValueError(f"max_chars={max_chars} is below the shortest text of the task "
                         + ", ".join(f"{t!r} ({k} characters)" for t, k in too_short.items())
                         + f": no conversation can be made; use max_chars >= {max(too_short.values())}")
    seen = _user_messages(exclude)
    n_excluded = len(seen)
    toy, rng = ToyLanguage(), random.Random(check_int("seed", seed))
    out: list[list[dict[str, str]]] = []
    failed = 0
    while len(out) < n:
        if failed == _MAX_FAILED_DRAWS:
            raise ValueError(f"no new conversation in {failed:,} stories in a row ({len(out)} of n={n} made): "
                             f"max_chars={max_chars} and exclude ({n_excluded} conversations) leave too few "
                             "distinct texts; raise max_chars, lower n or exclude fewer")
        failed += 1
        task = tasks[len(out) % len(tasks)]
        # a fresh seed per story from one generator: the dataset depends on ``seed`` alone
        story = toy.sample(1, seed=rng.getrandbits(32))[0].rstrip("\n")
        if task == "plural":
            # only "the NOUN ..." sentences have a subject whose number the text shows
            candidates = [s.strip() + "." for s in story.split(".") if _plural_subject(s.strip()) is not None]
            if not candidates:
                continue
            text = rng.choice(candidates)
            answer = "yes" if _plural_subject(text) else "no"
        else:
            text = story
            answer = story.split()[0] if task == "name" else _NUMBER_WORDS[story.count(".") - 1]
        user = f"{TOY_TASKS[task]} {text}"
        if len(text) > max_chars or user in seen:
            continue
        seen.add(user)
        out.append([{"role": "user", "content": user}, {"role": "assistant", "content": answer}])
        failed = 0
    return out


def _user_messages(exclude: Iterable[Sequence[Mapping[str, str]]]) -> set[str]:
    """The first message of every conversation in ``exclude``, or ``ArgumentTypeError``."""
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
        raise ArgumentTypeError(f"exclude must be a list of conversations, got {type(exclude).__name__}")
    seen = set()
    for i, conv in enumerate(exclude):
        first = conv[0] if isinstance(conv, Sequence) and not isinstance(conv, str) and conv else None
        if not isinstance(first, Mapping) or not isinstance(first.get("content"), str):
            raise ArgumentTypeError(f"exclude[{i}] must be a conversation, a list of {{'role', 'content'}} dicts "
                                    f"as toy_instructions returns, got {conv!r:.60}")
        seen.add(first["content"])
    return seen
