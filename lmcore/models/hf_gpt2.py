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
import torch.nn.functional as F

from .._checks import check_int
from .gpt import GPT, GPTConfig

__all__ = ["from_hf_gpt2", "gpt2_config_from_hf"]

# HF GPT-2 layers stored as Conv1D (weight (in, out)); nn.Linear wants (out, in).
_CONV1D_WEIGHTS = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
# Non-parameter buffers older transformers versions saved (the causal mask); we build our own.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu"}


_REQUIRED = ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd")


def gpt2_config_from_hf(hf_config: dict[str, Any], pad_vocab_to: int = 1) -> GPTConfig:
    """Translate a GPT-2 ``config.json`` dictionary into a ``GPTConfig``; unsupported options raise.
    ``pad_vocab_to`` is passed on to the ``GPTConfig`` (64 pads GPT-2's 50257 rows to 50304).

    A dictionary that is not a GPT-2 config (missing keys, wrong types or values) raises
    ``ValueError`` / ``TypeError`` naming the key.
    """
    if not isinstance(hf_config, dict):
        raise TypeError(f"hf_config must be a dict (a parsed config.json), got {type(hf_config).__name__}")
    missing = [k for k in _REQUIRED if k not in hf_config]
    if missing:
        raise ValueError(f"the GPT-2 config lacks {missing}; a GPT-2 config.json has all of {list(_REQUIRED)}")
    if hf_config.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"expected a GPT-2 config (model_type 'gpt2'), got {hf_config.get('model_type')!r}")
    act = hf_config.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ValueError(f"activation_function {act!r} is not supported; use one of {sorted(_ACTIVATIONS)}")
    n_embd = check_int("n_embd", hf_config["n_embd"], low=1)
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
        layer_norm_eps=hf_config.get("layer_norm_epsilon", 1e-5), pad_vocab_to=pad_vocab_to,
    )


def _read_directory(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """config.json, the weights and the weights' file of a save_pretrained directory."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"model_or_path={str(path)!r} has no config.json; pass a directory written by "
                         "save_pretrained or a GPT2LMHeadModel object")
    try:
        hf_config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{config_file} is not valid JSON ({e}); it should be the config.json that "
                         "save_pretrained wrote") from e
    if not isinstance(hf_config, dict):
        raise ValueError(f"{config_file} holds a JSON {type(hf_config).__name__}, not an object of GPT-2 settings")
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return hf_config, _read_weights(path / name), path / name
    raise ValueError(f"model_or_path={str(path)!r} has neither model.safetensors nor pytorch_model.bin "
                     "(sharded checkpoints are not supported)")


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(file))
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:   # a truncated or foreign file: say which one
        raise ValueError(f"{file} could not be read as a checkpoint: {e}") from e


def from_hf_gpt2(model_or_path, pad_vocab_to: int = 1) -> GPT:
    """A ``GPT`` (on the CPU, eval mode) with the weights of a Hugging Face GPT-2.

    ``model_or_path``: a ``GPT2LMHeadModel`` (or ``GPT2Model``) object, or a local directory.
    ``pad_vocab_to``: pad the embedding and output rows to a multiple of this (``GPTConfig``'s
    field; the extra rows are zero and the logits are GPT-2's, ``vocab_size`` columns).
    """
    pad_vocab_to = check_int("pad_vocab_to", pad_vocab_to, low=1)
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_dir():
            raise ValueError(f"model_or_path={str(path)!r} is not a local directory (nothing is downloaded)")
        hf_config, hf_state, weights_file = _read_directory(path)
        source, weights = str(path / "config.json"), str(weights_file)
    elif hasattr(model_or_path, "state_dict") and hasattr(getattr(model_or_path, "config", None), "to_dict"):
        hf_config = model_or_path.config.to_dict()
        hf_state = {k: v.detach().cpu() for k, v in model_or_path.state_dict().items()}
        source, weights = "model_or_path.config", "model_or_path"
    else:
        raise TypeError(f"model_or_path must be a GPT2LMHeadModel or a directory path, "
                        f"got {type(model_or_path).__name__}")

    try:
        config = gpt2_config_from_hf(hf_config, pad_vocab_to)
    except (TypeError, ValueError) as e:   # the same message, plus which file it is about
        raise type(e)(f"{source}: {e}") from e
    state = {}
    for key, value in hf_state.items():
        key = key.removeprefix("transformer.")
        if key.endswith(_IGNORED_SUFFIXES) or (key == "lm_head.weight" and config.tie_weights):
            continue
        if key.endswith(_CONV1D_WEIGHTS):
            value = value.t()
        if key in ("wte.weight", "lm_head.weight") and value.dim() == 2 and value.shape[0] == config.vocab_size:
            # zero rows for a padded vocabulary (a matrix of another size is left for the load to name)
            value = F.pad(value, (0, 0, 0, config.padded_vocab_size - config.vocab_size))
        state[key if key == "lm_head.weight" else f"transformer.{key}"] = value.float().contiguous()
    if config.tie_weights and "transformer.wte.weight" in state:   # (a missing one is reported below)
        state["lm_head.weight"] = state["transformer.wte.weight"]   # one matrix, listed under both names
    model = GPT(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:   # missing, unexpected or mis-shaped tensors: name the checkpoint
        raise ValueError(f"the weights in {weights} do not fit the GPT-2 of its config: {e}") from e
    return model.eval()
