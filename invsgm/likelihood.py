"""Exact log-likelihoods of score-based models by the probability-flow ODE (Song et al., ICLR 2021, §4.3).

The probability-flow ODE dx/dt = f̃(x, t) = f(x, t) − ½ g(t)² ∇log p_t(x) is a continuous normalising flow
from p_eps to p_T, so by the instantaneous change of variables
    log p_eps(x(eps)) = log p_T(x(T)) + ∫_eps^T ∇·f̃(x(t), t) dt,
with p_T replaced by the SDE's Gaussian prior. The divergence is the exact trace of ∂f̃/∂x (small D) or the
Hutchinson–Skilling estimate εᵀ(∂f̃/∂x)ε with ε ~ Rademacher/N(0, I) held fixed through the whole solve.
Score functions must treat batch elements independently (one vector-Jacobian product serves the whole batch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import _checks
from .sampling.integrate import rk45
from .sde import SDE, ScoreFn

HUTCHINSON = ("rademacher", "gaussian", "exact")


@dataclass
class LikelihoodResult:
    """log p_eps(x) = prior_logp + delta per sample in nats; nfe drift evaluations; z = x(T) the latent code."""

    logp: torch.Tensor
    prior_logp: torch.Tensor
    delta: torch.Tensor
    nfe: int
    z: torch.Tensor


def draw_probes(shape: tuple[int, ...], n_probes: int, kind: str = "rademacher",
                generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """n_probes Hutchinson vectors of the given shape, E[εεᵀ] = I: Rademacher ±1 or N(0, I); shape (P, *shape)."""
    size = (_checks.positive_int("n_probes", n_probes), *shape)
    if kind == "rademacher":
        return torch.randint(0, 2, size, generator=generator, device=device).to(dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn(size, generator=generator, dtype=dtype, device=device)
    raise ValueError(f"kind must be 'rademacher' or 'gaussian', got {kind!r}")


def divergence(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               probes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(fn(x), ∇·fn(x)) per sample, detached: exact Σ_i ∂f_i/∂x_i (probes None, D backward passes) or the
    Hutchinson–Skilling mean over probes (P, *x.shape) of εᵀ(∂f/∂x)ε, one vector-Jacobian product each."""
    n = x[0].numel()
    count = n if probes is None else probes.shape[0]
    div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        f = fn(xr)
        if not f.requires_grad:  # the drift does not depend on x: zero divergence
            return f.detach(), div
        for i in range(count):
            if probes is None:
                v = torch.zeros_like(xr).flatten(1)
                v[:, i] = 1
                v = v.reshape(x.shape)
            else:
                v = probes[i]
            (vjp,) = torch.autograd.grad(f, xr, v, retain_graph=i < count - 1)
            div = div + (vjp * v).flatten(1).sum(1)
    return f.detach(), div if probes is None else div / count


