"""The key/value cache that makes autoregressive generation linear instead of quadratic.

Without a cache, generating token ``t`` reruns the whole model on all ``t`` previous tokens. But the
keys and values of earlier tokens never change (attention is causal), so we can compute them once,
store them, and feed the model only the newest token: each step then costs one token's worth of
matrix multiplies plus one attention read over the stored keys.

``KVCache`` preallocates, for every layer, a key and a value buffer of shape
``(batch, n_kv_head, max_len, head_dim)`` and writes new entries in place; there is no
``torch.cat`` per token (which would copy the whole cache every step). ``nbytes`` reports the
memory the buffers really occupy and ``kv_cache_bytes`` is the textbook formula
``2 · n_layer · n_kv_head · head_dim · seq_len · bytes_per_element`` (times the batch size).

The cache owns its state changes: ``update`` / ``advance`` during a forward pass, ``reset`` to start
over, ``reorder(rows)`` when beam search keeps some hypotheses and drops others, and
``prefill(other)`` to copy a prompt that was run once into every row of a bigger batch.

**Sliding windows.** With ``window=W`` (``W < max_len``) the cache is a *rolling buffer* of ``W`` slots:
position ``p`` lives in slot ``p % W``, so its memory is that of ``W`` positions however long the
sequence gets (up to ``max_len``). A query at position ``i`` of a sliding-window model only reads keys
``i - W < j <= i``, so writing position ``p`` over ``p - W`` loses nothing a later query needs.
``update`` then returns keys in slot order, not position order; ``key_positions`` says which position
each returned key has, and the model builds its mask from that.
Chapter 7 builds it and measures what it saves.
"""
from __future__ import annotations

import torch

from .._checks import check_int

__all__ = ["KVCache", "kv_cache_bytes"]


def kv_cache_bytes(n_layer: int, n_kv_head: int, head_dim: int, seq_len: int,
                   bytes_per_element: int = 2, batch_size: int = 1) -> int:
    """Bytes needed to cache keys and values: ``2·n_layer·n_kv_head·head_dim·seq_len·bytes·batch``.

    The leading 2 counts keys *and* values. ``bytes_per_element`` is 2 for fp16/bf16, 4 for fp32.
    """
    for name, value in (("n_layer", n_layer), ("n_kv_head", n_kv_head), ("head_dim", head_dim),
                        ("seq_len", seq_len), ("bytes_per_element", bytes_per_element),
                        ("batch_size", batch_size)):
        check_int(name, value, low=0)
    return 2 * n_layer * n_kv_head * head_dim * seq_len * bytes_per_element * batch_size


