"""Image files: atomic PNG writing (a temporary file, then rename, so no half-written output) and inpainting
masks read from images."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_open
from .operators import Mask
from .operators.base import _image_shape


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an (H, W) or (H, W, 3) uint8 array to ``path`` atomically; returns the path."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image must be a uint8 array of shape (H, W) or (H, W, 1|3|4), "
                         f"got {image.dtype} {image.shape}")
    with atomic_open(path, "wb") as f:
        Image.fromarray(image.squeeze(2) if image.ndim == 3 and image.shape[2] == 1 else image).save(f, format="PNG")
    return Path(path)


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
