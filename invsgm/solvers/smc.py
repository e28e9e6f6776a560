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

import functools
from typing import Callable, Sequence

import torch

from .. import _checks
from ..guidance import Guidance, Guided, PiGDM, guided_evaluation
from ..sampling.pc import check_state
from ..sampling.timesteps import check_timesteps
from ..sde import SDE, _bcast
from .base import Callback, Solver, SolverResult, check_guidance, noise

# twist(x, t) -> log p̃_t(y | x) per particle, its gradient ∇ₓ, the prior score s(x, t) and x̂₀, all detached
Twist = Callable[[torch.Tensor, torch.Tensor], Guided]
FinalLogLikelihood = Callable[[torch.Tensor], torch.Tensor]


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
               n_particles: int, final_log_likelihood: FinalLogLikelihood, resample_threshold: float = 0.5,
               generator: torch.Generator | None = None,
               callback: Callback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw of p(x₀ | y) per group of K = ``n_particles`` contiguous particles x ~ p_{t_0} (G·K, ...).

    ``twist`` evaluates the twisting function, its gradient, the prior score and x̂₀ (see ``Twist``);
    ``final_log_likelihood(x0)`` is the exact log p(y | x₀) per particle. Returns the (G, ...) draws
    from the final weighted particles and the ESS / K before each step, (steps + 1, G).
    """
    x = check_state(x)
    K = _checks.positive_int("n_particles", n_particles)
    if x.shape[0] % K:
        raise ValueError(f"x has {x.shape[0]} rows, not a multiple of n_particles={K}")
    if not 0.0 <= resample_threshold <= 1.0:
        raise ValueError(f"resample_threshold must lie in [0, 1], got {resample_threshold!r}")
    groups = x.shape[0] // K
    ts = check_timesteps(timesteps, sde).to(device=x.device, dtype=x.dtype)
    offsets = (torch.arange(groups, device=x.device) * K)[:, None]
    times = [ts[i].expand(x.shape[0]) for i in range(ts.numel())]

    g = twist(x, times[0])
    logw = g.log_likelihood.double().view(groups, K)  # the prior is the first proposal
    ess_history = []
    for i in range(len(times) - 1):
        ess = effective_sample_size(logw) / K
        ess_history.append(ess)
        low = ess < resample_threshold
        if bool(low.any()):
            idx = torch.where(low[:, None], systematic_resample(logw, generator),
                              torch.arange(K, device=x.device).expand(groups, K))
            flat = (idx + offsets).reshape(-1)
            x = x[flat]
            g = Guided(g.log_likelihood[flat], g.grad[flat], g.score[flat], g.x0[flat])
            logw = torch.where(low[:, None], torch.zeros_like(logw), logw)
        t, s = times[i], times[i + 1]
        a, G = sde.transition(t, s)
        _, std_t = sde.marginal_coeffs(t)
        _, std_s = sde.marginal_coeffs(s)
        var = _bcast((G * std_s / std_t).pow(2), x)
        mean_p = (x + _bcast(G.pow(2), x) * g.score) / _bcast(a, x)
        mean_q = mean_p + var * g.grad
        x = mean_q + var.sqrt() * noise(x, generator)
        log_p_over_q = ((x - mean_q).pow(2) - (x - mean_p).pow(2)).flatten(1).sum(1) / (2 * var.flatten(1)[:, 0])
        new = twist(x, s)
        logw = logw + (new.log_likelihood - g.log_likelihood + log_p_over_q).double().view(groups, K)
        g = new
        if callback is not None:
            callback(i, float(s[0]), x, g.x0)
    ess_history.append(effective_sample_size(logw) / K)

    logw = logw + (final_log_likelihood(g.x0) - g.log_likelihood).double().view(groups, K)
    logw = torch.nan_to_num(logw, nan=-torch.inf)
    pick = torch.multinomial(_normalised(logw), 1, generator=generator)
    return g.x0[(pick + offsets).reshape(-1)], torch.stack(ess_history).float()


class SMC(Solver):
    """Twisted SMC (see module): K particles per row, ΠGDM's likelihood as the twist by default; one draw per
    row from its final weighted particles, so rows are independent posterior samples.

    Needs the exact likelihood p(y | x₀) (σ_y > 0, or a classifier) and a guidance term without a
    replacement step.
    """

    name = "smc"

    def __init__(self, guidance: Guidance | None = None, n_particles: int = 16, resample_threshold: float = 0.5):
        self.guidance = check_guidance(guidance)
        self.n_particles = _checks.positive_int("n_particles", n_particles)
        if not 0.0 <= resample_threshold <= 1.0:
            raise ValueError(f"resample_threshold must lie in [0, 1], got {resample_threshold!r}")
        self.resample_threshold = float(resample_threshold)

    def _guidance(self, measurement) -> Guidance:
        guidance = self.guidance if self.guidance is not None else PiGDM()
        guidance.check(measurement)
        if guidance.has_project or not guidance.has_likelihood:
            raise ValueError(f"SMC needs a likelihood twist without a replacement step, got {guidance!r}")
        if not measurement.has_density:
            raise ValueError(f"SMC needs the exact likelihood p(y | x0) of {measurement!r} (e.g. sigma_y > 0)")
        return guidance

    def check(self, measurement) -> None:
        self._guidance(measurement)

    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        guidance = self._guidance(measurement)
        K = self.n_particles
        start = denoiser.nfe
        rest = sde.prior_sampling((x.shape[0], K - 1, *x.shape[1:]), generator=generator, device=x.device,
                                  dtype=x.dtype)
        particles = torch.cat([x[:, None], rest], 1).flatten(0, 1)  # row i's particles are rows iK ... iK + K − 1
        y_rep = measurement.repeat(y, K)

        def twist(state: torch.Tensor, t: torch.Tensor) -> Guided:
            return guided_evaluation(denoiser, guidance, measurement, y_rep, state, t)

        samples, ess = sample_smc(twist, sde, particles, timesteps, n_particles=K, final_log_likelihood=functools.partial(measurement.log_likelihood, y=y_rep),
                                  resample_threshold=self.resample_threshold, generator=generator,
                                  callback=callback)
        return SolverResult(guidance.finalize(measurement, y, samples), denoiser.nfe - start, {"ess": ess})
