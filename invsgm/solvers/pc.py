"""Guided predictor–corrector sampling (Song et al., ICLR 2021): the reverse SDE's predictor and Langevin
corrector driven by s(x, t) + ∇ₓ log p̃_t(y | x), with the guidance's replacement step after each update.
"""
from __future__ import annotations

import torch

from .. import _checks
from ..guidance import Guidance, GuidedScore
from ..sampling.correctors import langevin
from ..sampling.pc import Corrector, Predictor, sample_pc
from ..sampling.predictors import reverse_diffusion
from .base import GuidedSolver, SolverResult, check_guidance, guidance_for


class PC(GuidedSolver):
    """x ← predictor(x, t → s) then corrector at s, each followed by the guidance's projection; x̂₀ at the end.

    ``guidance`` None: ``default_guidance(measurement)``, nothing when ``measurement`` is None (replacement for noiseless masks and the grey axis,
    ΠGDM for noisy linear problems, the classifier for labels). Defaults are the paper's: reverse
    diffusion + one Langevin step at snr 0.16.
    """

    name = "pc"

    def __init__(self, guidance: Guidance | None = None, predictor: Predictor = reverse_diffusion,
                 corrector: Corrector | None = langevin, snr: float = 0.16, n_corrector_steps: int = 1):
        self.guidance, self.predictor, self.corrector = check_guidance(guidance), predictor, corrector
        self.snr = _checks.positive("snr", snr)
        if isinstance(n_corrector_steps, bool) or int(n_corrector_steps) != n_corrector_steps or n_corrector_steps < 0:
            raise ValueError(f"n_corrector_steps must be an integer >= 0, got {n_corrector_steps!r}")
        self.n_corrector_steps = int(n_corrector_steps)

    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        guidance = guidance_for(self.guidance, measurement)
        start = denoiser.nfe
        score = GuidedScore(denoiser, guidance, measurement, y)
        project = _Project(guidance, measurement, y, sde) if guidance.has_project else None
        trace = None
        if callback is not None:
            def trace(i: int, t: float, state: torch.Tensor) -> None:
                callback(i, t, state, score.last_x0)
        out = sample_pc(score, sde, x, timesteps, predictor=self.predictor, corrector=self.corrector, snr=self.snr,
                        n_corrector_steps=self.n_corrector_steps, project=project, generator=generator,
                        callback=trace)
        return SolverResult(guidance.finalize(measurement, y, out), denoiser.nfe - start)


class _Project:
    """The guidance's projection as the sampler's ``project(x, t, generator)`` hook."""

    def __init__(self, guidance: Guidance, measurement, y, sde):
        self.guidance, self.measurement, self.y, self.sde = guidance, measurement, y, sde

    def __call__(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self.guidance.project(self.measurement, self.y, x, t, self.sde, generator)
