"""DiffPIR (invsgm.solvers.diffpir): the update against its exact law on Gaussian priors, the designed bias of
that law against the exact posterior, noiseless consistency, the prior when nothing is observed, the shipped
photos model, the data step against ``op.prox``, and bad input."""
import math

import pytest
import torch

from invsgm.data import photos_test_images
from invsgm.denoisers import as_denoiser
from invsgm.measurement import ClassLabel, Joint, LinearMeasurement
from invsgm.operators import AvgPool, GaussianBlur, Mask, Matrix, random_mask
from invsgm.pretrained import load_pretrained, to_model_space
from invsgm.priors import GaussianMixture
from invsgm.sampling.timesteps import default_timesteps
from invsgm.sde import VESDE, VPSDE
from invsgm.solve import solve
from invsgm.solvers import DiffPIR
from invsgm.stats import sliced_wasserstein

F64 = torch.float64
CHI2_6_999 = 22.458  # 0.999 quantile of χ² with 6 degrees of freedom


def diffpir_law(mu, var, A, y, sigma_y, sde, ts, lam, zeta):
    """The exact law N(m, C) of DiffPIR's output for a Gaussian prior N(μ, diag var), written independently of the
    solver in dense float64 algebra. Every step is affine in x_t plus Gaussian noise:
    x̂₀ = W x + b (the prior's E[x₀ | x_t]), x̂₀' = (I − K A) x̂₀ + K y with K = Aᵀ(AAᵀ + ρI)⁻¹ (A⁺ when σ_y = 0),
    x_s = M x + c + √ζ σ_s z; the mean and covariance are pushed through from x_T ~ N(0, prior_std² I)."""
    d = mu.numel()
    I = torch.eye(d, dtype=F64)
    S = torch.diag(var)
    m, C = torch.zeros(d, dtype=F64), sde.prior_std() ** 2 * I
    keep = math.sqrt(1 - zeta)
    n = len(ts) - 1
    for i in range(n):
        a_t, s_t = (float(u) for u in sde.marginal_coeffs(ts[i:i + 1]))
        W = a_t * S @ torch.linalg.inv(a_t ** 2 * S + s_t ** 2 * I)
        b = mu - a_t * W @ mu
        if sigma_y == 0:
            K = torch.linalg.pinv(A)
        else:
            rho = lam * sigma_y ** 2 / (s_t / a_t) ** 2
            K = A.T @ torch.linalg.inv(A @ A.T + rho * torch.eye(A.shape[0], dtype=F64))
        F = (I - K @ A) @ W
        f = (I - K @ A) @ b + K @ y
        if i == n - 1:
            return F @ m + f, F @ C @ F.T
        a_s, s_s = (float(u) for u in sde.marginal_coeffs(ts[i + 1:i + 2]))
        M = a_s * F + (s_s * keep / s_t) * (I - a_t * F)
        c = (a_s - s_s * keep * a_t / s_t) * f
        m, C = M @ m + c, M @ C @ M.T + zeta * s_s ** 2 * I


def gaussian_problem(sigma_y, seed=0, d=6, m=3):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=g, dtype=F64)
    var = torch.linspace(0.3, 2.0, d, dtype=F64)
    A = torch.randn(m, d, generator=g, dtype=F64) / math.sqrt(d)
    x = mu + var.sqrt() * torch.randn(d, generator=g, dtype=F64)
    y = A @ x + sigma_y * torch.randn(m, generator=g, dtype=F64)
    return mu, var, A, y


def mc_tolerances(C, n):
    """(mean, covariance) tolerances for n draws of N(m, C): the mean error's Euclidean norm is below
    √(χ²₀.₉₉₉ · λ_max(C)/n); the sample covariance's Frobenius error has RMS √((‖C‖_F² + (tr C)²)/n) (Wishart
    variances C_ij² + C_ii C_jj), and 4 RMS bounds it."""
    tol_mean = math.sqrt(CHI2_6_999 * torch.linalg.eigvalsh(C).max().item() / n)
    tol_cov = 4 * math.sqrt((C.pow(2).sum() + C.trace() ** 2).item() / n)
    return tol_mean, tol_cov


