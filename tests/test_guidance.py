"""Guidance terms against exact posteriors of Gaussian-mixture priors, and the exact posterior itself.

Ported from the old ``tests/test_tasks.py`` (Task / LinearGaussian / Replacement / Composite) to the
measurement + guidance + solver seams.
"""
from __future__ import annotations

import math

import pytest
import torch

from invsgm.guidance import DPS, Classifier, Composite, GuidedScore, PiGDM, Replacement, guided_evaluation
from invsgm.measurement import ClassLabel, Joint, LinearMeasurement
from invsgm.operators import Grey, Matrix, box_mask, random_mask
from invsgm.priors import GaussianMixture
from invsgm.sde import SubVPSDE, VESDE, VPSDE
from invsgm.solve import solve
from invsgm.solvers import PC
from invsgm.stats import sliced_wasserstein

SDES = {"ve": lambda: VESDE(sigma_min=0.01, sigma_max=20.0), "vp": VPSDE, "subvp": SubVPSDE}


def _mixture(d: int, k: int = 25, seed: int = 0, spread: float = 2.0, var: float = 0.25) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(k, d, generator=g, dtype=torch.float64)
    weights = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0)
    return GaussianMixture(means, weights, var)


# --- the exact posterior itself -------------------------------------------------------------------

@pytest.mark.parametrize("cov", ["iso", "diag", "full"])
def test_condition_is_bayes_rule(cov):
    """log p(x | y) − log p(x) − log N(y; A x, σ²I) is the same constant (−log p(y)) for every x."""
    g = torch.Generator().manual_seed(3)
    d, k = 5, 4
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    if cov == "iso":
        covs = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    elif cov == "diag":
        covs = torch.rand(k, d, generator=g, dtype=torch.float64) + 0.2
    else:
        L = torch.randn(k, d, d, generator=g, dtype=torch.float64)
        covs = L @ L.transpose(1, 2) / d + 0.2 * torch.eye(d, dtype=torch.float64)
    prior = GaussianMixture(means, torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0), covs)
    A = torch.randn(2, d, generator=g, dtype=torch.float64)
    y, sigma_y = torch.randn(2, generator=g, dtype=torch.float64), 0.4
    post = prior.condition(A, y, sigma_y)
    x = 2 * torch.randn(200, d, generator=g, dtype=torch.float64)
    log_lik = -0.5 * ((y - x @ A.T) ** 2).sum(1) / sigma_y ** 2 - math.log(2 * math.pi * sigma_y ** 2)
    const = post.log_prob(x) - prior.log_prob(x) - log_lik
    assert (const - const.mean()).abs().max() < 1e-10
    # and the constant is −log p(y), p(y) = Σ w_k N(y; A μ_k, A Σ_k Aᵀ + σ² I)
    S = A @ prior.covariance_matrices() @ A.T + sigma_y ** 2 * torch.eye(2, dtype=torch.float64)
    log_py = torch.logsumexp(prior.weights.log() + torch.distributions.MultivariateNormal(
        prior.means @ A.T, S).log_prob(y), 0)
    assert abs(const.mean().item() + log_py.item()) < 1e-10
    # the measurement's own log-likelihood is the same Gaussian density
    assert torch.allclose(LinearMeasurement(A, sigma_y).log_likelihood(x, y.expand(200, 2)), log_lik, atol=1e-10)


def test_condition_bad_shapes():
    prior = _mixture(4, k=3)
    with pytest.raises(ValueError, match="A must have shape"):
        prior.condition(torch.ones(2, 5), torch.ones(2), 0.1)
    with pytest.raises(ValueError, match="sigma_y"):
        prior.condition(torch.ones(2, 4), torch.ones(2), -1.0)


# --- guided scores --------------------------------------------------------------------------------

