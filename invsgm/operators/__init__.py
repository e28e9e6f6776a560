"""Linear measurement operators y = A x on batches, for inverse problems (inpainting, super-resolution,
deblurring, colorization, compressed sensing).

Every operator has A (``forward``), Aᵀ (``adjoint``), the regularised Gram solve
(r²·A Aᵀ + s²·I)⁻¹ v (``gram_solve``, used by ΠGDM-style guidance and Gaussian posteriors), the
proximal solves (ρ I + AᵀA)⁻¹ v (``normal_solve``) and argmin_x ½‖A x − y‖² + ½ρ‖x − z‖² (``prox``),
the pseudo-inverse A⁺ and noisy observation A x + σ_y z; all but operators without a cheap exact one
have an SVD A = U diag(s) Vᵀ (``svd``, see ``SVD``). ``partial_isometry`` marks operators with
A Aᵀ = I on A's range (A selects orthonormal coordinates): only then is the replacement step
x ← x + Aᵀ(y_t − A x) of Song et al. (ICLR 2021) a projection.

Medical imaging (Song, Shen, Xing & Ermon, ICLR 2022): ``MRI`` (single-coil Cartesian, y = M ⊙ F x as
(real, imaginary) channels) and ``Radon`` (parallel-beam CT, a precomputed sparse matrix; no SVD) also
implement ``Decomposed``: A = P(Λ) T with ``transform`` (T), ``inverse_transform`` (T⁻¹), ``subsample``
(P(Λ)), ``embed`` (P(Λ)ᵀ) and the transform-domain data-consistency step ``consistent(x, y, λ)``.
"""
from .base import SVD, Decomposed, LinearOperator
from .blur import GaussianBlur
from .color import COLOR_BASIS, Grey, from_basis, to_basis
from .ct import Radon, detector_count, full_angles
from .mask import Mask, box_mask, random_mask
from .matrix import Identity, Matrix
from .mri import MRI, line_mask
from .resize import AvgPool

__all__ = ["LinearOperator", "SVD", "Matrix", "Identity", "Mask", "box_mask", "random_mask", "AvgPool",
           "GaussianBlur", "Grey", "COLOR_BASIS", "to_basis", "from_basis", "Decomposed", "MRI", "line_mask",
           "Radon", "detector_count", "full_angles"]