# ------------------------------------------------------------------ 1. closed form on a Gaussian prior

@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 50)], ids=["vp", "ve"])
def test_gaussian_prior_matches_exact_diffpir_law_and_pins_its_bias(sde):
    sigma_y, n, steps = 0.3, 4000, 100
    mu, var, A, y = gaussian_problem(sigma_y)
    prior = GaussianMixture(mu[None], None, var[None])
    post = prior.condition(A, y, sigma_y)
    pm, pC = post.means[0], post.covariance_matrices()[0]
    lm, lC = diffpir_law(mu, var, A, y, sigma_y, sde, default_timesteps(sde, steps), 7.0, 0.3)

    sol = solve(LinearMeasurement(A, sigma_y), y[None], prior, DiffPIR(), sde=sde, n=n, steps=steps, seed=1)
    assert sol.nfe == steps
    X = sol.samples[0]
    sm, sC = X.mean(0), torch.cov(X.T)
    tol_mean, tol_cov = mc_tolerances(lC, n)

    # (a) The samples follow DiffPIR's exact law: Mahalanobis χ² of the mean (6 dof) and the covariance's error.
    chi2 = n * (sm - lm) @ torch.linalg.solve(lC, sm - lm)
    cov_err = (sC - lC).norm().item()
    print(f"\n[{type(sde).__name__}] vs DiffPIR law: mean χ² = {chi2:.2f} (≤ {CHI2_6_999}), "
          f"‖Ĉ − C‖_F = {cov_err:.4f} (≤ {tol_cov:.4f})")
    assert chi2 <= CHI2_6_999
    assert cov_err <= tol_cov

    # (b) That law is biased against the exact posterior by design (x̂₀ trusted with precision λ/σ̄², ζ of fresh
    # noise per step, a fixed step count): the bias is derived above and the samples' error to the posterior
    # must lie within the Monte-Carlo tolerance of it; it exceeds the tolerance, so DiffPIR is not exact here.
    bias_mean, bias_cov = (lm - pm).norm().item(), (lC - pC).norm().item()
    err_mean, err_cov = (sm - pm).norm().item(), (sC - pC).norm().item()
    print(f"[{type(sde).__name__}] vs exact posterior: ‖mean err‖ = {err_mean:.3f} (derived bias {bias_mean:.3f} "
          f"± {tol_mean:.3f}), ‖cov err‖_F = {err_cov:.3f} (derived bias {bias_cov:.3f} ± {tol_cov:.3f}); "
          f"trace ratio DiffPIR/posterior = {(lC.trace() / pC.trace()).item():.3f}")
    assert abs(err_mean - bias_mean) <= tol_mean
    assert abs(err_cov - bias_cov) <= tol_cov
    assert bias_mean > 2 * tol_mean and bias_cov > tol_cov


@pytest.mark.parametrize("zeta", [0.0, 1.0])
def test_gaussian_prior_other_zeta_and_lambda_follow_their_law(zeta):
    """ζ = 0 (no fresh noise) and ζ = 1 (full re-noising) with λ = 1: the same exactness check, VP, 50 steps."""
    sigma_y, n, steps, sde = 0.5, 3000, 50, VPSDE()
    mu, var, A, y = gaussian_problem(sigma_y, seed=3)
    prior = GaussianMixture(mu[None], None, var[None])
    lm, lC = diffpir_law(mu, var, A, y, sigma_y, sde, default_timesteps(sde, steps), 1.0, zeta)
    X = solve(LinearMeasurement(A, sigma_y), y[None], prior, DiffPIR(1.0, zeta), sde=sde, n=n, steps=steps,
              seed=2).samples[0]
    chi2 = n * (X.mean(0) - lm) @ torch.linalg.solve(lC, X.mean(0) - lm)
    _, tol_cov = mc_tolerances(lC, n)
    cov_err = (torch.cov(X.T) - lC).norm().item()
    print(f"\nζ={zeta}, λ=1: mean χ² = {chi2:.2f} (≤ {CHI2_6_999}), ‖Ĉ − C‖_F = {cov_err:.4f} (≤ {tol_cov:.4f})")
    assert chi2 <= CHI2_6_999 and cov_err <= tol_cov


