"""Every built-in solver, built by name from a YAML-style spec, runs on each kind of prior: the exact
Gaussian mixture (VP and VE), the shipped photos model (VP, centred images) and an official score_sde
checkpoint (VE NCSN++, reduced width, from shared/interop)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from invsgm.config.solvers import SOLVERS, build_solver
from invsgm.measurement import LinearMeasurement
from invsgm.operators import MRI, AvgPool, box_mask
from invsgm.priors import GaussianMixture
from invsgm.sde import VESDE, VPSDE
from invsgm.solve import solve

INTEROP = Path(os.environ.get("INVSGM_INTEROP", Path(__file__).resolve().parents[2] / "shared" / "interop"))
NOISELESS_ONLY = {"repaint"}  # inpainting-type measurements only
DECOMPOSED_ONLY = {"consistency"}  # operators A = P(Λ) T: MRI here (grey images)


def _measurement(name: str, shape: tuple[int, int, int]) -> LinearMeasurement:
    if name in DECOMPOSED_ONLY:
        if shape[0] != 1:
            pytest.skip(f"{name} needs an MRI / CT measurement, which takes grey images; the model is RGB")
        return LinearMeasurement(MRI(shape, acceleration=2, center_fraction=0.25))
    if name in NOISELESS_ONLY:
        return LinearMeasurement(box_mask(shape, 0, 0, shape[1] // 2, shape[2]))
    return LinearMeasurement(AvgPool(2, shape), 0.05)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 20.0)], ids=["vp", "ve"])
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_on_the_exact_mixture(name, sde):
    g = torch.Generator().manual_seed(0)
    prior = GaussianMixture(torch.randn(3, 16, generator=g, dtype=torch.float64), None, 0.3)
    meas = _measurement(name, (1, 4, 4))
    x = prior.sample(2, g).reshape(2, 1, 4, 4)
    y = meas.simulate(x, g)
    flat = _Flat(prior.score_model(sde))
    sol = solve(meas, y, flat, build_solver({"name": name}), sde=sde, n=3, steps=5, seed=0)
    assert sol.samples.shape == (2, 3, 1, 4, 4) and torch.isfinite(sol.samples).all() and sol.nfe > 0


class _Flat:
    """The mixture's score on images (B, 1, 4, 4) through its flat (B, 16) form."""

    def __init__(self, score):
        self.score = score

    def __call__(self, x, t):
        return self.score(x.flatten(1), t).reshape(x.shape)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_on_an_official_checkpoint(name):
    from invsgm.official import load_score_sde_checkpoint

    root = INTEROP / "ve_cifar10_ncsnpp_continuous"
    if not (root / "checkpoint.pth").is_file():
        pytest.skip(f"reference folder {root} is absent (set INVSGM_INTEROP to the shared/interop folder)")
    model = load_score_sde_checkpoint(root / "checkpoint.pth", "ve/cifar10_ncsnpp_continuous", nf=16)
    meas = _measurement(name, (3, 32, 32))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = meas.simulate(x, torch.Generator().manual_seed(1))
    sol = solve(meas, y, model, build_solver({"name": name}), n=1, steps=2, seed=0)
    assert sol.samples.shape == (1, 1, 3, 32, 32) and torch.isfinite(sol.samples).all()
