"""The operator interface (A, Aᵀ, Gram and proximal solves, pseudo-inverse, SVD) and shared helpers."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable

import numpy as np
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

    # --- the observation as an image file (``invsgm run``: observations written and read) -----------------
    #
    # y (in image units, [0, 1] pixels) as a file holds it: its colour channels and size ``file_shape``
    # (y itself for operators whose y is an image; the low-resolution image of super-resolution, the grey
    # image of colorization), ``to_file`` / ``from_file`` (each other's inverse on A's range) and, for
    # masks, which pixels are observed (``observed_pixels``, written as the file's alpha channel; read
    # back through ``with_mask``). Measurements that are not pictures (MRI's k-space, CT's sinograms) set
    # ``file_is_image = False``: their file is a ``.npy`` array in the operator's own layout (``read_array`` /
    # ``write_array``), y in ``file_shape`` in between.

    file_is_image = True

    @property
    def file_shape(self) -> tuple[int, ...]:
        """(C, h, w) of the observation as an image file: ``out_shape`` for operators whose y is an image."""
        if len(self.out_shape) != 3:
            raise NotImplementedError(f"{type(self).__name__} measurements of shape {self.out_shape} are not images")
        return tuple(self.out_shape)

    def read_array(self, a: np.ndarray) -> torch.Tensor:
        """The observation (*file_shape) float32 of a ``.npy`` array in the operator's layout (operators with
        ``file_is_image = False``); a ValueError saying what is wrong otherwise."""
        raise NotImplementedError(f"{type(self).__name__} observations are image files")

    def write_array(self, y_file: torch.Tensor) -> np.ndarray:
        """The ``.npy`` array of one observation (*file_shape): the inverse of ``read_array``."""
        raise NotImplementedError(f"{type(self).__name__} observations are image files")

    def describe_file(self) -> str:
        """What an observation file must be, for error messages: 'a 32x32 (HxW) image' and why."""
        _, h, w = self.file_shape
        return f"a {h}x{w} (HxW) image"

    def to_file(self, y: torch.Tensor) -> torch.Tensor:
        """y (image units, (B, *out_shape)) as an image file holds it, (B, *file_shape)."""
        self.file_shape  # noqa: B018  (raises for measurements that are not images)
        return self._to_file(self._check(y, self.out_shape, "y"))

    def _to_file(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def from_file(self, image: torch.Tensor) -> torch.Tensor:
        """y (image units) of an observation file's pixels (B, *file_shape): the inverse of ``to_file``."""
        return self._from_file(self._check(image, self.file_shape, "the observation image"))

    def _from_file(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def observed_pixels(self) -> torch.Tensor | None:
        """(1, h, w) bool, True where the observation file's pixels are observed (its alpha channel when
        written); None when every pixel is."""
        return None

    def with_mask(self, observed: torch.Tensor) -> "LinearOperator":
        """The operator observing only the pixels ``observed`` ((1, h, w) bool, from a mask file or an alpha
        channel read with an observation). Only masks can: every other operator accepts a mask that
        observes every pixel (and returns itself) and raises a ``ValueError`` otherwise."""
        if bool(torch.as_tensor(observed).all()):
            return self
        raise ValueError(f"a {type(self).__name__} measurement observes every pixel, but the mask or alpha channel "
                         f"marks {int((~torch.as_tensor(observed, dtype=torch.bool)).sum())} pixels missing; "
                         f"missing pixels are for inpainting")

    def feasible_images(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images (B, *in_shape) in [0, 1] near ``x`` that keep the noiseless observation y = A x (image units)
        where the operator knows how (colorization: the observed grey); by default x clamped to [0, 1]."""
        return x.clamp(0, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape})"


class Decomposed(abc.ABC):
    """Mixin of operators written A = P(Λ) T (Song, Shen, Xing & Ermon, ICLR 2022): T an invertible transform
    (orthonormal 2-D FFT for MRI, full-angle Radon transform for CT) in a real representation of shape
    ``transform_shape``, P(Λ) the selection of the coordinates Λ that are measured.

    ``transform(x)`` = T x, ``inverse_transform(z)`` = T⁻¹ z (``exact_inverse`` says whether it is exact),
    ``subsample(z)`` = P(Λ) z (shape ``out_shape``, so ``subsample(transform(x)) == A x``), ``embed(y)`` =
    P(Λ)ᵀ y (zeros off Λ), and ``consistent(x, y, λ)`` the paper's transform-domain data-consistency step.
    A class using it must also be a ``LinearOperator``.
    """

    transform_shape: tuple[int, ...]
    exact_inverse: bool = True

    def check_decomposition(self) -> None:
        """A ValueError saying why, when this instance has no decomposition A = P(Λ) T (CT angles off the grid)."""

    @abc.abstractmethod
    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """T x on a shape-checked batch."""

    @abc.abstractmethod
    def _inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        """T⁻¹ z on a shape-checked batch."""

    @abc.abstractmethod
    def _subsample(self, z: torch.Tensor) -> torch.Tensor:
        """P(Λ) z on a shape-checked batch."""

    @abc.abstractmethod
    def _embed(self, y: torch.Tensor) -> torch.Tensor:
        """P(Λ)ᵀ y on a shape-checked batch."""

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """T x: (B, *in_shape) → (B, *transform_shape)."""
        return self._transform(self._check(x, self.in_shape, "x"))

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        """T⁻¹ z: (B, *transform_shape) → (B, *in_shape); see ``exact_inverse``."""
        return self._inverse_transform(self._check(z, self.transform_shape, "z"))

    def subsample(self, z: torch.Tensor) -> torch.Tensor:
        """P(Λ) z: (B, *transform_shape) → (B, *out_shape)."""
        return self._subsample(self._check(z, self.transform_shape, "z"))

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """P(Λ)ᵀ y: (B, *out_shape) → (B, *transform_shape), zeros off Λ."""
        return self._embed(self._check(y, self.out_shape, "y"))

    def consistent(self, x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor | float = 1.0) -> torch.Tensor:
        """T⁻¹[λ P(Λ)ᵀ y + (1 − λ) P(Λ)ᵀ P(Λ) T x + (I − P(Λ)ᵀ P(Λ)) T x]: the measured coordinates of T x moved
        a fraction λ ∈ [0, 1] (a float or (B,)) of the way to y, the others kept (λ = 1: replaced by y).

        Computed as x + T⁻¹[λ P(Λ)ᵀ (y − P(Λ) T x)] — the same for an exact T⁻¹ — so that an approximate T⁻¹
        (CT's filtered back-projection) only touches the correction: x is returned unchanged when A x = y."""
        x = self._check(x, self.in_shape, "x")
        y = self._check(y, self.out_shape, "y")
        step = self._embed(y - self._subsample(self._transform(x)))
        return x + self._inverse_transform(_per_sample(lam, step, "lam") * step)
