"""The operator interface (A, Aᵀ, Gram and proximal solves, pseudo-inverse, SVD) and shared helpers."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable

import torch

from .. import _checks


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


def _image_shape(name: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Check that ``shape`` is (C, H, W) of positive integers; return it as a tuple of ints."""
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"{name} must be an image shape (C, H, W), got {shape}")
    return tuple(_checks.positive_int(f"{name} entry", s) for s in shape)


@dataclass(frozen=True)
class SVD:
    """A = U diag(s) Vᵀ with U, V orthogonal: spectral coordinates of x are Vt(x) (B, d), of y are Ut(y) (B, m).

    s has k = min(d, m) entries (zeros allowed); Ut(A x)[:, :k] = s * Vt(x)[:, :k] and Ut(A x)[:, k:] = 0.
    """
    s: torch.Tensor                                   # (k,), float64 on the CPU; cast with .to(x)
    Vt: Callable[[torch.Tensor], torch.Tensor]        # (B, *in_shape) -> (B, d)
    V: Callable[[torch.Tensor], torch.Tensor]         # (B, d) -> (B, *in_shape)
    Ut: Callable[[torch.Tensor], torch.Tensor]        # (B, *out_shape) -> (B, m)
    U: Callable[[torch.Tensor], torch.Tensor]         # (B, m) -> (B, *out_shape)


def _flatten_svd(s: torch.Tensor, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> SVD:
    """SVD of a diagonal operator in the pixel bases: V and U flatten/unflatten, singular values ``s``."""
    return SVD(s=s,
               Vt=lambda x: x.flatten(1), V=lambda c: c.reshape(-1, *in_shape),
               Ut=lambda y: y.flatten(1), U=lambda c: c.reshape(-1, *out_shape))


class LinearOperator(abc.ABC):
    """y = A x on batches: x of shape (B, *in_shape), y of shape (B, *out_shape)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    partial_isometry: bool = False  # A Aᵀ = I on A's range (orthonormal coordinate selection)
    cg_max_iter: int = 500  # iteration cap of the default conjugate-gradient gram_solve
    cg_rtol_eps: float = 100.0  # CG stops at ‖residual‖ ≤ cg_rtol_eps · eps(dtype) · ‖v‖ per sample

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
        tol2 = (self.cg_rtol_eps * torch.finfo(v.dtype).eps) ** 2 * rs
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

    def normal_solve(self, v: torch.Tensor, rho: torch.Tensor | float) -> torch.Tensor:
        """(ρ I + AᵀA)⁻¹ v = (v − Aᵀ (A Aᵀ + ρ I)⁻¹ A v) / ρ on the in space (Woodbury); ρ > 0, a float or (B,)."""
        v = self._check(v, self.in_shape, "v")
        rho_in = _per_sample(rho, v, "rho")
        if not bool((rho_in > 0).all()):
            raise ValueError(f"{type(self).__name__}: rho must be > 0, got {rho!r}")
        Av = self._forward(v)
        w = self._gram_solve(Av, _per_sample(1.0, Av, "r2"), _per_sample(rho, Av, "rho"))
        return (v - self._adjoint(w)) / rho_in

    def prox(self, z: torch.Tensor, y: torch.Tensor, rho: torch.Tensor | float) -> torch.Tensor:
        """argmin_x ½‖A x − y‖² + ½ρ‖x − z‖² = (ρ I + AᵀA)⁻¹ (Aᵀ y + ρ z) = z + Aᵀ(A Aᵀ + ρ I)⁻¹ (y − A z); ρ > 0,
        a float or (B,). The last form (push-through identity) never divides by ρ: it stays accurate in
        float32 for the tiny ρ of DiffPIR's first steps, where (ρ I + AᵀA)⁻¹ loses all precision."""
        z = self._check(z, self.in_shape, "z")
        y = self._check(y, self.out_shape, "y")
        rho_y = _per_sample(rho, y, "rho")
        if not bool((rho_y > 0).all()):
            raise ValueError(f"{type(self).__name__}: rho must be > 0, got {rho!r}")
        return z + self._adjoint(self._gram_solve(y - self._forward(z), _per_sample(1.0, y, "r2"), rho_y))

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺ y = Aᵀ (A Aᵀ)⁺ y (by default through CG: exact for y in A's range or A Aᵀ invertible)."""
        y = self._check(y, self.out_shape, "y")
        return self._adjoint(self._gram_solve(y, _per_sample(1.0, y, "r2"), _per_sample(0.0, y, "s2")))

    def svd(self) -> SVD:
        """A = U diag(s) Vᵀ (see ``SVD``); operators without a cheap exact SVD raise ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} has no SVD: use its A, Aᵀ and Gram solves instead")

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
