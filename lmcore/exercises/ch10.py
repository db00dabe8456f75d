"""Checks for the exercises of chapter 10, "Post-training: chat, instruction tuning, LoRA".

* ``check_assistant_mask(fn)``: ``fn(messages, template) -> list[bool]``, one flag per token of
  ``template.encode(messages).ids``, True on the assistant's content and its end-of-turn marker.
* ``check_lora_forward(fn)``: ``fn(x, W, b, A, B, alpha, r) -> y``, the output of a LoRA layer.
* ``check_lora_param_count(fn)``: ``fn(n_layer, n_embd, r) -> int``, the adapter parameters that
  ``apply_lora`` adds to a ``GPT`` with the default targets, counted on real models here.
* ``check_adapter_scale(sweep, model, template, conversations)``, an experiment: ``sweep(model)``
  returns ``{s: loss}``, the loss on the answers of ``conversations`` with every adapter of
  ``model`` scaled by ``s`` (``scaling = s * alpha / r``), for each ``s`` in ``ADAPTER_SCALES``,
  and restores the trained scales; the check measures the losses again.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ._check import CheckFailed, CheckResult, expect_measurements, run_check

__all__ = ["check_assistant_mask", "check_lora_forward", "check_lora_param_count", "check_adapter_scale",
           "ADAPTER_SCALES"]

#: the adapter scales of the experiment (0: the base model, 1: the trained adapter)
ADAPTER_SCALES = (0.0, 0.5, 1.0, 1.5, 2.0)


def _conversations() -> list[list[dict[str, str]]]:
    return [
        [{"role": "user", "content": "what is the name. tom likes the cat."},
         {"role": "assistant", "content": "tom"}],
        [{"role": "system", "content": "answer in one word"},
         {"role": "user", "content": "is the subject plural. the cats see the dog."},
         {"role": "assistant", "content": "yes"},
         {"role": "user", "content": "and the dog"},
         {"role": "assistant", "content": "no"}],
        [{"role": "user", "content": "say nothing"}, {"role": "assistant", "content": ""}],
        [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"}],
    ]


def _start_marker_positions(text: str, marker: str) -> set[int]:
    return {i + k for i in range(len(text)) if text.startswith(marker, i) for k in range(len(marker))}


def check_assistant_mask(assistant_mask: Callable, quiet: bool = False) -> CheckResult:
    """Check ``assistant_mask(messages, template) -> list[bool]`` against ``ChatTemplate.encode``."""
    from ..alignment.chat import ChatTemplate
    from ..data import ToyLanguage
    from ..tokenizers import CharTokenizer

    template = ChatTemplate(CharTokenizer().train(ToyLanguage().alphabet))

    def body() -> None:
        for conv in _conversations():
            enc = template.encode(conv)
            got = assistant_mask(conv, template)
            try:
                got = [bool(v) for v in got]
            except TypeError:
                raise CheckFailed(f"return a list of booleans, got {type(got).__name__}") from None
            if len(got) != len(enc.ids):
                raise CheckFailed(f"for a conversation of {len(enc.ids)} tokens you returned {len(got)} flags: "
                                  "one flag per token of template.encode(messages).ids, markers included")
            if got == enc.assistant_mask:
                continue
            text = template.tokenizer.decode(enc.ids)
            marked = "".join(c if m else "_" for c, m in zip(text, got)).replace("\n", "⏎")
            extra = [i for i, (g, w) in enumerate(zip(got, enc.assistant_mask)) if g and not w]
            missing = [i for i, (g, w) in enumerate(zip(got, enc.assistant_mask)) if w and not g]
            shown = text.replace("\n", "⏎")
            if missing and all(text[i] == template.end_marker for i in missing):
                hint = ("the end-of-turn marker after an assistant reply must be trained on too: it is how the "
                        "model learns to stop")
            elif extra and all(text[i] == template.end_marker for i in extra):
                hint = "only the end marker that closes an *assistant* turn is the assistant's"
            elif extra and set(extra) <= _start_marker_positions(text, template.generation_prompt):
                hint = ("the assistant's start marker is part of the prompt (the template writes it, the model "
                        "never has to)")
            elif extra:
                hint = "system and user tokens are given to the model, not predicted: mask them out"
            else:
                hint = "every token of an assistant reply's content must be marked"
            raise CheckFailed(f"for {shown!r} your mask marks {marked!r}; {hint}")

    return run_check("assistant_mask", body, quiet)


def _reference_lora(x, W, b, A, B, alpha, r):
    return x.double() @ (W.double() + (alpha / r) * B.double() @ A.double()).T + b.double()


def check_lora_forward(lora_forward: Callable, quiet: bool = False) -> CheckResult:
    """Check ``lora_forward(x, W, b, A, B, alpha, r)``: x (..., in), W (out, in), b (out,),
    A (r, in), B (out, r) -> (..., out) = x Wᵀ + b + (alpha / r) · x Aᵀ Bᵀ."""

    def body() -> None:
        g = torch.Generator().manual_seed(10)
        for shape, n_in, n_out, r, alpha in [((5,), 6, 4, 2, 8.0), ((2, 3), 8, 8, 4, 4.0), ((7,), 5, 9, 1, 3.0)]:
            x = torch.randn(*shape, n_in, generator=g)
            W, b = torch.randn(n_out, n_in, generator=g), torch.randn(n_out, generator=g)
            A, B = torch.randn(r, n_in, generator=g), torch.randn(n_out, r, generator=g)
            got = lora_forward(x, W, b, A, B, alpha, r)
            if not isinstance(got, torch.Tensor):
                raise CheckFailed(f"return a tensor, got {type(got).__name__}")
            if tuple(got.shape) != (*shape, n_out):
                raise CheckFailed(f"for x of shape {(*shape, n_in)} and W of shape {(n_out, n_in)} the output should "
                                  f"have shape {(*shape, n_out)}, got {tuple(got.shape)}")
            want = _reference_lora(x, W, b, A, B, alpha, r)
            if torch.allclose(got.double(), want, atol=1e-4):
                continue
            base = x.double() @ W.double().T + b.double()
            update = want - base
            if torch.allclose(got.double(), base, atol=1e-4):
                hint = "your output is the base layer's alone: add the low-rank update B A x"
            elif torch.allclose(got.double(), base + update * r / alpha, atol=1e-4):
                hint = "the update has the right direction but the wrong size: scale B A x by alpha / r"
            elif torch.allclose(got.double() - base, update * (r / alpha) ** 2, atol=1e-4):
                hint = "the scaling is upside down: the factor is alpha / r, not r / alpha"
            else:
                hint = ("try it with A = 0 (the output must be the base layer's) and with W = 0, b = 0 "
                        "(the update alone)")
            raise CheckFailed(f"with r={r}, alpha={alpha}: {hint}")

    return run_check("lora_forward", body, quiet)


def check_lora_param_count(lora_param_count: Callable, quiet: bool = False) -> CheckResult:
    """Check ``lora_param_count(n_layer, n_embd, r) -> int`` against ``apply_lora`` on real GPTs."""
    from ..models import GPT, GPTConfig
    from ..models.lora import apply_lora, lora_parameter_counts, mark_only_lora_trainable

    def body() -> None:
        for n_layer, n_embd, r in [(1, 8, 1), (2, 16, 4), (4, 128, 8), (3, 24, 2)]:
            model = GPT(GPTConfig(vocab_size=5, context_length=4, n_layer=n_layer, n_head=2, n_embd=n_embd))
            want = lora_parameter_counts(mark_only_lora_trainable(apply_lora(model, r=r))).trainable
            got = lora_param_count(n_layer, n_embd, r)
            if isinstance(got, bool) or not isinstance(got, int):
                raise CheckFailed(f"return an int, got {type(got).__name__}")
            if got == want:
                continue
            d = n_embd
            shapes = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)]
            if got == n_layer * r * sum(a * b for a, b in shapes) or got == n_layer * sum(a * b for a, b in shapes):
                hint = "a rank-r adapter of an in x out matrix has r·in + out·r numbers (A and B), not in·out"
            elif got in (n_layer * r * sum(a + b for a, b in shapes[:2]), r * sum(a + b for a, b in shapes)):
                hint = "count all four projections (c_attn, attention c_proj, c_fc, MLP c_proj) in every layer"
            else:
                hint = ("list each adapted matrix with its shape: c_attn n_embd -> 3·n_embd, attention c_proj "
                        "n_embd -> n_embd, c_fc n_embd -> 4·n_embd, MLP c_proj 4·n_embd -> n_embd")
            raise CheckFailed(f"n_layer={n_layer}, n_embd={n_embd}, r={r}: you said {got}; {hint}")

    return run_check("lora_param_count", body, quiet)


@torch.no_grad()
def _answer_losses(model, template, conversations) -> tuple[float, float]:
    """(token-weighted mean, mean over conversations) of the masked loss on the assistant's tokens."""
    from ..alignment.sft import sft_example

    device = next(model.parameters()).device
    total = count = 0.0
    per_conv = []
    for conv in conversations:
        x, y = sft_example(template.encode(conv))
        n = int((y != -100).sum())
        loss = model(x[None].to(device), y[None].to(device))[1].item()
        total, count = total + loss * n, count + n
        per_conv.append(loss)
    return total / count, sum(per_conv) / len(per_conv)


