"""Whole sequences as rows of token ids, and the tiny prior they are scored with (chapter 11).

A text is a complete sequence *without* its end marker; its row is ``[bos, x1, …, xn, eos]``,
right-padded with ``IGNORE`` (-100). ``sequence_logprobs`` (from :mod:`lmcore.decoding.scoring`,
re-exported here) gives the exact ``log π(x)`` of every row, ``sample_sequences`` draws from the
same distribution, and ``train_tiny_prior`` trains the small GPT the enumerable examples use.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..._checks import ArgumentTypeError, check_int
from ...data.languages import tiny_language
from ...decoding import generate
from ...decoding.scoring import IGNORE_INDEX as IGNORE
from ...decoding.scoring import sequence_logprobs
from ...models import GPT, GPTConfig
from ...tokenizers import CharTokenizer, Tokenizer
from ...training import TrainConfig, Trainer

__all__ = ["encode_sequences", "decode_sequences", "sequence_logprobs", "sample_sequences",
           "train_tiny_prior"]


def encode_sequences(tokenizer: Tokenizer, texts: Sequence[str], max_len: int | None = None,
                     bos: str = "\n", eos: str = "\n") -> torch.Tensor:
    """Rows ``[bos, x1, …, xn, eos]`` as a (N, T) long tensor, right-padded with -100.

    A text is a complete sequence *without* its end marker. With ``max_len`` set, generation
    stops after ``max_len`` tokens, so a text of exactly ``max_len`` tokens has no ``eos`` (the
    space of strings up to ``max_len`` then holds all of the model's probability).
    """
    _check_tokenizer(tokenizer)
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    check_int("max_len", max_len, low=1, optional=True)
    (bos_id,), (eos_id,) = _single_token(tokenizer, bos, "bos"), _single_token(tokenizer, eos, "eos")
    rows = []
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must hold strings, got {type(text).__name__}")
        ids = tokenizer.encode(text)
        if eos_id in ids:
            # an eos inside the text would end the sequence early: its row would score another text
            raise ValueError(f"text {text!r} contains the end marker {eos!r}; pass texts without it")
        if max_len is not None and len(ids) > max_len:
            raise ValueError(f"text {text!r} has {len(ids)} tokens, more than max_len={max_len}")
        rows.append([bos_id] + ids + ([] if max_len is not None and len(ids) == max_len else [eos_id]))
    out = torch.full((len(rows), max(map(len, rows))), IGNORE, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out


def _check_tokenizer(tokenizer: Tokenizer) -> None:
    if not isinstance(tokenizer, Tokenizer):
        raise ArgumentTypeError(f"tokenizer must be an lmcore Tokenizer, got {type(tokenizer).__name__}")


def _check_generator(generator: torch.Generator | None) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")


def _single_token(tokenizer: Tokenizer, s: str, name: str) -> list[int]:
    if not isinstance(s, str):
        raise ArgumentTypeError(f"{name} must be a str (one token of the tokenizer), got {type(s).__name__}")
    ids = tokenizer.encode(s)
    if len(ids) != 1:
        raise ValueError(f"{name}={s!r} must be a single token of the tokenizer, got ids {ids}")
    return ids


def decode_sequences(tokenizer: Tokenizer, rows: torch.Tensor, eos: str = "\n") -> list[str]:
    """Texts of rows from ``encode_sequences`` (or of generated ids): drop ``bos``, stop at ``eos``."""
    _check_tokenizer(tokenizer)
    (eos_id,) = _single_token(tokenizer, eos, "eos")
    if not isinstance(rows, torch.Tensor) or rows.ndim != 2 or rows.dtype.is_floating_point \
            or rows.dtype.is_complex or rows.dtype == torch.bool:
        raise ArgumentTypeError("rows must be a (N, T) integer tensor of token ids (from encode_sequences or "
                                f"generate), got {type(rows).__name__} {getattr(rows, 'shape', '')}")
    rows = rows.cpu()       # once: the check and the decoding below both read every value
    bad = (rows != IGNORE) & ((rows < 0) | (rows >= tokenizer.vocab_size))
    if bad.any():
        i, j = bad.nonzero()[0].tolist()
        raise ValueError(f"rows[{i}, {j}] = {int(rows[i, j])} is neither a token id of the tokenizer "
                         f"(vocab_size {tokenizer.vocab_size}) nor padding ({IGNORE})")
    texts = []
    for row in rows.tolist():
        ids = []
        for i in row[1:]:
            if i == eos_id or i == IGNORE:
                break
            ids.append(i)
        texts.append(tokenizer.decode(ids))
    return texts


def sample_sequences(model: GPT, tokenizer: Tokenizer, n: int, max_len: int,
                     generator: torch.Generator | None = None, bos: str = "\n", eos: str = "\n",
                     temperature: float = 1.0) -> list[str]:
    """``n`` texts sampled from ``model`` after ``bos``, each ended by ``eos`` or by ``max_len`` tokens.

    These are exact samples of the distribution that ``sequence_logprobs`` scores (with the same
    ``max_len``) when ``temperature == 1``; ``max_len`` is at most the model's ``context_length``
    (the longest row it can score).
    """
    if not isinstance(model, GPT):
        raise ArgumentTypeError(f"model must be an lmcore.GPT, got {type(model).__name__}")
    _check_tokenizer(tokenizer)
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model has vocab_size={model.config.vocab_size} but the tokenizer has "
                         f"{tokenizer.vocab_size} tokens: they do not belong together")
    check_int("n", n, low=1)
    _check_max_len(max_len, model)
    _check_generator(generator)
    (bos_id,), (eos_id,) = _single_token(tokenizer, bos, "bos"), _single_token(tokenizer, eos, "eos")
    device = next(model.parameters()).device
    idx = torch.full((n, 1), bos_id, dtype=torch.long, device=device)
    out = generate(model, idx, max_len, temperature=temperature, stop_tokens=eos_id, generator=generator)
    return decode_sequences(tokenizer, out.cpu(), eos)


def _check_max_len(max_len: int, model: GPT) -> None:
    """``max_len`` in ``[1, context_length]``: a sample of ``max_len`` tokens is a row of ``max_len``
    input positions (bos and the text), the most the model can score without cropping its context."""
    try:
        check_int("max_len", max_len, low=1, high=model.config.context_length)
    except ValueError as e:     # ArgumentTypeError too: its type is kept
        raise type(e)(f"{e} (the model's context_length: a longer sample could not be scored)") from None


def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``generator`` (which may live on the CPU)."""
    # one draw from the caller's generator: the samples still follow its seed, on any device
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device).manual_seed(seed)


