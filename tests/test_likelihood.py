"""Probability-flow ODE likelihoods checked against exact Gaussian-mixture densities.

The ODE started at eps computes log p_eps, so the reference is the exact ``GaussianMixture.log_prob(x, eps, sde)``.
The only modelling error is the prior: N(0, prior_std² I) stands in for the exact p_T. VP/sub-VP have α(1) ≈ 0.0066;
for VE we take σ_max = 1000 ≫ the data scale (~1), so the mismatch log p_T(z) − log N(z) is ~1e-3 nats per sample
(printed as "prior mismatch").
"""
from __future__ import annotations

import math

import pytest
import torch

from invsgm.likelihood import (LikelihoodResult, bits_per_dim, dequantized_bits_per_dim, divergence, draw_probes,
                               log_likelihood)
from invsgm.priors import GaussianMixture
from invsgm.sde import SDE, SubVPSDE, VESDE, VPSDE

LN2 = math.log(2)
SDES = {"ve": lambda: VESDE(0.01, 1000.0), "vp": VPSDE, "subvp": SubVPSDE}



def mixture_2d() -> GaussianMixture:
    return GaussianMixture(torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]]), torch.tensor([0.3, 0.5, 0.2]),
                           torch.tensor([0.09, 0.16, 0.04]))


def mixture_16d() -> GaussianMixture:
    """Three components with full (rotated) covariances, eigenvalues in [0.05, 1.25], so ∂f̃/∂x is not diagonal."""
    g = torch.Generator().manual_seed(0)
    d = 16
    means = 0.7 * torch.randn(3, d, generator=g, dtype=torch.float64)
    a = torch.randn(3, d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return GaussianMixture(means, None, 0.3 * a @ a.transpose(1, 2) + 0.05 * torch.eye(d, dtype=torch.float64))


def prior_mismatch(mix: GaussianMixture, sde: SDE, res: LikelihoodResult) -> float:
    """Mean |log p_T(z) − log N(z; 0, prior_std²)| at the ODE end points."""
    return (mix.log_prob(res.z, sde.T, sde) - sde.prior_logp(res.z)).abs().mean().item()


@pytest.mark.parametrize("name", list(SDES))
def test_exact_trace_matches_exact_density_2d(name: str) -> None:
    sde, mix = SDES[name](), mixture_2d()
    x = mix.sample(256, torch.Generator().manual_seed(1))
    res = log_likelihood(mix.score_model(sde), sde, x, hutchinson="exact")
    exact = mix.log_prob(x, sde.eps, sde)
    err = (res.logp - exact).abs()
    bpd, exact_bpd = -res.logp.mean().item() / (2 * LN2), -exact.mean().item() / (2 * LN2)
    print(f"\n[2-D {name}] nfe={res.nfe} mean|err|={err.mean():.2e} max|err|={err.max():.2e} nats; "
          f"prior mismatch {prior_mismatch(mix, sde, res):.2e}; bpd {bpd:.5f} vs exact {exact_bpd:.5f}")
    assert torch.allclose(res.logp, res.prior_logp + res.delta)
    assert err.mean() <= 0.02
    assert abs(bpd - exact_bpd) <= 0.01


@pytest.mark.parametrize("name", list(SDES))
def test_hutchinson_matches_exact_density_16d(name: str) -> None:
    sde, mix = SDES[name](), mixture_16d()
    g = torch.Generator().manual_seed(2)
    x = mix.sample(256, g)
    exact = mix.log_prob(x, sde.eps, sde)
    score = mix.score_model(sde)
    res = log_likelihood(score, sde, x[:64], hutchinson="exact")
    err = (res.logp - exact[:64]).abs().mean().item()
    print(f"\n[16-D {name}] exact trace (64 samples): nfe={res.nfe} mean|err|={err:.2e} nats; "
          f"prior mismatch {prior_mismatch(mix, sde, res):.2e}")
    assert err <= 0.02
    for kind in ("rademacher", "gaussian"):
        res = log_likelihood(score, sde, x, hutchinson=kind, generator=g)
        e = res.logp - exact
        se = e.std().item() / math.sqrt(len(e))
        bpd = bits_per_dim(score, sde, x, hutchinson=kind, generator=torch.Generator().manual_seed(3)).mean().item()
        exact_bpd = -exact.mean().item() / (16 * LN2)
        print(f"[16-D {name}] {kind:10s} (256 samples, 1 probe): nfe={res.nfe} mean err={e.mean():+.4f} ± {se:.4f} "
              f"(SE) nats, per-sample sd {e.std():.3f}; bpd {bpd:.5f} vs exact {exact_bpd:.5f}")
        assert abs(e.mean().item()) <= 4 * se
        assert abs(bpd - exact_bpd) <= 4 * se / (16 * LN2) + 0.01


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_estimator_is_unbiased(kind: str) -> None:
    g = torch.Generator().manual_seed(4)
    d, n = 10, 40_000
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)

    def fn(v: torch.Tensor) -> torch.Tensor:  # a linear map: ∂f/∂x = A for every sample
        return v @ a.T

    _, exact = divergence(fn, x[:3])
    _, est = divergence(fn, x, draw_probes((n, d), 1, kind, g, torch.float64))  # one probe per sample
    se = est.std().item() / math.sqrt(n)
    print(f"\n[Hutchinson {kind}] tr A = {a.trace():.4f}; mean of {n} single-probe estimates = {est.mean():.4f} "
          f"± {se:.4f} (SE)")
    assert torch.allclose(exact, a.trace().expand(3))
    assert abs(est.mean().item() - a.trace().item()) <= 4 * se


