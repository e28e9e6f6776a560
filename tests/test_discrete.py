"""Discrete-time DDPM processes (``DiscreteVPSDE``), ADM's respacing, and the DDIM / DDPM solvers."""
from __future__ import annotations

import math

import pytest
import torch

from invsgm.denoisers import Denoiser, Evaluation
from invsgm.sampling.timesteps import respaced_indices, respaced_timesteps
from invsgm.sde import DiscreteVPSDE, VPSDE, discrete_betas, sde_from_config
from invsgm.solvers import DDIM, DDPM


def test_schedules_follow_their_definitions():
    """linear: linspace(1e-4, 0.02); scaled_linear: squares of linspace of roots; cosine: Nichol & Dhariwal's
    ratio of ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), capped at 0.999; ᾱ = ∏(1 − β)."""
    lin = discrete_betas("linear", 1000)
    assert lin[0].item() == 1e-4 and abs(lin[-1].item() - 0.02) < 1e-15
    assert torch.allclose(lin[1:] - lin[:-1], torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))
    sq = discrete_betas("scaled_linear", 1000, 0.00085, 0.012)
    assert torch.allclose(sq.sqrt(), torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64))
    cos = discrete_betas("cosine", 1000)
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    for i in (0, 10, 500, 998):
        assert abs(cos[i].item() - min(1 - f((i + 1) / 1000) / f(i / 1000), 0.999)) < 1e-15
    assert cos[-1].item() == 0.999
    sde = DiscreteVPSDE("cosine")
    assert torch.allclose(sde.alphas_cumprod, torch.cumprod(1 - cos, 0), rtol=0, atol=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        DiscreteVPSDE("sigmoid")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_marginals_are_exact_on_the_training_grid(schedule):
    """At t_i = i/(N−1): α² = ᾱ_i and α² + σ² = 1 in float64, and also for times given in float32; the
    transition between two grid times is the respaced step, a² = 1 − β = ᾱ_t/ᾱ_s."""
    sde = DiscreteVPSDE(schedule)
    i = torch.tensor([0, 1, 111, 500, 998, 999])
    t = i.double() / 999
    alpha, std = sde.marginal_coeffs(t)
    assert torch.allclose(alpha ** 2, sde.alphas_cumprod[i], rtol=1e-13, atol=0)
    assert torch.allclose(alpha ** 2 + std ** 2, torch.ones(6, dtype=torch.float64))
    a32, _ = sde.marginal_coeffs(t.float())
    assert torch.allclose(a32.double() ** 2, sde.alphas_cumprod[i], rtol=1e-6, atol=0)
    assert torch.equal(sde.index(t.float()), i)
    a, G = sde.transition(t[[2, 3]], t[[1, 2]])
    abar = sde.alphas_cumprod
    torch.testing.assert_close(a ** 2, abar[[111, 500]] / abar[[1, 111]])
    torch.testing.assert_close(G ** 2, 1 - abar[[111, 500]] / abar[[1, 111]])


def test_between_grid_times_log_alpha_bar_is_linear_and_beta_is_its_slope():
    sde = DiscreteVPSDE("linear")
    t = torch.tensor([100.25, 700.5]).double() / 999
    log_abar = sde.log_alphas_cumprod(t)
    L = sde.alphas_cumprod.log()
    torch.testing.assert_close(log_abar, torch.stack([0.75 * L[100] + 0.25 * L[101], 0.5 * L[700] + 0.5 * L[701]]))
    torch.testing.assert_close(sde.beta(t), 999 * torch.stack([L[100] - L[101], L[700] - L[701]]))
    # the continuous VP SDE of score_sde is its limit: β(t) ≈ 0.1 + 19.9 t and ᾱ(t) ≈ exp(−∫β)
    vp = VPSDE()
    t = torch.linspace(0.05, 1, 20, dtype=torch.float64)
    log_ratio = sde.log_alphas_cumprod(t) / (2 * vp.marginal_coeffs(t)[0].log())
    assert (log_ratio - 1).abs().max() < 0.025  # 1.9 % at t = 0.05, from ᾱ_0 = 1 − β_0 against 1


def test_config_round_trip_and_names():
    sde = DiscreteVPSDE("cosine", N=500)
    again = sde_from_config("discrete_vp", **sde.config())
    assert again.config() == sde.config() and torch.equal(again.alphas_cumprod, sde.alphas_cumprod)
    with pytest.raises(ValueError, match="N >= 2"):
        DiscreteVPSDE(N=1)


def test_respacing_matches_adm():
    """ADM's ``space_timesteps``: 'ddim10' keeps 0, 100, …, 900; '10' keeps round(k·999/9); sections split
    the process evenly (the first gets the remainder)."""
    assert respaced_indices(1000, "ddim10") == list(range(0, 1000, 100))
    assert respaced_indices(1000, "10") == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    kept = respaced_indices(1000, 250)  # fractional stride 999/249: not every 4th index
    assert len(kept) == 250 and kept[:3] == [0, 4, 8] and kept[42] == 169 and kept[-1] == 999
    kept = respaced_indices(10, "2,3")
    assert kept == [0, 4, 5, 7, 9]
    ts = respaced_timesteps(DiscreteVPSDE(), "ddim10")
    assert torch.equal(DiscreteVPSDE().index(ts), torch.arange(900, -1, -100))
    for bad in ("ddim999", "ddimx", "0", "600,600"):
        with pytest.raises(ValueError, match="respacing"):
            respaced_timesteps(DiscreteVPSDE(), bad)


class _Gaussian(Denoiser):
    """Exact denoiser of N(0, s² I) data with a constant fake learned-variance output v."""

    def __init__(self, sde, s=0.5, v=None):
        super().__init__(sde)
        self.s, self.v = s, v

    def _evaluate(self, x, t):
        alpha, std = (c.reshape(-1, *[1] * (x.ndim - 1)) for c in self.sde.marginal_coeffs(t))
        x0 = alpha * self.s ** 2 * x / (alpha ** 2 * self.s ** 2 + std ** 2)
        score = (alpha * x0 - x) / std ** 2
        v = None if self.v is None else torch.full_like(x, self.v)
        return Evaluation(score, x0, v)


def _run(solver, den, sde, ts, seed=0):
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return solver(den, sde, None, None, x, ts, generator=torch.Generator().manual_seed(seed)).samples


def test_ddim_with_eta_one_is_ddpm_with_the_posterior_variance():
    """σ_s²(1 − G²/σ_t²) = (a σ_s²/σ_t²)² σ_t² makes DDIM(η = 1) and DDPM's β̃ step the same map of the same noise."""
    sde = DiscreteVPSDE("cosine")
    ts = respaced_timesteps(sde, "25")
    den = _Gaussian(sde)
    torch.testing.assert_close(_run(DDIM(eta=1.0), den, sde, ts), _run(DDPM(variance="small"), den, sde, ts))
    assert den.nfe == 2 * len(ts)  # one evaluation per grid time, the last one gives x̂₀


def test_ddpm_learned_variance_interpolates_in_log_space():
    """v = 1 is β (``large``), v = −1 is β̃ (``small``); v = 0 their geometric mean."""
    sde = DiscreteVPSDE("linear")
    ts = respaced_timesteps(sde, "ddim20")
    torch.testing.assert_close(_run(DDPM(), _Gaussian(sde, v=1.0), sde, ts),
                               _run(DDPM(variance="large"), _Gaussian(sde), sde, ts))
    torch.testing.assert_close(_run(DDPM(), _Gaussian(sde, v=-1.0), sde, ts),
                               _run(DDPM(variance="small"), _Gaussian(sde), sde, ts))
    with pytest.raises(ValueError, match="learned-variance output"):
        _run(DDPM(variance="learned"), _Gaussian(sde), sde, ts)


def test_ddim_deterministic_on_a_gaussian_converges_to_the_probability_flow():
    """η = 0 with the exact denoiser of N(0, s²I) is a linear map x_T ↦ g x_T; the probability-flow ODE keeps
    x_t/√(α_t² s² + σ_t²) constant, so g → s/√(α_T² s² + σ_T²) (x̂₀ at t_0 shrinks it by the posterior
    factor k_0). DDIM is first order: 10× the steps, about 10× closer."""
    sde, s = DiscreteVPSDE("linear"), 0.5
    t = torch.tensor([1.0, 0.0], dtype=torch.float64)
    alpha, std = sde.marginal_coeffs(t)
    spread = (alpha ** 2 * s ** 2 + std ** 2).sqrt()
    exact = (spread[1] / spread[0] * alpha[1] * s ** 2 / spread[1] ** 2).item()
    x = torch.ones(1, 1, dtype=torch.float64)
    errors = [abs(DDIM()(_Gaussian(sde, s), sde, None, None, x, respaced_timesteps(sde, k)).samples.item() / exact - 1)
              for k in ("100", "1000")]
    print(f"\nDDIM on a Gaussian, relative gain error: 100 steps {errors[0]:.2e}, 1000 steps {errors[1]:.2e}")
    assert errors[1] < 4e-3 and errors[0] > 5 * errors[1]


def test_solvers_refuse_bad_arguments():
    with pytest.raises(ValueError, match="variance must be one of"):
        DDPM(variance="fixed")
    with pytest.raises(ValueError, match="eta"):
        DDIM(eta=-1)
    with pytest.raises(ValueError, match="guidance must be a Guidance"):
        DDIM(guidance="dps")
