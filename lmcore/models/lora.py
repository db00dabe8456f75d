"""LoRA: low-rank adapters on the linear layers of a model (Hu et al., 2021), chapter 10.

Fine-tuning changes a weight matrix ``W`` (out × in) by some ``ΔW``.  LoRA bets that the change a
new task needs has low rank, and trains it in factored form::

    y = W x + b + (α / r) · B A x          A: (r, in),  B: (out, r),  r ≪ min(in, out)

with ``W`` and ``b`` frozen.  ``A`` starts random and ``B`` at zero, so at the start ``B A = 0`` and
the adapted model computes *exactly* what the base model computes; training moves it away from
there.  The factor ``α / r`` keeps the size of the update roughly independent of the rank, so the
learning rate need not be retuned when ``r`` changes.  One adapted matrix trains ``r·(in + out)``
numbers instead of ``in·out``.

After training, ``W + (α/r)·B A`` is one matrix of the original shape: :func:`merge_lora` folds the
adapters into the base weights (inference then costs nothing extra), :func:`unmerge_lora`
takes them out again (to train further or to swap in another adapter).

>>> import torch.nn as nn
>>> layer = LoRALinear(nn.Linear(8, 4), r=2, alpha=4)
>>> layer.lora_A.shape, layer.lora_B.shape, layer.scaling
(torch.Size([2, 8]), torch.Size([4, 2]), 2.0)

On a ``GPT``: ``apply_lora(model, r=4)`` replaces the attention and MLP projections
(``c_attn``, ``c_proj``, ``c_fc``) by ``LoRALinear`` wrappers, ``mark_only_lora_trainable(model)``
freezes everything else, and ``lora_parameter_counts(model)`` says how much is left to train.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_float, check_int

__all__ = ["LoRALinear", "apply_lora", "mark_only_lora_trainable", "merge_lora", "unmerge_lora",
           "lora_modules", "lora_state_dict", "lora_parameter_counts", "ParameterCounts",
           "DEFAULT_TARGETS"]

#: The attention and MLP projections of ``lmcore.GPT`` (``c_proj`` names both the attention
#: output projection and the MLP's second layer).
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (e.g. an lmcore.GPT), got {type(model).__name__}")


def _check_rank_alpha(r: int, alpha: float) -> None:
    check_int("r (the LoRA rank)", r, low=1)
    check_float("alpha", alpha, low=0, low_open=True)


def _check_rank_fits(r: int, base: nn.Linear, name: str = "the layer") -> None:
    if r > min(base.in_features, base.out_features):
        raise ValueError(f"r={r} exceeds min(in_features, out_features) = "
                         f"{min(base.in_features, base.out_features)} of {name}: a rank-r update of a "
                         f"{base.out_features}x{base.in_features} matrix needs r <= that; lower r")


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) · B A dropout(x)``: a frozen-able ``nn.Linear`` plus a rank-``r`` update.

    Args:
        base: the linear layer to adapt (kept as ``self.base``; its weights are not copied).
        r: rank of the update, ``1 <= r <= min(in_features, out_features)``.
        alpha: scale of the update; the effective factor is ``scaling = alpha / r``.
        dropout: dropout on the adapter's input only (the base path is unchanged), as in the paper.

    ``A`` (r, in) is initialised like an ``nn.Linear`` weight (Kaiming-uniform), ``B`` (out, r) to
    zero, so a fresh adapter changes nothing.  Shapes: ``x`` (..., in) -> (..., out).
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
        _check_rank_alpha(r, alpha)
        _check_rank_fits(r, base)
        check_float("dropout", dropout, low=0, high=1, high_open=True)
        self.base = base
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))   # nn.Linear's own initialisation
        self.lora_dropout = nn.Dropout(dropout)
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) · B A``, shape (out, in), the same shape as ``base.weight``."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:              # the update already lives inside base.weight
            return y
        # Two thin matmuls, x A^T (…, r) then (…, r) B^T: never form the (out, in) matrix B A.
        return y + self.scaling * F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base.weight`` (no-op if already merged). Gradients no longer
        reach ``A`` and ``B`` while merged: merge for inference, unmerge to train again."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update from ``base.weight`` again (no-op if not merged)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, merged={self.merged}"


def apply_lora(model: nn.Module, r: int, alpha: float = 1.0, targets: Iterable[str] = DEFAULT_TARGETS,
               dropout: float = 0.0) -> nn.Module:
    """Replace every ``nn.Linear`` whose attribute name is in ``targets`` by a ``LoRALinear``.

    Works in place and returns ``model``.  For ``lmcore.GPT`` the default targets are the attention
    projections (``c_attn``, ``c_proj``) and the MLP (``c_fc``, ``c_proj``) of every block; the
    embedding and the (tied) output head are left alone.  The base weights are *not* frozen here:
    call :func:`mark_only_lora_trainable` for that.

    Raises ``ValueError`` on a bad rank/alpha/dropout, on a model that already has adapters, when no
    linear layer matches ``targets``, when ``r`` does not fit one of them, or when one shares its
    weight with another module (GPT's tied ``lm_head``). Every check runs before anything is
    replaced, so a call that raises leaves the model as it was.

    A tied weight is refused rather than untied: merging folds the update into the one shared
    matrix, so the token embedding would change with the head. Build the model with
    ``tie_weights=False`` to adapt its head.
    """
    _check_model(model)
    _check_rank_alpha(r, alpha)
    check_float("dropout", dropout, low=0, high=1, high_open=True)
    if isinstance(targets, str):
        raise TypeError(f"targets must be a collection of layer names, e.g. ('c_attn',), got the string {targets!r}")
    targets = set(targets)
    if not targets:
        raise ValueError("targets is empty: name the linear layers to adapt, e.g. ('c_attn', 'c_proj', 'c_fc')")
    if lora_modules(model):
        raise ValueError("the model already has LoRA adapters; apply_lora once (or build a fresh model)")
    # Collect first, then replace: the module tree must not change while it is being walked.
    found = [(parent, f"{path}.{name}".lstrip("."), name, child) for path, parent in model.named_modules()
             for name, child in parent.named_children()
             if name in targets and isinstance(child, nn.Linear)]
    if not found:
        raise ValueError(f"no nn.Linear named one of {sorted(targets)} in the model; GPT's projections are "
                         f"{DEFAULT_TARGETS}")
    holders = defaultdict(list)   # every name under which each parameter is reachable
    for pname, p in model.named_parameters(remove_duplicate=False):
        holders[id(p)].append(pname)
    for _, full, _, child in found:
        _check_rank_fits(r, child, full)
        shared = [n for n in holders[id(child.weight)] if n != f"{full}.weight"]
        if shared:
            raise ValueError(f"{full}.weight is shared with {', '.join(shared)} (tied weights): merge_lora would "
                             f"fold the update into both. Leave {full.rsplit('.', 1)[-1]!r} out of targets, or "
                             "build the model untied (GPTConfig(tie_weights=False)) to adapt it")
    for parent, _, name, child in found:
        setattr(parent, name, LoRALinear(child, r, alpha, dropout))
    return model


def lora_modules(model: nn.Module) -> list[LoRALinear]:
    """Every ``LoRALinear`` inside ``model``, in module order."""
    _check_model(model)
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def _require_lora(model: nn.Module) -> list[LoRALinear]:
    modules = lora_modules(model)
    if not modules:
        raise ValueError("the model has no LoRA adapters; call apply_lora(model, r=...) first")
    return modules


def mark_only_lora_trainable(model: nn.Module) -> nn.Module:
    """Freeze every parameter except the adapters' ``lora_A`` / ``lora_B``; returns ``model``."""
    _require_lora(model)
    for name, p in model.named_parameters():
        p.requires_grad_(name.rsplit(".", 1)[-1] in ("lora_A", "lora_B"))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (``W ← W + (α/r)·B A``); returns ``model``."""
    for m in _require_lora(model):
        m.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_lora` (``W ← W - (α/r)·B A``); returns ``model``."""
    for m in _require_lora(model):
        m.unmerge()
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors (``…lora_A`` / ``…lora_B``): what one saves to ship a fine-tune.
    Load it back with ``model.load_state_dict(sd, strict=False)`` after ``apply_lora``."""
    _require_lora(model)
    return {k: v for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in ("lora_A", "lora_B")}


class ParameterCounts(NamedTuple):
    """``trainable`` / ``total`` parameters (shared tensors counted once) and the percentage."""
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total


def lora_parameter_counts(model: nn.Module) -> ParameterCounts:
    """How many parameters would be updated by training (``requires_grad``) out of how many."""
    _check_model(model)
    params = list(model.parameters())        # tied weights appear once
    return ParameterCounts(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
