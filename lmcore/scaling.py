"""Scaling laws: count the compute of a training run, sweep model sizes and token budgets, fit laws.

Three pieces, in the order a scaling study uses them:

1. **Counting.** ``param_count(config)`` is the number of parameters of ``GPT(config)`` without
   building it; ``flops_breakdown(config)`` the matrix-multiply FLOPs of one forward pass per
   token, part by part; ``flops_per_token(config)`` and ``training_flops(config, tokens)`` the
   forward + backward cost, either counted (``method="count"``) or by the rule of thumb
   ``C ≈ 6·N·D`` (``method="6N"``), N the non-embedding parameters and D the training tokens.
2. **Sweeping.** ``run_sweep(configs, token_budgets)`` trains one small ``GPT`` per config with the
   book's ``Trainer`` and measures its validation loss after each token budget. Results are cached
   as JSON under ``lmcore.data.cache_dir() / "scaling"``, so re-running a chapter costs nothing.
3. **Fitting.** ``fit_power_law(x, y)`` fits ``y = a·x^b`` by least squares in log-log space, with
   a confidence interval for ``b``; ``fit_chinchilla(N, D, L)`` fits the parametric law
   ``L = E + A/N^α + B/D^β`` of Hoffmann et al. (2022) by a Huber loss on log L, with bootstrap
   intervals, and gives the compute-optimal split of a budget between N and D.

FLOP convention: one multiply-add is 2 FLOPs; only matrix multiplies are counted (LayerNorm,
GELU, softmax and residual additions are a few FLOPs per activation, negligible next to them); the
attention matmuls are counted over the full ``T × T`` score matrix, which is what the kernels
compute (the causal mask hides half of it without saving the work); the backward pass of a matmul
costs twice its forward pass (one product for the gradient of each operand), so training costs
3 × forward.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from . import __version__
from ._io import atomic_write
from .data import cache_dir, load_text, toy_corpus, train_val_split
from .model import GPT, GPTConfig
from .runtime import get_device
from .tokenizers import CharTokenizer
from .trainer import TrainConfig, Trainer

__all__ = [
    "param_count", "flops_breakdown", "flops_per_token", "training_flops",
    "PowerLawFit", "fit_power_law", "ChinchillaFit", "fit_chinchilla",
    "SweepData", "sweep_data", "SweepPoint", "run_sweep", "pareto_frontier",
]

SCHEDULES = ("constant", "cosine")
FLOP_METHODS = ("count", "6N")


def _check_config(config: Any) -> GPTConfig:
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a lmcore.GPTConfig, got {type(config).__name__}")
    return config


# ------------------------------------------------------------------------------------- counting
def param_count(config: GPTConfig, non_embedding: bool = True) -> int:
    """Parameters of ``GPT(config)``, computed from the sizes alone (no weights are allocated).

    With ``non_embedding`` (the convention of Kaplan et al. and of ``GPT.num_params``) the token
    and learned position embeddings are left out; an untied output head is counted.
    """
    cfg = _check_config(config)
    E, V = cfg.n_embd, cfg.vocab_size
    b = 1 if cfg.bias else 0
    ln = E * (1 + b)                                           # gain (+ bias)
    qkv_out = (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim
    attn = E * qkv_out + b * qkv_out + E * E + b * E           # c_attn, c_proj
    mlp = E * 4 * E + b * 4 * E + 4 * E * E + b * E            # c_fc, c_proj
    n = cfg.n_layer * (2 * ln + attn + mlp)
    n += ln if cfg.norm == "pre" else 0                        # ln_f exists only with pre-norm
    n += 0 if cfg.tie_weights else V * E                       # an untied lm_head is a real matrix
    if not non_embedding:
        n += V * E + (cfg.block_size * E if cfg.pos_encoding == "learned" else 0)
    return n


def flops_breakdown(config: GPTConfig, seq_len: int | None = None) -> dict[str, int]:
    """Forward-pass matmul FLOPs per token of ``GPT(config)`` on sequences of ``seq_len`` tokens
    (default ``block_size``), by part, summed over layers: ``qkv``, ``attn_scores`` (Q·Kᵀ),
    ``attn_values`` (weights·V), ``attn_proj``, ``mlp`` and ``lm_head``."""
    cfg = _check_config(config)
    T = cfg.block_size if seq_len is None else seq_len
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= cfg.block_size:
        raise ValueError(f"seq_len must be an int in [1, block_size={cfg.block_size}], got {seq_len!r}")
    E, L = cfg.n_embd, cfg.n_layer
    return {
        "qkv": L * 2 * E * (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim,
        # each of the T queries meets T keys in every head: T·T·head_dim·n_head per sequence
        "attn_scores": L * 2 * T * E,
        "attn_values": L * 2 * T * E,
        "attn_proj": L * 2 * E * E,
        "mlp": L * 2 * 2 * E * 4 * E,
        "lm_head": 2 * E * cfg.vocab_size,
    }


def flops_per_token(config: GPTConfig, method: str = "count", seq_len: int | None = None) -> int:
    """Training FLOPs (forward + backward) per token: ``3 × sum(flops_breakdown)`` for
    ``method="count"``, or ``6 · param_count(config)`` for ``method="6N"``."""
    if method not in FLOP_METHODS:
        raise ValueError(f"method must be one of {FLOP_METHODS}, got {method!r}")
    if method == "6N":
        return 6 * param_count(config)
    return 3 * sum(flops_breakdown(config, seq_len).values())


def training_flops(config: GPTConfig, tokens: int, method: str = "count", seq_len: int | None = None) -> int:
    """FLOPs to train ``GPT(config)`` on ``tokens`` tokens (see :func:`flops_per_token`)."""
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 0:
        raise ValueError(f"tokens must be a non-negative int, got {tokens!r}")
    return flops_per_token(config, method, seq_len) * int(tokens)


# -------------------------------------------------------------------------------------- fitting
def _positive_1d(name: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a sequence of numbers: {e}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must hold finite positive numbers (they are logged); got min {arr.min()!r}")
    return arr


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, float) and 0 < confidence < 1):
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")


@dataclass(frozen=True)
class PowerLawFit:
    """``y ≈ offset + scale · x^exponent``, fitted in log-log space.

    ``exponent_ci``: the ``confidence`` interval of the exponent (Student t on the slope's
    standard error); ``r_squared`` of the log-log line; ``n`` points.
    """
    scale: float
    exponent: float
    exponent_se: float
    exponent_ci: tuple[float, float]
    r_squared: float
    n: int
    offset: float = 0.0
    confidence: float = 0.95

    def predict(self, x: Any) -> np.ndarray:
        return self.offset + self.scale * np.asarray(x, dtype=np.float64) ** self.exponent


def fit_power_law(x: Any, y: Any, offset: float = 0.0, confidence: float = 0.95) -> PowerLawFit:
    """Fit ``y = offset + a · x^b`` by ordinary least squares of ``log(y - offset)`` on ``log x``.

    Least squares on the logs treats every point's *relative* error alike, which is what a power
    law over decades needs (in linear space the largest y values would decide the fit alone).
    ``offset``: a known floor subtracted first (e.g. the entropy of the data). The interval for
    ``b`` is ``b ± t_{n-2} · se(b)``, exact for Gaussian noise on the logs.
    """
    x, y = _positive_1d("x", x), np.asarray(y, dtype=np.float64)
    if y.shape != x.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape}")
    if x.shape[0] < 3:
        raise ValueError(f"need at least 3 points to fit a power law with an interval, got {x.shape[0]}")
    if not math.isfinite(offset):
        raise ValueError(f"offset must be finite, got {offset!r}")
    _check_confidence(confidence)
    y = _positive_1d("y - offset", y - offset)
    lx, ly = np.log(x), np.log(y)
    if np.ptp(lx) == 0:
        raise ValueError("x must take at least two different values to fit an exponent")
    n = lx.shape[0]
    sxx = np.sum((lx - lx.mean()) ** 2)
    slope = float(np.sum((lx - lx.mean()) * (ly - ly.mean())) / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - (intercept + slope * lx)
    ss_res, ss_tot = float(resid @ resid), float(np.sum((ly - ly.mean()) ** 2))
    se = math.sqrt(ss_res / (n - 2) / sxx)
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, n - 2)) * se
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(math.exp(intercept), slope, se, (slope - half, slope + half), r2, n, offset, confidence)


_CHINCHILLA_NAMES = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class ChinchillaFit:
    """``L(N, D) = E + A / N^alpha + B / D^beta`` and bootstrap intervals ``ci[name] = (lo, hi)``.

    ``samples``: the bootstrap refits, one row ``(E, A, B, alpha, beta)`` each (empty without a
    bootstrap), from which intervals of derived quantities are read (``tokens_per_param``).
    """
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    ci: dict[str, tuple[float, float]]
    n: int
    confidence: float = 0.95
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 5)), repr=False, compare=False)

    def predict(self, N: Any, D: Any) -> np.ndarray:
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def optimal_allocation(self, compute: Any, flops_per_param_token: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        """The ``(N, D)`` minimising the fitted loss under ``flops_per_param_token · N · D = compute``:
        ``N = G · K^(β/(α+β))``, ``D = K / N`` with ``K = compute / 6`` and ``G = (αA / (βB))^(1/(α+β))``."""
        K = np.asarray(compute, dtype=np.float64) / flops_per_param_token
        if np.any(~np.isfinite(K)) or np.any(K <= 0):
            raise ValueError("compute must be finite and positive")
        return _allocate(K, self.A, self.B, self.alpha, self.beta)

    def tokens_per_param(self, compute: float, flops_per_param_token: float = 6.0) -> tuple[float, tuple[float, float]]:
        """``D/N`` of the compute-optimal model at ``compute`` FLOPs, and its bootstrap interval
        (``(nan, nan)`` without bootstrap samples)."""
        N, D = self.optimal_allocation(compute, flops_per_param_token)
        K = float(compute) / flops_per_param_token
        ratios = []
        for _, A, B, alpha, beta in self.samples:
            n_opt, d_opt = _allocate(K, A, B, alpha, beta)
            ratios.append(d_opt / n_opt)
        if not ratios:
            return float(D / N), (math.nan, math.nan)
        lo, hi = np.quantile(ratios, [(1 - self.confidence) / 2, (1 + self.confidence) / 2])
        return float(D / N), (float(lo), float(hi))


def _allocate(K: Any, A: float, B: float, alpha: float, beta: float) -> tuple[Any, Any]:
    """Minimise ``A/N^α + B/D^β`` subject to ``N·D = K``: returns ``(N, D)``."""
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    N = G * K ** (beta / (alpha + beta))
    return N, K / N


def _log_residuals(theta: np.ndarray, lN: np.ndarray, lD: np.ndarray, lL: np.ndarray) -> np.ndarray:
    """``log L̂ - log L`` with ``log L̂ = logsumexp(a - α·log N, b - β·log D, e)``; parameters in
    log space (a = log A, b = log B, e = log E) keep A, B and E positive."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * lN, b - beta * lD, np.full_like(lN, e)])
    top = terms.max(axis=0)
    return top + np.log(np.exp(terms - top).sum(axis=0)) - lL


