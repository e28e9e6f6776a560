"""The denoiser seam: one network on one SDE seen as s(x, t) ≈ ∇log p_t(x) and x̂₀(x, t) = E[x₀ | x_t].

Tweedie's formula links the two, x̂₀ = (x + σ(t)² s)/α(t), and is written here once; every solver
and guidance term asks a ``Denoiser`` for whichever it needs and never sees a network class.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import nn

from .. import _checks
from ..sde import SDE, _bcast


def tweedie_x0(x: torch.Tensor, t: torch.Tensor, score: torch.Tensor, sde: SDE) -> torch.Tensor:
    """Tweedie's posterior mean x̂₀ = E[x₀ | x_t] = (x + σ(t)² s(x, t)) / α(t); t of shape (B,)."""
    alpha, std = sde.marginal_coeffs(t)
    return (x + _bcast(std.pow(2), x) * score) / _bcast(alpha, x)


def score_from_x0(x: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, sde: SDE) -> torch.Tensor:
    """The score that Tweedie's formula maps to x̂₀: s = (α(t) x̂₀ − x) / σ(t)²."""
    alpha, std = sde.marginal_coeffs(t)
    return (_bcast(alpha, x) * x0 - x) / _bcast(std.pow(2), x)


@dataclass
class Evaluation:
    """One network evaluation: the score, Tweedie's x̂₀ and, for networks that predict it, the raw
    learned-variance output (ADM's interpolation vector, shape of x), else None."""

    score: torch.Tensor
    x0: torch.Tensor
    variance: torch.Tensor | None = None


class Denoiser(nn.Module, abc.ABC):
    """s(x, t) and x̂₀(x, t) of a prior on the SDE ``sde``; ``nfe`` counts evaluations (one per batch call).

    Calling the denoiser returns the score, so it is also a plain ``score_fn(x, t)`` for the samplers.
    """

    def __init__(self, sde: SDE):
        super().__init__()
        self.sde = sde
        self.nfe = 0

    @abc.abstractmethod
    def _evaluate(self, x: torch.Tensor, t: torch.Tensor) -> Evaluation:
        """The evaluation at a checked (B,) time vector."""

    def evaluate(self, x: torch.Tensor, t: torch.Tensor | float) -> Evaluation:
        """Score and x̂₀ from one evaluation (counted in ``nfe``)."""
        self.nfe += 1
        return self._evaluate(x, _checks.time_vector(t, x))

    def score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """s(x, t) ≈ ∇ₓ log p_t(x)."""
        return self.evaluate(x, t).score

    def x0(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """x̂₀(x, t) ≈ E[x₀ | x_t = x]."""
        return self.evaluate(x, t).x0

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.score(x, t)


class ScoreFunctionDenoiser(Denoiser):
    """Any score function s(x, t) (an exact prior's, a user's callable) as a denoiser; x̂₀ by Tweedie."""

    def __init__(self, score_fn, sde: SDE):
        super().__init__(sde)
        if not callable(score_fn):
            raise ValueError(f"score_fn must be callable as score_fn(x, t), got {type(score_fn).__name__}")
        self.score_fn = score_fn

    def _evaluate(self, x: torch.Tensor, t: torch.Tensor) -> Evaluation:
        score = self.score_fn(x, t)
        return Evaluation(score, tweedie_x0(x, t, score, self.sde))
