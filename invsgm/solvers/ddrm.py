"""DDRM: Denoising Diffusion Restoration Models (Kawar, Elad, Ermon & Song, NeurIPS 2022).

In the spectral basis of A = U diag(s) Vᵀ and the scaled variable x̄ = x/α (noise level σ̄ = σ/α), with
ȳ_i = (Uᵀy)_i / s_i, c = Vᵀ x̂₀(x_t, t) and ε ~ N(0, I), one step σ̄_t → σ̄_s sets, per coordinate i,

    s_i = 0:              x̄_s,i = c_i + √(1−η²) σ̄_s (x̄_t,i − c_i)/σ̄_t + η σ̄_s ε_i
    σ̄_s <  σ_y/s_i:       x̄_s,i = c_i + √(1−η²) σ̄_s (ȳ_i − c_i)/(σ_y/s_i) + η σ̄_s ε_i
    σ̄_s ≥  σ_y/s_i:       x̄_s,i = (1−η_b) c_i + η_b ȳ_i + √(σ̄_s² − η_b² σ_y²/s_i²) ε_i

and x_s = α_s V x̄_s. Every grid time t_0 = T > ... > t_n is one network evaluation; the step after the
last one goes to σ̄ = 0, so the output is the last x̂₀ with, where σ_y = 0 and η_b = 1, the observed
spectral coordinates replaced by ȳ (then A x = y exactly).
"""
from __future__ import annotations

import torch

from ..measurement import LinearMeasurement, linear_part
from ..operators import SVD
from ..sampling.timesteps import initial_std
from ..sde import _bcast
from .base import Solver, SolverResult, noise, times


