"""lmcore: the package every chapter of the book imports.

Public API (each name is documented in its module):

- ``lmcore.data``: the toy language with a known distribution, real corpora by name, batching.
- ``lmcore.tokenizers``: ``CharTokenizer`` and a byte-level ``BPETokenizer`` with one interface.
- ``lmcore.model``: ``GPTConfig`` and ``GPT`` (positional encodings in ``lmcore.positional``).
- ``lmcore.generation`` / ``lmcore.sampling`` / ``lmcore.kv_cache``: ``generate`` (also ``GPT.generate``), samplers, ``KVCache``.
- ``lmcore.trainer``: ``Trainer`` / ``TrainConfig`` (checkpoints in ``lmcore.checkpoint``, DDP in
  ``lmcore.distributed``); ``lmcore.zoo``: ``pretrained(name)``; CLIs ``python -m lmcore.train`` /
  ``python -m lmcore.generate``.
- ``lmcore.runtime``: ``setup()`` (device + seeds), used by every chapter's first cell.
- ``lmcore.claim``: asserts a statement of the prose against the numbers a chapter computed.
- ``lmcore.rlhf``: rewards, Bradley–Terry reward models, the exact RLHF posterior, KL-regularised
  policy gradient and DPO (chapter 11).
"""
__version__ = "0.1.0"

from .runtime import get_device, seed_everything, setup
from .tokenizers import CharTokenizer, Tokenizer, load_tokenizer
from .tokenizers import BPETokenizer
from . import ngram
from .ngram import NGramLM
from . import data
from . import exercises
from .model import GPT, GPTConfig
from .kv_cache import KVCache, kv_cache_bytes
from .generation import generate
from . import generation, positional, sampling
from .trainer import NonFiniteLossError, TrainConfig, Trainer
from .checkpoint import load_checkpoint, save_checkpoint
from . import zoo
from .zoo import list_models, load_model, pretrained
from . import rlhf
from .mlp_lm import MLPConfig, MLPLanguageModel
from . import chat, lora
from .chat import ChatTemplate
from .lora import LoRALinear, apply_lora, mark_only_lora_trainable, merge_lora, unmerge_lora
from . import scaling
from .claims import ClaimError, claim

__all__ = [
    "__version__",
    "setup", "get_device", "seed_everything",
    "Tokenizer", "CharTokenizer", "load_tokenizer",
    "BPETokenizer", "ngram", "NGramLM",
    "data", "exercises",
    "GPT", "GPTConfig", "KVCache", "kv_cache_bytes", "generate", "generation", "positional", "sampling",
    "Trainer", "TrainConfig", "NonFiniteLossError", "load_checkpoint", "save_checkpoint",
    "zoo", "pretrained", "list_models", "load_model",
    "rlhf",
    "MLPLanguageModel", "MLPConfig",
    "chat", "lora", "ChatTemplate", "LoRALinear", "apply_lora", "mark_only_lora_trainable", "merge_lora", "unmerge_lora",
    "scaling",
    "claim", "ClaimError",
]
