"""Classifier guidance with a noise-conditional classifier (Song et al., ICLR 2021, §5).

∇ₓ log p_t(x | y) = ∇ₓ log p_t(x) + w ∇ₓ log p_t(y | x), with p_t(y | x) a classifier trained on x(t)
at every noise level; w = 1 samples p(x | y), w > 1 sharpens it.
"""
from __future__ import annotations

from .. import _checks
from ..measurement import ClassLabel, Measurement
from .base import Guidance


class Classifier(Guidance):
    """scale · log p_t(y | x_t) from the measurement's classifier."""

    def __init__(self, scale: float = 1.0):
        self.scale = _checks.non_negative("scale", scale)

    def check(self, measurement: Measurement) -> None:
        if not isinstance(measurement, ClassLabel):
            raise ValueError(f"Classifier guidance needs a ClassLabel measurement, got {measurement!r}")

    def log_likelihood(self, measurement, y, x, t, ev, sde):
        return self.scale * measurement.log_likelihood_t(x, t, y)

    def __repr__(self) -> str:
        return f"Classifier(scale={self.scale})"
