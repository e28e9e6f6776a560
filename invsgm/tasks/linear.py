"""Noisy linear inverse problems y = A x + σ_y ε: super-resolution, deblurring, denoising, noisy inpainting.

Replacement is wrong under noise; the likelihood p_t(y | x_t) = ∫ p(y | x₀) p(x₀ | x_t) dx₀ is
approximated through Tweedie's x̂₀(x_t) = E[x₀ | x_t]:

- ``pigdm`` (ΠGDM, Song et al. 2023): p(x₀ | x_t) ≈ N(x̂₀, r_t² I) with r_t² = v σ²/(α² v + σ²) the
  posterior variance under a N(0, v I) prior, so log p̃_t(y | x_t) = −½ ‖y − A x̂₀‖²_M⁻¹ with
  M = r_t² A Aᵀ + σ_y² I (the pseudo-inverse of A A ᵀ when σ_y = 0);
- ``dps`` (Chung et al. 2023): the step −ζ ∇ₓ ‖y − A x̂₀‖, i.e. log p̃ = −ζ ‖y − A x̂₀‖.

Both differentiate through the score network (one backward pass per evaluation).
"""
from __future__ import annotations

import torch

from .. import _checks
from ..operators import LinearOperator, Matrix
from ..sde import SDE
from .base import Task, tweedie_x0

GUIDANCE = ("pigdm", "dps")


class LinearGaussian(Task):
    """y = A x + σ_y ε, ε ~ N(0, I); A a ``LinearOperator`` or an (m, d) matrix (then x are vectors (B, d))."""

    needs_score_graph = True

    def __init__(self, operator: LinearOperator | torch.Tensor, sigma_y: float, guidance: str = "pigdm",
                 scale: float = 1.0, data_variance: float = 1.0):
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
        if self.guidance == "dps":
            return -self.scale * resid.flatten(1).norm(dim=1)
        alpha, std = sde.marginal_coeffs(t)
        r2 = self.data_variance * std.pow(2) / (alpha.pow(2) * self.data_variance + std.pow(2))
        # u = M⁻¹ r solved without a graph: −⟨r, u⟩ + ½⟨r̄, u⟩ has the value −½ rᵀM⁻¹r and the gradient −Jᵀu
        u = self.operator.gram_solve(resid.detach(), r2.to(x.dtype), self.sigma_y ** 2)
        quad = (resid * u).flatten(1).sum(1)
        return -self.scale * (quad - 0.5 * quad.detach())

    def exact_log_likelihood(self, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """log N(y; A x₀, σ_y² I) up to a constant; None when σ_y = 0 (a point mass)."""
        if self.sigma_y == 0:
            return None
        resid = y - self.operator(x0)
        return -0.5 * resid.flatten(1).pow(2).sum(1) / self.sigma_y ** 2

    def __repr__(self) -> str:
        return (f"LinearGaussian({self.operator!r}, sigma_y={self.sigma_y}, guidance={self.guidance!r}, "
                f"scale={self.scale})")
