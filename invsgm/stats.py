"""Sample-based distances used to check samplers against exact distributions."""
from __future__ import annotations

import torch

from . import _checks


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """SW₂(a, b) = (E_θ W₂²(θᵀa, θᵀb))^½ over random unit directions θ, for equal-size sample sets.

    a, b: (n, ...) flattened to (n, D). One-dimensional W₂ is exact between sorted projections.
    """
    a, b = a.flatten(1).double(), b.flatten(1).double()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (n, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    n_projections = _checks.positive_int("n_projections", n_projections)
    theta = torch.randn(a.shape[1], n_projections, dtype=torch.float64, generator=generator)
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa, _ = (a @ theta).sort(dim=0)
    pb, _ = (b @ theta).sort(dim=0)
    return (pa - pb).pow(2).mean().sqrt().item()
