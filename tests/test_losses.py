"""Tests of the DSM and sliced score-matching losses and of the small DSM fit loop."""
from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from invsgm.fit import fit_score_model
from invsgm.denoisers import score_sde_denoiser
from invsgm.models import MLPScoreNet
from invsgm.losses import dsm_loss, dsm_losses, sliced_score_matching_loss, sliced_score_matching_losses
from invsgm.priors import GaussianMixture
from invsgm.sampling import default_timesteps, langevin, reverse_diffusion, sample_ode, sample_pc
from invsgm.sde import SubVPSDE, VESDE, VPSDE, _bcast
from invsgm.stats import sliced_wasserstein

SDES = {"ve": VESDE(), "vp": VPSDE(), "subvp": SubVPSDE()}
A = torch.tensor([[0.6, -0.8], [0.3, 0.5]], dtype=torch.float64)
b = torch.tensor([0.4, -0.2], dtype=torch.float64)


def mixture4() -> GaussianMixture:
    means = torch.tensor([[-2.0, -1.0], [2.0, -1.5], [-1.5, 2.0], [2.0, 2.0]])
    return GaussianMixture(means, torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.3, 0.2, 0.5, 0.25]))


class Perturbed(nn.Module):
    """s(x, t) = exact(x, t) + c u(x, t), u = A x̂ + b with x̂ = x / √(α² + σ²) of unit scale."""

    def __init__(self, exact: nn.Module, sde, c: float):
        super().__init__()
        self.exact, self.sde, self.c = exact, sde, c

    def forward(self, x, t):
        alpha, std = self.sde.marginal_coeffs(t)
        xh = x / _bcast((alpha ** 2 + std ** 2).sqrt(), x)
        return self.exact(x, t) + self.c * (xh @ A.T + b)


def vertex(per_c: dict[float, torch.Tensor]) -> tuple[float, float, float]:
    """Vertex c* of the parabola through the mean losses at c ∈ {−h, 0, h}, its delta-method SE, and
    the vertex of a least-squares parabola through all the c's (common random numbers ⇒ exact parabola)."""
    cs = sorted(per_c)
    h = cs[-1]
    Lm, L0, Lp = per_c[-h], per_c[0.0], per_c[h]
    Bi = (Lp - Lm) / (2 * h)  # linear coefficient per sample
    Ci = (Lp + Lm - 2 * L0) / (2 * h * h)  # quadratic coefficient per sample
    n = Bi.numel()
    c_star = -Bi.mean() / (2 * Ci.mean())
    se = (Bi + 2 * c_star * Ci).std() / math.sqrt(n) / (2 * Ci.mean())
    X = torch.tensor([[c * c, c, 1.0] for c in cs], dtype=torch.float64)
    y = torch.stack([per_c[c].mean() for c in cs])
    q = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    return c_star.item(), se.item(), (-q[1] / (2 * q[0])).item()


@pytest.mark.parametrize("weighting", ["paper", "likelihood"])
@pytest.mark.parametrize("name", ["ve", "vp", "subvp"])
def test_dsm_minimised_by_exact_score(name, weighting):
    """L(c) = DSM(exact + c u) over common random numbers is a parabola with vertex at c = 0;
    the same test on exact + 0.2 u finds the vertex at −0.2 (the test has power)."""
    sde, gm = SDES[name], mixture4()
    x0 = gm.sample(20000, torch.Generator().manual_seed(0))
    for shift in (0.0, 0.2):
        per_c = {}
        for c in (-0.5, -0.25, 0.0, 0.25, 0.5):
            model = Perturbed(gm.score_model(sde), sde, shift + c)
            per_c[c], _ = dsm_losses(model, sde, x0, weighting=weighting, generator=torch.Generator().manual_seed(1))
        c_star, se, c_fit = vertex(per_c)
        print(f"DSM {name:5s} {weighting:10s} shift {shift:.1f}: vertex c* = {c_star:+.5f} ± {se:.1e} "
              f"(5-point fit {c_fit:+.5f}); expected {-shift:+.1f}")
        assert abs(c_fit - c_star) < 1e-6
        assert abs(c_star + shift) < 4 * se
        assert abs(c_star + shift) < 0.03


