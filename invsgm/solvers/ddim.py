"""DDIM (Song, Meng & Ermon, ICLR 2021) on any linear SDE, with guidance, ADM's clipping and η.

One step from t to s < t, with x̂₀ and ε̂ = (x − α_t x̂₀)/σ_t from the (guided) score:
x_s = α_s x̂₀ + √(σ_s² − c²) ε̂ + c z,  c = η σ_s G/σ_t,  where x_t = (α_t/α_s) x_s + G z is the forward
transition (c² is DDPM's posterior variance when η = 1). After the last grid time the state is x̂₀.
"""
from __future__ import annotations

from .. import _checks
from ..guidance import Guidance, guided_evaluation
from ..sde import _bcast
from .base import GuidedSolver, SolverResult, check_guidance, guidance_for, noise, times


class DDIM(GuidedSolver):
    """Deterministic (η = 0) to ancestral (η = 1) DDIM; ``clip`` clamps x̂₀ to [−clip, clip] (ADM's
    ``clip_denoised`` is clip = 1 on centred data) and ε̂ is re-derived from the clipped x̂₀.

    Guidance adds ∇ₓ log p̃_t(y | x) to the score before x̂₀ is formed (ADM's ``condition_score`` for a
    classifier); a replacement term projects after each step. ``guidance`` None: ``default_guidance``, or no
    guidance when ``measurement`` is None (unconditional sampling).
    """

    name = "ddim"

    def __init__(self, guidance: Guidance | None = None, eta: float = 0.0, clip: float | None = None):
        self.guidance = check_guidance(guidance)
        self.eta = _checks.non_negative("eta", eta)
        self.clip = None if clip is None else _checks.positive("clip", clip)

    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        guidance = guidance_for(self.guidance, measurement)
        start = denoiser.nfe
        ts = times(timesteps, x)
        for i, t in enumerate(ts):
            g = guided_evaluation(denoiser, guidance, measurement, y, x, t)
            alpha_t, std_t = (_bcast(c, x) for c in sde.marginal_coeffs(t))
            x0 = (x + std_t.pow(2) * (g.score + g.grad)) / alpha_t
            if self.clip is not None:
                x0 = x0.clamp(-self.clip, self.clip)
            if i + 1 == len(ts):
                x = x0
            else:
                s = ts[i + 1]
                eps = (x - alpha_t * x0) / std_t
                alpha_s, std_s = (_bcast(c, x) for c in sde.marginal_coeffs(s))
                c = self.eta * std_s * _bcast(sde.transition(t, s)[1], x) / std_t
                x = alpha_s * x0 + (std_s.pow(2) - c.pow(2)).clamp_min(0).sqrt() * eps
                if self.eta > 0:
                    x = x + c * noise(x, generator)
                if guidance.has_project:
                    x = guidance.project(measurement, y, x, s, sde, generator)
            if callback is not None:
                callback(i, float(t[0]), x, x0)
        return SolverResult(guidance.finalize(measurement, y, x), denoiser.nfe - start)

