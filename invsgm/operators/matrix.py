"""Dense matrices on vectors (compressed sensing) and the identity (denoising)."""
from __future__ import annotations

import math

import torch

from .. import _checks
from .base import SVD, LinearOperator, _flatten_svd, _safe_reciprocal


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

    def svd(self) -> SVD:
        """A = U diag(s) Vᵀ by ``torch.linalg.svd`` in float64 (full U (m×m) and V (d×d), computed on each call)."""
        U, s, Vh = torch.linalg.svd(self.A, full_matrices=True)
        return SVD(s=s, Vt=lambda x: x @ Vh.to(x).T, V=lambda c: c @ Vh.to(c),
                   Ut=lambda y: y @ U.to(y), U=lambda c: c @ U.to(c).T)


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

    def svd(self) -> SVD:
        """I = U diag(1) Vᵀ with U = V = flattening."""
        return _flatten_svd(torch.ones(math.prod(self.in_shape), dtype=torch.float64), self.in_shape, self.out_shape)

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim != 4:
            return super()._to_image(y)
        return y
