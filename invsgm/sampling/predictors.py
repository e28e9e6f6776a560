"""Predictors of the PC sampler: one reverse-time step from time t to an earlier time s < t.

Every predictor is ``predictor(score_fn, sde, x, t, s, generator) -> (x, x_mean)`` with t and s of
shape (B,): x is the state at time s, x_mean the same step without its fresh Gaussian noise.
"""
from __future__ import annotations

import torch

from ..sde import SDE, ScoreFn, _bcast


def gaussian_noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ N(0, I) shaped like x, drawn from ``generator`` (torch's global RNG when None)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def euler_maruyama(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler–Maruyama on the reverse SDE: x_mean = x + [f − g² ∇log p_t](s − t), x = x_mean + g √(t − s) z."""
    drift, g = sde.reverse(score_fn).sde(x, t)
    x_mean = x + drift * _bcast(s - t, x)
    return x_mean + _bcast(g * (t - s).sqrt(), x) * gaussian_noise(x, generator), x_mean


def reverse_diffusion(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse the forward discretisation x(t) = x(s) + f + G z: x_mean = x − f + G² ∇log p_t, x = x_mean + G z."""
    rev_f, rev_G = sde.reverse(score_fn).discretize(x, t, s)
    x_mean = x - rev_f
    return x_mean + _bcast(rev_G, x) * gaussian_noise(x, generator), x_mean


def ancestral_sampling(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral step with x(t) = a x(s) + G z: x_mean = (x + G² ∇log p_t)/a = E[x(s) | x(t)], std G σ(s)/σ(t).

    The std is that of q(x_s | x_t, x_0); this is SMLD's ancestral sampler for VE and DDPM's for VP.
    """
    a, G = sde.transition(t, s)
    _, std_t = sde.marginal_coeffs(t)
    _, std_s = sde.marginal_coeffs(s)
    x_mean = (x + _bcast(G.pow(2), x) * score_fn(x, t)) / _bcast(a, x)
    return x_mean + _bcast(G * std_s / std_t, x) * gaussian_noise(x, generator), x_mean


def no_predictor(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The identity, for corrector-only sampling: (x, x)."""
    return x, x