def test_nothing_observed_gaussian_variance_deficit_is_the_derived_one():
    """With nothing observed DiffPIR is denoise-and-re-noise; for N(0, 1) its output variance is short of 1 by a
    derived amount (100 VP steps: ≈0.96 at ζ = 0, ≈0.88 at ζ = 0.3, ≈0.47 at ζ = 1; ζ > 0 keeps a deficit however
    many steps). The samples' variance must match the derived one (χ² test of a variance: relative
    sd √(2/n) per coordinate, 4 sd on the mean over 4 coordinates)."""
    d, n, steps, sde = 4, 2000, 100, VPSDE()
    mu, var = torch.zeros(d, dtype=F64), torch.ones(d, dtype=F64)
    A = torch.ones(1, d, dtype=F64)
    meas = LinearMeasurement(Matrix(A), 1e4)
    ratios = {}
    for zeta in (0.0, 0.3, 1.0):
        _, lC = diffpir_law(mu, var, A, torch.zeros(1, dtype=F64), 1e4, sde, default_timesteps(sde, steps), 7.0, zeta)
        X = solve(meas, torch.zeros(1, 1, dtype=F64), GaussianMixture(mu[None], None, var[None]), DiffPIR(zeta=zeta),
                  sde=sde, n=n, steps=steps, seed=5).samples[0]
        derived = lC.diagonal().mean().item()
        measured = X.var(0).mean().item()
        ratios[zeta] = (measured, derived)
        assert abs(measured / derived - 1) <= 4 * math.sqrt(2 / n) / math.sqrt(d)
    print("\nnothing observed, N(0, 1): output variance measured/derived " +
          ", ".join(f"ζ={z}: {m:.3f}/{dv:.3f}" for z, (m, dv) in ratios.items()))
    assert 0.93 < ratios[0.0][1] < 1.0 and 0.85 < ratios[0.3][1] < 0.91 and 0.4 < ratios[1.0][1] < 0.5


# ------------------------------------------------------------------ 2. noiseless consistency

def test_noiseless_samples_are_consistent():
    sde = VPSDE()
    mu, var, A, y = gaussian_problem(0.0, seed=1)
    prior = GaussianMixture(mu[None], None, var[None])
    sol = solve(LinearMeasurement(A, 0.0), y[None].float(), prior, DiffPIR(), sde=sde, n=500, steps=20, seed=0)
    resid = (sol.samples[0] @ A.float().T - y.float()).norm(dim=1)
    # images: 2×2 average pooling of 1×4×4 images, a Gaussian prior on the 16 pixels
    op = AvgPool(2, (1, 4, 4))
    g = torch.Generator().manual_seed(2)
    img_prior = GaussianMixture(torch.randn(1, 16, generator=g, dtype=F64), None, torch.rand(1, 16, generator=g) + 0.5)
    x_true = img_prior.sample(1, g).reshape(1, 1, 4, 4).float()
    y_img = op(x_true)
    sol_img = solve(LinearMeasurement(op, 0.0), y_img, img_prior, DiffPIR(), sde=VESDE(0.01, 50), n=200, steps=20,
                    seed=0)
    resid_img = (op(sol_img.samples[0]) - y_img).flatten(1).norm(dim=1)
    print(f"\nnoiseless: max ‖Ax − y‖ = {resid.max():.2e} (matrix, float32), {resid_img.max():.2e} (AvgPool images)")
    assert resid.max() <= 1e-5 and resid_img.max() <= 1e-5
    assert sol.samples.std(1).min() > 0.05  # the null space is still sampled, not collapsed


# ------------------------------------------------------------------ 3. nothing observed → the prior

def _mixture():
    g = torch.Generator().manual_seed(0)
    means = 3.0 * torch.randn(3, 8, generator=g, dtype=F64)
    return GaussianMixture(means, torch.tensor([0.5, 0.3, 0.2], dtype=F64), 1.0)


