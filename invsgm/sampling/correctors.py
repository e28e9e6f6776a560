"""Correctors of the PC sampler: score-based MCMC steps that keep p_t invariant at a fixed time t.

Every corrector is ``corrector(score_fn, sde, x, t, generator, snr, n_steps) -> (x, x_mean)`` with t of
shape (B,); x_mean is the last step without its fresh noise.
"""
from __future__ import annotations

import torch

from ..sde import SDE, VPSDE, ScoreFn, _bcast
from .predictors import gaussian_noise


def _step_scale(sde: SDE, t: torch.Tensor) -> torch.Tensor:
    """2α of the step sizes, with α = 1 − β(t)/N ≈ DDPM's α_i for VP and α = 1 for VE and sub-VP."""
    if isinstance(sde, VPSDE):
        return 2.0 * (1.0 - sde.beta(t) / sde.N)
    return torch.full_like(t, 2.0)


def langevin(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor,
             generator: torch.Generator | None = None, snr: float = 0.16,
             n_steps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Langevin MCMC of score_sde: ε = 2α (snr ‖z‖/‖∇log p_t‖)², x ← x + ε ∇log p_t + √(2ε) z.

    ‖·‖ are per-sample norms averaged over the batch (as in the official LangevinCorrector).
    """
    scale = _step_scale(sde, t)
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        z = gaussian_noise(x, generator)
        grad_norm = grad.flatten(1).norm(dim=1).mean()
        z_norm = z.flatten(1).norm(dim=1).mean()
        step = _bcast(scale * (snr * z_norm / grad_norm).pow(2), x)
        x_mean = x + step * grad
        x = x_mean + (2.0 * step).sqrt() * z
    return x, x_mean


def annealed_langevin(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor,
                      generator: torch.Generator | None = None, snr: float = 0.16,
                      n_steps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Annealed Langevin dynamics of NCSN: ε = 2α (snr σ(t))² per sample, x ← x + ε ∇log p_t + √(2ε) z."""
    _, std = sde.marginal_coeffs(t)
    step = _bcast(_step_scale(sde, t) * (snr * std).pow(2), x)
    noise_scale = (2.0 * step).sqrt()
    x_mean = x
    for _ in range(n_steps):
        x_mean = x + step * score_fn(x, t)
        x = x_mean + noise_scale * gaussian_noise(x, generator)
    return x, x_mean
