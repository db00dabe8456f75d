"""Scaling laws (chapter 9): count the compute of a training run, sweep model sizes, fit laws.

The modules, in the order a scaling study uses them: :mod:`.flops` (parameters and FLOPs of a
config), :mod:`.sweep` (train a grid of small models and measure them, cached on disk),
:mod:`.fit` (power laws and the Chinchilla law, with intervals), :mod:`.crossval` (the law's fit
window, by leave-one-size-out prediction error) and :mod:`.isoflop` (Chinchilla's IsoFLOP curves).
"""
from .crossval import WindowScore, leave_one_size_out
from .fit import ChinchillaFit, PowerLawFit, fit_chinchilla, fit_power_law
from .flops import flops_breakdown, flops_per_token, param_count, training_flops
from .isoflop import IsoFLOPFit, OptimalScaling, fit_isoflop, fit_optimal_scaling, isoflop_tokens, run_isoflop
from .sweep import SweepData, SweepPoint, pareto_frontier, run_sweep, sweep_data

__all__ = [
    "ChinchillaFit",
    "IsoFLOPFit",
    "OptimalScaling",
    "PowerLawFit",
    "SweepData",
    "SweepPoint",
    "WindowScore",
    "fit_chinchilla",
    "fit_isoflop",
    "fit_optimal_scaling",
    "fit_power_law",
    "flops_breakdown",
    "flops_per_token",
    "isoflop_tokens",
    "leave_one_size_out",
    "param_count",
    "pareto_frontier",
    "run_isoflop",
    "run_sweep",
    "sweep_data",
    "training_flops",
]