@pytest.mark.parametrize("name", ["ve", "vp", "subvp"])
def test_dsm_closed_form_for_gaussian_data(name):
    """Data N(0, s² I_d), exact score −x/v, v = α²s² + σ²: E‖σ s + z‖² = d(1 − σ²/v) ('paper') and
    E g²‖s + z/σ‖² = g² d α²s² / (v σ²) ('likelihood'), each averaged over t ~ U(ε, 1)."""
    sde, d, s = SDES[name], 3, 0.7
    gm = GaussianMixture(torch.zeros(1, d), covariances=s * s)
    x0 = gm.sample(200000, torch.Generator().manual_seed(0))
    t = torch.linspace(sde.eps, 1.0, 200001, dtype=torch.float64)
    alpha, std = sde.marginal_coeffs(t)
    v = alpha ** 2 * s * s + std ** 2
    expected = {"paper": d * (1 - std ** 2 / v),
                "likelihood": sde.diffusion(t) ** 2 * d * alpha ** 2 * s * s / (v * std ** 2)}
    for weighting, integrand in expected.items():
        exact = torch.trapezoid(integrand, t).item() / (1.0 - sde.eps)
        losses, _ = dsm_losses(gm.score_model(sde), sde, x0, weighting=weighting,
                               generator=torch.Generator().manual_seed(1))
        mc, se = losses.mean().item(), losses.std().item() / math.sqrt(losses.numel())
        print(f"DSM closed form {name:5s} {weighting:10s}: Monte Carlo {mc:.5f} ± {se:.5f}, exact {exact:.5f}")
        assert abs(mc - exact) < 4 * se


def test_dsm_reduce_mean_and_scalar():
    sde, gm = SDES["vp"], mixture4()
    x0 = gm.sample(64, torch.Generator().manual_seed(0))
    model = gm.score_model(sde)
    total = dsm_loss(model, sde, x0, generator=torch.Generator().manual_seed(3))
    mean = dsm_loss(model, sde, x0, generator=torch.Generator().manual_seed(3), reduce_mean=True)
    losses, t = dsm_losses(model, sde, x0, generator=torch.Generator().manual_seed(3))
    assert total.ndim == 0 and losses.shape == t.shape == (64,)
    assert torch.allclose(total, 2 * mean) and torch.allclose(total, losses.mean())
    assert (t >= sde.eps).all() and (t <= sde.T).all()


def gaussian3():
    """N(m, Σ) in 3-D with precision P; the exact score is −P(x − m)."""
    L = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.3, 0.2, 0.6]], dtype=torch.float64)
    cov, m = L @ L.T, torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    return m, cov, torch.linalg.inv(cov), GaussianMixture(m[None], covariances=cov[None])


