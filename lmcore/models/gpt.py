"""A decoder-only transformer language model (GPT), readable top to bottom (chapter 5).

The pieces, in the order the data flows through them:

1. ``GPTConfig``: every size and switch, validated when constructed.
2. ``CausalSelfAttention`` (in :mod:`lmcore.models.attention`): where tokens exchange information.
3. ``MLP`` and ``Block`` (in :mod:`lmcore.models.block`): ``n_embd → 4·n_embd → GELU → n_embd``,
   and attention and MLP, each wrapped in a residual connection with LayerNorm either before the
   sublayer (pre-norm, GPT-2) or after the residual sum (post-norm, the original transformer).
4. ``GPT``: token embedding (+ learned or sinusoidal positions, chapter 6), the blocks, a final
   LayerNorm and the output projection, tied to the token embedding by default. ``forward``
   returns ``(logits, loss)``. Sampling is not the model's job: ``lmcore.generate(model, ...)``
   (chapter 8) drives it, with or without a KV cache (chapter 7).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import (
    check_bool,
    check_choice,
    check_float,
    check_idx,
    check_int,
    check_targets,
)
from .attention import AttentionInputs, activation_dtype, band_mask
from .block import MLP, Block
from .kv_cache import KVCache
from .positional import ROPE_SCALINGS, alibi_bias, alibi_slopes, rope_cos_sin, rope_inv_freq, sinusoidal_table

__all__ = ["GPTConfig", "GPT", "MLP", "Block"]

POS_ENCODINGS = ("learned", "sinusoidal", "rope", "alibi", "none")
NORMS = ("pre", "post")
ATTN_IMPLS = ("sdpa", "reference")
ACTIVATIONS = ("gelu", "gelu_new")


@dataclass
class GPTConfig:
    """Sizes and switches of a ``GPT``. Invalid combinations raise ``ValueError`` at construction.

    ``n_kv_head``: key/value heads for grouped-query attention (``None`` = ``n_head``, ordinary
    multi-head attention; ``1`` = multi-query). ``activation``: ``"gelu"`` is the exact erf GELU,
    ``"gelu_new"`` GPT-2's tanh approximation. ``rope_scaling``: ``None``, ``"linear"`` (position
    interpolation: positions divided by ``rope_scaling_factor``), ``"ntk"`` (NTK-aware: RoPE base
    enlarged), ``"yarn"`` (YaRN: a per-frequency blend of the two, plus an attention temperature) or
    ``"dynamic"`` (dynamic NTK: the base grows with the current length), used to read contexts longer
    than the training length, which is ``context_length / rope_scaling_factor``. RoPE settings that would do
    nothing (``rope_base`` or ``rope_scaling`` without RoPE, a factor without a scaling) are refused.

    ``pos_encoding="sinusoidal"`` adds the paper's raw table, whose rows have norm ``sqrt(n_embd / 2)``,
    dozens of times longer than token embeddings at GPT-2's initialisation (std 0.02), so the
    tokens barely register and training is slow; chapter 6 measures this and trains with the
    table (``model.pos_table``) multiplied by a small factor. ``pos_encoding="alibi"`` passes its
    bias to attention as an explicit mask, which rules out the flash kernel on a GPU (SDPA then runs
    its memory-efficient or math kernel): slower than learned or RoPE positions at long contexts.

    ``pad_vocab_to``: the token embedding and the output layer get ``padded_vocab_size`` rows,
    ``vocab_size`` rounded up to a multiple of this (64: GPT-2's 50257 -> 50304, whose matrix
    multiplies tile evenly on a GPU; nanoGPT measured about 25% faster steps). The padded rows start
    at zero and are never read: ``forward`` slices the logits back to ``vocab_size`` columns and ids
    ``>= vocab_size`` are refused as before, so loss, samplers and checkpoints of the real vocabulary
    see no difference. The default 1 pads nothing.

    ``window``: sliding-window attention (Mistral, Gemma's local layers): the query at position ``i``
    attends to keys ``i - window < j <= i`` only, so after ``n_layer`` layers position ``i`` has read
    at most positions ``i - n_layer·(window - 1) .. i``, and ``make_cache`` keeps ``window`` positions
    (a rolling buffer) instead of ``context_length``. ``None`` (the default) attends to every position.
    """
    vocab_size: int                    # number of token ids the model reads and predicts
    context_length: int                # most positions the model attends to (learned/sinusoidal rows)
    n_layer: int                       # transformer blocks
    n_head: int                        # query heads per attention layer
    n_embd: int                        # width of the residual stream; n_embd / n_head per head
    dropout: float = 0.0               # on embeddings, attention weights and residual branches
    bias: bool = True                  # biases in Linear and LayerNorm layers (GPT-2 has them)
    pos_encoding: str = "learned"      # "learned", "sinusoidal", "rope", "alibi" or "none" (chapter 6)
    norm: str = "pre"                  # "pre": x + f(LN(x)) as in GPT-2; "post": LN(x + f(x))
    tie_weights: bool = True           # output projection shares the token-embedding matrix
    n_kv_head: int | None = None       # key/value heads (GQA); None = n_head, 1 = multi-query
    attn_impl: str = "sdpa"            # "sdpa" (fused kernel) or "reference" (written out)
    activation: str = "gelu"           # "gelu" (exact erf) or "gelu_new" (GPT-2's tanh approximation)
    layer_norm_eps: float = 1e-5
    rope_base: float = 10000.0         # RoPE's base: frequencies base^(-2i/head_dim)
    rope_scaling: str | None = None    # None, "linear" (position interpolation), "ntk", "yarn" or "dynamic"
    rope_scaling_factor: float = 1.0   # how many times the training length the scaling stretches to
    pad_vocab_to: int = 1              # round wte/lm_head rows up to a multiple of this (64: 50257 -> 50304)
    window: int | None = None          # attend to at most this many most recent positions
    #                                    (sliding-window attention); None = all

    def __post_init__(self) -> None:
        # Integers are stored as Python ints (a numpy int64 would not survive to_dict -> json).
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd", "pad_vocab_to"):
            setattr(self, name, check_int(name, getattr(self, name), low=1))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        self.n_kv_head = check_int("n_kv_head", self.n_kv_head, low=1, optional=True)
        self.window = check_int("window", self.window, low=1, optional=True)
        if self.n_kv_head is not None and self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        check_float("dropout", self.dropout, low=0, high=1, high_open=True)
        self.bias, self.tie_weights = check_bool("bias", self.bias), check_bool("tie_weights", self.tie_weights)
        for name, allowed in (("pos_encoding", POS_ENCODINGS), ("norm", NORMS),
                              ("attn_impl", ATTN_IMPLS), ("activation", ACTIVATIONS),
                              ("rope_scaling", ROPE_SCALINGS)):
            check_choice(name, getattr(self, name), allowed)
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got n_embd/n_head = {self.head_dim}")
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"the sinusoidal table needs an even n_embd, got {self.n_embd}")
        check_float("layer_norm_eps", self.layer_norm_eps, low=0, low_open=True)
        check_float("rope_base", self.rope_base, low=1, low_open=True)
        check_float("rope_scaling_factor", self.rope_scaling_factor, low=1)
        # RoPE settings without RoPE (or a factor without a scaling) would be ignored without a word
        if self.pos_encoding != "rope":
            for name, default in (("rope_scaling", None), ("rope_base", 10000.0)):
                if getattr(self, name) != default:
                    raise ValueError(f"{name}={getattr(self, name)!r} needs pos_encoding='rope', "
                                     f"got pos_encoding={self.pos_encoding!r}")
        if self.rope_scaling is None and self.rope_scaling_factor != 1:
            raise ValueError(f"rope_scaling_factor={self.rope_scaling_factor!r} has no effect without "
                             "rope_scaling: set rope_scaling='linear' or 'ntk', or leave the factor at 1")
        if self.rope_scaling in ("ntk", "dynamic") and self.head_dim < 4:
            raise ValueError(f"rope_scaling={self.rope_scaling!r} needs head_dim >= 4 (it enlarges the base by "
                             f"factor^(head_dim/(head_dim-2))), got n_embd/n_head = {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def rope_original_length(self) -> int:
        """The training length a RoPE scaling stretches from: ``context_length / rope_scaling_factor``."""
        return max(1, round(self.context_length / self.rope_scaling_factor))

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the token embedding and the output layer: ``vocab_size`` rounded up to a
        multiple of ``pad_vocab_to``."""
        return -(-self.vocab_size // self.pad_vocab_to) * self.pad_vocab_to

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads actually used (``n_kv_head`` or ``n_head``)."""
        return self.n_kv_head or self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


class GPT(nn.Module):
    """Decoder-only transformer language model. See the module docstring for the layout."""

    # the fixed tables, registered as buffers when the config asks for them
    pos_table: torch.Tensor
    rope_inv_freq: torch.Tensor
    alibi_slopes: torch.Tensor

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            # post-norm blocks already end in a LayerNorm; pre-norm needs one before the head
            ln_f=(nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
                  if config.norm == "pre" else nn.Identity()),
        ))
        if config.pos_encoding == "learned":
            self.transformer.wpe = nn.Embedding(config.context_length, config.n_embd)
        # Fixed tables are derived from the config, so they are not saved in the state dict.
        if config.pos_encoding == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(config.context_length, config.n_embd),
                                 persistent=False)
        if config.pos_encoding == "rope":
            self.register_buffer("rope_inv_freq", self._rope_table(self._embedding.device),
                                 persistent=False)
        if config.pos_encoding == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        extra = config.padded_vocab_size - config.vocab_size
        if extra:   # built at the real size above, so they draw the random numbers an unpadded model draws
            for layer in (self.transformer.wte, self.lm_head):
                layer.weight = nn.Parameter(F.pad(layer.weight.detach(), (0, 0, 0, extra)))
            self.transformer.wte.num_embeddings = self.lm_head.out_features = config.padded_vocab_size
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight   # type: ignore[assignment]  # one matrix reads and writes tokens

        # GPT-2 initialisation: N(0, 0.02) everywhere, and the projections that write into the
        # residual stream scaled by 1/sqrt(2·n_layer) (two per block) so its variance does not
        # grow with depth.
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            weight = module.weight
            if module is self.transformer.wte or module is self.lm_head:
                # padded vocabulary rows stay zero (no id reads them, no logit is kept from them);
                # the real rows draw exactly the numbers of an unpadded model
                nn.init.zeros_(weight[self.config.vocab_size:])
                weight = weight[:self.config.vocab_size]
            nn.init.normal_(weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _apply(self, fn, recurse: bool = True):
        # model.to(torch.bfloat16) would round the RoPE frequencies with everything else (see
        # table_dtype) and moving float64 to MPS fails: the buffer is taken out of the conversion
        # and rebuilt from the config on the device the weights landed on.
        if "rope_inv_freq" not in self._buffers:
            return super()._apply(fn, recurse)
        del self._buffers["rope_inv_freq"]
        try:
            super()._apply(fn, recurse)
        finally:
            self._buffers["rope_inv_freq"] = self._rope_table(self._embedding.device)
        return self

    def _rope_table(self, device: torch.device) -> torch.Tensor:
        """RoPE's frequencies on ``device`` in ``positional.table_dtype(device)`` (float64 on the CPU)."""
        cfg = self.config
        extra = {"original_length": cfg.rope_original_length} if cfg.rope_scaling == "yarn" else {}
        return rope_inv_freq(cfg.head_dim, cfg.rope_base, cfg.rope_scaling, cfg.rope_scaling_factor, device, **extra)

    @property
    def _embedding(self) -> torch.Tensor:
        """The token-embedding matrix: its device and dtype are the model's (mypy sees a Module)."""
        return cast(nn.Embedding, self.transformer.wte).weight

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters; with ``non_embedding`` the token and position embeddings are not
        counted (the convention of the scaling-law papers). An untied output head is counted, and
        with a padded vocabulary so are its padding rows (they are parameters, if always zero)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    # ----------------------------------------------------------------------------------- forward
    def _check_idx(self, idx: torch.Tensor, kv_cache: KVCache | None) -> None:
        """Shape and dtype of ``idx`` always; its values on the CPU only (``check_forward_ids``): on a
        GPU generate() checks prompts, and an id out of range fails in the embedding's device assert
        (with a padded vocabulary in a device-side assert of its own: no host sync either way)."""
        check_idx(idx, self.config.vocab_size)
        V = self.config.vocab_size
        if self.config.padded_vocab_size != V and (idx.device.type != "cpu" or torch.compiler.is_compiling()):
            # the embedding has rows for ids up to padded_vocab_size, so its own bounds check no longer
            # refuses ids in [vocab_size, padded_vocab_size)
            torch._assert_async((idx < V).all(), f"idx holds a token id >= vocab_size ({V})")
        T = idx.shape[1]
        if kv_cache is not None and not isinstance(kv_cache, KVCache):
            raise TypeError(f"kv_cache must be a KVCache (model.make_cache(batch_size)), got {type(kv_cache).__name__}")
        if kv_cache is not None and len(kv_cache.keys) != self.config.n_layer:
            raise ValueError(f"kv_cache has {len(kv_cache.keys)} layers but the model has {self.config.n_layer}; "
                             "make it with model.make_cache(batch_size)")
        offset = kv_cache.length if kv_cache is not None else 0
        if offset + T > self.config.context_length:
            raise ValueError(f"idx has {T} tokens (+{offset} cached) but context_length is "
                             f"{self.config.context_length}; crop the input to the last context_length tokens")

    def embed_tokens(self, idx: torch.Tensor, positions: torch.Tensor, seq_len: int | None = None
                     ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Token (+ learned or sinusoidal position) embeddings (B, T, n_embd) of ``idx`` (B, T) at the
        absolute ``positions`` (T,), and RoPE's ``(cos, sin)`` tables for them (None without RoPE).
        ``seq_len`` (the sequence's length so far) is read by dynamic NTK only. No checks and no
        dropout: the shared first step of ``forward`` and of a compiled decode step."""
        x = self.transformer.wte(idx)
        cfg = self.config
        if cfg.pos_encoding == "learned":
            x = x + self.transformer.wpe(positions)
        elif cfg.pos_encoding == "sinusoidal":
            x = x + self.pos_table[positions]
        rope = None
        if cfg.pos_encoding == "rope":   # computed at full precision, rounded once to the queries' dtype
            # dynamic NTK's base depends on how long the sequence is now (seq_len: a Python int, no sync)
            extra = ({"original_length": cfg.rope_original_length, "seq_len": seq_len}
                     if cfg.rope_scaling == "dynamic" else {})
            rope = rope_cos_sin(positions, self.rope_inv_freq, cfg.rope_scaling, cfg.rope_scaling_factor,
                                dtype=activation_dtype(x.device, x.dtype), **extra)
        return x, rope

    def _embed(self, idx: torch.Tensor, kv_cache: KVCache | None) -> tuple[torch.Tensor, AttentionInputs]:
        """Token (+ position) embeddings (B, T, n_embd) and the per-forward attention inputs."""
        self._check_idx(idx, kv_cache)
        offset = kv_cache.length if kv_cache is not None else 0
        T, L = idx.shape[1], offset + idx.shape[1]
        positions = torch.arange(offset, L, device=idx.device)     # absolute positions of the new tokens
        x, rope = self.embed_tokens(idx, positions, seq_len=L)
        cfg = self.config
        # Query i (position offset+i) may attend to keys 0..offset+i. Only the plain causal case
        # (is_causal, no mask) and single-token decoding (no mask) can use the flash kernel on a GPU;
        # ALiBi's bias and the mask of several new tokens after a cached prefix (chunked prefill)
        # are explicit masks, which SDPA hands to its memory-efficient or math kernel instead.
        mask, is_causal = None, False
        if cfg.window is not None and L > cfg.window:   # the window bites: a band over the keys' positions
            mask = self._window_mask(positions, kv_cache, x.dtype)
        elif cfg.pos_encoding == "alibi":
            mask = alibi_bias(self.alibi_slopes, T, L, offset).to(x.dtype)
            future = torch.ones(T, L, dtype=torch.bool, device=idx.device).triu(offset + 1)
            mask = mask.masked_fill(future, float("-inf"))
        elif T == L:
            is_causal = True
        elif T > 1:   # several new tokens after a cached prefix (T == 1 sees every cached key)
            mask = torch.ones(T, L, dtype=torch.bool, device=idx.device).tril(offset)
        return self.transformer.drop(x), AttentionInputs(rope, mask, is_causal, kv_cache)

    def _window_mask(self, positions: torch.Tensor, kv_cache: KVCache | None, dtype: torch.dtype
                     ) -> torch.Tensor | None:
        """The window's ``band_mask`` over the keys as attention reads them (``KVCache.key_positions``)."""
        cfg, T = self.config, positions.shape[0]
        alibi = cfg.pos_encoding == "alibi"
        if kv_cache is not None and kv_cache.window is not None and T == 1 and not alibi:
            return None     # one query over a full rolling buffer: every slot is in its window
        keys = kv_cache.key_positions(T) if kv_cache is not None else positions
        return band_mask(positions, keys, cfg.window, self.alibi_slopes if alibi else None, dtype)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, last_only: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position and, given ``targets``, the mean cross-entropy.

        ``idx``: token ids (B, T). ``targets``: (B, T) next-token ids; positions set to -100 are
        ignored (e.g. the prompt part in instruction tuning). ``kv_cache``: the new tokens are placed
        after the ``kv_cache.length`` cached positions and their keys/values stored.
        ``last_only``: return logits for the last position only, (B, 1, vocab) — what generation needs.
        Returns ``(logits (B, T, vocab_size), loss or None)``: exactly ``vocab_size`` columns also
        with a padded vocabulary (a view of the padded output, whose extra columns are dropped).
        Bad arguments raise a ``ValueError`` / ``TypeError`` naming them before any KV-cache entry
        is written.
        """
        check_targets(idx, targets, self.config.vocab_size, last_only)
        x, inputs = self._embed(idx, kv_cache)
        for block in self.transformer.h:
            x, _ = block(x, inputs)
        x = self.transformer.ln_f(x)
        if last_only:
            x = x[:, -1:]
        # the padded vocabulary's columns are cut off, not masked: the logits, the loss over them and
        # every sampler see the real vocabulary only (a view: no copy, and no-op without padding)
        logits = self.lm_head(x)[..., :self.config.vocab_size]
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        if kv_cache is not None:
            kv_cache.advance(idx.shape[1])
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every layer for ``idx`` (B, T): a list of ``n_layer`` tensors
        (B, n_head, T, T), computed by the explicit reference attention (rows sum to 1)."""
        x, inputs = self._embed(idx, None)
        maps = []
        for block in self.transformer.h:
            x, weights = block(x, inputs, need_weights=True)
            maps.append(weights)
        return maps

    # ------------------------------------------------------------------------------ the KV cache
    def make_cache(self, batch_size: int, max_len: int | None = None,
                   dtype: torch.dtype | None = None) -> KVCache:
        """An empty ``KVCache`` shaped for this model (``max_len`` defaults to ``context_length``, the
        most positions a forward pass accepts, which is also its upper limit). With a ``window``
        shorter than ``max_len`` it is a rolling buffer of ``window`` positions (``KVCache``).

        ``dtype`` defaults to the dtype the keys will have: the autocast dtype when the cache is made
        inside ``torch.autocast`` for the model's device (half the memory of float32 under bfloat16:
        GPT-2 at batch 64 and 1024 positions needs 2.25 GiB instead of 4.5 GiB), else the weights'.
        Make the cache in the same autocast context as the forward passes that fill it.
        """
        p = self._embedding
        max_len = check_int("max_len", self.config.context_length if max_len is None else max_len,
                            low=1, high=self.config.context_length)
        return KVCache(self.config.n_layer, batch_size, self.config.kv_heads, max_len, self.config.head_dim,
                       device=p.device, dtype=activation_dtype(p.device, p.dtype) if dtype is None else dtype,
                       window=self.config.window)
