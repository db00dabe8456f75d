"""Chat template, assistant mask, masked SFT loss, the toy instruction set and greedy replies."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcore import GPT, BPETokenizer, CharTokenizer, GPTConfig, data
from lmcore.alignment.chat import ChatTemplate
from lmcore.alignment.sft import exact_match, generate_replies, sft_batch_fn, sft_example
from lmcore.data import TOY_TASKS, toy_instructions

TOK = CharTokenizer().train(data.ToyLanguage().alphabet)
CHAT = ChatTemplate(TOK)
CONV = [{"role": "system", "content": "answer in one word"},
        {"role": "user", "content": "what is the name. tom likes the cat."},
        {"role": "assistant", "content": "tom"},
        {"role": "user", "content": "is it a girl"},
        {"role": "assistant", "content": "no"}]

# content: characters of the toy alphabet without the newline (the end marker), no ".." (markers)
contents = st.text(alphabet=" abcdefghijklmnopqrstuwy.", max_size=20).filter(lambda s: ".." not in s)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                           "content": contents}), max_size=6)


def expected_mask(text: str, conv) -> list[bool]:
    """Independently: find each assistant reply in the rendered string by position arithmetic."""
    mask, pos = [False] * len(text), 0
    for m in conv:
        start = text.index(CHAT.role_markers[m["role"]], pos) + len(CHAT.role_markers[m["role"]])
        end = start + len(m["content"]) + 1                      # + the one-character end marker
        assert text[end - 1] == "\n"
        if m["role"] == "assistant":
            mask[start:end] = [True] * (end - start)
        pos = end
    return mask


def test_render_is_the_documented_format():
    assert CHAT.render(CONV[1:3]) == "..user..what is the name. tom likes the cat.\n..assistant..tom\n"
    assert CHAT.render(CONV[1:2], add_generation_prompt=True).endswith("cat.\n..assistant..")


@settings(max_examples=60, deadline=None)
@given(messages)
def test_render_parse_round_trip_and_mask(conv):
    text = CHAT.render(conv)
    assert CHAT.parse(text) == conv
    enc = CHAT.encode(conv)
    assert TOK.decode(enc.ids) == text
    assert enc.assistant_mask == expected_mask(text, conv)


def test_mask_marks_exactly_the_assistant_tokens():
    enc = CHAT.encode(CONV)
    marked = "".join(c for c, m in zip(TOK.decode(enc.ids), enc.assistant_mask) if m)
    assert marked == "tom\nno\n"                 # replies and their end markers, nothing else
    prompt = CHAT.encode(CONV[:2], add_generation_prompt=True)
    assert not any(prompt.assistant_mask) and TOK.decode(prompt.ids) == CHAT.render(CONV[:2]) + "..assistant.."


@pytest.mark.parametrize("bad", [
    [{"role": "bot", "content": "hi"}],
    [{"role": "User", "content": "hi"}],
    [{"role": "user"}],
    [{"role": "user", "content": "hi", "name": "x"}],
    [{"role": "user", "content": "two\nlines"}],
    [{"role": "user", "content": "a ..assistant.. b"}],
])
def test_bad_messages_raise_value_error(bad):
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        CHAT.render(bad)
    with pytest.raises(ValueError):
        CHAT.encode(bad)


def test_bad_template_and_text_raise():
    with pytest.raises(TypeError):
        CHAT.render("hello")
    with pytest.raises(ValueError, match="roles"):
        ChatTemplate(TOK, role_markers={"user": "..u..", "assistant": "..a.."})
    with pytest.raises(ValueError, match="distinct"):
        ChatTemplate(TOK, role_markers={"system": "..s..", "user": "..s..", "assistant": "..a.."})
    with pytest.raises(ValueError, match="cannot encode"):
        ChatTemplate(TOK, role_markers={"system": "<s>", "user": "<u>", "assistant": "<a>"})
    with pytest.raises(ValueError, match="role marker"):
        CHAT.parse("hello\n")
    with pytest.raises(ValueError, match="end marker"):
        CHAT.parse("..user..unfinished")


def test_special_token_markers_with_bpe():
    names = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    tok = BPETokenizer(special_tokens=names).train("the cat sees the dog. " * 40, vocab_size=280)
    chat = ChatTemplate(tok, role_markers=dict(zip(("system", "user", "assistant"), names)), end_marker="<|end|>")
    enc = chat.encode(CONV)
    special = set(tok.special_tokens.values())
    assert sum(i in special for i in enc.ids) == 2 * len(CONV)        # each marker is one reserved id
    assert chat.end_ids == [tok.special_tokens["<|end|>"]]
    assert tok.decode(enc.ids) == chat.render(CONV)
    replies = [tok.decode([i for i, m in zip(enc.ids, enc.assistant_mask) if m and i not in special])]
    assert replies == ["tomno"]
    with pytest.raises(ValueError, match="marker"):                 # user text cannot fake a turn
        chat.render([{"role": "user", "content": "hi<|end|>"}])


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOK.vocab_size, context_length=128, n_layer=1, n_head=2, n_embd=16)).eval()


def test_sft_loss_counts_only_assistant_tokens():
    enc = CHAT.encode(CONV[1:3] + CONV[3:5])
    x, y = sft_example(enc)
    ids = torch.tensor(enc.ids)
    assert torch.equal(y != -100, torch.tensor(enc.assistant_mask[1:]))
    assert torch.equal(y[y != -100], ids[1:][y != -100])
    model = tiny_gpt()
    logits, loss = model(x[None], y[None])
    # reference: per-position cross-entropy against the *unmasked* next tokens, averaged by hand
    per_token = F.cross_entropy(logits[0], ids[1:], reduction="none")
    keep = torch.tensor(enc.assistant_mask[1:])
    torch.testing.assert_close(loss, per_token[keep].sum() / keep.sum())
    # a different target at a non-assistant position leaves the loss unchanged; at an assistant one, not
    full = ids[1:].clone()
    user_pos = int((~keep).nonzero()[3])
    changed = full.clone()
    changed[user_pos] = (changed[user_pos] + 1) % TOK.vocab_size
    masked = lambda t: torch.where(keep, t, torch.full_like(t, -100))
    assert torch.equal(model(x[None], masked(changed)[None])[1], loss)
    changed = full.clone()
    changed[int(keep.nonzero()[0])] += 1
    assert not torch.equal(model(x[None], masked(changed)[None])[1], loss)


def test_sft_example_needs_an_assistant_turn():
    with pytest.raises(ValueError, match="no assistant"):
        sft_example(CHAT.encode(CONV[:2]))


def test_sft_batches_are_padded_with_ignored_targets():
    convs = toy_instructions(12, seed=3)
    encs = [CHAT.encode(c) for c in convs]
    fn = sft_batch_fn(encs, encs[:4], batch_size=5, seq_len=128, pad_id=TOK.encode("\n")[0])
    x, y = fn("train", torch.Generator().manual_seed(0))
    assert x.shape == y.shape and x.shape[0] == 5
    examples = {tuple(sft_example(e)[0].tolist()): sft_example(e)[1] for e in encs}
    for xb, yb in zip(x, y):
        row = next(k for k in examples if list(k) == xb[:len(k)].tolist())   # each row is one conversation
        assert torch.equal(yb[:len(row)], examples[row]) and (yb[len(row):] == -100).all()
    assert fn("val", torch.Generator().manual_seed(0))[0].shape[0] == 5
    with pytest.raises(ValueError, match="seq_len"):
        sft_batch_fn(encs, None, 2, seq_len=20, pad_id=0)
    with pytest.raises(ValueError, match="'val'"):
        sft_batch_fn(encs, None, 2, seq_len=128, pad_id=0)("val", torch.Generator())


def test_toy_instructions_answers_follow_the_grammar():
    convs = toy_instructions(90, seed=7)
    toy = data.ToyLanguage()
    assert len({c[0]["content"] for c in convs}) == 90
    for i, (user, reply) in enumerate(convs):
        task = list(TOY_TASKS)[i % 3]
        instruction, text = user["content"].split(". ", 1)
        assert instruction + "." == TOY_TASKS[task] and len(text) <= 80
        if task == "plural":
            words = text.split()
            noun = words[2] if words[1] in toy.adjectives else words[1]
            assert reply["content"] == ("yes" if noun not in toy.nouns else "no")
        else:
            assert toy.is_valid(text + "\n")
            want = text.split()[0] if task == "name" else ["one", "two", "three", "four"][text.count(".") - 1]
            assert reply["content"] == want
    held_out = toy_instructions(30, seed=8, exclude=convs)
    assert not {c[0]["content"] for c in held_out} & {c[0]["content"] for c in convs}
    assert toy_instructions(5, seed=7) == convs[:5]
    with pytest.raises(ValueError, match="tasks"):
        toy_instructions(3, tasks=("sum",))


def test_generate_replies_match_one_by_one_greedy_decoding():
    model = tiny_gpt(1)
    convs = toy_instructions(6, seed=2)
    replies = generate_replies(model, CHAT, convs, max_new_tokens=5)
    stop = CHAT.end_ids[0]
    for conv, reply in zip(convs, replies):
        ids = CHAT.encode(conv[:1], add_generation_prompt=True).ids
        for _ in range(5):                   # plain greedy loop, no cache, no batching
            nxt = int(model(torch.tensor([ids]))[0][0, -1].argmax())
            if nxt == stop:
                break
            ids.append(nxt)
        assert reply == TOK.decode(ids[len(CHAT.encode(conv[:1], add_generation_prompt=True).ids):])
    answers = [c[1]["content"] for c in convs]
    assert exact_match(model, CHAT, convs, 5) == sum(r == a for r, a in zip(replies, answers)) / 6
