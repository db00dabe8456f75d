"""Tests for ``lmcore.data``: the toy language, the corpus registry and batching.

The toy language's promises are checked against independent references: its sampler against its
own exact ``logprob`` (chi-square), ``logprob`` against a brute-force enumeration, and the exact
entropy against a Monte-Carlo estimate.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from scipy.stats import chisquare

from lmcore.data import (
    CorpusInfo,
    ToyLanguage,
    available,
    corpora,
    fetch_corpus,
    get_batch,
    load_text,
    toy_corpus,
    train_val_split,
)
from lmcore.data import toy as toy_module

SHARED_DATA = Path(__file__).parents[2] / "shared/data"


@pytest.fixture(scope="module")
def toy() -> ToyLanguage:
    return ToyLanguage()


def _noun_phrases() -> list[str]:
    """Every noun phrase the grammar can produce: 'the [ADJ] NOUN[s]'."""
    return [" ".join(filter(None, ["the", adj, noun + plural]))
            for adj in [None, *toy_module.ADJECTIVES] for noun in toy_module.NOUNS for plural in ("", "s")]


def _one_sentence_stories() -> list[str]:
    """The whole space of one-sentence stories (k = 0 further sentences), by brute force."""
    return [f"{name} {verb}s {np}.\n"
            for name in toy_module.NAMES for verb in toy_module.VERBS for np in _noun_phrases()]


def _chi2_pvalue(observed: Counter, expected_prob: dict, n: int, min_expected: float = 5.0) -> float:
    """Chi-square goodness-of-fit p-value; cells with few expected counts are pooled together."""
    assert set(observed) <= set(expected_prob), f"impossible outcomes sampled: {set(observed) - set(expected_prob)}"
    big = [c for c in expected_prob if expected_prob[c] * n >= min_expected]
    small = [c for c in expected_prob if expected_prob[c] * n < min_expected]
    obs = [observed[c] for c in big] + ([sum(observed[c] for c in small)] if small else [])
    exp = [expected_prob[c] * n for c in big] + ([sum(expected_prob[c] for c in small) * n] if small else [])
    total = sum(exp)
    exp = [e * sum(obs) / total for e in exp]  # rounding in the probabilities must not decide the test
    return float(chisquare(obs, exp).pvalue)


# --- the toy language: sampling vs exact probabilities -------------------------------------------

def test_one_sentence_stories_sum_to_p_k0(toy):
    stories = _one_sentence_stories()
    assert len(stories) == len(set(stories)) == 6 * 6 * 7 * 8 * 2
    total = math.fsum(math.exp(toy.logprob(s)) for s in stories)
    assert total == pytest.approx(toy_module.MORE_PROBS[0], rel=1e-12)


def test_first_sentences_match_exact_probabilities(toy):
    """Sampled first sentences follow exp(logprob) of the one-sentence story divided by P(k=0)."""
    n = 20_000
    stories = toy.sample(n, seed=0)
    first = Counter(s.split(". ")[0].rstrip(".\n") + ".\n" for s in stories)
    p0 = toy_module.MORE_PROBS[0]

    def cell(story: str) -> tuple:
        # pool the six adjectives (each alone is too rare for a chi-square cell), keep the rest
        w = story[:-2].split(" ")
        return (w[0], w[1], len(w) == 5, w[-1])

    expected: dict = Counter()
    for s in _one_sentence_stories():
        expected[cell(s)] += math.exp(toy.logprob(s)) / p0
    observed = Counter()
    for s, c in first.items():
        observed[cell(s)] += c
    assert len(expected) == 6 * 6 * 2 * 16
    assert _chi2_pvalue(observed, expected, n) > 1e-3


def test_number_of_sentences_and_pronoun_rate(toy):
    n = 20_000
    stories = toy.sample(n, seed=1)
    k = Counter(s.count(". ") for s in stories)
    assert _chi2_pvalue(k, dict(enumerate(toy_module.MORE_PROBS)), n) > 1e-3
    more = [sent for s in stories for sent in s.rstrip(".\n").split(". ")[1:]]
    pron = Counter(sent.split(" ")[0] in ("he", "she") for sent in more)
    assert _chi2_pvalue(pron, {True: toy_module.P_PRONOUN, False: 1 - toy_module.P_PRONOUN}, len(more)) > 1e-3


def test_samples_are_valid_and_respect_long_range_constraints(toy):
    stories = toy.sample(3_000, seed=2)
    assert all(s.endswith("\n") and s.count("\n") == 1 for s in stories)
    assert all(toy.logprob(s) > -math.inf for s in stories)
    agree_err, agree_checked = toy.agreement_errors(stories)
    pron_err, pron_checked = toy.pronoun_errors(stories)
    assert (agree_err, pron_err) == (0, 0)
    assert agree_checked > 300 and pron_checked > 300  # the counters really looked at many cases
    # a whole corpus scores as the sum of its stories
    assert toy.logprob("".join(stories[:20])) == pytest.approx(math.fsum(map(toy.logprob, stories[:20])))


def test_sampling_is_deterministic_at_a_seed(toy):
    assert toy.sample(50, seed=3) == ToyLanguage().sample(50, seed=3)
    assert toy.sample(50, seed=3) != toy.sample(50, seed=4)
    assert toy.sample(0) == []
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="n must be"):
            toy.sample(bad)


def test_splits_are_fixed_and_distinct():
    # pinned: every cached model and every number in the book depends on these exact texts
    digests = {"train": "85119c7c5f62237268317cc95f85fd745841429c22abfba77b012bef83255d5a",
               "val": "c1d5f987b8116e1ee2291810a982cbdf72abf7ba16b70b0386164683b3add73f",
               "test": "be384d96d7dc431ee0c46b55e594023fc2f2993d61d67ccc452d3c9981f8e111"}
    texts = {split: toy_corpus(split) for split in digests}
    for split, text in texts.items():
        assert hashlib.sha256(text.encode()).hexdigest() == digests[split], split
    assert [t.count("\n") for t in texts.values()] == [20_000, 2_000, 2_000]
    assert len(set(texts.values())) == 3
    assert load_text("toy") == texts["train"]
    with pytest.raises(ValueError, match="split must be one of"):
        toy_corpus("validation")


@pytest.mark.parametrize("unit", ["char", "word", "story"])
def test_exact_entropy_inside_monte_carlo_interval(toy, unit):
    exact = {"char": toy.entropy_per_char, "word": toy.entropy_per_word, "story": toy.entropy_per_story}[unit]
    est = toy.estimate_entropy(n=4_000, seed=5, unit=unit)
    assert est.unit == unit and est.low < est.value < est.high
    assert est.low <= exact <= est.high
    assert est.high - est.low < 0.05 * exact  # the interval is tight enough to mean something
    wide = toy.estimate_entropy(n=4_000, seed=5, unit=unit, level=0.999)
    assert wide.low < est.low and wide.high > est.high


def test_estimate_entropy_rejects_bad_arguments(toy):
    with pytest.raises(ValueError, match="unit"):
        toy.estimate_entropy(n=10, unit="byte")
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        toy.estimate_entropy(n=1)


@pytest.mark.parametrize("unit", ["char", "word"])
def test_exact_expected_lengths_match_the_corpus(toy, unit):
    """The exact expected story length (the entropy rate's denominator) is the train split's mean."""
    stories = toy_corpus("train").splitlines(keepends=True)
    lens = torch.tensor([float(len(s) if unit == "char" else len(s.split())) for s in stories], dtype=torch.float64)
    rate = toy.entropy_per_char if unit == "char" else toy.entropy_per_word
    exact_len = toy.entropy_per_story / rate
    z = (lens.mean() - exact_len) / (lens.std() / len(lens) ** 0.5)
    assert abs(float(z)) < 4


# --- the toy language: exact scoring of hand-made texts ------------------------------------------

def test_logprob_of_a_hand_decomposed_story(toy):
    story = "tom follows the old rabbits. he likes the cat.\n"
    m = toy_module
    by_hand = ((1 / 6) * (1 / 6) * (m.P_ADJ / 6) * (1 / 8) * m.P_PLURAL           # first sentence
               * m.MORE_PROBS[1] * m.P_PRONOUN * (1 / 6) * (1 - m.P_ADJ) * (1 / 8) * (1 - m.P_PLURAL))
    assert toy.logprob(story) == pytest.approx(math.log(by_hand), rel=1e-12)
    assert toy.is_valid(story)


MALFORMED = {
    "wrong pronoun": ("tom sees the cat. she likes the dog.\n", "pronoun"),
    "plural subject, singular verb": ("tom sees the cat. the dogs likes the bird.\n", "plural verb"),
    "singular subject, plural verb": ("tom sees the cat. the dog like the bird.\n", "singular verb"),
    "main verb agrees with the nearer noun": (
        "tom sees the cat. the frogs that help the baker chases the dog.\n", "plural verb"),
    "plural verb after a name": ("tom see the cat.\n", "singular verb"),
    "missing newline": ("tom sees the cat.", "newline"),
    "missing full stop": ("tom sees the cat\n", "'.'"),
    "unknown word": ("tom sees the unicorn.\n", "noun"),
    "too many sentences": ("tom sees the cat." + " he sees the cat." * 4 + "\n", "at most 4"),
    "no name first": ("the cat sees the dog.\n", "name"),
    "trailing word": ("tom sees the cat quickly.\n", "unexpected"),
    "double space": ("tom sees the cat.  he sees the cat.\n", "'the'"),
    "empty story between newlines": ("tom sees the cat.\n\n", "'.'"),
}


@pytest.mark.parametrize("text, why", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_text_has_probability_zero(toy, text, why):
    assert toy.logprob(text) == -math.inf
    assert not toy.is_valid(text)
    with pytest.raises(ValueError, match="not a story of the toy language") as e:
        toy.logprob(text, strict=True)
    assert why in str(e.value)


def test_logprob_type_and_empty_errors(toy):
    for bad in (b"tom sees the cat.\n", None, ["tom sees the cat.\n"]):
        with pytest.raises(TypeError, match="text must be a str"):
            toy.logprob(bad)
    with pytest.raises(ValueError, match="empty"):
        toy.logprob("")


def test_error_counters_on_hand_made_texts(toy):
    text = ("tom sees the cat. the frogs that help the baker chases the dog. "
            "the big cat that likes the old birds follows the frog. he likes the cat.\n"
            "alice helps the dog. he sees the cat. she finds the frogs. the dogs like the cat.\n")
    assert toy.agreement_errors(text) == (1, 2)
    assert toy.pronoun_errors(text) == (1, 3)
    assert toy.agreement_errors([text, text]) == (2, 4)
    # sentences without a relative clause, or no name, are not counted
    assert toy.agreement_errors("the dogs likes the cat.") == (0, 0)
    assert toy.pronoun_errors("the dog likes the cat. he sees it.\n") == (0, 0)


def test_alphabet_covers_the_corpus(toy):
    assert set(toy_corpus("val")) == set(toy.alphabet)
    assert list(toy.alphabet) == sorted(set(toy.alphabet))


# --- corpora -------------------------------------------------------------------------------------

@pytest.fixture
def tiny_corpus(tmp_path, monkeypatch):
    """A registered corpus 'tiny' whose source is a temp file; the cache lives in tmp_path."""
    data = b"To be, or not to be, that is the question.\n"
    source = tmp_path / "source" / "tiny.txt"
    source.parent.mkdir()
    source.write_bytes(data)
    info = CorpusInfo(url=source.as_uri(), sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                      filename="tiny.txt", description="a test corpus")
    monkeypatch.setattr(corpora, "CORPORA", {"tiny": info})
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LMCORE_LOCAL_DATA", raising=False)
    return source, data


def test_unknown_corpus_lists_known_names(tiny_corpus):
    for call in (fetch_corpus, available, load_text):
        with pytest.raises(ValueError, match=r"unknown corpus 'shakespear'.*\['tiny'\]"):
            call("shakespear")
    with pytest.raises(TypeError, match="name"):
        fetch_corpus(3)
    with pytest.raises(TypeError, match="name_or_path"):
        load_text(3)


def test_fetch_downloads_verifies_and_caches(tiny_corpus, tmp_path):
    source, data = tiny_corpus
    assert not available("tiny")
    path = fetch_corpus("tiny")
    assert path == tmp_path / "cache" / "corpora" / "tiny.txt"
    assert path.read_bytes() == data and available("tiny")
    source.unlink()  # the cached copy is used from now on: no second download
    assert fetch_corpus("tiny") == path
    assert load_text("tiny") == data.decode()
    assert [p.name for p in path.parent.iterdir()] == ["tiny.txt"]  # no temporary files left


def test_corrupt_cache_is_replaced(tiny_corpus):
    source, data = tiny_corpus
    path = fetch_corpus("tiny")
    path.write_bytes(data[:-1] + b"?")
    assert not available("tiny")
    assert fetch_corpus("tiny").read_bytes() == data


def test_checksum_mismatch_is_rejected_and_not_cached(tiny_corpus, tmp_path):
    source, data = tiny_corpus
    for wrong in (data.replace(b"question", b"answer!!"), data + b"more", data[:-5]):
        other = tmp_path / "wrong.txt"
        other.write_bytes(wrong)
        with pytest.raises(ValueError, match="corrupt or has changed"):
            fetch_corpus("tiny", url=other.as_uri())
        cache = tmp_path / "cache" / "corpora"
        assert not cache.exists() or list(cache.iterdir()) == []


def test_unreachable_url_says_how_to_use_a_local_file(tiny_corpus, tmp_path):
    with pytest.raises(ConnectionError) as e:
        fetch_corpus("tiny", url=(tmp_path / "nowhere.txt").as_uri())
    msg = str(e.value)
    assert "load_text()" in msg and "LMCORE_LOCAL_DATA" in msg and "tiny.txt" in msg
    assert not available("tiny")


def test_local_data_folder_is_copied_into_the_cache(tiny_corpus, tmp_path, monkeypatch):
    source, data = tiny_corpus
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tiny.txt").write_bytes(b"not the right bytes")
    monkeypatch.setenv("LMCORE_LOCAL_DATA", f"{bad}{os.pathsep}{source.parent}")
    path = fetch_corpus("tiny", url=(tmp_path / "nowhere.txt").as_uri())  # never reaches the URL
    assert path.read_bytes() == data and path.parent.name == "corpora"
    monkeypatch.setenv("LMCORE_LOCAL_DATA", str(bad))  # a wrong local copy alone is not accepted
    path.unlink()
    assert not available("tiny")


def test_load_text_of_local_paths(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("héllo wörld\n", encoding="utf-8")
    assert load_text(f) == load_text(str(f)) == "héllo wörld\n"
    with pytest.raises(FileNotFoundError, match="no such text file"):
        load_text(str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="no such text file"):
        load_text(tmp_path / "missing")


@pytest.mark.skipif(not (SHARED_DATA / "tinyshakespeare.txt").is_file(), reason="no local tinyshakespeare")
def test_real_tinyshakespeare_from_local_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LMCORE_LOCAL_DATA", str(SHARED_DATA))
    assert available("tinyshakespeare")
    text = load_text("tinyshakespeare")
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    assert (tmp_path / "cache" / "corpora" / "tinyshakespeare.txt").is_file()


# --- batching ------------------------------------------------------------------------------------

def test_get_batch_windows_and_shift():
    data = torch.arange(100, 200)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(data, batch_size=64, seq_len=8, generator=g)
    assert x.shape == y.shape == (64, 8) and x.dtype == y.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])  # y is x shifted by one
    starts = x[:, 0] - 100
    expected = data[starts[:, None] + torch.arange(9)]  # contiguous windows of the stream
    assert torch.equal(x, expected[:, :-1]) and torch.equal(y, expected[:, 1:])
    x2, y2 = get_batch(data, 64, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_get_batch_reaches_both_ends_of_the_stream():
    data = torch.arange(10)
    seen = set()
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        x, y = get_batch(data, 4, seq_len=8, generator=g)
        seen |= set(x[:, 0].tolist())
        assert y.max() <= 9
    assert seen == {0, 1}  # the only two windows of 9 tokens in 10
    x, y = get_batch(torch.arange(9), 3, 8)  # exactly seq_len + 1 tokens: one window
    assert torch.equal(x, torch.arange(8).expand(3, 8)) and torch.equal(y, torch.arange(1, 9).expand(3, 8))


def test_get_batch_errors():
    data = torch.arange(20)
    with pytest.raises(ValueError, match="1-D"):
        get_batch(data.view(4, 5), 2, 3)
    with pytest.raises(ValueError, match="seq_len"):
        get_batch(data, 2, 20)
    for b, t in ((0, 4), (2, 0)):
        with pytest.raises(ValueError, match=">= 1"):
            get_batch(data, b, t)
    with pytest.raises(TypeError, match="torch.Tensor"):
        get_batch(list(range(20)), 2, 3)
    with pytest.raises(TypeError, match="integer token ids"):
        get_batch(data.float(), 2, 3)


def test_get_batch_aligned_rows_start_at_documents():
    """The first round(aligned * B) rows start at a document start, each usable start about equally
    often (chi-square at a fixed seed); the other rows still start anywhere."""
    from scipy.stats import chisquare

    data = torch.arange(1000)
    doc_starts = torch.tensor([0, 100, 350, 700, 995])        # 995 leaves no whole window of 8
    g = torch.Generator().manual_seed(0)
    counts, free = {0: 0, 100: 0, 350: 0, 700: 0}, []
    for _ in range(400):
        x, y = get_batch(data, 10, 8, generator=g, doc_starts=doc_starts, aligned=0.5)
        assert torch.equal(y[:, :-1], x[:, 1:])
        for s in x[:5, 0].tolist():
            counts[s] += 1                                   # KeyError if a row starts elsewhere
        free += x[5:, 0].tolist()
    assert chisquare(list(counts.values())).pvalue > 0.01
    assert len(set(free)) > 500                             # the free rows spread over the stream
    x, _ = get_batch(data, 3, 8, generator=g, doc_starts=doc_starts, aligned=1.0)
    assert set(x[:, 0].tolist()) <= {0, 100, 350, 700}
    x0, _ = get_batch(data, 4, 8, generator=torch.Generator().manual_seed(5), doc_starts=doc_starts)
    x1, _ = get_batch(data, 4, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x0, x1)                               # aligned=0 (default): plain random windows


def test_get_batch_aligned_errors():
    data = torch.arange(50)
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="aligned"):
            get_batch(data, 4, 8, doc_starts=torch.tensor([0]), aligned=bad)
    with pytest.raises(ValueError, match="doc_starts"):
        get_batch(data, 4, 8, aligned=0.5)
    with pytest.raises(ValueError, match="doc_starts"):
        get_batch(data, 4, 8, doc_starts=torch.tensor([45, 49]), aligned=0.5)   # no whole window


def test_train_val_split():
    ids = list(range(100))
    train, val = train_val_split(ids, val_fraction=0.1)
    assert train.tolist() == ids[:90] and val.tolist() == ids[90:]
    train, val = train_val_split(torch.arange(2), val_fraction=0.9)  # each side keeps a token
    assert train.tolist() == [0] and val.tolist() == [1]
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            train_val_split(ids, bad)
    for bad in ([1], torch.zeros(2, 3)):
        with pytest.raises(ValueError, match="1-D stream"):
            train_val_split(bad)


def test_batches_from_the_toy_corpus_decode_to_text():
    from lmcore.tokenizers import CharTokenizer

    text = toy_corpus("val")
    tok = CharTokenizer().train(text)
    data = torch.tensor(tok.encode(text))
    x, y = get_batch(data, 4, 32, generator=torch.Generator().manual_seed(0))
    for row_x, row_y in zip(x, y):
        sx, sy = tok.decode(row_x), tok.decode(row_y)
        assert sx[1:] == sy[:-1] and sx + sy[-1] in text


def test_every_prefix_of_a_window_is_an_example():
    """A window of T tokens gives T (context, next token) pairs: the training examples."""
    data = torch.tensor([5, 3, 7, 1, 2])
    x, y = get_batch(data, 1, 4)
    pairs = [(x[0, : t + 1].tolist(), int(y[0, t])) for t in range(4)]
    assert pairs == [([5], 3), ([5, 3], 7), ([5, 3, 7], 1), ([5, 3, 7, 1], 2)]
    assert list(itertools.accumulate([[5], [3], [7], [1]])) == [p[0] for p in pairs]
