"""The transform-domain data-consistency step of Song, Shen, Xing & Ermon (ICLR 2022) as a replacement term.

For an operator written A = P(Λ) T (``invsgm.operators.Decomposed``: MRI's Fourier transform and line mask,
CT's full-angle Radon transform and view selection), after every sampler update at time t the measured
coefficients of T x are moved a fraction λ of the way to a draw of A x_t given A x₀ = y,
ŷ_t = α(t) y + σ(t) A z:  x ← T⁻¹[λ P(Λ)ᵀ ŷ_t + (1 − λ) P(Λ)ᵀ P(Λ) T x + (I − P(Λ)ᵀ P(Λ)) T x].
λ = 1 replaces them (ICLR 2021's replacement carried into the transform domain); λ < 1 trusts a noisy y less.
"""
from __future__ import annotations

from .. import _checks
from ..measurement import LinearMeasurement, Measurement
from ..operators import Decomposed
from .base import Guidance
from .linear import noised_observation


class Consistency(Guidance):
    """The paper's λ-consistency step after every update (see module); the output gets it once more with y."""

    def __init__(self, lam: float = 1.0):
        lam = _checks.positive("lam", lam)
        if lam > 1:
            raise ValueError(f"lam must lie in (0, 1], got {lam!r}")
        self.lam = lam

    def check(self, measurement: Measurement) -> None:
        if not isinstance(measurement, LinearMeasurement) or not isinstance(measurement.operator, Decomposed):
            raise ValueError(f"the transform-domain consistency step needs an operator written A = P(Λ) T (MRI, "
                             f"Radon), got {measurement!r}")
        measurement.operator.check_decomposition()

    def project(self, measurement, y, x, t, sde, generator):
        op = measurement.operator
        return op.consistent(x, noised_observation(op, y, x, t, sde, generator), self.lam)

    def finalize(self, measurement, y, x):
        return measurement.operator.consistent(x, y, self.lam)

    def __repr__(self) -> str:
        return f"Consistency(lam={self.lam})"
