"""Single-coil Cartesian MRI: y = M ⊙ F x, F the orthonormal 2-D FFT, M a mask of phase-encode columns.

Layout. x is a real grey image (B, 1, H, W). y is the whole k-space grid in the unshifted FFT order of
``torch.fft.fft2`` (DC at [0, 0]) as two real channels, (B, 2, H, W) = (real part, imaginary part), with
zeros off the mask: every solver and the Gaussian noise model see real tensors, and noise added off the
mask is ignored by Aᵀ (as for inpainting's ``Mask``). ``mask_centered`` is the mask in the fftshift order
(DC in the middle) for display.

Real images and Hermitian symmetry. F x of a real x satisfies (F x)[−k] = conj((F x)[k]), so a line
at column −k_x is the complex conjugate of the line at k_x. The default masks (``symmetric=True``)
are sampled in conjugate pairs of columns: they measure 1/R of the coefficients and carry 1/R of the
image's degrees of freedom, A Aᵀ is the orthogonal projection onto the Hermitian-symmetric data on
the mask, A Aᵀ A = A (``partial_isometry``) and the singular values are 0 and 1. fastMRI's masks
(``symmetric=False``: columns drawn independently, as for complex data) also hold the conjugate of an
unpaired line for free — about twice the data of the nominal acceleration for a real image — and A
then has singular values 1/√2 at unpaired lines (not a partial isometry). ``gram_solve``, ``pinv`` and
``svd`` are exact closed forms for either.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import _checks
from .base import SVD, Decomposed, LinearOperator, _image_shape, _safe_reciprocal

PATTERNS = ("random", "equispaced")


def _partner(t: torch.Tensor) -> torch.Tensor:
    """t[..., (−k_y) mod H, (−k_x) mod W]: the value at the conjugate frequency of every k-space position."""
    return torch.roll(torch.flip(t, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def _frequency(W: int) -> np.ndarray:
    """Signed frequency of each column of the unshifted FFT order: 0, 1, …, −1 (fftfreq × W)."""
    return np.round(np.fft.fftfreq(W) * W).astype(np.int64)


def line_mask(width: int, acceleration: float, center_fraction: float = 0.08, pattern: str = "random",
              seed: int = 0, symmetric: bool = True) -> torch.Tensor:
    """fastMRI-style mask of phase-encode columns: a bool tensor (width,) in the unshifted FFT order.

    n_c = round(width · center_fraction) central columns (at least 1) are always kept; then
    ``symmetric=True`` (default, for real images): the band |f| ≤ n_c // 2 (odd, centred on DC) and
    conjugate pairs of columns ±f outside it, and for an even width the (self-conjugate) Nyquist column −W/2
    when the count is odd, bringing the total to round(width / acceleration) (one less for an odd width
    when the count is odd): ``pattern="random"`` draws them uniformly without replacement from
    ``seed`` (NumPy's PCG64), ``pattern="equispaced"`` spreads them evenly over the outer frequencies
    (deterministic: ``seed`` is unused).
    ``symmetric=False`` (fastMRI's mask functions, for complex data): "random" adds exactly
    round(width / acceleration) − n_c columns uniformly without replacement (fastMRI draws each column
    independently with that expected count); "equispaced" is fastMRI's ``EquispacedMaskFunc`` (spacing
    R (n_c − W) / (n_c R − W), offset drawn from ``seed``).
    """
    W = _checks.positive_int("width", width)
    R = float(acceleration)
    if not math.isfinite(R) or R < 1:
        raise ValueError(f"acceleration must be a number >= 1, got {acceleration!r}")
    cf = float(center_fraction)
    if not 0 < cf <= 1:
        raise ValueError(f"center_fraction must lie in (0, 1], got {center_fraction!r}")
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    target = max(1, round(W / R))
    n_center = min(max(1, round(W * cf)), target)
    freq = _frequency(W)
    rng = np.random.default_rng(seed)
    if symmetric:
        half = n_center // 2  # |f| ≤ half: 2·half + 1 ≥ n_center columns, odd, centred on DC
        keep = np.abs(freq) <= half
        pos = np.arange(half + 1, (W + 1) // 2)  # positive frequencies of the pairs ±f outside the band
        rest = max(0, target - int(keep.sum()))
        n_pairs = min(len(pos), rest // 2)
        if pattern == "random":
            chosen = rng.choice(pos, size=n_pairs, replace=False) if n_pairs else np.zeros(0, np.int64)
        else:
            chosen = _equispaced(pos, n_pairs)
        keep |= np.isin(np.abs(freq), chosen)
        if rest > 2 * n_pairs and W % 2 == 0:  # an odd count: add the self-conjugate Nyquist column −W/2
            keep[W // 2] = True
    else:  # fastMRI's RandomMaskFunc (exact count) / EquispacedMaskFunc, in the centred order
        keep_c = np.zeros(W, dtype=bool)
        start = (W - n_center + 1) // 2
        keep_c[start:start + n_center] = True
        if pattern == "random":
            rest = np.flatnonzero(~keep_c)
            keep_c[rng.choice(rest, size=min(len(rest), target - n_center), replace=False)] = True
        elif n_center * R < W:
            spacing = R * (n_center - W) / (n_center * R - W)
            offset = int(rng.integers(0, max(1, round(spacing))))
            keep_c[np.round(np.arange(offset, W - 1, spacing)).astype(np.int64)] = True
        keep = np.fft.ifftshift(keep_c)
    return torch.from_numpy(keep)


def _equispaced(pos: np.ndarray, n: int) -> np.ndarray:
    """n of the consecutive integers ``pos`` spread evenly: p₀ + ⌊(j + ½)·d⌋, j = 0..n−1, d = len(pos) / n."""
    if n <= 0:
        return np.zeros(0, np.int64)
    d = len(pos) / n
    return pos[0] + np.floor(d * (np.arange(n) + 0.5)).astype(np.int64)


class MRI(Decomposed, LinearOperator):
    """Single-coil Cartesian MRI y = M ⊙ F x (see the module docstring for the layout and the masks).

    ``shape``: (1, H, W) grey images. ``acceleration`` R (4 or 8 in the paper), ``center_fraction``,
    ``pattern`` ("random" | "equispaced"), ``seed`` and ``symmetric`` define the column mask
    (``line_mask``); ``mask`` ((W,) columns or (H, W), bool, unshifted FFT order) overrides them.

    Decomposition A = P(Λ) T (``Decomposed``): T x = F x as (real, imaginary) channels (2, H, W),
    T⁻¹ z = Re F⁻¹ z (exact: T is orthogonal from real images onto its range), P(Λ) z = M ⊙ z and
    P(Λ)ᵀ y = M ⊙ y (both on the full grid, so ``transform_shape == out_shape``).
    """

    exact_inverse = True

    def __init__(self, shape: tuple[int, int, int] = (1, 64, 64), acceleration: float = 4,
                 center_fraction: float = 0.08, pattern: str = "random", seed: int = 0, symmetric: bool = True,
                 mask: torch.Tensor | None = None):
        C, H, W = self.in_shape = _image_shape("MRI shape", shape)
        if C != 1:
            raise ValueError(f"MRI: images must have one (grey) channel, got shape {tuple(shape)}")
        self.out_shape = self.transform_shape = (2, H, W)
        if mask is None:
            columns = line_mask(W, acceleration, center_fraction, pattern, seed, symmetric)
            mask = columns.expand(H, W)
            self.acceleration, self.center_fraction, self.pattern = float(acceleration), float(center_fraction), pattern
        else:
            mask = torch.as_tensor(mask)
            if mask.dtype != torch.bool or tuple(mask.shape) not in ((W,), (H, W)):
                raise ValueError(f"MRI: mask must be a bool tensor of shape ({W},) or ({H}, {W}), got "
                                 f"{mask.dtype} {tuple(mask.shape)}")
            mask = mask.expand(H, W)
            self.acceleration = self.center_fraction = self.pattern = None
        self.mask = mask.detach().cpu().contiguous()                  # (H, W) bool, unshifted FFT order
        self.mask_centered = torch.fft.fftshift(self.mask, dim=(-2, -1))
        partner = _partner(self.mask)
        self.partial_isometry = bool(torch.equal(self.mask, partner))
        # Gram-solve classes of k-space positions: kept with the conjugate kept (A Aᵀ = projection onto the
        # Hermitian part), kept alone (A Aᵀ = 1/2), not kept (0).
        self._paired = (self.mask & partner).to(torch.float64)
        self._single = (self.mask & ~partner).to(torch.float64)
        self._m = self.mask.to(torch.float64)

    # ------------------------------------------------------------------ the mask
    @property
    def kept_fraction(self) -> float:
        """Fraction of the k-space coefficients measured (≈ 1 / acceleration)."""
        return float(self.mask.float().mean())

    def _as(self, t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return t.to(device=ref.device, dtype=ref.dtype)

    # ------------------------------------------------------------------ the transform T = F and P(Λ)
    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.fft.fft2(x[:, 0], norm="ortho")
        return torch.stack([k.real, k.imag], dim=1).to(x.dtype)

    def _inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(torch.complex(z[:, 0], z[:, 1]), norm="ortho").real[:, None].to(z.dtype)

    def _subsample(self, z: torch.Tensor) -> torch.Tensor:
        return z * self._as(self._m, z)

    _embed = _subsample

    # ------------------------------------------------------------------ the operator
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._subsample(self._transform(x))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._inverse_transform(self._embed(y))

    def _gram_solve(self, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """Exact: at paired positions split v into its Hermitian part h = (v + conj v[−k])/2 (A Aᵀ = 1) and the
        rest (A Aᵀ = 0); at unpaired kept positions A Aᵀ = 1/2; off the mask A Aᵀ = 0 (pseudo-inverse: 0)."""
        paired, single = self._as(self._paired, v), self._as(self._single, v)
        conj = torch.stack([_partner(v[:, 0]), -_partner(v[:, 1])], dim=1)
        h = paired * (v + conj) / 2
        inv_s2 = _safe_reciprocal(s2)
        return (h * _safe_reciprocal(r2 + s2) + (v - h) * paired * inv_s2
                + v * single * _safe_reciprocal(r2 / 2 + s2) + v * (1 - paired - single) * inv_s2)

    def svd(self) -> SVD:
        """A = U diag(s) Vᵀ in the real Fourier basis of real images.

        Vt(x) = [√2 Re X_p, √2 Im X_p (p over one position of each conjugate pair, P of them), X_q (q over the
        S self-conjugate positions, where X is real)], X = F x: an orthonormal basis of the H·W pixels.
        Per pair (p, −p) with outputs w = (Re y_p, Im y_p, Re y₋ₚ, Im y₋ₚ) the U columns are (1, 0, 1, 0)/√2,
        (0, 1, 0, −1)/√2 with s = 1 when both are kept, (1, 0, 0, 0), (0, 1, 0, 0) with s = 1/√2 when only
        p is, (0, 0, 1, 0), (0, 0, 0, −1) with s = 1/√2 when only −p is, s = 0 when neither; self-conjugate
        positions: U column e(Re y_q), s = m_q. Ut(y) = [first two coordinates of every pair (2P), Re y_q (S),
        the two complementary coordinates of every pair (2P), Im y_q (S)] (2·H·W = m entries).
        """
        H, W = self.in_shape[1:]
        n = H * W
        idx = torch.arange(n)
        partner = _partner(idx.reshape(H, W)).flatten()
        rep, selfc = idx[idx < partner], idx[idx == partner]
        prt = partner[rep]
        m = self.mask.flatten()
        mp, mq = m[rep], m[prt]
        r = 2 ** -0.5
        both = torch.tensor([[r, 0, r, 0], [0, r, 0, -r], [r, 0, -r, 0], [0, r, 0, r]], dtype=torch.float64)
        only_p = torch.eye(4, dtype=torch.float64)
        only_q = torch.tensor([[0, 0, 1, 0], [0, 0, 0, -1], [1, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.float64)
        # Q[i] rows are the U columns of pair i (first two: with s, last two: complement), as (4, 4) per pair.
        Q = torch.where((mp & mq)[:, None, None], both,
                        torch.where(mp[:, None, None], only_p, torch.where(mq[:, None, None], only_q, both)))
        s_pair = torch.where(mp & mq, 1.0, torch.where(mp | mq, r, 0.0)).to(torch.float64)
        s = torch.cat([s_pair, s_pair, m[selfc].to(torch.float64)])
        P = len(rep)

        def Vt(x: torch.Tensor) -> torch.Tensor:
            X = torch.fft.fft2(x[:, 0], norm="ortho").flatten(1)
            return torch.cat([2 ** 0.5 * X[:, rep].real, 2 ** 0.5 * X[:, rep].imag, X[:, selfc].real], 1).to(x.dtype)

        def V(c: torch.Tensor) -> torch.Tensor:
            Xp = torch.complex(c[:, :P], c[:, P:2 * P]) * r
            X = torch.zeros(c.shape[0], n, dtype=Xp.dtype, device=c.device)
            X[:, rep], X[:, prt] = Xp, Xp.conj()
            X[:, selfc] = torch.complex(c[:, 2 * P:], torch.zeros_like(c[:, 2 * P:]))
            return torch.fft.ifft2(X.reshape(-1, H, W), norm="ortho").real[:, None].to(c.dtype)

        def Ut(y: torch.Tensor) -> torch.Tensor:
            re, im = y[:, 0].flatten(1), y[:, 1].flatten(1)
            w = torch.stack([re[:, rep], im[:, rep], re[:, prt], im[:, prt]], -1)   # (B, P, 4)
            coef = torch.einsum("pij,bpj->bpi", Q.to(y), w)
            return torch.cat([coef[..., 0], coef[..., 1], re[:, selfc], coef[..., 2], coef[..., 3], im[:, selfc]], 1)

        def U(c: torch.Tensor) -> torch.Tensor:
            S = len(selfc)
            coef = torch.stack([c[:, :P], c[:, P:2 * P], c[:, 2 * P + S:3 * P + S], c[:, 3 * P + S:4 * P + S]], -1)
            w = torch.einsum("pij,bpi->bpj", Q.to(c), coef)
            re = torch.zeros(c.shape[0], n, dtype=c.dtype, device=c.device)
            im = torch.zeros_like(re)
            re[:, rep], im[:, rep], re[:, prt], im[:, prt] = w.unbind(-1)
            re[:, selfc], im[:, selfc] = c[:, 2 * P:2 * P + S], c[:, 4 * P + S:]
            return torch.stack([re, im], 1).reshape(-1, 2, H, W)

        return SVD(s=s, Vt=Vt, V=V, Ut=Ut, U=U)

    # ------------------------------------------------------------------ pictures
    def zero_filled(self, y: torch.Tensor) -> torch.Tensor:
        """|F⁻¹(M ⊙ y)|: the magnitude of the zero-filled inverse FFT (fastMRI's baseline), (B, 1, H, W).

        For a conjugate-symmetric mask and y in A's range it equals |Aᵀ y| = |A⁺ y|."""
        y = self._check(y, self.out_shape, "y")
        k = torch.complex(y[:, 0], y[:, 1]) * self._as(self._m, y)
        return torch.fft.ifft2(k, norm="ortho").abs()[:, None].to(y.dtype)

    def _to_image(self, y: torch.Tensor) -> torch.Tensor:
        return self.zero_filled(y)

    # ------------------------------------------------------------------ the observation as a file
    file_is_image = False

    @property
    def file_shape(self) -> tuple[int, int, int]:
        """y itself, (2, H, W) (real, imaginary): zeros off the mask in a file."""
        return tuple(self.out_shape)

    def describe_file(self) -> str:
        _, H, W = self.out_shape
        return (f"a .npy file holding the k-space as a complex ({H}, {W}) array, or a real ({H}, {W}, 2) one (real, "
                f"imaginary), in the unshifted FFT order of numpy.fft.fft2(image, norm='ortho') (DC at [0, 0]; "
                f"ifftshift a centred array) of the image in [0, 1], with zeros on the columns not sampled")

    def _to_file(self, y: torch.Tensor) -> torch.Tensor:
        """M ⊙ y: the coefficients measured, (positive) zeros elsewhere."""
        return torch.where(self.mask.to(y.device), y, torch.zeros((), dtype=y.dtype, device=y.device))

    def read_array(self, a: np.ndarray) -> torch.Tensor:
        _, H, W = self.out_shape
        if a.dtype.kind == "c" and a.shape == (H, W):
            a = np.stack([a.real, a.imag])
        elif a.dtype.kind in "fi" and a.shape == (H, W, 2):
            a = np.moveaxis(a, -1, 0)
        else:
            raise ValueError(f"expected {self.describe_file()}; got a {a.dtype} array of shape {a.shape}")
        y = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if not bool(torch.isfinite(y).all()):
            raise ValueError("the k-space holds NaN or infinite values")
        columns = torch.nonzero(((y != 0).any(0) & ~self.mask).any(0)).flatten().tolist()
        if columns:
            raise ValueError(f"the k-space has non-zero values on {len(columns)} columns that the task's mask does "
                             f"not sample (e.g. column {columns[0]} of the unshifted FFT order); give the task the "
                             f"mask the data was taken with (acceleration, center_fraction, pattern, seed: "
                             f"{self!r}), and the k-space in the unshifted order (DC at [0, 0])")
        return y

    def write_array(self, y_file: torch.Tensor) -> np.ndarray:
        y = y_file.detach().to("cpu", torch.float32).numpy()
        k = np.empty(y.shape[1:], dtype=np.complex64)
        k.real, k.imag = y[0], y[1]
        return k

    def __repr__(self) -> str:
        return (f"MRI(shape={self.in_shape}, acceleration={self.acceleration}, pattern={self.pattern!r}, "
                f"kept_fraction={self.kept_fraction:.4f}, partial_isometry={self.partial_isometry})")
