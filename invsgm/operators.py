"""Linear measurement operators y = A x on batches, for inverse problems (inpainting, super-resolution,
deblurring, colorization, compressed sensing).

Every operator has A (``forward``), Aᵀ (``adjoint``), the regularised Gram solve
(r²·A Aᵀ + s²·I)⁻¹ v (``gram_solve``, used by ΠGDM-style guidance and Gaussian posteriors), the
pseudo-inverse A⁺ and noisy observation A x + σ_y z. ``partial_isometry`` marks operators with
A Aᵀ = I on A's range (A selects orthonormal coordinates): only then is the replacement step
x ← x + Aᵀ(y_t − A x) of Song et al. (ICLR 2021) a projection.
"""
from __future__ import annotations

import abc
import os

import kornia
import numpy as np
import torch
from PIL import Image

from . import _checks


def _per_sample(value: torch.Tensor | float, ref: torch.Tensor, name: str) -> torch.Tensor:
    """Broadcast a float, 0-d or (B,) tensor to shape (B, 1, ..., 1) matching ``ref``'s rank, dtype, device."""
    v = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    if v.ndim == 1 and v.shape[0] == ref.shape[0]:
        return v.reshape(-1, *([1] * (ref.ndim - 1)))
    if v.ndim != 0:
        raise ValueError(f"{name} must be a float or have shape ({ref.shape[0]},), got shape {tuple(v.shape)}")
    return v


def _safe_reciprocal(denom: torch.Tensor) -> torch.Tensor:
    """1 / d where d > 0, else 0 (the pseudo-inverse of a non-negative diagonal)."""
    return torch.where(denom > 0, 1.0 / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(denom))


class LinearOperator(abc.ABC):
    """y = A x on batches: x of shape (B, *in_shape), y of shape (B, *out_shape)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    partial_isometry: bool = False  # A Aᵀ = I on A's range (orthonormal coordinate selection)
    cg_max_iter: int = 500  # iteration cap of the default conjugate-gradient gram_solve
    cg_rtol_eps: float = 100.0  # CG stops at ‖residual‖ ≤ cg_rtol_eps · eps(dtype) · ‖v‖ per sample

    @abc.abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x on a shape-checked batch."""

    @abc.abstractmethod
    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y on a shape-checked batch."""

    def _check(self, t: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
        """Raise a ``ValueError`` naming the operator unless ``t`` has shape (B, *shape)."""
        if not torch.is_tensor(t) or tuple(t.shape[1:]) != tuple(shape) or t.ndim != len(shape) + 1:
            got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"{type(self).__name__}: {what} must have shape (B, {', '.join(map(str, shape))}), "
                             f"got {got}")
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x."""
        return self._forward(self._check(x, self.in_shape, "x"))

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y."""
        return self._adjoint(self._check(y, self.out_shape, "y"))

    def gram_solve(self, v: torch.Tensor, r2: torch.Tensor | float, s2: torch.Tensor | float) -> torch.Tensor:
        """(r2·A Aᵀ + s2·I)⁻¹ v on the out space; r2, s2 floats or (B,) tensors (per sample)."""
        v = self._check(v, self.out_shape, "v")
        return self._gram_solve(v, _per_sample(r2, v, "r2"), _per_sample(s2, v, "s2"))

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """Batched conjugate gradients on M = r2·A Aᵀ + s2·I (symmetric positive semi-definite), from 0."""
        def matvec(p: torch.Tensor) -> torch.Tensor:
            return r2 * self._forward(self._adjoint(p)) + s2 * p

        def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * b).flatten(1).sum(1).reshape(-1, *([1] * (v.ndim - 1)))

        x = torch.zeros_like(v)
        r = v.clone()
        p = r.clone()
        rs = dot(r, r)
        tol2 = (self.cg_rtol_eps * torch.finfo(v.dtype).eps) ** 2 * rs
        for _ in range(self.cg_max_iter):
            active = rs > tol2
            if not bool(active.any()):
                break
            mp = matvec(p)
            pmp = dot(p, mp)
            alpha = torch.where(active & (pmp > 0), rs / torch.where(pmp > 0, pmp, torch.ones_like(pmp)),
                                torch.zeros_like(pmp))
            x = x + alpha * p
            r = r - alpha * mp
            rs_new = dot(r, r)
            beta = torch.where(active, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
            p = r + beta * p
            rs = torch.where(active, rs_new, rs)
        return x

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y = Aᵀ (A Aᵀ)⁺ y (by default through CG: exact for y in A's range or A Aᵀ invertible)."""
        y = self._check(y, self.out_shape, "y")
        return self._adjoint(self._gram_solve(y, _per_sample(1.0, y, "r2"), _per_sample(0.0, y, "s2")))

    def observe(self, x: torch.Tensor, sigma_y: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """A x + σ_y z with z ~ N(0, I) drawn from ``generator``."""
        sigma_y = _checks.non_negative("sigma_y", sigma_y)
        y = self.forward(x)
        if sigma_y == 0:
            return y
        z = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        return y + sigma_y * z

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        """A (B, C, H, W) picture of y for display."""
        return self._to_image(self._check(y, self.out_shape, "y"))

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        """Picture of a shape-checked y; measurements that are not images cannot be shown."""
        raise NotImplementedError(f"{type(self).__name__} measurements of shape {self.out_shape} are not images")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape})"


