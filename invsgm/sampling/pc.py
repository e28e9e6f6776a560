"""Predictor–corrector sampling of a reverse-time SDE (Song et al. 2021, Algorithms 2–3)."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch

from .. import _checks
from ..denoisers.base import tweedie_x0
from ..sde import SDE, ScoreFn
from .correctors import langevin
from .predictors import reverse_diffusion
from .timesteps import check_timesteps

Predictor = Callable[..., tuple[torch.Tensor, torch.Tensor]]
Corrector = Callable[..., tuple[torch.Tensor, torch.Tensor]]
Project = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]
Callback = Callable[[int, float, torch.Tensor], None]


def check_state(x: torch.Tensor) -> torch.Tensor:
    """Check the sampler state x is a floating-point tensor of shape (B, ...) with B ≥ 1."""
    if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must be a floating-point tensor of shape (B, ...), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    return x


def tweedie_denoise(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Tweedie's E[x(0) | x(t)] = (x + σ(t)² ∇log p_t(x)) / α(t) for t of shape (B,)."""
    return tweedie_x0(x, t, score_fn(x, t), sde)


def step_range(n_steps: int, progress: bool, desc: str) -> Iterable[int]:
    """range(n_steps), wrapped in a tqdm bar when ``progress``."""
    if not progress:
        return range(n_steps)
    from tqdm.auto import tqdm

    return tqdm(range(n_steps), desc=desc)


@torch.no_grad()
def sample_pc(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, timesteps: torch.Tensor | Sequence[float], *,
              predictor: Predictor = reverse_diffusion, corrector: Corrector | None = langevin,
              snr: float = 0.16, n_corrector_steps: int = 1, denoise: bool = True,
              project: Project | None = None, generator: torch.Generator | None = None,
              callback: Callback | None = None, progress: bool = False) -> torch.Tensor:
    """Sample p_{t_n} from x ~ p_{t_0}: for each step, predictor t_i → t_{i+1}, then corrector at t_{i+1}.

    ``project(x, t, generator)`` constrains x after every predictor and corrector update; x_mean is
    only used as the output, so only the returned one is projected. Returns Tweedie's denoised mean at
    t_n if ``denoise`` (one more score evaluation), else the last update's x_mean. ``callback(i, t, x)``
    runs after step i with t = t_{i+1} as a float. Runs under ``torch.no_grad()``.
    """
    x = check_state(x)
    ts = check_timesteps(timesteps, sde).to(device=x.device, dtype=x.dtype)
    if not callable(predictor):
        raise ValueError(f"predictor must be a predictor function, got {predictor!r}")
    if corrector is not None and not callable(corrector):
        raise ValueError(f"corrector must be a corrector function or None, got {corrector!r}")
    snr = _checks.positive("snr", snr)
    if isinstance(n_corrector_steps, bool) or int(n_corrector_steps) != n_corrector_steps or n_corrector_steps < 0:
        raise ValueError(f"n_corrector_steps must be an integer >= 0, got {n_corrector_steps!r}")
    if n_corrector_steps == 0:
        corrector = None
    batch = x.shape[0]
    times = [ts[i].expand(batch) for i in range(ts.numel())]  # (B,) views, built once
    t_floats = ts.tolist() if callback is not None else None
    for i in step_range(len(times) - 1, progress, "PC sampling"):
        t, s = times[i], times[i + 1]
        x, x_mean = predictor(score_fn, sde, x, t, s, generator)
        if project is not None:
            x = project(x, s, generator)
        if corrector is not None:
            x, x_mean = corrector(score_fn, sde, x, s, generator, snr, n_corrector_steps)
            if project is not None:
                x = project(x, s, generator)
        if callback is not None:
            callback(i, t_floats[i + 1], x)
    if denoise:
        return tweedie_denoise(score_fn, sde, x, times[-1])
    return x_mean if project is None else project(x_mean, times[-1], generator)
