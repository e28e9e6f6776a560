"""The task plugin contract: how an observation y conditions an unconditional score model.

A task turns ∇log p_t(x) into ∇log p_t(x | y) = ∇log p_t(x) + ∇log p_t(y | x) inside any sampler, by

- ``log_likelihood(x, t, y, score, sde)``: an approximation of log p_t(y | x_t) (up to a constant
  that may depend on t only), differentiable in x; its gradient is added to the score. ``score`` is
  s(x, t), attached to x's autograd graph when the task sets ``needs_score_graph`` (Tweedie's
  x̂₀ = (x + σ² s)/α then carries the gradient, as in DPS and ΠGDM);
- ``project(x, t, y, sde, generator)``: a replacement step after every sampler update (ICLR 2021);
- ``finalize(x, y)``: a last data-consistency step on the output (exact for noiseless replacement).

``exact_log_likelihood(x0, y)`` is log p(y | x₀) when the task knows it (linear-Gaussian noise,
a classifier at t ≈ 0): sequential Monte Carlo needs it to correct its weights. The observation y
always has the batch size of x (``solve`` repeats it for every sample).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..sde import SDE, ScoreFn, _bcast


class Task:
    """Base class of conditioning plugins; the defaults add nothing (an unconditional sampler)."""

    needs_score_graph: bool = False  # log_likelihood differentiates through the prior score
    x_shape: tuple[int, ...] | None = None  # shape of one sample x, when the task determines it

    def log_likelihood(self, x: torch.Tensor, t: torch.Tensor, y: Any, score: torch.Tensor,
                       sde: SDE) -> torch.Tensor | None:
        """log p̃_t(y | x_t) per sample (B,), or None when the task adds no likelihood term."""
        return None

    def exact_log_likelihood(self, x0: torch.Tensor, y: Any) -> torch.Tensor | None:
        """log p(y | x₀) per sample (B,), or None when it is not known in closed form."""
        return None

    def project(self, x: torch.Tensor, t: torch.Tensor, y: Any, sde: SDE,
                generator: torch.Generator | None) -> torch.Tensor:
        """The state after a replacement step at time t (identity by default)."""
        return x

    def finalize(self, x: torch.Tensor, y: Any) -> torch.Tensor:
        """The output after a final data-consistency step (identity by default)."""
        return x

    @property
    def has_project(self) -> bool:
        """Whether ``project`` is overridden (samplers then call it after every update)."""
        return type(self).project is not Task.project

    @property
    def has_likelihood(self) -> bool:
        """Whether ``log_likelihood`` is overridden (the score is then guided)."""
        return type(self).log_likelihood is not Task.log_likelihood

    def check_observation(self, y: Any) -> Any:
        """Return y after checking its type and shape (B, ...); raise a ``ValueError`` naming the problem."""
        if not torch.is_tensor(y) or y.ndim < 1 or y.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: the observation must be a tensor of shape (B, ...), got "
                             f"{tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
        return y

    def repeat(self, y: Any, n: int) -> Any:
        """The observation batch with each entry repeated n times in a row: (B, ...) → (B·n, ...)."""
        return y.repeat_interleave(n, dim=0)

    def batch_size(self, y: Any) -> int:
        """Number of observations in y."""
        return y.shape[0]

    def select(self, y: Any, index: slice) -> Any:
        """A slice of the observation batch."""
        return y[index]


class Composite(Task):
    """Several tasks at once: likelihoods add, projections and final steps apply in order.

    The observation is a tuple with one entry per task (e.g. (labels, masked images) for class
    guidance + inpainting).
    """

    def __init__(self, tasks: Sequence[Task]):
        tasks = list(tasks)
        if len(tasks) < 2 or not all(isinstance(t, Task) for t in tasks):
            raise ValueError(f"Composite needs at least two Task objects, got {tasks!r}")
        self.tasks = tasks
        self.needs_score_graph = any(t.needs_score_graph for t in tasks)
        shapes = {t.x_shape for t in tasks if t.x_shape is not None}
        if len(shapes) > 1:
            raise ValueError(f"Composite: the tasks disagree on the sample shape: {sorted(shapes)}")
        self.x_shape = shapes.pop() if shapes else None

    def log_likelihood(self, x, t, y, score, sde):
        terms = [task.log_likelihood(x, t, yi, score, sde) for task, yi in zip(self.tasks, y)]
        terms = [term for term in terms if term is not None]
        return torch.stack(terms).sum(0) if terms else None

    def exact_log_likelihood(self, x0, y):
        terms = [task.exact_log_likelihood(x0, yi) for task, yi in zip(self.tasks, y)]
        if any(term is None for term, task in zip(terms, self.tasks) if task.has_likelihood):
            return None
        terms = [term for term in terms if term is not None]
        return torch.stack(terms).sum(0) if terms else None

    def project(self, x, t, y, sde, generator):
        for task, yi in zip(self.tasks, y):
            x = task.project(x, t, yi, sde, generator)
        return x

    def finalize(self, x, y):
        for task, yi in zip(self.tasks, y):
            x = task.finalize(x, yi)
        return x

    @property
    def has_project(self) -> bool:
        return any(t.has_project for t in self.tasks)

    @property
    def has_likelihood(self) -> bool:
        return any(t.has_likelihood for t in self.tasks)

    def check_observation(self, y):
        if not isinstance(y, (tuple, list)) or len(y) != len(self.tasks):
            raise ValueError(f"Composite of {len(self.tasks)} tasks needs a tuple of {len(self.tasks)} "
                             f"observations, got {type(y).__name__}")
        y = tuple(task.check_observation(yi) for task, yi in zip(self.tasks, y))
        sizes = {task.batch_size(yi) for task, yi in zip(self.tasks, y)}
        if len(sizes) != 1:
            raise ValueError(f"Composite: the observations have different batch sizes {sorted(sizes)}")
        return y

    def repeat(self, y, n):
        return tuple(task.repeat(yi, n) for task, yi in zip(self.tasks, y))

    def batch_size(self, y):
        return self.tasks[0].batch_size(y[0])

    def select(self, y, index):
        return tuple(task.select(yi, index) for task, yi in zip(self.tasks, y))


def tweedie_x0(x: torch.Tensor, t: torch.Tensor, score: torch.Tensor, sde: SDE) -> torch.Tensor:
    """Tweedie's posterior mean x̂₀ = E[x₀ | x_t] = (x + σ(t)² s(x, t)) / α(t)."""
    alpha, std = sde.marginal_coeffs(t)
    return (x + _bcast(std.pow(2), x) * score) / _bcast(alpha, x)


def log_likelihood_and_score(score_fn: ScoreFn, sde: SDE, task: Task, y: Any, x: torch.Tensor,
                             t: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(log p̃_t(y | x) per sample or None, its gradient ∇ₓ (zeros if None), the prior score s(x, t)), all detached.

    Gradients are per sample: each sample's terms depend on its own x only.
    """
    if not task.has_likelihood:
        with torch.no_grad():
            score = score_fn(x, t)
        return None, torch.zeros_like(x), score
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        if task.needs_score_graph:
            score = score_fn(xg, t)
        else:
            with torch.no_grad():
                score = score_fn(x, t)
        logl = task.log_likelihood(xg, t, y, score, sde)
        if logl is None:
            return None, torch.zeros_like(x), score.detach()
        (grad,) = torch.autograd.grad(logl.sum(), xg)
    return logl.detach(), grad, score.detach()


@dataclass
class GuidedScore:
    """s(x, t) + ∇ₓ log p̃_t(y | x): the conditional score a sampler sees (a plain ``score_fn``)."""

    score_fn: ScoreFn
    sde: SDE
    task: Task
    y: Any

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _, grad, score = log_likelihood_and_score(self.score_fn, self.sde, self.task, self.y, x, t)
        return score + grad
