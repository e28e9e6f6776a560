"""Task plugins: how an observation conditions an unconditional score model (see ``base.Task``)."""
from .base import Composite, GuidedScore, Task, log_likelihood_and_score, tweedie_x0
from .guidance import ClassGuidance
from .linear import LinearGaussian
from .replacement import Replacement

__all__ = ["Task", "Composite", "GuidedScore", "log_likelihood_and_score", "tweedie_x0", "ClassGuidance",
           "LinearGaussian", "Replacement"]