def log_likelihood(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float | None = None,
                   hutchinson: str = "rademacher", n_probes: int = 1, rtol: float = 1e-5, atol: float = 1e-5,
                   generator: torch.Generator | None = None) -> LikelihoodResult:
    """log p_eps(x) in nats per sample: solve d/dt [x, Δ] = [f̃, ∇·f̃] from eps (default sde.eps) to T by RK45,
    then log p_eps(x) = log p_T(x(T)) + Δ(T). ``hutchinson``: 'rademacher', 'gaussian' (n_probes vectors drawn
    once from ``generator``) or 'exact' (D backward passes per evaluation; small D only)."""
    if not torch.is_tensor(x) or x.ndim < 2 or not x.is_floating_point() or x.numel() == 0:
        raise ValueError(f"x must be a non-empty floating-point tensor of shape (B, ...), got "
                         f"{type(x).__name__ if not torch.is_tensor(x) else (tuple(x.shape), x.dtype)}")
    if hutchinson not in HUTCHINSON:
        raise ValueError(f"hutchinson must be one of {HUTCHINSON}, got {hutchinson!r}")
    eps = sde.eps if eps is None else _checks.positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be smaller than T = {sde.T}, got {eps}")
    probes = None if hutchinson == "exact" else draw_probes(
        tuple(x.shape), n_probes, hutchinson, generator, x.dtype, x.device)

    def checked_score(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = score_fn(xt, t)
        if s.shape != xt.shape:
            raise ValueError(f"score_fn must return x's shape {tuple(xt.shape)}, got {tuple(s.shape)}")
        return s

    reverse = sde.reverse(checked_score, probability_flow=True)
    B, D = x.shape[0], x[0].numel()

    def ode(y: torch.Tensor, t: float) -> torch.Tensor:
        tt = torch.full((B,), min(t, sde.T), dtype=y.dtype, device=y.device)  # RK45 stages may overshoot T by an ulp
        f, div = divergence(lambda xt: reverse.sde(xt, tt)[0], y[:, :D].reshape(x.shape), probes)
        return torch.cat([f.reshape(B, D), div[:, None]], dim=1)

    with torch.no_grad():
        y0 = torch.cat([x.detach().reshape(B, D), x.new_zeros(B, 1)], dim=1)
        y, nfe = rk45(ode, y0, eps, sde.T, rtol=rtol, atol=atol)
    z, delta = y[:, :D].reshape(x.shape), y[:, D]
    prior_logp = sde.prior_logp(z)
    return LikelihoodResult(prior_logp + delta, prior_logp, delta, nfe, z)


def bits_per_dim(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """−log p_eps(x) / (D ln 2) per sample (B,) for continuous data; kwargs go to ``log_likelihood``."""
    return -log_likelihood(score_fn, sde, x, **kwargs).logp / (x[0].numel() * math.log(2))


def _check_images(images: torch.Tensor) -> torch.Tensor:
    """Return ``images`` if it is a non-empty (B, C, H, W) uint8 or integer tensor with values in 0..255."""
    if not torch.is_tensor(images) or images.ndim != 4 or images.numel() == 0:
        raise ValueError("images must be a non-empty (B, C, H, W) tensor, got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
    if images.is_floating_point() or images.is_complex() or images.dtype == torch.bool:
        raise ValueError(f"images must be uint8 (or integers in 0..255), got dtype {images.dtype}; "
                         "quantise [0, 1] floats first, e.g. (x * 255).round().to(torch.uint8)")
    if images.dtype != torch.uint8 and (images.min() < 0 or images.max() > 255):
        raise ValueError(f"images must hold values in 0..255, got [{images.min().item()}, {images.max().item()}]")
    return images


def dequantized_bits_per_dim(score_fn: ScoreFn, sde: SDE, images: torch.Tensor, *, centered: bool,
                             n_dequant: int = 1, generator: torch.Generator | None = None,
                             dtype: torch.dtype = torch.float32, **kwargs: Any) -> torch.Tensor:
    """Upper bound on bits/dim of 8-bit ``images`` k (B,): x = (k + u)/256 (or 2(k + u)/256 − 1 if ``centered``),
    u ~ U[0,1)^D, bpd = −log p_eps(x)/(D ln 2) − log2|dx/dk| = … + 8 (centered: + 7), averaged over n_dequant u.

    The average estimates the variational-dequantisation bound E_u[−log2 p(k + u)]/D ≥ −log2 P(k)/D ≥ 0 on the
    discrete data (P(k) = ∫ p over the bin); u and the probes come from ``generator``; kwargs: ``log_likelihood``'s.
    """
    images = _check_images(images)
    n_dequant = _checks.positive_int("n_dequant", n_dequant)
    D = images[0].numel()
    offset = math.log2(128.0 if centered else 256.0)  # −log2|dx/dk|, dx/dk = 2/256 or 1/256
    total = torch.zeros(images.shape[0], dtype=dtype, device=images.device)
    for _ in range(n_dequant):
        u = torch.rand(images.shape, generator=generator, dtype=dtype, device=images.device)
        x = (images.to(dtype) + u) / 256
        x = 2 * x - 1 if centered else x
        logp = log_likelihood(score_fn, sde, x, generator=generator, **kwargs).logp
        total = total + (-logp / (D * math.log(2)) + offset)
    return total / n_dequant
