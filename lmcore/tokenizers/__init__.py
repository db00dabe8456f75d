"""Tokenizers (chapter 3): a shared base class and its subclasses, character-level and byte-level BPE.

``train_merges`` and ``merge_pair`` are the two steps of BPE training that chapter 3 has the reader
write and then compares with these.
"""
from .base import Tokenizer, load_tokenizer
from .bpe import GPT2_PATTERN, GPT4_PATTERN, BPETokenizer, merge_pair, train_merges
from .char import CharTokenizer

__all__ = ["Tokenizer", "load_tokenizer", "CharTokenizer", "BPETokenizer", "GPT2_PATTERN", "GPT4_PATTERN",
           "train_merges", "merge_pair"]
