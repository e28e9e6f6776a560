"""DDRM (invsgm.solvers.ddrm): exact output law on Gaussians, noiseless consistency, prior recovery, photos model.

With the exact denoiser of a Gaussian prior N(μ, Σ), x̂₀ is affine in x_t and every DDRM step is an affine map
plus Gaussian noise, so DDRM's output is Gaussian with a mean and covariance computed here by propagating
them through the update with dense matrices (``_ddrm_law``, written from the paper's equations independently
of the solver). The samples must match that law to Monte-Carlo accuracy; how far the law is from the exact
posterior is DDRM's bias by design (20 large steps, x̂₀ in place of a draw of x₀, η < 1), pinned below.
"""
from __future__ import annotations

import math

import pytest
import torch

from invsgm.denoisers import Denoiser, Evaluation
from invsgm.measurement import ClassLabel, LinearMeasurement
from invsgm.operators import AvgPool, Matrix, box_mask
from invsgm.operators.base import LinearOperator
from invsgm.priors import GaussianMixture
from invsgm.sampling.timesteps import default_timesteps, initial_std
from invsgm.sde import VESDE, VPSDE
from invsgm.solve import solve
from invsgm.solvers import DDRM
from invsgm.stats import sliced_wasserstein

F64 = torch.float64
SDES = {"vp": VPSDE(), "ve": VESDE(0.01, 20.0)}


def _ddrm_law(mu, var, A, y, sigma_y, sde, ts, eta=0.85, eta_b=1.0):
    """Mean and covariance of DDRM's output for the prior N(mu, diag(var)), y = A x + σ_y ε, grid ts."""
    d = mu.numel()
    U, s, Vh = torch.linalg.svd(A, full_matrices=True)  # A = U diag(s) Vh; spectral coords c = Vh x
    k = s.numel()
    obs = torch.zeros(d, dtype=torch.bool)
    obs[:k] = s > 1e-12
    s_d = torch.ones(d, dtype=F64)
    s_d[:k] = torch.where(obs[:k], s, torch.ones_like(s))
    ybar = torch.zeros(d, dtype=F64)
    ybar[:k] = (U.T @ y)[:k]
    ybar = torch.where(obs, ybar / s_d, torch.zeros_like(ybar))
    nsr = torch.where(obs, sigma_y / s_d, torch.zeros_like(s_d))
    Sigma, I = torch.diag(var), torch.eye(d, dtype=F64)

    def coeffs(t):
        a, st = sde.marginal_coeffs(torch.tensor([t], dtype=F64))
        return a.item(), st.item()

    a, st = coeffs(ts[0])
    sb = st / a
    init = obs & (nsr < sb)  # x̄_T: ȳ + √(σ̄_T² − nsr²) z where s σ̄_T > σ_y, else σ̄_T z
    mean = torch.where(init, ybar, torch.zeros_like(ybar))
    cov = torch.diag(torch.where(init, sb ** 2 - nsr ** 2, torch.full_like(nsr, sb ** 2)))
    c1 = math.sqrt(1 - eta ** 2)
    n = len(ts) - 1
    for i in range(n + 1):
        G = a * Sigma @ torch.linalg.inv(a * a * Sigma + st * st * I)  # x̂₀ = μ + G (x − a μ)
        F = a * Vh @ G @ Vh.T  # c = F x̄ + f with x = a Vhᵀ x̄
        f = Vh @ (mu - a * G @ mu)
        if i == n:
            a_s, sb_s = 1.0, 0.0
        else:
            a_s, st_s = coeffs(ts[i + 1])
            sb_s = st_s / a_s
        r = sb_s / sb if sb > 0 else 0.0
        strong, miss = obs & (sb_s >= nsr), ~obs
        weak = obs & ~strong
        nsr_w = torch.where(weak, nsr, torch.ones_like(nsr))
        on_x = torch.where(miss, c1 * r, 0.0) * torch.ones(d, dtype=F64)
        on_c = torch.where(miss, 1 - c1 * r, torch.where(weak, 1 - c1 * sb_s / nsr_w, 1 - eta_b * torch.ones(d, dtype=F64)))
        const = torch.where(weak, c1 * sb_s / nsr_w * ybar, torch.where(strong, eta_b * ybar, torch.zeros(d, dtype=F64)))
        std = torch.where(strong, (sb_s ** 2 - (eta_b * nsr) ** 2).clamp_min(0).sqrt(), eta * sb_s * torch.ones(d, dtype=F64))
        M = torch.diag(on_x) + torch.diag(on_c) @ F
        mean = M @ mean + on_c * f + const
        cov = M @ cov @ M.T + torch.diag(std ** 2)
        a, sb = a_s, sb_s
        st = sb * a
    return Vh.T @ mean, Vh.T @ cov @ Vh