@pytest.mark.parametrize("jacobian", ["network", "gaussian"])
@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_pigdm_score_is_exact_for_a_gaussian_prior(sde_name, jacobian):
    """For x₀ ~ N(0, v I), p(x₀ | x_t) = N(x̂₀, r_t² I) exactly, so ΠGDM's guided score is ∇log p_t(x | y).

    There ∂x̂₀/∂x_t = α v/(α² v + σ²) I, so the 'gaussian' Jacobian is exact too."""
    sde = SDES[sde_name]()
    v, d = 0.7, 6
    prior = GaussianMixture(torch.zeros(1, d, dtype=torch.float64), None, v)
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, d, generator=g, dtype=torch.float64)
    y, sigma_y = torch.randn(1, 3, generator=g, dtype=torch.float64), 0.3
    guidance = PiGDM(data_variance=v, jacobian=jacobian)
    guided = GuidedScore(prior.as_denoiser(sde), guidance, LinearMeasurement(A, sigma_y), y.expand(8, 3))
    post = prior.condition(A, y[0], sigma_y)
    for t in (0.05, 0.3, 0.8):
        x = post.marginal(sde, t).sample(8, g)
        tt = torch.full((8,), t, dtype=torch.float64)
        exact = post.score(x, tt, sde)
        err = (guided(x, tt) - exact).abs().max() / exact.abs().max()
        assert err < 1e-10, (sde_name, t, err.item())


def test_gaussian_jacobian_needs_no_graph():
    assert PiGDM(jacobian="gaussian").needs_graph is False
    assert DPS(jacobian="gaussian").needs_graph is False
    assert PiGDM().needs_graph is True and DPS().needs_graph is True
    with pytest.raises(ValueError, match="jacobian"):
        PiGDM(jacobian="magic")
    with pytest.raises(ValueError, match="jacobian"):
        DPS(jacobian="magic")


@pytest.mark.parametrize("term", [PiGDM, DPS])
@pytest.mark.parametrize("power", [1, 2])
def test_power_scales_the_guidance_by_alpha_to_the_power(term, power):
    """power p multiplies the guidance gradient by α(t)^p (power=1 is the old ``alpha_weight=True``)."""
    sde = VPSDE()
    prior = _mixture(4, k=3)
    A = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    y, x = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0.2, 0.4, 0.7], dtype=torch.float64)
    den = prior.as_denoiser(sde)
    m = LinearMeasurement(A, 0.1)
    score = den.score(x, t)
    plain = GuidedScore(den, term(), m, y)(x, t) - score
    weighted = GuidedScore(den, term(power=power), m, y)(x, t) - score
    alpha = sde.marginal_coeffs(t)[0][:, None]
    assert plain.abs().max() > 1e-3  # the check is not vacuous
    assert torch.allclose(weighted, alpha ** power * plain, atol=1e-12)


def test_dps_step_is_the_normalised_residual_gradient():
    """DPS: ∇ₓ log p̃ = −ζ ∇ₓ‖y − A x̂₀(x)‖, checked against finite differences of the residual norm."""
    sde = VPSDE()
    prior = _mixture(4, k=3)
    den = prior.as_denoiser(sde)
    A = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(1, 2, dtype=torch.float64)
    x = torch.randn(1, 4, dtype=torch.float64)
    t = torch.full((1,), 0.4, dtype=torch.float64)
    grad = GuidedScore(den, DPS(scale=0.7), LinearMeasurement(A, 0.1), y)(x, t) - den.score(x, t)

    def resid_norm(z):
        alpha, std = sde.marginal_coeffs(t)
        x0 = (z + std ** 2 * den.score(z, t)) / alpha
        return (y - x0 @ A.T).norm()

    fd = torch.stack([(resid_norm(x + 1e-6 * e) - resid_norm(x - 1e-6 * e)) / 2e-6
                      for e in torch.eye(4, dtype=torch.float64)])
    assert torch.allclose(grad[0], -0.7 * fd, rtol=1e-6, atol=1e-9)


