"""Denoiser adapters: every prediction and time label against Tweedie's formula and closed forms."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from invsgm.denoisers import (NetworkDenoiser, ScoreFunctionDenoiser, as_denoiser, score_from_x0,
                              score_sde_denoiser, time_label, tweedie_x0)
from invsgm.priors import GaussianMixture
from invsgm.sde import SubVPSDE, VESDE, VPSDE

SDES = [VESDE(0.01, 50.0), VPSDE(), SubVPSDE()]


class _Probe(nn.Module):
    """raw = f(x) + label (broadcast), a fixed non-linear map; remembers the label it received."""

    def __init__(self, channels_out: int | None = None):
        super().__init__()
        self.channels_out = channels_out

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        self.label = label
        raw = torch.tanh(x) + label.reshape(-1, *([1] * (x.ndim - 1)))
        return torch.cat([raw, 0.5 * raw], 1) if self.channels_out else raw


@pytest.mark.parametrize("sde", SDES, ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("kind", ["sigma", "999t", "t", "index"])
def test_time_labels(sde, kind):
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    expected = {"sigma": sde.marginal_coeffs(t)[1], "999t": 999 * t, "t": t,
                "index": torch.tensor([0.0, 250.0, 500.0, 999.0], dtype=torch.float64)}[kind]
    torch.testing.assert_close(time_label(kind, t, sde, num_steps=1000), expected)


@pytest.mark.parametrize("sde", SDES, ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("prediction", ["sigma_score", "eps", "eps_learned_variance", "x0"])
def test_predictions_agree_with_tweedie(sde, prediction):
    torch.manual_seed(0)
    x, t = torch.randn(3, 2, 4, 4, dtype=torch.float64), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    probe = _Probe(channels_out=prediction == "eps_learned_variance")
    den = NetworkDenoiser(probe, sde, prediction, "t")
    ev = den.evaluate(x, t)
    raw = probe(x, t)[:, :2]  # the learned-variance half is checked below
    alpha, std = (c[:, None, None, None] for c in sde.marginal_coeffs(t))
    expected_score = {"sigma_score": raw / std, "eps": -raw / std, "x0": (alpha * raw - x) / std ** 2,
                      "eps_learned_variance": -raw / std}[prediction]
    torch.testing.assert_close(ev.score, expected_score)
    torch.testing.assert_close(ev.x0, tweedie_x0(x, t, ev.score, sde))  # Tweedie links the two
    torch.testing.assert_close(score_from_x0(x, t, ev.x0, sde), ev.score)
    if prediction == "eps_learned_variance":
        torch.testing.assert_close(ev.variance, 0.5 * raw)
    else:
        assert ev.variance is None
    assert den.nfe == 1 and torch.equal(den(x, t), ev.score) and den.nfe == 2


@pytest.mark.parametrize("sde", SDES, ids=["ve", "vp", "subvp"])
def test_score_sde_convention(sde):
    probe = _Probe()
    den = score_sde_denoiser(probe, sde)
    t = torch.tensor([0.3, 0.7])
    den(torch.zeros(2, 1, 2, 2), t)
    expected = sde.sigma(t) if isinstance(sde, VESDE) else 999 * t
    torch.testing.assert_close(probe.label, expected)
    assert den.prediction == ("sigma_score" if isinstance(sde, VESDE) else "eps")


@pytest.mark.parametrize("sde", SDES, ids=["ve", "vp", "subvp"])
def test_gaussian_prior_x0_is_the_posterior_mean(sde):
    """For x₀ ~ N(μ, v I): E[x₀ | x_t] = μ + α v (x_t − α μ)/(α² v + σ²)."""
    mu, v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), 0.3
    prior = GaussianMixture(mu[None], covariances=v)
    den = as_denoiser(prior, sde)
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0.05, 0.3, 0.6, 1.0], dtype=torch.float64)
    alpha, std = (c[:, None] for c in sde.marginal_coeffs(t))
    torch.testing.assert_close(den.x0(x, t), mu + alpha * v * (x - alpha * mu) / (alpha ** 2 * v + std ** 2))


def test_as_denoiser_errors():
    with pytest.raises(ValueError, match="needs its SDE"):
        as_denoiser(lambda x, t: x)
    with pytest.raises(ValueError, match="must be a Denoiser"):
        as_denoiser(3)
    with pytest.raises(ValueError, match="prediction must be one of"):
        NetworkDenoiser(_Probe(), VPSDE(), "noise", "t")
    with pytest.raises(ValueError, match="time_label must be one of"):
        NetworkDenoiser(_Probe(), VPSDE(), "eps", "steps")
    assert isinstance(as_denoiser(lambda x, t: -x, VPSDE()), ScoreFunctionDenoiser)