def _distances(mean, cov, ref_mean, ref_cov):
    """(‖L⁻¹(m − m_ref)‖, ‖L⁻¹ C L⁻ᵀ − I‖_F) with ref_cov = L Lᵀ: whitened mean and covariance errors."""
    L = torch.linalg.cholesky(ref_cov)
    dm = torch.linalg.solve_triangular(L, (mean - ref_mean)[:, None], upper=False).norm().item()
    Li = torch.linalg.inv(L)
    dc = (Li @ cov @ Li.T - torch.eye(len(mean), dtype=F64)).norm().item()
    return dm, dc


def _gaussian_problem(sigma_y, d=6, m=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=g, dtype=F64)
    var = 0.3 + 1.5 * torch.rand(d, generator=g, dtype=F64)
    A = torch.randn(m, d, generator=g, dtype=F64) / math.sqrt(d)
    prior = GaussianMixture(mu[None], None, var[None])
    x = prior.sample(1, g)
    y = A @ x[0] + sigma_y * torch.randn(m, generator=g, dtype=F64)
    return mu, var, A, y, prior


# law vs exact posterior at the paper's 20 evaluations (steps=19), η = 0.85, η_b = 1: DDRM's bias by design.
# (whitened mean error, whitened covariance error); the law's covariance is 0.29–0.70 (VP), 0.21–0.63 (VE) of
# the posterior's along its eigen-directions: x̂₀ replaces a draw of x₀ in each of 20 large steps.
PINNED_BIAS = {"vp": (0.260, 1.156), "ve": (0.628, 1.479)}


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_closed_form_gaussian_matches_ddrm_law_and_pinned_bias(kind):
    sde, sigma_y, n, d = SDES[kind], 0.3, 4000, 6
    mu, var, A, y, prior = _gaussian_problem(sigma_y, d=d)
    sol = solve(LinearMeasurement(Matrix(A), sigma_y), y[None], prior, DDRM(), sde=sde, n=n, steps=19, seed=1)
    assert sol.nfe == 20  # one evaluation per grid time
    S = sol.samples[0]
    law_m, law_c = _ddrm_law(mu, var, A, y, sigma_y, sde, default_timesteps(sde, 19).tolist())
    post = prior.condition(A, y, sigma_y)
    post_m, post_c = post.means[0], post.covariance_matrices()[0]

    # Monte-Carlo tolerances for n Gaussian samples: n‖L⁻¹(m̂ − m)‖² ~ χ²_d, P(χ²_6 > 27.9) = 1e-4;
    # E‖L⁻¹ĈL⁻ᵀ − I‖_F² ≈ d(d+1)/n with χ²-like spread over d(d+1)/2 = 21 terms (99.99% ≈ 2.5× the mean),
    # so 2·√(d(d+1)/n) (4× the mean square) is beyond the 99.99% point.
    tol_m, tol_c = math.sqrt(27.9 / n), 2 * math.sqrt(d * (d + 1) / n)
    dm, dc = _distances(S.mean(0), torch.cov(S.T), law_m, law_c)
    bias_m, bias_c = _distances(law_m, law_c, post_m, post_c)
    sp_m, sp_c = _distances(S.mean(0), torch.cov(S.T), post_m, post_c)
    print(f"\n[ddrm {kind}] samples vs DDRM law: mean {dm:.4f} (tol {tol_m:.4f}), cov {dc:.4f} (tol {tol_c:.4f}); "
          f"law vs posterior (bias): mean {bias_m:.3f}, cov {bias_c:.3f}; samples vs posterior: mean {sp_m:.3f}, "
          f"cov {sp_c:.3f}")
    assert dm <= tol_m and dc <= tol_c
    want_m, want_c = PINNED_BIAS[kind]
    assert bias_m == pytest.approx(want_m, abs=0.005) and bias_c == pytest.approx(want_c, abs=0.005)
    # the samples sit at the law's distance from the posterior, to Monte-Carlo accuracy (same two-sided margins,
    # widened by the posterior/law metric ratio ≤ 1/√0.21 since the errors are measured in the posterior's metric)
    widen = 1 / math.sqrt(0.2)
    assert abs(sp_m - bias_m) <= widen * tol_m and abs(sp_c - bias_c) <= widen * tol_c


