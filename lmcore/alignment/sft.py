"""Supervised instruction tuning on chat documents, and its evaluation (chapter 10).

**Instruction tuning** (supervised fine-tuning, SFT) trains on documents rendered by a
:class:`~lmcore.alignment.chat.ChatTemplate` with the loss restricted to the assistant's replies:
:func:`sft_example` turns the template's *assistant mask* into next-token targets with ``-100``
(ignored by ``GPT``'s loss) everywhere else, and :func:`sft_batch_fn` pads them into batches for
``lmcore.Trainer``. :func:`generate_replies` answers with greedy decoding and :func:`exact_match`
scores the answers (the toy instruction set of ``lmcore.data.toy_instructions`` has exact answers).
A template whose markers are *special tokens* needs ids the pretrained model has never seen:
:func:`extend_vocab` gives the model rows for them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .._checks import ArgumentTypeError, check_int, check_token_ids
from ..decoding import generate
from ..models import GPT
from .chat import ChatEncoding, ChatTemplate, Message

__all__ = ["sft_example", "sft_batch_fn", "generate_replies", "exact_match", "extend_vocab"]


# ------------------------------------------------------------------------ new token ids
@torch.no_grad()
def extend_vocab(model: GPT, vocab_size: int) -> GPT:
    """A copy of ``model`` that reads and predicts ``vocab_size`` ids (>= its own): new special tokens.

    Ids below the old ``config.vocab_size`` keep their embedding and output rows exactly, so on
    text without the new ids the copy computes the same logits for the old ids.  A new id's rows
    start at the *mean* of the old rows (Hewitt, 2021): a random row could get a large logit
    and drag the model's predictions on ordinary text; the mean gives a new token about the
    average logit, and fine-tuning then moves it.  ``model`` itself is not changed.
    """
    if not isinstance(model, GPT):
        raise ArgumentTypeError(f"model must be an lmcore.GPT, got {type(model).__name__}")
    old = model.config.vocab_size
    check_int("vocab_size", vocab_size, low=old)
    with torch.random.fork_rng(devices=[]):      # building the copy must not move the caller's seed
        new = GPT(dataclasses.replace(model.config, vocab_size=int(vocab_size)))
    state = model.state_dict()
    weight = next(model.parameters())
    for key in ("transformer.wte.weight", "lm_head.weight"):
        if key not in state:
            continue
        rows = state[key][:old]
        grown = torch.zeros_like(new.state_dict()[key], dtype=rows.dtype, device=rows.device)
        grown[:old] = rows
        grown[old:vocab_size] = rows.mean(dim=0)
        state[key] = grown
    new.load_state_dict(state)
    return new.to(device=weight.device, dtype=weight.dtype).train(model.training)


# --------------------------------------------------------------------------------- SFT batches
def sft_example(encoding: ChatEncoding) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and masked next-token targets for one conversation: ``(x, y)``, each (T - 1,).

    ``y[t] = ids[t + 1]`` where token ``t + 1`` is an assistant token (mask True) and ``-100``
    elsewhere, so ``GPT``'s cross-entropy averages over the assistant's tokens only.
    """
    if isinstance(encoding, (str, bytes)) or not isinstance(encoding, Sequence) or len(encoding) != 2:
        raise ArgumentTypeError("encoding must be a ChatEncoding (ids, assistant_mask) from ChatTemplate.encode, "
                                f"got {type(encoding).__name__}")
    ids, mask = encoding
    check_token_ids("encoding.ids", ids)     # float ids would be truncated, negative ones fail in the model
    if not all(isinstance(m, (bool, np.bool_)) for m in mask):
        raise ArgumentTypeError("encoding.assistant_mask must hold one bool per id (True on the assistant's "
                                f"tokens), got {mask!r:.60}")
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
    conversation must fit: ``len(ids) - 1 <= seq_len`` (else ``ValueError``).  ``pad_id`` must be a
    token id of the model's vocabulary (an int >= 0; the upper bound is the model's to enforce:
    the encodings do not carry the vocabulary size).
    """
    check_int("batch_size", batch_size, low=1)
    check_int("seq_len", seq_len, low=1)
    # checked here, not where a batch first needs padding: that is some random later step
    check_int("pad_id", pad_id, low=0)
    splits = {"train": _examples("train", train)}
    if val is not None:
        splits["val"] = _examples("val", val)
    for name, examples in splits.items():
        if not examples:
            raise ValueError(f"the {name} conversations are empty")
        longest = max(len(x) for x, _ in examples)
        if longest > seq_len:
            raise ValueError(f"a {name} conversation has {longest + 1} tokens, more than seq_len + 1 = "
                             f"{seq_len + 1}; drop long conversations or use a longer context")

    def batch_fn(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in splits:
            raise ValueError(f"split must be one of {tuple(splits)}: no {split!r} conversations were given to "
                             "sft_batch_fn")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ArgumentTypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
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


def _examples(name: str, encodings: Sequence[ChatEncoding]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``sft_example`` of each encoding; an error names the split and the index."""
    if isinstance(encodings, (ChatEncoding, str, bytes)) or not isinstance(encodings, Sequence):
        raise ArgumentTypeError(f"{name} must be a list of ChatEncoding (from ChatTemplate.encode), "
                                f"got {type(encodings).__name__}")
    out = []
    for i, e in enumerate(encodings):
        try:
            out.append(sft_example(e))
        except ValueError as err:     # ArgumentTypeError too: its type is kept
            raise type(err)(f"{name}[{i}]: {err}") from None
    return out


