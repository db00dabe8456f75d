"""The chapter-10 checks pass the reference solutions and fail stubs and plausible wrong answers."""

from _checks import assert_check_behaves

from lmcore.exercises import check_assistant_mask, check_lora_forward, check_lora_param_count


# --- assistant mask -----------------------------------------------------------------------------
def mask_solution(messages, template):
    tok, mask = template.tokenizer, []
    for m in messages:
        mask += [False] * len(tok.encode(template.role_markers[m["role"]]))
        reply = m["role"] == "assistant"
        mask += [reply] * len(tok.encode(m["content"] + template.end_marker))
    return mask


def mask_library(messages, template):
    return template.encode(messages).assistant_mask


def mask_without_end_marker(messages, template):
    tok, mask = template.tokenizer, []
    for m in messages:
        mask += [False] * len(tok.encode(template.role_markers[m["role"]]))
        mask += [m["role"] == "assistant"] * len(tok.encode(m["content"])) + [False]
    return mask


def mask_with_user_turns(messages, template):
    tok, mask = template.tokenizer, []
    for m in messages:
        mask += [False] * len(tok.encode(template.role_markers[m["role"]]))
        mask += [m["role"] != "system"] * len(tok.encode(m["content"] + template.end_marker))
    return mask


def mask_with_start_marker(messages, template):
    tok, mask = template.tokenizer, []
    for m in messages:
        reply = m["role"] == "assistant"
        mask += [reply] * len(tok.encode(template.role_markers[m["role"]] + m["content"] + template.end_marker))
    return mask


def mask_everything(messages, template):
    return [True] * len(template.encode(messages).ids)


# --- LoRA forward -------------------------------------------------------------------------------
def lora_solution(x, W, b, A, B, alpha, r):
    return x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T


def lora_unscaled(x, W, b, A, B, alpha, r):
    return x @ W.T + b + (x @ A.T) @ B.T


def lora_inverted_scale(x, W, b, A, B, alpha, r):
    return x @ W.T + b + (r / alpha) * (x @ A.T) @ B.T


def lora_base_only(x, W, b, A, B, alpha, r):
    return x @ W.T + b


# --- parameter count ----------------------------------------------------------------------------
def count_solution(n_layer, n_embd, r):
    d = n_embd
    return n_layer * r * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))


def count_full_matrices(n_layer, n_embd, r):
    d = n_embd
    return n_layer * r * (d * 3 * d + d * d + d * 4 * d + 4 * d * d)


def count_attention_only(n_layer, n_embd, r):
    return n_layer * r * ((n_embd + 3 * n_embd) + 2 * n_embd)


def count_square_mlp(n_layer, n_embd, r):
    return n_layer * r * (4 * n_embd + 2 * n_embd + 2 * n_embd + 2 * n_embd)


def test_assistant_mask_check(capsys):
    for reference in (mask_solution, mask_library):
        assert_check_behaves(check_assistant_mask, reference,
                             [(mask_without_end_marker, "end-of-turn"), (mask_with_user_turns, "user tokens"),
                              (mask_with_start_marker, "start marker"), (mask_everything, "user tokens")], capsys)


def test_lora_forward_check(capsys):
    assert_check_behaves(check_lora_forward, lora_solution,
                         [(lora_unscaled, "alpha / r"), (lora_inverted_scale, "upside down"),
                          (lora_base_only, "base layer"), lambda *a: lora_solution(*a).tolist()], capsys)


def test_lora_param_count_check(capsys):
    assert_check_behaves(check_lora_param_count, count_solution,
                         [(count_full_matrices, "not in·out"), (count_attention_only, "all four"),
                          (count_square_mlp, "4·n_embd"), lambda *a: float(count_solution(*a))], capsys)


# --- adapter scale sweep (an experiment) --------------------------------------------------------
def _scale_setup():
    import torch

    from lmcore import GPT, CharTokenizer, GPTConfig, data
    from lmcore.alignment import ChatTemplate
    from lmcore.models.lora import apply_lora, lora_modules

    tok = CharTokenizer(data.ToyLanguage().alphabet)
    chat = ChatTemplate(tok)
    torch.manual_seed(0)
    model = apply_lora(GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=128, n_layer=1, n_head=2,
                                     n_embd=16)), r=2, alpha=4).eval()
    with torch.no_grad():                  # a trained-looking adapter: B away from zero
        for layer in lora_modules(model):
            layer.lora_B.normal_(0, 0.5)
    convs = data.toy_instructions(6, seed=4, max_chars=40)
    return model, chat, convs


def _token_mean(model, chat, convs):
    from lmcore.alignment import sft_example
    total = count = 0
    for c in convs:
        x, y = sft_example(chat.encode(c))
        n = int((y != -100).sum())
        total += model(x[None], y[None])[1].item() * n
        count += n
    return total / count


def _sweep(model, chat, convs, *, restore=True, cumulative=False, per_conv=False, apply=True, bare=False):
    import torch

    from lmcore.alignment import sft_example
    from lmcore.exercises import ADAPTER_SCALES
    from lmcore.models.lora import lora_modules
    layers = lora_modules(model)
    trained = [layer.scaling for layer in layers]
    out = {}
    with torch.no_grad():
        for s in ADAPTER_SCALES:
            for layer in layers:
                if apply:
                    layer.scaling = s * layer.scaling if cumulative else s if bare else s * layer.alpha / layer.r
            if per_conv:
                losses = [model(*(t[None] for t in sft_example(chat.encode(c))))[1].item() for c in convs]
                out[s] = sum(losses) / len(losses)
            else:
                out[s] = _token_mean(model, chat, convs)
    if restore:
        for layer, scaling in zip(layers, trained):
            layer.scaling = scaling
    return out


def test_adapter_scale_check(capsys):
    from lmcore.exercises import check_adapter_scale

    model, chat, convs = _scale_setup()

    def check(fn):
        return check_adapter_scale(fn, model, chat, convs)

    assert_check_behaves(check, lambda m: _sweep(m, chat, convs),
                         [(lambda m: _sweep(m, chat, convs, apply=False), "same loss"),
                          (lambda m: _sweep(m, chat, convs, per_conv=True), "per conversation"),
                          (lambda m: _sweep(m, chat, convs, cumulative=True), "same loss"),
                          (lambda m: _sweep(m, chat, convs, bare=True), "scaling = s * alpha / r"),
                          (lambda m: _sweep(m, chat, convs, restore=False), "restore"),
                          (lambda m: list(_sweep(m, chat, convs).values()), "dict")], capsys)
    # the check leaves the trained scales in place, whatever the student's function did
    assert all(layer.scaling == 2.0 for layer in __import__("lmcore").models.lora.lora_modules(model))
