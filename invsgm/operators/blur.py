"""Deblurring: circular Gaussian blur, diagonal in Fourier (and, the kernel being even, in Hartley)."""
from __future__ import annotations

import kornia
import torch

from .. import _checks
from .base import SVD, LinearOperator, _image_shape, _safe_reciprocal


def _hartley(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D Hartley transform over the last two axes: H x = (Re F − Im F) x / √(HW), H = Hᵀ = H⁻¹."""
    f = torch.fft.fft2(x, norm="ortho")
    return f.real - f.imag


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
        self.frequency_response = torch.fft.rfft2(self._embedded_kernel())
        power = self.frequency_response.abs() ** 2
        cutoff = (H * W * torch.finfo(torch.float64).eps) ** 2 * power.max()
        self._power = torch.where(power > cutoff, power, torch.zeros_like(power))  # eigenvalues of A Aᵀ

    def _embedded_kernel(self) -> torch.Tensor:
        """The flipped kernel embedded in an H×W image and centred at pixel (0, 0): A x = embedded ⊛ x (circular)."""
        k, (H, W) = self.kernel_size, self.in_shape[1:]
        embedded = torch.zeros(H, W, dtype=torch.float64)
        embedded[:k, :k] = self.kernel[0].to(torch.float64).flip(-2, -1)
        return embedded.roll((-(k // 2), -(k // 2)), dims=(0, 1))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return kornia.filters.filter2d(x, self.kernel.to(x), border_type="circular")

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return kornia.filters.filter2d(y, self.kernel.flip(-2, -1).to(y), border_type="circular")

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        inv = _safe_reciprocal(r2 * self._power.to(device=v.device, dtype=v.dtype) + s2)
        return torch.fft.irfft2(torch.fft.rfft2(v) * inv, s=v.shape[-2:])

    def svd(self) -> SVD:
        """A = H diag(λ) H = (H diag(sign λ)) diag(|λ|) H with H the orthonormal Hartley transform (per channel).

        λ = fft2 of the embedded kernel, real because the kernel is even (λ(−ω) = λ(ω)); s = |λ| over the
        full (C, H, W) grid flattened, Vt = V = H, Ut = sign(λ)·H, U = H∘sign(λ) (sign 0 taken as +1).
        Raises ``ValueError`` if ``kernel`` was replaced by one that is not even (λ not real).
        """
        C, H, W = self.in_shape
        lam = torch.fft.fft2(self._embedded_kernel())
        if lam.imag.abs().max() > H * W * torch.finfo(torch.float64).eps * lam.abs().max():
            raise ValueError("GaussianBlur: the kernel is not even (point-symmetric), so A has no real Hartley SVD")
        lam = lam.real
        sign = torch.where(lam < 0, -1.0, 1.0).to(torch.float64)

        def Ut(y: torch.Tensor) -> torch.Tensor:
            return (_hartley(y) * sign.to(y)).flatten(1)

        def U(c: torch.Tensor) -> torch.Tensor:
            return _hartley(c.reshape(-1, C, H, W) * sign.to(c))

        return SVD(s=lam.abs().flatten().repeat(C), Vt=lambda x: _hartley(x).flatten(1),
                   V=lambda c: _hartley(c.reshape(-1, C, H, W)), Ut=Ut, U=U)

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return y
