"""Parallel-beam CT: the discrete Radon transform as a precomputed sparse matrix, and filtered back-projection.

Discretisation (ray-driven, bilinear): scikit-image's ``skimage.transform.radon(image, theta, circle=False)``
written as a matrix. An N×N image sits in a zero-padded D×D square, D = ⌈N√2⌉ (the detector count),
rotation centre pixel (N//2, N//2); for the view at angle θ (degrees in [0°, 180°)) detector bin k ∈ [0, D)
integrates along the ray u = k − D//2 by D unit steps v = r − D//2 (r ∈ [0, D)) the bilinear interpolation of
the image at (row, col) = (N//2 − u sin θ + v cos θ, N//2 + u cos θ + v sin θ) (zero outside the image).
The matrix reproduces ``radon`` to rounding (the tests check < 1e-12), so scikit-image's ``iradon`` is its
filtered back-projection. Aᵀ is the exact transpose (both kept in CSR form, float64, built once per
(N, angles) and cached; float32 copies made on first use). A product is a sparse × dense matmul: batched,
on any device, differentiable in x (a custom autograd function whose backward is the other matrix).

Memory: about 1.5·N·D non-zeros per view (9 000 per view at N = 64, 36 000 at N = 128, 143 000 at N = 256),
12 bytes each in float64 CSR with int32 indices, for A and again for Aᵀ (the full 180-view T of the
decomposition at N = 128: 6.5 M non-zeros, built in about 1 s).
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Sequence

import numpy as np
import torch

from .. import _checks
from .base import Decomposed, LinearOperator, _image_shape

FULL_VIEWS = 180  # views of the full-angle transform T of the decomposition: 0°, 1°, …, 179°


def detector_count(size: int) -> int:
    """⌈size·√2⌉: detector bins of an image of side ``size`` (scikit-image's ``radon`` with circle=False)."""
    return math.ceil(_checks.positive_int("size", size) * math.sqrt(2))


def full_angles(views: int = FULL_VIEWS) -> np.ndarray:
    """``views`` equally spaced angles in degrees over [0°, 180°): i · 180 / views."""
    return np.arange(_checks.positive_int("views", views)) * (180.0 / views)


def _check_angles(angles: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Angles in degrees as float64, each finite, in [0°, 180°) and distinct; a ValueError naming the value."""
    a = np.asarray(angles.detach().cpu() if torch.is_tensor(angles) else angles, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("Radon: the list of angles is empty; give at least one angle in [0°, 180°)")
    for v in a:
        if not math.isfinite(v) or not 0.0 <= v < 180.0:
            raise ValueError(f"Radon: angle {float(v):g}° is outside [0°, 180°)")
    order = np.sort(a)
    same = np.flatnonzero(np.diff(order) <= 1e-9)
    if same.size:
        raise ValueError(f"Radon: angle {float(order[same[0]]):g}° appears more than once; angles must be distinct")
    return a


@functools.lru_cache(maxsize=8)
def _radon_csr(size: int, angles: tuple[float, ...]) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(indptr, indices, data) of A (views·D × N²) and of Aᵀ, float64, duplicates summed."""
    import scipy.sparse as sp

    N, D = size, detector_count(size)
    c, o = D // 2, N // 2
    u = (np.arange(D) - c).astype(np.float64)[:, None]     # detector offset, one row per bin
    v = (np.arange(D) - c).astype(np.float64)[None, :]     # step along the ray
    ray = np.broadcast_to(np.arange(D)[:, None], (D, D))
    blocks = []
    for i, theta in enumerate(np.deg2rad(np.asarray(angles, dtype=np.float64))):
        cos, sin = np.cos(theta), np.sin(theta)
        row = o - sin * u + cos * v
        col = o + cos * u + sin * v
        r0, c0 = np.floor(row), np.floor(col)
        fr, fc = row - r0, col - c0
        r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
        rows, cols, vals = [], [], []
        for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
            rr, cc = r0 + dr, c0 + dc
            ok = (rr >= 0) & (rr < N) & (cc >= 0) & (cc < N) & (w != 0)
            rows.append(ray[ok]), cols.append((rr * N + cc)[ok]), vals.append(w[ok])
        block = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(D, N * N))
        block.sum_duplicates()
        blocks.append(block)
    A = sp.vstack(blocks, format="csr")
    A.sum_duplicates()
    At = A.T.tocsr()
    At.sum_duplicates()
    return (A.indptr, A.indices, A.data), (At.indptr, At.indices, At.data)


def _torch_csr(parts: tuple[np.ndarray, ...], shape: tuple[int, int], dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    indptr, indices, data = parts
    idx = torch.int32 if max(len(data), shape[1]) < 2 ** 31 - 1 else torch.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(torch.from_numpy(indptr.astype(np.int64)).to(idx),
                                       torch.from_numpy(indices.astype(np.int64)).to(idx),
                                       torch.from_numpy(data).to(dtype), size=shape).to(device)


class _SparseApply(torch.autograd.Function):
    """y = M x with M sparse (m, n), x dense (n, k); the gradient w.r.t. x is Mᵀ g (the other stored matrix)."""

    @staticmethod
    def forward(ctx, x, M, Mt):
        ctx.mats = (M, Mt)
        return M @ x

    @staticmethod
    def backward(ctx, g):
        M, Mt = ctx.mats
        return _SparseApply.apply(g, Mt, M), None, None


class Radon(Decomposed, LinearOperator):
    """Parallel-beam CT y = R_Λ x: the views ``angles`` of the discrete Radon transform (module docstring).

    ``shape``: (C, N, N) images (each channel transformed alike); ``angles``: a sequence of distinct angles in
    degrees in [0°, 180°), or an integer n — the n views i_j = round(j · full_views / n), j < n, of the
    full-angle grid (0°, 1°, …, 179° by default), e.g. 23 or 45 (45 is every 4th degree). y has shape
    (C, views, D), one detector row per view, D = ⌈N√2⌉ (``detector_count``).

    ``gram_solve`` / ``pinv`` / ``prox`` / ``normal_solve``: conjugate gradients on r²·A Aᵀ + s²·I from 0
    (``LinearOperator``'s), stopped at ‖residual‖ ≤ 100·eps(dtype)·‖v‖ per sample (2.2e-14 in float64,
    1.2e-5 in float32) or after ``cg_max_iter`` = 500 iterations; with s² = 0 (pinv) it converges for y in
    A's range. A Aᵀ is ill-conditioned (64×64, 23 views: eigenvalues up to 1.4e3, the smallest non-zero
    1.7e-5), so the tolerance is reached for s²/r² ≳ 1 (float64: ~130 iterations at s² = 1) while smaller
    s² stop at the cap (measured at 64×64, 23 views, y = A x: residual 1e-5 at s² = 1e-2, 6e-4 at 1e-4,
    1e-3 for pinv; a noisy y at s² = 1e-4: 6e-2). No SVD (``svd`` raises ``NotImplementedError``, so
    DDRM refuses it).

    Decomposition A = P(Λ) T (``Decomposed``), when the angles lie on the full-angle grid: T = the
    ``full_views``-view Radon transform (``full``), ``transform_shape`` = (C, full_views, D); P(Λ) selects the
    measured views (``view_index``) and P(Λ)ᵀ puts them back with zero rows elsewhere. T⁻¹ is NOT exact:
    ``inverse_transform`` is the filtered back-projection of the full sinogram (``exact_inverse`` False;
    ``full.pinv(z)`` is the exact least-squares inverse, by CG).
    """

    exact_inverse = False

    def __init__(self, shape: tuple[int, int, int] = (1, 64, 64), angles: int | Sequence[float] = 23,
                 full_views: int = FULL_VIEWS):
        C, N, N2 = self.in_shape = _image_shape("Radon shape", shape)
        if N != N2:
            raise ValueError(f"Radon: images must be square, got shape {tuple(shape)}")
        self.full_views = _checks.positive_int("full_views", full_views)
        grid = full_angles(self.full_views)
        if isinstance(angles, (int, np.integer)) and not isinstance(angles, bool):
            n = int(angles)
            if not 1 <= n <= self.full_views:
                raise ValueError(f"Radon: the number of views must lie in [1, {self.full_views}], got {n}")
            index = np.round(np.arange(n) * (self.full_views / n)).astype(np.int64)
            angles = grid[index]
        self.angles = _check_angles(angles)
        hit = np.abs(self.angles[:, None] - grid[None, :]) <= 1e-9
        self.view_index = torch.from_numpy(hit.argmax(1)) if bool(hit.any(1).all()) else None
        self.size, self.detectors = N, detector_count(N)
        self.out_shape = (C, len(self.angles), self.detectors)
        self.transform_shape = (C, self.full_views, self.detectors)
        self._parts = _radon_csr(N, tuple(float(a) for a in self.angles))
        self._mats: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}
        self._full: Radon | None = None

    # ------------------------------------------------------------------ the matrices
    @property
    def nnz(self) -> int:
        """Non-zeros of A."""
        return len(self._parts[0][2])

    def matrices(self, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(A, Aᵀ) as torch sparse CSR tensors of shape (views·D, N²) and (N², views·D), cached per dtype and device."""
        key = (dtype, torch.device(device))
        if key not in self._mats:
            m, n = len(self.angles) * self.detectors, self.size ** 2
            self._mats[key] = (_torch_csr(self._parts[0], (m, n), dtype, key[1]),
                               _torch_csr(self._parts[1], (n, m), dtype, key[1]))
        return self._mats[key]

    def _apply(self, t: torch.Tensor, transpose: bool, out: tuple[int, ...]) -> torch.Tensor:
        A, At = self.matrices(t.dtype, t.device)
        M, Mt = (At, A) if transpose else (A, At)
        cols = t.reshape(t.shape[0] * t.shape[1], -1).T              # (n, B·C)
        return _SparseApply.apply(cols.contiguous(), M, Mt).T.reshape(t.shape[0], *out)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, False, self.out_shape)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._apply(y, True, self.in_shape)

    def svd(self):
        raise NotImplementedError("DDRM needs an SVD; the Radon transform has none here (Radon: use its A, Aᵀ and "
                                  "conjugate-gradient Gram solves instead)")

    # ------------------------------------------------------------------ filtered back-projection
    def fbp(self, sinogram: torch.Tensor, filter_name: str = "ramp") -> torch.Tensor:
        """Filtered back-projection (``skimage.transform.iradon``, ``filter_name``, linear interpolation,
        circle=False) of sinograms (B, C, views, D) → images (B, C, N, N) on the input's device and dtype.
        Exact only in the limit of many views; with few views it shows streaks."""
        from skimage.transform import iradon

        s = self._check(sinogram, self.out_shape, "sinogram")
        a = s.detach().to("cpu", torch.float64).numpy()
        out = np.stack([np.stack([iradon(ch.T, theta=self.angles, filter_name=filter_name, circle=False,
                                         output_size=self.size) for ch in img]) for img in a])
        return torch.from_numpy(out).to(device=s.device, dtype=s.dtype)

    # ------------------------------------------------------------------ decomposition A = P(Λ) T
    @property
    def full(self) -> "Radon":
        """The full-angle transform T (``full_views`` views), built on first use."""
        if self._full is None:
            self._full = self if len(self.angles) == self.full_views and self.view_index is not None and \
                bool((self.view_index == torch.arange(self.full_views)).all()) else \
                Radon(self.in_shape, full_angles(self.full_views).tolist(), self.full_views)
        return self._full

    def check_decomposition(self) -> None:
        self._need_grid()

    def _need_grid(self) -> torch.Tensor:
        if self.view_index is None:
            raise ValueError(f"Radon: the angles {self.angles.tolist()} are not all on the full-angle grid of "
                             f"{self.full_views} views (multiples of {180 / self.full_views:g}°), so A ≠ P(Λ) T")
        return self.view_index

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        self._need_grid()
        return self.full._forward(x)

    def _inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        self._need_grid()
        return self.full.fbp(z)

    def _subsample(self, z: torch.Tensor) -> torch.Tensor:
        return z.index_select(2, self._need_grid().to(z.device))

    def _embed(self, y: torch.Tensor) -> torch.Tensor:
        z = y.new_zeros(y.shape[0], *self.transform_shape)
        return z.index_copy(2, self._need_grid().to(y.device), y)

    # ------------------------------------------------------------------ pictures
    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        """The sinogram (B, C, views, D) divided by its largest absolute value per sample (values in [−1, 1])."""
        scale = y.detach().abs().flatten(1).amax(1).clamp_min(torch.finfo(y.dtype).tiny)
        return y / scale.reshape(-1, 1, 1, 1)

    # ------------------------------------------------------------------ the observation as a file
    file_is_image = False

    @property
    def file_shape(self) -> tuple[int, int, int]:
        """y itself, (C, views, detectors)."""
        return tuple(self.out_shape)

    def describe_file(self) -> str:
        C, V, D = self.out_shape
        shape = f"({V}, {D})" if C == 1 else f"({C}, {V}, {D})"
        return (f"a .npy file holding the sinogram as a real {shape} array (views × detector bins, the views in "
                f"the task's angle order: the transpose of scikit-image's radon(image, theta, circle=False)) of "
                f"the image in [0, 1]")

    def read_array(self, a: np.ndarray) -> torch.Tensor:
        C, V, D = self.out_shape
        shapes = {(C, V, D), (V, D)} if C == 1 else {(C, V, D)}
        if a.dtype.kind not in "fi" or a.shape not in shapes:
            hint = " (transposed? views go first)" if C == 1 and a.shape == (D, V) else ""
            raise ValueError(f"expected {self.describe_file()}; got a {a.dtype} array of shape {a.shape}{hint}")
        y = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(C, V, D)
        if not bool(torch.isfinite(y).all()):
            raise ValueError("the sinogram holds NaN or infinite values")
        return y

    def write_array(self, y_file: torch.Tensor) -> np.ndarray:
        y = y_file.detach().to("cpu", torch.float32).numpy()
        return y[0] if y.shape[0] == 1 else y

    def __repr__(self) -> str:
        return (f"Radon(shape={self.in_shape}, views={len(self.angles)}, detectors={self.detectors}, "
                f"nnz={self.nnz})")