def test_late_start_grid_matches_ddrm_law():
    """A grid starting at t_0 = 0.35 (σ̄ ≈ 1 for VP): here the spectral initialisation of x_{t_0} given y matters."""
    sde, sigma_y, n, d = VPSDE(), 0.3, 4000, 6
    mu, var, A, y, prior = _gaussian_problem(sigma_y, d=d, seed=7)
    ts = torch.linspace(0.35, sde.eps, 11, dtype=F64)
    sol = solve(LinearMeasurement(Matrix(A), sigma_y), y[None], prior, DDRM(), sde=sde, n=n, timesteps=ts, seed=8)
    S = sol.samples[0]
    law_m, law_c = _ddrm_law(mu, var, A, y, sigma_y, sde, ts.tolist())
    dm, dc = _distances(S.mean(0), torch.cov(S.T), law_m, law_c)
    print(f"\n[ddrm] late start t_0 = 0.35: samples vs law mean {dm:.4f}, cov {dc:.4f}")
    assert sol.nfe == 11
    assert dm <= math.sqrt(27.9 / n) and dc <= 2 * math.sqrt(d * (d + 1) / n)  # tolerances as in the closed form


class _Recorder(Denoiser):
    """x̂₀ = 0 everywhere; keeps the states it was called with."""

    def __init__(self, sde):
        super().__init__(sde)
        self.calls = []

    def _evaluate(self, x, t):
        self.calls.append(x.clone())
        return Evaluation(torch.zeros_like(x), torch.zeros_like(x))


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_initial_state_is_the_papers_p_xT_given_y(kind):
    """x_{t_0} = α V x̄ with x̄_i = ȳ_i + √(σ̄² − σ_y²/s_i²) z_i where s_i σ̄ > σ_y, else σ̄ z_i; z = Vᵀx / initial_std(t_0).
    (The law tests barely see the initialisation: the next step resets the strongly observed coordinates.)"""
    sde = SDES[kind]
    mu, var, A, y, prior = _gaussian_problem(0.3, seed=9)
    A = A.clone()
    A[2] *= 0.02  # its singular value s_3 makes σ_y/s_3 exceed σ̄ at t_0: initialised as unobserved
    U, s, Vh = torch.linalg.svd(A, full_matrices=True)
    t0 = 0.3 if kind == "vp" else 0.65  # σ̄ ≈ 1.2 and 1.4
    ts = torch.tensor([t0, t0 / 3, sde.eps], dtype=F64)
    alpha, std = (c.item() for c in sde.marginal_coeffs(ts[:1]))
    sb = std / alpha
    scale = initial_std(sde, t0)  # the initial state's convention (solve draws x_{t_0} ~ N(0, scale² I))
    x = scale * torch.randn((5, 6), generator=torch.Generator().manual_seed(0), dtype=F64)
    den = _Recorder(sde)
    DDRM()(den, sde, LinearMeasurement(Matrix(A), 0.3), y[None].repeat(5, 1), x, ts,
           generator=torch.Generator().manual_seed(1))
    z = x @ Vh.T / scale
    nsr = 0.3 / s
    assert bool((nsr[:2] < sb).all()) and nsr[2] > sb
    xbar = sb * z
    xbar[:, :2] = (U.T @ y)[:2] / s[:2] + (sb ** 2 - nsr[:2] ** 2).sqrt() * z[:, :2]
    assert torch.allclose(den.calls[0], alpha * xbar @ Vh, atol=1e-10)
    assert len(den.calls) == 3


