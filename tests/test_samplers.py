"""Samplers against Gaussian mixtures whose diffused scores are exact (``GaussianMixture.score_model``).

With the exact score, every sampler's output must follow the mixture up to its discretisation error:
component weights, per-component means and covariances, and the sliced-Wasserstein distance to exact
samples compared with the distance between two exact sample sets (the Monte-Carlo floor).
"""
from __future__ import annotations

import functools
import math

import pytest
import torch

from invsgm.priors import GaussianMixture
from invsgm.sampling import (
    CORRECTORS, PREDICTORS, ODESample, ancestral_sampling, annealed_langevin, default_timesteps,
    euler_maruyama, langevin, no_predictor, reverse_diffusion, sample_ode, sample_ode_adaptive, sample_pc,
)
from invsgm.sde import SDE, SubVPSDE, VESDE, VPSDE
from invsgm.stats import sliced_wasserstein

DTYPE = torch.float64


SIGMA_MAX = 10.0  # ≈ the diameter (largest pairwise distance) of both mixtures' samples, 8–9


# --- mixtures -------------------------------------------------------------------------------------
def _rotated(eigvals: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Q diag(eigvals) Qᵀ with a random rotation Q."""
    q, _ = torch.linalg.qr(torch.randn(len(eigvals), len(eigvals), generator=g, dtype=DTYPE))
    return q @ torch.diag(eigvals) @ q.T


def _centred(means: torch.Tensor, weights: torch.Tensor, covs: torch.Tensor) -> GaussianMixture:
    """The mixture shifted to zero mean, like normalised data: VE's prior N(0, σ_max² I) ignores the
    data mean, which at σ_max ≈ diameter would otherwise bias component weights by ~0.01."""
    return GaussianMixture(means - (weights[:, None] * means).sum(0), weights, covs)


@functools.cache
def mixture(dim: int) -> GaussianMixture:
    """2-D: 6 components on a hexagon of radius 3 (neighbours 3 apart), full covariances with
    eigenvalues 0.03–0.18. 16-D: 5 components at distance 4 from the origin (≥ 4.5 apart), full
    covariances with eigenvalues 0.03–0.23. Unequal weights in both."""
    g = torch.Generator().manual_seed(dim)
    if dim == 2:
        angles = torch.arange(6, dtype=DTYPE) * math.pi / 3
        means = 3.0 * torch.stack([angles.cos(), angles.sin()], 1)
        weights = torch.tensor([0.30, 0.22, 0.16, 0.14, 0.10, 0.08], dtype=DTYPE)
        eig = torch.stack([0.08 + 0.10 * torch.rand(6, generator=g, dtype=DTYPE),
                           0.03 + 0.03 * torch.rand(6, generator=g, dtype=DTYPE)], 1)
    else:
        means = torch.randn(5, dim, generator=g, dtype=DTYPE)
        means = 4.0 * means / means.norm(dim=1, keepdim=True)
        weights = torch.tensor([0.35, 0.25, 0.18, 0.12, 0.10], dtype=DTYPE)
        eig = 0.03 + 0.2 * torch.rand(5, dim, generator=g, dtype=DTYPE)
    return _centred(means, weights, torch.stack([_rotated(e, g) for e in eig]))


def make_sde(name: str) -> SDE:
    return {"ve": lambda: VESDE(sigma_min=0.01, sigma_max=SIGMA_MAX), "vp": VPSDE, "subvp": SubVPSDE}[name]()


# --- comparison with exact samples ----------------------------------------------------------------
N_REFS, N_FLOOR_PAIRS = 4, 8
SW_FACTOR = 1.5  # an exact sampler scores 1.0 ± 0.16 (measured over 40 exact sets)
MEAN_Z, COV_Z = 4.5, 5.0  # per-component mean / covariance errors in standard errors
VAR_BIAS = 0.03  # allowed discretisation bias of the pooled whitened variance (see check_mixture)


def _sw(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a, b, n_projections=256, generator=torch.Generator().manual_seed(5))


@functools.cache
def references(dim: int, n: int) -> tuple[list[torch.Tensor], float]:
    """N_REFS exact sample sets of size n and the floor: mean SW between N_FLOOR_PAIRS exact pairs."""
    mix = mixture(dim)
    sets = [mix.sample(n, torch.Generator().manual_seed(10_000 + i)) for i in range(N_REFS + 2 * N_FLOOR_PAIRS)]
    refs, others = sets[:N_REFS], sets[N_REFS:]
    floor = sum(_sw(others[2 * i], others[2 * i + 1]) for i in range(N_FLOOR_PAIRS)) / N_FLOOR_PAIRS
    return refs, floor


def check_mixture(label: str, x: torch.Tensor, mix: GaussianMixture) -> None:
    """Assert x follows ``mix``; print the figures.

    - weights (samples assigned to argmax responsibilities): max |ŵ_k − w_k| ≤ 4 binomial std of the
      largest weight (0.029 at n = 4000 in 2-D, 0.043 at n = 2000 in 16-D);
    - whitened errors y = L_k⁻¹(x − μ_k) (Σ_k = L_k L_kᵀ): |mean(y)| ≤ MEAN_Z/√n_k per coordinate and
      |cov(y) − I| ≤ COV_Z √((1+δ_ij)/n_k) per entry;
    - pooled whitened variance mean(y²) within VAR_BIAS + 3 √(2/(n d)) of 1 (discretisation bias at
      the step counts used: reverse diffusion +1 %, ancestral −2.5 % (VP, N = 1000), PC +3 %);
    - mean SW to N_REFS exact sets ≤ SW_FACTOR × the exact-vs-exact floor.
    """
    n, d = x.shape
    assert torch.isfinite(x).all(), f"{label}: non-finite samples"
    k = mix.responsibilities(x).argmax(1)
    w_hat = torch.bincount(k, minlength=mix.num_components).to(DTYPE) / n
    w_err = (w_hat - mix.weights).abs().max().item()
    w_tol = 4 * math.sqrt((mix.weights * (1 - mix.weights)).max().item() / n)
    chol = torch.linalg.cholesky(mix.covariance_matrices())
    eye = torch.eye(d, dtype=DTYPE)
    mean_z = cov_z = sq_sum = 0.0
    for j in range(mix.num_components):
        xj = x[k == j]
        nj = xj.shape[0]
        y = torch.linalg.solve_triangular(chol[j], (xj - mix.means[j]).T, upper=False).T
        m = y.mean(0)
        c = (y - m).T @ (y - m) / (nj - 1)
        mean_z = max(mean_z, (m.abs() * math.sqrt(nj)).max().item())
        cov_z = max(cov_z, ((c - eye).abs() * math.sqrt(nj) / (1 + eye).sqrt()).max().item())
        sq_sum += y.pow(2).sum().item()
    pooled_var = sq_sum / (n * d)
    var_tol = VAR_BIAS + 3 * math.sqrt(2 / (n * d))
    refs, floor = references(d, n)
    sw = sum(_sw(x, r) for r in refs) / len(refs)
    print(f"\n  {label:34s} n={n} |w err| {w_err:.4f} (≤{w_tol:.3f})  mean z {mean_z:.2f} (≤{MEAN_Z})  "
          f"cov z {cov_z:.2f} (≤{COV_Z})  pooled var {pooled_var:.4f} (1±{var_tol:.3f})  "
          f"SW {sw:.4f} = {sw / floor:.2f}× floor {floor:.4f} (≤{SW_FACTOR})", end="")
    assert w_err <= w_tol, f"{label}: weights {w_hat.tolist()} vs {mix.weights.tolist()}"
    assert mean_z <= MEAN_Z, f"{label}: component means off by {mean_z:.2f} standard errors"
    assert cov_z <= COV_Z, f"{label}: component covariances off by {cov_z:.2f} standard errors"
    assert abs(pooled_var - 1) <= var_tol, f"{label}: pooled whitened variance {pooled_var:.4f}"
    assert sw <= SW_FACTOR * floor, f"{label}: SW {sw:.4f} > {SW_FACTOR} × floor {floor:.4f}"


# --- the sampler matrix ---------------------------------------------------------------------------
SAMPLERS = ["euler_maruyama", "reverse_diffusion", "ancestral_sampling", "pc_langevin", "ode_rk45", "ode_rk4"]
FAST = {"n": {2: 4000, 16: 2000}, "n_pred": 1000, "n_pc": 500, "n_ode": 50}
SLOW = {"n": {2: 8000, 16: 4000}, "n_pred": 2000, "n_pc": 1000, "n_ode": 100}


def run_sampler(sampler: str, sde: SDE, mix: GaussianMixture, n: int, cfg: dict, seed: int = 0) -> torch.Tensor:
    """Draw n samples from the prior of ``sde`` and run ``sampler`` with the exact mixture score."""
    score = mix.score_model(sde)
    g = torch.Generator().manual_seed(seed)
    x = sde.prior_sampling((n, mix.dim), generator=g, dtype=DTYPE)
    if sampler in ("euler_maruyama", "reverse_diffusion", "ancestral_sampling"):
        return sample_pc(score, sde, x, default_timesteps(sde, cfg["n_pred"]), predictor=PREDICTORS[sampler],
                         corrector=None, generator=g)
    if sampler == "pc_langevin":
        return sample_pc(score, sde, x, default_timesteps(sde, cfg["n_pc"]), predictor=reverse_diffusion,
                         corrector=langevin, snr=0.16, generator=g)
    if sampler == "pc_annealed_langevin":
        return sample_pc(score, sde, x, default_timesteps(sde, cfg["n_pc"]), predictor=reverse_diffusion,
                         corrector=annealed_langevin, snr=0.16, generator=g)
    if sampler == "ode_rk45":
        out = sample_ode_adaptive(score, sde, x, rtol=1e-5, atol=1e-5)
        return out.x
    return sample_ode(score, sde, x, default_timesteps(sde, cfg["n_ode"]), method="rk4")


@pytest.mark.parametrize("dim", [2, 16])
@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_reproduces_mixture(sampler: str, sde_name: str, dim: int) -> None:
    mix, cfg = mixture(dim), FAST
    x = run_sampler(sampler, make_sde(sde_name), mix, cfg["n"][dim], cfg)
    check_mixture(f"{sampler}/{sde_name}/{dim}-D", x, mix)


def test_annealed_langevin_corrector_reproduces_mixture() -> None:
    mix = mixture(2)
    x = run_sampler("pc_annealed_langevin", make_sde("ve"), mix, FAST["n"][2], FAST)
    check_mixture("pc_annealed_langevin/ve/2-D", x, mix)


@pytest.mark.slow
@pytest.mark.parametrize("dim", [2, 16])
@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("sampler", SAMPLERS + ["pc_annealed_langevin"])
def test_sampler_reproduces_mixture_extended(sampler: str, sde_name: str, dim: int) -> None:
    mix, cfg = mixture(dim), SLOW
    x = run_sampler(sampler, make_sde(sde_name), mix, cfg["n"][dim], cfg, seed=1)
    check_mixture(f"{sampler}/{sde_name}/{dim}-D (extended)", x, mix)


def test_exact_samples_pass_the_checks() -> None:
    """The acceptance criteria themselves: an exact sample set passes them."""
    for dim in (2, 16):
        mix = mixture(dim)
        diameter = torch.pdist(references(dim, FAST["n"][dim])[0][0]).max().item()
        print(f"\n  {dim}-D mixture: sample diameter {diameter:.2f}, VE sigma_max {SIGMA_MAX}", end="")
        assert diameter <= SIGMA_MAX <= 1.5 * diameter
        check_mixture(f"exact samples/{dim}-D", mix.sample(FAST["n"][dim], torch.Generator().manual_seed(3)), mix)


# --- single steps against their closed forms ------------------------------------------------------
def _small_problem(sde: SDE, n: int = 8):
    mix = mixture(2)
    score = mix.score_model(sde)
    x = sde.prior_sampling((n, 2), torch.Generator().manual_seed(0), dtype=DTYPE) * 0.3
    return score, x, torch.full((n,), 0.6, dtype=DTYPE), torch.full((n,), 0.59, dtype=DTYPE)


def test_ancestral_step_matches_smld_and_ddpm() -> None:
    """VE: x + (σ_t² − σ_s²) s, std √(σ_s²(σ_t² − σ_s²)/σ_t²); VP: (x + β s)/√(1 − β), std √(β̃)."""
    ve = VESDE(sigma_min=0.01, sigma_max=SIGMA_MAX)
    score, x, t, s = _small_problem(ve)
    new, mean = ancestral_sampling(score, ve, x, t, s, torch.Generator().manual_seed(1))
    sig_t, sig_s = ve.sigma(t)[:, None], ve.sigma(s)[:, None]
    torch.testing.assert_close(mean, x + (sig_t ** 2 - sig_s ** 2) * score(x, t))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    torch.testing.assert_close(new, mean + (sig_s ** 2 * (sig_t ** 2 - sig_s ** 2) / sig_t ** 2).sqrt() * z)

    vp = VPSDE()
    score, x, t, s = _small_problem(vp)
    new, mean = ancestral_sampling(score, vp, x, t, s, torch.Generator().manual_seed(1))
    abar_t, abar_s = (2 * vp.log_mean_coeff(t)).exp()[:, None], (2 * vp.log_mean_coeff(s)).exp()[:, None]
    beta = 1 - abar_t / abar_s
    torch.testing.assert_close(mean, (x + beta * score(x, t)) / (1 - beta).sqrt())
    beta_tilde = beta * (1 - abar_s) / (1 - abar_t)
    torch.testing.assert_close(new, mean + beta_tilde.sqrt() * z)


def test_euler_maruyama_and_reverse_diffusion_steps() -> None:
    """EM: x + (f − g² s)(s − t) + g √(t − s) z; RD (VE): x + (σ_t² − σ_s²) s + √(σ_t² − σ_s²) z."""
    vp = VPSDE()
    score, x, t, s = _small_problem(vp)
    new, mean = euler_maruyama(score, vp, x, t, s, torch.Generator().manual_seed(2))
    beta, dt = vp.beta(t)[:, None], (s - t)[:, None]
    torch.testing.assert_close(mean, x + (-0.5 * beta * x - beta * score(x, t)) * dt)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    torch.testing.assert_close(new, mean + (beta * -dt).sqrt() * z)

    ve = VESDE(sigma_min=0.01, sigma_max=SIGMA_MAX)
    score, x, t, s = _small_problem(ve)
    new, mean = reverse_diffusion(score, ve, x, t, s, torch.Generator().manual_seed(2))
    dvar = (ve.sigma(t) ** 2 - ve.sigma(s) ** 2)[:, None]
    torch.testing.assert_close(mean, x + dvar * score(x, t))
    torch.testing.assert_close(new, mean + dvar.sqrt() * z)


def test_corrector_step_sizes() -> None:
    """Langevin: ε = 2α (snr ‖z‖/‖s‖)² with batch-mean norms; annealed: ε = 2α (snr σ_t)²; α = 1 − β/N on VP."""
    for sde in (VESDE(sigma_min=0.01, sigma_max=SIGMA_MAX), VPSDE(), SubVPSDE()):
        score, x, t, _ = _small_problem(sde)
        alpha = 1 - sde.beta(t)[:, None] / sde.N if isinstance(sde, VPSDE) else 1.0
        grad = score(x, t)
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
        new, mean = langevin(score, sde, x, t, torch.Generator().manual_seed(4), snr=0.2, n_steps=1)
        eps = 2 * alpha * (0.2 * z.norm(dim=1).mean() / grad.norm(dim=1).mean()) ** 2
        torch.testing.assert_close(mean, x + eps * grad)
        torch.testing.assert_close(new, mean + (2 * eps).sqrt() * z)
        new, mean = annealed_langevin(score, sde, x, t, torch.Generator().manual_seed(4), snr=0.2, n_steps=1)
        eps = 2 * alpha * (0.2 * sde.marginal_coeffs(t)[1][:, None]) ** 2
        torch.testing.assert_close(mean, x + eps * grad)
        torch.testing.assert_close(new, mean + (2 * eps).sqrt() * z)


def test_fixed_step_ode_converges_to_rk45_at_fourth_order() -> None:
    """RK4 errors against a tight RK45 solution shrink ≈ 16× per halving of the step (≥ 8×, i.e. order ≥ 3,
    asserted)."""
    sde = VPSDE()
    score = mixture(2).score_model(sde)
    x = sde.prior_sampling((200, 2), torch.Generator().manual_seed(0), dtype=DTYPE)
    ref = sample_ode_adaptive(score, sde, x, rtol=1e-9, atol=1e-9).x
    errs = [(sample_ode(score, sde, x, default_timesteps(sde, k)) - ref).abs().max().item() for k in (50, 100, 200)]
    print(f"\n  RK4 max error vs RK45(1e-9) at 50/100/200 steps: {errs}", end="")
    assert errs[0] / errs[1] >= 8 and errs[1] / errs[2] >= 8 and errs[0] < 1e-3


# --- contract: randomness, hooks, counts ----------------------------------------------------------
def _tiny(sde: SDE | None = None, n: int = 64, seed: int = 0):
    sde = sde or VESDE(sigma_min=0.01, sigma_max=SIGMA_MAX)
    score = mixture(2).score_model(sde)
    return sde, score, sde.prior_sampling((n, 2), torch.Generator().manual_seed(seed), dtype=DTYPE)


@pytest.mark.parametrize("predictor, corrector", [
    ("euler_maruyama", "none"), ("reverse_diffusion", "langevin"), ("ancestral_sampling", "annealed_langevin"),
    ("none", "langevin"),
])
def test_seeded_generator_is_the_only_randomness(predictor: str, corrector: str) -> None:
    sde, score, x = _tiny()
    ts = default_timesteps(sde, 20)

    def run(seed: int) -> torch.Tensor:
        return sample_pc(score, sde, x, ts, predictor=PREDICTORS[predictor], corrector=CORRECTORS[corrector],
                         generator=torch.Generator().manual_seed(seed))

    torch.manual_seed(123)
    a = run(1)
    global_draw = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), global_draw), "the sampler drew from torch's global RNG"
    assert torch.equal(a, run(1)), "same seed, different samples"
    assert not torch.allclose(a, run(2)), "different seeds, same samples"


def test_callbacks_are_called_once_per_step() -> None:
    sde, score, x = _tiny()
    ts = default_timesteps(sde, 17)
    for sample in (lambda cb: sample_pc(score, sde, x, ts, callback=cb),
                   lambda cb: sample_ode(score, sde, x, ts, method="heun", callback=cb)):
        calls = []
        sample(lambda i, t, y: calls.append((i, t, y.shape)))
        assert [c[0] for c in calls] == list(range(17))
        torch.testing.assert_close(torch.tensor([c[1] for c in calls], dtype=DTYPE), ts[1:])
    calls = []
    sample_ode_adaptive(score, sde, x, callback=lambda i, t, y: calls.append((i, t)))
    assert [c[0] for c in calls] == list(range(len(calls))) and len(calls) > 1
    assert math.isclose(calls[-1][1], sde.eps, rel_tol=1e-9)


def test_project_hook_constrains_every_update() -> None:
    sde, score, x = _tiny(VPSDE())
    ts = default_timesteps(sde, 10)
    calls = []

    def project(y: torch.Tensor, t: torch.Tensor, generator) -> torch.Tensor:
        calls.append(t)
        y = y.clone()
        y[:, 0] = 0.0
        return y

    out = sample_pc(score, sde, x, ts, predictor=ancestral_sampling, corrector=langevin, project=project,
                    denoise=False, generator=torch.Generator().manual_seed(0))
    assert (out[:, 0] == 0).all() and (out[:, 1] != 0).all()
    assert len(calls) == 2 * 10 + 1  # after each predictor and corrector update, and on the returned x_mean
    assert all(c.shape == (64,) for c in calls)
    torch.testing.assert_close(calls[0], ts[1].expand(64).to(DTYPE))
    out = sample_pc(score, sde, x, ts, predictor=euler_maruyama, corrector=None, project=project,
                    denoise=False, generator=torch.Generator().manual_seed(0))
    assert (out[:, 0] == 0).all()


def test_rk45_reports_nfe_and_tighter_tolerance_costs_more() -> None:
    sde, score, x = _tiny(SubVPSDE(), n=256)
    loose = sample_ode_adaptive(score, sde, x, rtol=1e-3, atol=1e-3)
    tight = sample_ode_adaptive(score, sde, x, rtol=1e-6, atol=1e-6)
    raw = sample_ode_adaptive(score, sde, x, rtol=1e-3, atol=1e-3, denoise=False)
    print(f"\n  RK45 nfe at rtol 1e-3: {loose.nfe}, at 1e-6: {tight.nfe}", end="")
    assert isinstance(loose, ODESample) and 0 < loose.nfe < tight.nfe
    assert loose.nfe == raw.nfe + 1  # the Tweedie denoising evaluation is counted
    assert (loose.x - tight.x).abs().max() < 0.05


def test_denoise_is_tweedie_at_the_last_time() -> None:
    sde, score, x = _tiny(VESDE(sigma_min=0.01, sigma_max=SIGMA_MAX))
    ts = torch.tensor([1.0, 0.5, 0.2], dtype=DTYPE)
    raw = sample_ode(score, sde, x, ts, method="euler", denoise=False)
    den = sample_ode(score, sde, x, ts, method="euler", denoise=True)
    t_end = ts[-1].expand(x.shape[0])
    torch.testing.assert_close(den, raw + sde.sigma(t_end)[:, None] ** 2 * score(raw, t_end))


def test_progress_bar_and_tables() -> None:
    sde, score, x = _tiny(n=8)
    ts = default_timesteps(sde, 5)
    assert sample_pc(score, sde, x, ts, progress=True).shape == x.shape
    assert sample_ode(score, sde, x, ts, progress=True).shape == x.shape
    assert sample_ode_adaptive(score, sde, x, rtol=1e-3, atol=1e-3, progress=True).x.shape == x.shape
    assert set(PREDICTORS) == {"euler_maruyama", "reverse_diffusion", "ancestral_sampling", "none"}
    assert PREDICTORS["none"] is no_predictor and CORRECTORS["none"] is None
    assert set(CORRECTORS) == {"langevin", "annealed_langevin", "none"}


def test_default_timesteps() -> None:
    ve, vp = VESDE(), VPSDE()
    ts = default_timesteps(ve, 10)
    assert ts.shape == (11,) and ts[0] == 1.0 and math.isclose(ts[-1].item(), 1e-5)
    assert (ts[1:] < ts[:-1]).all()
    assert math.isclose(default_timesteps(vp, 4)[-1].item(), 1e-3)
    assert default_timesteps(vp, 4, eps=0.1)[-1].item() == pytest.approx(0.1)


@pytest.mark.parametrize("call, name", [
    (lambda s, f, x: sample_pc(f, s, x, torch.tensor([[1.0, 0.5]])), "timesteps"),
    (lambda s, f, x: sample_pc(f, s, x, torch.tensor([0.5, 1.0])), "timesteps"),
    (lambda s, f, x: sample_pc(f, s, x, torch.tensor([1.0, 0.5, 0.5])), "timesteps"),
    (lambda s, f, x: sample_pc(f, s, x, torch.tensor([1.5, 0.5])), "timesteps"),
    (lambda s, f, x: sample_pc(f, s, x, torch.tensor([1.0, -0.1])), "timesteps"),
    (lambda s, f, x: sample_pc(f, s, x, torch.tensor([1.0])), "timesteps"),
    (lambda s, f, x: sample_ode(f, s, x, [0.1, 0.9]), "timesteps"),
    (lambda s, f, x: sample_pc(f, s, x, [1.0, 0.5], snr=0.0), "snr"),
    (lambda s, f, x: sample_pc(f, s, x, [1.0, 0.5], snr=-1.0), "snr"),
    (lambda s, f, x: sample_pc(f, s, x, [1.0, 0.5], n_corrector_steps=-1), "n_corrector_steps"),
    (lambda s, f, x: sample_pc(f, s, x, [1.0, 0.5], n_corrector_steps=1.5), "n_corrector_steps"),
    (lambda s, f, x: sample_pc(f, s, x, [1.0, 0.5], predictor="euler_maruyama"), "predictor"),
    (lambda s, f, x: sample_pc(f, s, x, [1.0, 0.5], corrector="langevin"), "corrector"),
    (lambda s, f, x: sample_pc(f, s, x.long(), [1.0, 0.5]), "x"),
    (lambda s, f, x: sample_ode(f, s, x, [1.0, 0.5], method="rk5"), "method"),
    (lambda s, f, x: sample_ode_adaptive(f, s, x, t_start=1.5), "t_start"),
    (lambda s, f, x: sample_ode_adaptive(f, s, x, t_start=0.5, t_end=0.6), "t_end"),
    (lambda s, f, x: sample_ode_adaptive(f, s, x, rtol=0.0), "rtol"),
    (lambda s, f, x: sample_ode_adaptive(f, s, x, atol=-1.0), "atol"),
    (lambda s, f, x: default_timesteps(s, 0), "n_steps"),
    (lambda s, f, x: default_timesteps(s, 10, eps=1.0), "eps"),
])
def test_bad_arguments_raise_value_error_naming_them(call, name: str) -> None:
    sde, score, x = _tiny(n=4)
    with pytest.raises(ValueError, match=name):
        call(sde, score, x)
