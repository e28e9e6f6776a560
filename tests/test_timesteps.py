"""Time grids placed by noise level, the initial state's scale, and the YAML ``grid`` of a sampler section."""
from __future__ import annotations

import pytest
import torch

from invsgm.config.solvers import build_timesteps, split_sampler
from invsgm.sampling.timesteps import initial_std, noise_level_timesteps, noise_ratio
from invsgm.sde import SubVPSDE, VESDE, VPSDE

SDES = [VESDE(0.01, 50.0), VPSDE(), SubVPSDE()]


@pytest.mark.parametrize("sde", SDES, ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("rho", [1.0, 7.0])
def test_noise_levels_are_uniform_in_sigma_to_the_one_over_rho(sde, rho):
    ts = noise_level_timesteps(sde, 20, sigma_max=5.0, sigma_min=0.05, rho=rho)
    levels = noise_ratio(sde, ts) ** (1 / rho)
    assert ts.dtype == torch.float64 and bool((ts[1:] < ts[:-1]).all())
    torch.testing.assert_close(levels[0], torch.tensor(5.0 ** (1 / rho), dtype=torch.float64))
    torch.testing.assert_close(levels[-1], torch.tensor(0.05 ** (1 / rho), dtype=torch.float64))
    steps = levels[:-1] - levels[1:]
    assert (steps - steps.mean()).abs().max() < 1e-9 * levels[0]


def test_grid_ends_default_to_the_sdes_and_bad_ends_raise():
    sde = VPSDE()
    ts = noise_level_timesteps(sde, 10)
    assert ts[0] == sde.T and ts[-1] == sde.eps
    with pytest.raises(ValueError, match="sigma_min .* must be below sigma_max"):
        noise_level_timesteps(sde, 10, sigma_max=0.5, sigma_min=1.0)


def test_initial_std():
    assert initial_std(VESDE(0.01, 50.0), 1.0) == 50.0 and initial_std(VPSDE(), 1.0) == 1.0
    sde = VESDE(0.01, 50.0)
    alpha, std = sde.marginal_coeffs(torch.tensor([0.5], dtype=torch.float64))
    assert initial_std(sde, 0.5) == pytest.approx(float((alpha ** 2 + std ** 2).sqrt()))
    assert initial_std(VPSDE(), 0.3) == pytest.approx(1.0)  # α² + σ² = 1 on VP


def test_yaml_grid():
    spec, run = split_sampler({"name": "ddrm", "steps": 30, "grid": {"sigma_max": 10, "rho": 7}},
                              {"steps": 1, "n_samples": 1, "batch_size": 1})
    assert spec == {"name": "ddrm"} and run["grid"] == {"sigma_max": 10.0, "rho": 7.0}
    ts = build_timesteps(VPSDE(), run["steps"], run["grid"])
    assert ts.numel() == 31 and noise_ratio(VPSDE(), ts[:1]).item() == pytest.approx(10.0, rel=1e-9)
    torch.testing.assert_close(build_timesteps(VPSDE(), 5, None), torch.linspace(1.0, 1e-3, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown key sampler.grid.sigma"):
        split_sampler({"grid": {"sigma": 1}}, {"steps": 1, "n_samples": 1, "batch_size": 1})
    with pytest.raises(ValueError, match=r"sampler.grid = .*must be below"):
        build_timesteps(VPSDE(), 5, {"sigma_max": 0.5, "sigma_min": 1.0})
