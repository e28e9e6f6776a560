"""Forward SDEs dx = f(x,t) dt + g(t) dw of Song et al. (ICLR 2021), their marginals and reverses.

Every SDE here is linear with a Gaussian transition: x(t) | x(0) ~ N(α(t) x(0), σ(t)² I),
so one pair of coefficients (``marginal_coeffs``) gives the marginal, the exact one-step
transition used by the reverse-diffusion and ancestral predictors, and the prior.

Convention for VE (as in the paper): σ(t) = σ_min (σ_max/σ_min)^t is the total noise level, so
``marginal_prob`` is the law of x(t) when x(0) ~ N(x0, σ_min² I) — p_0 is the data perturbed by
the negligible σ_min.
"""
from __future__ import annotations

import abc
import math
from typing import Callable

import torch

from . import _checks
from ._names import sde_key

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (B,) tensor to broadcast against x of shape (B, ...)."""
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


class SDE(abc.ABC):
    """A linear forward SDE on [0, T] with T = 1 and N discretisation steps."""

    T: float = 1.0
    eps: float = 1e-3  # default end time of sampling and likelihood integration

    def __init__(self, N: int = 1000):
        self.N = _checks.positive_int("N", N)

    # --- what each SDE defines -------------------------------------------------------------
    @abc.abstractmethod
    def drift_coeff(self, t: torch.Tensor) -> torch.Tensor:
        """c(t) in the linear drift f(x, t) = c(t) x; shape (B,)."""

    @abc.abstractmethod
    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """g(t), shape (B,)."""

    @abc.abstractmethod
    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α(t), σ(t)) with x(t) | x(0) ~ N(α(t) x(0), σ(t)² I); each of shape (B,)."""

    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the zero-mean Gaussian prior p_T."""

    # --- derived ---------------------------------------------------------------------------
    def sde(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x, t), g(t)); f has x's shape, g shape (B,)."""
        t = _checks.time_vector(t, x)
        return _bcast(self.drift_coeff(t), x) * x, self.diffusion(t)

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of p_t(x | x0) = N(α(t) x0, σ(t)² I); std has shape (B,)."""
        t = _checks.time_vector(t, x0)
        alpha, std = self.marginal_coeffs(t)
        return _bcast(alpha, x0) * x0, std

    def prior_sampling(
        self, shape: tuple[int, ...], generator: torch.Generator | None = None,
        device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """A sample of p_T ≈ N(0, prior_std² I)."""
        if generator is not None and device is None:
            device = generator.device
        return self.prior_std() * torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, prior_std² I) per sample, shape (B,)."""
        d = z[0].numel()
        s = self.prior_std()
        return -0.5 * d * math.log(2 * math.pi * s * s) - z.flatten(1).pow(2).sum(1) / (2 * s * s)

    def transition(self, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, G) of the exact transition x(t) = a x(s) + G z for s < t; shapes (B,).

        a = α(t)/α(s) and G² = σ(t)² − a² σ(s)² (variances of a linear SDE add up).
        """
        alpha_t, std_t = self.marginal_coeffs(t)
        alpha_s, std_s = self.marginal_coeffs(s)
        a = alpha_t / alpha_s
        return a, (std_t.pow(2) - (a * std_s).pow(2)).clamp_min(0).sqrt()

    def discretize(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f, G) with x(t) = x(s) + f + G z, the discretisation used by reverse diffusion.

        For VE this is SMLD's σ_i² − σ_{i-1}² step, for VP DDPM's (√(1−β_i) − 1) x, √β_i.
        """
        a, G = self.transition(t, s)
        return (_bcast(a, x) - 1) * x, G

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (or probability-flow ODE) driven by ``score_fn(x, t)``."""
        return ReverseSDE(self, score_fn, probability_flow)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    @abc.abstractmethod
    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the SDE (``from_config``)."""


