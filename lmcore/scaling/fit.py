"""Fitting (chapter 9): power laws, the Chinchilla law with intervals, compute-optimal splits.

``fit_power_law(x, y)`` fits ``y = a·x^b`` by least squares in log-log space, with a confidence
interval for ``b``. ``fit_chinchilla(N, D, L)`` fits the parametric law ``L = E + A/N^α + B/D^β``
of Hoffmann et al. (2022) by a Huber loss on log L, with bootstrap intervals; the
:class:`ChinchillaFit` it returns splits a compute budget between N and D.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import ArgumentTypeError, check_float, check_int
from .flops import _plain

__all__ = ["ChinchillaFit", "PowerLawFit", "fit_chinchilla", "fit_power_law"]


def _floats(name: str, values: Any) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(f"{name} must be a number or a sequence of numbers: {e}") from None


def _positive(name: str, values: Any, one_d: bool = True) -> np.ndarray:
    """``values`` as float64, finite and > 0 (they are logged, or raised to fractional powers)."""
    arr = _floats(name, values)
    if one_d and arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must hold finite positive numbers; got min {arr.min()!r}")
    return arr


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
        """``offset + scale · x^exponent`` for ``x > 0`` (a number or an array of any shape)."""
        return self.offset + self.scale * _positive("x", x, one_d=False) ** self.exponent


def fit_power_law(x: Any, y: Any, offset: float = 0.0, confidence: float = 0.95) -> PowerLawFit:
    """Fit ``y = offset + a · x^b`` by ordinary least squares of ``log(y - offset)`` on ``log x``.

    Least squares on the logs treats every point's *relative* error alike, which is what a power
    law over decades needs (in linear space the largest y values would decide the fit alone).
    ``offset``: a known floor subtracted first (e.g. the entropy of the data). The interval for
    ``b`` is ``b ± t_{n-2} · se(b)``, exact for Gaussian noise on the logs.
    """
    x, y = _positive("x", x), _floats("y", y)
    if y.shape != x.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape}")
    if x.shape[0] < 3:
        raise ValueError(f"x and y need at least 3 points to fit a power law with an interval, got {x.shape[0]}")
    check_float("offset", _plain(offset))
    check_float("confidence", confidence, low=0, high=1, low_open=True, high_open=True)
    y = _positive("y - offset", y - offset)
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
    # imported here, not at the top: scipy is slow to import and only the fits need it
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
        """The fitted loss of ``N > 0`` parameters trained on ``D > 0`` tokens (numbers or arrays)."""
        N, D = _positive("N", N, one_d=False), _positive("D", D, one_d=False)
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def optimal_allocation(self, compute: Any, flops_per_param_token: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        """The ``(N, D)`` minimising the fitted loss under ``flops_per_param_token · N · D = compute``:
        ``N = G · K^(β/(α+β))``, ``D = K / N`` with ``K = compute / 6`` and ``G = (αA / (βB))^(1/(α+β))``."""
        check_float("flops_per_param_token", _plain(flops_per_param_token), low=0, low_open=True)
        K = _floats("compute", compute) / flops_per_param_token
        if np.any(~np.isfinite(K)) or np.any(K <= 0):
            raise ValueError("compute must be finite and positive")
        return _allocate(K, self.A, self.B, self.alpha, self.beta)

    def tokens_per_param(self, compute: float, flops_per_param_token: float = 6.0) -> tuple[float, tuple[float, float]]:
        """``D/N`` of the compute-optimal model at ``compute`` FLOPs, and its bootstrap interval
        (``(nan, nan)`` without bootstrap samples)."""
        check_float("compute", _plain(compute), low=0, low_open=True)     # one budget, not an array
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
    N, D, L = _positive("N", N), _positive("D", D), _positive("L", L)
    if not (N.shape == D.shape == L.shape):
        raise ValueError(f"N, D and L must have the same length, got {N.shape[0]}, {D.shape[0]}, {L.shape[0]}")
    if N.shape[0] < 6:
        raise ValueError(f"N, D and L need at least 6 runs to fit 5 parameters, got {N.shape[0]}")
    if np.ptp(N) == 0 or np.ptp(D) == 0:
        raise ValueError("N and D must each take several values: the law separates their effects")
    check_float("delta", _plain(delta), low=0, low_open=True)
    check_int("n_bootstrap", n_bootstrap, low=0)
    check_float("confidence", confidence, low=0, high=1, low_open=True, high_open=True)
    seed = check_int("seed", seed, low=0)    # numpy's generator takes non-negative ints only
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

