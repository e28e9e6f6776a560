"""Inpainting masks: A = diag(m), and constructors of m (a box, random pixels)."""
from __future__ import annotations

import torch

from .. import _checks
from .base import SVD, LinearOperator, _flatten_svd, _image_shape, _safe_reciprocal


class Mask(LinearOperator):
    """A = diag(m): y = m ⊙ x in the full image space (zeros at unobserved pixels); A Aᵀ = A.

    ``mask`` is a bool tensor of shape (1 or C, H, W), True where a pixel is observed; a one-channel
    mask is shared by all ``channels`` (default: the mask's own channel count).
    """

    partial_isometry = True

    def __init__(self, mask: torch.Tensor, channels: int | None = None):
        if not torch.is_tensor(mask) or mask.dtype != torch.bool or mask.ndim != 3:
            got = f"{mask.dtype} tensor of shape {tuple(mask.shape)}" if torch.is_tensor(mask) else type(mask).__name__
            raise ValueError(f"Mask: mask must be a bool tensor of shape (1 or C, H, W), got {got}")
        C = mask.shape[0] if channels is None else _checks.positive_int("channels", channels)
        if mask.shape[0] not in (1, C):
            raise ValueError(f"Mask: a mask with {mask.shape[0]} channels cannot serve {C} channels")
        self.mask = mask.detach().cpu()
        self.in_shape = self.out_shape = _image_shape("Mask shape", (C, *mask.shape[1:]))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(device=x.device, dtype=x.dtype)

    _adjoint = _forward

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return v * _safe_reciprocal(r2 * self.mask.to(device=v.device, dtype=v.dtype) + s2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y = m ⊙ y."""
        return self._forward(self._check(y, self.out_shape, "y"))

    def svd(self) -> SVD:
        """diag(m) = U diag(m) Vᵀ with U = V = flattening, s = m over (C, H, W) flattened (0 at missing pixels)."""
        s = self.mask.expand(self.in_shape).flatten().to(torch.float64)
        return _flatten_svd(s, self.in_shape, self.out_shape)

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self._forward(y)

    def _from_file(self, image: torch.Tensor) -> torch.Tensor:
        """y = m ⊙ image: whatever the file holds at missing pixels is not observed."""
        return self._forward(image)

    def observed_pixels(self) -> torch.Tensor | None:
        """The mask (1, H, W) when it is the same for every channel (the file's alpha channel), else None."""
        return self.mask if self.mask.shape[0] == 1 else None

    def with_mask(self, observed: torch.Tensor) -> "Mask":
        """A mask observing the pixels ``observed`` ((1, H, W) bool) in every channel; it replaces this one."""
        observed = torch.as_tensor(observed)
        if observed.dtype != torch.bool or observed.ndim != 3 or observed.shape[0] != 1 \
                or tuple(observed.shape[1:]) != tuple(self.in_shape[1:]):
            raise ValueError(f"Mask.with_mask: expected a bool mask of shape (1, {self.in_shape[1]}, "
                             f"{self.in_shape[2]}), got {observed.dtype} {tuple(observed.shape)}")
        if torch.equal(observed.cpu(), self.mask):
            return self
        return Mask(observed, channels=self.in_shape[0])


def box_mask(shape: tuple[int, int, int], top: int, left: int, height: int, width: int) -> Mask:
    """Mask of images of ``shape`` (C, H, W) whose MISSING region is the box [top, top+height) × [left, left+width)."""
    C, H, W = _image_shape("shape", shape)
    height, width = _checks.positive_int("height", height), _checks.positive_int("width", width)
    if not (0 <= top and top + height <= H and 0 <= left and left + width <= W):
        raise ValueError(f"box_mask: box top={top}, left={left}, height={height}, width={width} "
                         f"does not fit in an image of size {H}x{W}")
    mask = torch.ones(1, H, W, dtype=torch.bool)
    mask[:, top:top + height, left:left + width] = False
    return Mask(mask, channels=C)


def random_mask(shape: tuple[int, int, int], missing: float, generator: torch.Generator | None = None) -> Mask:
    """Mask of images of ``shape`` (C, H, W): each pixel missing with probability ``missing``, in all channels."""
    C, H, W = _image_shape("shape", shape)
    missing = float(missing)
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"random_mask: missing must lie in [0, 1), got {missing!r}")
    mask = torch.rand(1, H, W, generator=generator, dtype=torch.float64) >= missing
    return Mask(mask, channels=C)
