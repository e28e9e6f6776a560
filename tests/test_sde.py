"""SDE marginals against Monte-Carlo simulation and against their own differential equations."""
import math

import pytest
import torch

from invsgm.sde import DiscreteVPSDE, SubVPSDE, VESDE, VPSDE, sde_from_config

SDES = {
    "ve": lambda: VESDE(sigma_min=0.01, sigma_max=5.0),
    "vp": lambda: VPSDE(beta_min=0.1, beta_max=20.0),
    "subvp": lambda: SubVPSDE(beta_min=0.1, beta_max=20.0),
    "discrete_vp": lambda: DiscreteVPSDE("linear"),
}


@pytest.mark.parametrize("name", SDES)
def test_marginal_prob_matches_euler_maruyama(name):
    """Mean and variance of simulated forward paths agree with marginal_prob at t = 0.3 and 1."""
    sde = SDES[name]()
    g = torch.Generator().manual_seed(0)
    n, steps = 40_000, 1000
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64)
    x = x0.expand(n, 2).clone()
    if isinstance(sde, VESDE):  # VE convention: p_0 is the data perturbed by σ_min
        x += sde.sigma_min * torch.randn(n, 2, generator=g, dtype=torch.float64)
    dt = 1.0 / steps
    checks = {300: 0.3, 1000: 1.0}
    for i in range(steps):
        t = torch.full((n,), i * dt, dtype=torch.float64)
        f, gt = sde.sde(x, t)
        x = x + f * dt + gt[:, None] * math.sqrt(dt) * torch.randn(n, 2, generator=g, dtype=torch.float64)
        if i + 1 in checks:
            tt = checks[i + 1]
            mean, std = sde.marginal_prob(x0[None], torch.tensor([tt], dtype=torch.float64))
            mc_mean, mc_var = x.mean(0), x.var(0)
            se_mean = std.item() / math.sqrt(n)
            rel_var = (mc_var / std.item() ** 2 - 1).abs().max().item()
            err_mean = (mc_mean - mean[0]).abs().max().item()
            print(f"{name} t={tt}: mean err {err_mean:.2e} (SE {se_mean:.2e}), "
                  f"var rel err {rel_var:.3%} (exact std {std.item():.4g})")
            assert err_mean < 5 * se_mean + 2e-3 * mean[0].abs().max().item()
            assert rel_var < 0.03  # 4 SE of a variance at n = 40k is 2.8 %; EM bias at dt=1e-3 ~ 1e-3


@pytest.mark.parametrize("name", SDES)
def test_variance_obeys_lyapunov_equation(name):
    """d/dt σ² = 2 c(t) σ² + g(t)² and d/dt α = c(t) α, the moment ODEs of a linear SDE."""
    sde = SDES[name]()
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    a_p, s_p = sde.marginal_coeffs(t + h)
    a_m, s_m = sde.marginal_coeffs(t - h)
    a, s = sde.marginal_coeffs(t)
    c, g = sde.drift_coeff(t), sde.diffusion(t)
    dvar = (s_p ** 2 - s_m ** 2) / (2 * h)
    dalpha = (a_p - a_m) / (2 * h)
    err_var = ((dvar - (2 * c * s ** 2 + g ** 2)) / g ** 2).abs().max().item()
    err_alpha = (dalpha - c * a).abs().max().item()
    print(f"{name}: Lyapunov rel err {err_var:.2e}, mean ODE err {err_alpha:.2e}")
    assert err_var < 1e-5 and err_alpha < 1e-6


@pytest.mark.parametrize("name", SDES)
def test_transition_composes_marginals(name):
    """N(α_s x0, σ_s²) pushed through x_t = a x_s + G z is N(α_t x0, σ_t²)."""
    sde = SDES[name]()
    t = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
    s = torch.tensor([0.4, 0.45, 0.01], dtype=torch.float64)
    a, G = sde.transition(t, s)
    at, st = sde.marginal_coeffs(t)
    as_, ss = sde.marginal_coeffs(s)
    torch.testing.assert_close(a * as_, at)
    torch.testing.assert_close(a ** 2 * ss ** 2 + G ** 2, st ** 2)
    x = torch.randn(3, 4, dtype=torch.float64)
    f, G2 = sde.discretize(x, t, s)
    torch.testing.assert_close(x + f, a[:, None] * x)
    torch.testing.assert_close(G2, G)