def test_probe_is_fixed_through_the_solve() -> None:
    """Data N(0, Σ) under VE: ∫ ∇·f̃ = tr M, and the one-probe estimate is exactly εᵀMε for the SAME ε
    at every step, with M = U diag(½ log((λ + σ(T)²)/(λ + σ(eps)²))) Uᵀ (since d σ²/dt = g²)."""
    sde, d = VESDE(0.01, 1000.0), 6
    g = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = torch.linspace(0.05, 2.0, d, dtype=torch.float64)
    cov = (q * lam) @ q.T
    mix = GaussianMixture(torch.zeros(1, d, dtype=torch.float64), None, ((cov + cov.T) / 2)[None])
    x = mix.sample(8, g)
    s_eps, s_T = (sde.sigma(torch.tensor(t, dtype=torch.float64)) for t in (sde.eps, sde.T))
    m = (q * (0.5 * torch.log((lam + s_T ** 2) / (lam + s_eps ** 2)))) @ q.T
    res = log_likelihood(mix.score_model(sde), sde, x, hutchinson="rademacher",
                         generator=torch.Generator().manual_seed(6))
    eps_ = draw_probes(tuple(x.shape), 1, "rademacher", torch.Generator().manual_seed(6), torch.float64)[0]
    quad = torch.einsum("bi,ij,bj->b", eps_, m, eps_)
    exact_res = log_likelihood(mix.score_model(sde), sde, x, hutchinson="exact")
    print(f"\n[fixed probe] max |Δ − εᵀMε| = {(res.delta - quad).abs().max():.2e}; "
          f"max |Δ_exact − tr M| = {(exact_res.delta - m.trace()).abs().max():.2e}")
    assert torch.allclose(res.delta, quad, atol=1e-3)
    assert torch.allclose(exact_res.delta, m.trace().expand(8), atol=1e-3)


def test_network_score_float32_leaves_no_graph() -> None:
    """A float32 MLP score: the result is detached, finite, and no gradient reaches the parameters."""
    torch.manual_seed(12)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
    sde = VPSDE()
    x = torch.randn(16, 2)
    res = log_likelihood(lambda v, t: net(torch.cat([v, t[:, None]], 1)), sde, x,
                         generator=torch.Generator().manual_seed(0))
    print(f"\n[MLP score, float32] nfe={res.nfe} mean logp {res.logp.mean():.4f}")
    assert res.logp.dtype == torch.float32 and torch.isfinite(res.logp).all()
    assert not res.logp.requires_grad and not res.z.requires_grad
    assert all(p.grad is None for p in net.parameters())


