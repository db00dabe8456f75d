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

__all__ = ["TOY_TASKS", "TOY_SYSTEM_PROMPTS", "toy_instructions", "toy_chats"]

_NUMBER_WORDS = ("one", "two", "three", "four")
#: task name -> the instruction that starts the user's message
TOY_TASKS = {
    "name": "what is the name.",
    "plural": "is the subject plural.",
    "count": "how many sentences.",
}
#: system prompt -> the form of the assistant's reply, ``str.format``-ted with the bare answer
TOY_SYSTEM_PROMPTS = {
    "be brief.": "{}",
    "use a sentence.": "the answer is {}.",
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

    Tasks (cycled in the order given, so they are balanced; a name listed twice, as in
    ``("name", "plural", "count", "plural")``, gets twice the share): ``"name"``: the name a story is about (its first
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


def toy_chats(n: int, seed: int = 0, max_chars: int = 40,
              exclude: Sequence[Sequence[Mapping[str, str]]] = ()) -> list[list[dict[str, str]]]:
    """``n`` conversations of three kinds, cycled in this order so they are balanced:

    0. one question and its answer, as :func:`toy_instructions` makes them (its three tasks);
    1. the same with a **system prompt** first, one of :data:`TOY_SYSTEM_PROMPTS` (alternating),
       which sets the form of the reply: ``"be brief."`` the bare answer, ``"use a sentence."``
       ``"the answer is ANSWER."``;
    2. **two turns** about one story: its name, then ``"how many sentences."`` with no text (or the
       count first, then ``"what is the name."``; alternating), so the second answer needs the
       story from the first turn.

    Texts have at most ``max_chars`` characters (the default 40 keeps every conversation within a
    128-position context with ChatML-style markers).  A story or question used by a conversation
    of ``exclude`` (any user message) is not used again.  Deterministic for a given ``seed``.
    """
    check_int("n", n, low=0)
    rng = random.Random(check_int("seed", seed))
    seen = [[{"role": "user", "content": u}] for u in _user_texts(exclude)]
    singles = toy_instructions(n, seed=rng.getrandbits(32), max_chars=max_chars, exclude=seen)
    used = seen + [[c[0]] for c in singles] + [[{"role": "user", "content": f"{q} {_text(c)}"}]
                                               for c in singles for q in TOY_TASKS.values()]
    stories = toy_instructions(n, seed=rng.getrandbits(32), tasks=("name",), max_chars=max_chars, exclude=used)
    systems = list(TOY_SYSTEM_PROMPTS)
    out: list[list[dict[str, str]]] = []
    for i in range(n):
        kind, turn = i % 3, (i // 3) % 2
        if kind == 0:
            out.append(singles[i])
        elif kind == 1:
            user, answer = singles[i]
            system = systems[turn]
            out.append([{"role": "system", "content": system}, user,
                        {"role": "assistant", "content": TOY_SYSTEM_PROMPTS[system].format(answer["content"])}])
        else:
            story = _text(stories[i])
            name, count = story.split()[0], _NUMBER_WORDS[story.count(".") - 1]
            (q1, a1), (q2, a2) = ((("name", name), ("count", count)) if turn == 0
                                  else (("count", count), ("name", name)))
            out.append([{"role": "user", "content": f"{TOY_TASKS[q1]} {story}"},
                        {"role": "assistant", "content": a1},
                        {"role": "user", "content": TOY_TASKS[q2]},
                        {"role": "assistant", "content": a2}])
    return out


def _text(conv: Sequence[Mapping[str, str]]) -> str:
    """The toy text of a :func:`toy_instructions` conversation: its question without the instruction."""
    return conv[0]["content"].split(". ", 1)[1]


def _user_texts(exclude: Iterable[Sequence[Mapping[str, str]]]) -> set[str]:
    """Every user message of every conversation in ``exclude``, and each toy text they hold asked
    as every task's question (so a held-out story is never seen with another question either)."""
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
        raise ArgumentTypeError(f"exclude must be a list of conversations, got {type(exclude).__name__}")
    out = set()
    for i, conv in enumerate(exclude):
        ok = isinstance(conv, Sequence) and not isinstance(conv, str) and conv and all(
            isinstance(m, Mapping) and isinstance(m.get("content"), str) for m in conv)
        if not ok:
            raise ArgumentTypeError(f"exclude[{i}] must be a conversation, a list of {{'role', 'content'}} dicts, "
                                    f"got {conv!r:.60}")
        for m in conv:
            if m.get("role") == "user":
                out.add(m["content"])
                instruction = next((q for q in TOY_TASKS.values() if m["content"].startswith(q + " ")), None)
                if instruction is not None:
                    text = m["content"][len(instruction) + 1:]
                    out.update(f"{q} {text}" for q in TOY_TASKS.values())
    return out
