"""Super-resolution: k×k average pooling."""
from __future__ import annotations

import torch

from .. import _checks
from .base import SVD, LinearOperator, _image_shape, _safe_reciprocal


def _helmert(n: int) -> torch.Tensor:
    """The n×n Helmert matrix (float64): orthonormal rows, row 0 = 1/√n, row j = (1, …, 1, −j, 0, …)/√(j(j+1))."""
    Q = torch.zeros(n, n, dtype=torch.float64)
    Q[0] = n ** -0.5
    for j in range(1, n):
        Q[j, :j] = 1.0
        Q[j, j] = -j
        Q[j] /= (j * (j + 1)) ** 0.5
    return Q


class AvgPool(LinearOperator):
    """Super-resolution ×k: y = k×k average pooling of x; Aᵀ = nearest upsampling / k², A Aᵀ = I / k²."""

    def __init__(self, factor: int, in_shape: tuple[int, int, int]):
        self.factor = k = _checks.positive_int("factor", factor)
        C, H, W = self.in_shape = _image_shape("AvgPool in_shape", in_shape)
        if H % k or W % k:
            raise ValueError(f"AvgPool: image size {H}x{W} is not divisible by the factor {k}")
        self.out_shape = (C, H // k, W // k)
        self.partial_isometry = k == 1

    def _upsample(self, y: torch.Tensor) -> torch.Tensor:
        """Nearest upsampling by k (each value copied to its k×k block)."""
        return y.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, self.factor)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._upsample(y) / self.factor ** 2

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return v * _safe_reciprocal(r2 / self.factor ** 2 + s2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y = nearest upsampling of y."""
        return self._upsample(self._check(y, self.out_shape, "y"))

    def svd(self) -> SVD:
        """A = U diag(1/k) Vᵀ: per k×k block the Helmert basis Q (row 0 = 1ᵀ/k), U = flattening of y.

        Vt(x) = [c₀ flattened as y (m entries), then the other k²−1 coordinates ordered (C, H/k, W/k, j)]
        with c = Q · block, so the first m coordinates are the block sums / k and s = 1/k (m entries).
        """
        k = self.factor
        C, h, w = self.out_shape
        Q = _helmert(k * k)

        def Vt(x: torch.Tensor) -> torch.Tensor:
            blocks = x.reshape(-1, C, h, k, w, k).permute(0, 1, 2, 4, 3, 5).reshape(-1, C, h, w, k * k)
            c = blocks @ Q.to(x).T
            return torch.cat([c[..., 0].flatten(1), c[..., 1:].flatten(1)], dim=1)

        def V(c: torch.Tensor) -> torch.Tensor:
            B, m = c.shape[0], C * h * w
            coords = torch.cat([c[:, :m].reshape(B, C, h, w, 1), c[:, m:].reshape(B, C, h, w, k * k - 1)], dim=-1)
            blocks = (coords @ Q.to(c)).reshape(B, C, h, w, k, k)
            return blocks.permute(0, 1, 2, 4, 3, 5).reshape(B, C, h * k, w * k)

        return SVD(s=torch.full((C * h * w,), 1.0 / k, dtype=torch.float64), Vt=Vt, V=V,
                   Ut=lambda y: y.flatten(1), U=lambda c: c.reshape(-1, C, h, w))

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self._upsample(y)

    def describe_file(self) -> str:
        _, h, w = self.file_shape
        _, H, W = self.in_shape
        return (f"a {h}x{w} (HxW) image (x{self.factor} super-resolution: the size times {self.factor} must be the "
                f"model's {H}x{W})")
