"""Tests for ``lmcore.tokenizers.CharTokenizer`` and the shared save / load format."""
from __future__ import annotations

import numpy as np
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


def test_constructor_takes_a_non_empty_string_only():
    assert CharTokenizer("cab").chars == ["a", "b", "c"]
    # a list such as ['ab', 'c'] would make 'ab' one entry, and save / load would split it in two
    for bad in (["ab", "c"], ["a", "b"], 123, b"abc"):
        with pytest.raises(TypeError, match="chars must be a str"):
            CharTokenizer(bad)
    with pytest.raises(ValueError, match="chars is empty"):
        CharTokenizer("")


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = CharTokenizer().train("abc")
    for bad in ([0, 3], [-1], torch.tensor([1, 7]), np.array([5])):
        with pytest.raises(ValueError, match=r"ids must hold token ids in \[0, 3\)"):
            tok.decode(bad)


def test_decode_refuses_floats_bools_and_nan_instead_of_truncating():
    # tensor([1.7]) used to decode as 'b' (truncated to 1); tensor([nan]) gave "cannot convert float NaN"
    tok = CharTokenizer().train("abc")
    for bad in ([0, 1.0], [True], torch.tensor([1.7]), torch.tensor([float("nan")]), np.array([0.5]),
                np.array([True]), [[0]]):
        with pytest.raises(TypeError, match="ids must hold integer token ids"):
            tok.decode(bad)
    for bad in ("ab", None, 5, {0: 1}):
        with pytest.raises(TypeError, match="ids must be a list of token ids"):
            tok.decode(bad)
    for bad in (torch.tensor([[0, 1]]), torch.tensor(1)):
        with pytest.raises(ValueError, match="1-D"):
            tok.decode(bad)
    assert tok.decode(np.array([2, 0], dtype=np.int32)) == tok.decode((2, 0)) == tok.decode([np.int64(2), 0]) == "ca"


def test_save_and_load(tmp_path):
    tok = CharTokenizer().train("hello, wörld\n")
    path = tok.save(tmp_path / "sub" / "char.json")
    for loaded in (CharTokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, CharTokenizer)
        assert loaded.chars == tok.chars
        assert loaded.encode("wörld, hello") == tok.encode("wörld, hello")
    assert [p.name for p in path.parent.iterdir()] == ["char.json"]  # written atomically, no leftovers


def test_any_python_string_survives_save_and_load(tmp_path):
    # a lone surrogate (text read with errors="surrogateescape") could not be written as UTF-8 before
    tok = CharTokenizer("a\ud800\t\x00é")
    loaded = load_tokenizer(tok.save(tmp_path / "char.json"))
    assert loaded.chars == tok.chars and loaded.decode(loaded.encode("\ud800a")) == "\ud800a"


def test_an_untrained_tokenizer_is_not_saved(tmp_path):
    with pytest.raises(ValueError, match="not trained"):
        CharTokenizer().save(tmp_path / "char.json")
    assert not (tmp_path / "char.json").exists()
