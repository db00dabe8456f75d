"""Tokenizers: a shared base class and its subclasses (character-level, byte-level BPE)."""
from .base import Tokenizer, load_tokenizer
from .char import CharTokenizer
from .bpe import BPETokenizer

__all__ = ["Tokenizer", "load_tokenizer", "CharTokenizer", "BPETokenizer"]