A3 = torch.tensor([[0.5, -0.2, 0.1], [0.3, 0.4, -0.6], [-0.1, 0.2, 0.3]], dtype=torch.float64)
b3 = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
@pytest.mark.parametrize("variance_reduction", [True, False])
def test_ssm_equals_fisher_divergence_up_to_constant(projection, variance_reduction):
    """For s = exact + c u: J(0) = −½ tr P and J(c) − J(0) = ½ c² E‖u‖² (the Fisher divergence)."""
    m, cov, P, gm = gaussian3()
    x = gm.sample(50000, torch.Generator().manual_seed(0))
    fisher_u = ((A3 @ m + b3).pow(2).sum() + torch.trace(A3 @ cov @ A3.T)).item()
    per_c = {}
    for c in (-0.5, 0.0, 0.5):
        fn = lambda y, c=c: -(y - m) @ P.T + c * (y @ A3.T + b3)
        per_c[c] = sliced_score_matching_losses(fn, x, n_projections=2, generator=torch.Generator().manual_seed(1),
                                                variance_reduction=variance_reduction, projection=projection).detach()
    n = x.shape[0]
    j0, se0 = per_c[0.0].mean().item(), per_c[0.0].std().item() / math.sqrt(n)
    print(f"SSM {projection:10s} VR={variance_reduction!s:5s}: J(0) = {j0:.4f} ± {se0:.4f}, "
          f"exact −½ tr P = {-0.5 * torch.trace(P).item():.4f}")
    assert abs(j0 + 0.5 * torch.trace(P).item()) < 4 * se0
    for c in (-0.5, 0.5):
        diff = per_c[c] - per_c[0.0]
        d, se = diff.mean().item(), diff.std().item() / math.sqrt(n)
        print(f"    c = {c:+.1f}: J(c) − J(0) = {d:.4f} ± {se:.4f}, "
              f"Fisher ½c²E‖u‖² = {0.5 * c * c * fisher_u:.4f}")
        assert d > 0 and abs(d - 0.5 * c * c * fisher_u) < 4 * se


def test_ssm_vr_and_plain_agree_in_expectation():
    """With the same x and v, plain − VR = ½((vᵀs)² − ‖s‖²), which has mean 0 because E vvᵀ = I."""
    m, cov, P, gm = gaussian3()
    x = gm.sample(100000, torch.Generator().manual_seed(0))
    fn = lambda y: -(y - m) @ P.T + 0.3 * (y @ A3.T + b3)
    for projection in ("rademacher", "gaussian"):
        out = [sliced_score_matching_losses(fn, x, generator=torch.Generator().manual_seed(2), projection=projection,
                                            variance_reduction=vr).detach() for vr in (False, True)]
        diff = out[0] - out[1]
        d, se = diff.mean().item(), diff.std().item() / math.sqrt(x.shape[0])
        print(f"SSM plain − VR ({projection}): {d:+.4f} ± {se:.4f} (per-sample std plain {out[0].std():.3f}, "
              f"VR {out[1].std():.3f})")
        assert abs(d) < 4 * se


def test_ssm_time_conditional_score_model():
    """SSM at a fixed t with the exact diffused GMM score: perturbing it raises the loss by ½c²E‖u‖²."""
    sde, gm, t = SDES["vp"], mixture4(), 0.3
    x = gm.marginal(sde, t).sample(40000, torch.Generator().manual_seed(0))
    model = gm.score_model(sde)
    j = {c: sliced_score_matching_losses(Perturbed(model, sde, c) if c else model, x, t=t,
                                         generator=torch.Generator().manual_seed(1)).detach() for c in (0.0, 0.4)}
    alpha, std = sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64))
    u = x / (alpha ** 2 + std ** 2).sqrt() @ A.T + b  # the perturbation field of Perturbed
    diff = j[0.4] - j[0.0]
    d, se = diff.mean().item(), diff.std().item() / math.sqrt(x.shape[0])
    fisher = 0.5 * 0.16 * u.pow(2).sum(1).mean().item()
    print(f"SSM at t={t} (VP, GMM): J(0) = {j[0.0].mean():.4f}, J(0.4) − J(0) = {d:.4f} ± {se:.4f}, "
          f"½c²E‖u‖² = {fisher:.4f}")
    assert d > 0 and abs(d - fisher) < 4 * se + 0.01 * fisher


