"""Decoupled Annealing Posterior Sampling (Zhang, Chu, Berner, Sun, Yue & Anandkumar, 2024, "Improving
Diffusion Inverse Problem Solving with Decoupled Noise Annealing"), DAPS in pixel space.

At each annealing level t_i of the grid (in the scaled variable x̃ = x/α with noise level ς = σ/α):
x̂₀ = the probability-flow ODE from x̃_{t_i} down to 0 (Euler in ς, x̃ ← D + (ς'/ς)(x̃ − D) with D = E[x₀ | x_ς]);
then Langevin on p(x₀ | x_t, y) ∝ N(x₀; x̂₀, r_t² I) N(y; A x₀, β² I) from x₀ = x̂₀,

    x₀ ← x₀ + η_i (−(x₀ − x̂₀)/r_t² + Aᵀ(y − A x₀)/β²) + √(2η_i) ε,   r_t = ς(t_i),

and x_{t_{i+1}} = α(t_{i+1}) x₀ + σ(t_{i+1}) ε (the last level returns x₀).

Details follow the official code (github.com/zhangbingliang2019/DAPS: ``sampler.py::DAPS``,
``cores/mcmc.py::MCMCSampler`` with ``prior_solver: gaussian``, ``configs/sampler/edm_daps.yaml``,
``configs/task/*.yaml``): the ODE walks an EDM ρ = 7 grid of ``ode_steps`` noise levels from ς(t_i) to the
grid's last level ς(t_n) (the code's σ_min = 0.01) and here takes a final Euler step to ς = 0 (so one ODE step
is Tweedie's x̂₀); the Langevin step size is constant within a level and decays linearly over the levels,
η_i = lr (1 − (1 − lr_min_ratio) i/n); levels are t_0, ..., t_{n−1} of the n-step grid (the code's 200
levels of a 201-point EDM grid from σ = 100 to 0.1, the last point unused, then noise 0).
"""
from __future__ import annotations

import math

import torch

from .. import _checks
from ..measurement import linear_part
from ..sampling.pc import check_state
from ..sampling.timesteps import check_timesteps, noise_levels, noise_ratio, time_of_noise
from ..sde import SDE
from .base import Solver, SolverResult, noise

# The official configs weigh the data term as ‖A x − y‖²/τ² with τ = 0.01 (in the [−1, 1] pixel units of
# its models) whatever the measurement noise: a Gaussian likelihood of standard deviation τ/√2.
NOISELESS_SIGMA = 0.01 / math.sqrt(2.0)


