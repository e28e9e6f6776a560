"""Exact analytic priors: Gaussian mixtures whose diffused scores are known in closed form.

Under any linear SDE, x(t) = α(t) x(0) + σ(t) z, so a mixture Σ_k w_k N(μ_k, Σ_k) diffuses to
p_t = Σ_k w_k N(α μ_k, α² Σ_k + σ² I): its score, log-density and samples are exact at every t.
"""
from __future__ import annotations

import math

import torch

from . import _checks
from .denoisers.base import Denoiser, Evaluation, tweedie_x0
from .sde import SDE


class GaussianMixture:
    """p(x) = Σ_k w_k N(x; μ_k, Σ_k) on R^D.

    ``covariances`` may be (K,) isotropic variances, (K, D) diagonal variances or (K, D, D) full
    covariance matrices. Inputs of any shape (B, ...) with D elements per sample are flattened.
    Computation is in float64; results come back in the input's dtype.
    """

    def __init__(self, means: torch.Tensor, weights: torch.Tensor | None = None,
                 covariances: torch.Tensor | float = 1.0):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        K, D = means.shape
        weights = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else \
            torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape ({K},) to match means {tuple(means.shape)}, "
                             f"got {tuple(weights.shape)}")
        if (weights < 0).any() or not math.isclose(weights.sum().item(), 1.0, rel_tol=1e-6):
            raise ValueError(f"weights must be non-negative and sum to 1, got sum {weights.sum().item():.6g}")
        cov = torch.as_tensor(covariances, dtype=torch.float64)
        if cov.ndim == 0:
            cov = cov.expand(K)
        self.rotation: torch.Tensor | None = None  # U with Σ_k = U_k diag(λ_k) U_kᵀ (full case)
        if cov.shape == (K,):
            eig = cov[:, None].expand(K, D).clone()
        elif cov.shape == (K, D):
            eig = cov.clone()
        elif cov.shape == (K, D, D):
            if not torch.allclose(cov, cov.transpose(1, 2), atol=1e-10):
                raise ValueError("covariances must be symmetric")
            eig, self.rotation = torch.linalg.eigh(cov)
        else:
            raise ValueError(f"covariances must have shape (), ({K},), ({K}, {D}) or ({K}, {D}, {D}), "
                             f"got {tuple(cov.shape)}")
        if (eig <= 0).any():
            raise ValueError("covariances must be positive definite (all variances/eigenvalues > 0)")
        self.means, self.weights, self.eigvals = means, weights, eig
        self.isotropic = self.rotation is None and bool((eig == eig[:, :1]).all())

    @property
    def dim(self) -> int:
        """D, the dimension of a sample."""
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    def covariance_matrices(self) -> torch.Tensor:
        """The (K, D, D) covariance matrices Σ_k."""
        if self.rotation is None:
            return torch.diag_embed(self.eigvals)
        return self.rotation @ torch.diag_embed(self.eigvals) @ self.rotation.transpose(1, 2)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x[0].numel() != self.dim:
            raise ValueError(f"x must have shape (B, ...) with {self.dim} elements per sample, got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim).to(torch.float64)

    def _terms(self, x: torch.Tensor, alpha: torch.Tensor, std: torch.Tensor):
        """Per-component log w_k N(x; α μ_k, α² Σ_k + σ² I) (B, K) and −C_k⁻¹(x − α μ_k) (B, K, D)."""
        a, s = alpha[:, None, None], std[:, None, None]
        var = a * a * self.eigvals[None] + s * s  # (B, K, D), eigenvalues of C_k(t)
        diff = x[:, None, :] - a * self.means[None]  # (B, K, D)
        y = diff if self.rotation is None else torch.einsum("kji,bkj->bki", self.rotation, diff)
        logp = -0.5 * ((y * y / var).sum(-1) + var.log().sum(-1) + self.dim * math.log(2 * math.pi))
        g = -y / var
        g = g if self.rotation is None else torch.einsum("kij,bkj->bki", self.rotation, g)
        return logp + self.weights.log()[None], g

    def _coeffs(self, x: torch.Tensor, t: torch.Tensor | float | None, sde: SDE | None):
        if sde is None:
            one = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
            return one, torch.zeros_like(one)
        alpha, std = sde.marginal_coeffs(_checks.time_vector(t, x))
        return alpha.to(torch.float64), std.to(torch.float64)

    def _isotropic_terms(self, x: torch.Tensor, alpha: torch.Tensor, std: torch.Tensor):
        """``_terms`` for Σ_k = λ_k I without (B, K, D) tensors: log w_k N(x; α μ_k, v_k I) and the (B, D) score."""
        var = alpha[:, None] ** 2 * self.eigvals[None, :, 0] + std[:, None] ** 2  # (B, K)
        cross = x @ self.means.T  # (B, K)
        sq = x.pow(2).sum(1, keepdim=True) - 2 * alpha[:, None] * cross + alpha[:, None] ** 2 * self.means.pow(2).sum(1)
        logp = -0.5 * (sq / var + self.dim * (var.log() + math.log(2 * math.pi))) + self.weights.log()[None]
        r_over_var = torch.softmax(logp, dim=1) / var
        score = -x * r_over_var.sum(1, keepdim=True) + alpha[:, None] * (r_over_var @ self.means)
        return logp, score

    def log_prob(self, x: torch.Tensor, t: torch.Tensor | float | None = None, sde: SDE | None = None) -> torch.Tensor:
        """log p_t(x) per sample (B,); with no ``sde``, log p(x) of the mixture itself."""
        xf = self._flat(x)
        terms = self._isotropic_terms if self.isotropic else self._terms
        logp, _ = terms(xf, *self._coeffs(xf, t, sde))
        return torch.logsumexp(logp, dim=1).to(x.dtype)

    def score(self, x: torch.Tensor, t: torch.Tensor | float | None = None, sde: SDE | None = None) -> torch.Tensor:
        """∇ₓ log p_t(x) = Σ_k r_k(x) (−C_k⁻¹(x − α μ_k)), r the component responsibilities."""
        xf = self._flat(x)
        if self.isotropic:
            return self._isotropic_terms(xf, *self._coeffs(xf, t, sde))[1].to(x.dtype).reshape(x.shape)
        logp, g = self._terms(xf, *self._coeffs(xf, t, sde))
        r = torch.softmax(logp, dim=1)
        return torch.einsum("bk,bkd->bd", r, g).to(x.dtype).reshape(x.shape)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities p(k | x) at t = 0, shape (B, K)."""
        xf = self._flat(x)
        logp, _ = self._terms(xf, *self._coeffs(xf, None, None))
        return torch.softmax(logp, dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples, shape (n, D), float64."""
        n = _checks.positive_int("n", n)
        device = generator.device if generator is not None else "cpu"
        k = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator, device=device)
        z = z * self.eigvals.to(device)[k].sqrt()
        if self.rotation is not None:
            z = torch.einsum("nij,nj->ni", self.rotation.to(device)[k], z)
        return self.means.to(device)[k] + z

    def marginal(self, sde: SDE, t: float) -> "GaussianMixture":
        """The exact diffused mixture p_t = Σ_k w_k N(α μ_k, α² Σ_k + σ² I) at a single time t."""
        tt = _checks.time_vector(float(t), self.means[:1])
        alpha, std = (c.item() for c in sde.marginal_coeffs(tt))
        cov = alpha ** 2 * self.covariance_matrices() + std ** 2 * torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(alpha * self.means, self.weights, cov if self.rotation is not None
                               else torch.diagonal(cov, dim1=1, dim2=2))

    def condition(self, A: torch.Tensor, y: torch.Tensor, sigma_y: float) -> "GaussianMixture":
        """The exact posterior p(x | y) for y = A x + σ_y ε, ε ~ N(0, I): again a Gaussian mixture.

        Component k: K_k = Σ_k Aᵀ S_k⁻¹ with S_k = A Σ_k Aᵀ + σ_y² I; mean μ_k + K_k (y − A μ_k),
        covariance Σ_k − K_k A Σ_k, weight ∝ w_k N(y; A μ_k, S_k). A is (m, D), y is (m,).
        """
        A = torch.as_tensor(A, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if A.ndim != 2 or A.shape[1] != self.dim or y.shape != (A.shape[0],):
            raise ValueError(f"A must have shape (m, {self.dim}) and y shape (m,), got {tuple(A.shape)} and "
                             f"{tuple(y.shape)}")
        s2 = _checks.non_negative("sigma_y", sigma_y) ** 2
        cov = self.covariance_matrices()  # (K, D, D)
        cov_at = cov @ A.T  # Σ_k Aᵀ, (K, D, m)
        S = A @ cov_at + s2 * torch.eye(A.shape[0], dtype=torch.float64)  # (K, m, m)
        chol = torch.linalg.cholesky(S)
        resid = y[None] - self.means @ A.T  # (K, m)
        gain = torch.cholesky_solve(cov_at.transpose(1, 2), chol).transpose(1, 2)  # K_k = Σ_k Aᵀ S_k⁻¹, (K, D, m)
        means = self.means + torch.einsum("kdm,km->kd", gain, resid)
        post_cov = cov - gain @ cov_at.transpose(1, 2)
        post_cov = 0.5 * (post_cov + post_cov.transpose(1, 2))
        white = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)[..., 0]
        log_lik = -0.5 * (white.pow(2).sum(-1) + 2 * chol.diagonal(dim1=1, dim2=2).log().sum(-1)
                          + A.shape[0] * math.log(2 * math.pi))
        weights = torch.softmax(self.weights.log() + log_lik, dim=0)
        return GaussianMixture(means, weights, post_cov)

    def score_model(self, sde: SDE) -> "MixtureScore":
        """The exact score s(x, t) = ∇log p_t(x) under ``sde`` as a denoiser, callable like a network."""
        if not isinstance(sde, SDE):
            raise ValueError(f"the mixture's score needs an SDE (sde=VPSDE(...)), got {sde!r}")
        return MixtureScore(self, sde)

    as_denoiser = score_model


class MixtureScore(Denoiser):
    """Exact ∇log p_t(x) of a ``GaussianMixture`` diffused by an SDE, and x̂₀ = E[x₀ | x_t] by Tweedie."""

    def __init__(self, mixture: GaussianMixture, sde: SDE):
        super().__init__(sde)
        self.mixture = mixture

    def _evaluate(self, x: torch.Tensor, t: torch.Tensor) -> Evaluation:
        score = self.mixture.score(x, t, self.sde)
        return Evaluation(score, tweedie_x0(x, t, score, self.sde))
