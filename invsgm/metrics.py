"""Image quality metrics: PSNR and SSIM (scikit-image) and LPIPS (the optional ``lpips`` package).

An image is a torch tensor (C, H, W) — or (1, C, H, W), or (H, W) for grey — or a NumPy array
(H, W, C) or (H, W), with values in [0, ``data_range``] (by default [0, 1]). Tensors are
channel-first, arrays channel-last, as each library writes them.

LPIPS (Zhang et al., CVPR 2018, AlexNet trunk, v0.1) is never downloaded: ``LPIPS`` checks that the
``lpips`` package imports and that torchvision's AlexNet weights are in the torch hub cache before it
builds the network, and raises ``LPIPSUnavailable`` saying what is missing otherwise.
"""
from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ALEXNET_WEIGHTS", "LPIPS", "LPIPSUnavailable", "alexnet_weights_path", "lpips_distance", "psnr", "ssim"]

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1 (= alexnet(pretrained=True))
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_WEIGHTS}"
SSIM_MIN_SIZE = 7  # scikit-image's default SSIM window is 7 × 7


def _as_hwc(image, name: str) -> np.ndarray:
    """An image as a float64 (H, W, C) array; tensors are read channel-first, arrays channel-last."""
    if torch.is_tensor(image):
        t = image.detach().to("cpu", torch.float64)
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3:
            raise ValueError(f"{name} must be a tensor (C, H, W), (1, C, H, W) or (H, W), "
                             f"got shape {tuple(image.shape)}")
        a = t.permute(1, 2, 0).numpy()
    else:
        a = np.asarray(image, dtype=np.float64)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3:
            raise ValueError(f"{name} must be an array (H, W, C) or (H, W), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _pair(x, ref) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_hwc(x, "x"), _as_hwc(ref, "ref")
    if a.shape != b.shape:
        raise ValueError(f"x and ref differ in shape: x is {_shape(x)} and ref is {_shape(ref)} "
                         f"(as H×W×C: {a.shape} and {b.shape})")
    return a, b


def _shape(image) -> tuple[int, ...]:
    return tuple(image.shape) if hasattr(image, "shape") else np.shape(image)


def _data_range(data_range: float) -> float:
    v = float(data_range)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"data_range must be a finite number > 0, got {data_range!r}")
    return v


def psnr(x, ref, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio 10·log10(data_range² / MSE) in dB, MSE over all pixels and channels.

    Identical images (MSE = 0) give ``math.inf``. Computed by ``skimage.metrics.peak_signal_noise_ratio``.
    """
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pair(x, ref)
    data_range = _data_range(data_range)
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(b, a, data_range=data_range))


def ssim(x, ref, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004) by ``skimage.metrics.structural_similarity``.

    scikit-image's defaults: a uniform 7 × 7 window, sample covariances, K1 = 0.01, K2 = 0.03; for
    several channels the mean of the per-channel SSIMs (``channel_axis``). 1 for identical images;
    symmetric in its arguments. Both sides must be ≥ 7 pixels (16 × 16 and 32 × 32 images are fine).
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(x, ref)
    data_range = _data_range(data_range)
    h, w = a.shape[:2]
    if min(h, w) < SSIM_MIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_MIN_SIZE}×{SSIM_MIN_SIZE} pixels "
                         f"(its window is {SSIM_MIN_SIZE}×{SSIM_MIN_SIZE}), got {h}×{w}")
    if a.shape[2] == 1:
        return float(structural_similarity(a[..., 0], b[..., 0], data_range=data_range))
    return float(structural_similarity(a, b, data_range=data_range, channel_axis=2))


# --------------------------------------------------------------------------- LPIPS (optional)

class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed on this machine: the message says what is missing and how to provide it."""


def alexnet_weights_path() -> Path:
    """Where torchvision looks for AlexNet's ImageNet weights: ``torch.hub.get_dir()/checkpoints/<ALEXNET_WEIGHTS>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS


class LPIPS:
    """LPIPS distance (AlexNet trunk, linear layers v0.1) between two images in [0, 1]; lower is closer.

    The network is built on the first call (or by ``load()``), never at construction, and never
    downloaded: a missing ``lpips`` package (or a torchvision that does not import) or missing AlexNet
    weights raise ``LPIPSUnavailable``. Grey images are repeated to three channels. Images whose
    shorter side is below ``min_size`` are both upsampled bilinearly to that shorter side (AlexNet's
    feature stack needs ≥ 31 pixels; 64 is the usual smallest LPIPS input), so 16 × 16 and 32 × 32
    images are compared at 64 × 64.
    """

    def __init__(self, device: str | torch.device = "cpu", min_size: int = 64):
        self.device = torch.device(device)
        self.min_size = int(min_size)
        if self.min_size < 31:
            raise ValueError(f"min_size must be >= 31 (AlexNet's feature stack needs 31 pixels), got {min_size!r}")
        self._net = None

    def load(self) -> "LPIPS":
        """Build the network now; raises ``LPIPSUnavailable`` if the package or the weights are missing."""
        if self._net is not None:
            return self
        try:
            import lpips
        except Exception as err:  # a torch/torchvision mismatch raises RuntimeError, not ImportError
            raise LPIPSUnavailable(
                "LPIPS needs the 'lpips' package and torchvision, which do not import here "
                f"({type(err).__name__}: {err}); install them with: pip install -e \".[vision]\" "
                "(a torchvision built for this torch version)") from err
        weights = alexnet_weights_path()
        if not weights.is_file():
            raise LPIPSUnavailable(
                f"LPIPS needs torchvision's AlexNet ImageNet weights, not found at {weights} (nothing is "
                f"downloaded); put the file {ALEXNET_WEIGHTS} there (from {ALEXNET_URL}), or point "
                "TORCH_HOME at a folder whose hub/checkpoints/ holds it")
        linear = Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "alex.pth"
        if not linear.is_file():
            raise LPIPSUnavailable(f"LPIPS needs its linear-layer weights {linear}, which ship with the 'lpips' "
                                   "package but are missing; reinstall it: pip install --force-reinstall lpips")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation warning for pretrained=True
            net = lpips.LPIPS(net="alex", version="0.1", verbose=False)
        self._net = net.eval().requires_grad_(False).to(self.device)
        return self

    def _batch(self, image, name: str) -> torch.Tensor:
        a = _as_hwc(image, name)
        t = torch.from_numpy(a).permute(2, 0, 1)[None].to(self.device, torch.float32)
        if t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1)
        if t.shape[1] != 3:
            raise ValueError(f"LPIPS compares grey or RGB images, {name} has {t.shape[1]} channels")
        h, w = t.shape[-2:]
        if min(h, w) < self.min_size:
            s = self.min_size / min(h, w)
            t = F.interpolate(t, size=(max(self.min_size, round(h * s)), max(self.min_size, round(w * s))),
                              mode="bilinear", align_corners=False)
        return t * 2 - 1  # lpips expects [-1, 1]

    def __call__(self, x, ref) -> float:
        """LPIPS distance between ``x`` and ``ref`` (images in [0, 1], same shape)."""
        _pair(x, ref)
        self.load()
        with torch.no_grad():
            return float(self._net(self._batch(x, "x"), self._batch(ref, "ref")).mean())


@functools.lru_cache(maxsize=1)
def _default_lpips() -> LPIPS:
    return LPIPS()


def lpips_distance(x, ref) -> float:
    """LPIPS distance of two images in [0, 1] with a shared CPU ``LPIPS`` (raises ``LPIPSUnavailable``)."""
    return _default_lpips()(x, ref)
