"""Twisted sequential Monte Carlo over the reverse process (in the manner of Wu et al., 2023, TDS).

Target: p(x₀ | y) ∝ p_θ(x₀) p(y | x₀), with p_θ the model's reverse-time chain of ancestral kernels
p(x_s | x_t) = N((x_t + G² s_θ(x_t, t))/a, (G σ_s/σ_t)² I). Particles move by the twisted proposal
q(x_s | x_t) = N(mean + v ∇ log p̃_t(y | x_t), v I) and carry weights

    w_s = p̃_s(y | x_s) p(x_s | x_t) / (p̃_t(y | x_t) q(x_s | x_t)),

and the output x̂₀ = E[x₀ | x_{t_n}] gets the final weight p(y | x̂₀) / p̃_{t_n}(y | x_{t_n}). The
twisting functions telescope away, so any twist gives an estimator that is exact as the number of
particles grows; a good twist (ΠGDM's Gaussian approximation) keeps the weights balanced.
Particles of one observation are K contiguous rows; they are resampled (systematic) within their
group whenever its effective sample size falls below ``resample_threshold`` · K.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .. import _checks
from ..sde import SDE, _bcast
from .pc import check_state, step_range
from .timesteps import check_timesteps

# twist(x, t) -> (log p̃_t(y | x) per particle, its gradient ∇ₓ, the prior score s(x, t)), all detached
Twist = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
FinalLogLikelihood = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SMCSample:
    """``x``: (G·n_out, ...) samples, n_out per group in a row; ``ess``: (steps + 1, G) ESS / K before each step."""

    x: torch.Tensor
    ess: torch.Tensor


def _normalised(logw: torch.Tensor) -> torch.Tensor:
    """Per-group normalised weights from log-weights of shape (G, K)."""
    return torch.softmax(logw, dim=1)


def effective_sample_size(logw: torch.Tensor) -> torch.Tensor:
    """ESS = (Σ w)² / Σ w² per group, from log-weights (G, K)."""
    w = _normalised(logw)
    return 1.0 / w.pow(2).sum(1)


def systematic_resample(logw: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Indices (G, K) in [0, K) drawn by systematic resampling of each group's weights."""
    G, K = logw.shape
    cdf = _normalised(logw).cumsum(1)
    cdf[:, -1] = 1.0
    u = (torch.rand(G, 1, generator=generator, device=logw.device, dtype=logw.dtype)
         + torch.arange(K, device=logw.device, dtype=logw.dtype)) / K
    return torch.searchsorted(cdf, u).clamp_(max=K - 1)


def sample_smc(twist: Twist, sde: SDE, x: torch.Tensor, timesteps: torch.Tensor | Sequence[float], *,
               n_particles: int, final_log_likelihood: FinalLogLikelihood, n_out: int = 1,
               resample_threshold: float = 0.5, generator: torch.Generator | None = None,
               progress: bool = False) -> SMCSample:
    """Sample p(x₀ | y) by twisted SMC from particles x ~ p_{t_0} of shape (G·K, ...), K = ``n_particles``.

    ``twist`` evaluates the twisting function, its gradient and the prior score (see ``Twist``);
    ``final_log_likelihood(x0)`` is the exact log p(y | x₀) per particle. Returns n_out draws per
    group from the final weighted particles (with replacement).
    """
    x = check_state(x)
    K = _checks.positive_int("n_particles", n_particles)
    n_out = _checks.positive_int("n_out", n_out)
    if x.shape[0] % K:
        raise ValueError(f"x has {x.shape[0]} rows, not a multiple of n_particles={K}")
    if not 0.0 <= resample_threshold <= 1.0:
        raise ValueError(f"resample_threshold must lie in [0, 1], got {resample_threshold!r}")
    groups = x.shape[0] // K
    ts = check_timesteps(timesteps, sde).to(device=x.device, dtype=x.dtype)
    offsets = (torch.arange(groups, device=x.device) * K)[:, None]
    times = [ts[i].expand(x.shape[0]) for i in range(ts.numel())]

    log_twist, grad, score = twist(x, times[0])
    logw = log_twist.double().view(groups, K)  # the prior is the first proposal
    ess_history = []
    for i in step_range(len(times) - 1, progress, "SMC sampling"):
        ess = effective_sample_size(logw) / K
        ess_history.append(ess)
        low = ess < resample_threshold
        if bool(low.any()):
            idx = torch.where(low[:, None], systematic_resample(logw, generator),
                              torch.arange(K, device=x.device).expand(groups, K))
            flat = (idx + offsets).reshape(-1)
            x, log_twist, grad, score = x[flat], log_twist[flat], grad[flat], score[flat]
            logw = torch.where(low[:, None], torch.zeros_like(logw), logw)
        t, s = times[i], times[i + 1]
        a, G = sde.transition(t, s)
        _, std_t = sde.marginal_coeffs(t)
        _, std_s = sde.marginal_coeffs(s)
        var = _bcast((G * std_s / std_t).pow(2), x)
        mean_p = (x + _bcast(G.pow(2), x) * score) / _bcast(a, x)
        mean_q = mean_p + var * grad
        x = mean_q + var.sqrt() * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        log_p_over_q = ((x - mean_q).pow(2) - (x - mean_p).pow(2)).flatten(1).sum(1) / (2 * var.flatten(1)[:, 0])
        new_twist, grad, score = twist(x, s)
        logw = logw + (new_twist - log_twist + log_p_over_q).double().view(groups, K)
        log_twist = new_twist
    ess_history.append(effective_sample_size(logw) / K)

    alpha, std = sde.marginal_coeffs(times[-1])
    x0 = (x + _bcast(std.pow(2), x) * score) / _bcast(alpha, x)
    logw = logw + (final_log_likelihood(x0) - log_twist).double().view(groups, K)
    logw = torch.nan_to_num(logw, nan=-torch.inf)
    pick = torch.multinomial(_normalised(logw), n_out, replacement=True, generator=generator)
    return SMCSample(x=x0[(pick + offsets).reshape(-1)], ess=torch.stack(ess_history).float())
