"""Classical baselines for the inverse problems: inpainting, colorization, super-resolution, deblurring, denoising.

Every function takes an image (C, H, W) or a batch (B, C, H, W) — a float tensor with values in
[0, 1] — and returns the same layout (batch in, batch out) on the input's device and dtype, clamped
to [0, 1]. The scikit-image ones run on the CPU in float64, one image (or one channel) at a time.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import positive, positive_int

__all__ = ["inpaint_biharmonic", "colorize_grey", "upsample_bicubic", "deconvolve_wiener",
           "deconvolve_richardson_lucy", "denoise_tv", "BASELINES", "baseline_for", "register_baseline"]


def _batch(x: torch.Tensor, name: str) -> tuple[np.ndarray, bool]:
    """(B, C, H, W) float64 NumPy copy of ``x`` and whether ``x`` was a single (C, H, W) image."""
    if not torch.is_tensor(x) or x.ndim not in (3, 4) or not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (C, H, W) or (B, C, H, W), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    single = x.ndim == 3
    a = x.detach().to("cpu", torch.float64).numpy()
    return (a[None] if single else a), single


def _back(a: np.ndarray, single: bool, like: torch.Tensor) -> torch.Tensor:
    out = torch.from_numpy(np.ascontiguousarray(a)).clamp_(0, 1).to(like.device, like.dtype)
    return out[0] if single else out


def _kernel(kernel: torch.Tensor) -> np.ndarray:
    k = torch.as_tensor(kernel).detach().to("cpu", torch.float64)
    if k.ndim == 3 and k.shape[0] == 1:  # e.g. operators.GaussianBlur.kernel, (1, k, k)
        k = k[0]
    if k.ndim != 2 or not torch.isfinite(k).all() or float(k.sum()) <= 0:
        raise ValueError(f"kernel must be a finite 2-D tensor with a positive sum, got shape {tuple(k.shape)}")
    return k.numpy()


# --------------------------------------------------------------------------- inpainting

def inpaint_biharmonic(observed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill the missing pixels by biharmonic interpolation (``skimage.restoration.inpaint_biharmonic``).

    ``mask`` is True (or 1) where a pixel is OBSERVED — the project's convention; scikit-image's mask
    is the opposite (True = missing) and is built here as ``~mask``. It broadcasts to ``observed``:
    (H, W), (1|C, H, W) or (1|B, 1|C, H, W). When the mask is the same for every channel of an image,
    the channels are solved together (``channel_axis``); otherwise channel by channel. Observed pixels
    are returned unchanged; the values of missing pixels in ``observed`` are ignored.
    """
    from skimage.restoration import inpaint_biharmonic as _inpaint

    x, single = _batch(observed, "observed")
    m = torch.as_tensor(mask).detach().to("cpu")
    try:
        m = torch.broadcast_to(m != 0, (observed.shape if not single else (1, *observed.shape)))
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to observed of shape "
                         f"{tuple(observed.shape)}") from err
    m = m.numpy()
    out = x.copy()
    for i in range(len(x)):
        if not m[i].any():
            raise ValueError(f"mask observes no pixel of image {i}: nothing to interpolate from")
        if m[i].all():
            continue
        if (m[i] == m[i][:1]).all():
            img = np.moveaxis(x[i], 0, -1)
            out[i] = np.moveaxis(_inpaint(img, ~m[i][0], channel_axis=-1), -1, 0)
        else:
            for c in range(x.shape[1]):
                if not m[i, c].any():
                    raise ValueError(f"mask observes no pixel of channel {c} of image {i}")
                out[i, c] = _inpaint(x[i, c], ~m[i, c])
        out[i][m[i]] = x[i][m[i]]
    return _back(out, single, observed)


# --------------------------------------------------------------------------- colorization

