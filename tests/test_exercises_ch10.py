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
