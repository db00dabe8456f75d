"""Special tokens for chat (chapter 10): CharTokenizer's reserved ids, a ChatML-style template that
writes them, and ``extend_vocab``, which gives a pretrained GPT rows for them."""
import hashlib
import json
from pathlib import Path

import pytest
import torch

import lmcore
from lmcore import GPT, CharTokenizer, GPTConfig, data, load_tokenizer
from lmcore._checks import ArgumentTypeError
from lmcore.alignment.chat import ChatTemplate
from lmcore.alignment.sft import extend_vocab, generate_replies
from lmcore.data import ToyLanguage

ALPHABET = data.ToyLanguage().alphabet
SPECIAL = ["<|im_start|>", "<|im_end|>"]


def chatml(tok: CharTokenizer) -> ChatTemplate:
    """A ChatML-style template whose every marker is one special token."""
    return ChatTemplate(tok, role_markers={r: f"<|{r}|>" for r in ("system", "user", "assistant")},
                        end_marker="<|im_end|>")


def special_tok() -> CharTokenizer:
    return CharTokenizer(ALPHABET, special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "<|im_end|>"])


def test_special_ids_come_after_the_characters_and_leave_them_unchanged():
    plain, tok = CharTokenizer(ALPHABET), CharTokenizer(ALPHABET, special_tokens=SPECIAL)
    n = len(sorted(set(ALPHABET)))
    assert plain.vocab_size == n and tok.vocab_size == n + 2
    assert tok.special_tokens == {"<|im_start|>": n, "<|im_end|>": n + 1}
    text = data.toy_corpus("val")[:400]
    assert tok.encode(text) == plain.encode(text) == [sorted(set(ALPHABET)).index(c) for c in text]
    assert tok.decode([*tok.encode("tom"), n + 1]) == "tom<|im_end|>"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("tom<|im_end|>")            # text cannot produce a special id: '<' is no character


