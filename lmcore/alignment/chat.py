"""The chat template: a conversation as one document (chapter 10).

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
``BPETokenizer(special_tokens=[...])`` or ``CharTokenizer(chars, special_tokens=[...])``), every
special-token name in a marker is encoded as its single reserved id, and user text can never
produce that id.  A ChatML-style template (role markers ``<|im_start|>user⏎``, end marker
``<|im_end|>``) is ``ChatTemplate(tok, {r: f"<|im_start|>{r}\\n" for r in ROLES}, "<|im_end|>")``.
Either way, message content may not contain a marker string (``ValueError``), so rendering and
parsing are exact inverses.

``ChatTemplate.encode`` returns, besides the ids, the *assistant mask* (True on the assistant's
content and its end-of-turn marker): what supervised fine-tuning trains on
(:mod:`lmcore.alignment.sft`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from .._checks import ArgumentTypeError, check_bool
from ..tokenizers import Tokenizer

__all__ = ["ROLES", "ChatTemplate", "ChatEncoding"]

ROLES = ("system", "user", "assistant")
_DEFAULT_ROLE_MARKERS = {"system": "..system..", "user": "..user..", "assistant": "..assistant.."}
_DEFAULT_END_MARKER = "\n"

#: one message: ``{"role": one of ROLES, "content": text}``
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
        if role_markers is not None and not isinstance(role_markers, Mapping):
            raise ArgumentTypeError(f"role_markers must be a dict {{role: marker}} for the roles {ROLES}, "
                                    f"got {type(role_markers).__name__}")
        role_markers = dict(_DEFAULT_ROLE_MARKERS if role_markers is None else role_markers)
        if set(role_markers) != set(ROLES):
            raise ValueError(f"role_markers must give a marker for exactly the roles {ROLES}, "
                             f"got {sorted(role_markers, key=str)}")
        named = {**{f"role_markers[{r!r}]": m for r, m in role_markers.items()}, "end_marker": end_marker}
        for name, m in named.items():
            if not isinstance(m, str) or not m:
                error = ValueError if isinstance(m, str) else ArgumentTypeError
                raise error(f"{name} must be a non-empty string (a marker), got {m!r}")
        markers = [*role_markers.values(), end_marker]
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
        # Each special-token name inside a marker becomes its one reserved id, which text can never
        # produce; the rest is encoded as text. So ChatML's "<|im_start|>user\n" is the start id,
        # then "user" and a newline spelled out.
        ids: list[int] = []
        pos = 0
        while pos < len(marker):
            name = max((s for s in special if marker.startswith(s, pos)), key=len, default=None)
            if name is not None:
                ids.append(special[name])
                pos += len(name)
                continue
            nxt = min((i for s in special if (i := marker.find(s, pos)) >= 0), default=len(marker))
            try:
                ids.extend(self.tokenizer.encode(marker[pos:nxt]))
            except ValueError as e:
                raise ValueError(f"the tokenizer cannot encode the marker {marker!r}: {e}") from None
            pos = nxt
        return ids

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
        check_bool("add_generation_prompt", add_generation_prompt)
        text = "".join(self.role_markers[m["role"]] + m["content"] + self.end_marker for m in messages)
        return text + (self.generation_prompt if add_generation_prompt else "")

    def encode(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> ChatEncoding:
        """Ids of :meth:`render` and the assistant mask (same length).

        The mask is True exactly on the tokens of assistant content and the end-of-turn marker
        that closes an assistant turn; markers, system and user tokens are False.  Markers and
        content are encoded separately, so a token never straddles a boundary.
        """
        self._check(messages)
        check_bool("add_generation_prompt", add_generation_prompt)
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
