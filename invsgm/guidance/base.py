"""The guidance contract: a term log p̃_t(y | x_t) whose gradient is added to the prior score,
∇log p_t(x | y) ≈ s(x, t) + ∇ₓ log p̃_t(y | x), and/or a replacement step after each sampler update.

A term is built from its method parameters only; the measurement and the observation arrive at each
call. ``log_likelihood(measurement, y, x, t, ev, sde)`` receives the denoiser's evaluation ``ev`` at
(x, t); when the term sets ``needs_graph`` the evaluation is attached to x's autograd graph (the term
differentiates through x̂₀, as DPS and ΠGDM do), else it is detached.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..denoisers.base import Denoiser, Evaluation
from ..measurement import Joint, Measurement
from ..sde import SDE


class Guidance:
    """Base class of guidance terms; the defaults add nothing."""

    needs_graph: bool = False  # log_likelihood differentiates through the denoiser's x̂₀ / score

    def check(self, measurement: Measurement) -> None:
        """Raise a ``ValueError`` when this term cannot guide ``measurement``."""

    def log_likelihood(self, measurement: Measurement, y: Any, x: torch.Tensor, t: torch.Tensor, ev: Evaluation,
                       sde: SDE) -> torch.Tensor | None:
        """log p̃_t(y | x_t) per sample (B,), differentiable in x, or None when the term adds no gradient."""
        return None

    def project(self, measurement: Measurement, y: Any, x: torch.Tensor, t: torch.Tensor, sde: SDE,
                generator: torch.Generator | None) -> torch.Tensor:
        """The state after a replacement step at time t (identity by default)."""
        return x

    def finalize(self, measurement: Measurement, y: Any, x: torch.Tensor) -> torch.Tensor:
        """The output after a last data-consistency step (identity by default)."""
        return x

    @property
    def has_project(self) -> bool:
        """Whether ``project`` does something (samplers then call it after every update)."""
        return type(self).project is not Guidance.project

    @property
    def has_likelihood(self) -> bool:
        """Whether ``log_likelihood`` is overridden (the score is then guided)."""
        return type(self).log_likelihood is not Guidance.log_likelihood


class Composite(Guidance):
    """One term per part of a ``Joint`` measurement: log-likelihoods add, projections apply in order."""

    def __init__(self, terms: Sequence[Guidance]):
        terms = list(terms)
        if len(terms) < 2 or not all(isinstance(g, Guidance) for g in terms):
            raise ValueError(f"Composite needs at least two Guidance terms, got {terms!r}")
        self.terms = terms
        self.needs_graph = any(g.needs_graph for g in terms)

    def check(self, measurement: Measurement) -> None:
        if not isinstance(measurement, Joint) or len(measurement.parts) != len(self.terms):
            raise ValueError(f"Composite of {len(self.terms)} guidance terms needs a Joint measurement of as many "
                             f"parts, got {measurement!r}")
        for g, m in zip(self.terms, measurement.parts):
            g.check(m)

    def log_likelihood(self, measurement, y, x, t, ev, sde):
        terms = [g.log_likelihood(m, yi, x, t, ev, sde) for g, m, yi in zip(self.terms, measurement.parts, y)]
        terms = [term for term in terms if term is not None]
        return torch.stack(terms).sum(0) if terms else None

    def project(self, measurement, y, x, t, sde, generator):
        for g, m, yi in zip(self.terms, measurement.parts, y):
            x = g.project(m, yi, x, t, sde, generator)
        return x

    def finalize(self, measurement, y, x):
        for g, m, yi in zip(self.terms, measurement.parts, y):
            x = g.finalize(m, yi, x)
        return x

    @property
    def has_project(self) -> bool:
        return any(g.has_project for g in self.terms)

    @property
    def has_likelihood(self) -> bool:
        return any(g.has_likelihood for g in self.terms)

    def __repr__(self) -> str:
        return f"Composite({self.terms!r})"


@dataclass
class Guided:
    """One guided evaluation at (x, t), all detached: log p̃_t(y | x) (None without a term), its gradient,
    the prior score, x̂₀ and the network's learned-variance output (None for most networks)."""

    log_likelihood: torch.Tensor | None
    grad: torch.Tensor
    score: torch.Tensor
    x0: torch.Tensor
    variance: torch.Tensor | None = None


def guided_evaluation(denoiser: Denoiser, guidance: Guidance, measurement: Measurement, y: Any,
                      x: torch.Tensor, t: torch.Tensor) -> Guided:
    """The denoiser's evaluation at (x, t) and the term's log-likelihood and per-sample gradient (one evaluation)."""
    if not guidance.has_likelihood:
        with torch.no_grad():
            ev = denoiser.evaluate(x, t)
        return Guided(None, torch.zeros_like(x), ev.score, ev.x0, ev.variance)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        if guidance.needs_graph:
            ev = denoiser.evaluate(xg, t)
        else:
            with torch.no_grad():
                ev = denoiser.evaluate(x, t)
        logl = guidance.log_likelihood(measurement, y, xg, t, ev, denoiser.sde)
        if logl is None:
            return Guided(None, torch.zeros_like(x), ev.score.detach(), ev.x0.detach(), _detached(ev.variance))
        (grad,) = torch.autograd.grad(logl.sum(), xg)
    return Guided(logl.detach(), grad, ev.score.detach(), ev.x0.detach(), _detached(ev.variance))


def _detached(v: torch.Tensor | None) -> torch.Tensor | None:
    return None if v is None else v.detach()


class GuidedScore:
    """s(x, t) + ∇ₓ log p̃_t(y | x) as a plain ``score_fn(x, t)``; ``last_x0`` keeps the latest x̂₀."""

    def __init__(self, denoiser: Denoiser, guidance: Guidance, measurement: Measurement, y: Any):
        self.denoiser, self.guidance, self.measurement, self.y = denoiser, guidance, measurement, y
        self.last_x0: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        g = guided_evaluation(self.denoiser, self.guidance, self.measurement, self.y, x, t)
        self.last_x0 = g.x0
        return g.score + g.grad