class ReverseSDE:
    """dx = [f − (1 or ½) g² ∇log p_t] dt + (g or 0) dw̄, run from t = T to 0."""

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.forward, self.score_fn, self.probability_flow = forward, score_fn, probability_flow

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reverse drift, reverse diffusion) at (x, t)."""
        f, g = self.forward.sde(x, t)
        g2 = _bcast(g.pow(2), x)
        score = self.score_fn(x, t)
        if self.probability_flow:
            return f - 0.5 * g2 * score, torch.zeros_like(g)
        return f - g2 * score, g

    def discretize(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rev_f, rev_G) with x(s) = x(t) − rev_f + rev_G z (reverse-diffusion discretisation)."""
        f, G = self.forward.discretize(x, t, s)
        G2 = _bcast(G.pow(2), x)
        score = self.score_fn(x, t)
        if self.probability_flow:
            return f - 0.5 * G2 * score, torch.zeros_like(G)
        return f - G2 * score, G


class VESDE(SDE):
    """Variance exploding: dx = σ(t) √(2 log(σ_max/σ_min)) dw, σ(t) = σ_min (σ_max/σ_min)^t."""

    eps = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        self.sigma_min = _checks.positive("sigma_min", sigma_min)
        self.sigma_max = _checks.positive("sigma_max", sigma_max)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max})")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) = σ_min (σ_max/σ_min)^t."""
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones_like(t), self.sigma(t)

    def prior_std(self) -> float:
        return self.sigma_max

    def config(self) -> dict:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "N": self.N}