def test_nothing_observed_gives_the_prior():
    """A mask observing nothing (σ_y = 0, VP) and σ_y = 10⁴ (VE): DiffPIR with ζ = 0 is then DDIM on the exact
    score and must reproduce a 3-component mixture in d = 8 (SW ≤ 1.5 × the floor, each averaged over seeds since
    the mixture weights make single SW values noisy). The default ζ = 0.3 and ζ = 1 are biased towards the
    heaviest component by design (see the Gaussian deficit above); their ratios are printed and pinned."""
    gm, n, steps = _mixture(), 1000, 50
    ref = gm.sample(n, torch.Generator().manual_seed(1))

    def sw(X):
        return sliced_wasserstein(X.reshape(n, -1), ref, 512, torch.Generator().manual_seed(4))

    floor = sum(sw(gm.sample(n, torch.Generator().manual_seed(s))) for s in range(10, 18)) / 8
    cases = [("mask σ_y=0, VP", LinearMeasurement(Mask(torch.zeros(2, 2, 2, dtype=torch.bool)), 0.0),
              torch.zeros(1, 2, 2, 2, dtype=F64), VPSDE()),
             ("σ_y=1e4, VE", LinearMeasurement(torch.randn(3, 8, generator=torch.Generator().manual_seed(5)), 1e4),
              torch.zeros(1, 3, dtype=F64), VESDE(0.01, 50))]
    for label, meas, y, sde in cases:
        ratios = {}
        for zeta in (0.0, 0.3, 1.0):
            runs = [sw(solve(meas, y, gm, DiffPIR(zeta=zeta), sde=sde, n=n, steps=steps, seed=100 + k).samples[0])
                    for k in range(3)]
            ratios[zeta] = sum(runs) / len(runs) / floor
        print(f"\n[{label}] SW/floor (floor {floor:.3f}): " + ", ".join(f"ζ={z}: {r:.2f}" for z, r in ratios.items()))
        assert ratios[0.0] <= 1.5
        assert ratios[0.3] <= 2.5  # designed bias, measured 1.2–1.6 here
        assert ratios[1.0] >= 3.0  # full re-noising from the posterior mean: mode weights collapse (≈4–5)


# ------------------------------------------------------------------ 4. the shipped photos model

def test_runs_with_shipped_photos_model():
    model = load_pretrained("photos_score")
    x = to_model_space(photos_test_images(1), model.card)
    seen = []
    for op, sigma_y, clip in [(GaussianBlur(1.0, 5, (3, 32, 32)), 0.05, None), (AvgPool(2, (3, 32, 32)), 0.0, (-1, 1))]:
        meas = LinearMeasurement(op, sigma_y)
        y = meas.simulate(x, torch.Generator().manual_seed(0))
        sol = solve(meas, y, model, DiffPIR(clip=clip), n=1, steps=3, seed=0,
                    callback=lambda done, total: seen.append(done))
        assert sol.samples.shape == (1, 1, 3, 32, 32) and bool(torch.isfinite(sol.samples).all())
        assert sol.nfe == 3
        if sigma_y == 0:
            assert (op(sol.samples[:, 0]) - y).norm() <= 1e-4
    assert seen == [1, 1]


# ------------------------------------------------------------------ data step, callback, determinism

@pytest.mark.parametrize("op", [Matrix(torch.randn(5, 12, generator=torch.Generator().manual_seed(0), dtype=F64)),
                                random_mask((2, 3, 3), 0.5, torch.Generator().manual_seed(1)),
                                AvgPool(2, (2, 4, 4)), GaussianBlur(1.0, 3, (1, 6, 6))],
                         ids=["matrix", "mask", "avgpool", "blur"])
