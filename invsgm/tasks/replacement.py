"""Noiseless observations of orthonormal coordinates, solved by replacement (Song et al., ICLR 2021).

When A selects orthonormal coordinates (A Aᵀ = I: a pixel mask, the grey axis of an orthonormal
colour basis), x(t) = α x(0) + σ z gives A x(t) ~ N(α y, σ² I) exactly. After each sampler update
the known coordinates are replaced by such a noised copy of y: x ← x + Aᵀ(α y + σ A z − A x).
"""
from __future__ import annotations

import torch

from ..operators import LinearOperator
from ..sde import SDE, _bcast
from .base import Task


class Replacement(Task):
    """Sample p(x | A x = y) for a partial isometry A: the known part is replaced at every step."""

    def __init__(self, operator: LinearOperator):
        if not isinstance(operator, LinearOperator):
            raise ValueError(f"Replacement needs a LinearOperator, got {type(operator).__name__}")
        if not operator.partial_isometry:
            raise ValueError(f"Replacement needs A Aᵀ = I on A's range (a mask or an orthonormal coordinate "
                             f"selection); {operator!r} is not: use LinearGaussian with guidance 'pigdm' or 'dps'")
        self.operator = operator
        self.x_shape = tuple(operator.in_shape)

    def check_observation(self, y: torch.Tensor) -> torch.Tensor:
        y = super().check_observation(y)
        if tuple(y.shape[1:]) != tuple(self.operator.out_shape):
            raise ValueError(f"{type(self).__name__}: the observation must have shape (B, "
                             f"{', '.join(map(str, self.operator.out_shape))}), got {tuple(y.shape)}")
        return y

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The noiseless observation y = A x."""
        return self.operator(x)

    def project(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, sde: SDE,
                generator: torch.Generator | None) -> torch.Tensor:
        """x ← x + Aᵀ(y_t − A x) with y_t = α(t) y + σ(t) A z, a draw of A x(t) given A x(0) = y."""
        alpha, std = sde.marginal_coeffs(t)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        y_t = _bcast(alpha, y) * y + _bcast(std, y) * self.operator(z)
        return x + self.operator.adjoint(y_t - self.operator(x))

    def finalize(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + Aᵀ(y − A x): the output keeps the observed coordinates exactly."""
        return x + self.operator.adjoint(y - self.operator(x))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.operator!r})"
