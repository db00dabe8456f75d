"""N-gram language models over token ids (chapter 2): Shannon's counting model, add-ε and Kneser–Ney
smoothing.

An n-gram model predicts the next token from the previous ``n - 1`` tokens only:

    p(x_t | x_1 … x_{t-1}) ≈ p(x_t | x_{t-n+1} … x_{t-1})        (the "context")

and estimates that conditional distribution by counting.  Three estimators are implemented:

* ``"mle"``: the raw relative frequency count(h, w) / count(h) (Shannon's counting model).  A
  continuation never seen in training gets probability zero, so held-out perplexity is infinite
  as soon as one such continuation appears.
* ``"add-eps"``: (count(h, w) + ε) / (count(h) + ε|V|), the add-ε smoothing of the notes.
* ``"kneser-ney"``: interpolated Kneser–Ney (Kneser & Ney 1995; Chen & Goodman 1999), what real
  n-gram systems used: an absolute discount D is taken off every seen count and the freed mass is
  spread according to a lower-order model built from *continuation counts* (how many distinct
  tokens precede an n-gram), recursively down to the uniform distribution.

Every model works over any tokenizer's ids (``0 … vocab_size - 1``).  Counts are stored as sorted
arrays of integer n-gram keys (the n-gram read as a number in base |V|), so fitting a few MB
takes seconds and every query is a vectorised binary search: no Python loop per n-gram.

Contexts shorter than ``n - 1`` tokens (the first tokens of a text) are answered by the model of
the matching lower order, so every token of a held-out text is scored.  An unseen context carries
no evidence: ``"mle"`` then returns the uniform distribution (and ``"add-eps"`` does so naturally),
so every conditional distribution sums to one.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_choice, check_float, check_int

__all__ = ["NGramConfig", "NGramLM"]

_SMOOTHINGS = ("mle", "add-eps", "kneser-ney")
_MAX_KEY = 2**62  # keep n-gram keys (and key + |V|) inside int64


@dataclass
class _Table:
    """The n-grams of one order as sorted integer keys with their counts.

    ``csum[i]`` is the sum of ``counts[:i]``, so the total count of any contiguous run of keys
    (all n-grams that share a context) is a difference of two prefix sums.
    """

    keys: np.ndarray    # (m,) int64, sorted, unique
    counts: np.ndarray  # (m,) int64, >= 1
    csum: np.ndarray    # (m + 1,) int64

    @classmethod
    def from_keys(cls, keys: np.ndarray, counts: np.ndarray | None = None) -> _Table:
        if counts is None:
            keys, counts = np.unique(keys, return_counts=True)
        counts = counts.astype(np.int64)
        return cls(keys.astype(np.int64), counts, np.concatenate([[0], np.cumsum(counts)]))

    def discount(self) -> float:
        """The Kneser–Ney discount D = n1 / (n1 + 2 n2), clipped to [0.1, 0.95] (Chen & Goodman)."""
        n1 = int(np.sum(self.counts == 1))
        n2 = int(np.sum(self.counts == 2))
        d = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.75
        return float(min(max(d, 0.1), 0.95))


def _as_ids(ids: Any, name: str, vocab_size: int) -> np.ndarray:
    """Validate a sequence of token ids and return it as a 1-D int64 array."""
    if isinstance(ids, str):
        raise TypeError(f"{name} must be token ids, not a str: encode the text with a tokenizer "
                        "first, e.g. CharTokenizer().train(text).encode(text)")
    if hasattr(ids, "detach"):  # a torch tensor
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.ndim == 1 and arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be a 1-D sequence of ints, got shape {arr.shape} and dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= vocab_size)
    if bad.any():
        pos = int(np.argmax(bad))
        raise ValueError(f"{name}[{pos}] = {arr[pos]} is outside the vocabulary [0, {vocab_size}); "
                         "was it produced by a different tokenizer?")
    return arr


@dataclass
class NGramConfig:
    """Order and smoothing of an :class:`NGramLM`; invalid values raise ``ValueError`` at construction."""
    n: int                           # the order: 1 = unigram, 2 = bigram, ...; the context is n - 1 tokens
    vocab_size: int                  # |V|, the number of token ids (a tokenizer's vocab_size)
    smoothing: str = "kneser-ney"    # "mle" (raw counts), "add-eps" or "kneser-ney" (module docstring)
    eps: float = 1.0                 # add-ε's pseudo-count (ignored by the other smoothings)
    discount: float | None = None    # Kneser–Ney's D; None estimates one per order as n1 / (n1 + 2 n2)

    def __post_init__(self) -> None:
        # stored as Python ints: a numpy int64 would overflow vocab_size ** n silently
        self.n = check_int("n", self.n, low=1)
        self.vocab_size = check_int("vocab_size", self.vocab_size, low=1)
        if self.vocab_size ** self.n >= _MAX_KEY:
            raise ValueError(f"vocab_size ** n = {self.vocab_size}**{self.n} does not fit the int64 n-gram keys; "
                             "use a smaller n or a smaller vocabulary")
        check_choice("smoothing", self.smoothing, _SMOOTHINGS)
        check_float("eps", self.eps, low=0)
        check_float("discount", self.discount, low=0, high=1, low_open=True, optional=True)


class NGramLM:
    """An n-gram language model over ids ``0 … vocab_size - 1``, built from an :class:`NGramConfig`.

    >>> lm = NGramLM(NGramConfig(2, vocab_size=3, smoothing="mle")).fit([0, 1, 0, 2, 0, 1])
    >>> round(lm.prob(1, context=[0]), 4)   # "0" is followed by 1, 2, 1
    0.6667
    """

    def __init__(self, config: NGramConfig) -> None:
        if not isinstance(config, NGramConfig):
            raise TypeError(f"config must be an NGramConfig, got {type(config).__name__}")
        self.config = config
        self.n, self.vocab_size, self.smoothing = config.n, config.vocab_size, config.smoothing
        self.eps = 0.0 if config.smoothing == "mle" else float(config.eps)  # MLE is add-ε with ε = 0
        self.discount = config.discount
        self._raw: list[_Table] = []   # _raw[k - 1]: counts of k-grams, k = 1 … n
        self._cont: list[_Table] = []  # _cont[k - 1]: continuation counts N1+(• k-gram), k = 1 … n-1
        self._d_raw: list[float] = []
        self._d_cont: list[float] = []

    # --- fitting ------------------------------------------------------------------------------
    def _keys(self, ids: np.ndarray, k: int) -> np.ndarray:
        """The key of every k-gram in ``ids``: the k ids read as a base-|V| number, shape (len - k + 1,)."""
        m = len(ids) - k + 1
        keys = np.zeros(max(m, 0), dtype=np.int64)
        for j in range(k):  # k vectorised passes, not one Python step per n-gram
            keys = keys * self.vocab_size + ids[j:j + m]
        return keys

    def fit(self, ids: Any) -> NGramLM:
        """Count every k-gram (k = 1 … n) of ``ids`` (a 1-D sequence of ints); returns ``self``."""
        ids = _as_ids(ids, "ids", self.vocab_size)
        if len(ids) < self.n:
            raise ValueError(f"ids has {len(ids)} tokens; an order-{self.n} model needs at least {self.n}")
        V = self.vocab_size
        self._raw = [_Table.from_keys(self._keys(ids, k)) for k in range(1, self.n + 1)]
        # continuation count of a k-gram g: how many distinct tokens precede it = the number of
        # distinct (k+1)-grams whose last k tokens are g.
        self._cont = [_Table.from_keys(self._raw[k].keys % V ** k) for k in range(1, self.n)]
        if self.discount is None:
            self._d_raw = [t.discount() for t in self._raw]
            self._d_cont = [t.discount() for t in self._cont]
        else:
            self._d_raw = [self.discount] * self.n
            self._d_cont = [self.discount] * (self.n - 1)
        return self

    def _check_fitted(self) -> None:
        if not self._raw:
            raise RuntimeError("this NGramLM is not fitted yet: call .fit(ids) first")

    def num_ngrams(self, k: int | None = None) -> int:
        """How many distinct k-grams the training ids contain (default k = n)."""
        self._check_fitted()
        k = self.n if k is None else check_int("k", k, low=1, high=self.n)
        return len(self._raw[k - 1].keys)

    def count(self, ngram: Sequence[int]) -> int:
        """How many times the n-gram (1 to n ids) occurs in the training ids."""
        self._check_fitted()
        g = _as_ids(ngram, "ngram", self.vocab_size)
        if not 1 <= len(g) <= self.n:
            raise ValueError(f"ngram must have 1 … {self.n} ids, got {len(g)}")
        t = self._raw[len(g) - 1]
        key = self._keys(g, len(g))[0]
        i = np.searchsorted(t.keys, key)
        return int(t.counts[i]) if i < len(t.keys) and t.keys[i] == key else 0

    # --- the conditional distributions ------------------------------------------------------------
    def _lookup(self, t: _Table, ctx: np.ndarray, w: np.ndarray | None):
        """For contexts ``ctx`` (Q,) (context keys), the counts of the n-grams (ctx, w).

        Returns ``(c, total, distinct)``: ``c`` is (Q,) when ``w`` is given, else a dense (Q, V)
        matrix; ``total`` (Q,) sums the counts over all continuations of each context and
        ``distinct`` (Q,) counts the continuations seen.  The n-grams of one context are a
        contiguous run of keys ``ctx·V … ctx·V + V - 1``, found by binary search.
        """
        V = self.vocab_size
        lo = np.searchsorted(t.keys, ctx * V)
        hi = np.searchsorted(t.keys, ctx * V + V)
        total = t.csum[hi] - t.csum[lo]
        distinct = hi - lo
        if w is not None:
            i = np.searchsorted(t.keys, ctx * V + w)
            found = (i < hi) & (t.keys[np.minimum(i, len(t.keys) - 1)] == ctx * V + w)
            c = np.where(found, t.counts[np.minimum(i, len(t.keys) - 1)], 0)
        else:
            rows = np.repeat(np.arange(len(ctx)), distinct)
            idx = np.arange(distinct.sum()) - np.repeat(np.cumsum(distinct) - distinct, distinct)
            idx += np.repeat(lo, distinct)
            c = np.zeros((len(ctx), V), dtype=np.int64)
            c[rows, t.keys[idx] % V] = t.counts[idx]
        return c, total, distinct

    def _probs(self, contexts: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """p(w | context) for a batch of contexts of one length m < n.

        ``contexts`` is (Q, m); returns (Q,) when ``w`` (Q,) is given, else (Q, V).
        """
        Q, m = contexts.shape
        V = self.vocab_size
        shape = (Q,) if w is not None else (Q, V)
        if self.smoothing != "kneser-ney":
            c, total, _ = self._lookup(self._raw[m], self._keys_2d(contexts), w)
            eps = self.eps
            denom = (total + eps * V).astype(np.float64)
            num = c + eps
            if w is None:
                denom = denom[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                p = np.where(denom > 0, num / np.where(denom > 0, denom, 1), 1.0 / V)
            return np.broadcast_to(p, shape).astype(np.float64)
        # interpolated Kneser–Ney: start from uniform and climb the orders 1 … m + 1; the top
        # order uses raw counts, the lower ones continuation counts.
        p = np.full(shape, 1.0 / V)
        for k in range(1, m + 2):  # order k: context = the last k - 1 tokens
            top = k == m + 1
            t = self._raw[k - 1] if top else self._cont[k - 1]
            d = self._d_raw[k - 1] if top else self._d_cont[k - 1]
            c, total, distinct = self._lookup(t, self._keys_2d(contexts[:, m - k + 1:]), w)
            seen = total > 0
            safe = np.where(seen, total, 1).astype(np.float64)
            backoff = np.where(seen, d * distinct / safe, 1.0)
            if w is None:
                safe, backoff = safe[:, None], backoff[:, None]
            p = np.maximum(c - d, 0) / safe + backoff * p
        return p

    def _keys_2d(self, contexts: np.ndarray) -> np.ndarray:
        """Row-wise keys of a (Q, k) array of ids, shape (Q,); an empty context has key 0."""
        keys = np.zeros(len(contexts), dtype=np.int64)
        for j in range(contexts.shape[1]):
            keys = keys * self.vocab_size + contexts[:, j]
        return keys

    def _context(self, context: Any) -> np.ndarray:
        """The last ``n - 1`` ids of ``context`` (all of them when it is shorter: a lower order)."""
        ctx = _as_ids(context, "context", self.vocab_size)
        # max(…, 0): a negative start would count from the end and drop ids of a short context
        return ctx[max(len(ctx) - (self.n - 1), 0):]

    def next_token_probs(self, context: Sequence[int] = ()) -> np.ndarray:
        """The distribution of the next token after ``context``, shape (V,), summing to 1.

        Only the last ``n - 1`` ids of ``context`` matter; a shorter context uses a lower order.
        """
        self._check_fitted()
        ctx = self._context(context)
        return self._probs(ctx[None, :], None)[0]

    def prob(self, token: int, context: Sequence[int] = ()) -> float:
        """p(token | context)."""
        self._check_fitted()
        w = _as_ids([token], "token", self.vocab_size)
        return float(self._probs(self._context(context)[None, :], w)[0])

    def logprob(self, token: int, context: Sequence[int] = ()) -> float:
        """log p(token | context) in nats (``-inf`` for a zero-probability token)."""
        p = self.prob(token, context)
        return math.log(p) if p > 0 else -math.inf

    def token_logprobs(self, ids: Any, context: Sequence[int] = ()) -> np.ndarray:
        """log p of every token of ``ids`` given the tokens before it, shape (len(ids),).

        Token ``t`` is conditioned on the ``n - 1`` ids before it, taken from ``context + ids``;
        the first tokens, with fewer predecessors, use the lower orders.
        """
        self._check_fitted()
        ids = _as_ids(ids, "ids", self.vocab_size)
        ctx = self._context(context)
        full = np.concatenate([ctx, ids])
        h = self.n - 1
        out = np.empty(len(ids))
        # positions in `full` of the scored tokens: len(ctx) … len(full) - 1
        for pos in range(len(ctx), min(h, len(full))):  # at most n - 1 short-context tokens
            out[pos - len(ctx)] = self._probs(full[None, :pos], full[pos:pos + 1])[0]
        start = max(h, len(ctx))
        if start < len(full):  # every later token has a full context: one vectorised batch
            windows = np.lib.stride_tricks.sliding_window_view(full, h + 1)[start - h:]
            out[start - len(ctx):] = self._probs(windows[:, :h], windows[:, h].copy())
        with np.errstate(divide="ignore"):
            return np.log(out)

    def sequence_logprob(self, ids: Any, context: Sequence[int] = ()) -> float:
        """log p(ids | context) = Σ_t log p(x_t | previous n - 1 tokens), in nats."""
        return float(self.token_logprobs(ids, context).sum())

    def cross_entropy(self, ids: Any) -> float:
        """Average negative log-likelihood of held-out ``ids`` in nats per token."""
        lp = self.token_logprobs(ids)
        if len(lp) == 0:
            raise ValueError("ids is empty: cross-entropy needs at least one token")
        return float(-lp.mean())

    def perplexity(self, ids: Any) -> float:
        """exp(cross-entropy): the effective number of equally likely choices per token."""
        return float(math.exp(self.cross_entropy(ids)))

    # --- sampling -------------------------------------------------------------------------------
    def sample(self, num_tokens: int, context: Sequence[int] = (),
               generator: np.random.Generator | int | None = None) -> list[int]:
        """Draw ``num_tokens`` ids one at a time after ``context``.

        Each draw inverts the cumulative distribution at a uniform number from ``generator``
        (a ``numpy.random.Generator`` or an int seed; default seed 0), so runs are reproducible.
        """
        self._check_fitted()
        check_int("num_tokens", num_tokens, low=0)
        rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(
            check_int("generator (a numpy Generator or an int seed)", 0 if generator is None else generator, low=0))
        history = tuple(int(i) for i in self._context(context))
        cdfs: dict[tuple[int, ...], np.ndarray] = {}  # contexts recur: compute each one's CDF once
        out: list[int] = []
        for u in rng.random(num_tokens):
            cdf = cdfs.get(history)
            if cdf is None:
                cdf = cdfs[history] = np.cumsum(self._probs(np.array([history], dtype=np.int64)
                                                            .reshape(1, len(history)), None)[0])
            tok = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), self.vocab_size - 1)
            out.append(tok)
            history = (history + (tok,))[1 if len(history) == self.n - 1 else 0:]
        return out

    def __repr__(self) -> str:
        extra = f", eps={self.eps}" if self.smoothing == "add-eps" else ""
        return (f"NGramLM(NGramConfig(n={self.n}, vocab_size={self.vocab_size}, "
                f"smoothing={self.smoothing!r}{extra}))")
