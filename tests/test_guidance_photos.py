"""ΠGDM guidance on the shipped photos model (``photos_score``, VP on centred 32×32 patches).

x̂₀ = (x + σ² s)/α, so the network's Jacobian enters ΠGDM's gradient divided by α(t) (≈ 0.0066 at t = 1 for
this SDE) and the small model's Jacobian errors are amplified about 150-fold: the papers' constant weight
(power 0) diverges to NaN on this model, at scale 1 and 0.1 alike, while the weight α(t)² (power 2, with
the data variance 0.25 of the shipped task files) samples stable, data-consistent posteriors. Ported from
the library parts of the old ``tests/test_table_inverse.py`` (its ``WeightedLinearGaussian`` is now
``PiGDM(power=2, data_variance=0.25)``).
"""
from __future__ import annotations

import pytest
import torch

from invsgm.data import photos_test_images
from invsgm.guidance import PiGDM
from invsgm.measurement import LinearMeasurement
from invsgm.metrics import psnr
from invsgm.operators import AvgPool, random_mask
from invsgm.pretrained import from_model_space, load_pretrained, to_model_space
from invsgm.sampling import PREDICTORS
from invsgm.solve import solve
from invsgm.solvers import PC

SHAPE = (3, 32, 32)
SIGMA_Y = 0.01  # image units, as in tasks/super_resolution.yaml; 0.02 in the model's space [−1, 1]
STEPS = 50      # the ancestral steps of tasks/super_resolution.yaml and tasks/inpaint_random.yaml
PROBLEMS = {    # name: (operator, ΠGDM·α² scale of the shipped task file)
    "super_resolution x2": (lambda: AvgPool(2, SHAPE), 2.0),
    "inpaint 70% random": (lambda: random_mask(SHAPE, 0.7, torch.Generator().manual_seed(0)), 4.0),
}


@pytest.fixture(scope="module")
def photos():
    model = load_pretrained("photos_score")
    images = photos_test_images(2)
    return model, images, to_model_space(images, model.card)


def _sample(photos, name: str, guidance: PiGDM):
    model, images, x = photos
    operator, _ = PROBLEMS[name]
    m = LinearMeasurement(operator(), 2 * SIGMA_Y)
    y = m.simulate(x, torch.Generator().manual_seed(0))
    solver = PC(guidance=guidance, predictor=PREDICTORS["ancestral_sampling"], corrector=None)
    samples = solve(m, y, model, solver, n=1, steps=STEPS, seed=0).samples[:, 0]
    return m, y, samples


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_alpha_squared_weight_keeps_pigdm_stable_and_data_consistent(photos, name):
    model, images, _ = photos
    m, y, samples = _sample(photos, name, PiGDM(scale=PROBLEMS[name][1], power=2, data_variance=0.25))
    assert torch.isfinite(samples).all() and samples.abs().max() <= 1.5  # model space is [−1, 1]
    resid = (m.operator(samples) - y).flatten(1).pow(2).mean(1).sqrt()  # RMS of A x − y per sample
    assert (resid <= 2 * m.sigma_y).all(), resid  # the truth's is ≈ σ_y = 0.02
    for i in range(len(images)):
        quality = psnr(from_model_space(samples[i], model.card).clamp(0, 1), images[i])
        assert quality >= 25.0, (name, i, quality)  # ≈ 27-30 dB; a diverged sample is below 10 dB


@pytest.mark.parametrize("scale", [1.0, 0.1])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_constant_weight_pigdm_diverges_on_this_model(photos, name, scale):
    """The reason for the α(t)² weight: power 0 (the papers' form) blows up within the first steps."""
    _, _, samples = _sample(photos, name, PiGDM(scale=scale, power=0, data_variance=0.25))
    assert not torch.isfinite(samples).all() or samples.abs().max() > 10
