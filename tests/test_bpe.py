"""Tests of the byte-level BPE tokenizer.

The fast trainer is checked against ``naive_bpe_merges`` below, a direct transcription of the
course notes' algorithm (recount every adjacent pair of the whole corpus before each merge, no
deduplication, no incremental bookkeeping), using the same tie-breaking rule: highest count, then
the smallest pair of ids.  Encoding is checked against Hugging Face ``tokenizers`` running a BPE
model built from our merges.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import regex
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcore import load_tokenizer
from lmcore.data import toy_corpus
from lmcore.tokenizers import GPT4_PATTERN, BPETokenizer, merge_pair, train_merges
from lmcore.tokenizers.bpe import GPT2_PATTERN

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
MIXED = ("The café's naïve crème brûlée costs 12.50€ — 3 émigrés ate 1234567 of them!\n"
         "Ελληνικά κείμενα, русский текст, 日本語のテキスト、한국어 텍스트. 🙂🙃👍🏽 ok?? ok!!\n"
         "    indented code: x = f(y) + 42  # comment\n\n\n") * 20


def reference_chunks(pattern: str, text: str) -> list[str]:
    """Pre-tokens by a character mask: each match of ``pattern`` is one chunk, and so is each maximal
    stretch of text between matches (nothing is dropped)."""
    owner: list[int | None] = [None] * len(text)   # which match covers each character
    for k, m in enumerate(regex.finditer(pattern, text)):
        for i in range(*m.span()):
            owner[i] = k
    chunks: list[str] = []
    for i, ch in enumerate(text):
        if i and owner[i] == owner[i - 1]:
            chunks[-1] += ch
        else:
            chunks.append(ch)
    return chunks


def naive_bpe_merges(text: str, vocab_size: int, pattern: str | None = GPT2_PATTERN) -> list[tuple[int, int]]:
    """The notes' BPE trainer on byte ids: before every merge, count all adjacent pairs again."""
    chunks = [list(c.encode("utf-8")) for c in (reference_chunks(pattern, text) if pattern else [text])]
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
    # a repeated pair would take the later rank in the lookup table and change how text is encoded
    with pytest.raises(ValueError, match="merge 2 .* earlier merge already joins"):
        BPETokenizer(merges=[(1, 2), (3, 4), (1, 2)])
    for bad in ([(1.0, 2)], [(True, 2)], [(1, 2, 3)], ["ab"]):
        with pytest.raises(ValueError, match="merge 0"):
            BPETokenizer(merges=bad)
    with pytest.raises(TypeError, match="merges must be a list"):
        BPETokenizer(merges=5)


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

# patterns that leave text unmatched (\w+ skips spaces and punctuation, \d all but digits), one with
# capturing groups (findall would return the groups, not the matches), one that matches only after an
# "a", and GPT-4's, which like GPT-2's matches every character
CUSTOM_PATTERNS = [r"\w+", r"\d", r" ?\p{L}+", r"(\w)(\w*)", r"(?<=a)b+", GPT4_PATTERN]


_GPT4 = BPETokenizer(pattern=GPT4_PATTERN).train(MIXED + " 12345 don'T\r\n\n", 320)


@pytest.fixture(scope="module")
def custom_toks() -> dict[str, BPETokenizer]:
    return {p: BPETokenizer(pattern=p).train(MIXED + " abbb ab 123 " * 20, 320) for p in CUSTOM_PATTERNS}


def test_unmatched_text_is_kept_not_dropped():
    # the example: \w+ used to turn this into "helloworldhowareyou"
    tok = BPETokenizer(pattern=r"\w+")
    text = "hello world, how are you?"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode(text) == list(text.encode())   # no merges: the bytes themselves


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_round_trip_and_chunks_with_custom_patterns(custom_toks, s):
    for pattern, tok in custom_toks.items():
        assert tok.decode(tok.encode(s)) == s, pattern
        # every pre-token is encoded on its own: the same as a no-split tokenizer with the same merges
        # applied to the reference chunks, one at a time
        plain = BPETokenizer(pattern=None, merges=tok.merges)
        assert tok.encode(s) == [i for c in reference_chunks(pattern, s) for i in plain.encode(c)], pattern


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_default_patterns_cut_exactly_what_findall_cuts(toy_tok, s):
    # the built-in patterns match every character, so the pre-tokens (and so the ids) are exactly
    # regex.findall's, as they were before unmatched text was kept
    for pattern, tok in [(GPT2_PATTERN, toy_tok), (GPT4_PATTERN, _GPT4)]:
        plain = BPETokenizer(pattern=None, merges=tok.merges)
        assert tok.encode(s) == [i for c in regex.findall(pattern, s) for i in plain.encode(c)]


def test_fast_trainer_matches_naive_reference_with_a_pattern_that_skips_text():
    text = MIXED[:3000]
    assert BPETokenizer(pattern=r"\w+").train(text, 256 + 60).merges == naive_bpe_merges(text, 256 + 60, r"\w+")