def test_law_helper_recovers_the_prior_in_the_ddim_limit():
    """Anchor for ``_ddrm_law``: nothing observed, η = 0 (DDIM) and many steps → the prior itself."""
    mu, var = torch.zeros(3, dtype=F64), torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    A, y = torch.zeros(1, 3, dtype=F64), torch.zeros(1, dtype=F64)
    sde = VPSDE()
    m, c = _ddrm_law(mu, var, A, y, 0.0, sde, default_timesteps(sde, 2000).tolist(), eta=0.0)
    assert torch.allclose(c.diagonal() / var, torch.ones(3, dtype=F64), atol=0.01)
    m, c = _ddrm_law(mu, var, A, y, 0.0, sde, default_timesteps(sde, 19).tolist())
    ratio = c.diagonal() / var
    print(f"\n[ddrm] law, nothing observed, defaults: prior variance ratio {ratio.numpy().round(3)}")
    assert bool(((ratio > 0.55) & (ratio < 0.7)).all())  # DDRM at its defaults shrinks the prior (see test below)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_noiseless_consistency_matrix(kind):
    sde, n = SDES[kind], 64
    mu, var, A, y, prior = _gaussian_problem(0.0)
    sol = solve(LinearMeasurement(Matrix(A), 0.0), y[None], prior, DDRM(), sde=sde, n=n, steps=10, seed=2)
    resid = (sol.samples[0] @ A.T - y).norm(dim=1)
    print(f"\n[ddrm {kind}] noiseless Matrix: max ‖Ax − y‖ = {resid.max():.2e}")
    assert bool((resid <= 1e-5).all())
    # with η_b < 1 the observed coordinates are not forced: a measurable residual remains
    sol = solve(LinearMeasurement(Matrix(A), 0.0), y[None], prior, DDRM(eta_b=0.5), sde=sde, n=n, steps=10, seed=2)
    assert (sol.samples[0] @ A.T - y).norm(dim=1).max() > 1e-3


def test_noiseless_consistency_rank_deficient_and_avgpool():
    sde = VPSDE()
    mu, var, A, y, prior = _gaussian_problem(0.0)
    # 4 rows of rank 3: the 4th singular value is round-off (~4e-17) and must count as zero, else float32
    # round-off in Uᵀy divided by it blows the samples up (to ~1e9)
    A3 = torch.cat([A, A[:1] + A[1:2]])
    y3 = (A3 @ prior.sample(1, torch.Generator().manual_seed(3))[0]).float()
    sol = solve(LinearMeasurement(Matrix(A3), 0.0), y3[None], prior, DDRM(), sde=sde, n=32, steps=10, seed=3)
    S = sol.samples[0]
    resid = (S @ A3.T.float() - y3).norm(dim=1)
    assert bool(torch.isfinite(S).all()) and S.abs().max() < 50 and bool((resid <= 1e-5).all())
    # images: 2×2 average pooling (its SVD has a non-trivial V), an image-shaped Gaussian prior
    shape = (1, 4, 4)
    op = AvgPool(2, shape)
    img_prior = GaussianMixture(torch.zeros(1, 16, dtype=F64), None, 1.0)
    x = img_prior.sample(2, torch.Generator().manual_seed(4)).reshape(2, *shape)
    yi = op(x)
    sol = solve(LinearMeasurement(op, 0.0), yi, img_prior, DDRM(), sde=sde, n=8, steps=10, seed=4)
    resid = (op(sol.samples.flatten(0, 1)) - yi.repeat_interleave(8, 0)).flatten(1).norm(dim=1)
    print(f"\n[ddrm] noiseless rank-deficient Matrix (float32) max resid {(S @ A3.T.float() - y3).norm(dim=1).max():.2e}, "
          f"AvgPool max resid {resid.max():.2e}")
    assert bool((resid <= 1e-5).all())


