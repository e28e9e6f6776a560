"""DAPS (Zhang et al., 2024): the sample law against its exact linear-Gaussian recursion, the bias of that law
against the exact posterior (pinned), the prior when nothing is observed, the shipped photos model, errors.

For a Gaussian prior every DAPS operation is affine in the state plus Gaussian noise (Tweedie's x̂₀ and the
Euler ODE steps are linear, the Langevin chain is AR(1)), so the law of DAPS's output is N(m, S) computed
exactly by ``daps_law`` below — independently of the solver's code. The samples must match it within
Monte-Carlo error; the distance from N(m, S) to the exact posterior is DAPS's bias at those settings.
"""
from __future__ import annotations

import math
import time

import pytest
import torch

from invsgm.measurement import ClassLabel, LinearMeasurement
from invsgm.operators import AvgPool, Matrix
from invsgm.priors import GaussianMixture
from invsgm.sampling.timesteps import default_timesteps
from invsgm.sde import SDE, VESDE, VPSDE
from invsgm.solve import solve
from invsgm.solvers import DAPS
from invsgm.sampling.timesteps import noise_level_timesteps
from invsgm.solvers.daps import NOISELESS_SIGMA
from invsgm.stats import sliced_wasserstein

N_SAMPLES = 4000
# A sample mean of n draws of N(m, S) has per-coordinate sd √(S_jj/n); a sample covariance entry has sd
# √((S_jj S_kk + S_jk²)/n). |z| ≤ 4.5 over 6 means and ≤ 5 over 21 covariance entries: a false alarm has
# probability < 1e-4 (Bonferroni), and the seed is fixed.
Z_MEAN, Z_COV = 4.5, 5.0


def _ratio(sde: SDE, t: torch.Tensor) -> torch.Tensor:
    alpha, std = sde.marginal_coeffs(torch.as_tensor(t, dtype=torch.float64).reshape(-1))
    return std / alpha


