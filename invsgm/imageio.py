"""Image files: atomic PNG writing (a temporary file, then rename, so no half-written output)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_open


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an (H, W) or (H, W, 3) uint8 array to ``path`` atomically; returns the path."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image must be a uint8 array of shape (H, W) or (H, W, 1|3|4), "
                         f"got {image.dtype} {image.shape}")
    with atomic_open(path, "wb") as f:
        Image.fromarray(image.squeeze(2) if image.ndim == 3 and image.shape[2] == 1 else image).save(f, format="PNG")
    return Path(path)
