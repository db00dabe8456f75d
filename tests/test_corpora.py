"""Corpus names and file paths are never ambiguous: a file in the working directory cannot shadow a name."""
from __future__ import annotations

from pathlib import Path

import pytest

from lmcore.data import corpora, load_text, toy_corpus


@pytest.fixture
def cwd_with_decoys(tmp_path, monkeypatch):
    """A working directory holding files named like the registry's corpora, and a stand-in download."""
    monkeypatch.chdir(tmp_path)
    for name in ("toy", "tinyshakespeare", "mycorpus"):
        Path(name).write_text(f"the file called {name}", encoding="utf-8")
    registry = tmp_path / "registry_copy.txt"
    registry.write_text("First Citizen: from the registry", encoding="utf-8")
    fetched = []

    def fake_fetch(name, url=None, timeout=30.0):
        fetched.append(name)
        return registry

    monkeypatch.setattr(corpora, "fetch_corpus", fake_fetch)
    return fetched


def test_registered_names_always_mean_the_registry(cwd_with_decoys):
    assert load_text("toy") == toy_corpus("train")
    assert load_text("tinyshakespeare") == "First Citizen: from the registry"
    assert cwd_with_decoys == ["tinyshakespeare"]


def test_files_are_read_only_when_given_as_paths(cwd_with_decoys, tmp_path):
    assert load_text("./toy") == "the file called toy"
    assert load_text(Path("tinyshakespeare")) == "the file called tinyshakespeare"
    assert load_text(str(tmp_path / "mycorpus")) == "the file called mycorpus"
    Path("notes.txt").write_text("with a suffix", encoding="utf-8")
    assert load_text("notes.txt") == "with a suffix"
    assert cwd_with_decoys == []                                 # nothing went to the registry


def test_a_bare_word_is_a_name_even_when_a_file_has_it(cwd_with_decoys):
    with pytest.raises(ValueError, match=r"unknown corpus 'mycorpus'.*pass './mycorpus' to read it"):
        load_text("mycorpus")
    with pytest.raises(ValueError, match=r"unknown corpus 'nothing'.*tinyshakespeare.*pathlib.Path"):
        load_text("nothing")
    with pytest.raises(FileNotFoundError, match="no such text file"):
        load_text("missing.txt")
    with pytest.raises(FileNotFoundError, match="no such text file"):
        load_text("./toy/inside")


def test_the_cli_corpus_flag_follows_the_same_rule(cwd_with_decoys):
    from lmcore.cli import load_corpus

    assert load_corpus("toy") == (toy_corpus("train"), toy_corpus("val"))
    assert load_corpus("./toy") == ("the file called toy", "")