class KVCache:
    """Preallocated per-layer key/value buffers for one batch of sequences.

    ``keys[l]`` and ``values[l]`` are ``(batch, n_kv_head, max_len, head_dim)``; positions
    ``[0, length)`` hold valid entries. The model calls ``update(layer, k, v)`` in every layer and
    ``advance(T)`` once per forward pass, so all layers agree on where the new tokens start.

    ``window``: ``None``, or ``W >= 1`` for a sliding-window model; when ``W < max_len`` the buffers
    hold ``W`` slots (a rolling buffer, see the module docstring) and ``self.window`` is ``W``,
    otherwise the buffers hold all ``max_len`` positions and ``self.window`` is ``None``.
    """

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 window: int | None = None):
        for name, value in (("n_layer", n_layer), ("batch_size", batch_size), ("n_kv_head", n_kv_head),
                            ("max_len", max_len), ("head_dim", head_dim)):
            check_int(name, value, low=1)
        window = check_int("window", window, low=1, optional=True)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            # an integer buffer would truncate every key and value without a word
            raise TypeError(f"dtype must be a floating-point torch.dtype (e.g. torch.float32), got {dtype!r}")
        # a window as long as the cache never drops a position: an ordinary cache, read in order
        self.window = window if window is not None and window < max_len else None
        shape = (batch_size, n_kv_head, self.window or max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.length = 0   # number of positions already stored (= position of the next token)

    @property
    def slots(self) -> int:
        """Positions the buffers hold at once (``window`` for a rolling buffer, else ``max_len``)."""
        return self.keys[0].shape[2]

    def key_positions(self, n_new: int) -> torch.Tensor:
        """Absolute positions (int64, on the buffers' device) of the keys ``update`` returns when
        ``n_new`` more tokens are stored now, in the order it returns them."""
        end, device = self.length + n_new, self.keys[0].device
        if self.window is None or end <= self.slots:      # every position in its own slot, in order
            return torch.arange(end, device=device)
        if n_new == 1:              # the new token is written first; the buffer is read whole
            return self._slot_positions(end, self.slots)
        held = min(self.length, self.slots)               # the slots, then all the new tokens
        return torch.cat([self._slot_positions(self.length, held), torch.arange(self.length, end, device=device)])

    def _slot_positions(self, end: int, held: int) -> torch.Tensor:
        """Positions in slots ``0 .. held - 1`` when the last ``held`` of positions ``0 .. end - 1`` are stored."""
        base = end - held
        return base + (torch.arange(held, device=self.keys[0].device) - base) % self.slots

    @property
    def nbytes(self) -> int:
        """Bytes occupied by all key and value buffers (the whole preallocation, used or not)."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    @property
    def remaining(self) -> int:
        """How many more positions fit before the cache is full."""
        return self.max_len - self.length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` (B, n_kv_head, T, head_dim) after the cached positions of ``layer``.

        Returns views ``(B, n_kv_head, length + T, head_dim)`` of all keys and values so far. A rolling
        buffer (``window``) past its ``window`` slots returns the slots (written first when ``T == 1``)
        or, for ``T > 1``, the slots followed by all ``T`` new keys (earlier new queries need keys that
        the write overwrites); ``key_positions(T)`` gives their positions.
        Keys or values that do not fit the buffers (another batch size, head count, head size, dtype
        or device) raise ``ValueError`` naming the mismatch before anything is written.
        """
        if not 0 <= layer < len(self.keys):
            raise ValueError(f"layer must be in [0, {len(self.keys)}): the cache holds {len(self.keys)} layers, "
                             f"got {layer}")
        self._check_fits(k, v, self.keys[layer])
        T = k.shape[2]
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"the KV cache holds {self.max_len} positions; {self.length} are used and "
                             f"{T} more do not fit. Call reset() or create a larger cache")
        if self.window is not None and end > self.slots:
            return self._update_rolling(layer, k, v)
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def _update_rolling(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values, T, W = self.keys[layer], self.values[layer], k.shape[2], self.slots
        if T == 1:
            keys[:, :, self.length % W] = k[:, :, 0]
            values[:, :, self.length % W] = v[:, :, 0]
            return keys, values
        held = min(self.length, W)
        out = torch.cat([keys[:, :, :held], k], dim=2), torch.cat([values[:, :, :held], v], dim=2)
        n = min(T, W)               # only the last W new positions stay in the window
        slots = torch.arange(self.length + T - n, self.length + T, device=k.device) % W
        keys.index_copy_(2, slots, k[:, :, T - n:])
        values.index_copy_(2, slots, v[:, :, T - n:])
        return out

    def _check_fits(self, k: torch.Tensor, v: torch.Tensor, buffer: torch.Tensor) -> None:
        """Shapes, dtypes and devices only (no values are read, so no device sync)."""
        if k.dim() != 4 or v.shape != k.shape:
            raise ValueError(f"k and v must both be (batch, n_kv_head, T, head_dim), got {tuple(k.shape)} and "
                             f"{tuple(v.shape)}")
        for i, what in ((0, "batch_size"), (1, "n_kv_head"), (3, "head_dim")):
            if k.shape[i] != buffer.shape[i]:
                raise ValueError(f"the KV cache was made with {what}={buffer.shape[i]} but the keys have "
                                 f"{what}={k.shape[i]}: make the cache for this model and batch, "
                                 f"model.make_cache(batch_size={k.shape[0]})")
        if k.dtype != buffer.dtype or v.dtype != buffer.dtype or k.device != buffer.device:
            got = f"{k.dtype} on {k.device}" if v.dtype == k.dtype else f"{k.dtype} (values {v.dtype}) on {k.device}"
            raise ValueError(f"the KV cache holds {buffer.dtype} on {buffer.device} but the keys are {got}; make "
                             "the cache with the model's dtype and device, inside the same torch.autocast "
                             "as the forward passes (model.make_cache)")

    def advance(self, n_tokens: int) -> None:
        """Mark ``n_tokens`` more positions as stored (called once per forward, after all layers)."""
        n_tokens = check_int("n_tokens", n_tokens, low=0)
        # compared, not passed as a bound: under torch.compile the lengths are symbolic, and a message
        # formatted from them on every call would pin the compiled step to one cache length
        if n_tokens > self.remaining:
            raise ValueError(f"n_tokens must be at most the {self.remaining} positions left in the cache, "
                             f"got {n_tokens}")
        self.length += n_tokens

    def reset(self) -> None:
        """Forget every stored position (the buffers are reused, not freed)."""
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep, for every new row ``i``, the cached entries of old row ``rows[i]`` (beam search).

        ``rows`` (B',) int64 may repeat or drop rows, so the batch size can change.
        """
        if not isinstance(rows, torch.Tensor) or rows.dim() != 1 or rows.dtype not in (torch.long, torch.int32):
            raise ValueError("rows must be a 1-D integer tensor of row indices")
        if rows.numel() == 0:
            raise ValueError("rows is empty: keep at least one row")
        # the values are checked on the CPU only: reading them from an accelerator would stall it
        # (there index_select reports an out-of-range row itself)
        if rows.device.type == "cpu" and not bool(((rows >= 0) & (rows < self.batch_size)).all()):
            raise ValueError(f"rows must be row indices in [0, {self.batch_size}), got {rows.tolist()}")
        # index_select copies: a beam kept twice gets two independent buffers to write into
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]

    def prefill(self, other: KVCache) -> None:
        """Copy the positions ``other`` holds into every row of this (empty) cache.

        Run a prompt once with a batch-1 cache, then fan it out to ``batch_size`` samples: each row
        continues from the same keys and values without recomputing them.
        """
        if not isinstance(other, KVCache):
            raise TypeError(f"other must be a KVCache, got {type(other).__name__}")
        if self.length != 0:
            raise ValueError(f"prefill needs an empty cache; this one holds {self.length} positions (reset() it)")
        if len(other.keys) != len(self.keys) or other.keys[0].shape[1::2] != self.keys[0].shape[1::2]:
            raise ValueError("other has a different number of layers, heads or head size")
        if other.window != self.window:
            raise ValueError(f"other is a cache with window={other.window} but this one has window={self.window}; "
                             "make both with model.make_cache of the same model and max_len")
        if other.batch_size not in (1, self.batch_size):
            raise ValueError(f"other holds {other.batch_size} rows; prefill copies 1 row to many, "
                             f"or {self.batch_size} rows one to one")
        if other.length > self.max_len:
            raise ValueError(f"other holds {other.length} positions, more than this cache's max_len={self.max_len}")
        n = min(other.length, other.slots)          # a full rolling buffer is copied slot for slot
        for mine, theirs in zip((*self.keys, *self.values), (*other.keys, *other.values)):
            mine[:, :, :n] = theirs[:, :, :n]      # broadcasts a batch-1 cache over every row
        self.length = other.length
