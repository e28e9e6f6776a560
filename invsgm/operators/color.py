"""Colorization: an orthonormal colour basis of RGB and the grey-scale operator (its first coordinate)."""
from __future__ import annotations

import math

import torch

from .base import SVD, LinearOperator, _image_shape, _safe_reciprocal

COLOR_BASIS = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]], dtype=torch.float64)
COLOR_BASIS = COLOR_BASIS / COLOR_BASIS.norm(dim=1, keepdim=True)
"""Orthonormal basis of RGB (rows): luminance (1,1,1)/√3, then (1,0,−1)/√2 and (1,−2,1)/√6."""


def _check_rgb(name: str, x: torch.Tensor) -> None:
    """Raise unless ``x`` has shape (B, 3, H, W)."""
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {got}")


def to_basis(x: torch.Tensor) -> torch.Tensor:
    """c = Q x per pixel: RGB (B, 3, H, W) to coordinates in ``COLOR_BASIS``."""
    _check_rgb("to_basis: x", x)
    return torch.einsum("ij,bjhw->bihw", COLOR_BASIS.to(x), x)


def from_basis(c: torch.Tensor) -> torch.Tensor:
    """x = Qᵀ c per pixel: coordinates in ``COLOR_BASIS`` (B, 3, H, W) back to RGB."""
    _check_rgb("from_basis: c", c)
    return torch.einsum("ji,bjhw->bihw", COLOR_BASIS.to(c), c)


class Grey(LinearOperator):
    """Colorization (Song et al., ICLR 2021): y = (R+G+B)/√3, the first coordinate in ``COLOR_BASIS``; A Aᵀ = I."""

    partial_isometry = True

    def __init__(self, in_shape: tuple[int, int, int]):
        C, H, W = self.in_shape = _image_shape("Grey in_shape", in_shape)
        if C != 3:
            raise ValueError(f"Grey: images must have 3 channels (RGB), got in_shape {self.in_shape}")
        self.out_shape = (1, H, W)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("c,bchw->bhw", COLOR_BASIS[0].to(x), x)[:, None]

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return COLOR_BASIS[0].to(y).reshape(1, 3, 1, 1) * y

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return v * _safe_reciprocal(r2 + s2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y = Aᵀ y = y/√3 in every channel."""
        return self.adjoint(y)

    def svd(self) -> SVD:
        """A = U diag(1) Vᵀ: Vt(x) = ``to_basis(x)`` flattened (all H·W luminance coordinates, then the two
        colour axes), s = 1 (H·W entries), U = flattening of y."""
        _, H, W = self.in_shape
        return SVD(s=torch.ones(H * W, dtype=torch.float64),
                   Vt=lambda x: to_basis(x).flatten(1), V=lambda c: from_basis(c.reshape(-1, 3, H, W)),
                   Ut=lambda y: y.flatten(1), U=lambda c: c.reshape(-1, 1, H, W))

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self._adjoint(y)

    def describe_file(self) -> str:
        _, h, w = self.file_shape
        return f"a {h}x{w} (HxW) grey image (one channel, or RGB with equal channels)"

    def _to_file(self, y: torch.Tensor) -> torch.Tensor:
        """The grey image (R+G+B)/3 = y/√3."""
        return y / math.sqrt(3.0)

    def _from_file(self, image: torch.Tensor) -> torch.Tensor:
        """y = √3 · grey."""
        return image * math.sqrt(3.0)

    def feasible_images(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per pixel, the RGB value in [0, 1]³ nearest x (Euclidean) with the observed grey: channel sum √3·y."""
        return project_grey(x, y * math.sqrt(3.0))


def project_grey(x: torch.Tensor, target_sum: torch.Tensor, iterations: int = 60) -> torch.Tensor:
    """Per pixel, the closest RGB value in [0, 1]³ to x (B, 3, H, W) whose channel sum is ``target_sum`` (B, 1, H, W),
    clamped to [0, 3].

    The Euclidean projection onto the box ∩ plane is clamp(x + λ, 0, 1) for the λ at which the sum is
    the target (monotone in λ): found by bisection in [−max x, 1 − min x].
    """
    lo = -x.amax(1, keepdim=True)
    hi = 1 - x.amin(1, keepdim=True)
    target = target_sum.clamp(0, 3)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        above = (x + mid).clamp(0, 1).sum(1, keepdim=True) > target
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return (x + (lo + hi) / 2).clamp(0, 1)
