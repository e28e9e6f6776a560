"""With nothing observed (A = 0), a posterior solver should sample the prior: every solver at its defaults
against exact samples of a 3-component mixture (d = 8), SW as a multiple of the exact-vs-exact floor.

The goal is ≤ 1.5× the floor. PC, SMC, RePaint and DiffPIR meet it here (measured 1.04, 1.09, 1.16, 1.13;
DiffPIR's ζ = 0.3 re-noising moves weight to the heaviest mode and gives 1.4–1.5 on the prior of its own
tests). DDRM (η = 0.85) and DAPS (5 ODE steps) do not, by design — DDRM's fresh noise η σ̄_s per step does
not shrink with the step (its own tests derive the 0.63 spread it leaves), DAPS's Euler ODE misplaces the
mode weights — so their ratios are pinned in bands (measured 1.73 and 1.86), and the settings that meet
the goal (η = 0: 0.91, 10 ODE steps: 1.26) are checked too.
"""
from __future__ import annotations

import pytest
import torch

from invsgm.measurement import LinearMeasurement
from invsgm.operators import Mask
from invsgm.priors import GaussianMixture
from invsgm.sde import VPSDE
from invsgm.solve import solve
from invsgm.solvers import DAPS, DDIM, DDPM, DDRM, PC, SMC, DiffPIR, RePaint
from invsgm.stats import sliced_wasserstein

N = 1000


class _Image:
    """The mixture's exact denoiser on (B, 1, 2, 4) images through its flat (B, 8) form."""

    def __init__(self, mixture: GaussianMixture, sde):
        self.den = mixture.score_model(sde)

    def __call__(self, x, t):
        return self.den(x.flatten(1), t).reshape(x.shape)


def _ratio(solver, sigma_y: float = 0.0, steps: int = 100) -> float:
    g = torch.Generator().manual_seed(0)
    means = torch.zeros(3, 8, dtype=torch.float64)
    means[:, :2] = torch.tensor([[3.0, 0.0], [-3.0, 1.0], [0.0, -3.0]], dtype=torch.float64)
    prior = GaussianMixture(means, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), 1.0)
    meas = LinearMeasurement(Mask(torch.zeros(1, 2, 4, dtype=torch.bool)), sigma_y)
    y = torch.zeros(1, 1, 2, 4, dtype=torch.float64)
    sol = solve(meas, y, _Image(prior, VPSDE()), solver, sde=VPSDE(), n=N, steps=steps, seed=1)
    ref = prior.sample(N, g)
    floor = sliced_wasserstein(prior.sample(N, g), ref, generator=torch.Generator().manual_seed(5))
    sw = sliced_wasserstein(sol.samples[0].flatten(1), ref, generator=torch.Generator().manual_seed(5))
    print(f"\nnothing observed, {type(solver).__name__}: SW/floor {sw / floor:.2f}")
    return sw / floor


@pytest.mark.parametrize("make, sigma_y", [(lambda: PC(), 0.0), (lambda: SMC(), 1.0), (lambda: RePaint(), 0.0),
                                           (lambda: DiffPIR(), 0.0), (lambda: DDRM(eta=0.0), 0.0),
                                           (lambda: DAPS(ode_steps=10), 0.0), (lambda: DDIM(), 0.0),
                                           (lambda: DDIM(eta=1.0), 0.0), (lambda: DDPM(), 0.0)],
                         ids=["pc", "smc", "repaint", "diffpir", "ddrm-eta0", "daps-10-ode", "ddim", "ddim-eta1",
                              "ddpm"])
def test_solvers_sample_the_prior(make, sigma_y):
    assert _ratio(make(), sigma_y) <= 1.5


@pytest.mark.parametrize("make, band", [(lambda: DDRM(), (1.5, 3.0)), (lambda: DAPS(), (1.5, 2.6))],
                         ids=["ddrm", "daps"])
def test_paper_defaults_that_miss_the_prior_are_pinned(make, band):
    ratio = _ratio(make())
    assert band[0] <= ratio <= band[1]