def train_tiny_prior(max_len: int = 5, alphabet: str = "abc", steps: int = 300, seed: int = 0,
                     device: str | torch.device | None = None) -> tuple[GPT, CharTokenizer]:
    """Train a small ``GPT`` (2 layers, 32 dims) on ``tiny_language`` lines; returns (model, tokenizer).

    The vocabulary is ``alphabet`` plus ``"\\n"`` (which both begins and ends a string), so the
    strings up to ``max_len`` hold all of the model's probability: a prior we can enumerate.
    Deterministic on a CPU for a fixed ``seed``; takes a few seconds.
    """
    check_int("steps", steps, low=1)
    if isinstance(alphabet, str) and "\n" in alphabet:
        raise ValueError(f"alphabet must not contain '\\n', which begins and ends every string; got {alphabet!r}")
    text = "\n" + "\n".join(tiny_language(4000, max_len, alphabet, seed)) + "\n"
    tok = CharTokenizer().train("\n" + alphabet)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=4 * (max_len + 1), n_layer=2, n_head=2, n_embd=32))
    config = TrainConfig(max_steps=steps, batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                         weight_decay=0.0, seed=seed, device=None if device is None else str(device),
                         progress=False, eval_interval=steps)
    trainer = Trainer(model, config, ids)
    for _ in range(steps):
        trainer.train_step()
    return model.eval(), tok
