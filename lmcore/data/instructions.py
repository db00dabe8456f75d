"""A toy instruction dataset whose answers the toy language's grammar determines (chapter 10).

Instruction tuning needs conversations with a right answer: here every user message asks about a
piece of toy-language text, and the grammar of :mod:`lmcore.data.toy` fixes the reply, so accuracy
is exact (no judge model). A conversation is a list of ``{"role", "content"}`` dicts, the format
``lmcore.alignment.ChatTemplate`` renders.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from .._checks import check_int
from .toy import ADJECTIVES, ToyLanguage

__all__ = ["TOY_TASKS", "toy_instructions"]

_NUMBER_WORDS = ("one", "two", "three", "four")
#: task name -> the instruction that starts the user's message
TOY_TASKS = {
    "name": "what is the name.",
    "plural": "is the subject plural.",
    "count": "how many sentences.",
}


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
    """
    check_int("n", n, low=0)
    unknown = [t for t in tasks if t not in TOY_TASKS]
    if not tasks or unknown:
        raise ValueError(f"tasks must be a non-empty subset of {tuple(TOY_TASKS)}, got {tasks!r}")
    seen = {conv[0]["content"] for conv in exclude}
    toy, rng = ToyLanguage(), random.Random(seed)
    out: list[list[dict[str, str]]] = []
    while len(out) < n:
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
    return out
