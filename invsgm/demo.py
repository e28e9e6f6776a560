"""Built-in demo: sample a 2-D Gaussian mixture with its exact score and draw the samples."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .priors import GaussianMixture
from .sampling import default_timesteps, langevin, reverse_diffusion, sample_ode_adaptive, sample_pc
from .sde import SDE
from .stats import sliced_wasserstein


def ring_mixture(n_components: int = 8, radius: float = 4.0, std: float = 0.3) -> GaussianMixture:
    """n_components isotropic Gaussians evenly spaced on a circle, with unequal weights."""
    angles = torch.arange(n_components, dtype=torch.float64) * (2 * math.pi / n_components)
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    weights = torch.arange(1, n_components + 1, dtype=torch.float64)
    return GaussianMixture(means, weights / weights.sum(), torch.full((n_components,), std ** 2))


def scatter_image(points: np.ndarray, extent: float, size: int = 256) -> np.ndarray:
    """A (size, size) uint8 density image of 2-D points in [−extent, extent]² (dark = many)."""
    hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=size, range=[[-extent, extent]] * 2)
    density = np.log1p(hist[::-1]) / max(np.log1p(hist).max(), 1e-12)
    return (255 * (1 - density)).astype(np.uint8)


def run_demo(sde: SDE, sampler: str, n: int, steps: int, seed: int) -> tuple[np.ndarray, dict]:
    """Sample the ring mixture with ``sampler`` ('pc' or 'ode'); return a side-by-side image and figures."""
    mixture = ring_mixture()
    score = mixture.score_model(sde)
    g = torch.Generator().manual_seed(seed)
    x = sde.prior_sampling((n, 2), generator=g, dtype=torch.float64)
    start = time.perf_counter()
    if sampler == "pc":
        samples = sample_pc(score, sde, x, default_timesteps(sde, steps), predictor=reverse_diffusion,
                            corrector=langevin, snr=0.16, generator=g, progress=True)
        nfe = 2 * steps + 1
    elif sampler == "ode":
        result = sample_ode_adaptive(score, sde, x, rtol=1e-5, atol=1e-5, progress=True)
        samples, nfe = result.x, result.nfe
    else:
        raise ValueError(f"sampler must be 'pc' or 'ode', got {sampler!r}")
    seconds = time.perf_counter() - start
    exact = mixture.sample(n, g)
    figures = {
        "sliced_wasserstein": sliced_wasserstein(samples, exact, generator=g),
        "floor": sliced_wasserstein(mixture.sample(n, g), exact, generator=g),
        "score_evaluations": nfe,
        "seconds": round(seconds, 3),
    }
    extent = 6.0
    gap = np.full((256, 8), 255, np.uint8)
    image = np.concatenate([scatter_image(samples.numpy(), extent), gap, scatter_image(exact.numpy(), extent)], 1)
    return image, figures


def main(sde: SDE, sampler: str, n: int, steps: int, seed: int, out: Path) -> dict:
    """Run the demo, write the PNG (samples | exact samples) to ``out`` and return the figures."""
    from .imageio import write_png

    image, figures = run_demo(sde, sampler, n, steps, seed)
    write_png(out, image)
    return figures