def daps_law(sde, ts, mu, Sigma, A, y, beta, ode_steps, langevin_steps, lr, lr_min_ratio, rho=7.0):
    """Exact law N(m, S) of DAPS's output for the prior N(mu, Sigma), started from x_T ~ N(0, prior_std² I).

    In the scaled variable x̃ = x/α with noise level ς = σ/α: x̂₀ = Euler steps x̃ ← D + (ς'/ς)(x̃ − D) over the
    ρ-grid from ς(t_i) to ς(t_n) and then 0, D = μ + Σ(Σ + ς²)⁻¹(x̃ − μ); Langevin x ← G x + η(x̂₀/r² + Aᵀy/β²)
    + √(2η) ε with G = I − ηP, P = I/r² + AᵀA/β², summed in closed form over N steps in P's eigenbasis
    (``langevin_steps`` None: the exact conditional N(P⁻¹(x̂₀/r² + Aᵀy/β²), P⁻¹)); re-noise x̃ ← x₀ + ς' z.
    """
    ts = torch.as_tensor(ts, dtype=torch.float64)
    d = mu.numel()
    I = torch.eye(d, dtype=torch.float64)
    n = ts.numel() - 1
    sig = _ratio(sde, ts)
    a0 = sde.marginal_coeffs(ts[:1])[0].item()
    m, S = torch.zeros(d, dtype=torch.float64), (sde.prior_std() / a0) ** 2 * I
    h, P0 = A.T @ y / beta ** 2, A.T @ A / beta ** 2
    for i in range(n):
        hi, lo = sig[i].item(), sig[-1].item()
        r = torch.linspace(0, 1, ode_steps, dtype=torch.float64)
        nodes = ((hi ** (1 / rho) + r * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho if ode_steps > 1
                 else torch.tensor([hi], dtype=torch.float64))
        nodes = torch.cat([nodes, torch.zeros(1, dtype=torch.float64)])
        for k in range(ode_steps):
            W = Sigma @ torch.linalg.inv(Sigma + nodes[k] ** 2 * I)
            c = (nodes[k + 1] / nodes[k]).item()
            M = c * I + (1 - c) * W
            m, S = M @ m + (1 - c) * (I - W) @ mu, M @ S @ M.T
        r2 = hi ** 2
        p, U = torch.linalg.eigh(I / r2 + P0)

        def fn(f: torch.Tensor) -> torch.Tensor:
            return U @ torch.diag(f) @ U.T

        if langevin_steps is None:
            L, c_vec, Q = fn(1 / (p * r2)), fn(1 / p) @ h, fn(1 / p)
        else:
            eta = lr * (1 + (lr_min_ratio - 1) * i / n)
            g = 1 - eta * p
            gN = g ** langevin_steps
            L, c_vec = fn(gN + (1 - gN) / (p * r2)), fn((1 - gN) / p) @ h
            Q = fn(2 * eta * (1 - gN ** 2) / (1 - g ** 2))
        m, S = L @ m + c_vec, L @ S @ L.T + Q
        if i < n - 1:
            S = S + sig[i + 1].item() ** 2 * I
    return m, S


def _problem(seed: int = 0, d: int = 6, m: int = 3, sigma_y: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    v = 0.5 + 1.5 * torch.rand(d, generator=g, dtype=torch.float64)
    A = torch.randn(m, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    prior = GaussianMixture(mu[None], None, v[None])
    meas = LinearMeasurement(Matrix(A), sigma_y)
    y = meas.simulate(prior.sample(1, g), g)
    post = prior.condition(A, y[0], sigma_y)
    return prior, mu, torch.diag(v), A, meas, y, post.means[0], post.covariance_matrices()[0]


def _bias(m, S, pm, pC) -> tuple[float, float]:
    """(max |m − m_post| in posterior sds, ‖S − C_post‖_F / ‖C_post‖_F)."""
    return (((m - pm).abs() / pC.diagonal().sqrt()).max().item(), ((S - pC).norm() / pC.norm()).item())


# settings: (sde, ode_steps, annealing levels on the paper's EDM grid (ς from min(100, ς(T)) to 0.1), Langevin
# steps, lr) and the bias of the exact DAPS law there (measured with daps_law; ± 2 %). VE with ode_steps = 1 uses
# Tweedie's exact x̂₀ (its bias is near the equilibrium-Langevin limit at 50 levels, 0.102 / 0.085); VP the
# default 5 ODE steps, whose endpoint is not E[x₀ | x_t] (limit 0.44 / 0.95, see the next test).
CASES = {
    "vp": (VPSDE(), 5, 50, 20, 0.05, (0.127, 0.543)),
    "ve": (VESDE(0.01, 20.0), 1, 50, 20, 0.05, (0.106, 0.056)),
}


@pytest.mark.parametrize("key", sorted(CASES))
def test_gaussian_prior_matches_exact_daps_law_and_its_pinned_bias(key):
    sde, K, steps, N, lr, pinned = CASES[key]
    prior, mu, Sigma, A, meas, y, pm, pC = _problem()
    solver = DAPS(ode_steps=K, langevin_steps=N, lr=lr)
    start = time.perf_counter()
    ts = noise_level_timesteps(sde, steps, sigma_max=100.0, sigma_min=0.1)
    sol = solve(meas, y, prior, solver, sde=sde, n=N_SAMPLES, timesteps=ts, seed=1)
    elapsed = time.perf_counter() - start
    assert sol.nfe == steps * K
    x = sol.samples[0]
    m, S = daps_law(sde, ts, mu, Sigma, A, y[0], meas.sigma_y, K, N, lr, solver.lr_min_ratio)
    z_mean = ((x.mean(0) - m) / (S.diagonal() / N_SAMPLES).sqrt()).abs().max().item()
    dS = S.diagonal()
    z_cov = ((torch.cov(x.T) - S) / ((dS[:, None] * dS[None] + S ** 2) / N_SAMPLES).sqrt()).abs().max().item()
    law_bias = _bias(m, S, pm, pC)
    sample_err = _bias(x.mean(0), torch.cov(x.T), pm, pC)
    print(f"\n[daps {key}] K={K} steps={steps} N={N} lr={lr}: {elapsed:.2f} s; vs exact DAPS law: max|z| mean "
          f"{z_mean:.2f} (tol {Z_MEAN}), cov {z_cov:.2f} (tol {Z_COV}); bias of the law vs the posterior: mean "
          f"{law_bias[0]:.3f} sd, cov {law_bias[1]:.3f} rel; samples vs posterior: {sample_err[0]:.3f}, "
          f"{sample_err[1]:.3f}")
    assert z_mean <= Z_MEAN and z_cov <= Z_COV
    assert law_bias == pytest.approx(pinned, rel=0.02)
    # the samples' own error against the exact posterior is that bias, up to Monte-Carlo error (mean: one sd
    # of a 4000-sample mean is ≤ 0.03 posterior sds here, cov: ≈ √(2/n) ≈ 0.02 relative)
    assert abs(sample_err[0] - law_bias[0]) <= 0.15 and abs(sample_err[1] - law_bias[1]) <= 0.08


def test_bias_shrinks_with_langevin_and_annealing_steps():
    """Exact laws only (no sampling). With Tweedie's x̂₀ (ode_steps = 1) DAPS is consistent: its bias falls with
    more Langevin steps and, with the Langevin chain at equilibrium, to 0 with more annealing levels. With the
    ODE's x̂₀ (5 steps) the Gaussian N(x̂₀, ς²) is centred on the ODE's endpoint rather than E[x₀ | x_t], and
    the bias stays (≈ 0.28 sd, 0.55 rel. in covariance at 1000 levels here)."""
    prior, mu, Sigma, A, meas, y, pm, pC = _problem()
    sde = VESDE(0.01, 20.0)
    by_n = [_bias(*daps_law(sde, default_timesteps(sde, 50), mu, Sigma, A, y[0], 0.3, 1, N, 5e-3, 0.01), pm, pC)
            for N in (20, 100)]
    by_steps = [_bias(*daps_law(sde, default_timesteps(sde, n), mu, Sigma, A, y[0], 0.3, 1, None, 0, 0), pm, pC)
                for n in (50, 200, 1000)]
    ode = _bias(*daps_law(sde, default_timesteps(sde, 1000), mu, Sigma, A, y[0], 0.3, 5, None, 0, 0), pm, pC)
    print(f"\n[daps bias] Langevin 20 → 100 steps: {by_n}; exact Langevin, 50/200/1000 levels: {by_steps}; "
          f"ODE x̂₀ at 1000 levels: {ode}")
    assert by_n[1][0] < 0.5 * by_n[0][0] and by_n[1][1] < 0.5 * by_n[0][1]
    for j in (0, 1):
        assert by_steps[0][j] > by_steps[1][j] > by_steps[2][j]
    assert max(by_steps[2]) < 0.01
    assert ode[0] > 0.2 and ode[1] > 0.4


def test_nothing_observed_gives_the_prior():
    """σ_y = 1e4: the data term vanishes and DAPS (ODE to x̂₀, a little Langevin noise, re-noise) samples the prior
    as well as its ODE does. Measured (VP, 20 uniform levels, 20 Langevin steps): 10 ODE steps reach the floor
    (ratio ≈ 1.0); the paper's 5 Euler steps miss the mode weights (≈ 0.56/0.28/0.17 for 0.5/0.3/0.2), ratio ≈ 1.6
    (1.3–1.9 over grids and SDEs), and more annealing levels do not fix it: each level restarts from the ODE."""
    d, n = 8, 1000
    g = torch.Generator().manual_seed(3)
    means = torch.zeros(3, d, dtype=torch.float64)
    means[0, 0], means[1, 1], means[2, :2] = 4.0, -4.0, torch.tensor([-3.0, 3.0], dtype=torch.float64)
    prior = GaussianMixture(means, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), 1.0)
    meas = LinearMeasurement(Matrix(torch.randn(2, d, generator=g, dtype=torch.float64)), 1e4)
    y = meas.simulate(prior.sample(1, g), g)
    ref, ref2 = prior.sample(n, g), prior.sample(n, g)
    floor = sliced_wasserstein(ref2, ref, generator=torch.Generator().manual_seed(5))
    ratios = {}
    for K in (10, 5):
        sol = solve(meas, y, prior, DAPS(ode_steps=K, langevin_steps=20), sde=VPSDE(), n=n, steps=20, seed=4)
        ratios[K] = sliced_wasserstein(sol.samples[0], ref, generator=torch.Generator().manual_seed(5)) / floor
    print(f"\n[daps prior] SW / floor ({floor:.4f}): 10 ODE steps {ratios[10]:.2f} (tol 1.5), 5 ODE steps "
          f"{ratios[5]:.2f}")
    assert ratios[10] <= 1.5
    assert ratios[5] > ratios[10]


def test_solver_call_nfe_callback_and_noiseless_default_beta():
    prior, mu, Sigma, A, meas, y, pm, pC = _problem()
    sde = VPSDE()
    den = prior.score_model(sde)
    noiseless = LinearMeasurement(Matrix(A), 0.0)
    solver = DAPS(ode_steps=2, langevin_steps=3)
    assert solver.beta(noiseless) == NOISELESS_SIGMA and solver.beta(meas) == 0.3
    assert DAPS(likelihood_sigma=0.05).beta(meas) == 0.05
    calls = []
    g = torch.Generator().manual_seed(0)
    x = sde.prior_sampling((5, 6), g, dtype=torch.float64)
    ts = default_timesteps(sde, 4)
    out = solver(den, sde, noiseless, y.expand(5, -1), x, ts, generator=g,
                 callback=lambda i, t, state, x0: calls.append((i, t, state.shape, bool(torch.equal(state, x0)))))
    assert out.nfe == 8 and out.samples.shape == (5, 6) and torch.isfinite(out.samples).all()
    assert [c[0] for c in calls] == [0, 1, 2, 3] and calls[-1][3] and not calls[0][3]
    assert [c[1] for c in calls] == pytest.approx(ts[1:].tolist())


def test_noise_level_timesteps_give_the_papers_edm_grid():
    for sde in (VPSDE(), VESDE(0.01, 50.0)):
        ts = noise_level_timesteps(sde, 200, sigma_max=100.0, sigma_min=0.1)
        sig = _ratio(sde, ts)
        assert ts.shape == (201,) and bool((ts[1:] < ts[:-1]).all())
        assert sig[0].item() == pytest.approx(min(100.0, _ratio(sde, torch.tensor(1.0)).item()), rel=1e-9)
        assert sig[-1].item() == pytest.approx(0.1, rel=1e-9)
        root = sig ** (1 / 7)
        assert torch.allclose(root[1:] - root[:-1], (root[1] - root[0]).expand(200), rtol=1e-6)


def test_runs_with_the_shipped_photos_model():
    from invsgm.data import photos_test_images
    from invsgm.pretrained import load_pretrained, pretrained_root, to_model_space

    if not (pretrained_root() / "photos_score").exists():
        pytest.skip("photos_score is not shipped in this checkout")
    model = load_pretrained("photos_score")
    x = to_model_space(photos_test_images(1), model.card)
    meas = LinearMeasurement(AvgPool(2, (3, 32, 32)), 0.05)
    y = meas.simulate(x, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    sol = solve(meas, y, model, DAPS(ode_steps=2, langevin_steps=5), n=1, steps=3, seed=0)
    print(f"\n[daps photos] 3 levels x 2 ODE steps: {time.perf_counter() - start:.2f} s, nfe {sol.nfe}, "
          f"residual ‖Ax − y‖/√m {(meas.operator(sol.samples[:, 0]) - y).pow(2).mean().sqrt().item():.3f}")
    assert sol.samples.shape == (1, 1, 3, 32, 32) and torch.isfinite(sol.samples).all()
    assert sol.nfe == 6


def test_bad_input_raises():
    with pytest.raises(ValueError, match="linear measurement"):
        DAPS().check(ClassLabel(type("C", (), {"log_prob": lambda self, x, t, y: x})()))
    with pytest.raises(ValueError, match="ode_steps"):
        DAPS(ode_steps=0)
    with pytest.raises(ValueError, match="langevin_steps"):
        DAPS(langevin_steps=-1)
    with pytest.raises(ValueError, match="lr"):
        DAPS(lr=0.0)
    with pytest.raises(ValueError, match="lr_min_ratio"):
        DAPS(lr_min_ratio=1.5)
    with pytest.raises(ValueError, match="likelihood_sigma"):
        DAPS(likelihood_sigma=-1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        noise_level_timesteps(VESDE(0.01, 50.0), 10, sigma_max=0.05, sigma_min=0.1)
