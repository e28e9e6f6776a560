"""Time grids of the samplers and solvers, their validation, and the initial state's scale.

A sampler walks a strictly decreasing grid t_0 > t_1 > ... > t_n, one step per interval: uniform in t
from T to eps (``default_timesteps``), or placed by noise level ς = σ(t)/α(t), the noise of the scaled
variable x/α (``noise_level_timesteps``: uniform in ς^{1/ρ}, linear for ρ = 1, Karras et al.'s for ρ = 7).
"""
from __future__ import annotations

from typing import Sequence

import math

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


def noise_ratio(sde: SDE, t: torch.Tensor) -> torch.Tensor:
    """ς(t) = σ(t)/α(t), the noise level of the scaled variable x/α (VE-like); t a float64 tensor."""
    alpha, std = sde.marginal_coeffs(t)
    return std / alpha


def time_of_noise(sde: SDE, target: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor,
                  iters: int = 100) -> torch.Tensor:
    """Times t in [lo, hi] with ς(t) = target (bisection in float64; ς increases with t for VE, VP, sub-VP)."""
    target = torch.as_tensor(target, dtype=torch.float64)
    lo = torch.as_tensor(lo, dtype=torch.float64).expand_as(target).clone()
    hi = torch.as_tensor(hi, dtype=torch.float64).expand_as(target).clone()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = noise_ratio(sde, mid) > target
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return 0.5 * (lo + hi)


def noise_levels(high: torch.Tensor | float, low: torch.Tensor | float, n: int, rho: float = 7.0) -> torch.Tensor:
    """n noise levels from ``high`` down to ``low``, uniform in ς^{1/ρ} (Karras et al.'s grid); (..., n) float64."""
    high = torch.as_tensor(high, dtype=torch.float64)[..., None]
    low = torch.as_tensor(low, dtype=torch.float64)[..., None]
    r = torch.linspace(0.0, 1.0, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return (high ** (1 / rho) + r * (low ** (1 / rho) - high ** (1 / rho))) ** rho


def noise_level_timesteps(sde: SDE, n_steps: int, sigma_max: float | None = None, sigma_min: float | None = None,
                          rho: float = 7.0) -> torch.Tensor:
    """n_steps + 1 times whose noise levels ς are uniform in ς^{1/ρ} from min(sigma_max, ς(T)) down to
    max(sigma_min, ς(sde.eps)) (None: the SDE's own end), float64; an end that is the SDE's is exactly T / eps."""
    n_steps = _checks.positive_int("n_steps", n_steps)
    rho = _checks.positive("rho", rho)
    top, bottom = (float(v) for v in noise_ratio(sde, torch.tensor([sde.T, sde.eps], dtype=torch.float64)))
    high = top if sigma_max is None else min(_checks.positive("sigma_max", sigma_max), top)
    low = bottom if sigma_min is None else max(_checks.positive("sigma_min", sigma_min), bottom)
    if not low < high:
        raise ValueError(f"noise levels: sigma_min ({low:.4g}) must be below sigma_max ({high:.4g}) within the "
                         f"SDE's range [{bottom:.4g}, {top:.4g}]")
    ts = time_of_noise(sde, noise_levels(high, low, n_steps + 1, rho), sde.eps, sde.T)
    if high == top:
        ts[0] = sde.T
    if low == bottom:
        ts[-1] = sde.eps
    return ts


def initial_std(sde: SDE, t0: float) -> float:
    """The scale of the state a grid starts from: the prior's at T, else √(α(t₀)² + σ(t₀)²), the standard
    deviation of x_{t₀} for data of unit variance (equal to the prior's for VP)."""
    if t0 >= sde.T:
        return sde.prior_std()
    alpha, std = sde.marginal_coeffs(torch.tensor([float(t0)], dtype=torch.float64))
    return math.sqrt(float(alpha[0]) ** 2 + float(std[0]) ** 2)


def respaced_indices(num_steps: int, spec: str | int) -> list[int]:
    """The step indices ADM's ``space_timesteps`` keeps of a ``num_steps``-step process, ascending.

    ``"ddimK"``: every stride-th index from 0 with the integer stride that keeps exactly K; an int or
    ``"K1,K2,…"``: the process cut into as many equal sections, Kᵢ indices spread evenly over section i
    (``"10"`` on 1000 steps: round(k·999/9), k = 0…9).
    """
    num_steps = _checks.positive_int("num_steps", num_steps)
    text = str(spec).strip()
    if text.startswith("ddim"):
        count = _respacing_count(text[4:], spec)
        for stride in range(1, num_steps):
            kept = list(range(0, num_steps, stride))
            if len(kept) == count:
                return kept
        raise ValueError(f"respacing {spec!r}: no integer stride keeps exactly {count} of {num_steps} steps")
    counts = [_respacing_count(part, spec) for part in text.split(",")]
    size, extra = divmod(num_steps, len(counts))
    kept, start = [], 0
    for i, count in enumerate(counts):
        section = size + (i < extra)
        if count > section:
            raise ValueError(f"respacing {spec!r}: cannot keep {count} steps of a section of {section}")
        stride, position = (section - 1) / (count - 1) if count > 1 else 1.0, 0.0
        for _ in range(count):  # accumulated as ADM does, so that rounding ties fall the same way
            kept.append(start + round(position))
            position += stride
        start += section
    return sorted(set(kept))


def _respacing_count(text: str, spec: str | int) -> int:
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"respacing {spec!r}: expected 'ddimK', an integer or comma-separated integers") from None
    if count < 1:
        raise ValueError(f"respacing {spec!r}: step counts must be >= 1")
    return count


def respaced_timesteps(sde: SDE, spec: str | int) -> torch.Tensor:
    """ADM's respaced grid as invsgm times, t = i/(N−1) for the kept indices i (``respaced_indices``), from
    the largest down to the smallest, float64; for a discrete-time SDE these are exactly its training steps."""
    kept = respaced_indices(sde.N, spec)
    if len(kept) < 2:
        raise ValueError(f"respacing {spec!r} keeps {len(kept)} step; a grid needs at least 2")
    return torch.tensor(kept[::-1], dtype=torch.float64) / (sde.N - 1)
