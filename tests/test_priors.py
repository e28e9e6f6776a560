"""The Gaussian-mixture prior: exact densities, scores and samples under every SDE."""
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from invsgm.priors import GaussianMixture
from invsgm.sde import SubVPSDE, VESDE, VPSDE
from invsgm.stats import sliced_wasserstein


def _mixture(kind: str, K: int = 3, D: int = 4, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(K, D, generator=g, dtype=torch.float64)
    weights = torch.softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    if kind == "iso":
        cov = 0.2 + torch.rand(K, generator=g, dtype=torch.float64)
    elif kind == "diag":
        cov = 0.2 + torch.rand(K, D, generator=g, dtype=torch.float64)
    else:
        A = torch.randn(K, D, D, generator=g, dtype=torch.float64)
        cov = A @ A.transpose(1, 2) / D + 0.1 * torch.eye(D, dtype=torch.float64)
    return GaussianMixture(means, weights, cov)


def _reference(gm: GaussianMixture) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(gm.weights), MultivariateNormal(gm.means, gm.covariance_matrices()))


@pytest.mark.parametrize("kind", ["iso", "diag", "full"])
def test_log_prob_matches_torch_distributions(kind):
    gm = _mixture(kind)
    x = torch.randn(64, 4, dtype=torch.float64) * 3
    err = (gm.log_prob(x) - _reference(gm).log_prob(x)).abs().max().item()
    print(f"{kind}: max |log p - reference| = {err:.2e}")
    assert err < 1e-10


@pytest.mark.parametrize("kind", ["iso", "diag", "full"])
@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
def test_score_is_gradient_of_diffused_log_density(kind, sde):
    """score(x, t) = ∇ log p_t(x), and p_t is the mixture N(α μ_k, α² Σ_k + σ² I)."""
    gm = _mixture(kind)
    x = (3 * torch.randn(32, 4, dtype=torch.float64)).requires_grad_()
    t = torch.rand(32, dtype=torch.float64)
    (grad,) = torch.autograd.grad(gm.log_prob(x, t, sde).sum(), x)
    err = (grad - gm.score(x, t, sde)).abs().max().item()
    alpha, std = sde.marginal_coeffs(t[:1])
    cov_t = alpha ** 2 * gm.covariance_matrices() + std ** 2 * torch.eye(4, dtype=torch.float64)
    ref = MixtureSameFamily(Categorical(gm.weights), MultivariateNormal(alpha * gm.means, cov_t))
    tt = t[:1].expand(32)
    err_lp = (gm.log_prob(x, tt, sde) - ref.log_prob(x)).abs().max().item()
    err_marg = (gm.marginal(sde, t[0].item()).log_prob(x) - ref.log_prob(x)).abs().max().item()
    print(f"{kind}/{type(sde).__name__}: |score - autograd| {err:.1e}, |log p_t - ref| {err_lp:.1e}, "
          f"|marginal - ref| {err_marg:.1e}")
    assert err < 1e-9 and err_lp < 1e-9 and err_marg < 1e-9


def test_diffused_samples_follow_the_marginal():
    """Samples of p_0 pushed through the SDE's marginal match samples of p_t (sliced Wasserstein)."""
    gm = _mixture("full", K=4, D=6)
    sde = VPSDE()
    g = torch.Generator().manual_seed(3)
    n, t = 4000, 0.4
    x0 = gm.sample(n, g)
    mean, std = sde.marginal_prob(x0, t)
    xt = mean + std[:, None] * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = gm.marginal(sde, t)
    sw = sliced_wasserstein(xt, exact.sample(n, g), generator=g)
    floor = sliced_wasserstein(exact.sample(n, g), exact.sample(n, g), generator=g)
    print(f"SW(diffused, exact p_t) = {sw:.4f}, floor {floor:.4f}")
    assert sw < 1.5 * floor


@pytest.mark.parametrize("kind", ["iso", "full"])
def test_samples_have_exact_moments(kind):
    gm = _mixture(kind)
    x = gm.sample(200_000, torch.Generator().manual_seed(0))
    ref = _reference(gm)
    err_mean = (x.mean(0) - ref.mean).abs().max().item()
    err_cov = (torch.cov(x.T) - _full_cov(gm)).abs().max().item()
    print(f"{kind}: mean err {err_mean:.3e}, cov err {err_cov:.3e}")
    assert err_mean < 0.03 and err_cov < 0.1


def _full_cov(gm: GaussianMixture) -> torch.Tensor:
    """Covariance of the mixture: Σ_k w_k (Σ_k + μ_k μ_kᵀ) − μ μᵀ."""
    mu = (gm.weights[:, None] * gm.means).sum(0)
    second = (gm.weights[:, None, None] * (gm.covariance_matrices()
              + gm.means[:, :, None] * gm.means[:, None, :])).sum(0)
    return second - mu[:, None] * mu[None, :]


def test_responsibilities_and_image_shaped_inputs():
    gm = _mixture("diag", K=2, D=12)
    x = gm.means[:, None].expand(2, 1, 12).reshape(2, 3, 2, 2)
    r = gm.responsibilities(x)
    assert r.shape == (2, 2) and torch.all(r.argmax(1) == torch.arange(2))
    assert gm.score(x, 0.5, VPSDE()).shape == x.shape
    assert gm.score_model(VPSDE())(x.float(), torch.full((2,), 0.5)).dtype == torch.float32


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.zeros(3))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(2, 3), torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="covariances"):
        GaussianMixture(torch.zeros(2, 3), None, torch.ones(2, 2))
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture(torch.zeros(2, 3), None, torch.tensor([1.0, -1.0]))
    gm = GaussianMixture(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="3 elements per sample"):
        gm.log_prob(torch.zeros(4, 5))
