"""Measurement operators: adjointness, exact Gram solves, proximal solves and pseudo-inverses against
dense matrices built from the operators themselves, the default conjugate-gradient solve, the SVDs
(orthogonality, reconstruction, singular values), mask constructors, the Fourier eigenvalues of the
circular blur, the colour basis, and shape errors."""
import math

import numpy as np
import pytest
import torch

from invsgm import operators as ops
from invsgm.imageio import mask_from_file, write_png

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Dense(ops.LinearOperator):
    """A test operator from a dense matrix that only defines A and Aᵀ: it uses the default CG gram_solve."""

    def __init__(self, A: torch.Tensor, in_shape: tuple[int, ...]):
        self.A, self.in_shape, self.out_shape = A, in_shape, (A.shape[0],)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.A.to(x).T

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y @ self.A.to(y)).reshape(-1, *self.in_shape)


class _CGOnly(ops.LinearOperator):
    """Any operator's A and Aᵀ without its exact gram_solve/pinv: exercises the default CG versions."""

    def __init__(self, op: ops.LinearOperator):
        self.op, self.in_shape, self.out_shape = op, op.in_shape, op.out_shape

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op._forward(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op._adjoint(y)


def _low_rank() -> ops.Matrix:
    g = _gen(1)
    return ops.Matrix(torch.randn(6, 3, generator=g, dtype=F64) @ torch.randn(3, 4, generator=g, dtype=F64))


def _orthonormal_rows() -> ops.Matrix:
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=_gen(2), dtype=F64))
    return ops.Matrix(q[:3])


def _channel_mask() -> ops.Mask:
    return ops.Mask(torch.rand(2, 8, 8, generator=_gen(3)) < 0.6)


FACTORIES = {
    "matrix": lambda: ops.Matrix(torch.randn(5, 8, generator=_gen(0), dtype=F64)),
    "matrix_low_rank": _low_rank,
    "matrix_orthonormal_rows": _orthonormal_rows,
    "identity": lambda: ops.Identity((2, 3, 4)),
    "random_mask": lambda: ops.random_mask((2, 8, 8), 0.4, _gen(4)),
    "channel_mask": _channel_mask,
    "box_mask": lambda: ops.box_mask((1, 6, 7), top=1, left=2, height=3, width=4),
    "avgpool2": lambda: ops.AvgPool(2, (2, 8, 8)),
    "avgpool1": lambda: ops.AvgPool(1, (1, 4, 4)),
    "blur3": lambda: ops.GaussianBlur(0.8, 3, (2, 8, 8)),
    "blur5": lambda: ops.GaussianBlur(1.5, 5, (1, 8, 10)),
    "grey": lambda: ops.Grey((3, 4, 6)),
    "dense_cg": lambda: _Dense(torch.randn(5, 18, generator=_gen(5), dtype=F64), (2, 3, 3)),
}
NAMES = list(FACTORIES)


def _dense(op: ops.LinearOperator) -> torch.Tensor:
    """The matrix of A (m × n), column j = A e_j."""
    n = math.prod(op.in_shape)
    return op(torch.eye(n, dtype=F64).reshape(n, *op.in_shape)).reshape(n, -1).T


def _rand(shape: tuple[int, ...], seed: int, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, *shape, generator=_gen(seed), dtype=F64)