def test_discretisations_match_smld_and_ddpm():
    """VE: G² = σ_i² − σ_{i−1}²; VP over one step of 1/N: 1 − a² ≈ β(t)/N."""
    ve = VESDE(0.01, 50.0)
    t, s = torch.tensor([0.7]), torch.tensor([0.6])
    _, G = ve.discretize(torch.zeros(1, 1), t, s)
    torch.testing.assert_close(G ** 2, ve.sigma(t) ** 2 - ve.sigma(s) ** 2)
    vp = VPSDE(0.1, 20.0, N=1000)
    t = torch.tensor([0.5], dtype=torch.float64)
    a, G = vp.transition(t, t - 1 / vp.N)
    beta_i = vp.beta(t - 0.5 / vp.N) / vp.N
    print(f"VP one step: 1-a^2={1 - a.item() ** 2:.6e}, G^2={G.item() ** 2:.6e}, beta_i={beta_i.item():.6e}")
    assert abs(G.item() ** 2 - beta_i.item()) / beta_i.item() < 0.01
    assert abs(1 - a.item() ** 2 - beta_i.item()) / beta_i.item() < 0.01


@pytest.mark.parametrize("name", SDES)
def test_prior_logp_and_sampling(name):
    sde = SDES[name]()
    z = sde.prior_sampling((50_000, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    print(f"{name}: prior std {z.std().item():.4f} vs {sde.prior_std()}")
    assert abs(z.std().item() / sde.prior_std() - 1) < 0.01
    ref = torch.distributions.Normal(0.0, sde.prior_std()).log_prob(z[:10]).sum(1)
    torch.testing.assert_close(sde.prior_logp(z[:10]), ref)
    _, std_T = sde.marginal_coeffs(torch.ones(1))
    assert abs(std_T.item() / sde.prior_std() - 1) < 1e-3  # p_T is close to the prior


def test_reverse_probability_flow_halves_score_term():
    sde = VPSDE()
    x, t = torch.randn(4, 3), torch.rand(4)
    score = lambda x, t: -x  # noqa: E731
    f, g = sde.sde(x, t)
    d_sde, g_sde = sde.reverse(score).sde(x, t)
    d_ode, g_ode = sde.reverse(score, probability_flow=True).sde(x, t)
    torch.testing.assert_close(d_sde, f + g[:, None] ** 2 * x)
    torch.testing.assert_close(d_ode, f + 0.5 * g[:, None] ** 2 * x)
    assert torch.all(g_ode == 0) and torch.equal(g_sde, g)


@pytest.mark.parametrize("kwargs, name", [
    (dict(sigma_min=-0.1, sigma_max=1.0), "sigma_min"),
    (dict(sigma_min=0.1, sigma_max=float("nan")), "sigma_max"),
    (dict(sigma_min=1.0, sigma_max=1.0), "sigma_min"),
    (dict(sigma_min=0.1, sigma_max=1.0, N=0), "N"),
])
def test_ve_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VESDE(**kwargs)


@pytest.mark.parametrize("cls", [VPSDE, SubVPSDE])
def test_vp_bad_arguments(cls):
    with pytest.raises(ValueError, match="beta_min"):
        cls(beta_min=-1.0)
    with pytest.raises(ValueError, match="beta_min"):
        cls(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="N"):
        cls(N=2.5)


def test_bad_times_and_shapes():
    sde = VPSDE()
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        sde.marginal_prob(x, torch.full((4,), 1.5))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        sde.sde(x, -0.1)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(4,\)"):
        sde.marginal_prob(x, torch.rand(3))
    with pytest.raises(ValueError, match="unknown SDE"):
        sde_from_config("ode")
    assert isinstance(sde_from_config("sub-VP", beta_max=10.0), SubVPSDE)
