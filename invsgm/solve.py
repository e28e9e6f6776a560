"""``solve(task, observation, model, ...)``: posterior samples x ~ p(x | y) from an unconditional score model.

The task enters the sampler only through the guided score s(x, t) + ∇ log p̃_t(y | x) and the
``project`` hook (PC sampler), or through the twisting function (SMC sampler). Everything runs in the
model's data space (see ``invsgm.pretrained.to_model_space`` for images in [0, 1]).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import _checks
from .priors import GaussianMixture
from .sampling import CORRECTORS, PREDICTORS, default_timesteps, sample_pc
from .sampling.smc import sample_smc
from .sde import SDE, ScoreFn
from .tasks.base import GuidedScore, Task, log_likelihood_and_score

SAMPLERS = ("pc", "smc")


@dataclass
class Solution:
    """``samples`` (B, n, ...); ``mean`` and ``std`` (B, ...), the pixel-wise mean and standard deviation
    over the n samples when n > 1 (else None); ``ess`` (steps + 1, B) the SMC effective sample size / K."""

    samples: torch.Tensor
    mean: torch.Tensor | None
    std: torch.Tensor | None
    ess: torch.Tensor | None = None


def _score_and_sde(model: Any, sde: SDE | None) -> tuple[ScoreFn, SDE]:
    """A score function and its SDE from a ``Pretrained``, a ``GaussianMixture`` or any score callable."""
    from .pretrained import Pretrained

    if isinstance(model, Pretrained):
        if model.card.get("task") != "score":
            raise ValueError(f"solve needs a score model, got a pretrained {model.card.get('task')!r} model")
        if sde is not None and sde.config() != model.sde.config():
            raise ValueError(f"sde {sde!r} differs from the pretrained model's {model.sde!r}")
        return model.model, model.sde
    if sde is None or not isinstance(sde, SDE):
        raise ValueError(f"solve needs an SDE for this model (sde=VPSDE(...)), got {sde!r}")
    if isinstance(model, GaussianMixture):
        return model.score_model(sde), sde
    if not callable(model):
        raise ValueError(f"model must be a Pretrained, a GaussianMixture or a score function, got "
                         f"{type(model).__name__}")
    return model, sde


def _floating(y: Any) -> torch.Tensor | None:
    """The first floating-point tensor in an observation (a tensor or a tuple of them)."""
    for item in (y if isinstance(y, (tuple, list)) else (y,)):
        if torch.is_tensor(item) and item.is_floating_point():
            return item
    return None


def _to(y: Any, device: torch.device) -> Any:
    if isinstance(y, (tuple, list)):
        return tuple(_to(item, device) for item in y)
    return y.to(device) if torch.is_tensor(y) else y


def solve(task: Task, observation: Any, model: Any, sde: SDE | None = None, *, n: int = 1, steps: int = 500,
          sampler: str = "pc", predictor: str = "reverse_diffusion", corrector: str = "langevin",
          snr: float = 0.16, n_corrector_steps: int = 1, n_particles: int = 16, shape: tuple[int, ...] | None = None,
          batch_size: int | None = None, generator: torch.Generator | None = None, seed: int | None = None,
          progress: bool = False, callback: Callable[[int, int], None] | None = None) -> Solution:
    """n posterior samples of x given each observation y (batch B), in the model's data space.

    ``model``: a ``Pretrained`` score model, an exact ``GaussianMixture`` prior (then ``sde`` is
    required) or any score function s(x, t). ``sampler``: 'pc' (predictor–corrector with the guided
    score and the task's projection) or 'smc' (twisted sequential Monte Carlo with ``n_particles``
    per observation; asymptotically exact, needs the task's exact likelihood). Observations are
    processed ``batch_size`` at a time; ``callback(done, total)`` runs after each batch. Samples
    are a function of the seed (or ``generator``) and ``batch_size``.
    """
    if not isinstance(task, Task):
        raise ValueError(f"task must be an invsgm Task, got {type(task).__name__}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {sorted(PREDICTORS)}, got {predictor!r}")
    if corrector not in CORRECTORS:
        raise ValueError(f"corrector must be one of {sorted(CORRECTORS)}, got {corrector!r}")
    n = _checks.positive_int("n", n)
    score_fn, sde = _score_and_sde(model, sde)
    y = task.check_observation(observation)
    total = task.batch_size(y)
    batch_size = total if batch_size is None else _checks.positive_int("batch_size", batch_size)
    if shape is not None and task.x_shape is not None and tuple(shape) != tuple(task.x_shape):
        raise ValueError(f"shape {tuple(shape)} differs from the task's sample shape {task.x_shape}")
    x_shape = tuple(shape) if shape is not None else task.x_shape
    if x_shape is None:
        raise ValueError(f"{task!r} does not determine the sample shape: pass shape=(C, H, W)")
    ref = _floating(y)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    device = ref.device if ref is not None else torch.device("cpu")
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(int(seed))
    timesteps = default_timesteps(sde, steps)
    if sampler == "smc":
        if task.has_project:
            raise ValueError(f"sampler 'smc' needs a likelihood-only task; {task!r} has a replacement step "
                             f"(use sampler 'pc')")
        if not task.has_likelihood:
            raise ValueError(f"sampler 'smc' needs a task with a likelihood, got {task!r}")
        n_particles = _checks.positive_int("n_particles", n_particles)
        probe = _to(task.select(y, slice(0, 1)), device)
        _final_log_likelihood(task, probe, torch.zeros((1, *x_shape), device=device, dtype=dtype))

    chunks, ess = [], []
    for start in range(0, total, batch_size):
        y_chunk = _to(task.select(y, slice(start, start + batch_size)), device)
        count = task.batch_size(y_chunk)
        if sampler == "pc":
            y_rep = task.repeat(y_chunk, n)
            x = sde.prior_sampling((count * n, *x_shape), generator=generator, device=device, dtype=dtype)
            guided = GuidedScore(score_fn, sde, task, y_rep) if task.has_likelihood else score_fn
            project = functools.partial(_project, task, y_rep, sde) if task.has_project else None
            out = sample_pc(guided, sde, x, timesteps, predictor=PREDICTORS[predictor],
                            corrector=CORRECTORS[corrector], snr=snr, n_corrector_steps=n_corrector_steps,
                            project=project, generator=generator, progress=progress)
            out = task.finalize(out, y_rep)
        else:
            y_rep = task.repeat(y_chunk, n_particles)
            final = functools.partial(_final_log_likelihood, task, y_rep)
            twist = functools.partial(log_likelihood_and_score, score_fn, sde, task, y_rep)
            x = sde.prior_sampling((count * n_particles, *x_shape), generator=generator, device=device, dtype=dtype)
            result = sample_smc(twist, sde, x, timesteps, n_particles=n_particles, final_log_likelihood=final,
                                n_out=n, generator=generator, progress=progress)
            out = task.finalize(result.x, task.repeat(y_chunk, n))
            ess.append(result.ess)
        chunks.append(out.reshape(count, n, *x_shape))
        if callback is not None:
            callback(min(start + batch_size, total), total)
    samples = torch.cat(chunks)
    mean = samples.mean(1) if n > 1 else None
    std = samples.std(1) if n > 1 else None
    return Solution(samples=samples, mean=mean, std=std, ess=torch.cat(ess, dim=1) if ess else None)


def _project(task: Task, y: Any, sde: SDE, x: torch.Tensor, t: torch.Tensor,
             generator: torch.Generator | None) -> torch.Tensor:
    return task.project(x, t, y, sde, generator)


def _final_log_likelihood(task: Task, y: Any, x0: torch.Tensor) -> torch.Tensor:
    logl = task.exact_log_likelihood(x0, y)
    if logl is None:
        raise ValueError(f"sampler 'smc' needs the exact likelihood p(y | x0) of {task!r} (e.g. sigma_y > 0)")
    return logl
