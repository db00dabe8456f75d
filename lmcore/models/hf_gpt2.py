"""Load Hugging Face GPT-2 weights into ``lmcore.GPT``, offline. No chapter needs it; the tests use
it to check chapter 5's GPT against GPT-2 itself, and the chapter 7 benchmark to time both.

GPT-2 is exactly our ``GPT`` with learned positions, biases, tanh-GELU ("gelu_new"), pre-norm,
a tied output head and LayerNorm epsilon 1e-5. The parameter names even match (both follow the
original OpenAI code), with one twist: Hugging Face stores GPT-2's linear layers as ``Conv1D``
modules whose weight is ``(in_features, out_features)``, the transpose of ``nn.Linear``'s.

``from_hf_gpt2`` accepts a ``transformers.GPT2LMHeadModel`` object or a local directory written by
``save_pretrained`` (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, the latter read
with ``torch.load(weights_only=True)``). It never touches the network and does not import
``transformers`` at all (a directory is read with ``json`` and ``safetensors``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .gpt import GPT, GPTConfig

__all__ = ["from_hf_gpt2", "gpt2_config_from_hf"]

# HF GPT-2 layers stored as Conv1D (weight (in, out)); nn.Linear wants (out, in).
_CONV1D_WEIGHTS = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
# Non-parameter buffers older transformers versions saved (the causal mask); we build our own.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu"}


def gpt2_config_from_hf(hf_config: dict[str, Any]) -> GPTConfig:
    """Translate a GPT-2 ``config.json`` dictionary into a ``GPTConfig``; unsupported options raise."""
    if hf_config.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"expected a GPT-2 config (model_type 'gpt2'), got {hf_config.get('model_type')!r}")
    act = hf_config.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ValueError(f"activation_function {act!r} is not supported; use one of {sorted(_ACTIVATIONS)}")
    n_embd = hf_config["n_embd"]
    if hf_config.get("n_inner") not in (None, 4 * n_embd):
        raise ValueError(f"n_inner={hf_config['n_inner']} is not supported; lmcore's MLP is 4 * n_embd")
    for flag, supported in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                            ("reorder_and_upcast_attn", False)):
        if hf_config.get(flag, supported) != supported:
            raise ValueError(f"GPT-2 option {flag}={hf_config[flag]!r} is not supported (need {supported})")
    return GPTConfig(
        vocab_size=hf_config["vocab_size"], context_length=hf_config["n_positions"],
        n_layer=hf_config["n_layer"], n_head=hf_config["n_head"], n_embd=n_embd,
        dropout=0.0, bias=True, pos_encoding="learned", norm="pre",
        tie_weights=hf_config.get("tie_word_embeddings", True), activation=_ACTIVATIONS[act],
        layer_norm_eps=hf_config.get("layer_norm_epsilon", 1e-5),
    )


def _read_directory(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"model_or_path={str(path)!r} has no config.json; pass a directory written by "
                         "save_pretrained or a GPT2LMHeadModel object")
    hf_config = json.loads(config_file.read_text())
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file
        return hf_config, load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        return hf_config, torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ValueError(f"model_or_path={str(path)!r} has neither model.safetensors nor pytorch_model.bin "
                     "(sharded checkpoints are not supported)")


def from_hf_gpt2(model_or_path) -> GPT:
    """A ``GPT`` (on the CPU, eval mode) with the weights of a Hugging Face GPT-2.

    ``model_or_path``: a ``GPT2LMHeadModel`` (or ``GPT2Model``) object, or a local directory.
    """
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_dir():
            raise ValueError(f"model_or_path={str(path)!r} is not a local directory (nothing is downloaded)")
        hf_config, hf_state = _read_directory(path)
    elif hasattr(model_or_path, "state_dict") and hasattr(model_or_path, "config"):
        hf_config = model_or_path.config.to_dict()
        hf_state = {k: v.detach().cpu() for k, v in model_or_path.state_dict().items()}
    else:
        raise TypeError(f"model_or_path must be a GPT2LMHeadModel or a directory path, "
                        f"got {type(model_or_path).__name__}")

    config = gpt2_config_from_hf(hf_config)
    state = {}
    for key, value in hf_state.items():
        key = key.removeprefix("transformer.")
        if key.endswith(_IGNORED_SUFFIXES) or (key == "lm_head.weight" and config.tie_weights):
            continue
        if key.endswith(_CONV1D_WEIGHTS):
            value = value.t()
        state[key if key == "lm_head.weight" else f"transformer.{key}"] = value.float().contiguous()
    if config.tie_weights:   # the head shares the embedding matrix: state_dict lists it under both names
        state["lm_head.weight"] = state["transformer.wte.weight"]
    model = GPT(config)
    model.load_state_dict(state, strict=True)
    return model.eval()
