"""Procedural CT/MRI test data: random Shepp–Logan-like ellipse phantoms, and the Shepp–Logan phantom itself.

``phantoms(n, size, seed, split)`` draws each image from its own stream, NumPy's PCG64 seeded with
(split tag, seed, index): image i is the same whatever n is, the same on every machine, and the
"test" split (a fixed stream, 100 images by default) never shares a stream with "train" (any seed).
An image is, in coordinates [−1, 1]² (row down, column right), the sum of
- a "skull": an ellipse of intensity 1 (semi-axes 0.60–0.76 across, 0.76–0.90 down, centre within
  ±0.04, tilted up to ±10°) minus 0.8 on the same ellipse shrunk by 0.91–0.95 (the brain, 0.2);
- K ∈ {5, …, 12} inner ellipses inside the brain: semi-axes 0.04–0.32 of the brain's (times a random
  aspect), any tilt, centres drawn inside the brain's inner 70 %, additive intensities uniform in
  [−0.15, 0.35] (Shepp–Logan's inner ellipses add −0.2 to +0.1 on the 0.2 brain; wider here);
clipped to [0, 1]; edges antialiased analytically (``_render``).
"""
from __future__ import annotations

import numpy as np
import torch

from ._checks import positive_int
from .data import TensorImages

__all__ = ["phantoms", "shepp_logan", "TEST_SIZE"]

TEST_SIZE = 100  # images in the default test split
_SPLIT_TAGS = {"train": 0x7261696E, "test": 0x74657374}  # stream tags: 'rain', 'test'
_TEST_SEED = 20220125  # the test split's fixed seed


def _ellipses(rng: np.random.Generator) -> np.ndarray:
    """(K + 2, 6) rows (centre row, centre col, semi-axis down, semi-axis across, tilt, intensity)."""
    u = rng.random
    down, across = 0.76 + 0.14 * u(), 0.60 + 0.16 * u()
    cy, cx, tilt = 0.08 * u() - 0.04, 0.08 * u() - 0.04, np.deg2rad(20 * u() - 10)
    shrink = 0.91 + 0.04 * u()
    rows = [(cy, cx, down, across, tilt, 1.0), (cy, cx, down * shrink, across * shrink, tilt, -0.8)]
    K = 5 + int(u() * 8)                              # 5..12
    bd, ba = down * shrink, across * shrink
    for _ in range(K):
        radius, angle = 0.7 * np.sqrt(u()), 2 * np.pi * u()  # a point of the brain's inner 70 %
        py, px = radius * np.sin(angle) * bd, radius * np.cos(angle) * ba
        ry = cy + py * np.cos(tilt) + px * np.sin(tilt)   # rotate by the skull's tilt
        rx = cx - py * np.sin(tilt) + px * np.cos(tilt)
        scale = 0.04 + 0.28 * u() ** 1.5                 # more small ellipses than large ones
        aspect = 0.35 + 0.65 * u()
        a, b = scale * bd, scale * ba * aspect
        if u() < 0.5:
            a, b = b, a
        rows.append((ry, rx, a, b, np.pi * u(), -0.15 + 0.5 * u()))
    return np.asarray(rows, dtype=np.float64)


def _render(params: list[np.ndarray], size: int) -> torch.Tensor:
    """(n, 1, size, size) images of the ellipse lists ``params`` (each (k, 6)), clipped to [0, 1].

    Each ellipse covers a pixel by clamp(½ + d / pixel, 0, 1), d = (1 − q) / |∇q| the first-order signed
    distance of the pixel centre to the edge q = 1 of its quadratic form q (analytic antialiasing)."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1     # pixel centres in [−1, 1]
    kmax = max(len(p) for p in params)
    P = torch.zeros(len(params), kmax, 6, dtype=torch.float64)
    for i, p in enumerate(params):
        P[i, :len(p)] = torch.from_numpy(p)
        P[i, len(p):, 2:4] = 1.0                           # padding rows: intensity 0
    P = P.to(torch.float32)
    cy, cx, a, b, th, val = (P[..., j, None, None] for j in range(6))
    dy, dx = t[:, None] - cy, t[None, :] - cx
    cos, sin = torch.cos(th), torch.sin(th)
    u = (dy * cos + dx * sin) / a                                  # along the "down" semi-axis, in semi-axes
    v = (dx * cos - dy * sin) / b
    q = u * u + v * v
    grad = 2 * torch.sqrt((u / a) ** 2 + (v / b) ** 2).clamp_min(1e-12)
    cover = (0.5 + (1 - q) / grad * (size / 2)).clamp_(0, 1)
    img = torch.einsum("nkij,nk->nij", cover, P[..., 5])
    return img.clamp_(0, 1)[:, None]


def phantoms(n: int | None = None, size: int = 64, seed: int = 0, split: str = "train") -> TensorImages:
    """``n`` random ellipse phantoms (grey, (n, 1, size, size), float32 in [0, 1]) as a ``TensorImages``.

    ``split="train"``: the stream of ``seed`` (n = 1000 by default); ``split="test"``: the fixed held-out
    stream (n = 100 by default; ``seed`` must be left at 0). Image i depends only on (split, seed, i, size).
    """
    if split not in _SPLIT_TAGS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if split == "test" and seed != 0:
        raise ValueError(f"the test split is fixed; leave seed at 0 (got seed={seed!r})")
    n = (1000 if split == "train" else TEST_SIZE) if n is None else positive_int("n", n)
    size = positive_int("size", size)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    stream = _TEST_SEED if split == "test" else int(seed)
    params = [_ellipses(np.random.default_rng([_SPLIT_TAGS[split], stream, i])) for i in range(n)]
    chunk = max(1, 2 ** 21 // (size * size * 14))  # bound the (chunk, K, size, size) temporaries
    images = torch.cat([_render(params[i:i + chunk], size) for i in range(0, n, chunk)])
    return TensorImages(images)


def shepp_logan(size: int = 64) -> torch.Tensor:
    """scikit-image's Shepp–Logan phantom (400×400, values in [0, 1]) resized to (1, size, size) with
    antialiasing (``skimage.transform.resize(anti_aliasing=True)``), float32 clipped to [0, 1]."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    size = positive_int("size", size)
    img = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True, order=1)
    return torch.from_numpy(np.clip(img, 0, 1)).to(torch.float32)[None]