# --------------------------------------------------------------------- replies and accuracy
def _check_conversations(model: GPT, template: ChatTemplate, conversations: Sequence[Sequence[Message]]) -> None:
    if not isinstance(model, GPT):
        raise ArgumentTypeError(f"model must be an lmcore.GPT, got {type(model).__name__}")
    if not isinstance(template, ChatTemplate):
        raise ArgumentTypeError(f"template must be a ChatTemplate, got {type(template).__name__}")
    if model.config.vocab_size != template.tokenizer.vocab_size:
        raise ValueError(f"model has vocab_size={model.config.vocab_size} but the template's tokenizer has "
                         f"{template.tokenizer.vocab_size} tokens: they do not belong together")
    if isinstance(conversations, (str, bytes)) or not isinstance(conversations, Sequence) \
            or (conversations and isinstance(conversations[0], Mapping)):
        raise ArgumentTypeError("conversations must be a list of conversations, each a list of {'role', "
                                f"'content'}} dicts, got {type(conversations).__name__} {conversations!r:.60}")
    for i, conv in enumerate(conversations):
        try:
            template.render(conv)         # checks every message
        except ValueError as err:         # ArgumentTypeError too: its type is kept
            raise type(err)(f"conversations[{i}]: {err}") from None
        except TypeError as err:
            raise ArgumentTypeError(f"conversations[{i}]: {err}") from None


@torch.no_grad()
def generate_replies(model: GPT, template: ChatTemplate, conversations: Sequence[Sequence[Message]],
                     max_new_tokens: int = 8) -> list[str]:
    """Greedy assistant replies to each conversation's messages *before its last assistant turn*.

    Each prompt is rendered with the generation prompt; the model continues it until the
    end-of-turn marker (a single-id marker is used as the stop token) or ``max_new_tokens``.
    Prompts of equal length are decoded together in one batch (greedy decoding is deterministic,
    so batching does not change the replies).
    """
    _check_conversations(model, template, conversations)
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
    _check_conversations(model, template, conversations)
    if not conversations:
        raise ValueError("conversations is empty")
    missing = next((i for i, conv in enumerate(conversations) if all(m["role"] != "assistant" for m in conv)), None)
    if missing is not None:
        raise ValueError(f"conversations[{missing}] has no assistant message to compare the reply with")
    replies = generate_replies(model, template, conversations, max_new_tokens)
    answers = [next(m["content"] for m in reversed(conv) if m["role"] == "assistant") for conv in conversations]
    return sum(r == a for r, a in zip(replies, answers)) / len(conversations)
