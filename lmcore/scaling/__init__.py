"""Scaling laws (chapter 9): count the compute of a training run, sweep model sizes, fit laws.

Three modules, in the order a scaling study uses them: :mod:`.flops` (parameters and FLOPs of a
config), :mod:`.sweep` (train a grid of small models and measure them, cached on disk) and
:mod:`.fit` (power laws and the Chinchilla law, with intervals).
"""
from .fit import ChinchillaFit, PowerLawFit, fit_chinchilla, fit_power_law
from .flops import flops_breakdown, flops_per_token, param_count, training_flops
from .sweep import SweepData, SweepPoint, pareto_frontier, run_sweep, sweep_data

__all__ = [
    "ChinchillaFit",
    "PowerLawFit",
    "SweepData",
    "SweepPoint",
    "fit_chinchilla",
    "fit_power_law",
    "flops_breakdown",
    "flops_per_token",
    "param_count",
    "pareto_frontier",
    "run_sweep",
    "sweep_data",
    "training_flops",
]
