"""Data: the toy language with a known distribution, real corpora by name, and batching."""
from .batching import get_batch, train_val_split
from .corpora import CORPORA, CorpusInfo, available, cache_dir, fetch_corpus, load_text
from .toy import ToyLanguage, toy_corpus

__all__ = [
    "ToyLanguage", "toy_corpus",
    "CORPORA", "CorpusInfo", "available", "cache_dir", "fetch_corpus", "load_text",
    "get_batch", "train_val_split",
]
