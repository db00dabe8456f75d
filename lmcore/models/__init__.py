"""Models, from counting to transformers: each is built from a config and returns next-token scores.

- ``NGramLM`` (chapter 2): counts with smoothing.
- ``MLPLanguageModel`` / ``MLPConfig`` (chapter 4): Bengio et al.'s neural n-gram model.
- ``RNNLanguageModel`` / ``RNNConfig`` (chapter 4): Elman RNN and GRU language models.
- ``Word2Vec`` / ``Word2VecConfig`` (chapter 4): skip-gram word vectors with negative sampling.
- ``GPT`` / ``GPTConfig`` (chapter 5) with ``CausalSelfAttention``; ``MaskedLM`` / ``MaskedLMConfig``
  (chapter 5), the bidirectional masked model, with ``mask_tokens``; position encodings in
  ``positional`` (chapter 6); the ``KVCache`` (chapter 7); LoRA adapters in ``lora`` (chapter 10);
  ``from_hf_gpt2`` loads Hugging Face GPT-2 weights into a ``GPT``.

Models never sample: ``lmcore.decoding.generate(model, ...)`` takes any of the neural ones.
"""
from . import lora, positional
from .attention import AttentionInputs, CausalSelfAttention
from .gpt import GPT, GPTConfig
from .hf_gpt2 import from_hf_gpt2, gpt2_config_from_hf
from .kv_cache import KVCache, kv_cache_bytes
from .lora import LoRALinear, apply_lora, mark_only_lora_trainable, merge_lora, unmerge_lora
from .masked import MaskedLM, MaskedLMConfig, mask_tokens
from .mlp import MLPConfig, MLPLanguageModel
from .ngram import NGramConfig, NGramLM
from .rnn import RNNConfig, RNNLanguageModel, gradient_norm_by_distance
from .word2vec import Word2Vec, Word2VecConfig, noise_distribution, skipgram_pairs

__all__ = [
    "NGramConfig", "NGramLM", "MLPConfig", "MLPLanguageModel",
    "RNNConfig", "RNNLanguageModel", "gradient_norm_by_distance",
    "Word2Vec", "Word2VecConfig", "noise_distribution", "skipgram_pairs",
    "GPT", "GPTConfig", "AttentionInputs", "CausalSelfAttention", "from_hf_gpt2", "gpt2_config_from_hf",
    "KVCache", "kv_cache_bytes",
    "MaskedLMConfig", "MaskedLM", "mask_tokens",
    "LoRALinear", "apply_lora", "mark_only_lora_trainable", "merge_lora", "unmerge_lora",
    "lora", "positional",
]
