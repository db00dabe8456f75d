"""Word vectors by skip-gram with negative sampling (word2vec), chapter 4.

Mikolov et al.'s skip-gram model gives every word two vectors: ``v_w`` (row ``w`` of
``in_embed``, the word vector one keeps) when it is the centre word and ``u_w`` (row ``w`` of
``out_embed``) when it is a context word. Instead of a softmax over the whole vocabulary,
negative sampling turns each observed (centre ``w``, context ``o``) pair into logistic regressions:
the observed pair should score high, ``K`` noise words ``n_1 … n_K`` drawn from the unigram
distribution raised to the power 3/4 should score low. The loss of one pair is::

    ℓ = -log σ(u_o · v_w) - Σ_k log σ(-u_{n_k} · v_w)

and its gradients, with ``σ' = σ (1 - σ)`` and ``1 - σ(x) = σ(-x)``, are::

    ∂ℓ/∂v_w     = (σ(u_o · v_w) - 1) u_o + Σ_k σ(u_{n_k} · v_w) u_{n_k}
    ∂ℓ/∂u_o     = (σ(u_o · v_w) - 1) v_w
    ∂ℓ/∂u_{n_k} = σ(u_{n_k} · v_w) v_w

(:meth:`Word2Vec.gradients` computes them; a test checks them against autograd). Skip-gram rather
than CBOW: each pair is one small logistic regression whose gradient can be written in three lines,
and it learns better vectors for rare words, which a small corpus is full of (CBOW averages the
context first, and is faster). Pairs come from :func:`skipgram_pairs`, noise words from
:func:`noise_distribution`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_float, check_int, check_token_ids

__all__ = ["Word2VecConfig", "Word2Vec", "skipgram_pairs", "noise_distribution"]


@dataclass
class Word2VecConfig:
    """Sizes of a :class:`Word2Vec`; invalid values raise ``ValueError`` at construction."""
    vocab_size: int            # number of word ids
    n_embd: int = 50           # size of each word vector
    n_negative: int = 5        # noise words per observed pair (K)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_embd", "n_negative"):
            setattr(self, name, check_int(name, getattr(self, name), low=1))

    def to_dict(self) -> dict:
        return asdict(self)


class Word2Vec(nn.Module):
    """Skip-gram with negative sampling; see the module docstring.

    ``in_embed`` starts uniform in ±0.5 / n_embd and ``out_embed`` at zero, as in word2vec's code.
    """

    def __init__(self, config: Word2VecConfig) -> None:
        super().__init__()
        if not isinstance(config, Word2VecConfig):
            raise TypeError(f"config must be a Word2VecConfig, got {type(config).__name__}")
        self.config = config
        self.in_embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.out_embed = nn.Embedding(config.vocab_size, config.n_embd)
        with torch.no_grad():
            self.in_embed.weight.uniform_(-0.5 / config.n_embd, 0.5 / config.n_embd)
            self.out_embed.weight.zero_()

    def _scores(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        V = self.config.vocab_size
        for name, ids in (("center", center), ("context", context), ("negatives", negatives)):
            check_token_ids(name, ids, V)
        if center.dim() != 1 or context.shape != center.shape or negatives.dim() != 2 \
                or negatives.shape[0] != center.shape[0]:
            raise ValueError(f"center and context must be (N,) and negatives (N, K), got {tuple(center.shape)}, "
                             f"{tuple(context.shape)}, {tuple(negatives.shape)}")
        v = self.in_embed(center)                                        # (N, d)
        pos = (self.out_embed(context) * v).sum(-1)                      # (N,): u_o · v_w
        neg = torch.einsum("nkd,nd->nk", self.out_embed(negatives), v)   # (N, K): u_{n_k} · v_w
        return v, pos, neg

    def loss(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Mean loss ℓ over ``N`` pairs: ids ``center`` (N,), ``context`` (N,), ``negatives`` (N, K)."""
        _, pos, neg = self._scores(center, context, negatives)
        # log σ(x) = -softplus(-x), computed without overflow for large |x|
        return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()

    @torch.no_grad()
    def gradients(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradients of :meth:`loss` with respect to ``in_embed.weight`` and ``out_embed.weight``
        (each ``(vocab_size, n_embd)``), from the formulas of the module docstring, not autograd."""
        v, pos, neg = self._scores(center, context, negatives)
        N = len(center)
        g_pos = (torch.sigmoid(pos) - 1) / N                             # (N,): ∂(mean ℓ)/∂(u_o · v_w)
        g_neg = torch.sigmoid(neg) / N                                   # (N, K)
        u_o, u_n = self.out_embed(context), self.out_embed(negatives)
        grad_in = torch.zeros_like(self.in_embed.weight)
        grad_out = torch.zeros_like(self.out_embed.weight)
        # index_add_ sums the rows of a word that occurs several times in the batch
        grad_in.index_add_(0, center, g_pos[:, None] * u_o + torch.einsum("nk,nkd->nd", g_neg, u_n))
        grad_out.index_add_(0, context, g_pos[:, None] * v)
        grad_out.index_add_(0, negatives.reshape(-1), (g_neg[:, :, None] * v[:, None]).reshape(-1, v.shape[1]))
        return grad_in, grad_out

    @torch.no_grad()
    def sgd_step(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor, lr: float) -> None:
        """One step of plain gradient descent on the mean loss of the batch, with :meth:`gradients`."""
        lr = check_float("lr", lr, low=0)
        grad_in, grad_out = self.gradients(center, context, negatives)
        self.in_embed.weight -= lr * grad_in
        self.out_embed.weight -= lr * grad_out

    def vectors(self, normalize: bool = True) -> torch.Tensor:
        """The word vectors ``in_embed.weight`` (detached), each of length 1 when ``normalize``."""
        w = self.in_embed.weight.detach()
        return F.normalize(w, dim=1) if normalize else w


def noise_distribution(counts, power: float = 0.75) -> torch.Tensor:
    """Negative-sampling probabilities ∝ count^power (word2vec's 3/4) from word counts ``(V,)``."""
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    power = check_float("power", power, low=0)
    if counts.dim() != 1 or len(counts) == 0 or bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ValueError("counts must be a non-empty 1-D array of non-negative counts, not all zero")
    weights = torch.where(counts > 0, counts ** power, torch.zeros_like(counts))
    return weights / weights.sum()


def skipgram_pairs(ids, window: int, keep_prob=None, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (centre, context) pair of the word stream ``ids`` within ``window`` words: ``(centre (P,),
    context (P,))``, ordered by centre position, then by offset ``-window … -1, 1 … window``.

    ``keep_prob`` (optional, ``(V,)``): each token is first kept with probability ``keep_prob[id]``
    (drawn from ``generator``), as word2vec drops frequent words; the window is then counted in the
    kept tokens, so dropping "the" brings the words around it closer.
    """
    window = check_int("window", window, low=1)
    ids = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids)
    if ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D stream of word ids, got shape {tuple(ids.shape)}")
    ids = ids.long()
    if keep_prob is not None:
        keep_prob = torch.as_tensor(keep_prob, dtype=torch.float64)
        check_token_ids("ids", ids, len(keep_prob))
        ids = ids[torch.rand(len(ids), generator=generator, dtype=torch.float64) < keep_prob[ids]]
    centers, contexts = [], []
    for offset in [*range(-window, 0), *range(1, window + 1)]:
        lo, hi = max(0, -offset), len(ids) - max(0, offset)
        if hi > lo:
            pos = torch.arange(lo, hi)
            centers.append(pos)
            contexts.append(pos + offset)
    if not centers:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    pos_c, pos_o = torch.cat(centers), torch.cat(contexts)
    order = torch.argsort(pos_c * (2 * window + 1) + (pos_o - pos_c + window), stable=True)
    return ids[pos_c[order]], ids[pos_o[order]]