def test_composite_adds_likelihoods_over_a_joint_measurement():
    sde = VPSDE()
    prior = _mixture(4, k=3)
    den = prior.as_denoiser(sde)
    g = torch.Generator().manual_seed(0)
    A1, A2 = torch.randn(1, 4, generator=g, dtype=torch.float64), torch.randn(2, 4, generator=g, dtype=torch.float64)
    m1, m2 = LinearMeasurement(A1, 0.2), LinearMeasurement(A2, 0.3)
    y1, y2 = torch.randn(5, 1, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    x, t = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.full((5,), 0.3, dtype=torch.float64)
    joint, both_terms = Joint([m1, m2]), Composite([PiGDM(), DPS(scale=0.5)])
    both_terms.check(joint)
    both = GuidedScore(den, both_terms, joint, (y1, y2))(x, t)
    s = den.score(x, t)
    separate = GuidedScore(den, PiGDM(), m1, y1)(x, t) + GuidedScore(den, DPS(scale=0.5), m2, y2)(x, t) - s
    assert torch.allclose(both, separate, atol=1e-12)
    # the log-likelihood values add too
    ev_both = guided_evaluation(den, both_terms, joint, (y1, y2), x, t).log_likelihood
    ev_sep = (guided_evaluation(den, PiGDM(), m1, y1, x, t).log_likelihood
              + guided_evaluation(den, DPS(scale=0.5), m2, y2, x, t).log_likelihood)
    assert torch.allclose(ev_both, ev_sep, atol=1e-12)
    # and the exact likelihoods of the parts add
    assert torch.allclose(joint.log_likelihood(x, (y1, y2)), m1.log_likelihood(x, y1) + m2.log_likelihood(x, y2))
    with pytest.raises(ValueError, match="tuple of 2"):
        joint.check(y1)
    with pytest.raises(ValueError, match="Joint measurement"):
        both_terms.check(m1)
    with pytest.raises(ValueError, match="Joint measurement"):
        Composite([PiGDM(), PiGDM(), PiGDM()]).check(joint)


def test_composite_chains_projections():
    """Replacement over two disjoint masks of a Joint: the projections apply in order, one per part."""
    sde = VPSDE()
    m1, m2 = LinearMeasurement(box_mask((1, 4, 4), 0, 0, 2, 2)), LinearMeasurement(box_mask((1, 4, 4), 2, 2, 2, 2))
    joint, terms = Joint([m1, m2]), Composite([Replacement(), Replacement()])
    terms.check(joint)
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    y = joint.simulate(truth)
    x, t = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64)
    chained = terms.project(joint, y, x, t, sde, torch.Generator().manual_seed(1))
    g1 = torch.Generator().manual_seed(1)
    step = Replacement().project(m2, y[1], Replacement().project(m1, y[0], x, t, sde, g1), t, sde, g1)
    assert torch.equal(chained, step)
    final = terms.finalize(joint, y, x)
    for m, yi in zip(joint.parts, y):
        assert torch.allclose(m.operator(final), yi, atol=1e-12)


# --- replacement ----------------------------------------------------------------------------------

def test_replacement_draws_the_exact_marginal_of_the_known_part():
    """After project at time t, A x equals α y + σ A z: mean α y and variance σ² on the known pixels."""
    sde = VPSDE()
    mask = box_mask((1, 4, 4), 1, 1, 2, 2)
    measurement = LinearMeasurement(mask)
    Replacement().check(measurement)
    y = mask(torch.rand(1, 1, 4, 4, dtype=torch.float64)).expand(20000, 1, 4, 4)
    x = torch.randn(20000, 1, 4, 4, dtype=torch.float64)
    t = torch.full((20000,), 0.5, dtype=torch.float64)
    out = Replacement().project(measurement, y, x, t, sde, torch.Generator().manual_seed(0))
    alpha, std = (c[0].item() for c in sde.marginal_coeffs(t[:1]))
    known = mask.mask.expand(1, 4, 4)
    assert torch.equal(out[:, ~known], x[:, ~known])
    assert (out[:, known].mean(0) - alpha * y[0][known]).abs().max() < 4 * std / math.sqrt(20000)
    assert abs(out[:, known].var(0).mean().item() / std ** 2 - 1) < 0.03


