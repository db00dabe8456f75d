"""Chat as a document, and supervised instruction tuning on it.

A language model only ever continues a document.  A *chat* model is an ordinary language model
fine-tuned on documents written in a fixed format, the **chat template**: every message is
wrapped in markers that say who speaks, and each turn ends with an end-of-turn marker::

    ..user..what is the name. tom likes the cat.⏎..assistant..tom⏎

To "ask" the model something we render the conversation so far, append the assistant's start
marker (the *generation prompt*) and let it continue the document until it writes the end-of-turn
marker.

**Markers.** A template takes its markers as strings.  With a character tokenizer they are made
of ordinary characters (the defaults below use ``..`` and the newline, which the toy language
never puts side by side, so a pretrained toy model needs no new vocabulary entries and LoRA can
adapt it without touching the embeddings).  With a tokenizer that has *special tokens* (a
``BPETokenizer(special_tokens=[...])``), a marker that is one of them is encoded as its single
reserved id, and user text can never produce that id.  Either way, message content may not contain
a marker string (``ValueError``), so rendering and parsing are exact inverses.

**Instruction tuning** (supervised fine-tuning, SFT) trains on such documents with the loss
restricted to the assistant's replies: ``ChatTemplate.encode`` returns, besides the ids, the
*assistant mask* (True on the assistant's content and its end-of-turn marker: the model must learn
to stop), and :func:`sft_example` turns it into next-token targets with ``-100`` (ignored by
``GPT``'s loss) everywhere else.

The rest of the module is a small instruction dataset built from the toy language, whose answers
its grammar determines (:func:`toy_instructions`), padded batches for ``lmcore.Trainer``
(:func:`sft_batch_fn`), greedy replies (:func:`generate_replies`) and exact-match accuracy
(:func:`exact_match`).
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch

from .data.toy import ADJECTIVES, ToyLanguage
from .tokenizers import Tokenizer

__all__ = ["ROLES", "ChatTemplate", "ChatEncoding", "sft_example", "sft_batch_fn", "TOY_TASKS",
           "toy_instructions", "generate_replies", "exact_match"]

ROLES = ("system", "user", "assistant")
_DEFAULT_ROLE_MARKERS = {"system": "..system..", "user": "..user..", "assistant": "..assistant.."}
_DEFAULT_END_MARKER = "\n"

Message = Mapping[str, str]


class ChatEncoding(NamedTuple):
    """Token ids of a rendered conversation and, per id, whether the loss should train on it."""
    ids: list[int]
    assistant_mask: list[bool]


class ChatTemplate:
    """Render ``[{"role": ..., "content": ...}, ...]`` into one document, encode it, parse it back.

    A turn is ``role_markers[role] + content + end_marker``.  Args:
        tokenizer: any ``lmcore`` tokenizer; every marker must be encodable by it.
        role_markers: start marker per role (all of :data:`ROLES`); default ``..system..``,
            ``..user..``, ``..assistant..``.
        end_marker: the end-of-turn marker; default ``"\\n"``.

    >>> from lmcore import CharTokenizer, data
    >>> chat = ChatTemplate(CharTokenizer().train(data.ToyLanguage().alphabet))
    >>> msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    >>> chat.render(msgs)
    '..user..hi\\n..assistant..yes\\n'
    >>> chat.parse(chat.render(msgs)) == msgs
    True
    """

    def __init__(self, tokenizer: Tokenizer, role_markers: Mapping[str, str] | None = None,
                 end_marker: str = _DEFAULT_END_MARKER) -> None:
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be an lmcore Tokenizer, got {type(tokenizer).__name__}")
        role_markers = dict(_DEFAULT_ROLE_MARKERS if role_markers is None else role_markers)
        if set(role_markers) != set(ROLES):
            raise ValueError(f"role_markers must give a marker for exactly the roles {ROLES}, got {sorted(role_markers)}")
        markers = [*role_markers.values(), end_marker]
        if any(not isinstance(m, str) or not m for m in markers):
            raise ValueError(f"markers must be non-empty strings, got {markers!r}")
        if len(set(markers)) != len(markers):
            raise ValueError(f"markers must be distinct, got {markers!r}")
        # Parsing reads a turn as START content END; a start marker containing the end marker (or
        # another start marker) would make that ambiguous.
        for m in role_markers.values():
            if any(o in m for o in markers if o != m):
                raise ValueError(f"the marker {m!r} contains another marker; choose markers that do not overlap")
        self.tokenizer = tokenizer
        self.role_markers = role_markers
        self.end_marker = end_marker
        self._marker_ids = {m: self._encode_marker(m) for m in markers}

    # --- encoding pieces ---------------------------------------------------------------------
    def _encode_marker(self, marker: str) -> list[int]:
        special = getattr(self.tokenizer, "special_tokens", None) or {}
        if marker in special:                      # one reserved id that text can never produce
            return [special[marker]]
        try:
            return self.tokenizer.encode(marker)
        except ValueError as e:
            raise ValueError(f"the tokenizer cannot encode the marker {marker!r}: {e}") from None

    @property
    def end_ids(self) -> list[int]:
        """Ids of the end-of-turn marker (one id for the defaults with a character tokenizer)."""
        return list(self._marker_ids[self.end_marker])

    @property
    def generation_prompt(self) -> str:
        """What ``add_generation_prompt=True`` appends: the assistant's start marker."""
        return self.role_markers["assistant"]

    def _check(self, messages: Sequence[Message]) -> None:
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
        markers = [*self.role_markers.values(), self.end_marker]
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or set(m) != {"role", "content"}:
                raise ValueError(f"messages[{i}] must be a dict with exactly the keys 'role' and 'content', got {m!r}")
            if m["role"] not in ROLES:
                raise ValueError(f"messages[{i}] has role {m['role']!r}; a role must be one of {ROLES}")
            if not isinstance(m["content"], str):
                raise TypeError(f"messages[{i}]['content'] must be a str, got {type(m['content']).__name__}")
            bad = [k for k in markers if k in m["content"]]
            if bad:
                raise ValueError(f"messages[{i}]['content'] contains the marker {bad[0]!r}, which would end or "
                                 "start a turn; remove it from the text")

    # --- the template ------------------------------------------------------------------------
    def render(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
        """The conversation as one document string (plus the assistant's start marker if asked)."""
        self._check(messages)
        text = "".join(self.role_markers[m["role"]] + m["content"] + self.end_marker for m in messages)
        return text + (self.generation_prompt if add_generation_prompt else "")

    def encode(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> ChatEncoding:
        """Ids of :meth:`render` and the assistant mask (same length).

        The mask is True exactly on the tokens of assistant content and the end-of-turn marker
        that closes an assistant turn; markers, system and user tokens are False.  Markers and
        content are encoded separately, so a token never straddles a boundary.
        """
        self._check(messages)
        ids: list[int] = []
        mask: list[bool] = []

        def add(piece: list[int], train: bool) -> None:
            ids.extend(piece)
            mask.extend([train] * len(piece))

        for m in messages:
            is_assistant = m["role"] == "assistant"
            add(self._marker_ids[self.role_markers[m["role"]]], False)
            add(self.tokenizer.encode(m["content"]), is_assistant)
            add(self._marker_ids[self.end_marker], is_assistant)
        if add_generation_prompt:
            add(self._marker_ids[self.generation_prompt], False)
        return ChatEncoding(ids, mask)

    def parse(self, text: str) -> list[dict[str, str]]:
        """Inverse of :meth:`render` (without a generation prompt): the list of messages.

        Raises ``ValueError`` if ``text`` is not a sequence of complete turns.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        messages, pos = [], 0
        while pos < len(text):
            role = next((r for r, m in self.role_markers.items() if text.startswith(m, pos)), None)
            if role is None:
                raise ValueError(f"expected a role marker at character {pos} of the text, found {text[pos:pos + 20]!r}")
            start = pos + len(self.role_markers[role])
            end = text.find(self.end_marker, start)
            if end < 0:
                raise ValueError(f"the {role} turn starting at character {pos} has no end marker {self.end_marker!r}")
            messages.append({"role": role, "content": text[start:end]})
            pos = end + len(self.end_marker)
        return messages


# --------------------------------------------------------------------------------- SFT batches
def sft_example(encoding: ChatEncoding) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and masked next-token targets for one conversation: ``(x, y)``, each (T - 1,).

    ``y[t] = ids[t + 1]`` where token ``t + 1`` is an assistant token (mask True) and ``-100``
    elsewhere, so ``GPT``'s cross-entropy averages over the assistant's tokens only.
    """
    ids, mask = encoding
    if len(ids) != len(mask) or len(ids) < 2:
        raise ValueError(f"encoding needs ids and mask of equal length >= 2, got {len(ids)} and {len(mask)}")
    if not any(mask[1:]):
        raise ValueError("the conversation has no assistant token to train on (its mask is all False)")
    t = torch.tensor(ids, dtype=torch.long)
    y = torch.where(torch.tensor(mask[1:]), t[1:], torch.full_like(t[1:], -100))
    return t[:-1], y


def sft_batch_fn(train: Sequence[ChatEncoding], val: Sequence[ChatEncoding] | None, batch_size: int,
                 block_size: int, pad_id: int):
    """A ``batch_fn(split, generator) -> (x, y)`` for ``lmcore.Trainer``: ``batch_size`` random
    conversations, right-padded with ``pad_id`` to the longest one (targets ``-100`` on padding).

    Right padding is harmless: attention is causal, so no real token ever sees a pad.  Every
    conversation must fit: ``len(ids) - 1 <= block_size`` (else ``ValueError``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    splits = {"train": [sft_example(e) for e in train]}
    if val is not None:
        splits["val"] = [sft_example(e) for e in val]
    for name, examples in splits.items():
        if not examples:
            raise ValueError(f"the {name} conversations are empty")
        longest = max(len(x) for x, _ in examples)
        if longest > block_size:
            raise ValueError(f"a {name} conversation has {longest + 1} tokens, more than block_size + 1 = "
                             f"{block_size + 1}; drop long conversations or use a longer context")

    def batch_fn(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in splits:
            raise ValueError(f"no {split!r} conversations were given to sft_batch_fn")
        examples = splits[split]
        rows = torch.randint(len(examples), (batch_size,), generator=generator).tolist()
        T = max(len(examples[i][0]) for i in rows)
        x = torch.full((batch_size, T), pad_id, dtype=torch.long)
        y = torch.full((batch_size, T), -100, dtype=torch.long)
        for b, i in enumerate(rows):
            xi, yi = examples[i]
            x[b, :len(xi)], y[b, :len(yi)] = xi, yi
        return x, y

    return batch_fn


# ------------------------------------------------------------------ toy instruction dataset
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


def toy_instructions(n: int, seed: int = 0, tasks: Sequence[str] = tuple(TOY_TASKS),
                     max_chars: int = 80, exclude: Sequence[Sequence[Message]] = ()) -> list[list[dict[str, str]]]:
    """``n`` two-turn conversations (user instruction, assistant answer) about toy-language text.

    Tasks (cycled in order, so they are balanced): ``"name"``: the name a story is about (its first
    word); ``"plural"``: "yes"/"no", is the subject of a ``the NOUN (that ...) VERB ...`` sentence
    plural (the main verb agrees with it, not with the nearer noun of a relative clause);
    ``"count"``: the number of sentences of a story, as a word.  The text of a user message has at
    most ``max_chars`` characters; conversations whose user message is in ``exclude`` are skipped
    (to keep a held-out set disjoint from training).  Deterministic for a given ``seed``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    unknown = [t for t in tasks if t not in TOY_TASKS]
    if not tasks or unknown:
        raise ValueError(f"tasks must be a non-empty subset of {tuple(TOY_TASKS)}, got {tasks!r}")
    seen = {conv[0]["content"] for conv in exclude}
    toy, rng = ToyLanguage(), random.Random(seed)
    out: list[list[dict[str, str]]] = []
    while len(out) < n:
        task = tasks[len(out) % len(tasks)]
        story = toy.sample(1, seed=rng.getrandbits(32))[0].rstrip("\n")
        if task == "plural":
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


# --------------------------------------------------------------------- replies and accuracy
@torch.no_grad()
def generate_replies(model: torch.nn.Module, template: ChatTemplate, conversations: Sequence[Sequence[Message]],
                     max_new_tokens: int = 8) -> list[str]:
    """Greedy assistant replies to each conversation's messages *before its last assistant turn*.

    Each prompt is rendered with the generation prompt; the model continues it until the
    end-of-turn marker (a single-id marker is used as the stop token) or ``max_new_tokens``.
    Prompts of equal length are decoded together in one batch (greedy decoding is deterministic,
    so batching does not change the replies).
    """
    if len(template.end_ids) != 1:
        raise ValueError("generate_replies needs an end-of-turn marker of one token id")
    stop = template.end_ids[0]
    device = next(model.parameters()).device
    prompts = []
    for conv in conversations:
        cut = max((i for i, m in enumerate(conv) if m["role"] == "assistant"), default=len(conv))
        prompts.append(template.encode(conv[:cut], add_generation_prompt=True).ids)
    replies: list[str] = [""] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for T, rows in by_len.items():
        idx = torch.tensor([prompts[i] for i in rows], dtype=torch.long, device=device)
        out = model.generate(idx, max_new_tokens, temperature=0.0, stop_tokens=stop)[:, T:].tolist()
        for i, new in zip(rows, out):
            new = new[:new.index(stop)] if stop in new else new
            replies[i] = template.tokenizer.decode(new)
    return replies


def exact_match(model: torch.nn.Module, template: ChatTemplate, conversations: Sequence[Sequence[Message]],
                max_new_tokens: int = 8) -> float:
    """Fraction of conversations whose greedy reply equals the last assistant message exactly."""
    if not conversations:
        raise ValueError("conversations is empty")
    replies = generate_replies(model, template, conversations, max_new_tokens)
    answers = [next(m["content"] for m in reversed(conv) if m["role"] == "assistant") for conv in conversations]
    return sum(r == a for r, a in zip(replies, answers)) / len(conversations)