def _dense_gram_solve(A: torch.Tensor, v: torch.Tensor, r2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """(r2 A Aᵀ + s2 I)⁺ v per sample, by dense pseudo-inverses."""
    AAt, eye = A @ A.T, torch.eye(A.shape[0], dtype=F64)
    rows = [torch.linalg.pinv(r2[i] * AAt + s2[i] * eye, hermitian=True) @ v[i].flatten() for i in range(len(v))]
    return torch.stack(rows).reshape(v.shape)


PARAMS = [(1.0, 0.5), (2.5, 1e-3),
          (torch.tensor([0.5, 1.0, 4.0], dtype=F64), torch.tensor([0.1, 2.0, 1e-2], dtype=F64)),
          (1.0, 0.0), (torch.tensor([1.0, 3.0, 0.2], dtype=F64), 0.0)]


def _vec(value: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(value, dtype=F64).expand(3)


@pytest.mark.parametrize("name", NAMES)
def test_adjointness(name):
    op = FACTORIES[name]()
    x, y = _rand(op.in_shape, 10), _rand(op.out_shape, 11)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    assert abs(lhs - rhs) <= 1e-10 * op(x).norm() * y.norm()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r2, s2", PARAMS)
def test_gram_solve_matches_dense(name, r2, s2):
    op = FACTORIES[name]()
    v = _rand(op.out_shape, 12)
    want = _dense_gram_solve(_dense(op), v, _vec(r2), _vec(s2))
    assert torch.allclose(op.gram_solve(v, r2, s2), want, rtol=1e-8, atol=1e-8 * want.abs().max())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r2, s2", PARAMS)
def test_default_cg_gram_solve_matches_dense(name, r2, s2):
    """CG from 0 stays in the Krylov space of v: with s2 = 0 it gives (A Aᵀ)⁺ v for v in A's range."""
    op = FACTORIES[name]()
    v = _rand(op.out_shape, 13) if float(_vec(s2).min()) > 0 else op(_rand(op.in_shape, 13))
    want = _dense_gram_solve(_dense(op), v, _vec(r2), _vec(s2))
    got = _CGOnly(op).gram_solve(v, r2, s2)
    assert torch.allclose(got, want, rtol=1e-7, atol=1e-7 * want.abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_pinv(name):
    op = FACTORIES[name]()
    A = _dense(op)
    y = _rand(op.out_shape, 14)
    want = (y.flatten(1) @ torch.linalg.pinv(A).T).reshape(-1, *op.in_shape)
    assert torch.allclose(op.pinv(y), want, rtol=1e-8, atol=1e-8 * want.abs().max())
    in_range = op(_rand(op.in_shape, 15))
    assert torch.allclose(op(op.pinv(in_range)), in_range, rtol=1e-8, atol=1e-8 * in_range.abs().max())
    assert torch.allclose(op(_CGOnly(op).pinv(in_range)), in_range, rtol=1e-7, atol=1e-7 * in_range.abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_partial_isometry_flag(name):
    op = FACTORIES[name]()
    A = _dense(op)
    assert op.partial_isometry == torch.allclose(A @ A.T @ A, A, atol=1e-10)


def test_partial_isometry_flags_of_image_operators():
    assert {name: FACTORIES[name]().partial_isometry for name in ("random_mask", "grey", "avgpool2", "blur3")} == \
        {"random_mask": True, "grey": True, "avgpool2": False, "blur3": False}


@pytest.mark.parametrize("name", NAMES)
def test_dtype_follows_input(name):
    op = FACTORIES[name]()
    x, y = _rand(op.in_shape, 16).float(), _rand(op.out_shape, 17).float()
    for out in (op(x), op.adjoint(y), op.gram_solve(y, 1.0, 0.1), op.pinv(y), op.observe(x, 0.1, _gen())):
        assert out.dtype == torch.float32
    assert torch.allclose(op(x).double(), op(x.double()), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_shapes_name_the_operator(name):
    op = FACTORIES[name]()
    bad = torch.zeros(2, *op.in_shape, 1)
    with pytest.raises(ValueError, match=f"{type(op).__name__}.*{op.in_shape[-1]}.*got \\({2}, "):
        op(bad)
    with pytest.raises(ValueError, match=type(op).__name__):
        op.adjoint(torch.zeros(2, *op.in_shape, 1))
    with pytest.raises(ValueError, match=type(op).__name__):
        op.pinv(torch.zeros(op.out_shape))
    with pytest.raises(ValueError, match="r2"):
        op.gram_solve(torch.zeros(3, *op.out_shape), torch.ones(2), 1.0)


def test_wrong_shape_message():
    with pytest.raises(ValueError, match=r"AvgPool: x must have shape \(B, 2, 8, 8\), got \(1, 2, 8, 9\)"):
        ops.AvgPool(2, (2, 8, 8))(torch.zeros(1, 2, 8, 9))


def test_observe():
    op = ops.AvgPool(2, (1, 64, 64))
    x = _rand(op.in_shape, 18, batch=4)
    assert torch.equal(op.observe(x, 0.0, _gen()), op(x))
    y = op.observe(x, 0.3, _gen(7))
    assert torch.equal(y, op.observe(x, 0.3, _gen(7)))
    assert abs((y - op(x)).std().item() - 0.3) < 0.02
    with pytest.raises(ValueError, match="sigma_y"):
        op.observe(x, -1.0, None)


def test_to_image():
    x = _rand((3, 4, 6), 19)
    mask = ops.box_mask((3, 4, 6), 0, 0, 2, 2)
    assert torch.equal(mask.to_image(mask(x)), x * mask.mask)
    pool = ops.AvgPool(2, (3, 4, 6))
    assert torch.equal(pool.to_image(pool(x))[..., ::2, ::2], pool(x))
    assert pool.to_image(pool(x)).shape == x.shape
    grey = ops.Grey((3, 4, 6))
    assert torch.allclose(grey.to_image(grey(x)), x.mean(1, keepdim=True).expand_as(x))
    blur = ops.GaussianBlur(1.0, 3, (3, 4, 6))
    assert torch.equal(blur.to_image(blur(x)), blur(x))
    with pytest.raises(NotImplementedError, match="Matrix"):
        FACTORIES["matrix"]().to_image(torch.zeros(2, 5))


def test_matrix_rank_deficient_gram_solve_at_zero_s2_is_pseudo_inverse():
    op = _low_rank()
    v = _rand(op.out_shape, 20)
    assert torch.allclose(op.gram_solve(v, 1.0, 0.0), v @ torch.linalg.pinv(_dense(op) @ _dense(op).T).T, atol=1e-10)


def test_matrix_rejects_non_matrix():
    with pytest.raises(ValueError, match="Matrix"):
        ops.Matrix(torch.zeros(3))


def test_mask_is_shared_over_channels():
    op = ops.random_mask((3, 8, 8), 0.5, _gen(21))
    assert op.mask.shape == (1, 8, 8) and op.in_shape == (3, 8, 8)
    y = op(torch.ones(2, 3, 8, 8))
    assert torch.equal(y, op.mask.double().expand(2, 3, 8, 8))
    assert torch.equal(op.gram_solve(y, 1.0, 0.0), y)


def test_mask_checks_its_argument():
    with pytest.raises(ValueError, match="bool"):
        ops.Mask(torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        ops.Mask(torch.ones(2, 4, 4, dtype=torch.bool), channels=3)


def test_box_mask_region():
    op = ops.box_mask((3, 10, 12), top=2, left=5, height=4, width=3)
    want = torch.ones(10, 12, dtype=torch.bool)
    want[2:6, 5:8] = False
    assert torch.equal(op.mask[0], want) and op.in_shape == (3, 10, 12)
    with pytest.raises(ValueError, match="does not fit"):
        ops.box_mask((3, 10, 12), top=8, left=0, height=4, width=3)


@pytest.mark.parametrize("missing", [0.0, 0.25, 0.9])
def test_random_mask_missing_fraction(missing):
    H = W = 64
    op = ops.random_mask((3, H, W), missing, _gen(22))
    frac = 1.0 - op.mask.double().mean().item()
    assert abs(frac - missing) <= 4 * math.sqrt(missing * (1 - missing) / (H * W))
    assert torch.equal(op.mask, ops.random_mask((3, H, W), missing, _gen(22)).mask)
    with pytest.raises(ValueError, match="missing"):
        ops.random_mask((3, H, W), 1.0, _gen())


@pytest.mark.parametrize("rgb", [False, True])
def test_mask_from_file_round_trip(tmp_path, rgb):
    observed = torch.rand(9, 7, generator=_gen(23)) < 0.5
    image = observed.numpy().astype(np.uint8) * 255
    path = write_png(tmp_path / "mask.png", np.repeat(image[..., None], 3, axis=2) if rgb else image)
    op = mask_from_file(path, (3, 9, 7))
    assert torch.equal(op.mask, observed[None]) and op.in_shape == (3, 9, 7)


def test_mask_from_file_errors_name_the_file(tmp_path):
    path = write_png(tmp_path / "small.png", np.full((9, 7), 255, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"small\.png.*9x7.*10x7"):
        mask_from_file(path, (3, 10, 7))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match=r"garbage\.png"):
        mask_from_file(garbage, (3, 9, 7))
    with pytest.raises(ValueError, match=r"missing\.png"):
        mask_from_file(tmp_path / "missing.png", (3, 9, 7))


def test_avgpool_divisibility_error():
    with pytest.raises(ValueError, match="AvgPool.*8x6.*4"):
        ops.AvgPool(4, (3, 8, 6))


def test_avgpool_gram_is_scaled_identity():
    op = ops.AvgPool(2, (2, 8, 8))
    A = _dense(op)
    assert torch.allclose(A @ A.T, torch.eye(A.shape[0], dtype=F64) / 4, atol=1e-14)


def test_blur_rejects_even_or_oversized_kernel():
    with pytest.raises(ValueError, match="GaussianBlur.*odd"):
        ops.GaussianBlur(1.0, 4, (1, 8, 8))
    with pytest.raises(ValueError, match="GaussianBlur"):
        ops.GaussianBlur(1.0, 9, (1, 8, 8))


@pytest.mark.parametrize("name", ["blur3", "blur5"])
def test_blur_is_circular_correlation_with_its_kernel(name):
    op = FACTORIES[name]()
    x = _rand(op.in_shape, 24)
    k, c = op.kernel[0], op.kernel_size // 2
    want = sum(k[a, b] * x.roll((c - a, c - b), dims=(-2, -1)) for a in range(op.kernel_size)
               for b in range(op.kernel_size))
    assert torch.allclose(op(x), want, atol=1e-13)


def test_blur_adjoint_flips_the_kernel():
    op = ops.GaussianBlur(1.0, 3, (1, 6, 6))
    op.kernel = torch.rand(1, 3, 3, generator=_gen(27), dtype=F64)  # not symmetric
    x, y = _rand(op.in_shape, 28), _rand(op.out_shape, 29)
    assert torch.allclose((op(x) * y).sum(), (x * op.adjoint(y)).sum(), rtol=1e-12)


@pytest.mark.parametrize("name", ["blur3", "blur5"])
def test_blur_fft_eigenvalues(name):
    op = FACTORIES[name]()
    x = _rand(op.in_shape, 25)
    H, W = op.in_shape[1:]
    via_fft = torch.fft.irfft2(op.frequency_response * torch.fft.rfft2(x), s=(H, W))
    assert torch.allclose(op(x), via_fft, atol=1e-13)
    A = _dense(op)
    power = torch.fft.fft2(torch.fft.irfft2(op.frequency_response, s=(H, W))).abs() ** 2
    want = power.flatten().repeat(op.in_shape[0]).sort().values
    assert torch.allclose(torch.linalg.eigvalsh(A @ A.T), want, atol=1e-12)


def test_color_basis_orthonormal():
    Q = ops.COLOR_BASIS
    assert torch.allclose(Q @ Q.T, torch.eye(3, dtype=F64), atol=1e-15)
    assert torch.allclose(Q[0], torch.full((3,), 1 / math.sqrt(3), dtype=F64), atol=1e-15)


def test_color_basis_round_trip_and_grey():
    x = _rand((3, 4, 6), 26)
    c = ops.to_basis(x)
    assert torch.allclose(ops.from_basis(c), x, atol=1e-14)
    op = ops.Grey((3, 4, 6))
    assert torch.allclose(op(x), c[:, :1], atol=1e-14)
    assert torch.allclose(op(x), x.sum(1, keepdim=True) / math.sqrt(3), atol=1e-14)
    with pytest.raises(ValueError, match="to_basis"):
        ops.to_basis(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="Grey.*3 channels"):
        ops.Grey((1, 4, 4))


# --- SVD -----------------------------------------------------------------------------------------

SVD_NAMES = [name for name in NAMES if name != "dense_cg"]  # every operator of the library has one


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("name", SVD_NAMES)
def test_svd_bases_are_orthogonal(name):
    op = FACTORIES[name]()
    svd = op.svd()
    d, m = math.prod(op.in_shape), math.prod(op.out_shape)
    x, y = _rand(op.in_shape, 30), _rand(op.out_shape, 31)
    cx, cy = _rand((d,), 32), _rand((m,), 33)
    assert svd.Vt(x).shape == (3, d) and svd.V(cx).shape == x.shape
    assert svd.Ut(y).shape == (3, m) and svd.U(cy).shape == y.shape
    assert _rel(svd.V(svd.Vt(x)), x) < 1e-12 and _rel(svd.Vt(svd.V(cx)), cx) < 1e-12
    assert _rel(svd.U(svd.Ut(y)), y) < 1e-12 and _rel(svd.Ut(svd.U(cy)), cy) < 1e-12
    assert torch.allclose(svd.Vt(x).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-12)
    assert torch.allclose(svd.Ut(y).norm(dim=1), y.flatten(1).norm(dim=1), rtol=1e-12)


@pytest.mark.parametrize("name", SVD_NAMES)
def test_svd_reconstructs_the_operator(name):
    op = FACTORIES[name]()
    svd = op.svd()
    d, m = math.prod(op.in_shape), math.prod(op.out_shape)
    k = min(d, m)
    assert svd.s.shape == (k,) and svd.s.dtype == F64 and svd.s.device.type == "cpu" and bool((svd.s >= 0).all())
    x = _rand(op.in_shape, 34)
    Ax = op(x)
    scaled = svd.s * svd.Vt(x)[:, :k]
    assert _rel(svd.Ut(Ax)[:, :k], scaled) < 1e-10
    assert float(svd.Ut(Ax)[:, k:].norm()) < 1e-12 * float(Ax.norm())
    assert _rel(svd.U(torch.nn.functional.pad(scaled, (0, m - k))), Ax) < 1e-10


@pytest.mark.parametrize("name", SVD_NAMES)
def test_svd_singular_values_match_dense(name):
    op = FACTORIES[name]()
    want = torch.linalg.svdvals(_dense(op)).sort().values
    assert torch.allclose(op.svd().s.sort().values, want, rtol=0, atol=1e-12 * float(want.max()))


@pytest.mark.parametrize("name", SVD_NAMES)
def test_svd_follows_input_dtype(name):
    op = FACTORIES[name]()
    svd = op.svd()
    x, y = _rand(op.in_shape, 35).float(), _rand(op.out_shape, 36).float()
    for out in (svd.Vt(x), svd.V(svd.Vt(x)), svd.Ut(y), svd.U(svd.Ut(y))):
        assert out.dtype == torch.float32
    assert torch.allclose(svd.V(svd.Vt(x)), x, atol=1e-5)


def test_default_svd_names_the_operator():
    with pytest.raises(NotImplementedError, match="_Dense has no SVD"):
        FACTORIES["dense_cg"]().svd()


def test_avgpool_svd_first_coordinates_are_scaled_block_means():
    op = ops.AvgPool(2, (2, 4, 6))
    x = _rand(op.in_shape, 37)
    m = math.prod(op.out_shape)
    assert torch.allclose(op.svd().Vt(x)[:, :m], 2 * op(x).flatten(1), atol=1e-14)  # block sum / k = k · mean


def test_grey_svd_puts_luminance_first():
    op = ops.Grey((3, 4, 6))
    x = _rand(op.in_shape, 38)
    assert torch.allclose(op.svd().Vt(x), ops.to_basis(x).flatten(1), atol=1e-15)
    assert torch.allclose(op.svd().Vt(x)[:, :24], op(x).flatten(1), atol=1e-14)


@pytest.mark.parametrize("name", ["blur3", "blur5"])
def test_blur_frequency_response_is_real_and_even(name):
    op = FACTORIES[name]()
    C, H, W = op.in_shape
    lam = torch.fft.fft2(torch.fft.irfft2(op.frequency_response, s=(H, W)))  # full grid of the embedded kernel
    assert float(lam.imag.abs().max()) < 1e-15
    reflected = lam.real.flip(-2, -1).roll((1, 1), dims=(-2, -1))  # λ(−ω) at ω, indices mod (H, W)
    assert torch.allclose(reflected, lam.real, atol=1e-15)
    assert torch.allclose(op.svd().s, lam.real.abs().flatten().repeat(C), atol=1e-15)
    assert bool((lam.real < 0).any()) == (name == "blur5")  # blur5 exercises sign(λ) in U


def test_blur_svd_rejects_an_uneven_kernel():
    op = ops.GaussianBlur(1.0, 3, (1, 6, 6))
    op.kernel = torch.rand(1, 3, 3, generator=_gen(39), dtype=F64)
    with pytest.raises(ValueError, match="GaussianBlur.*not even"):
        op.svd()


# --- proximal solves -----------------------------------------------------------------------------

RHOS = [0.7, torch.tensor([0.1, 1.0, 10.0], dtype=F64)]


def _dense_normal_solve(A: torch.Tensor, v: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """(ρ_i I + AᵀA)⁻¹ v_i per sample by dense solves."""
    AtA, eye = A.T @ A, torch.eye(A.shape[1], dtype=F64)
    return torch.stack([torch.linalg.solve(rho[i] * eye + AtA, v[i].flatten()) for i in range(len(v))]).reshape(v.shape)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rho", RHOS, ids=["float", "per_sample"])
def test_normal_solve_matches_dense(name, rho):
    op = FACTORIES[name]()
    v = _rand(op.in_shape, 40)
    assert _rel(op.normal_solve(v, rho), _dense_normal_solve(_dense(op), v, _vec(rho))) < 1e-10


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rho", RHOS, ids=["float", "per_sample"])
def test_prox_matches_dense(name, rho):
    op = FACTORIES[name]()
    A = _dense(op)
    z, y = _rand(op.in_shape, 41), _rand(op.out_shape, 42)
    rhs = (y.flatten(1) @ A).reshape(z.shape) + _vec(rho).reshape(-1, *[1] * len(op.in_shape)) * z
    assert _rel(op.prox(z, y, rho), _dense_normal_solve(A, rhs, _vec(rho))) < 1e-10


def test_prox_solves_the_regularised_least_squares():
    op = ops.AvgPool(2, (1, 4, 4))
    z, y, rho = _rand(op.in_shape, 43), _rand(op.out_shape, 44), 0.3
    x = op.prox(z, y, rho)
    gradient = op.adjoint(op(x) - y) + rho * (x - z)
    assert float(gradient.abs().max()) < 1e-14


def test_normal_solve_checks_its_arguments():
    op = ops.AvgPool(2, (1, 4, 4))
    v = _rand(op.in_shape, 45)
    with pytest.raises(ValueError, match="AvgPool: rho must be > 0"):
        op.normal_solve(v, 0.0)
    with pytest.raises(ValueError, match="AvgPool: rho must be > 0"):
        op.prox(v, op(v), torch.tensor([1.0, -1.0, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="rho must be a float or have shape"):
        op.normal_solve(v, torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match="AvgPool: v must have shape"):
        op.normal_solve(op(v), 1.0)
    with pytest.raises(ValueError, match="AvgPool: y must have shape"):
        op.prox(v, v, 1.0)
