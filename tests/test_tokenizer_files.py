"""The tokenizer file format: the embedded checksum, the legacy version-1 files, structural checks
and the refusal of patterns a file brings with it.

``sign`` re-implements the documented canonical form independently of ``lmcore.tokenizers.base``:
the sha256 of ``json.dumps(content, sort_keys=True, ensure_ascii=True, separators=(",", ":"))``,
where ``content`` is the file without its ``sha256`` field.  A hand edit that is re-signed with it
passes the checksum, so the structural checks must catch it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lmcore import zoo
from lmcore.data import toy_corpus
from lmcore.tokenizers import GPT2_PATTERN, GPT4_PATTERN, BPETokenizer, CharTokenizer, load_tokenizer

PATHOLOGICAL = r"(a|aa)+$|."   # catastrophic backtracking: seconds for a 34-character prompt of a's


def sign(content: dict) -> dict:
    canon = json.dumps(content, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return {**content, "sha256": hashlib.sha256(canon).hexdigest()}


def write(path: Path, payload) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return path


def content(kind: str, state: dict, version: int = 2) -> dict:
    return {"format": "lmcore.tokenizer", "version": version, "kind": kind, "state": state}


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer(special_tokens=["<|endoftext|>"]).train(toy_corpus("val")[:5_000] + " é🙂", 290)


# --- the embedded checksum ------------------------------------------------------------------------
def test_saved_file_carries_the_checksum_of_its_canonical_content(bpe, tmp_path):
    payload = json.loads(bpe.save(tmp_path / "bpe.json").read_text())
    assert payload["version"] == 2
    assert payload == sign({k: v for k, v in payload.items() if k != "sha256"})


@pytest.mark.parametrize("which", ["bpe", "char"])
def test_no_one_bit_flip_loads_as_a_different_tokenizer(tmp_path, which):
    # every bit of a small saved file, flipped in turn: each flip is refused with a ValueError, or
    # (a change JSON does not see, such as the case of a \u escape's hex digit) loads the same tokenizer
    tok = (BPETokenizer(special_tokens=["<|endoftext|>"]).train("the cat é🙂 the hat 12 " * 5, 264)
           if which == "bpe" else CharTokenizer("hello, wörld\t\x0b"))
    good_path = tok.save(tmp_path / "good.json")
    assert load_tokenizer(good_path)._state() == tok._state()
    good = good_path.read_bytes()
    same = 0
    for pos in range(len(good)):
        for bit in range(8):
            data = bytearray(good)
            data[pos] ^= 1 << bit
            flipped = tmp_path / "flipped.json"
            flipped.write_bytes(bytes(data))
            try:
                loaded = load_tokenizer(flipped)
            except ValueError:
                continue
            finally:
                flipped.unlink()   # writing a fresh file is much faster than truncating one
            assert type(loaded) is type(tok) and loaded._state() == tok._state(), (pos, bit)
            same += 1
    assert same < len(good)   # nearly every flip is detected


@pytest.mark.parametrize("edit", ["merges", "pattern", "special", "sha256", "kind"])
def test_an_edit_without_a_new_checksum_is_refused(bpe, tmp_path, edit):
    payload = json.loads(bpe.save(tmp_path / "bpe.json").read_text())
    state = payload["state"]
    if edit == "merges":
        state["merges"][5][1] = state["merges"][5][1] ^ 1
    elif edit == "pattern":
        state["pattern"] = state["pattern"].replace("ll", "l")
    elif edit == "special":
        state["special_tokens"] = ["<|endoftext}>"]
    elif edit == "sha256":
        payload["sha256"] = "0" * 64
    else:
        payload["kind"] = "char"
    with pytest.raises(ValueError, match="fails its embedded checksum.*Re-save the tokenizer"):
        load_tokenizer(write(tmp_path / "edited.json", payload))


# --- version 1: the zoo's shipped files, verified by the caller -------------------------------------
@pytest.mark.parametrize("name", ["toy-char", "shakespeare-char"])
def test_legacy_files_load_only_with_a_sha256_from_the_caller(name):
    path = zoo.weights_dir() / name / "tokenizer.json"
    digest = json.loads((zoo.weights_dir() / "manifest.json").read_text())[name]["tokenizer.json"]
    assert json.loads(path.read_text())["version"] == 1
    tok = load_tokenizer(path, sha256=digest)
    assert isinstance(tok, CharTokenizer) and "".join(tok.chars) == json.loads(path.read_text())["state"]["chars"]
    assert CharTokenizer.load(path, sha256=digest.upper()).chars == tok.chars
    with pytest.raises(ValueError, match="version-1 tokenizer file: it has no checksum"):
        load_tokenizer(path)
    with pytest.raises(ValueError, match="fails the checksum it was loaded with"):
        load_tokenizer(path, sha256="0" * 64)


def test_a_given_sha256_is_checked_for_new_files_too(tmp_path):
    path = CharTokenizer("abc").save(tmp_path / "char.json")
    assert load_tokenizer(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest()).chars == ["a", "b", "c"]
    with pytest.raises(ValueError, match="fails the checksum it was loaded with"):
        load_tokenizer(path, sha256="f" * 64)
    for bad in ("xyz", "g" * 64, 123):
        with pytest.raises(ValueError, match="sha256 must be None or a 64-character hex digest"):
            load_tokenizer(path, sha256=bad)


def test_a_legacy_file_with_a_wrong_structure_is_refused_even_when_vouched_for(tmp_path):
    path = write(tmp_path / "old.json", content("char", {"chars": "ba"}, version=1))
    with pytest.raises(ValueError, match="sorted order"):
        load_tokenizer(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


# --- structure: hand-edited files, re-signed ---------------------------------------------------------
def _bpe_state(**changes) -> dict:
    return {"pattern": GPT2_PATTERN, "merges": [[97, 98], [256, 99]], "special_tokens": ["<|e|>"], **changes}


@pytest.mark.parametrize("payload, match", [
    (content("char", {"chars": "ba"}), "sorted order"),
    (content("char", {"chars": "aab"}), "distinct"),
    (content("char", {"chars": ""}), "non-empty"),
    (content("char", {"chars": ["ab", "c"]}), "string of distinct characters"),
    (content("char", {"chars": "ab", "extra": 1}), "exactly the field 'chars'"),
    (content("char", {}), "exactly the field 'chars'"),
    (content("bpe", _bpe_state(merges=[[97, 98], [300, 99]])), "merge 1"),
    (content("bpe", _bpe_state(merges=[[97, 98], [97, 98]])), "earlier merge already joins"),
    (content("bpe", _bpe_state(merges=[[97.0, 98]])), "merge 0"),
    (content("bpe", _bpe_state(merges=[[True, 98]])), "merge 0"),
    (content("bpe", _bpe_state(merges={"97": 98})), "must be lists"),
    (content("bpe", _bpe_state(special_tokens=["<|e|>", "<|e|>"])), "twice"),
    (content("bpe", _bpe_state(special_tokens={"<|e|>": 1})), "must be lists"),
    (content("bpe", _bpe_state(pattern="(")), "not a valid regular expression"),
    (content("bpe", _bpe_state(pattern="")), "matches the empty string"),
    (content("bpe", _bpe_state(pattern=5)), "pattern must be a regex string"),
    (content("bpe", {"merges": []}), "exactly the fields"),
    ({**content("char", {"chars": "ab"}), "note": "hi"}, "has the fields"),
    ({**content("char", {"chars": "ab"}), "version": True}, "format version True"),
    (content("char", {"chars": "ab"}, version=99), "format version 99"),
    (content("sentencepiece", {}), "unknown tokenizer kind"),
    ({**content("char", {"chars": "ab"}), "format": "something.else"}, "lmcore.tokenizer"),
    ({**content("char", "ab")}, "no tokenizer state"),
])
def test_inconsistent_files_are_refused_even_with_a_valid_checksum(tmp_path, payload, match):
    path = write(tmp_path / "tok.json", sign(payload))
    with pytest.raises(ValueError, match=match) as e:
        load_tokenizer(path)
    assert str(tmp_path) in str(e.value)   # the message names the file


def test_a_version_2_file_without_its_checksum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="has the fields"):
        load_tokenizer(write(tmp_path / "tok.json", content("char", {"chars": "ab"})))


@pytest.mark.parametrize("text, match", [
    ("not json {", "invalid JSON"), ("[1, 2, 3]", "lmcore.tokenizer"),
    ('{"format": "lmcore.tokenizer", "format": "lmcore.tokenizer"}', "occurs twice"),
])
def test_files_that_are_not_tokenizer_json_are_refused(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_tokenizer(write(tmp_path / "tok.json", text))


def test_binary_file_is_rejected(tmp_path):
    path = tmp_path / "tok.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        load_tokenizer(path)


def test_kind_must_match_the_class(bpe, tmp_path):
    with pytest.raises(ValueError, match="not a 'bpe' one"):
        BPETokenizer.load(CharTokenizer("abc").save(tmp_path / "char.json"))
    with pytest.raises(ValueError, match="not a 'char' one"):
        CharTokenizer.load(bpe.save(tmp_path / "bpe.json"))


def test_bad_path_and_trust_pattern_arguments(tmp_path):
    for bad in (None, 123):
        with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
            load_tokenizer(bad)
        with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
            CharTokenizer("ab").save(bad)
    with pytest.raises(TypeError, match="trust_pattern must be a bool"):
        load_tokenizer(CharTokenizer("ab").save(tmp_path / "c.json"), trust_pattern="yes")


# --- a pattern is code: only the built-in ones load without trust_pattern=True ------------------------
def test_a_file_with_a_pathological_pattern_is_refused_unless_trusted(tmp_path):
    path = BPETokenizer(pattern=PATHOLOGICAL).save(tmp_path / "bpe.json")
    with pytest.raises(ValueError, match=r"its own pre-tokenizer pattern '\(a\|aa\)\+\$\|\.'.*trust_pattern=True"):
        load_tokenizer(path)   # refused before any text is encoded: no 34-character prompt can hang
    with pytest.raises(ValueError, match="trust_pattern=True"):
        BPETokenizer.load(path)
    trusted = BPETokenizer.load(path, trust_pattern=True)
    assert trusted.pattern == PATHOLOGICAL and trusted.decode(trusted.encode("ab, c")) == "ab, c"


@pytest.mark.parametrize("pattern", [GPT2_PATTERN, GPT4_PATTERN, None])
def test_builtin_patterns_load_without_trust(tmp_path, pattern):
    tok = BPETokenizer(pattern=pattern).train("the cat, the hat; 1234 " * 20, 270)
    loaded = load_tokenizer(tok.save(tmp_path / "bpe.json"))
    assert loaded.pattern == pattern and loaded.merges == tok.merges