def check_adapter_scale(sweep: Callable, model, template, conversations: Sequence, quiet: bool = False) -> CheckResult:
    """Check ``sweep(model) -> {s: answer loss}`` for every ``s`` in ``ADAPTER_SCALES``, where the answer
    loss is the masked loss on the assistant's tokens of ``conversations`` averaged over all those
    tokens (as ``answer_loss`` in the chapter), measured with every ``LoRALinear`` of ``model`` at
    ``scaling = s * alpha / r``; ``sweep`` must restore the trained scales.  The check then sets the
    scales itself, measures, and restores them."""
    from ..models.lora import lora_modules

    def body() -> None:
        layers = lora_modules(model)
        if not layers:
            raise CheckFailed("model has no LoRA adapters: pass the LoRA model you measured")
        if any(layer.merged for layer in layers):
            raise CheckFailed("the adapters are merged into the weights, so changing their scale does nothing: "
                              "unmerge_lora(model) first")
        saved = [layer.scaling for layer in layers]
        try:
            measured = sweep(model)
        finally:
            restored = [layer.scaling for layer in layers]
            for layer, scaling in zip(layers, saved):
                layer.scaling = scaling
        if restored != saved:
            raise CheckFailed("after your sweep the adapters keep the last scale you set: restore each layer's "
                              "trained scaling at the end")
        got = expect_measurements(measured, "measured", ADAPTER_SCALES, "s", "loss in nats per token",
                                  "measure the answer loss once per scale s")
        want, per_conv = {}, {}
        try:
            for s in ADAPTER_SCALES:
                for layer in layers:
                    layer.scaling = s * layer.alpha / layer.r
                want[s], per_conv[s] = _answer_losses(model, template, conversations)
        finally:
            for layer, scaling in zip(layers, saved):
                layer.scaling = scaling

        def close(a: float, b: float) -> bool:
            return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-4)

        wrong = [s for s in ADAPTER_SCALES if not close(got[s], want[s])]
        if not wrong:
            return
        if all(close(got[s], got[ADAPTER_SCALES[0]]) for s in ADAPTER_SCALES):
            hint = ("every scale gives the same loss: set layer.scaling = s * layer.alpha / layer.r on every "
                    "LoRALinear of lora_modules(model) before measuring")
        elif all(close(got[s], per_conv[s]) for s in ADAPTER_SCALES):
            hint = ("you averaged the loss per conversation; weight each conversation by its number of answer "
                    "tokens (the mean over all answer tokens)")
        elif not close(got[0.0], want[0.0]):
            hint = "at s = 0 every adapter is switched off, so the loss must be the base model's"
        else:
            hint = ("at s = 1 the loss must be the trained adapter's: s multiplies the trained factor, "
                    "scaling = s * alpha / r")
        raise CheckFailed(f"measured[{wrong[0]}] = {got[wrong[0]]:.4g} does not match the loss at that scale; {hint}")

    return run_check("adapter_scale", body, quiet)