class _BetaSchedule(SDE):
    """Shared linear schedule β(t) = β_min + t (β_max − β_min) of VP and sub-VP."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        self.beta_min = _checks.non_negative("beta_min", beta_min)
        self.beta_max = _checks.positive("beta_max", beta_max)
        if self.beta_min >= self.beta_max:
            raise ValueError(f"beta_min ({beta_min}) must be smaller than beta_max ({beta_max})")

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = β_min + t (β_max − β_min)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        """log α(t) = −¼ t² (β_max − β_min) − ½ t β_min."""
        return -0.25 * t.pow(2) * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def drift_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta(t)

    def prior_std(self) -> float:
        return 1.0

    def config(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "N": self.N}


class VPSDE(_BetaSchedule):
    """Variance preserving: dx = −½ β(t) x dt + √β(t) dw; σ(t)² = 1 − α(t)²."""

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta(t).sqrt()

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lmc = self.log_mean_coeff(t)
        return lmc.exp(), (-torch.expm1(2 * lmc)).sqrt()


class SubVPSDE(_BetaSchedule):
    """Sub-VP: dx = −½ β(t) x dt + √(β(t)(1 − e^{−2∫β})) dw; σ(t) = 1 − α(t)²."""

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return (self.beta(t) * -torch.expm1(4 * self.log_mean_coeff(t))).sqrt()

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lmc = self.log_mean_coeff(t)
        return lmc.exp(), -torch.expm1(2 * lmc)


DISCRETE_SCHEDULES = ("linear", "scaled_linear", "cosine")


def discrete_betas(schedule: str, N: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                   max_beta: float = 0.999, cosine_s: float = 0.008) -> torch.Tensor:
    """β_0..β_{N−1} (float64) of a discrete-time DDPM process, as ADM and diffusers build them.

    ``linear``: linspace(β_start, β_end, N); ``scaled_linear``: linspace(√β_start, √β_end, N)²;
    ``cosine``: β_i = min(1 − ᾱ((i+1)/N)/ᾱ(i/N), max_beta) with ᾱ(s) = cos²((s + c)/(1 + c)·π/2), c = ``cosine_s``.
    """
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, N, dtype=torch.float64)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, N, dtype=torch.float64) ** 2
    if schedule == "cosine":
        s = torch.arange(N + 1, dtype=torch.float64) / N
        abar = torch.cos((s + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
    raise ValueError(f"schedule must be one of {list(DISCRETE_SCHEDULES)}, got {schedule!r}")


class DiscreteVPSDE(SDE):
    """The VP process of a discrete-time DDPM (ADM, diffusers, score_sde's DDPM): x_i = √ᾱ_i x₀ + √(1−ᾱ_i) z.

    Step i ∈ {0, …, N−1} sits at time t_i = i/(N−1), so ᾱ(t_i) = ∏_{j≤i}(1 − β_j) exactly on the training grid;
    between grid times log ᾱ is linear in t, i.e. β(t) = −d log ᾱ/dt is piecewise constant and the SDE is
    dx = −½ β(t) x dt + √β(t) dw. t = 0 is the first trained level (ᾱ_0 = 1 − β_0), so ``eps`` is 0; the
    transition between two grid times is DDPM's respaced step, 1 − β = ᾱ_t/ᾱ_s.
    """

    eps = 0.0

    def __init__(self, schedule: str = "linear", N: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 max_beta: float = 0.999, cosine_s: float = 0.008):
        super().__init__(N)
        if self.N < 2:
            raise ValueError(f"a discrete VP process needs N >= 2 steps, got {N}")
        self.schedule = schedule
        self.beta_start = _checks.positive("beta_start", beta_start)
        self.beta_end = _checks.positive("beta_end", beta_end)
        self.max_beta = _checks.positive("max_beta", max_beta)
        self.cosine_s = _checks.positive("cosine_s", cosine_s)
        self.betas = discrete_betas(schedule, self.N, self.beta_start, self.beta_end, self.max_beta, self.cosine_s)
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ValueError(f"the {schedule} schedule with beta_start={beta_start}, beta_end={beta_end} gives "
                             f"betas outside (0, 1)")
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)
        self._log_abar = self.alphas_cumprod.log()

    def position(self, t: torch.Tensor) -> torch.Tensor:
        """The fractional step index t·(N−1) (float64), snapped to the nearest integer within 1e-4 of it
        (times given in float32 land exactly on the grid)."""
        pos = t.to(torch.float64).clamp(0, 1) * (self.N - 1)
        near = pos.round()
        return torch.where((pos - near).abs() < 1e-4, near, pos)

    def index(self, t: torch.Tensor) -> torch.Tensor:
        """The nearest training step index round(t·(N−1)), int64."""
        return self.position(t).round().long()

    def _segment(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.position(t)
        lo = pos.floor().clamp(0, self.N - 2)
        return lo.long(), pos - lo

    def log_alphas_cumprod(self, t: torch.Tensor) -> torch.Tensor:
        """log ᾱ(t) (float64), linear in t between grid times."""
        lo, w = self._segment(t)
        table = self._log_abar.to(t.device)
        return (1 - w) * table[lo] + w * table[lo + 1]

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = −d log ᾱ/dt, constant (N−1)(log ᾱ_i − log ᾱ_{i+1}) on [t_i, t_{i+1})."""
        lo, _ = self._segment(t)
        table = self._log_abar.to(t.device)
        return ((self.N - 1) * (table[lo] - table[lo + 1])).to(t.dtype)

    def drift_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta(t)

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta(t).sqrt()

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_abar = self.log_alphas_cumprod(t)
        return (0.5 * log_abar).exp().to(t.dtype), (-torch.expm1(log_abar)).sqrt().to(t.dtype)

    def prior_std(self) -> float:
        return 1.0

    def config(self) -> dict:
        return {"schedule": self.schedule, "N": self.N, "beta_start": self.beta_start, "beta_end": self.beta_end,
                "max_beta": self.max_beta, "cosine_s": self.cosine_s}


SDES: dict[str, type[SDE]] = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE, "discretevp": DiscreteVPSDE}


def sde_from_config(kind: str, **params: float) -> SDE:
    """Build an SDE from its name ('ve', 'vp', 'subvp', 'discrete_vp') and constructor arguments (the edge of YAML/cards)."""
    key = sde_key(kind)
    if key not in SDES:
        raise ValueError(f"unknown SDE {kind!r}; expected one of {sorted(SDES)}")
    return SDES[key](**params)