def test_data_step_is_the_prox_and_the_projection(op):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, *op.in_shape, generator=g, dtype=F64)
    y = op(torch.randn(2, *op.in_shape, generator=g, dtype=F64)) + 0.1 * torch.randn(2, *op.out_shape, generator=g,
                                                                                     dtype=F64)
    solver, sigma_y = DiffPIR(lambda_=2.0), 0.2
    sigma_bar = torch.tensor([0.3, 3.0], dtype=F64)
    rho = 2.0 * sigma_y ** 2 / sigma_bar ** 2
    ours = solver.data_step(LinearMeasurement(op, sigma_y), z, y, sigma_bar)
    assert torch.allclose(ours, op.prox(z, y, rho), atol=1e-9)
    noiseless = LinearMeasurement(op, 0.0)
    y0 = op(torch.randn(2, *op.in_shape, generator=g, dtype=F64))
    assert torch.equal(solver.data_step(noiseless, z, y0, sigma_bar), noiseless.consistent(z, y0))
    # float32 with a tiny ρ (σ̄ = 150, as at t = T of the VP models): no loss of precision
    tiny = torch.tensor([150.0, 150.0])
    ref = solver.data_step(LinearMeasurement(op, 0.05), z, y, tiny.double())
    scale = ref.abs().max().item()
    err = (solver.data_step(LinearMeasurement(op, 0.05), z.float(), y.float(), tiny) - ref).abs().max().item() / scale
    err_prox = (op.prox(z.float(), y.float(), 2.0 * 0.05 ** 2 / tiny ** 2) - ref).abs().max().item() / scale
    print(f"\n[{type(op).__name__}] float32 data step at ρ = {2 * 0.05 ** 2 / 150 ** 2:.1e}: relative error {err:.1e} "
          f"(op.prox: {err_prox:.1e})")
    assert err <= 1e-5  # float32 rounding (≈1e-7) times the conditioning the solve itself has


def test_callback_nfe_and_seed_determinism():
    mu, var, A, y = gaussian_problem(0.2, seed=4)
    prior, sde = GaussianMixture(mu[None], None, var[None]), VPSDE()
    ts = default_timesteps(sde, 7)
    x = sde.prior_sampling((5, 6), generator=torch.Generator().manual_seed(0), dtype=F64)
    den = as_denoiser(prior, sde)
    calls = []
    out = DiffPIR()(den, sde, LinearMeasurement(A, 0.2), y.expand(5, -1), x, ts,
                    generator=torch.Generator().manual_seed(1),
                    callback=lambda i, t, state, x0: calls.append((i, t, state.clone(), x0.clone())))
    assert out.nfe == 7 and [c[0] for c in calls] == list(range(7))
    assert [c[1] for c in calls] == pytest.approx(ts[1:].tolist())
    assert torch.equal(calls[-1][2], out.samples) and torch.equal(calls[-1][3], out.samples)
    again = DiffPIR()(den, sde, LinearMeasurement(A, 0.2), y.expand(5, -1), x, ts,
                      generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.samples, again.samples)


# ------------------------------------------------------------------ 5. bad input

class _Classifier:
    def log_prob(self, x, t, y):
        return torch.zeros(x.shape[0])


def test_bad_input_raises():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lambda_"):
            DiffPIR(lambda_=bad)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="zeta"):
            DiffPIR(zeta=bad)
    for bad in ((1.0, -1.0), (0.0, float("inf")), "ab", (1.0,), 3.0):
        with pytest.raises(ValueError, match="clip"):
            DiffPIR(clip=bad)
    solver = DiffPIR()
    with pytest.raises(ValueError, match="DiffPIR needs a linear measurement"):
        solver.check(ClassLabel(_Classifier(), x_shape=(4,)))
    with pytest.raises(ValueError, match="DiffPIR needs a linear measurement"):
        solver.check(Joint([LinearMeasurement(torch.eye(4), 0.1), LinearMeasurement(torch.eye(4), 0.2)]))
    prior = GaussianMixture(torch.zeros(1, 4, dtype=F64))
    with pytest.raises(ValueError, match="DiffPIR needs a linear measurement"):
        solve(ClassLabel(_Classifier(), x_shape=(4,)), torch.tensor([0]), prior, solver, sde=VPSDE(), steps=2)
