"""The chapter-9 checks pass the reference solutions (and lmcore's own functions) and fail stubs
and plausible wrong answers."""
import math

import numpy as np
from scipy.optimize import curve_fit

from lmcore import scaling
from lmcore.exercises import check_compute_optimal, check_fit_power_law, check_training_flops


def stub(*args):
    raise NotImplementedError("write your function here")


# ------------------------------------------------------------------------------ training FLOPs
def flops_solution(config, tokens):
    return 6 * 12 * config.n_layer * config.n_embd ** 2 * tokens


def flops_forward_only(config, tokens):
    return 2 * 12 * config.n_layer * config.n_embd ** 2 * tokens


def flops_with_embeddings(config, tokens):
    n = 12 * config.n_layer * config.n_embd ** 2 + (config.vocab_size + config.context_length) * config.n_embd
    return 6 * n * tokens


def flops_attention_only(config, tokens):
    return 6 * 4 * config.n_layer * config.n_embd ** 2 * tokens


def test_training_flops_check(capsys):
    assert check_training_flops(flops_solution)
    assert check_training_flops(lambda cfg, d: scaling.training_flops(cfg, d, method="6N"))
    assert check_training_flops(stub).status == "unsolved"
    assert not check_training_flops(flops_forward_only)
    assert "forward pass" in capsys.readouterr().out
    assert not check_training_flops(flops_with_embeddings)
    assert "embeddings" in capsys.readouterr().out
    assert not check_training_flops(flops_attention_only)
    # the counted FLOPs include attention over 1024-2048 positions: not the 6ND rule this exercise asks for
    assert not check_training_flops(scaling.training_flops)


# ------------------------------------------------------------------------------ power-law fit
def power_law_solution(x, y):
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return math.exp(intercept), slope


def power_law_log10(x, y):
    slope, intercept = np.polyfit(np.log10(x), np.log10(y), 1)
    return 10 ** intercept, slope


def power_law_linear_space(x, y):
    """Plausible but wrong: least squares on y itself, dominated by the largest values."""
    (a, b), _ = curve_fit(lambda x, a, b: a * x ** b, x, y, p0=(10.0, -0.2), maxfev=20_000)
    return a, b


def power_law_forgets_log_x(x, y):
    slope, intercept = np.polyfit(x, np.log(y), 1)
    return math.exp(intercept), slope


def power_law_forgets_exp(x, y):
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return intercept, slope


def test_fit_power_law_check(capsys):
    assert check_fit_power_law(power_law_solution)
    assert check_fit_power_law(power_law_log10)
    assert check_fit_power_law(lambda x, y: (lambda f: (f.scale, f.exponent))(scaling.fit_power_law(x, y)))
    assert check_fit_power_law(stub).status == "unsolved"
    assert not check_fit_power_law(power_law_linear_space)
    assert "noisy data" in capsys.readouterr().out
    assert not check_fit_power_law(power_law_forgets_log_x)
    assert not check_fit_power_law(power_law_forgets_exp)
    assert "scale" in capsys.readouterr().out


# ------------------------------------------------------------------------------ compute-optimal
def compute_optimal_solution(compute, tokens_per_param=20.0):
    n = math.sqrt(compute / (6 * tokens_per_param))
    return n, tokens_per_param * n


def test_compute_optimal_check(capsys):
    assert check_compute_optimal(compute_optimal_solution)
    assert check_compute_optimal(stub).status == "unsolved"
    assert not check_compute_optimal(lambda c, r: (math.sqrt(c / r), r * math.sqrt(c / r)))     # forgot the 6
    assert "6·N·D" in capsys.readouterr().out
    assert not check_compute_optimal(lambda c, r: (c / (6 * r), c / 6))                        # forgot the root
    assert not check_compute_optimal(lambda c, r: compute_optimal_solution(c, r)[::-1])         # swapped
    assert not check_compute_optimal(lambda c, r: compute_optimal_solution(c, 20.0))            # ignores r


# ------------------------------------------------------------------------------ IsoFLOP exponent
def exponent_solution(runs, count):
    fits = [scaling.fit_isoflop(points, c, params=count) for c, points in runs.items()]
    return scaling.fit_optimal_scaling(fits).n_law.exponent


def exponent_ignores_count(runs, count):
    return exponent_solution(runs, "non_embedding")


def exponent_swapped(runs, count):
    return exponent_solution(runs, "total" if count == "non_embedding" else "non_embedding")


def exponent_best_run(runs, count):
    """Plausible but wrong: the size of each budget's best run, not the parabola's vertex."""
    c = sorted(runs)
    n = [min(runs[k], key=lambda p: p.val_loss) for k in c]
    n = [p.params_total if count == "total" else p.params for p in n]
    return np.polyfit(np.log(c), np.log(n), 1)[0]


def exponent_parabola_in_n(runs, count):
    """Plausible but wrong: the parabola fitted against N itself, not ln N."""
    c, n_opt = sorted(runs), []
    for k in c:
        n = np.array([p.params_total if count == "total" else p.params for p in runs[k]], float)
        c2, c1, _ = np.polyfit(n, [p.val_loss for p in runs[k]], 2)
        n_opt.append(-c1 / (2 * c2))
    return np.polyfit(np.log(c), np.log(n_opt), 1)[0]


def test_optimal_size_exponent_check(capsys):
    from lmcore.exercises import check_optimal_size_exponent
    from lmcore.exercises.ch09 import _synthetic_runs

    runs = _synthetic_runs()
    # the two conventions really differ on the fixed cases, or the check could not tell them apart
    assert abs(exponent_solution(runs, "total") - exponent_solution(runs, "non_embedding")) > 0.01
    assert check_optimal_size_exponent(exponent_solution)
    assert check_optimal_size_exponent(exponent_solution, runs)
    assert check_optimal_size_exponent(stub).status == "unsolved"
    assert "NOT SOLVED YET" in capsys.readouterr().out
    assert not check_optimal_size_exponent(exponent_ignores_count)
    assert not check_optimal_size_exponent(exponent_swapped)
    assert "other way" in capsys.readouterr().out
    assert not check_optimal_size_exponent(exponent_best_run)
    assert "vertex" in capsys.readouterr().out
    assert not check_optimal_size_exponent(exponent_parabola_in_n)
    assert "ln N" in capsys.readouterr().out
    assert not check_optimal_size_exponent(lambda runs, count: "0.5")
