"""lmcore: the package every chapter of the book imports.

Public API (each name is documented in its module):

- ``lmcore.data``: the toy language with a known distribution, real corpora by name, batching.
- ``lmcore.tokenizers``: ``CharTokenizer`` and a byte-level ``BPETokenizer`` with one interface.
- ``lmcore.model``: ``GPTConfig`` and ``GPT`` (positional encodings in ``lmcore.positional``).
- ``lmcore.generation`` / ``lmcore.sampling`` / ``lmcore.kv_cache``: ``generate``, samplers, ``KVCache``.
- ``lmcore.runtime``: ``setup()`` (device + seeds), used by every chapter's first cell.
"""
__version__ = "0.1.0"

from .runtime import get_device, seed_everything, setup
from .tokenizers import CharTokenizer, Tokenizer, load_tokenizer
from . import data
from .model import GPT, GPTConfig
from .kv_cache import KVCache, kv_cache_bytes
from .generation import generate
from . import positional, sampling

__all__ = [
    "__version__",
    "setup", "get_device", "seed_everything",
    "Tokenizer", "CharTokenizer", "load_tokenizer",
    "data",
    "GPT", "GPTConfig", "KVCache", "kv_cache_bytes", "generate", "positional", "sampling",
]
