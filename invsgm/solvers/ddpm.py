"""Ancestral DDPM sampling as ADM runs it (Ho et al. 2020; Nichol & Dhariwal 2021), on any linear SDE.

One step from t to s < t with the forward transition x_t = a x_s + G z: the mean of q(x_s | x_t, x̂₀),
μ = (α_s G²/σ_t²) x̂₀ + (a σ_s²/σ_t²) x_t, and the variance Σ, either DDPM's fixed choices (``small``:
β̃ = σ_s² G²/σ_t², ``large``: β = G²) or ADM's learned interpolation log Σ = f log β + (1 − f) log β̃,
f = (v + 1)/2 with v the network's second output half. Guidance shifts the mean by Σ ∇ₓ log p̃_t(y | x_t)
(ADM's ``condition_mean``). After the last grid time the state is x̂₀ (plus that shift).
"""
from __future__ import annotations

import torch

from .. import _checks
from ..guidance import Guidance, guided_evaluation
from ..sde import _bcast
from .base import GuidedSolver, SolverResult, check_guidance, guidance_for, noise, times

VARIANCES = ("learned", "small", "large")


class DDPM(GuidedSolver):
    """ADM's ``p_sample`` loop: ``variance`` 'learned' (needs a network with a learned-variance output, e.g. an
    ADM checkpoint), 'small' or 'large'; None: learned when the network gives it, else small. ``clip``
    clamps x̂₀ to [−clip, clip] (ADM's ``clip_denoised``)."""

    name = "ddpm"

    def __init__(self, guidance: Guidance | None = None, variance: str | None = None, clip: float | None = None):
        if variance is not None and variance not in VARIANCES:
            raise ValueError(f"variance must be one of {list(VARIANCES)} or None, got {variance!r}")
        self.guidance, self.variance = check_guidance(guidance), variance
        self.clip = None if clip is None else _checks.positive("clip", clip)

    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        guidance = guidance_for(self.guidance, measurement)
        start = denoiser.nfe
        ts = times(timesteps, x)
        small_prev = None
        for i, t in enumerate(ts):
            g = guided_evaluation(denoiser, guidance, measurement, y, x, t)
            x0 = g.x0 if self.clip is None else g.x0.clamp(-self.clip, self.clip)
            last = i + 1 == len(ts)
            # the step to s (for the last step: to the data, α = 1 and σ = 0)
            s = ts[i + 1] if not last else None
            alpha_t, std_t = sde.marginal_coeffs(t)
            alpha_s, std_s = sde.marginal_coeffs(s) if not last else (torch.ones_like(t), torch.zeros_like(t))
            a = alpha_t / alpha_s
            large = (std_t.pow(2) - (a * std_s).pow(2)).clamp_min(0)
            small = std_s.pow(2) * large / std_t.pow(2)
            if last:  # β̃ = 0 at the last step; ADM takes the log at the previous step's β̃ there
                small = small_prev if small_prev is not None else large
            small_prev = small
            mean = (_bcast(alpha_s * large / std_t.pow(2), x) * x0
                    + _bcast(a * std_s.pow(2) / std_t.pow(2), x) * x)
            var = self._variance(g.variance, _bcast(small, x), _bcast(large, x), x)
            x = mean + var * g.grad
            if not last:
                x = x + var.sqrt() * noise(x, generator)
                if guidance.has_project:
                    x = guidance.project(measurement, y, x, s, sde, generator)
            if callback is not None:
                callback(i, float(t[0]), x, x0)
        return SolverResult(guidance.finalize(measurement, y, x), denoiser.nfe - start)

    def _variance(self, v: torch.Tensor | None, small: torch.Tensor, large: torch.Tensor,
                  x: torch.Tensor) -> torch.Tensor:
        kind = self.variance or ("learned" if v is not None else "small")
        if kind == "small":
            return small.expand_as(x)
        if kind == "large":
            return large.expand_as(x)
        if v is None:
            raise ValueError("variance='learned' needs a network with a learned-variance output (e.g. an ADM "
                             "checkpoint with learn_sigma); use 'small' or 'large'")
        f = (v + 1) / 2
        return torch.exp(f * large.log() + (1 - f) * small.log())
