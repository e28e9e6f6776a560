"""Noisy linear inverse problems y = A x + σ_y ε: super-resolution, deblurring, denoising, noisy inpainting.

Replacement is wrong under noise; the likelihood p_t(y | x_t) = ∫ p(y | x₀) p(x₀ | x_t) dx₀ is
approximated through Tweedie's x̂₀(x_t) = E[x₀ | x_t]:

- ``pigdm`` (ΠGDM, Song et al. 2023): p(x₀ | x_t) ≈ N(x̂₀, r_t² I) with r_t² = v σ²/(α² v + σ²) the
  posterior variance under a N(0, v I) prior, so log p̃_t(y | x_t) = −½ ‖y − A x̂₀‖²_M⁻¹ with
  M = r_t² A Aᵀ + σ_y² I (the pseudo-inverse of A A ᵀ when σ_y = 0);
- ``dps`` (Chung et al. 2023): the step −ζ ∇ₓ ‖y − A x̂₀‖, i.e. log p̃ = −ζ ‖y − A x̂₀‖.

Both differentiate through the score network (one backward pass per evaluation), or, with
``jacobian='gaussian'``, take ∂x̂₀/∂x_t = c_t I with c_t = α v/(α² v + σ²), its value under the same
N(0, v I) prior that gives r_t²: no backward pass, and no reliance on the network's Jacobian, which
is poor where x̂₀ is poor (t near 1). For a N(0, v I) prior both are exact. With
``alpha_weight`` the term is multiplied by α(t), as ΠGDM's algorithm scales its guidance by √ᾱ_t:
near t = 1, ∂x̂₀/∂x_t = (I + σ² ∂s/∂x)/α relies on a cancellation that a learned network only
approximates, and the 1/α(t) factor (≈150 for VP at t = 1) would amplify its error.
"""
from __future__ import annotations

import torch

from .. import _checks
from ..operators import LinearOperator, Matrix
from ..sde import SDE, _bcast
from .base import Task, tweedie_x0

GUIDANCE = ("pigdm", "dps")
JACOBIANS = ("network", "gaussian")


class LinearGaussian(Task):
    """y = A x + σ_y ε, ε ~ N(0, I); A a ``LinearOperator`` or an (m, d) matrix (then x are vectors (B, d))."""

    def __init__(self, operator: LinearOperator | torch.Tensor, sigma_y: float, guidance: str = "pigdm",
                 scale: float = 1.0, data_variance: float = 1.0, alpha_weight: bool = False,
                 jacobian: str = "network"):
        if torch.is_tensor(operator):
            operator = Matrix(operator)
        if not isinstance(operator, LinearOperator):
            raise ValueError(f"LinearGaussian needs a LinearOperator or a matrix, got {type(operator).__name__}")
        if guidance not in GUIDANCE:
            raise ValueError(f"guidance must be one of {GUIDANCE}, got {guidance!r}")
        self.operator = operator
        self.sigma_y = _checks.non_negative("sigma_y", sigma_y)
        self.guidance = guidance
        self.scale = _checks.non_negative("scale", scale)
        self.data_variance = _checks.positive("data_variance", data_variance)
        if not isinstance(alpha_weight, bool):
            raise ValueError(f"alpha_weight must be true or false, got {alpha_weight!r}")
        self.alpha_weight = alpha_weight
        if jacobian not in JACOBIANS:
            raise ValueError(f"jacobian must be one of {JACOBIANS}, got {jacobian!r}")
        self.jacobian = jacobian
        self.needs_score_graph = jacobian == "network"
        self.x_shape = tuple(operator.in_shape)

    def check_observation(self, y: torch.Tensor) -> torch.Tensor:
        y = super().check_observation(y)
        if tuple(y.shape[1:]) != tuple(self.operator.out_shape):
            raise ValueError(f"LinearGaussian: the observation must have shape (B, "
                             f"{', '.join(map(str, self.operator.out_shape))}), got {tuple(y.shape)}")
        return y

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw of the observation y = A x + σ_y ε."""
        return self.operator.observe(x, self.sigma_y, generator)

    def log_likelihood(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, score: torch.Tensor,
                       sde: SDE) -> torch.Tensor:
        """scale · log p̃_t(y | x_t) by ΠGDM (−½ rᵀ M⁻¹ r) or DPS (−‖r‖), r = y − A x̂₀(x_t)."""
        resid = y - self.operator(tweedie_x0(x, t, score, sde))
        alpha, std = sde.marginal_coeffs(t)
        scale = self.scale * (alpha if self.alpha_weight else torch.ones_like(alpha))
        if self.guidance == "dps":
            norm = resid.flatten(1).norm(dim=1)
            value, direction = -scale * norm, resid / _bcast(norm.clamp_min(1e-12), resid)
        else:
            v = self.data_variance
            r2 = v * std.pow(2) / (alpha.pow(2) * v + std.pow(2))
            direction = self.operator.gram_solve(resid.detach(), r2.to(x.dtype), self.sigma_y ** 2)  # u = M⁻¹ r
            quad = (resid * direction).flatten(1).sum(1)
            value = -0.5 * scale * quad
        if self.jacobian == "gaussian":  # gradient scale · c_t Aᵀ u (ΠGDM) or scale · c_t Aᵀ r/‖r‖ (DPS)
            v = self.data_variance
            c = alpha * v / (alpha.pow(2) * v + std.pow(2))
            grad = _bcast(scale * c, x) * self.operator.adjoint(direction.detach())
            return value.detach() + (grad * (x - x.detach())).flatten(1).sum(1)
        if self.guidance == "dps":
            return value
        return value - 0.5 * scale * (quad - quad.detach())  # value −½ scale·rᵀu, gradient scale · Jᵀ Aᵀ u

    def finalize(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Noiseless (σ_y = 0): x + A⁺(y − A x), the nearest point with A x = y; else x unchanged."""
        if self.sigma_y > 0:
            return x
        return x + self.operator.pinv(y - self.operator(x))

    def exact_log_likelihood(self, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """log N(y; A x₀, σ_y² I) up to a constant; None when σ_y = 0 (a point mass)."""
        if self.sigma_y == 0:
            return None
        resid = y - self.operator(x0)
        return -0.5 * resid.flatten(1).pow(2).sum(1) / self.sigma_y ** 2

    def __repr__(self) -> str:
        return (f"LinearGaussian({self.operator!r}, sigma_y={self.sigma_y}, guidance={self.guidance!r}, "
                f"scale={self.scale}, alpha_weight={self.alpha_weight})")
