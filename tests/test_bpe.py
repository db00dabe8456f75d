"""Tests of the byte-level BPE tokenizer.

The fast trainer is checked against ``naive_bpe_merges`` below, a direct transcription of the
course notes' algorithm (recount every adjacent pair of the whole corpus before each merge, no
deduplication, no incremental bookkeeping), using the same tie-breaking rule: highest count, then
the smallest pair of ids.  Encoding is checked against Hugging Face ``tokenizers`` running a BPE
model built from our merges.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcore import load_tokenizer
from lmcore.data import toy_corpus
from lmcore.tokenizers import BPETokenizer, CharTokenizer
from lmcore.tokenizers.bpe import GPT2_PATTERN

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
MIXED = ("The café's naïve crème brûlée costs 12.50€ — 3 émigrés ate 1234567 of them!\n"
         "Ελληνικά κείμενα, русский текст, 日本語のテキスト、한국어 텍스트. 🙂🙃👍🏽 ok?? ok!!\n"
         "    indented code: x = f(y) + 42  # comment\n\n\n") * 20


def naive_bpe_merges(text: str, vocab_size: int, pattern: str | None = GPT2_PATTERN) -> list[tuple[int, int]]:
    """The notes' BPE trainer on byte ids: before every merge, count all adjacent pairs again."""
    chunks = [list(c.encode("utf-8")) for c in (regex.findall(pattern, text) if pattern else [text])]
    merges = []
    for new_id in range(256, vocab_size):
        pairs = Counter()
        for ch in chunks:
            for i in range(len(ch) - 1):
                pairs[(ch[i], ch[i + 1])] += 1
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))  # highest count, then smallest pair
        merges.append(best)
        rewritten = []
        for ch in chunks:
            out, i = [], 0
            while i < len(ch):
                if i + 1 < len(ch) and (ch[i], ch[i + 1]) == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ch[i])
                    i += 1
            rewritten.append(out)
        chunks = rewritten
    return merges


@pytest.fixture(scope="module")
def toy_tok() -> BPETokenizer:
    return BPETokenizer(special_tokens=["<|endoftext|>"]).train(toy_corpus("val")[:50_000] + MIXED, 400)


# --- training: identical merges to the naive reference ------------------------------------------
@pytest.mark.parametrize("pattern", [GPT2_PATTERN, None], ids=["gpt2-split", "no-split"])
def test_fast_trainer_matches_naive_reference_on_toy_text(pattern):
    text = toy_corpus("val")[:8_000]
    tok = BPETokenizer(pattern=pattern).train(text, 256 + 120)
    assert tok.merges == naive_bpe_merges(text, 256 + 120, pattern)


def test_fast_trainer_matches_naive_reference_on_unicode_and_repeats():
    # runs like "aaaa" exercise overlapping pairs; the multilingual text exercises multi-byte merges
    text = MIXED[:3000] + " aaaa aaaaa aaaaaaa bbbbbb ababab " * 5
    tok = BPETokenizer().train(text, 256 + 150)
    assert tok.merges == naive_bpe_merges(text, 256 + 150)


@pytest.mark.slow
@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="Tiny Shakespeare not present")
def test_fast_trainer_matches_naive_reference_on_shakespeare():
    text = SHAKESPEARE.read_text(encoding="utf-8")[:20_000]
    assert BPETokenizer().train(text, 400).merges == naive_bpe_merges(text, 400)


def test_tie_breaking_rule_on_the_notes_example():
    # "th", "he" and "e " each occur 3 times in the notes' example, more than any other pair; the
    # smallest pair of byte ids wins: (101, 32) = "e " beats (104, 101) = "he" and (116, 104) = "th".
    tok = BPETokenizer(pattern=None).train("the car the cat the rat", 257)
    assert tok.merges == [(101, 32)]


def test_training_stops_when_nothing_is_left_to_merge():
    # pre-tokens "ab" and " ab": merge (a, b) -> 256, then (" ", 256) -> 257, then nothing is left
    tok = BPETokenizer().train("ab ab", 1000)
    assert tok.merges == [(97, 98), (32, 256)] and tok.vocab_size == 258
    assert tok.encode("ab ab") == [256, 257]


# --- encoding ------------------------------------------------------------------------------------
def test_encoding_applies_merges_in_learned_order_not_longest_match():
    # With merges [(b, c), (a, b)], "abc" must become [a, "bc"] because (b, c) was learned first,
    # even though "ab" matches from the left; with the opposite order it becomes ["ab", c].
    a, b, c = b"abc"
    assert BPETokenizer(pattern=None, merges=[(b, c), (a, b)]).encode("abc") == [a, 256]
    assert BPETokenizer(pattern=None, merges=[(a, b), (b, c)]).encode("abc") == [256, c]


def test_no_learned_merge_is_left_inside_an_encoded_pre_token(toy_tok):
    for chunk in regex.findall(GPT2_PATTERN, toy_corpus("test")[:3000] + MIXED[:500]):
        ids = toy_tok.encode(chunk)
        assert not any(p in toy_tok.ranks for p in zip(ids, ids[1:])), chunk


def test_bad_merges_are_rejected():
    with pytest.raises(ValueError, match="merge 1"):
        BPETokenizer(merges=[(1, 2), (300, 1)])


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for every byte (how HF byte-level models spell bytes)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            out[byte] = chr(byte)
        else:
            out[byte] = chr(256 + extra)
            extra += 1
    return out


