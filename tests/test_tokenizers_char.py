"""Tests for ``lmcore.tokenizers.CharTokenizer`` and the shared save / load format."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcore import CharTokenizer, load_tokenizer
from lmcore.data import toy_corpus


def test_vocabulary_is_the_sorted_distinct_characters():
    text = toy_corpus("val")
    tok = CharTokenizer().train(text)
    chars = sorted(set(text))
    assert tok.vocab_size == len(tok) == len(chars)
    sample = text[:500]
    assert tok.encode(sample) == [chars.index(c) for c in sample]  # independent reference
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_round_trip_on_any_unicode(text):
    tok = CharTokenizer().train(text)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids, dtype=torch.long)) == text


def test_unknown_character_names_the_character_and_position():
    tok = CharTokenizer().train("abc")
    with pytest.raises(ValueError, match=r"'é' \(U\+00E9\) at position 3"):
        tok.encode("abcé")
    assert tok.encode("") == []


def test_train_and_encode_type_errors():
    with pytest.raises(TypeError, match="text must be a str"):
        CharTokenizer().train(b"abc")
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer().train("")
    with pytest.raises(TypeError, match="text must be a str"):
        CharTokenizer().train("abc").encode(["a"])


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = CharTokenizer().train("abc")
    for bad in ([0, 3], [-1], torch.tensor([1, 7])):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            tok.decode(bad)
    with pytest.raises(TypeError, match="not an int"):
        tok.decode([0, 1.0])
    with pytest.raises(TypeError, match="not an int"):
        tok.decode([True])


def test_save_and_load(tmp_path):
    tok = CharTokenizer().train("hello, wörld\n")
    path = tok.save(tmp_path / "sub" / "char.json")
    for loaded in (CharTokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, CharTokenizer)
        assert loaded.chars == tok.chars
        assert loaded.encode("wörld, hello") == tok.encode("wörld, hello")
    assert [p.name for p in path.parent.iterdir()] == ["char.json"]  # written atomically, no leftovers


def _write(path, payload):
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return path


@pytest.mark.parametrize("payload, match", [
    ("not json {", "invalid JSON"),
    ([1, 2, 3], "lmcore.tokenizer"),
    ({"format": "something.else", "version": 1, "kind": "char", "state": {"chars": "ab"}}, "lmcore.tokenizer"),
    ({"format": "lmcore.tokenizer", "version": 99, "kind": "char", "state": {"chars": "ab"}}, "version"),
    ({"format": "lmcore.tokenizer", "version": 1, "kind": "sentencepiece", "state": {}}, "unknown tokenizer kind"),
    ({"format": "lmcore.tokenizer", "version": 1, "kind": "char", "state": {"chars": "ba"}}, "sorted"),
    ({"format": "lmcore.tokenizer", "version": 1, "kind": "char", "state": {"chars": "aab"}}, "distinct"),
    ({"format": "lmcore.tokenizer", "version": 1, "kind": "char", "state": {"chars": [1, 2]}}, "corrupt"),
    ({"format": "lmcore.tokenizer", "version": 1, "kind": "char", "state": {}}, "corrupt"),
])
def test_wrong_format_files_are_rejected(tmp_path, payload, match):
    path = _write(tmp_path / "tok.json", payload)
    with pytest.raises(ValueError, match=match):
        CharTokenizer.load(path)


def test_binary_file_is_rejected(tmp_path):
    path = tmp_path / "tok.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        load_tokenizer(path)
