"""``solve(measurement, y, model, solver)``: n independent posterior samples x ~ p(x | y) per observation.

The batching, repetition and seeding around any ``Solver``: observations are taken ``batch_size`` at a
time, each repeated n times, and the solver runs once on the (batch · n) rows from prior draws of x_T.
Everything runs in the model's data space (see ``invsgm.pretrained.to_model_space`` for images in [0, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import _checks
from .denoisers import Denoiser, as_denoiser
from .measurement import Measurement
from .sampling.timesteps import check_timesteps, default_timesteps, initial_std
from .sde import SDE
from .solvers import PC, Solver


@dataclass
class Solution:
    """``samples`` (B, n, ...); ``mean`` and ``std`` (B, ...) over the n samples when n > 1 (else None);
    ``nfe`` network evaluations per sample; ``extras`` the solver's, concatenated over batches along
    their last axis (e.g. ``ess`` (steps + 1, B·n) for SMC)."""

    samples: torch.Tensor
    mean: torch.Tensor | None
    std: torch.Tensor | None
    nfe: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


def same_sde(a: SDE, b: SDE) -> bool:
    """Whether two SDEs are the same process (same class and parameters)."""
    return type(a) is type(b) and a.config() == b.config()


def _denoiser(model: Any, sde: SDE | None) -> tuple[Denoiser, SDE]:
    den = as_denoiser(model, sde)
    if sde is not None and not same_sde(sde, den.sde):
        raise ValueError(f"sde {sde!r} differs from the model's {den.sde!r}")
    return den, den.sde


def _floating(y: Any) -> torch.Tensor | None:
    """The first floating-point tensor in an observation (a tensor or a tuple of them)."""
    for item in (y if isinstance(y, (tuple, list)) else (y,)):
        if torch.is_tensor(item) and item.is_floating_point():
            return item
    return None


def solve(measurement: Measurement, observation: Any, model: Any, solver: Solver | None = None, *,
          sde: SDE | None = None, n: int = 1, steps: int = 100, timesteps: torch.Tensor | None = None,
          shape: tuple[int, ...] | None = None, batch_size: int | None = None,
          generator: torch.Generator | None = None, seed: int | None = None, device: torch.device | None = None,
          progress: bool = False, callback: Callable[[int, int], None] | None = None) -> Solution:
    """n independent posterior samples of x given each observation y (batch B), in the model's data space.

    ``model``: a ``Denoiser``, a ``Pretrained`` score model, an exact ``GaussianMixture`` prior or any score
    function s(x, t) (the last two need ``sde``; when both are given they must agree). ``solver``: any
    ``Solver`` (default ``PC()``), run on ``timesteps`` (default: ``steps`` uniform steps from T to
    ``sde.eps``; ``invsgm.sampling.timesteps.noise_level_timesteps`` places them by noise level), from
    x_{t_0} ~ N(0, s² I), s = ``initial_std(sde, t_0)`` (the prior at T). Observations are processed ``batch_size`` at a time; ``callback(done, total)`` runs
    after each batch. Samples are a function of the seed (or ``generator``) and ``batch_size``.
    """
    if not isinstance(measurement, Measurement):
        raise ValueError(f"measurement must be an invsgm Measurement, got {type(measurement).__name__}")
    solver = PC() if solver is None else solver
    if not isinstance(solver, Solver):
        raise ValueError(f"solver must be an invsgm Solver, got {type(solver).__name__}")
    n = _checks.positive_int("n", n)
    denoiser, sde = _denoiser(model, sde)
    solver.check(measurement)
    y = measurement.check(observation)
    total = measurement.batch_size(y)
    batch_size = total if batch_size is None else _checks.positive_int("batch_size", batch_size)
    if shape is not None and measurement.x_shape is not None and tuple(shape) != tuple(measurement.x_shape):
        raise ValueError(f"shape {tuple(shape)} differs from the measurement's sample shape {measurement.x_shape}")
    x_shape = tuple(shape) if shape is not None else measurement.x_shape
    if x_shape is None:
        raise ValueError(f"{measurement!r} does not determine the sample shape: pass shape=(C, H, W)")
    ref = _floating(y)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    if device is None:
        device = ref.device if ref is not None else torch.device("cpu")
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(int(seed))
    ts = default_timesteps(sde, steps) if timesteps is None else check_timesteps(timesteps, sde)
    scale = initial_std(sde, float(ts[0]))  # x_{t_0}: the prior's draw at T (see initial_std otherwise)

    chunks, extras, nfe = [], {}, 0
    bar = _progress(len(ts) - 1, progress)
    for start in range(0, total, batch_size):
        y_chunk = measurement.to(measurement.select(y, slice(start, start + batch_size)), device)
        count = measurement.batch_size(y_chunk)
        y_rep = measurement.repeat(y_chunk, n)
        x = scale * torch.randn((count * n, *x_shape), generator=generator, device=device, dtype=dtype)
        if bar is not None:
            bar.reset()
        with torch.no_grad():  # solvers that differentiate (guidance) enable gradients where they need them
            result = solver(denoiser, sde, measurement, y_rep, x, ts, generator=generator,
                            callback=None if bar is None else (lambda *args: bar.update()))
        nfe = result.nfe
        chunks.append(result.samples.reshape(count, n, *x_shape))
        for key, value in result.extras.items():
            extras.setdefault(key, []).append(value)
        if callback is not None:
            callback(min(start + batch_size, total), total)
    if bar is not None:
        bar.close()
    samples = torch.cat(chunks)
    mean = samples.mean(1) if n > 1 else None
    std = samples.std(1) if n > 1 else None
    extras = {k: torch.cat(v, dim=-1) if torch.is_tensor(v[0]) else v for k, v in extras.items()}
    return Solution(samples=samples, mean=mean, std=std, nfe=nfe, extras=extras)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="solving")