# --- 8-bit data --------------------------------------------------------------------------------------------------
MU = torch.tensor([[0.30, 0.60, 0.45, 0.70], [0.65, 0.35, 0.50, 0.25]], dtype=torch.float64)  # [0, 1] pixel space
SD = 0.05  # ≈ 13 intensity levels


def pixel_mixture(centered: bool) -> GaussianMixture:
    """The pixel model in the network's input space: [0, 1], or its exact image under y = 2x − 1."""
    return GaussianMixture(2 * MU - 1, None, 4 * SD ** 2) if centered else GaussianMixture(MU, None, SD ** 2)


def images_8bit(n: int, seed: int) -> torch.Tensor:
    """Quantised samples k = floor(256 x) of the [0, 1] mixture, shape (n, 1, 2, 2), uint8."""
    x = pixel_mixture(False).sample(n, torch.Generator().manual_seed(seed))
    return (x * 256).floor().clamp(0, 255).to(torch.uint8).reshape(n, 1, 2, 2)


def exact_discrete_bpd(mix: GaussianMixture, sde: SDE, images: torch.Tensor, centered: bool) -> torch.Tensor:
    """−log2 P(k)/D with P(k) = ∫_bin p_eps, exactly: p_eps is a diagonal mixture, so each bin mass is Π_d ΔΦ."""
    p = mix.marginal(sde, sde.eps)
    k = images.reshape(len(images), -1).to(torch.float64)
    lo, hi = (k / 256, (k + 1) / 256) if not centered else (2 * k / 256 - 1, 2 * (k + 1) / 256 - 1)
    sd = p.eigvals.sqrt()[None]  # (1, K, D)

    def cdf(b: torch.Tensor) -> torch.Tensor:  # (B, K, D)
        return torch.special.ndtr((b[:, None] - p.means[None]) / sd)

    mass = cdf(hi) - cdf(lo)
    logp = torch.logsumexp(p.weights.log() + mass.log().sum(-1), dim=1)
    return -logp / (k.shape[1] * LN2)


@pytest.mark.parametrize("name,centered", [("ve", False), ("vp", True)])
def test_dequantized_bpd_is_the_bound_on_the_discrete_likelihood(name: str, centered: bool) -> None:
    sde, mix = (VESDE(0.01, 1000.0) if name == "ve" else VPSDE()), pixel_mixture(centered)
    images = images_8bit(256, seed=7)
    D, seed = 4, 8
    bpd = dequantized_bits_per_dim(mix.score_model(sde), sde, images, centered=centered, n_dequant=2,
                                   generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                                   hutchinson="exact")
    # independent Monte-Carlo reference over the same u draws: the exact log p_eps and the change-of-variables offset
    g = torch.Generator().manual_seed(seed)
    ref = torch.zeros(len(images), dtype=torch.float64)
    for _ in range(2):
        u = torch.rand(images.shape, generator=g, dtype=torch.float64)
        x = (images.double() + u) / 256
        x = 2 * x - 1 if centered else x
        ref += -mix.log_prob(x, sde.eps, sde) / (D * LN2) - math.log2(2 / 256 if centered else 1 / 256)
    ref /= 2
    discrete = exact_discrete_bpd(mix, sde, images, centered)
    gap = bpd - discrete
    se = gap.std().item() / math.sqrt(len(gap))
    print(f"\n[8-bit {name}, centered={centered}] ODE dequantised bpd {bpd.mean():.5f}; "
          f"same-u exact MC {ref.mean():.5f} "
          f"(max per-image |diff| {(bpd - ref).abs().max():.1e}); exact discrete −log2 P(k)/D {discrete.mean():.5f}; "
          f"bound gap {gap.mean():+.5f} ± {se:.5f}")
    assert (bpd > 0).all()
    assert (bpd - ref).abs().max() <= 0.02 / (D * LN2)
    assert -3 * se <= gap.mean().item() <= 0.01 + 3 * se


