"""Guidance terms ∇log p̃_t(y | x) and replacement steps; they compose over the parts of a ``Joint`` measurement."""
from __future__ import annotations

from ..measurement import ClassLabel, Joint, LinearMeasurement, Measurement
from .base import Composite, Guidance, Guided, GuidedScore, guided_evaluation
from .classifier import Classifier
from .consistency import Consistency
from .linear import DPS, JACOBIANS, PiGDM, Replacement


def default_guidance(measurement: Measurement) -> Guidance:
    """Classifier guidance for labels, replacement for noiseless partial isometries, ΠGDM otherwise."""
    if isinstance(measurement, Joint):
        return Composite([default_guidance(m) for m in measurement.parts])
    if isinstance(measurement, ClassLabel):
        return Classifier()
    if isinstance(measurement, LinearMeasurement) and measurement.sigma_y == 0 and \
            measurement.operator.partial_isometry:
        return Replacement()
    return PiGDM()


__all__ = ["Classifier", "Composite", "Consistency", "DPS", "Guidance", "Guided", "GuidedScore", "JACOBIANS", "PiGDM",
           "Replacement", "default_guidance", "guided_evaluation"]
