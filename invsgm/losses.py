"""Score-matching objectives: continuous-time denoising score matching and sliced score matching.

DSM (Song et al., ICLR 2021, eq. 7): t ~ U(ε, T), z ~ N(0, I), x_t = α(t) x0 + σ(t) z and
    L(θ) = E[λ(t) ‖s_θ(x_t, t) + z/σ(t)‖²],
with λ = σ² ('paper') or λ = g² ('likelihood', Song et al. 2021, "Maximum likelihood training of
score-based diffusion models"). SSM (Song et al., UAI 2019): E_x E_v[vᵀ∇ₓ(vᵀs(x)) + ½(vᵀs(x))²].
"""
from __future__ import annotations

from typing import Callable

import torch

from . import _checks
from .sde import SDE, _bcast

ScoreFn = Callable[..., torch.Tensor]

WEIGHTINGS = ("paper", "likelihood")
PROJECTIONS = ("rademacher", "gaussian")


def _batch(name: str, x: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(x) or x.ndim < 2 or x.shape[0] < 1 or not x.is_floating_point():
        kind = f"shape {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a floating-point tensor of shape (B, ...) with B >= 1, got {kind}")
    return x


def dsm_losses(
    model: ScoreFn, sde: SDE, x0: torch.Tensor, *, weighting: str = "paper", eps: float | None = None,
    generator: torch.Generator | None = None, reduce_mean: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample DSM losses λ(t)‖s(x_t, t) + z/σ‖² (shape (B,)) and the times t drawn (B,).

    t ~ U(eps, T) with eps defaulting to ``sde.eps``; the squared norm is summed over the dimensions
    of a sample, or averaged if ``reduce_mean``.
    """
    x0 = _batch("x0", x0)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    eps = sde.eps if eps is None else _checks.positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be smaller than T = {sde.T}, got {eps}")
    gdev = generator.device if generator is not None else x0.device
    t = eps + (sde.T - eps) * torch.rand(x0.shape[0], generator=generator, device=gdev, dtype=x0.dtype).to(x0.device)
    z = torch.randn(x0.shape, generator=generator, device=gdev, dtype=x0.dtype).to(x0.device)
    alpha, std = sde.marginal_coeffs(t)
    x_t = _bcast(alpha, x0) * x0 + _bcast(std, x0) * z
    score = model(x_t, t)
    if weighting == "paper":
        sq = (score * _bcast(std, x0) + z).pow(2)  # σ²‖s + z/σ‖² = ‖σ s + z‖²
        weight = torch.ones_like(t)
    else:
        sq = (score + z / _bcast(std, x0)).pow(2)
        weight = sde.diffusion(t).pow(2)
    per_sample = sq.flatten(1).mean(1) if reduce_mean else sq.flatten(1).sum(1)
    return weight * per_sample, t


def dsm_loss(
    model: ScoreFn, sde: SDE, x0: torch.Tensor, *, weighting: str = "paper", eps: float | None = None,
    generator: torch.Generator | None = None, reduce_mean: bool = False,
) -> torch.Tensor:
    """The DSM objective E[λ(t)‖s(x_t, t) + z/σ(t)‖²], a scalar averaged over the batch (see ``dsm_losses``)."""
    losses, _ = dsm_losses(model, sde, x0, weighting=weighting, eps=eps, generator=generator,
                           reduce_mean=reduce_mean)
    return losses.mean()


def sliced_score_matching_losses(
    model_or_fn: ScoreFn, x: torch.Tensor, *, n_projections: int = 1, t: torch.Tensor | float | None = None,
    generator: torch.Generator | None = None, variance_reduction: bool = True, projection: str = "rademacher",
) -> torch.Tensor:
    """Per-sample SSM losses (B,), each averaged over ``n_projections`` directions v:

    vᵀ∇ₓ(vᵀs(x)) + ½(vᵀs(x))², or with ``variance_reduction`` (SSM-VR) vᵀ∇ₓ(vᵀs(x)) + ½‖s(x)‖².
    The score is ``model_or_fn(x)``, or ``model_or_fn(x, t)`` when ``t`` is given.
    Since E[vvᵀ] = I, both estimate tr ∇ₓs + ½‖s‖², i.e. ½E‖s − ∇log p‖² − ½E‖∇log p‖².
    """
    x = _batch("x", x)
    n_projections = _checks.positive_int("n_projections", n_projections)
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    B = x.shape[0]
    xr = x.repeat(n_projections, *([1] * (x.ndim - 1)))  # (n B, ...), projection-major
    if not xr.requires_grad:
        xr.requires_grad_(True)
    gdev = generator.device if generator is not None else x.device
    v = torch.randn(xr.shape, generator=generator, device=gdev, dtype=x.dtype).to(x.device)
    if projection == "rademacher":
        v = v.sign()
    if t is None:
        score = model_or_fn(xr)
    else:
        score = model_or_fn(xr, _checks.time_vector(t, x).repeat(n_projections))
    _checks.same_shape("score", score, "x (repeated per projection)", xr)
    sv = (score * v).flatten(1).sum(1)
    (grad_sv,) = torch.autograd.grad(sv.sum(), xr, create_graph=True)
    trace_term = (grad_sv * v).flatten(1).sum(1)
    norm_term = 0.5 * (score.flatten(1).pow(2).sum(1) if variance_reduction else sv.pow(2))
    return (trace_term + norm_term).reshape(n_projections, B).mean(0)


def sliced_score_matching_loss(
    model_or_fn: ScoreFn, x: torch.Tensor, *, n_projections: int = 1, t: torch.Tensor | float | None = None,
    generator: torch.Generator | None = None, variance_reduction: bool = True, projection: str = "rademacher",
) -> torch.Tensor:
    """The SSM (or SSM-VR) objective averaged over the batch, a scalar; differentiable in the model."""
    return sliced_score_matching_losses(
        model_or_fn, x, n_projections=n_projections, t=t, generator=generator,
        variance_reduction=variance_reduction, projection=projection,
    ).mean()