def _mixture(d=8):
    means = torch.zeros(3, d, dtype=F64)
    means[0, 0], means[1, 1], means[2, :2] = 4.0, 4.0, -4.0
    return GaussianMixture(means, torch.tensor([0.5, 0.3, 0.2], dtype=F64), 1.0)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_nothing_observed_gives_the_prior(kind):
    """A = 0 (every spectral coordinate unobserved): DDRM is DDIM with τ = η σ̄_s in the scaled variable.

    η = 0 with many steps is the consistent (DDIM ODE) limit: SW to exact prior samples ≤ 1.5× the floor.
    At the defaults (η = 0.85, 20 evaluations) DDRM shrinks the prior by design; coordinates 2..7, where all
    components are N(0, 1), evolve exactly as a 1-D Gaussian, so their variance must equal ``_ddrm_law``'s.
    """
    sde = VPSDE() if kind == "vp" else VESDE(0.01, 50.0)
    d, n = 8, 1000
    mix = _mixture(d)
    meas = LinearMeasurement(Matrix(torch.zeros(1, d, dtype=F64)), 0.0)
    y = torch.zeros(1, 1, dtype=F64)
    ref = mix.sample(n, torch.Generator().manual_seed(11))
    floor = sum(sliced_wasserstein(mix.sample(n, torch.Generator().manual_seed(12 + j)), ref,
                                   generator=torch.Generator().manual_seed(13)) for j in range(0, 30, 10)) / 3
    sol = solve(meas, y, mix, DDRM(eta=0.0), sde=sde, n=n, steps=100, seed=14)
    sw = sliced_wasserstein(sol.samples[0], ref, generator=torch.Generator().manual_seed(13))
    sol_d = solve(meas, y, mix, DDRM(), sde=sde, n=n, steps=19, seed=15)
    sw_d = sliced_wasserstein(sol_d.samples[0], ref, generator=torch.Generator().manual_seed(13))
    shared = sol_d.samples[0][:, 2:]
    var_hat = shared.pow(2).mean().item()  # known mean 0; 6n values
    _, law_c = _ddrm_law(torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64), torch.zeros(1, 1, dtype=F64),
                         torch.zeros(1, dtype=F64), 0.0, sde, default_timesteps(sde, 19).tolist())
    law_var = law_c.item()
    tol = 4 * math.sqrt(2 / shared.numel())  # 4 standard errors of a variance estimate from 6n N(0, v) values
    print(f"\n[ddrm {kind}] nothing observed: η=0, 100 steps SW/floor = {sw / floor:.2f} (floor {floor:.4f}); "
          f"defaults SW/floor = {sw_d / floor:.2f}, shared-coordinate variance {var_hat:.4f} vs law {law_var:.4f} "
          f"(prior 1, tol {tol:.3f} relative)")
    assert sw <= 1.5 * floor
    assert abs(var_hat / law_var - 1) <= tol
    assert 0.55 < law_var < 0.7  # the pinned bias of the defaults