def colorize_grey(y_grey: torch.Tensor) -> torch.Tensor:
    """The grey RGB image of a colorization observation y = (R + G + B)/√3: every channel is y/√3 (the mean of RGB).

    ``y_grey`` is (1, H, W) or (B, 1, H, W); the result is (3, H, W) or (B, 3, H, W). It is the
    minimum-norm solution of y = A x (A sums the channels and divides by √3), exact for grey images.
    """
    if not torch.is_tensor(y_grey) or y_grey.ndim not in (3, 4) or y_grey.shape[-3] != 1:
        got = tuple(getattr(y_grey, "shape", ()))
        raise ValueError(f"y_grey must be a tensor (1, H, W) or (B, 1, H, W), got {got}")
    grey = (y_grey / math.sqrt(3.0)).clamp(0, 1)
    return grey.expand(*y_grey.shape[:-3], 3, *y_grey.shape[-2:]).contiguous()


# --------------------------------------------------------------------------- super-resolution

def upsample_bicubic(low: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic upsampling by an integer ``factor``: torch ``F.interpolate(mode='bicubic', align_corners=False)``
    (Keys' cubic, a = −0.75), clamped to [0, 1]. align_corners=False puts pixel centres where average
    pooling by ``factor`` puts them, so it inverts that downsampling's geometry."""
    factor = positive_int("factor", factor)
    if not torch.is_tensor(low) or low.ndim not in (3, 4) or not low.is_floating_point():
        got = tuple(getattr(low, "shape", ()))
        raise ValueError(f"low must be a float tensor (C, H, W) or (B, C, H, W), got {got}")
    batch = low if low.ndim == 4 else low[None]
    up = F.interpolate(batch, scale_factor=factor, mode="bicubic", align_corners=False).clamp_(0, 1)
    return up if low.ndim == 4 else up[0]


# --------------------------------------------------------------------------- deblurring

def deconvolve_wiener(blurred: torch.Tensor, kernel: torch.Tensor, balance: float = 0.01) -> torch.Tensor:
    """Wiener–Hunt deconvolution (``skimage.restoration.wiener``, Laplacian regulariser), channel by channel.

    ``kernel`` is the 2-D blur kernel (or (1, kh, kw)), centred at index (kh // 2, kw // 2) (odd sides
    recommended); it CONVOLVES — for a blur written as a correlation (kornia's ``filter2d``) pass the
    flipped kernel, which for a symmetric kernel such as a Gaussian is the kernel itself;
    ``balance`` trades data fit against smoothness (larger: smoother; 0.01 suits noise-free or
    slightly noisy 8-bit images, raise it for noisier data). The filter works in the Fourier
    domain, i.e. it inverts a CIRCULAR convolution — the same boundary model as the project's blur
    operator — so there are no boundary artefacts on circularly blurred images (an image blurred with
    zero or reflective padding shows ringing near the borders).
    """
    from skimage.restoration import wiener

    balance = positive("balance", balance)
    x, single = _batch(blurred, "blurred")
    k = _kernel(kernel)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = wiener(x[i, c], k, balance, clip=False)
    return _back(out, single, blurred)


def deconvolve_richardson_lucy(blurred: torch.Tensor, kernel: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """Richardson–Lucy deconvolution (``skimage.restoration.richardson_lucy``), channel by channel.

    ``kernel``: the non-negative blur kernel, as in ``deconvolve_wiener`` (convolution, centred); ``iterations``:
    more sharpen more and amplify noise more (30 by default). scikit-image convolves with zero
    padding, and RL's multiplicative updates carry the resulting border error inwards a little
    further every iteration; since the project's blur is CIRCULAR, each image is first extended
    periodically (``np.pad(mode='wrap')``) by min(side, max(64, 4 × kernel side)) pixels on every
    side — the whole image for images up to 64 pixels — and the result cropped back, so what remains
    of the zero-padding error sits in the discarded margin.
    """
    from skimage.restoration import richardson_lucy

    iterations = positive_int("iterations", iterations)
    x, single = _batch(blurred, "blurred")
    k = _kernel(kernel)
    if (k < 0).any():
        raise ValueError("kernel must be non-negative for Richardson–Lucy")
    h, w = x.shape[-2:]
    ph, pw = (min(n, max(64, 4 * m)) for n, m in ((h, k.shape[0]), (w, k.shape[1])))
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            padded = np.pad(np.clip(x[i, c], 0, None), ((ph, ph), (pw, pw)), mode="wrap")
            out[i, c] = richardson_lucy(padded, k, num_iter=iterations, clip=False)[ph:ph + h, pw:pw + w]
    return _back(out, single, blurred)


# --------------------------------------------------------------------------- denoising

def denoise_tv(noisy: torch.Tensor, weight: float = 0.1) -> torch.Tensor:
    """Total-variation denoising (``skimage.restoration.denoise_tv_chambolle``, channels jointly).

    ``weight``: larger removes more noise and detail; about the noise standard deviation (in [0, 1]
    units) is a reasonable start.
    """
    from skimage.restoration import denoise_tv_chambolle

    weight = positive("weight", weight)
    x, single = _batch(noisy, "noisy")
    out = np.stack([np.moveaxis(denoise_tv_chambolle(np.moveaxis(img, 0, -1), weight=weight, channel_axis=-1), -1, 0)
                    for img in x])
    return _back(out, single, noisy)


# --------------------------------------------------------------------------- which baseline fits an operator

Baseline = Callable[..., "torch.Tensor | None"]  # (operator, y_img (B, *out_shape), sigma_img) -> (B, *in_shape)


def _inpaint(op, y: torch.Tensor, sigma: float) -> torch.Tensor:
    return inpaint_biharmonic(op.to_image(y).clamp(0, 1), op.mask)


def _colorize(op, y: torch.Tensor, sigma: float) -> torch.Tensor:
    return colorize_grey(y.clamp(min=0))


def _upsample(op, y: torch.Tensor, sigma: float) -> torch.Tensor:
    return upsample_bicubic(y.clamp(0, 1), op.factor)


def _deconvolve(op, y: torch.Tensor, sigma: float) -> torch.Tensor:
    return deconvolve_wiener(y, op.kernel)


def _denoise(op, y: torch.Tensor, sigma: float) -> torch.Tensor | None:
    if y.ndim != 4:  # vectors: no image baseline
        return None
    return denoise_tv(y, weight=sigma) if sigma > 0 else y.clamp(0, 1)


def _table() -> dict[type, Baseline]:
    from .operators import MRI, AvgPool, GaussianBlur, Grey, Identity, Mask, Radon

    return {Mask: _inpaint, Grey: _colorize, AvgPool: _upsample, GaussianBlur: _deconvolve, Identity: _denoise,
            MRI: lambda op, y, s: mri_tv(op, y), Radon: lambda op, y, s: ct_tv(op, y)}


BASELINES: dict[type, Baseline] = _table()
"""Operator class → its classical method ``fn(operator, y_img, sigma_img)`` on the image-space observation:
mask → biharmonic inpainting, grey → the grey image, average pooling → bicubic, blur → Wiener, identity → TV
(weight σ_y), MRI and Radon → TV reconstruction with data consistency (``mri_tv``, ``ct_tv``). Subclasses inherit their base class's entry; ``register_baseline`` adds one."""


def register_baseline(operator_class: type, fn: Baseline) -> None:
    """Use ``fn(operator, y_img, sigma_img)`` as the classical baseline of ``operator_class`` (and its subclasses)."""
    BASELINES[operator_class] = fn


def baseline_for(operator, y_img: torch.Tensor, sigma_img: float = 0.0) -> torch.Tensor | None:
    """The classical method for ``operator`` on its observation ``y_img`` (image units, (B, *out_shape)) with noise
    level ``sigma_img`` (image units): images (B, *in_shape) in [0, 1] on the CPU, or None if no method fits."""
    y = y_img.detach().to("cpu", torch.float32)
    for cls in type(operator).__mro__:
        if cls in BASELINES:
            return BASELINES[cls](operator, y, float(sigma_img))
    return None


# --------------------------------------------------------------------------- MRI and CT (operators.MRI, .Radon)
#
# These take the operator and its measurement y (B, *out_shape) — k-space or a sinogram, not an image —
# and return images (B, *in_shape) in [0, 1] on y's device and dtype (a single y (*out_shape) gives one image).

def _measurement_batch(operator, y: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    shape = tuple(operator.out_shape)
    if not torch.is_tensor(y) or not y.is_floating_point() or tuple(y.shape[-len(shape):]) != shape \
            or y.ndim not in (len(shape), len(shape) + 1):
        raise ValueError(f"{name}: y must be a float tensor of shape {shape} or (B, {', '.join(map(str, shape))}), "
                         f"got {getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
    if not torch.isfinite(y).all():
        raise ValueError(f"{name}: y contains NaN or infinite values")
    single = y.ndim == len(shape)
    return (y[None] if single else y), single


def _operator_norm2(operator, like: torch.Tensor, iterations: int = 50) -> float:
    """‖A‖² (largest eigenvalue of AᵀA) by power iteration from a fixed start; 1 for partial isometries."""
    if getattr(operator, "partial_isometry", False):
        return 1.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, *operator.in_shape, generator=g, dtype=torch.float64).to(like.device)
    lam = 0.0
    for _ in range(iterations):
        x = x / x.norm()
        w = operator.adjoint(operator(x))
        lam = float((w * x).sum())
        x = w
    return lam


def tv_reconstruction(operator, y: torch.Tensor, weight: float = 0.01, iterations: int = 50,
                      x0: torch.Tensor | None = None) -> torch.Tensor:
    """TV-regularised least squares argmin_x ½‖A x − y‖² / L + weight·TV(x), L = ‖A‖² (power iteration; 1 for
    partial isometries), by FISTA: a gradient step of size 1 on the data term, then the TV proximal step
    ``skimage.restoration.denoise_tv_chambolle(weight=weight)`` per image and channel, ``iterations`` times,
    from ``x0`` (default Aᵀ y / L). Dividing by L makes ``weight`` mean the same for MRI and CT. Images
    (B, *in_shape) in [0, 1] (the result is clamped, the iterates are not); float64 on the CPU inside."""
    from skimage.restoration import denoise_tv_chambolle

    weight = positive("weight", weight)
    iterations = positive_int("iterations", iterations)
    yb, single = _measurement_batch(operator, y, "tv_reconstruction")
    y64 = yb.detach().to("cpu", torch.float64)
    L = _operator_norm2(operator, y64)
    x = operator.adjoint(y64) / L if x0 is None else torch.as_tensor(x0).detach().to("cpu", torch.float64).reshape(
        y64.shape[0], *operator.in_shape)
    z, t = x.clone(), 1.0
    for _ in range(iterations):
        g = z - operator.adjoint(operator(z) - y64) / L
        a = g.numpy()
        x_new = torch.from_numpy(np.stack([np.stack([denoise_tv_chambolle(ch, weight=weight) for ch in img])
                                           for img in a]))
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    out = x.clamp_(0, 1).to(y.device, y.dtype)
    return out[0] if single else out


def mri_zero_filled(operator, y: torch.Tensor) -> torch.Tensor:
    """The zero-filled inverse FFT magnitude |F⁻¹(M ⊙ y)| (``operators.MRI.zero_filled``), clamped to [0, 1]."""
    yb, single = _measurement_batch(operator, y, "mri_zero_filled")
    out = operator.zero_filled(yb).clamp(0, 1)
    return out[0] if single else out


def mri_tv(operator, y: torch.Tensor, weight: float = 0.01, iterations: int = 50) -> torch.Tensor:
    """TV reconstruction from k-space (``tv_reconstruction`` — FISTA with data consistency, not a TV
    denoising of the zero-filled image — started from the zero-filled image; ‖A‖ = 1)."""
    return tv_reconstruction(operator, y, weight, iterations, x0=mri_zero_filled(operator, y))


def ct_fbp(operator, y: torch.Tensor, filter_name: str = "ramp") -> torch.Tensor:
    """Filtered back-projection of the sinogram (``operators.Radon.fbp``: scikit-image's ``iradon``), clamped to
    [0, 1]."""
    yb, single = _measurement_batch(operator, y, "ct_fbp")
    out = operator.fbp(yb, filter_name=filter_name).clamp(0, 1)
    return out[0] if single else out


def ct_tv(operator, y: torch.Tensor, weight: float = 0.0002, iterations: int = 100) -> torch.Tensor:
    """TV reconstruction from a sinogram (``tv_reconstruction``, started from the FBP image)."""
    return tv_reconstruction(operator, y, weight, iterations, x0=ct_fbp(operator, y))


__all__ += ["tv_reconstruction", "mri_zero_filled", "mri_tv", "ct_fbp", "ct_tv"]