def test_ssm_is_trainable():
    """A linear score s(x) = W x + c fitted by SSM-VR (autograd through create_graph) recovers −P, P m."""
    torch.manual_seed(0)
    m, cov, P, gm = gaussian3()
    x = gm.sample(8192, torch.Generator().manual_seed(0)).float()
    lin = nn.Linear(3, 3)
    opt = torch.optim.Adam(lin.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1500)
    g = torch.Generator().manual_seed(1)
    for _ in range(1500):
        loss = sliced_score_matching_loss(lin, x[torch.randint(8192, (1024,), generator=g)], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    err_W = (lin.weight.double() + P).abs().max().item()
    err_c = (lin.bias.double() - P @ m).abs().max().item()
    print(f"SSM-trained linear score: max |W + P| = {err_W:.3f}, max |c − P m| = {err_c:.3f} "
          f"(max |P| = {P.abs().max():.2f})")
    assert err_W < 0.15 and err_c < 0.15


def test_validation_names_argument():
    sde, gm = SDES["vp"], mixture4()
    model = gm.score_model(sde)
    x0 = gm.sample(8, torch.Generator().manual_seed(0))
    cases = [
        ("weighting", lambda: dsm_loss(model, sde, x0, weighting="uniform")),
        ("x0", lambda: dsm_loss(model, sde, x0[0])),
        ("x0", lambda: dsm_loss(model, sde, x0.tolist())),
        ("x0", lambda: dsm_loss(model, sde, x0.long())),
        ("eps", lambda: dsm_loss(model, sde, x0, eps=0.0)),
        ("eps", lambda: dsm_loss(model, sde, x0, eps=1.5)),
        ("n_projections", lambda: sliced_score_matching_loss(lambda y: -y, x0, n_projections=0)),
        ("projection", lambda: sliced_score_matching_loss(lambda y: -y, x0, projection="sphere")),
        ("x", lambda: sliced_score_matching_loss(lambda y: -y, x0[0])),
        ("t", lambda: sliced_score_matching_loss(model, x0, t=2.0)),
        ("score", lambda: sliced_score_matching_loss(lambda y: y.sum(1), x0)),
    ]
    lin = nn.Linear(2, 2)
    fit_cases = [
        ("steps", dict(steps=0, batch_size=4)),
        ("batch_size", dict(steps=1, batch_size=0)),
        ("ema_decay", dict(steps=1, batch_size=4, ema_decay=1.0)),
        ("lr", dict(steps=1, batch_size=4, lr=-1.0)),
        ("warmup", dict(steps=1, batch_size=4, warmup=-3)),
        ("grad_clip", dict(steps=1, batch_size=4, grad_clip=0.0)),
    ]

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x, t):
            return self.lin(x)

    for name, kw in fit_cases:
        cases.append((name, lambda kw=kw: fit_score_model(Wrap(), sde, x0, **kw)))
    cases.append(("data", lambda: fit_score_model(Wrap(), sde, "points", steps=1, batch_size=4)))
    cases.append(("data", lambda: fit_score_model(Wrap(), sde, x0[0], steps=1, batch_size=4)))
    cases.append(("model", lambda: fit_score_model(nn.Identity(), sde, x0, steps=1, batch_size=4)))
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()


def ring_mixture() -> GaussianMixture:
    """Six components of std 0.3 on a circle of radius 3 (neighbours 3 apart = 10 std), unequal weights."""
    angle = torch.arange(6) * 2 * math.pi / 6
    means = 3.0 * torch.stack([angle.cos(), angle.sin()], 1)
    return GaussianMixture(means, torch.tensor([0.1, 0.15, 0.2, 0.25, 0.15, 0.15]), 0.3 ** 2)


# End to end: VE with σ_min = 0.05 (at σ_min = 0.01 the σ²-weighted loss leaves the score at the
# smallest noise levels ~17% wrong, which Langevin steps there turn into biased modes) sampled by PC;
# VP sampled by the probability-flow ODE (PC at 500 steps biases VP weights by ~0.015 even with the exact score).
E2E = {
    "ve": (lambda: VESDE(sigma_min=0.05, sigma_max=10.0), "pc"),
    "vp": (lambda: VPSDE(), "ode"),
}
N_SAMPLES, W_TOL, MEAN_TOL, STD_TOL, SW_FACTOR = 8000, 0.03, 0.1, 0.05, 2.0