def _log_residuals_jac(theta: np.ndarray, lN: np.ndarray, lD: np.ndarray, lL: np.ndarray) -> np.ndarray:
    """Jacobian (n, 5) of :func:`_log_residuals`: the softmax weights of the three terms."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * lN, b - beta * lD, np.full_like(lN, e)])
    w = np.exp(terms - terms.max(axis=0))
    w /= w.sum(axis=0)
    return np.stack([w[0], w[1], w[2], -w[0] * lN, -w[1] * lD], axis=1)


def _grid_starts(N: np.ndarray, D: np.ndarray, L: np.ndarray, n_best: int,
                 cN: float, cD: float) -> list[np.ndarray]:
    """Starting points for the Huber fit, found by variable projection: for fixed (α, β) the law
    is linear in (E, A, B), so a grid of exponent pairs is scanned with one small weighted least
    squares each (relative errors, like the log residuals), keeping the ``n_best`` pairs whose
    coefficients are all positive and whose fit is best. Returns the centred parameters
    ``[log A - α·cN, log B - β·cD, log E, α, β]`` (see ``fit_chinchilla``)."""
    exps = np.linspace(0.05, 2.0, 40)
    al, be = (g.ravel() for g in np.meshgrid(exps, exps, indexing="ij"))            # (P,)
    X = np.stack([np.ones((al.size, N.size)), N[None] ** -al[:, None], D[None] ** -be[:, None]], -1)
    X = X / L[None, :, None]                          # rows divided by L: target 1, relative residuals
    xtx, xty = X.transpose(0, 2, 1) @ X, X.sum(axis=1)
    with np.errstate(all="ignore"):
        coef = np.linalg.solve(xtx + 1e-12 * np.eye(3), xty[..., None])[..., 0]   # (P, 3): E, A, B
    sse = np.sum(((X @ coef[..., None])[..., 0] - 1.0) ** 2, axis=1)
    ok = np.all(coef > 0, axis=1) & np.isfinite(sse)
    order = [i for i in np.argsort(np.where(ok, sse, np.inf)) if ok[i]][:n_best]
    starts = [np.array([math.log(coef[i, 1]) - al[i] * cN, math.log(coef[i, 2]) - be[i] * cD,
                        math.log(coef[i, 0]), al[i], be[i]]) for i in order]
    return starts or [np.array([math.log(L.min() / 3)] * 3 + [0.3, 0.3])]


# Bounds of the centred parameters: each log term is a (log) part of a loss, E at most e^5.
_BOUNDS = ([-30.0, -30.0, -30.0, 0.0, 0.0], [5.0, 5.0, 5.0, 3.0, 3.0])


def _minimise(starts: list[np.ndarray], lN, lD, lL, delta) -> np.ndarray:
    """The best of the Huber fits from each start (trust-region least squares with a Huber loss)."""
    from scipy.optimize import least_squares

    best = None
    for x0 in starts:
        x0 = np.clip(x0, np.array(_BOUNDS[0]) + 1e-6, np.array(_BOUNDS[1]) - 1e-6)
        res = least_squares(_log_residuals, x0, jac=_log_residuals_jac, args=(lN, lD, lL), loss="huber",
                            f_scale=delta, bounds=_BOUNDS, method="trf")
        if best is None or res.cost < best.cost:
            best = res
    return best.x


def fit_chinchilla(N: Any, D: Any, L: Any, delta: float = 1e-3, n_bootstrap: int = 200,
                   confidence: float = 0.95, seed: int = 0) -> ChinchillaFit:
    """Fit ``L = E + A/N^α + B/D^β`` to runs with ``N`` parameters, ``D`` tokens and loss ``L``.

    As in Hoffmann et al. (2022), the Huber loss (``delta``) of the log-loss residuals is minimised
    (here by a trust-region solver); the objective can have several local minima, so the starting
    points come from a scan of exponent pairs (see ``_grid_starts``). The ``confidence`` intervals come from
    ``n_bootstrap`` refits on runs resampled with replacement (Besiroglu et al. 2024 showed that
    Chinchilla's own intervals were far too narrow); with ``n_bootstrap=0`` they are ``(nan, nan)``.
    """
    N, D, L = _positive_1d("N", N), _positive_1d("D", D), _positive_1d("L", L)
    if not (N.shape == D.shape == L.shape):
        raise ValueError(f"N, D and L must have the same length, got {N.shape[0]}, {D.shape[0]}, {L.shape[0]}")
    if N.shape[0] < 6:
        raise ValueError(f"need at least 6 runs to fit 5 parameters, got {N.shape[0]}")
    if np.ptp(N) == 0 or np.ptp(D) == 0:
        raise ValueError("N and D must each take several values: the law separates their effects")
    if not (delta > 0):
        raise ValueError(f"delta must be > 0, got {delta!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative int, got {n_bootstrap!r}")
    _check_confidence(confidence)
    # Centre the logs: with a' = log A - α·mean(log N) the term is exp(a' - α·(log N - mean)), and
    # a' and α are nearly uncorrelated (uncentred, log A and α slide together along a narrow
    # valley and the solver crawls).
    cN, cD = float(np.log(N).mean()), float(np.log(D).mean())
    lN, lD, lL = np.log(N) - cN, np.log(D) - cD, np.log(L)
    best = _minimise(_grid_starts(N, D, L, 3, cN, cD), lN, lD, lL, delta)

    def unpack(theta: np.ndarray) -> np.ndarray:      # -> E, A, B, alpha, beta
        a, b, e, alpha, beta = theta
        return np.array([math.exp(e), math.exp(a + alpha * cN), math.exp(b + beta * cD), alpha, beta])

    ci = {k: (math.nan, math.nan) for k in _CHINCHILLA_NAMES}
    rng = np.random.default_rng(seed)
    samples = np.empty((n_bootstrap, 5))
    for j in range(n_bootstrap):
        i = rng.integers(0, N.shape[0], N.shape[0])
        samples[j] = unpack(_minimise([best], lN[i], lD[i], lL[i], delta))
    if n_bootstrap:
        lo, hi = np.quantile(samples, [0.5 - confidence / 2, 0.5 + confidence / 2], axis=0)
        ci = {k: (float(lo[j]), float(hi[j])) for j, k in enumerate(_CHINCHILLA_NAMES)}
    E, A, B, alpha, beta = (float(v) for v in unpack(best))
    return ChinchillaFit(E, A, B, alpha, beta, ci, int(N.shape[0]), confidence, samples)


# ------------------------------------------------------------------------------------- sweeping
class SweepData(NamedTuple):
    """Character-level token streams of a corpus: ``train`` and ``val`` (1-D int64), the vocabulary
    size, and ``digest``, the sha256 of the text (part of every cache key)."""
    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    digest: str


@lru_cache(maxsize=4)
def sweep_data(corpus: str = "toy") -> SweepData:
    """The data a sweep trains on: ``"toy"`` (the toy language's fixed train / val splits) or a
    name or path accepted by :func:`lmcore.data.load_text` (split 90 / 10)."""
    if not isinstance(corpus, str):
        raise TypeError(f"corpus must be a str ('toy', a corpus name or a path), got {type(corpus).__name__}")
    if corpus == "toy":
        train_text, val_text = toy_corpus("train"), toy_corpus("val")
        tok = CharTokenizer().train(train_text + val_text)
        train, val = torch.tensor(tok.encode(train_text)), torch.tensor(tok.encode(val_text))
        text = train_text + val_text
    else:
        text = load_text(corpus)
        tok = CharTokenizer().train(text)
        train, val = train_val_split(torch.tensor(tok.encode(text)), 0.1)
    return SweepData(train, val, tok.vocab_size, hashlib.sha256(text.encode()).hexdigest())


@dataclass(frozen=True)
class SweepPoint:
    """One measurement of a sweep: a model after ``tokens`` training tokens.

    ``params``: non-embedding parameters (N); ``flops``: counted training FLOPs so far
    (:func:`training_flops`); ``flops_6nd``: ``6·N·D``; ``val_loss``: mean cross-entropy in nats
    per token on the fixed validation windows; ``seconds``: wall time of the run so far, measurements
    included (the one field that does not reproduce).
    """
    n_layer: int
    n_head: int
    n_embd: int
    params: int
    params_total: int
    tokens: int
    steps: int
    flops: int
    flops_6nd: int
    val_loss: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _eval_windows(val: torch.Tensor, n: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` evenly spaced windows of the validation stream: inputs and targets, (n, block_size)."""
    if val.numel() <= block_size + n:
        raise ValueError(f"the validation split ({val.numel()} tokens) is too short for {n} windows "
                         f"of {block_size} tokens; lower eval_windows")
    starts = torch.linspace(0, val.numel() - block_size - 1, n).long()
    idx = starts[:, None] + torch.arange(block_size + 1)
    windows = val[idx]
    return windows[:, :-1], windows[:, 1:]


@torch.no_grad()
def _val_loss(model: GPT, x: torch.Tensor, y: torch.Tensor, skip: int, device: torch.device,
              batch: int = 64) -> float:
    """Mean loss over positions ``skip..`` of every window: each scored token sees at least ``skip``
    earlier tokens, so the first, context-starved predictions of a window do not dominate."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, x.shape[0], batch):
        logits, _ = model(x[i:i + batch].to(device))
        logp = torch.log_softmax(logits[:, skip:].double(), dim=-1)
        total -= logp.gather(-1, y[i:i + batch, skip:, None].to(device)).sum().cpu()
    model.train()
    return float(total) / (x.shape[0] * (x.shape[1] - skip))


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(n)`` (None: leave it), restoring the old value."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _train_config(schedule: str, steps: int, batch_size: int, lr: float, warmup_steps: int,
                  seed: int, device: torch.device) -> TrainConfig:
    # "constant": after the warm-up the rate stays at lr, so the loss after any number of steps
    # is a fair measurement of that budget; "cosine": one run per budget, decayed to lr/10 at its end.
    return TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr,
                       min_lr=lr if schedule == "constant" else lr / 10,
                       warmup_steps=min(warmup_steps, steps), weight_decay=0.1, grad_clip=1.0,
                       eval_interval=steps, eval_iters=1, seed=seed, device=str(device),
                       progress=False)


def _train_and_measure(config: GPTConfig, steps: list[int], data: SweepData, schedule: str,
                       batch_size: int, lr: float, warmup_steps: int, eval_windows: int, seed: int,
                       device: torch.device) -> list[SweepPoint]:
    x_val, y_val = _eval_windows(data.val, eval_windows, config.block_size)
    skip = config.block_size // 2
    n, n_total = param_count(config), param_count(config, non_embedding=False)
    runs = [steps] if schedule == "constant" else [[s] for s in steps]
    points = []
    for run in runs:
        with torch.random.fork_rng(devices=[]):   # the same initial weights for every run of a config
            torch.manual_seed(seed)
            model = GPT(config)
        trainer = Trainer(model, _train_config(schedule, run[-1], batch_size, lr, warmup_steps, seed, device),
                          data.train)
        start = time.perf_counter()
        for s in run:
            trainer.train(steps=s - trainer.step)
            tokens = s * batch_size * config.block_size
            points.append(SweepPoint(config.n_layer, config.n_head, config.n_embd, n, n_total, tokens, s,
                                     training_flops(config, tokens), 6 * n * tokens,
                                     _val_loss(model, x_val, y_val, skip, trainer.device),
                                     time.perf_counter() - start))
    return points


def _load_cached(path, settings: dict[str, Any]) -> list[SweepPoint] | None:
    """The cached points for ``settings``, or None if absent; a damaged or foreign file is reported
    and ignored (it will be overwritten)."""
    if not path.is_file():
        return None
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
        if blob.get("settings") != settings:
            raise ValueError("it was written for other settings")
        return [SweepPoint(**p) for p in blob["points"]]
    except (ValueError, KeyError, TypeError) as e:
        warnings.warn(f"ignoring the damaged sweep cache {path} ({e}); re-running this config", stacklevel=3)
        return None


def run_sweep(configs: Sequence[GPTConfig], token_budgets: Sequence[int], *, corpus: str = "toy",
              schedule: str = "constant", batch_size: int = 16, lr: float = 3e-3, warmup_steps: int = 20,
              eval_windows: int = 256, seed: int = 0, device: str | torch.device | None = None,
              num_threads: int | None = None, cache: bool = True, verbose: bool = False) -> list[SweepPoint]:
    """Train ``GPT(config)`` for each config on ``corpus`` and measure the validation loss after
    each of ``token_budgets`` training tokens; returns one :class:`SweepPoint` per (config, budget),
    configs in the given order, budgets ascending.

    ``schedule``: ``"constant"`` trains each config once, to the largest budget, with a constant
    learning rate after a linear warm-up of ``warmup_steps``, and measures at every budget on the
    way (cheap: one run per model, as in Kaplan et al. 2020); ``"cosine"`` trains a separate run per
    budget whose rate decays to ``lr/10`` exactly at the budget (the Chinchilla protocol, costlier).
    Every budget must be a multiple of ``batch_size · block_size`` tokens (one optimiser step).
    The validation loss is measured on ``eval_windows`` fixed, evenly spaced windows of the
    validation split, scoring only the second half of each window (at least ``block_size // 2``
    tokens of context). Model weights are initialised from ``seed`` (the caller's RNG state is
    left untouched) and the batch order comes from ``seed`` too, so a run on a CPU is repeatable.

    With ``cache`` each config's results are stored atomically as JSON in
    ``lmcore.data.cache_dir() / "scaling" / "<key>.json"``, the key hashing every setting, the
    corpus text, the device type, the CPU's kernel choice and the lmcore version; a later call with the same settings reads
    them back instead of training. ``num_threads``: CPU threads while training (None: unchanged).
    """
    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: pass at least one GPTConfig")
    for c in configs:
        _check_config(c)
    budgets = sorted({_check_int("token_budgets[i]", b, 1) for b in token_budgets})
    if not budgets:
        raise ValueError("token_budgets is empty: pass at least one number of training tokens")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    batch_size = _check_int("batch_size", batch_size, 1)
    warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
    eval_windows = _check_int("eval_windows", eval_windows, 1)
    seed = _check_int("seed", seed, 0)
    if num_threads is not None:
        _check_int("num_threads", num_threads, 1)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    data = sweep_data(corpus)
    device = get_device(device)
    points: list[SweepPoint] = []
    for config in configs:
        if config.vocab_size != data.vocab_size:
            raise ValueError(f"config.vocab_size={config.vocab_size} but the {corpus!r} corpus has "
                             f"{data.vocab_size} characters; build the configs with vocab_size="
                             f"sweep_data({corpus!r}).vocab_size")
        per_step = batch_size * config.block_size
        bad = [b for b in budgets if b % per_step]
        if bad:
            raise ValueError(f"token_budgets {bad} are not multiples of batch_size * block_size = {per_step} "
                             "tokens (one optimiser step); round them to whole steps")
        steps = [b // per_step for b in budgets]
        settings = {"model": config.to_dict(), "steps": steps, "schedule": schedule, "batch_size": batch_size,
                    "lr": lr, "warmup_steps": warmup_steps, "eval_windows": eval_windows, "seed": seed,
                    "corpus": data.digest, "device": device.type, "lmcore_version": __version__,
                    # another CPU's kernels train to other last bits: never serve their results here
                    "cpu_kernels": f"{torch.backends.cpu.get_cpu_capability()}/{os.environ.get('ONEDNN_MAX_CPU_ISA', '')}"
                    if device.type == "cpu" else None}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        path = cache_dir() / "scaling" / f"{key}.json"
        found = _load_cached(path, settings) if cache else None
        source = "cached" if found is not None else "trained"
        if found is None:
            with _threads(num_threads):
                found = _train_and_measure(config, steps, data, schedule, batch_size, lr, warmup_steps,
                                           eval_windows, seed, device)
            if cache:
                with atomic_write(path, "w") as f:
                    json.dump({"settings": settings, "points": [p.to_dict() for p in found]}, f, indent=1)
        if verbose:
            last = found[-1]
            print(f"N = {last.params:>9,d} ({source}): val loss {last.val_loss:.3f} after {last.tokens:,d} tokens")
        points.extend(found)
    return points


def pareto_frontier(points: Sequence[SweepPoint], flops: str = "flops") -> list[SweepPoint]:
    """The compute-efficient frontier: the points whose loss is lower than that of every point
    with no more compute (``flops``: ``"flops"`` counted, or ``"flops_6nd"``), by increasing compute."""
    if flops not in ("flops", "flops_6nd"):
        raise ValueError(f"flops must be 'flops' or 'flops_6nd', got {flops!r}")
    frontier: list[SweepPoint] = []
    for p in sorted(points, key=lambda p: (getattr(p, flops), p.val_loss)):
        if not frontier or p.val_loss < frontier[-1].val_loss:
            frontier.append(p)
    return frontier