@pytest.mark.parametrize("pattern, match", [
    ("(", "not a valid regular expression"), (r"\p{Nope}", "not a valid regular expression"),
    ("", "matches the empty string"), (r"\s*", "matches the empty string"), (r"a*|b", "matches the empty string"),
])
def test_unusable_patterns_are_refused_clearly(pattern, match):
    with pytest.raises(ValueError, match=match) as e:
        BPETokenizer(pattern=pattern)
    assert type(e.value) is ValueError and "pattern" in str(e.value)   # not a raw regex.error
    with pytest.raises(TypeError, match="pattern must be a regex string"):
        BPETokenizer(pattern=rb"\w+")


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
    with pytest.raises(TypeError, match="verbose must be a bool"):
        BPETokenizer().train("hello", 300, verbose="yes")
    with pytest.raises(ValueError, match="surrogate U\\+D800"):
        BPETokenizer().train("a\ud800b", 300)
    assert BPETokenizer().train("hello hello", np.int64(258)).vocab_size == 258   # any integer type


def test_bad_special_tokens():
    for bad in ("<|endoftext|>", None, 5):
        with pytest.raises(TypeError, match="special_tokens must be a collection"):
            BPETokenizer(special_tokens=bad)
    for bad, match in [([1], "non-empty strings"), ([""], "non-empty strings"), (["<a>", "<a>"], "twice"),
                       (["\ud800"], "surrogate")]:
        with pytest.raises(ValueError, match=match):
            BPETokenizer(special_tokens=bad)


def test_bad_encode_input(toy_tok):
    for bad in (None, 5, b"x", ["x"]):
        with pytest.raises(TypeError, match="text must be a str"):
            toy_tok.encode(bad)
    for bad in (None, 5):
        with pytest.raises(TypeError, match="allowed_special must be 'all' or a collection"):
            toy_tok.encode("x", allowed_special=bad)
    with pytest.raises(ValueError, match="text holds the lone surrogate U\\+D800"):
        toy_tok.encode("ok \ud800")


def test_train_merges_and_merge_pair_check_their_arguments():
    assert train_merges([[1, 2, 1, 2]], [3], 1) == [(1, 2)]
    for args, match in [(([[1, 2]], [1], -1), "num_merges"), (([[1, 2]], [1], 1.5), "num_merges"),
                        (([[1, 2], [1, 2]], [1], 2), "one count per word"), (([[1, 2]], [0], 2), r"counts\[0\]"),
                        (([[1, 2]], [1.5], 2), r"counts\[0\]"), (("ab", [1, 1], 2), "must be lists"),
                        (([[1, 2], [1.5, 2]], [1, 1], 2), r"words\[1\]"), (([[300, 2]], [1], 2), r"words\[0\]")]:
        with pytest.raises(ValueError, match=match):   # ArgumentTypeError is a ValueError too
            train_merges(*args)
    assert merge_pair([1, 2, 1, 2], 1, 2, 9) == [9, 9]
    for args, match in [(("abc", 1, 2, 3), "ids must be a list"), (([1, 2], 1, 2, "x"), "new must be an int"),
                        (([1, 2], 1.0, 2, 3), "a must be an int"), (([1.5], 1, 2, 3), "ids must hold integer")]:
        with pytest.raises(TypeError, match=match):
            merge_pair(*args)


def test_decode_rejects_ids_outside_the_vocabulary(toy_tok):
    with pytest.raises(ValueError, match=r"ids must hold token ids in \[0, 400\), got 400"):
        toy_tok.decode([1, toy_tok.vocab_size])
    with pytest.raises(ValueError, match="got -1"):
        toy_tok.decode([-1])
    with pytest.raises(TypeError):
        toy_tok.decode(["a"])


def test_decode_refuses_float_bool_and_nan_ids_instead_of_truncating(toy_tok):
    # a float tensor of ids used to be truncated (65.9 -> 65, "A") and NaN gave a cryptic error
    for bad in (torch.tensor([65.9]), torch.tensor([float("nan")]), np.array([65.5]), [65.0], [True]):
        for fn in (toy_tok.decode, toy_tok.decode_bytes):
            with pytest.raises(TypeError, match="ids must hold integer token ids"):
                fn(bad)
    with pytest.raises(ValueError, match="1-D"):
        toy_tok.decode(torch.tensor([[65, 66]]))
    ids = toy_tok.encode(MIXED[:200])
    assert toy_tok.decode(torch.tensor(ids)) == toy_tok.decode(np.array(ids)) == toy_tok.decode(tuple(ids)) \
        == MIXED[:200]


def test_token_bytes_checks_its_id(toy_tok):
    assert toy_tok.token_bytes(np.int64(65)) == b"A"
    assert toy_tok.token_bytes(toy_tok.vocab_size - 1) == b"<|endoftext|>"
    for bad in (-1, toy_tok.vocab_size):
        with pytest.raises(ValueError, match=r"i must be an int in \[0, 399\]"):
            toy_tok.token_bytes(bad)
    for bad in (1.0, True, "a", None):
        with pytest.raises(TypeError, match="i must be an int"):
            toy_tok.token_bytes(bad)


# --- save / load ------------------------------------------------------------------------------------
def test_save_load_round_trip(toy_tok, tmp_path):
    path = toy_tok.save(tmp_path / "bpe.json")
    for loaded in (BPETokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, BPETokenizer)
        assert loaded.merges == toy_tok.merges and loaded.special_tokens == toy_tok.special_tokens
        assert loaded.pattern == toy_tok.pattern
        text = MIXED[:500] + "<|endoftext|>"
        assert loaded.encode(text, allowed_special="all") == toy_tok.encode(text, allowed_special="all")