class DAPS(Solver):
    """DAPS (see module): per level, x̂₀ by ``ode_steps`` Euler steps of the PF-ODE, ``langevin_steps`` Langevin
    steps on N(x₀; x̂₀, ς_t² I) p(y | x₀), re-noise to the next level. nfe = ode_steps per level.

    Defaults are DAPS-1K's (paper, Table/App. and the official configs): 5 ODE steps, 100 Langevin steps,
    lr = 1e-4 (super-resolution and deblurring; 5e-5 for inpainting), lr_min_ratio = 0.01; the paper's 200
    annealing levels are the grid's (``noise_level_timesteps(sde, 200, sigma_max=100, sigma_min=0.1, rho=7)``).
    ``likelihood_sigma`` β of the Langevin data term N(y; A x₀, β² I): None uses the measurement's σ_y, or for a
    noiseless one ``NOISELESS_SIGMA`` = 0.01/√2 (the official τ = 0.01, used there for every task); a number is
    used always, as the official code does. The Langevin step is explicit: it needs η (‖A‖²/β² + 1/ς²) < 2.
    """

    name = "daps"

    def __init__(self, ode_steps: int = 5, langevin_steps: int = 100, lr: float = 1e-4, lr_min_ratio: float = 0.01,
                 likelihood_sigma: float | None = None):
        self.ode_steps = _checks.positive_int("ode_steps", ode_steps)
        if isinstance(langevin_steps, bool) or int(langevin_steps) != langevin_steps or langevin_steps < 0:
            raise ValueError(f"langevin_steps must be an integer >= 0, got {langevin_steps!r}")
        self.langevin_steps = int(langevin_steps)
        self.lr = _checks.positive("lr", lr)
        self.lr_min_ratio = _checks.positive("lr_min_ratio", lr_min_ratio)
        if self.lr_min_ratio > 1:
            raise ValueError(f"lr_min_ratio must lie in (0, 1], got {lr_min_ratio!r}")
        self.likelihood_sigma = None if likelihood_sigma is None else _checks.positive("likelihood_sigma",
                                                                                       likelihood_sigma)

    def check(self, measurement) -> None:
        linear_part(measurement, "DAPS")

    def beta(self, measurement) -> float:
        """β of the Langevin data term for this measurement (see class)."""
        m = linear_part(measurement, "DAPS")
        if self.likelihood_sigma is not None:
            return self.likelihood_sigma
        return m.sigma_y if m.sigma_y > 0 else NOISELESS_SIGMA

    def step_sizes(self, n: int) -> list[float]:
        """η_i = lr (1 − (1 − lr_min_ratio) i/n) for the n levels."""
        return [self.lr * (1.0 + (self.lr_min_ratio - 1.0) * i / n) for i in range(n)]

    def ode_times(self, sde: SDE, timesteps: torch.Tensor) -> torch.Tensor:
        """(n, ode_steps) float64 times of the ODE's evaluations at each level t_i: ς from ς(t_i) to ς(t_n), ρ = 7."""
        ts = torch.as_tensor(timesteps, dtype=torch.float64)
        levels, end = ts[:-1], ts[-1]
        sig = noise_levels(noise_ratio(sde, levels), noise_ratio(sde, end.reshape(1)), self.ode_steps)
        times = time_of_noise(sde, sig, end, levels[:, None].expand_as(sig))
        times[:, 0] = levels
        if self.ode_steps > 1:
            times[:, -1] = end
        return times

    @torch.no_grad()
    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        m = linear_part(measurement, "DAPS")
        A = m.operator
        beta2 = self.beta(m) ** 2
        x = check_state(x)
        ts = check_timesteps(timesteps, sde).to(torch.float64).cpu()
        n = ts.numel() - 1
        node_times = self.ode_times(sde, ts)  # (n, K)
        node_ratio = noise_ratio(sde, node_times)  # (n, K)
        alphas, stds = (c.tolist() for c in sde.marginal_coeffs(ts))
        node_alpha = sde.marginal_coeffs(node_times)[0]
        etas = self.step_sizes(n)
        start = denoiser.nfe
        y = y.to(device=x.device, dtype=x.dtype)
        Aty = A.adjoint(y) / beta2

        def vec(t: float) -> torch.Tensor:
            return torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)

        for i in range(n):
            # 1. x̂₀: Euler steps of the PF-ODE in the scaled variable, ς(t_i) → ... → ς(t_n) → 0
            xs = x / alphas[i]
            for k in range(self.ode_steps):
                d = denoiser.x0(xs * float(node_alpha[i, k]), vec(float(node_times[i, k])))
                here = float(node_ratio[i, k])
                nxt = float(node_ratio[i, k + 1]) if k + 1 < self.ode_steps else 0.0
                xs = d + (nxt / here if here > 0 else 0.0) * (xs - d)
            x0hat = xs
            # 2. Langevin on N(x₀; x̂₀, r²) N(y; A x₀, β²) from x̂₀
            r2 = (stds[i] / alphas[i]) ** 2
            eta = etas[i]
            x0 = x0hat
            for _ in range(self.langevin_steps):
                grad = (x0hat - x0) / r2 + Aty - A.adjoint(A(x0)) / beta2
                x0 = x0 + eta * grad + math.sqrt(2 * eta) * noise(x0, generator)
            # 3. re-noise to the next level (none after the last)
            x = alphas[i + 1] * x0 + stds[i + 1] * noise(x0, generator) if i < n - 1 else x0
            if callback is not None:
                callback(i, float(ts[i + 1]), x, x0)
        return SolverResult(x, denoiser.nfe - start)
