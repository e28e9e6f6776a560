"""Classical baselines: each beats the trivial answer by a clear PSNR margin on smooth images."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from invsgm import baselines
from invsgm.metrics import psnr

H = 32


def _grid(size: int = H) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.linspace(0, 1, size, dtype=torch.float64),
                          torch.linspace(0, 1, size, dtype=torch.float64), indexing="ij")


def _polynomial(size: int = H) -> torch.Tensor:
    """A smooth RGB image (3, size, size): low-order polynomials in [0.1, 0.9]."""
    y, x = _grid(size)
    return torch.stack([0.2 + 0.5 * x ** 2 + 0.2 * y, 0.3 + 0.4 * x * y, 0.8 - 0.5 * y ** 2 + 0.1 * x]).float()


def _periodic(size: int = H) -> torch.Tensor:
    """A smooth periodic RGB image (3, size, size) in [0.2, 0.8]."""
    y, x = _grid(size)
    return torch.stack([0.5 + 0.3 * torch.sin(2 * math.pi * x) * torch.cos(2 * math.pi * y),
                        0.5 + 0.3 * torch.cos(2 * math.pi * (x + y)),
                        0.5 + 0.2 * torch.sin(4 * math.pi * x)]).float()


def _gaussian_kernel(size: int = 7, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-(torch.arange(size, dtype=torch.float64) - size // 2) ** 2 / (2 * sigma ** 2))
    k = g[:, None] * g[None]
    return k / k.sum()


def _circular_blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Circular convolution of (..., H, W) images with a centred kernel, by the FFT."""
    kh, kw = k.shape
    embedded = torch.zeros(x.shape[-2:], dtype=torch.float64)
    embedded[:kh, :kw] = k
    embedded = embedded.roll((-(kh // 2), -(kw // 2)), dims=(0, 1))
    return torch.fft.ifft2(torch.fft.fft2(x.double()) * torch.fft.fft2(embedded)).real.to(x.dtype)


# --------------------------------------------------------------------------- inpainting

def test_biharmonic_restores_a_smooth_image_far_better_than_zero_holes():
    x = _polynomial()
    mask = torch.rand(1, H, H, generator=torch.Generator().manual_seed(0)) < 0.3  # 30 % observed
    observed = x * mask
    restored = baselines.inpaint_biharmonic(observed, mask)
    assert restored.shape == x.shape and restored.dtype == x.dtype
    assert psnr(restored, x) > 40 and psnr(restored, x) > psnr(observed, x) + 30
    keep = mask.expand_as(x)
    assert torch.equal(restored[keep], x[keep])  # observed pixels unchanged


def test_biharmonic_batch_and_per_channel_masks():
    x = torch.stack([_polynomial(), _polynomial().flip(-1)])
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 3, H, H, generator=g) < 0.4  # a different mask in every channel
    restored = baselines.inpaint_biharmonic(x * mask, mask)
    assert restored.shape == x.shape
    for i in range(2):
        assert psnr(restored[i], x[i]) > 35
    assert torch.equal(baselines.inpaint_biharmonic(x, torch.ones(H, H, dtype=torch.bool)), x)  # nothing missing


def test_biharmonic_rejects_empty_and_unbroadcastable_masks():
    x = _polynomial()
    with pytest.raises(ValueError, match="observes no pixel"):
        baselines.inpaint_biharmonic(x, torch.zeros(1, H, H, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        baselines.inpaint_biharmonic(x, torch.ones(1, H, H - 1, dtype=torch.bool))


# --------------------------------------------------------------------------- colorization

def test_grey_colorization_of_a_grey_image_is_exact():
    grey = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    x = grey.expand(-1, 3, -1, -1)
    y = x.sum(1, keepdim=True) / math.sqrt(3.0)  # the colorization observation
    out = baselines.colorize_grey(y)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)
    assert baselines.colorize_grey(y[0]).shape == (3, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        baselines.colorize_grey(x)


# --------------------------------------------------------------------------- super-resolution

def test_bicubic_upsampling_beats_nearest_on_a_smooth_image():
    x = _periodic()[None]
    low = F.avg_pool2d(x, 2)
    up = baselines.upsample_bicubic(low, 2)
    nearest = F.interpolate(low, scale_factor=2, mode="nearest")
    assert up.shape == x.shape and 0 <= up.min() and up.max() <= 1
    assert psnr(up[0], x[0]) > psnr(nearest[0], x[0]) + 8
    assert baselines.upsample_bicubic(low[0], 4).shape == (3, 4 * H // 2, 4 * H // 2)
    with pytest.raises(ValueError, match="factor"):
        baselines.upsample_bicubic(low, 0)


# --------------------------------------------------------------------------- deblurring

@pytest.mark.parametrize("deconvolve", [baselines.deconvolve_wiener, baselines.deconvolve_richardson_lucy])
def test_deconvolution_improves_on_the_blurred_image(deconvolve):
    x = _periodic()
    k = _gaussian_kernel()
    blurred = (_circular_blur(x, k) * 255).round() / 255  # as read back from an 8-bit PNG
    restored = deconvolve(blurred[None], k)  # a batch of one
    assert restored.shape == (1, *x.shape)
    before, after = psnr(blurred, x), psnr(restored[0], x)
    assert after > before + 8, (before, after)
    assert deconvolve(blurred, k.float()).shape == x.shape  # a single image, float32 kernel


def test_deconvolution_rejects_bad_kernels():
    x = _periodic()
    with pytest.raises(ValueError, match="kernel"):
        baselines.deconvolve_wiener(x, torch.ones(5))
    with pytest.raises(ValueError, match="non-negative"):
        baselines.deconvolve_richardson_lucy(x, torch.tensor([[0.0, -0.5, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="balance"):
        baselines.deconvolve_wiener(x, _gaussian_kernel(), balance=0)


# --------------------------------------------------------------------------- denoising

def test_tv_denoising_improves_a_noisy_smooth_image():
    x = _periodic()
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    denoised = baselines.denoise_tv(noisy, weight=0.1)
    assert denoised.shape == x.shape
    assert psnr(denoised, x) > psnr(noisy, x) + 5