def test_huge_noise_matches_ddrm_law():
    """σ_y = 1e4 observes almost nothing, but DDRM's weak-data branch keeps the fixed direction (ȳ − c)/(σ_y/s)
    shared by every sample: the output is not the prior. Pinned against the exact law (Gaussian prior)."""
    sde, sigma_y, n, d = VPSDE(), 1e4, 4000, 6
    mu, var, A, y, prior = _gaussian_problem(sigma_y, d=d, seed=5)
    sol = solve(LinearMeasurement(Matrix(A), sigma_y), y[None], prior, DDRM(), sde=sde, n=n, steps=19, seed=6)
    S = sol.samples[0]
    law_m, law_c = _ddrm_law(mu, var, A, y, sigma_y, sde, default_timesteps(sde, 19).tolist())
    dm, dc = _distances(S.mean(0), torch.cov(S.T), law_m, law_c)
    bias_m, bias_c = _distances(law_m, law_c, mu, torch.diag(var))
    print(f"\n[ddrm] σ_y = 1e4: samples vs law mean {dm:.4f}, cov {dc:.4f}; law vs prior mean {bias_m:.3f}, "
          f"cov {bias_c:.3f}")
    assert dm <= math.sqrt(27.9 / n) and dc <= 2 * math.sqrt(d * (d + 1) / n)  # tolerances as in the closed form


def test_callback_and_grid():
    mu, var, A, y, prior = _gaussian_problem(0.1)
    seen = []
    sde = VPSDE()
    ts = default_timesteps(sde, 5)
    den = prior.score_model(sde)
    x = sde.prior_sampling((3, 6), generator=torch.Generator().manual_seed(0), dtype=F64)
    res = DDRM()(den, sde, LinearMeasurement(Matrix(A), 0.1), y[None].repeat(3, 1), x, ts,
                 generator=torch.Generator().manual_seed(1), callback=lambda i, t, xs, x0: seen.append((i, t, xs.shape)))
    assert res.nfe == 6 and res.samples.shape == (3, 6)
    assert [s[0] for s in seen] == list(range(5)) and [s[1] for s in seen] == pytest.approx(ts[1:].tolist())


def test_photos_model_runs():
    from invsgm.data import photos_test_images
    from invsgm.pretrained import load_pretrained, to_model_space

    model = load_pretrained("photos_score")
    img = to_model_space(photos_test_images(1), model.card)
    meas = LinearMeasurement(box_mask((3, 32, 32), 8, 8, 16, 16), 0.0)
    y = meas.simulate(img)
    sol = solve(meas, y, model, DDRM(), n=1, steps=2, seed=0)
    x = sol.samples[:, 0]
    resid = (meas.operator(x) - y).abs().max().item()
    print(f"\n[ddrm] photos_score, box inpainting, 2 steps: nfe {sol.nfe}, max |Ax − y| {resid:.2e}")
    assert sol.samples.shape == (1, 1, 3, 32, 32) and bool(torch.isfinite(sol.samples).all())
    assert sol.nfe == 3 and resid <= 1e-5


class _NoSVD(LinearOperator):
    in_shape = out_shape = (3,)

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y


def test_bad_input():
    with pytest.raises(ValueError, match="eta must"):
        DDRM(eta=1.5)
    with pytest.raises(ValueError, match="eta_b must"):
        DDRM(eta_b=-0.1)
    with pytest.raises(ValueError, match="eta must"):
        DDRM(eta="a lot")
    with pytest.raises(ValueError, match="DDRM needs an operator with an SVD.*_NoSVD"):
        DDRM().check(LinearMeasurement(_NoSVD(), 0.1))
    prior = GaussianMixture(torch.zeros(1, 3, dtype=F64))
    with pytest.raises(ValueError, match="DDRM needs an operator with an SVD"):
        solve(LinearMeasurement(_NoSVD(), 0.1), torch.zeros(1, 3, dtype=F64), prior, DDRM(), sde=VPSDE(), steps=2)

    class _Clf:
        def log_prob(self, x, t, y):
            return torch.zeros(x.shape[0])

    with pytest.raises(ValueError, match="DDRM needs a linear measurement"):
        DDRM().check(ClassLabel(_Clf()))
