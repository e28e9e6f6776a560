"""Argument checks shared by the library: each raises a ``ValueError`` that names the argument."""
from __future__ import annotations

import math

import torch


def positive(name: str, value: float) -> float:
    """Return ``float(value)`` if it is finite and > 0, else raise naming ``name``."""
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def non_negative(name: str, value: float) -> float:
    """Return ``float(value)`` if it is finite and >= 0, else raise naming ``name``."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def time_vector(t: torch.Tensor | float, x: torch.Tensor, name: str = "t") -> torch.Tensor:
    """Broadcast a time (float, 0-d or shape (B,)) to a (B,) tensor on x's device; check t ∈ [0, 1]."""
    if not torch.is_tensor(t):
        t = torch.tensor(float(t), dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    elif t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must be a scalar or have shape ({x.shape[0]},) to match x of shape "
            f"{tuple(x.shape)}, got shape {tuple(t.shape)}"
        )
    if t.device.type == "cpu" and t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")
    return t.to(device=x.device, dtype=x.dtype)


def same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise if the two tensors differ in shape, naming both."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}")