def test_replacement_refuses_non_isometries_and_noisy_measurements():
    with pytest.raises(ValueError, match="A Aᵀ = I"):
        Replacement().check(LinearMeasurement(Matrix(torch.tensor([[2.0, 0.0]]))))
    with pytest.raises(ValueError, match="noiseless"):
        Replacement().check(LinearMeasurement(box_mask((1, 4, 4), 1, 1, 2, 2), 0.1))
    with pytest.raises(ValueError, match="linear measurement"):
        Replacement().check(ClassLabel(_GaussianClassifier()))
    Replacement().check(LinearMeasurement(Matrix(torch.eye(4, dtype=torch.float64)[:2])))  # an isometry passes


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_noiseless_inpainting_keeps_observed_pixels_and_samples_the_conditional(sde_name):
    """Samples keep the observed pixels exactly; the missing ones move from the prior towards p(x_miss | x_obs).

    Replacement is not exact posterior sampling (the noised copy of y ignores how x(t)'s missing part
    depends on the observed part's noise), so the check is against the prior, with the SW printed.
    """
    sde = SDES[sde_name]()
    prior = _mixture(16, k=6, seed=4, spread=1.5, var=0.2)
    mask = random_mask((1, 4, 4), 0.5, torch.Generator().manual_seed(2))
    truth = prior.sample(1, torch.Generator().manual_seed(5)).reshape(1, 1, 4, 4)
    measurement = LinearMeasurement(mask)
    y = measurement.simulate(truth)
    n = 1500
    sol = solve(measurement, y, prior, PC(Replacement(), corrector=None), sde=sde, n=n, steps=400, seed=0)
    known = mask.mask.expand(1, 4, 4)
    assert torch.equal(sol.samples[0][:, known], truth[0][known].expand(n, -1))
    A = torch.eye(16, dtype=torch.float64)[known.reshape(-1)]
    post = prior.condition(A, truth.reshape(-1)[known.reshape(-1)], 1e-4)  # ≈ noiseless; only free pixels compared
    ref, ref2 = post.sample(n, torch.Generator().manual_seed(6)), post.sample(n, torch.Generator().manual_seed(7))
    free = ~known.reshape(-1)
    sw = sliced_wasserstein(sol.samples[0].reshape(n, -1)[:, free], ref[:, free], generator=torch.Generator().manual_seed(0))
    floor = sliced_wasserstein(ref2[:, free], ref[:, free], generator=torch.Generator().manual_seed(0))
    unconditional = sliced_wasserstein(prior.sample(n, torch.Generator().manual_seed(8))[:, free], ref[:, free],
                                       generator=torch.Generator().manual_seed(0))
    print(f"\nreplacement inpainting ({sde_name}, 8 of 16 pixels known): SW to the exact conditional {sw:.4f} "
          f"({sw / floor:.2f}x the floor {floor:.4f}); prior samples {unconditional:.4f}")
    assert sw < 0.5 * unconditional


def test_colorization_keeps_the_grey_channel():
    sde = VPSDE()
    prior = _mixture(3 * 4 * 4, k=4, seed=1, spread=0.5, var=0.1)
    truth = prior.sample(2, torch.Generator().manual_seed(0)).reshape(2, 3, 4, 4)
    op = Grey((3, 4, 4))
    measurement = LinearMeasurement(op)
    sol = solve(measurement, measurement.simulate(truth), prior, PC(Replacement()), sde=sde, n=3, steps=50, seed=0)
    grey = op(sol.samples.reshape(6, 3, 4, 4))
    assert torch.allclose(grey, op(truth).repeat_interleave(3, 0), atol=1e-12)
    assert sol.mean.shape == (2, 3, 4, 4) and sol.std.shape == (2, 3, 4, 4)
    assert sol.std.max() > 0  # the colours vary between samples


# --- class guidance -------------------------------------------------------------------------------

class _GaussianClassifier:
    """p_t(y | x) ∝ exp(−‖x − α(t) c_y‖² / 2): an analytic noise-conditional classifier on R^4."""

    def __init__(self):
        self.centres = torch.tensor([[1.0, 0.0, -1.0, 0.5], [-1.0, 0.5, 0.0, 1.0], [0.0, -1.0, 1.0, 0.0]],
                                    dtype=torch.float64)

    def log_prob(self, x, t, y):
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])
        alpha = VPSDE().marginal_coeffs(t)[0][:, None]
        logits = -0.5 * (x[:, None] - alpha[:, None] * self.centres).pow(2).sum(-1)
        return torch.log_softmax(logits, 1).gather(1, y[:, None])[:, 0]


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_classifier_guidance_adds_scale_times_the_classifier_gradient(scale):
    sde = VPSDE()
    den = _mixture(4, k=3).as_denoiser(sde)
    clf = _GaussianClassifier()
    measurement = ClassLabel(clf)
    Classifier(scale).check(measurement)
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.full((6,), 0.3, dtype=torch.float64), \
        torch.tensor([0, 1, 2, 0, 1, 2])
    guided = GuidedScore(den, Classifier(scale), measurement, y)(x, t)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(clf.log_prob(xg, t, y).sum(), xg)
    assert torch.allclose(guided - den.score(x, t), scale * grad, atol=1e-12)
    assert Classifier().needs_graph is False
    with pytest.raises(ValueError, match="ClassLabel"):
        Classifier().check(LinearMeasurement(torch.eye(4, dtype=torch.float64)))
    with pytest.raises(ValueError, match="integer"):
        measurement.check(torch.zeros(3))
