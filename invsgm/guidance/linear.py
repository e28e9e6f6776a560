"""Guidance for linear measurements y = A x + σ_y ε through Tweedie's x̂₀(x_t), and replacement.

- ``PiGDM`` (Song et al. 2023): p(x₀ | x_t) ≈ N(x̂₀, r_t² I), r_t² = v σ²/(α² v + σ²) (the posterior
  variance under a N(0, v I) prior), so log p̃_t(y | x_t) = −½ ‖y − A x̂₀‖²_M⁻¹, M = r_t² A Aᵀ + σ_y² I;
- ``DPS`` (Chung et al. 2023): log p̃_t = −ζ ‖y − A x̂₀‖;
- ``Replacement`` (Song et al. 2021): for noiseless A with A Aᵀ = I on its range, the known part of
  x_t is replaced by a draw of A x_t | A x₀ = y after every update.

ΠGDM and DPS take a weight scale·α(t)^power: x̂₀ = (x + σ² s)/α, so the network's Jacobian enters their
gradient divided by α(t) (≈ 150 at t = 1 for the VP SDE) and a learned network's Jacobian errors are
amplified there; a weight that vanishes at high noise (power 2, measured on the shipped photos model)
keeps guidance stable, power 0 is the papers' exact form. ``jacobian='gaussian'`` replaces ∂x̂₀/∂x_t by
c_t I, c_t = α v/(α² v + σ²), its value under the N(0, v I) prior: no backward pass. Both are exact for
a N(0, v I) prior at power 0.
"""
from __future__ import annotations

import torch

from .. import _checks
from ..measurement import LinearMeasurement, Measurement
from ..sde import SDE, _bcast
from .base import Guidance

JACOBIANS = ("network", "gaussian")


def _linear(measurement: Measurement, who: str) -> LinearMeasurement:
    if not isinstance(measurement, LinearMeasurement):
        raise ValueError(f"{who} guides linear measurements y = A x + σ_y ε, got {measurement!r}")
    return measurement


class _Tweedie(Guidance):
    """Shared parts of ΠGDM and DPS: the weight, the Jacobian choice, the noiseless final projection."""

    def __init__(self, scale: float = 1.0, power: float = 0.0, data_variance: float = 1.0,
                 jacobian: str = "network"):
        self.scale = _checks.non_negative("scale", scale)
        self.power = _checks.non_negative("power", power)
        self.data_variance = _checks.positive("data_variance", data_variance)
        if jacobian not in JACOBIANS:
            raise ValueError(f"jacobian must be one of {list(JACOBIANS)}, got {jacobian!r}")
        self.jacobian = jacobian
        self.needs_graph = jacobian == "network"

    def check(self, measurement: Measurement) -> None:
        _linear(measurement, type(self).__name__)

    def _residual(self, measurement: Measurement, y: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                  x0: torch.Tensor, sde: SDE) -> tuple[LinearMeasurement, torch.Tensor]:
        """(the measurement, r = y − A x̂₀) with x̂₀ carrying the gradient: the network's (through ``x0``'s graph)
        or c_t (x − x.detach()) added (``jacobian='gaussian'``)."""
        m = _linear(measurement, type(self).__name__)
        if self.jacobian == "gaussian":
            alpha, std = sde.marginal_coeffs(t)
            v = self.data_variance
            c = alpha * v / (alpha.pow(2) * v + std.pow(2))
            x0 = x0.detach() + _bcast(c, x) * (x - x.detach())
        return m, y - m.operator(x0)

    def _weight(self, t: torch.Tensor, sde: SDE) -> torch.Tensor:
        alpha, _ = sde.marginal_coeffs(t)
        return self.scale * alpha.pow(self.power)

    def finalize(self, measurement: Measurement, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Noiseless (σ_y = 0): x + A⁺(y − A x); else x unchanged."""
        m = _linear(measurement, type(self).__name__)
        return m.consistent(x, y) if m.sigma_y == 0 else x

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(scale={self.scale}, power={self.power}, data_variance={self.data_variance}, "
                f"jacobian={self.jacobian!r})")


class PiGDM(_Tweedie):
    """ΠGDM: weight · (−½ rᵀ M⁻¹ r), r = y − A x̂₀, M = r_t² A Aᵀ + σ_y² I (see module)."""

    def log_likelihood(self, measurement, y, x, t, ev, sde):
        m, resid = self._residual(measurement, y, x, t, ev.x0, sde)
        alpha, std = sde.marginal_coeffs(t)
        v = self.data_variance
        r2 = v * std.pow(2) / (alpha.pow(2) * v + std.pow(2))
        u = m.operator.gram_solve(resid.detach(), r2.to(x.dtype), m.sigma_y ** 2)  # M⁻¹ r, held constant
        quad = (resid * u).flatten(1).sum(1)
        # value −½ w rᵀM⁻¹r; gradient w Jᵀ Aᵀ M⁻¹ r (M⁻¹ r held constant, as ΠGDM's vector-Jacobian product)
        return -self._weight(t, sde) * (quad - 0.5 * quad.detach())


class DPS(_Tweedie):
    """DPS: weight · (−‖y − A x̂₀‖) (Chung et al. 2023, ζ = scale)."""

    def log_likelihood(self, measurement, y, x, t, ev, sde):
        _, resid = self._residual(measurement, y, x, t, ev.x0, sde)
        return -self._weight(t, sde) * resid.flatten(1).norm(dim=1)


def noised_observation(op, y: torch.Tensor, x: torch.Tensor, t: torch.Tensor, sde: SDE,
                       generator: torch.Generator | None) -> torch.Tensor:
    """A draw of A x_t given A x₀ = y: ŷ_t = α(t) y + σ(t) A z, z ~ N(0, I) shaped like x."""
    alpha, std = sde.marginal_coeffs(t)
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return _bcast(alpha, y) * y + _bcast(std, y) * op(z)


class Replacement(Guidance):
    """x ← x + Aᵀ(y_t − A x), y_t = α(t) y + σ(t) A z a draw of A x_t given A x₀ = y (noiseless, A Aᵀ = I)."""

    def check(self, measurement: Measurement) -> None:
        m = _linear(measurement, "Replacement")
        if not m.operator.partial_isometry:
            raise ValueError(f"Replacement needs A Aᵀ = I on A's range (a mask or an orthonormal coordinate "
                             f"selection); {m.operator!r} is not: use PiGDM or DPS guidance")
        if m.sigma_y > 0:
            raise ValueError(f"Replacement needs a noiseless measurement, got sigma_y = {m.sigma_y}: use PiGDM "
                             f"or DPS guidance")

    def project(self, measurement, y, x, t, sde, generator):
        op = measurement.operator
        return x + op.adjoint(noised_observation(op, y, x, t, sde, generator) - op(x))

    def finalize(self, measurement, y, x):
        """x + Aᵀ(y − A x): the output keeps the observed coordinates exactly."""
        op = measurement.operator
        return x + op.adjoint(y - op(x))

    def __repr__(self) -> str:
        return "Replacement()"
