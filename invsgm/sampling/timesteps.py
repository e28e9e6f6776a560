"""Time grids of the samplers and their validation.

A sampler walks a strictly decreasing grid t_0 = T > t_1 > ... > t_n = eps, one step per interval.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .. import _checks
from ..sde import SDE


def default_timesteps(sde: SDE, n_steps: int, eps: float | None = None) -> torch.Tensor:
    """n_steps + 1 uniformly spaced times from sde.T down to eps (default ``sde.eps``), float64."""
    n_steps = _checks.positive_int("n_steps", n_steps)
    eps = sde.eps if eps is None else float(eps)
    if not 0.0 <= eps < sde.T:
        raise ValueError(f"eps must lie in [0, T={sde.T}), got {eps!r}")
    return torch.linspace(sde.T, eps, n_steps + 1, dtype=torch.float64)


def check_timesteps(timesteps: torch.Tensor | Sequence[float], sde: SDE) -> torch.Tensor:
    """Return ``timesteps`` as a 1-D tensor after checking it is strictly decreasing within [0, sde.T]."""
    ts = torch.as_tensor(timesteps)
    if ts.ndim != 1 or ts.numel() < 2 or not ts.is_floating_point():
        raise ValueError(f"timesteps must be a 1-D float tensor of at least 2 times, got shape "
                         f"{tuple(ts.shape)} and dtype {ts.dtype}")
    if not bool(torch.isfinite(ts).all()) or ts.min() < 0 or ts.max() > sde.T:
        raise ValueError(f"timesteps must lie in [0, T={sde.T}], got values in "
                         f"[{ts.min().item():.4g}, {ts.max().item():.4g}]")
    if not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError("timesteps must be strictly decreasing (from T towards 0)")
    return ts