def _unit_interval(name: str, value: float) -> float:
    """``float(value)`` if it lies in [0, 1], else a ``ValueError`` naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:  # also rejects nan
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return v


class DDRM(Solver):
    """DDRM (see module): the paper's η = 0.85 and η_b = 1 (its 20-step experiments are ``steps=19`` here,
    20 grid times and 20 network evaluations).

    Needs a ``LinearMeasurement`` whose operator has an SVD (``operator.svd()``); σ_y ≥ 0.

    Where this follows or differs from the paper's code (bahjat-kawar/ddrm, functions/denoising.py,
    ``efficient_generalized_steps``) and deepinv's ``DDRM`` (deepinv/sampling/diffusion.py):

    - Initialisation, as the official code: coordinates with s_i σ̄_T > σ_y start at ȳ_i + √(σ̄_T² − σ_y²/s_i²) z_i,
      all others at σ̄_T z_i, with z = Vᵀ x_T / prior_std the given prior draw whitened. The official code
      then takes x_T = x̄_T / σ̄_T (α_T ≈ 1/σ̄_T for DDPM's T); we use α_T exactly. deepinv instead calls a
      coordinate observed when s_i > σ_y, whatever σ̄_T.
    - The three cases and their noise are the paper's (eq. 7–8) and the official code's; like deepinv we carry
      x̄_t in spectral coordinates (the official code recomputes (x̄_t − c)/σ̄_t as Vᵀε̂, equal up to round-off).
    - Ties: the official code uses strict inequalities on both sides, so a coordinate with σ̄_s = σ_y/s_i
      (every observed one when σ_y = 0 at its final σ̄ = 0 step) falls into the s_i = 0 branch and its output
      is the plain x̂₀. We use ≥ as the paper (and deepinv) do: noiseless DDRM with η_b = 1 returns ȳ on the
      observed coordinates, so A x = y.
    - Grid: the official code evaluates at every time of its skip sequence, down to DDPM's first step
      (σ̄ ≈ 0.01, our t_n = eps), and its last step goes to ᾱ = 1 (σ̄ = 0); so do we: nfe = len(timesteps),
      output = V x̄_0 = the last x̂₀ (up to the ȳ replacement above). deepinv spends one more evaluation
      denoising at its last σ (0 by default).
    - Noise levels stay consistent: the network is always called at (x_s, s) with x_s = α_s V x̄_s and x̄_s of
      noise level σ̄_s (as in the deepinv commit read, 00be6a9; a variant adding noise of std σ/√2 while passing
      σ to the denoiser was reported to miss the prior by 11× the SW floor when nothing is observed).

    DDRM is not an exact posterior sampler: each of its few large steps uses x̂₀ = E[x₀ | x_t] where a draw of
    x₀ would be needed, and η < 1 keeps a fixed fraction of the previous (or the data's) noise direction. With
    the exact denoiser of a Gaussian prior and the defaults (20 evaluations), the output covariance is 0.2–0.7
    of the posterior's along its eigen-directions, and 0.62 of the prior's when nothing is observed
    (tests/test_solver_ddrm.py pins these against the exact law of the iteration); η = 0 with many steps is
    the DDIM limit, which recovers the prior when nothing is observed.
    """

    name = "ddrm"

    def __init__(self, eta: float = 0.85, eta_b: float = 1.0):
        self.eta = _unit_interval("eta", eta)
        self.eta_b = _unit_interval("eta_b", eta_b)

    def _svd(self, measurement) -> tuple[LinearMeasurement, SVD]:
        m = linear_part(measurement, "DDRM")
        op = m.operator
        try:
            svd = op.svd()
        except NotImplementedError:
            raise ValueError(f"DDRM needs an operator with an SVD (A = U diag(s) Vᵀ, operator.svd()); "
                             f"{type(op).__name__} has none") from None
        return m, svd

    def check(self, measurement) -> None:
        self._svd(measurement)

    @torch.no_grad()
    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        m, svd = self._svd(measurement)
        start = denoiser.nfe
        ts = times(timesteps, x)
        t_floats = torch.as_tensor(timesteps).tolist()
        B = x.shape[0]
        sigma_y = m.sigma_y

        # spectral data: d coordinates of x, the first k = len(s) of them carry singular values
        z = svd.Vt(x) / initial_std(sde, t_floats[0])  # (B, d): the given initial draw, whitened
        uty = svd.Ut(y.to(x))  # (B, m)
        d = z.shape[1]
        s64 = svd.s.detach().to(device="cpu", dtype=torch.float64)
        k = s64.numel()
        # numerical rank as numpy's matrix_rank: round-off-level singular values count as zero (else ȳ = Uᵀy/s
        # would blow round-off up); the official deblurring operator likewise zeroes its small singular values
        nonzero = s64 > max(d, uty.shape[1]) * torch.finfo(torch.float64).eps * s64.max()
        s = torch.where(nonzero, s64, torch.zeros_like(s64)).to(device=x.device, dtype=x.dtype)
        observed = torch.zeros(d, dtype=torch.bool, device=x.device)
        observed[:k] = s > 0
        s_d = torch.ones(d, dtype=x.dtype, device=x.device)
        s_d[:k] = torch.where(s > 0, s, torch.ones_like(s))
        ybar = torch.zeros(B, d, dtype=x.dtype, device=x.device)
        ybar[:, :k] = uty[:, :k]
        ybar = torch.where(observed, ybar / s_d, torch.zeros_like(ybar))  # ȳ_i = (Uᵀy)_i / s_i, 0 unobserved
        nsr = torch.where(observed, sigma_y / s_d, torch.zeros_like(s_d))  # σ_y / s_i (0 unobserved, unused)
        nsr_safe = torch.where(observed & (nsr > 0), nsr, torch.ones_like(nsr))

        # x_T | y (the paper's p(x_T | y); see the class notes)
        alpha, std = sde.marginal_coeffs(ts[0])
        sbar = (std / alpha)[:, None]  # (B, 1)
        init = observed & (nsr < sbar)
        xbar = torch.where(init, ybar + (sbar.pow(2) - nsr.pow(2)).clamp_min(0).sqrt() * z, sbar * z)
        x = _bcast(alpha, x) * svd.V(xbar).reshape(x.shape)

        c1 = (1.0 - self.eta ** 2) ** 0.5
        n = len(ts) - 1
        for i in range(n + 1):
            x0 = denoiser.evaluate(x, ts[i]).x0
            c = svd.Vt(x0)
            final = i == n
            if final:  # after the last evaluation: σ̄ = 0, α = 1
                alpha_s = torch.ones_like(alpha)
                sbar_s = torch.zeros_like(sbar)
                eps = torch.zeros_like(c)
            else:
                alpha_s, std_s = sde.marginal_coeffs(ts[i + 1])
                sbar_s = (std_s / alpha_s)[:, None]
                eps = noise(c, generator)
            ratio = torch.where(sbar > 0, sbar_s / torch.where(sbar > 0, sbar, torch.ones_like(sbar)),
                                torch.zeros_like(sbar))  # σ̄_s / σ̄_t (0 once σ̄_t = 0)
            missing = c + c1 * ratio * (xbar - c) + self.eta * sbar_s * eps
            weak = c + c1 * sbar_s * (ybar - c) / nsr_safe + self.eta * sbar_s * eps  # σ̄_s < σ_y/s_i
            strong = ((1.0 - self.eta_b) * c + self.eta_b * ybar
                      + (sbar_s.pow(2) - (self.eta_b * nsr).pow(2)).clamp_min(0).sqrt() * eps)  # σ̄_s ≥ σ_y/s_i
            cross = sbar_s >= nsr
            xbar = torch.where(observed, torch.where(cross, strong, weak), missing)
            x = _bcast(alpha_s, x) * svd.V(xbar).reshape(x.shape)
            alpha, sbar = alpha_s, sbar_s
            if callback is not None and not final:
                callback(i, t_floats[i + 1], x, x0)
        return SolverResult(x, denoiser.nfe - start)