def mixture_report(label: str, gm: GaussianMixture, xs: torch.Tensor, ref: torch.Tensor, floor: float) -> dict:
    """Component weights (by responsibility argmax), per-component means/stds and SW to exact samples."""
    xs = xs.double()
    k = gm.responsibilities(xs).argmax(1)
    weights = torch.bincount(k, minlength=gm.num_components).double() / xs.shape[0]
    mean_err = max((xs[k == j].mean(0) - gm.means[j]).norm().item() for j in range(gm.num_components))
    std_err = max((xs[k == j].std(0) - 0.3).abs().max().item() for j in range(gm.num_components))
    sw = sliced_wasserstein(xs, ref, 512, torch.Generator().manual_seed(4))
    out = dict(w_err=(weights - gm.weights).abs().max().item(), mean_err=mean_err, std_err=std_err, sw=sw)
    print(f"  {label:26s} weights {[round(w, 3) for w in weights.tolist()]}  max |Δw| {out['w_err']:.4f}  "
          f"max mean dist {mean_err:.4f}  max |Δstd| {std_err:.4f}  SW {sw:.4f} = {sw / floor:.2f} × floor")
    return out


@pytest.mark.parametrize("name", ["ve", "vp"])
def test_fit_mlp_and_sample_reproduces_mixture(name):
    """MLPScoreNet + DSM ('paper') on a 6-component 2-D mixture, then sampled: weights, means, stds and
    sliced Wasserstein match the mixture (tolerances above; the same sampler with the exact score for reference)."""
    make_sde, sampler = E2E[name]
    sde, gm = make_sde(), ring_mixture()
    torch.manual_seed(0)
    model = score_sde_denoiser(MLPScoreNet(2, hidden=64, depth=4), sde)
    cpu0 = time.process_time()
    res = fit_score_model(model, sde, gm.sample, steps=8000, batch_size=256, lr=4e-3, warmup=100,
                          cosine_decay=True, ema_decay=0.999, generator=torch.Generator().manual_seed(0))
    cpu = time.process_time() - cpu0
    print(f"\nfit {name}: 8000 Adam steps of 256, {torch.get_num_threads()} thread(s): wall {res.wall_time:.1f} s, "
          f"CPU {cpu:.1f} s; DSM loss first 100 {res.losses[:100].mean():.4f}, "
          f"last 1000 {res.losses[-1000:].mean():.4f}")
    assert cpu < 60.0

    ref = gm.sample(N_SAMPLES, torch.Generator().manual_seed(100))
    floors = torch.tensor([sliced_wasserstein(gm.sample(N_SAMPLES, torch.Generator().manual_seed(s)), ref, 512,
                                              torch.Generator().manual_seed(4)) for s in range(8)])
    floor = floors.mean().item()
    print(f"  exact-vs-exact SW floor: mean {floor:.4f} over 8 pairs (min {floors.min():.4f}, max {floors.max():.4f})")

    def draw(score_fn):
        g = torch.Generator().manual_seed(1)
        x = sde.prior_sampling((N_SAMPLES, 2), generator=g)
        if sampler == "pc":
            return sample_pc(score_fn, sde, x, default_timesteps(sde, 500), predictor=reverse_diffusion,
                             corrector=langevin, snr=0.16, generator=g)
        return sample_ode(score_fn, sde, x, default_timesteps(sde, 100), method="rk4")

    label = "PC 500 (RD + Langevin)" if sampler == "pc" else "ODE RK4 100 steps"
    start = time.perf_counter()
    trained = mixture_report(f"trained, {label}", gm, draw(res.ema_model), ref, floor)
    print(f"  sampling wall {time.perf_counter() - start:.1f} s")
    mixture_report(f"exact score, {label}", gm, draw(gm.score_model(sde)), ref, floor)
    assert trained["w_err"] <= W_TOL
    assert trained["mean_err"] <= MEAN_TOL
    assert trained["std_err"] <= STD_TOL
    assert trained["sw"] <= SW_FACTOR * floor