class Matrix(LinearOperator):
    """y = A x for vectors: A of shape (m, d), x of shape (B, d), y of shape (B, m).

    A is kept in float64; gram_solve and pinv are exact through the eigendecomposition of A Aᵀ
    and the SVD pseudo-inverse, computed once, and come back in the input's dtype and device.
    """

    def __init__(self, A: torch.Tensor):
        A = torch.as_tensor(A)
        if A.ndim != 2 or A.numel() == 0:
            raise ValueError(f"Matrix: A must be a non-empty 2-D tensor (m, d), got shape {tuple(A.shape)}")
        self.A = A.detach().to(torch.float64)
        m, d = self.A.shape
        self.in_shape, self.out_shape = (d,), (m,)
        eig, self._U = torch.linalg.eigh(self.A @ self.A.T)  # A Aᵀ = U diag(λ) Uᵀ
        cutoff = max(m, d) * torch.finfo(torch.float64).eps * eig.abs().max()
        self._eig = torch.where(eig > cutoff, eig, torch.zeros_like(eig))  # rank-deficient directions → 0
        self._pinv = torch.linalg.pinv(self.A)
        self.partial_isometry = bool(torch.allclose(self.A @ self.A.T @ self.A, self.A, atol=1e-10))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.A.to(x).T

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.A.to(y)

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        U = self._U.to(v)
        inv = _safe_reciprocal(r2 * self._eig.to(v) + s2)  # (B, m) or (m,)
        return ((v @ U) * inv) @ U.T

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y."""
        return self._check(y, self.out_shape, "y") @ self._pinv.to(y).T


class Identity(LinearOperator):
    """y = x (denoising); A Aᵀ = I."""

    partial_isometry = True

    def __init__(self, shape: tuple[int, ...]):
        self.in_shape = self.out_shape = tuple(_checks.positive_int("shape entry", s) for s in shape)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return v * _safe_reciprocal(r2 + s2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y = y."""
        return self._check(y, self.out_shape, "y")

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim != 4:
            return super()._to_image(y)
        return y


def _image_shape(name: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Check that ``shape`` is (C, H, W) of positive integers; return it as a tuple of ints."""
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"{name} must be an image shape (C, H, W), got {shape}")
    return tuple(_checks.positive_int(f"{name} entry", s) for s in shape)


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

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self._forward(y)


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


def mask_from_file(path: str | os.PathLike, shape: tuple[int, int, int]) -> Mask:
    """Mask read from an image file (nonzero/white = observed), which must be exactly H×W of ``shape`` (C, H, W)."""
    C, H, W = _image_shape("shape", shape)
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img if img.mode in ("1", "L", "I", "I;16", "F") else img.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"mask file {os.fspath(path)!r} cannot be read as an image: {e}") from e
    if arr.shape[:2] != (H, W):
        raise ValueError(f"mask file {os.fspath(path)!r} is {arr.shape[0]}x{arr.shape[1]} (HxW) but the images are "
                         f"{H}x{W}; masks are not resized")
    observed = arr != 0
    if observed.ndim == 3:
        observed = observed.any(axis=2)
    return Mask(torch.from_numpy(observed.copy())[None], channels=C)


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

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self._upsample(y)


class GaussianBlur(LinearOperator):
    """y = k ⋆ x, circular correlation with a normalised Gaussian kernel (kornia, periodic borders).

    A circular convolution is diagonal in Fourier: A = F⁻¹ diag(λ) F with λ the 2-D DFT of the
    flipped kernel centred at pixel (0, 0) (``frequency_response``, rfft2 layout), so A Aᵀ has
    eigenvalues |λ|² and ``gram_solve`` is exact; |λ| ≤ H·W·eps·max|λ| counts as 0 (pseudo-inverse).
    """

    def __init__(self, sigma: float, kernel_size: int, in_shape: tuple[int, int, int]):
        self.sigma = _checks.positive("sigma", sigma)
        k = self.kernel_size = _checks.positive_int("kernel_size", kernel_size)
        C, H, W = self.in_shape = self.out_shape = _image_shape("GaussianBlur in_shape", in_shape)
        if k % 2 == 0 or k > min(H, W):
            raise ValueError(f"GaussianBlur: kernel_size must be odd and at most the image size {H}x{W}, got {k}")
        self.kernel = kornia.filters.get_gaussian_kernel2d((k, k), (self.sigma, self.sigma), dtype=torch.float64)
        embedded = torch.zeros(H, W, dtype=torch.float64)
        embedded[:k, :k] = self.kernel[0].flip(-2, -1)
        embedded = embedded.roll((-(k // 2), -(k // 2)), dims=(0, 1))  # flipped kernel centred at (0, 0)
        self.frequency_response = torch.fft.rfft2(embedded)
        power = self.frequency_response.abs() ** 2
        cutoff = (H * W * torch.finfo(torch.float64).eps) ** 2 * power.max()
        self._power = torch.where(power > cutoff, power, torch.zeros_like(power))  # eigenvalues of A Aᵀ

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return kornia.filters.filter2d(x, self.kernel.to(x), border_type="circular")

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return kornia.filters.filter2d(y, self.kernel.flip(-2, -1).to(y), border_type="circular")

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        inv = _safe_reciprocal(r2 * self._power.to(device=v.device, dtype=v.dtype) + s2)
        return torch.fft.irfft2(torch.fft.rfft2(v) * inv, s=v.shape[-2:])

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return y


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

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self._adjoint(y)
