"""Class-conditional generation with a noise-conditional classifier (Song et al., ICLR 2021, §5).

∇ₓ log p_t(x | y) = ∇ₓ log p_t(x) + w ∇ₓ log p_t(y | x), with p_t(y | x) a classifier trained on
x(t) at every noise level; w = 1 samples p(x | y), w > 1 sharpens it (classifier guidance).
"""
from __future__ import annotations

import torch

from .. import _checks
from ..models.classifier import TimeConditionalClassifier
from ..sde import SDE
from .base import Task


class ClassGuidance(Task):
    """Observation: integer class labels (B,). Adds scale · ∇ₓ log p_t(y | x) to the score."""

    def __init__(self, classifier: TimeConditionalClassifier, scale: float = 1.0,
                 x_shape: tuple[int, ...] | None = None):
        if not isinstance(classifier, TimeConditionalClassifier):
            raise ValueError(f"ClassGuidance needs a TimeConditionalClassifier, got {type(classifier).__name__}")
        self.classifier = classifier
        self.scale = _checks.non_negative("scale", scale)
        self.x_shape = None if x_shape is None else tuple(x_shape)

    @property
    def num_classes(self) -> int | None:
        """Number of classes of the classifier's network, when it says."""
        return getattr(self.classifier.net, "num_classes", None)

    def check_observation(self, y: torch.Tensor | int) -> torch.Tensor:
        y = torch.as_tensor(y)
        if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.numel() == 0:
            raise ValueError(f"ClassGuidance: the observation must be a 1-D integer tensor of class labels, got "
                             f"{y.dtype} of shape {tuple(y.shape)}")
        k = self.num_classes
        if k is not None and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"ClassGuidance: labels must lie in [0, {k - 1}], got values in "
                             f"[{y.min().item()}, {y.max().item()}]")
        return y.long()

    def log_likelihood(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, score: torch.Tensor,
                       sde: SDE) -> torch.Tensor:
        """scale · log p_t(y | x) from the classifier's logits."""
        return self.scale * self.classifier.log_prob(x, t, y.to(x.device))

    def exact_log_likelihood(self, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p_0(y | x₀): the classifier at t = 0."""
        with torch.no_grad():
            return self.classifier.log_prob(x0, 0.0, y.to(x0.device))

    def __repr__(self) -> str:
        return f"ClassGuidance(scale={self.scale})"
