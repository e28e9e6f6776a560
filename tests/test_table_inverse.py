"""benchmarks/table_inverse.py: the weighted ΠGDM task, the image-space observations, a tiny end-to-end run."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from invsgm.operators import Grey, random_mask
from invsgm.pretrained import load_pretrained
from invsgm.priors import GaussianMixture
from invsgm.sde import VPSDE
from invsgm.tasks import GuidedScore, LinearGaussian


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "table_inverse.py"
    spec = importlib.util.spec_from_file_location("table_inverse", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["table_inverse"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("table_inverse", None)


def _gaussian_problem(v: float = 0.7, d: int = 6):
    prior = GaussianMixture(torch.zeros(1, d, dtype=torch.float64), None, v)
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, d, generator=g, dtype=torch.float64)
    y = torch.randn(1, 3, generator=g, dtype=torch.float64)
    return prior, A, y, g


@pytest.mark.parametrize("jacobian", ["network", "gaussian"])
def test_unweighted_guidance_is_exact_for_a_gaussian_prior(bench, jacobian):
    """power 0: with the exact score of N(0, v I), both Jacobians give the exact ∇log p_t(x | y)."""
    sde, v, sigma_y = VPSDE(), 0.7, 0.3
    prior, A, y, g = _gaussian_problem(v)
    task = bench.WeightedLinearGaussian(A, sigma_y, "pigdm", data_variance=v, power=0.0, jacobian=jacobian)
    guided = GuidedScore(prior.score_model(sde), sde, task, y.expand(8, 3))
    post = prior.condition(A, y[0], sigma_y)
    for t in (0.05, 0.3, 0.8):
        x = post.marginal(sde, t).sample(8, g)
        tt = torch.full((8,), t, dtype=torch.float64)
        exact = post.score(x, tt, sde)
        assert (guided(x, tt) - exact).abs().max() / exact.abs().max() < 1e-10


@pytest.mark.parametrize("guidance", ["pigdm", "dps"])
def test_power_multiplies_the_guidance_by_alpha_to_the_power(bench, guidance):
    sde, v = VPSDE(), 0.7
    prior, A, y, g = _gaussian_problem(v)
    score = prior.score_model(sde)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    t = torch.full((4,), 0.6, dtype=torch.float64)
    base = LinearGaussian(A, 0.3, guidance, scale=1.5, data_variance=v)
    weighted = bench.WeightedLinearGaussian(A, 0.3, guidance, scale=1.5, data_variance=v, power=2.0)
    plain = GuidedScore(score, sde, base, y.expand(4, 3))(x, t) - score(x, t)
    heavy = GuidedScore(score, sde, weighted, y.expand(4, 3))(x, t) - score(x, t)
    alpha, _ = sde.marginal_coeffs(t)
    torch.testing.assert_close(heavy, alpha[:, None] ** 2 * plain)


def test_image_space_observation(bench):
    """y_img is A·img (+ σ_y noise): the masked image, and the grey axis of the image for colorization."""
    model = load_pretrained("photos_score")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = random_mask((3, 32, 32), 0.7, torch.Generator().manual_seed(0))
    y, y_img = bench.observe(mask, images, 0.0, model, 0)
    torch.testing.assert_close(y_img, mask(images))
    torch.testing.assert_close(y, mask(2 * images - 1))
    grey = Grey((3, 32, 32))
    _, y_img = bench.observe(grey, images, 0.0, model, 0)
    torch.testing.assert_close(y_img, grey(images))
    _, noisy = bench.observe(grey, images, 0.01, model, 0)
    assert 0.005 < (noisy - y_img).std() < 0.02  # σ_y in image units


def test_tiny_run_prints_the_table(bench, capsys):
    bench.main(["--n", "1", "--samples", "1", "--steps", "2", "--problems", "SR x2,deblur"])
    out = capsys.readouterr().out
    assert "| problem | method | PSNR | SSIM | baseline | baseline PSNR | baseline SSIM | Δ PSNR |" in out
    rows = [line for line in out.splitlines() if line.startswith("| SR x2") or line.startswith("| deblur")]
    assert len(rows) == 3  # SR x2 vs bicubic, deblur vs Wiener and vs Richardson–Lucy
    assert "total time" in out
