"""Data: the toy language with a known distribution, real corpora by name, and batching.

Also the small datasets of the later chapters: the enumerable languages of chapter 11 and the toy
instruction set of chapter 10.
"""
from .batching import get_batch, train_val_split
from .corpora import CORPORA, CorpusInfo, available, cache_dir, fetch_corpus, load_text
from .instructions import TOY_SYSTEM_PROMPTS, TOY_TASKS, toy_chats, toy_instructions
from .languages import enumerate_sequences, tiny_language
from .toy import ToyLanguage, toy_corpus

__all__ = [
    "ToyLanguage", "toy_corpus",
    "CORPORA", "CorpusInfo", "available", "cache_dir", "fetch_corpus", "load_text",
    "get_batch", "train_val_split",
    "enumerate_sequences", "tiny_language",
    "TOY_TASKS", "toy_instructions",
    "TOY_SYSTEM_PROMPTS", "toy_chats",
]
