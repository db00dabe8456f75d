"""Tokenizers: a shared base class and its subclasses (character-level, byte-level BPE)."""
from .base import Tokenizer, load_tokenizer
from .char import CharTokenizer

__all__ = ["Tokenizer", "load_tokenizer", "CharTokenizer"]
