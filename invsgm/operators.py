"""Linear measurement operators y = A x on batches, for inverse problems (inpainting, super-resolution,
deblurring, colorization, compressed sensing).

Every operator has A (``forward``), Aᵀ (``adjoint``), the regularised Gram solve
(r²·A Aᵀ + s²·I)⁻¹ v (``gram_solve``, used by ΠGDM-style guidance and Gaussian posteriors), the
pseudo-inverse A⁺ and noisy observation A x + σ_y z. ``partial_isometry`` marks operators with
A Aᵀ = I on A's range (A selects orthonormal coordinates): only then is the replacement step
x ← x + Aᵀ(y_t − A x) of Song et al. (ICLR 2021) a projection.
"""
from __future__ import annotations

import abc
import math

import torch

from . import _checks


def _per_sample(value: torch.Tensor | float, ref: torch.Tensor, name: str) -> torch.Tensor:
    """Broadcast a float, 0-d or (B,) tensor to shape (B, 1, ..., 1) matching ``ref``'s rank, dtype, device."""
    v = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    if v.ndim == 1 and v.shape[0] == ref.shape[0]:
        return v.reshape(-1, *([1] * (ref.ndim - 1)))
    if v.ndim != 0:
        raise ValueError(f"{name} must be a float or have shape ({ref.shape[0]},), got shape {tuple(v.shape)}")
    return v


def _safe_reciprocal(denom: torch.Tensor) -> torch.Tensor:
    """1 / d where d > 0, else 0 (the pseudo-inverse of a non-negative diagonal)."""
    return torch.where(denom > 0, 1.0 / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(denom))


class LinearOperator(abc.ABC):
    """y = A x on batches: x of shape (B, *in_shape), y of shape (B, *out_shape)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    partial_isometry: bool = False  # A Aᵀ = I on A's range (orthonormal coordinate selection)
    cg_max_iter: int = 500  # iteration cap of the default conjugate-gradient gram_solve
    cg_rtol: float = 100.0  # CG stops at ‖residual‖ ≤ cg_rtol · eps(dtype) · ‖v‖ per sample

    @abc.abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x on a shape-checked batch."""

    @abc.abstractmethod
    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y on a shape-checked batch."""

    def _check(self, t: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
        """Raise a ``ValueError`` naming the operator unless ``t`` has shape (B, *shape)."""
        if not torch.is_tensor(t) or tuple(t.shape[1:]) != tuple(shape) or t.ndim != len(shape) + 1:
            got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"{type(self).__name__}: {what} must have shape (B, {', '.join(map(str, shape))}), "
                             f"got {got}")
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x."""
        return self._forward(self._check(x, self.in_shape, "x"))

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y."""
        return self._adjoint(self._check(y, self.out_shape, "y"))

    def gram_solve(self, v: torch.Tensor, r2: torch.Tensor | float, s2: torch.Tensor | float) -> torch.Tensor:
        """(r2·A Aᵀ + s2·I)⁻¹ v on the out space; r2, s2 floats or (B,) tensors (per sample)."""
        v = self._check(v, self.out_shape, "v")
        return self._gram_solve(v, _per_sample(r2, v, "r2"), _per_sample(s2, v, "s2"))

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """Batched conjugate gradients on M = r2·A Aᵀ + s2·I (symmetric positive semi-definite), from 0."""
        def matvec(p: torch.Tensor) -> torch.Tensor:
            return r2 * self._forward(self._adjoint(p)) + s2 * p

        def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * b).flatten(1).sum(1).reshape(-1, *([1] * (v.ndim - 1)))

        x = torch.zeros_like(v)
        r = v.clone()
        p = r.clone()
        rs = dot(r, r)
        tol2 = (self.cg_rtol * torch.finfo(v.dtype).eps) ** 2 * rs
        for _ in range(self.cg_max_iter):
            active = rs > tol2
            if not bool(active.any()):
                break
            mp = matvec(p)
            pmp = dot(p, mp)
            alpha = torch.where(active & (pmp > 0), rs / torch.where(pmp > 0, pmp, torch.ones_like(pmp)),
                                torch.zeros_like(pmp))
            x = x + alpha * p
            r = r - alpha * mp
            rs_new = dot(r, r)
            beta = torch.where(active, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
            p = r + beta * p
            rs = torch.where(active, rs_new, rs)
        return x

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y = Aᵀ (A Aᵀ)⁺ y."""
        y = self._check(y, self.out_shape, "y")
        return self._adjoint(self._gram_solve(y, _per_sample(1.0, y, "r2"), _per_sample(0.0, y, "s2")))

    def observe(self, x: torch.Tensor, sigma_y: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """A x + σ_y z with z ~ N(0, I) drawn from ``generator``."""
        sigma_y = _checks.non_negative("sigma_y", sigma_y)
        y = self.forward(x)
        if sigma_y == 0:
            return y
        z = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        return y + sigma_y * z

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        """A (B, C, H, W) picture of y for display."""
        return self._to_image(self._check(y, self.out_shape, "y"))

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        """Picture of a shape-checked y; measurements that are not images cannot be shown."""
        raise NotImplementedError(f"{type(self).__name__} measurements of shape {self.out_shape} are not images")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape})"


class Matrix(LinearOperator):
    """y = A x for vectors: A of shape (m, d), x of shape (B, d), y of shape (B, m).

    A is kept in float64; gram_solve and pinv are exact through the eigendecomposition of A Aᵀ
    and the SVD pseudo-inverse, computed once, and come back in the input's dtype and device.
    """

    def __init__(self, A: torch.Tensor):
        A = torch.as_tensor(A)
        if A.ndim != 2 or A.numel() == 0:
            raise ValueError(f"Matrix: A must be a non-empty 2-D tensor (m, d), got shape {tuple(A.shape)}")
        self.A = A.detach().to(torch.float64)
        m, d = self.A.shape
        self.in_shape, self.out_shape = (d,), (m,)
        eig, self._U = torch.linalg.eigh(self.A @ self.A.T)  # A Aᵀ = U diag(λ) Uᵀ
        cutoff = max(m, d) * torch.finfo(torch.float64).eps * eig.abs().max()
        self._eig = torch.where(eig > cutoff, eig, torch.zeros_like(eig))  # rank-deficient directions → 0
        self._pinv = torch.linalg.pinv(self.A)
        self.partial_isometry = bool(torch.allclose(self.A @ self.A.T @ self.A, self.A, atol=1e-10))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.A.to(x).T

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.A.to(y)

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        U = self._U.to(v)
        inv = _safe_reciprocal(r2 * self._eig.to(v) + s2)  # (B, m) or (m,)
        return ((v @ U) * inv) @ U.T

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y."""
        return self._check(y, self.out_shape, "y") @ self._pinv.to(y).T


class Identity(LinearOperator):
    """y = x (denoising); A Aᵀ = I."""

    partial_isometry = True

    def __init__(self, shape: tuple[int, ...]):
        self.in_shape = self.out_shape = tuple(_checks.positive_int("shape entry", s) for s in shape)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return v * _safe_reciprocal(r2 + s2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y = y."""
        return self._check(y, self.out_shape, "y")

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim != 4:
            return super()._to_image(y)
        return y
