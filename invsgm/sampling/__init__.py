"""Samplers of score-based generative models: predictor–corrector and probability-flow ODE.

Samplers only see ``score_fn(x, t)`` and an SDE; tasks constrain them through the ``project`` hook.
"""
from .correctors import annealed_langevin, langevin
from .ode import ODESample, sample_ode, sample_ode_adaptive
from .pc import sample_pc, tweedie_denoise
from .predictors import ancestral_sampling, euler_maruyama, no_predictor, reverse_diffusion
from .timesteps import check_timesteps, default_timesteps

PREDICTORS = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral_sampling": ancestral_sampling,
    "none": no_predictor,
}
CORRECTORS = {"langevin": langevin, "annealed_langevin": annealed_langevin, "none": None}

__all__ = [
    "default_timesteps", "check_timesteps", "sample_pc", "sample_ode", "sample_ode_adaptive", "ODESample",
    "tweedie_denoise", "euler_maruyama", "reverse_diffusion", "ancestral_sampling", "no_predictor",
    "langevin", "annealed_langevin", "PREDICTORS", "CORRECTORS",
]
