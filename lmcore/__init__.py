"""lmcore: the package every chapter of the book imports.

Its folders are the book's layers, in the order the chapters teach them; each imports only from the
layers above it in this list (``tests/test_layout.py`` checks it):

- ``lmcore.data`` (chapters 1-2): the toy language with a known distribution, real corpora, batching.
- ``lmcore.tokenizers`` (chapter 3): ``CharTokenizer`` and a byte-level ``BPETokenizer``.
- ``lmcore.models`` (chapters 2, 4-7, 10): ``NGramLM``, ``MLPLanguageModel``, ``GPT``, positional
  encodings, the ``KVCache``, LoRA, loading Hugging Face GPT-2.
- ``lmcore.decoding`` (chapters 7-8): samplers, ``generate(model, ...)``, beam search, scoring.
- ``lmcore.training`` (chapter 4 on): ``Trainer`` / ``TrainConfig``, checkpoints, several processes.
- ``lmcore.scaling`` (chapter 9): parameter and FLOP counts, power-law fits, sweeps.
- ``lmcore.alignment`` (chapters 10-11): the chat template, SFT, and RLHF.
- ``lmcore.zoo``: the book's shipped models, ``pretrained(name)``.
- ``lmcore.widgets`` and ``lmcore.exercises``: the chapters' interactive parts and exercise checks.

Beside them: ``lmcore.setup()`` (device, seeds, threads; every chapter's first cell),
``lmcore.claim`` (checks a statement of the prose against the numbers a chapter computed) and the
command line ``python -m lmcore {train, sample, zoo}``.
"""
from . import alignment, data, decoding, exercises, models, scaling, tokenizers, training, zoo
from ._version import __version__
from .alignment import ChatTemplate
from .claims import ClaimError, claim
from .decoding import beam_search, generate
from .models import (
                     GPT,
                     GPTConfig,
                     KVCache,
                     LoRALinear,
                     MLPConfig,
                     MLPLanguageModel,
                     NGramConfig,
                     NGramLM,
                     RNNConfig,
                     RNNLanguageModel,
                     apply_lora,
                     kv_cache_bytes,
                     mark_only_lora_trainable,
                     merge_lora,
                     unmerge_lora,
)
from .runtime import get_device, progress, seed_everything, setup
from .tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from .training import NonFiniteLossError, TrainConfig, Trainer, load_checkpoint, save_checkpoint
from .zoo import list_models, load_model, pretrained

__all__ = [
    "__version__",
    "setup", "get_device", "seed_everything", "progress", "claim", "ClaimError",
    "data", "tokenizers", "models", "decoding", "training", "scaling", "alignment", "zoo", "exercises",
    "Tokenizer", "CharTokenizer", "BPETokenizer", "load_tokenizer",
    "NGramConfig", "NGramLM", "MLPConfig", "MLPLanguageModel", "RNNConfig", "RNNLanguageModel",
    "GPT", "GPTConfig", "KVCache", "kv_cache_bytes",
    "LoRALinear", "apply_lora", "mark_only_lora_trainable", "merge_lora", "unmerge_lora",
    "generate", "beam_search",
    "Trainer", "TrainConfig", "NonFiniteLossError", "load_checkpoint", "save_checkpoint",
    "ChatTemplate",
    "pretrained", "list_models", "load_model",
]