def test_centering_flag_and_jacobian_offset() -> None:
    """An uncentered model and its exact centered image (y = 2x − 1, VE sigmas doubled, so the whole diffusion maps
    affinely) are the same distribution of 8-bit images: with the right flags both give the same bpd. Reporting
    the centered model's log-density with the [0, 1] offset log2 256 (the wrong Jacobian) is exactly 1 bit/dim off,
    and declaring centered data as [0, 1] feeds the model the wrong inputs."""
    images = images_8bit(64, seed=9)
    sde_n, sde_c = VESDE(0.01, 1000.0), VESDE(0.02, 2000.0)
    score_n, score_c = pixel_mixture(False).score_model(sde_n), pixel_mixture(True).score_model(sde_c)
    kw = dict(hutchinson="exact", dtype=torch.float64)
    bpd_n = dequantized_bits_per_dim(score_n, sde_n, images, centered=False,
                                     generator=torch.Generator().manual_seed(10), **kw)
    bpd_c = dequantized_bits_per_dim(score_c, sde_c, images, centered=True,
                                     generator=torch.Generator().manual_seed(10), **kw)
    u = torch.rand(images.shape, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    y = 2 * (images.double() + u) / 256 - 1
    wrong_offset = -log_likelihood(score_c, sde_c, y, hutchinson="exact").logp / (4 * LN2) + 8
    wrong_flag = dequantized_bits_per_dim(score_c, sde_c, images, centered=False,
                                          generator=torch.Generator().manual_seed(10), **kw)
    print(f"\n[centering] bpd [0,1] model {bpd_n.mean():.5f}; centered model {bpd_c.mean():.5f} "
          f"(max |diff| {(bpd_n - bpd_c).abs().max():.1e}); centered log p with offset log2 256: "
          f"{wrong_offset.mean():.5f} (diff {(wrong_offset - bpd_c).mean():+.6f}); centered model told centered=False: "
          f"{wrong_flag.mean():.2f}")
    assert (bpd_n - bpd_c).abs().max() <= 1e-3
    assert torch.allclose(wrong_offset - bpd_c, torch.ones_like(bpd_c), atol=1e-6)
    assert (wrong_flag - bpd_c).mean() > 1


def test_bad_inputs_raise() -> None:
    sde, mix = VPSDE(), pixel_mixture(False)
    score = mix.score_model(sde)
    good = images_8bit(2, seed=11)
    negative = good.to(torch.int32)
    negative[0, 0, 0, 0] = -1
    for bad in (good.float() / 255, good.to(torch.int64) + 256, negative, good.reshape(2, 4), good.bool()):
        with pytest.raises(ValueError, match="images"):
            dequantized_bits_per_dim(score, sde, bad, centered=False)
    assert dequantized_bits_per_dim(score, sde, good.to(torch.int64), centered=False, hutchinson="exact").shape == (2,)
    with pytest.raises(ValueError, match="n_dequant"):
        dequantized_bits_per_dim(score, sde, good, centered=False, n_dequant=0)
    x = mix.sample(2).reshape(2, 1, 2, 2)
    with pytest.raises(ValueError, match="score_fn"):
        log_likelihood(lambda v, t: score(v, t).flatten(1), sde, x)
    with pytest.raises(ValueError, match="hutchinson"):
        log_likelihood(score, sde, x, hutchinson="hutch")
    with pytest.raises(ValueError, match="n_probes"):
        log_likelihood(score, sde, x, n_probes=0)
    with pytest.raises(ValueError, match="eps"):
        log_likelihood(score, sde, x, eps=1.0)
    with pytest.raises(ValueError, match="x must"):
        log_likelihood(score, sde, good)
