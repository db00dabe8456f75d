"""Supervised instruction tuning on chat documents, and its evaluation (chapter 10).

**Instruction tuning** (supervised fine-tuning, SFT) trains on documents rendered by a
:class:`~lmcore.alignment.chat.ChatTemplate` with the loss restricted to the assistant's replies:
:func:`sft_example` turns the template's *assistant mask* into next-token targets with ``-100``
(ignored by ``GPT``'s loss) everywhere else, and :func:`sft_batch_fn` pads them into batches for
``lmcore.Trainer``. :func:`generate_replies` answers with greedy decoding and :func:`exact_match`
scores the answers (the toy instruction set of ``lmcore.data.toy_instructions`` has exact answers).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_int
from ..decoding import generate
from ..models import GPT
from .chat import ChatEncoding, ChatTemplate, Message

__all__ = ["sft_example", "sft_batch_fn", "generate_replies", "exact_match"]


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
    # the mask is shifted by one: target t is token t + 1, trained on iff the assistant wrote it
    y = torch.where(torch.tensor(mask[1:]), t[1:], torch.full_like(t[1:], -100))
    return t[:-1], y


def sft_batch_fn(train: Sequence[ChatEncoding], val: Sequence[ChatEncoding] | None, batch_size: int,
                 seq_len: int, pad_id: int):
    """A ``batch_fn(split, generator) -> (x, y)`` for ``lmcore.Trainer``: ``batch_size`` random
    conversations, right-padded with ``pad_id`` to the longest one (targets ``-100`` on padding).

    Right padding is harmless: attention is causal, so no real token ever sees a pad.  Every
    conversation must fit: ``len(ids) - 1 <= seq_len`` (else ``ValueError``).
    """
    check_int("batch_size", batch_size, low=1)
    splits = {"train": [sft_example(e) for e in train]}
    if val is not None:
        splits["val"] = [sft_example(e) for e in val]
    for name, examples in splits.items():
        if not examples:
            raise ValueError(f"the {name} conversations are empty")
        longest = max(len(x) for x, _ in examples)
        if longest > seq_len:
            raise ValueError(f"a {name} conversation has {longest + 1} tokens, more than seq_len + 1 = "
                             f"{seq_len + 1}; drop long conversations or use a longer context")

    def batch_fn(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in splits:
            raise ValueError(f"no {split!r} conversations were given to sft_batch_fn")
        examples = splits[split]
        # all randomness from the Trainer's generator, so runs are reproducible and resumable
        rows = torch.randint(len(examples), (batch_size,), generator=generator).tolist()
        T = max(len(examples[i][0]) for i in rows)
        x = torch.full((batch_size, T), pad_id, dtype=torch.long)
        y = torch.full((batch_size, T), -100, dtype=torch.long)
        for b, i in enumerate(rows):
            xi, yi = examples[i]
            x[b, :len(xi)], y[b, :len(yi)] = xi, yi
        return x, y

    return batch_fn


# --------------------------------------------------------------------- replies and accuracy
@torch.no_grad()
def generate_replies(model: GPT, template: ChatTemplate, conversations: Sequence[Sequence[Message]],
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
    # batch prompts of equal length: no left padding needed, so the replies equal one-by-one decoding
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for T, rows in by_len.items():
        idx = torch.tensor([prompts[i] for i in rows], dtype=torch.long, device=device)
        out = generate(model, idx, max_new_tokens, temperature=0.0, stop_tokens=stop)[:, T:].tolist()
        for i, new in zip(rows, out):
            new = new[:new.index(stop)] if stop in new else new
            replies[i] = template.tokenizer.decode(new)
    return replies


def exact_match(model: GPT, template: ChatTemplate, conversations: Sequence[Sequence[Message]],
                max_new_tokens: int = 8) -> float:
    """Fraction of conversations whose greedy reply equals the last assistant message exactly."""
    if not conversations:
        raise ValueError("conversations is empty")
    replies = generate_replies(model, template, conversations, max_new_tokens)
    answers = [next(m["content"] for m in reversed(conv) if m["role"] == "assistant") for conv in conversations]
    return sum(r == a for r, a in zip(replies, answers)) / len(conversations)