def test_a_tokenizer_without_special_tokens_saves_the_same_bytes(tmp_path):
    # the file format written out independently: {"chars": ...} and nothing else in the state
    content = {"format": "lmcore.tokenizer", "version": 2, "kind": "char", "state": {"chars": "abc"}}
    canon = json.dumps(content, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()
    expected = json.dumps({**content, "sha256": hashlib.sha256(canon).hexdigest()}, ensure_ascii=True)
    assert CharTokenizer("cab").save(tmp_path / "t.json").read_text() == expected


def test_special_tokens_survive_save_and_load(tmp_path):
    tok = CharTokenizer(ALPHABET, special_tokens=SPECIAL)
    back = load_tokenizer(tok.save(tmp_path / "t.json"))
    assert back.special_tokens == tok.special_tokens and back.chars == tok.chars
    assert json.loads((tmp_path / "t.json").read_text())["state"]["special_tokens"] == SPECIAL


@pytest.mark.parametrize("name", ["toy-char", "shakespeare-char"])
def test_shipped_tokenizers_load_with_their_checksums_and_have_no_special_tokens(name):
    folder = Path(lmcore.zoo.__file__).parent / "weights"
    digest = json.loads((folder / "manifest.json").read_text())[name]["tokenizer.json"]
    path = folder / name / "tokenizer.json"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    tok = load_tokenizer(path, sha256=digest)
    chars = json.loads(path.read_text())["state"]["chars"]
    assert tok.special_tokens == {} and tok.vocab_size == len(chars)
    assert tok.encode(chars) == list(range(len(chars)))


@pytest.mark.parametrize("special, error, match", [
    (["<a>", "<a>"], ValueError, "twice"),
    ([""], ValueError, "non-empty"),
    ([3], ValueError, "non-empty strings"),
    ("<a>", ArgumentTypeError, "list of strings"),
    (["t"], ValueError, "also a character of the vocabulary"),
])
def test_bad_special_tokens_are_refused(special, error, match):
    with pytest.raises(error, match=match):
        CharTokenizer(ALPHABET, special_tokens=special)


def test_state_with_an_empty_special_list_is_refused(tmp_path):
    content = {"format": "lmcore.tokenizer", "version": 2, "kind": "char",
               "state": {"chars": "ab", "special_tokens": []}}
    canon = json.dumps(content, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()
    path = tmp_path / "t.json"
    path.write_text(json.dumps({**content, "sha256": hashlib.sha256(canon).hexdigest()}))
    with pytest.raises(ValueError, match="non-empty list"):
        load_tokenizer(path)


def test_chat_template_writes_each_special_marker_as_one_id():
    tok = special_tok()
    chat = chatml(tok)
    conv = [{"role": "system", "content": "answer in one word"},
            {"role": "user", "content": "what is the name. tom likes the cat."},
            {"role": "assistant", "content": "tom"}]
    enc = chat.encode(conv)
    sp = tok.special_tokens
    assert enc.ids.count(sp["<|im_end|>"]) == 3 and chat.end_ids == [sp["<|im_end|>"]]
    assert enc.ids[0] == sp["<|system|>"] and tok.decode(enc.ids) == chat.render(conv)
    marked = [i for i, m in zip(enc.ids, enc.assistant_mask) if m]
    assert marked == [*tok.encode("tom"), sp["<|im_end|>"]]
    assert chat.parse(chat.render(conv)) == conv


def tiny_gpt(vocab_size: int, **kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, context_length=40, n_layer=1, n_head=2, n_embd=8, **kw)).eval()


@pytest.mark.parametrize("kw", [{}, {"tie_weights": False}, {"pad_vocab_to": 8}])
def test_extend_vocab_keeps_old_logits_and_starts_new_rows_at_the_mean(kw):
    model = tiny_gpt(5, **kw)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    big = extend_vocab(model, 7)
    assert torch.equal(torch.get_rng_state(), rng)            # the caller's seed did not move
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # model untouched
    assert big.config.vocab_size == 7 and not big.training
    idx = torch.tensor([[0, 1, 2, 3, 4, 0]])
    with torch.no_grad():
        old, new = model(idx)[0], big(idx)[0]
    assert torch.equal(new[..., :5], old)
    emb = model.transformer.wte.weight[:5]
    assert torch.allclose(big.transformer.wte.weight[5:7], emb.mean(0).expand(2, -1))
    if kw.get("tie_weights") is False:
        head = model.lm_head.weight[:5]
        assert torch.allclose(big.lm_head.weight[5:7], head.mean(0).expand(2, -1))
    # a new id's logit is the mean of the old ids' logits (its output row is their mean row)
    assert torch.allclose(new[..., 5], old.mean(-1), atol=1e-6)
    big(torch.tensor([[6, 5]]))                              # the new ids are readable


def test_extend_vocab_refuses_to_shrink_and_non_models():
    with pytest.raises(ValueError, match="vocab_size"):
        extend_vocab(tiny_gpt(5), 4)
    with pytest.raises(ArgumentTypeError, match="vocab_size"):
        extend_vocab(tiny_gpt(5), 6.0)
    with pytest.raises(TypeError, match="lmcore.GPT"):
        extend_vocab(torch.nn.Linear(2, 2), 6)


def test_generate_replies_stop_at_the_special_end_token():
    tok = special_tok()
    chat = chatml(tok)
    n, end = len(sorted(set(ALPHABET))), tok.special_tokens["<|im_end|>"]
    conv = [[{"role": "user", "content": "tom likes the cat."}]]     # 21 prompt ids, 6 new ones
    prompt = chat.encode(conv[0], add_generation_prompt=True).ids
    model = extend_vocab(tiny_gpt(n, tie_weights=False), tok.vocab_size)
    # reference: greedy decoding written out, cut at the end id
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
    new = ids[len(prompt):]
    expected = tok.decode(new[:new.index(end)] if end in new else new)
    assert generate_replies(model, chat, conv, max_new_tokens=6) == [expected]
    with torch.no_grad():       # now the end id wins every step: the reply is empty, the id not decoded
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[end] = 1.0
    assert generate_replies(model, chat, conv, max_new_tokens=6) == [""]


def chatml_template() -> tuple[CharTokenizer, ChatTemplate]:
    tok = CharTokenizer(ALPHABET, special_tokens=SPECIAL)
    return tok, ChatTemplate(tok, {r: f"<|im_start|>{r}\n" for r in ("system", "user", "assistant")}, "<|im_end|>")


def test_chatml_markers_are_the_special_id_then_the_role_spelled_out():
    tok, chat = chatml_template()
    start, end = tok.special_tokens["<|im_start|>"], tok.special_tokens["<|im_end|>"]
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    enc = chat.encode(conv)
    assert enc.ids == [start, *tok.encode("user\nhi"), end, start, *tok.encode("assistant\nyes"), end]
    assert [i for i, m in zip(enc.ids, enc.assistant_mask) if m] == [*tok.encode("yes"), end]
    assert chat.end_ids == [end] and chat.parse(chat.render(conv)) == conv
    with pytest.raises(ValueError, match="marker"):
        chat.render([{"role": "user", "content": "hi<|im_end|>"}])


def test_toy_chats_kinds_and_answers_follow_the_grammar():
    from lmcore.data import TOY_SYSTEM_PROMPTS, TOY_TASKS, toy_chats
    convs = toy_chats(60, seed=5)
    assert toy_chats(60, seed=5) == convs                       # deterministic
    numbers = ("one", "two", "three", "four")
    for i, conv in enumerate(convs):
        roles = [m["role"] for m in conv]
        if i % 3 == 0:
            assert roles == ["user", "assistant"]
        elif i % 3 == 1:
            assert roles == ["system", "user", "assistant"]
            system = conv[0]["content"]
            assert system == list(TOY_SYSTEM_PROMPTS)[(i // 3) % 2]
            assert conv[2]["content"].startswith("the answer is ") == (system == "use a sentence.")
        else:
            assert roles == ["user", "assistant", "user", "assistant"]
            instruction, story = conv[0]["content"].split(". ", 1)
            assert len(story) <= 40 and ToyLanguage().is_valid(story + "\n")
            name, count = story.split()[0], numbers[story.count(".") - 1]
            asked = {instruction + ".": conv[1]["content"], conv[2]["content"]: conv[3]["content"]}
            assert asked == {TOY_TASKS["name"]: name, TOY_TASKS["count"]: count}
    _, chat = chatml_template()
    assert max(len(chat.encode(c).ids) for c in convs) <= 129     # fits a 128-position context


def test_toy_chats_exclude_keeps_every_story_out():
    from lmcore.data import toy_chats
    train = toy_chats(90, seed=1)
    test = toy_chats(60, seed=2, exclude=train)

    def stories(convs):
        return {m["content"].split(". ", 1)[1] for c in convs for m in c if m["role"] == "user" and ". " in m["content"]}
    assert not stories(train) & stories(test)
    with pytest.raises(ArgumentTypeError, match="exclude"):
        toy_chats(3, exclude=[["x"]])