def test_encoding_matches_huggingface_tokenizers_with_the_same_merges(toy_tok):
    tokenizers = pytest.importorskip("tokenizers")
    b2u = _bytes_to_unicode()
    spell = [("".join(b2u[x] for x in toy_tok.vocab[i])) for i in range(256 + len(toy_tok.merges))]
    vocab = {s: i for i, s in enumerate(spell)}
    merges = [(spell[a], spell[b]) for a, b in toy_tok.merges]
    hf = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    for text in [toy_corpus("test")[:20_000], MIXED[:2000], "strawberry 2024 12345!!   x\n\n y"]:
        assert toy_tok.encode(text) == hf.encode(text).ids


# --- round trip ------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text())
def test_decode_encode_round_trip_on_any_unicode(toy_tok, s):
    assert toy_tok.decode(toy_tok.encode(s)) == s
    assert toy_tok.decode(toy_tok.encode(s, allowed_special="all")) == s


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab é🙂\n")), max_size=60))
def test_round_trip_without_pre_splitting(s):
    tok = _NO_SPLIT
    assert tok.decode(tok.encode(s)) == s


_NO_SPLIT = BPETokenizer(pattern=None).train("ab ab é é🙂 🙂🙂\n" * 30 + "aab abb ba", 300)


# --- special tokens ---------------------------------------------------------------------------------
def test_special_token_is_plain_text_unless_allowed(toy_tok):
    eot = toy_tok.special_tokens["<|endoftext|>"]
    text = "the end.<|endoftext|>tom sees"
    plain = toy_tok.encode(text)
    assert eot not in plain and toy_tok.decode(plain) == text
    allowed = toy_tok.encode(text, allowed_special={"<|endoftext|>"})
    assert allowed.count(eot) == 1 and toy_tok.encode(text, allowed_special="all") == allowed
    assert allowed == toy_tok.encode("the end.") + [eot] + toy_tok.encode("tom sees")
    assert toy_tok.decode(allowed) == text


def test_special_tokens_are_not_learned_as_merges():
    tok = BPETokenizer(special_tokens=["<|endoftext|>"]).train("hi<|endoftext|>" * 200, 300)
    learned = {tok.vocab[i] for i in range(256, 256 + len(tok.merges))}
    assert not any(b"<|" in t or b"|>" in t for t in learned)
    assert tok.special_tokens["<|endoftext|>"] == 256 + len(tok.merges) == tok.vocab_size - 1


def test_bad_allowed_special(toy_tok):
    with pytest.raises(ValueError, match="unknown special"):
        toy_tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="collection"):
        toy_tok.encode("x", allowed_special="<|endoftext|>")


# --- bad input -------------------------------------------------------------------------------------
def test_bad_training_input():
    with pytest.raises(ValueError, match="empty"):
        BPETokenizer().train("", 300)
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer().train("hello", 255)
    with pytest.raises(ValueError, match="257"):
        BPETokenizer(special_tokens=["<|endoftext|>"]).train("hello", 256)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer().train("hello", 300.0)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer().train("hello", True)
    with pytest.raises(TypeError, match="text must be a str"):
        BPETokenizer().train(b"hello", 300)
    with pytest.raises(TypeError, match="special_tokens"):
        BPETokenizer(special_tokens="<|endoftext|>")


def test_decode_rejects_ids_outside_the_vocabulary(toy_tok):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        toy_tok.decode([1, toy_tok.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        toy_tok.decode([-1])
    with pytest.raises(TypeError):
        toy_tok.decode(["a"])


# --- save / load ------------------------------------------------------------------------------------
def test_save_load_round_trip(toy_tok, tmp_path):
    path = toy_tok.save(tmp_path / "bpe.json")
    for loaded in (BPETokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, BPETokenizer)
        assert loaded.merges == toy_tok.merges and loaded.special_tokens == toy_tok.special_tokens
        assert loaded.pattern == toy_tok.pattern
        text = MIXED[:500] + "<|endoftext|>"
        assert loaded.encode(text, allowed_special="all") == toy_tok.encode(text, allowed_special="all")


def test_load_rejects_wrong_format_version_kind_and_corruption(toy_tok, tmp_path):
    path = toy_tok.save(tmp_path / "bpe.json")
    payload = json.loads(path.read_text())

    def write(p):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(p))
        return bad

    with pytest.raises(ValueError, match="version"):
        BPETokenizer.load(write({**payload, "version": 999}))
    with pytest.raises(ValueError, match="lmcore.tokenizer"):
        BPETokenizer.load(write({**payload, "format": "something-else"}))
    with pytest.raises(ValueError, match="merge 3"):
        state = {**payload["state"], "merges": payload["state"]["merges"][:3] + [[5, 10_000]]}
        BPETokenizer.load(write({**payload, "state": state}))
    with pytest.raises(ValueError, match="missing field"):
        BPETokenizer.load(write({**payload, "state": {"merges": []}}))
    not_json = tmp_path / "garbage.json"
    not_json.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        BPETokenizer.load(not_json)
    char_path = CharTokenizer().train("abc").save(tmp_path / "char.json")
    with pytest.raises(ValueError, match="not a 'bpe' one"):
        BPETokenizer.load(char_path)
