"""The solver seam: one signature, one result type.

    solver(denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None) -> SolverResult

``x`` (B, ...) is the initial state, a draw of N(0, s² I) at t_0 with s = ``initial_std(sde, t_0)`` (the prior
at T); row i is conditioned on the observation ``y[i]``;
``timesteps`` is a decreasing grid T = t_0 > ... > t_n; randomness comes only from ``generator``;
``callback(i, t, x, x0)`` runs after step i with the state and the current x̂₀. Every solver returns
one posterior sample per row (``solve`` repeats and batches around it) and the number of network
evaluations it made. Solvers see the network only through the ``Denoiser`` and never import a task or
a model class.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch

from ..denoisers.base import Denoiser
from ..guidance import Guidance, default_guidance
from ..measurement import Measurement
from ..sde import SDE

Callback = Callable[[int, float, torch.Tensor, torch.Tensor], None]


@dataclass
class SolverResult:
    """``samples`` (B, ...), one per row of the initial state; ``nfe`` network evaluations per row (batched
    calls count once; a guided evaluation with a backward pass counts once); ``extras`` per solver, e.g.
    ``ess`` (steps + 1, B) for SMC."""

    samples: torch.Tensor
    nfe: int
    extras: dict[str, Any] = field(default_factory=dict)


class Solver(abc.ABC):
    """A posterior sampler with its method's parameters; called with the problem (see module)."""

    name: ClassVar[str]

    def check(self, measurement: Measurement) -> None:
        """Raise a ``ValueError`` naming the problem when this solver cannot handle ``measurement``."""

    @abc.abstractmethod
    def __call__(self, denoiser: Denoiser, sde: SDE, measurement: Measurement, y: Any, x: torch.Tensor,
                 timesteps: torch.Tensor, *, generator: torch.Generator | None = None,
                 callback: Callback | None = None) -> SolverResult:
        """One posterior sample per row of x."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def times(timesteps: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    """The grid as (B,) time vectors on x's device and dtype."""
    ts = torch.as_tensor(timesteps).to(device=x.device, dtype=x.dtype)
    return [ts[i].expand(x.shape[0]) for i in range(ts.numel())]


def noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ N(0, I) shaped like x."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class GuidedSolver(Solver):
    """A solver whose conditioning is one ``Guidance`` term (``self.guidance``; None: ``guidance_for``'s default)."""

    guidance: Guidance | None

    def check(self, measurement: Measurement) -> None:
        guidance_for(self.guidance, measurement)


def check_guidance(guidance: Guidance | None) -> Guidance | None:
    """``guidance`` after checking it is a ``Guidance`` term or None."""
    if guidance is not None and not isinstance(guidance, Guidance):
        raise ValueError(f"guidance must be a Guidance term or None, got {type(guidance).__name__}")
    return guidance


def guidance_for(guidance: Guidance | None, measurement: Measurement | None) -> Guidance:
    """The term a guided solver uses: ``guidance`` (checked against the measurement), else
    ``default_guidance(measurement)``; no guidance at all when nothing is measured (``measurement`` None)."""
    if guidance is None:
        guidance = Guidance() if measurement is None else default_guidance(measurement)
    if measurement is not None:
        guidance.check(measurement)
    return guidance
