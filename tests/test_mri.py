"""Single-coil Cartesian MRI (``operators.MRI``): adjointness, exact Gram solves, pseudo-inverse and SVD
against dense matrices (float64, 8×8 and odd sizes), the partial isometry of conjugate-symmetric masks,
fastMRI-style line masks (acceleration, centre band, seeds), the A = P(Λ) T decomposition and the
zero-filled / TV baselines."""
import math

import pytest
import torch

from invsgm import baselines
from invsgm import operators as ops
from invsgm.metrics import psnr
from invsgm.phantoms import phantoms

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(shape, seed, batch=3):
    return torch.randn(batch, *shape, generator=_gen(seed), dtype=F64)


def _random_hw_mask() -> torch.Tensor:
    return torch.rand(7, 9, generator=_gen(5)) < 0.5


FACTORIES = {
    "random4": lambda: ops.MRI((1, 8, 8), 4),
    "equispaced2": lambda: ops.MRI((1, 8, 8), 2, pattern="equispaced"),
    "random2_odd": lambda: ops.MRI((1, 7, 9), 2, center_fraction=0.2, seed=3),
    "fastmri_random2": lambda: ops.MRI((1, 8, 8), 2, symmetric=False, seed=1),
    "fastmri_equispaced2": lambda: ops.MRI((1, 8, 10), 2, pattern="equispaced", symmetric=False),
    "pixel_mask": lambda: ops.MRI((1, 7, 9), mask=_random_hw_mask()),
    "full": lambda: ops.MRI((1, 6, 6), 1),
}
NAMES = list(FACTORIES)


def _dense(op) -> torch.Tensor:
    n = math.prod(op.in_shape)
    return op(torch.eye(n, dtype=F64).reshape(n, *op.in_shape)).reshape(n, -1).T


def _dense_gram_solve(A, v, r2, s2):
    AAt, eye = A @ A.T, torch.eye(A.shape[0], dtype=F64)
    rows = [torch.linalg.pinv(r2[i] * AAt + s2[i] * eye, hermitian=True) @ v[i].flatten() for i in range(len(v))]
    return torch.stack(rows).reshape(v.shape)


PARAMS = [(1.0, 0.5), (2.5, 1e-3),
          (torch.tensor([0.5, 1.0, 4.0], dtype=F64), torch.tensor([0.1, 2.0, 1e-2], dtype=F64)),
          (1.0, 0.0), (torch.tensor([1.0, 3.0, 0.2], dtype=F64), 0.0)]


def _vec(value):
    return torch.as_tensor(value, dtype=F64).expand(3)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", NAMES)
def test_adjointness(name):
    op = FACTORIES[name]()
    x, y = _rand(op.in_shape, 10), _rand(op.out_shape, 11)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    err = abs(float(lhs - rhs)) / float(op(x).norm() * y.norm())
    print(f"\nMRI {name}: <Ax, y> vs <x, A^T y> relative {err:.1e}")
    assert err < 1e-10


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r2, s2", PARAMS)
def test_gram_solve_matches_dense(name, r2, s2):
    op = FACTORIES[name]()
    v = _rand(op.out_shape, 12)
    want = _dense_gram_solve(_dense(op), v, _vec(r2), _vec(s2))
    assert _rel(op.gram_solve(v, r2, s2), want) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_pinv_prox_and_normal_solve_match_dense(name):
    op = FACTORIES[name]()
    A = _dense(op)
    y = _rand(op.out_shape, 14)
    want = (y.flatten(1) @ torch.linalg.pinv(A).T).reshape(-1, *op.in_shape)
    assert _rel(op.pinv(y), want) < 1e-10
    z, rho = _rand(op.in_shape, 15), 0.3
    n = A.shape[1]
    prox = torch.linalg.solve(rho * torch.eye(n, dtype=F64) + A.T @ A, (y.flatten(1) @ A + rho * z.flatten(1)).T).T
    assert _rel(op.prox(z, y, rho).flatten(1), prox) < 1e-10
    normal = torch.linalg.solve(rho * torch.eye(n, dtype=F64) + A.T @ A, z.flatten(1).T).T
    assert _rel(op.normal_solve(z, rho).flatten(1), normal) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_partial_isometry_flag_and_singular_values(name):
    op = FACTORIES[name]()
    A = _dense(op)
    isometry = torch.allclose(A @ A.T @ A, A, atol=1e-12)
    assert op.partial_isometry == isometry
    sv = torch.linalg.svdvals(A)
    expected = {0.0, 1.0} if isometry else {0.0, 2 ** -0.5, 1.0}
    assert all(min(abs(float(s) - e) for e in expected) < 1e-12 for s in sv)


def test_partial_isometry_flags():
    assert {name: FACTORIES[name]().partial_isometry for name in NAMES} == {
        "random4": True, "equispaced2": True, "random2_odd": True, "fastmri_random2": False,
        "fastmri_equispaced2": False, "pixel_mask": False, "full": True}


def test_symmetric_masks_are_partial_isometries():
    op = ops.MRI((1, 64, 64), 4, seed=7)
    assert op.partial_isometry
    x = _rand(op.in_shape, 20, batch=2)
    y = op(x)
    err = _rel(op(op.adjoint(y)), y)                     # A Aᵀ = I on the range
    print(f"\nMRI 64x64 R=4: |A A^T y - y| / |y| = {err:.1e} for y = A x; kept fraction {op.kept_fraction:.4f}")
    assert err < 1e-13
    assert _rel(op.pinv(y), op.adjoint(y)) < 1e-13        # A⁺ = Aᵀ
    assert not ops.MRI((1, 64, 64), 4, symmetric=False).partial_isometry


@pytest.mark.parametrize("name", NAMES)
def test_svd(name):
    op = FACTORIES[name]()
    svd = op.svd()
    n, m = math.prod(op.in_shape), math.prod(op.out_shape)
    V = svd.V(torch.eye(n, dtype=F64)).reshape(n, n).T          # columns v_j
    U = svd.U(torch.eye(m, dtype=F64)).reshape(m, m).T
    assert torch.allclose(V.T @ V, torch.eye(n, dtype=F64), atol=1e-12)
    assert torch.allclose(U.T @ U, torch.eye(m, dtype=F64), atol=1e-12)
    x, y = _rand(op.in_shape, 21), _rand(op.out_shape, 22)
    assert torch.allclose(svd.V(svd.Vt(x)), x, atol=1e-12) and torch.allclose(svd.U(svd.Ut(y)), y, atol=1e-12)
    k = len(svd.s)
    assert k == min(n, m)
    Ax = svd.Ut(op(x))
    assert torch.allclose(Ax[:, :k], svd.s * svd.Vt(x)[:, :k], atol=1e-12)
    assert torch.allclose(Ax[:, k:], torch.zeros_like(Ax[:, k:]), atol=1e-12)
    assert int((svd.s > 0.5).sum()) == int(op.mask.sum()) if op.partial_isometry else True


@pytest.mark.parametrize("pattern", ["random", "equispaced"])
@pytest.mark.parametrize("R", [4, 8])
def test_line_masks(pattern, R):
    op = ops.MRI((1, 64, 64), R, pattern=pattern, seed=0)
    cols = op.mask[0]
    freq = torch.fft.fftfreq(64) * 64
    print(f"\nMRI mask {pattern} R={R}: {int(cols.sum())} of 64 columns, kept fraction {op.kept_fraction:.4f} "
          f"(1/R = {1 / R:.4f}), centre |f| <= 2 kept: {bool(cols[freq.abs() <= 2].all())}")
    assert int(cols.sum()) == 64 // R and op.kept_fraction == pytest.approx(1 / R)
    assert bool(cols[freq.abs() <= 2].all())                   # round(64 · 0.08) = 5 central columns
    assert torch.equal(op.mask, op.mask[:1].expand(64, 64))     # whole phase-encode columns
    assert torch.equal(cols, torch.roll(cols.flip(0), 1))       # conjugate-symmetric
    assert torch.equal(op.mask, ops.MRI((1, 64, 64), R, pattern=pattern, seed=0).mask)   # seeded
    other = ops.MRI((1, 64, 64), R, pattern=pattern, seed=1).mask
    assert torch.equal(op.mask, other) == (pattern == "equispaced")
    assert torch.equal(op.mask_centered, torch.fft.fftshift(op.mask))


@pytest.mark.parametrize("W", [16, 31, 64, 96, 320])
@pytest.mark.parametrize("R", [4, 8])
def test_mask_counts(W, R):
    for symmetric in (True, False):
        cols = ops.line_mask(W, R, 0.08, "random", seed=2, symmetric=symmetric)
        assert abs(int(cols.sum()) - round(W / R)) <= (1 if symmetric and W % 2 else 0)
        n_c = max(1, round(W * 0.08))
        centred = torch.fft.fftshift(cols)
        start = (W - n_c + 1) // 2
        assert bool(centred[start:start + n_c].all())           # fastMRI's centre band (and more when symmetric)


def test_bad_arguments():
    with pytest.raises(ValueError, match="acceleration"):
        ops.MRI((1, 8, 8), 0.5)
    with pytest.raises(ValueError, match="pattern"):
        ops.MRI((1, 8, 8), 4, pattern="radial")
    with pytest.raises(ValueError, match="center_fraction"):
        ops.MRI((1, 8, 8), 4, center_fraction=0)
    with pytest.raises(ValueError, match="grey"):
        ops.MRI((3, 8, 8), 4)
    with pytest.raises(ValueError, match="mask"):
        ops.MRI((1, 8, 8), mask=torch.ones(8, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"MRI: x must have shape \(B, 1, 8, 8\)"):
        ops.MRI((1, 8, 8), 4)(torch.zeros(2, 1, 8, 9))
    with pytest.raises(ValueError, match="MRI"):
        ops.MRI((1, 8, 8), 4).adjoint(torch.zeros(2, 1, 8, 8))


def test_decomposition():
    op = ops.MRI((1, 16, 16), 4, seed=3)
    assert isinstance(op, ops.Decomposed) and op.exact_inverse and op.transform_shape == (2, 16, 16)
    x, y, z = _rand(op.in_shape, 30), _rand(op.out_shape, 31), _rand(op.transform_shape, 32)
    assert torch.allclose(op.subsample(op.transform(x)), op(x), atol=1e-14)
    assert torch.allclose(op.inverse_transform(op.transform(x)), x, atol=1e-13)
    assert torch.allclose((op.subsample(z) * y).sum(), (z * op.embed(y)).sum(), rtol=1e-12)
    x0, x = _rand(op.in_shape, 33), _rand(op.in_shape, 34)
    y0 = op(x0)
    assert torch.allclose(op.consistent(x, y0, 1.0), x + op.pinv(y0 - op(x)), atol=1e-13)
    assert torch.allclose(op(op.consistent(x, y0, 1.0)), y0, atol=1e-13)
    assert torch.allclose(op.consistent(x, y0, 0.0), x, atol=1e-13)
    half = op.consistent(x, y0, torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    assert torch.allclose(op(half[1:2]), (op(x[1:2]) + y0[1:2]) / 2, atol=1e-13)


def test_zero_filled_and_float32():
    op = ops.MRI((1, 16, 16), 1)
    x = _rand(op.in_shape, 40).abs()
    assert torch.allclose(op.zero_filled(op(x)), x, atol=1e-13)
    op = ops.MRI((1, 16, 16), 4)
    x = _rand(op.in_shape, 41)
    assert torch.allclose(op.to_image(op(x)), op.adjoint(op(x)).abs(), atol=1e-13)
    xf = x.float().requires_grad_()
    y = op(xf)
    assert y.dtype == torch.float32 and op.adjoint(y).dtype == torch.float32
    y.pow(2).sum().backward()
    assert torch.allclose(xf.grad.double(), 2 * op.adjoint(op(x)), atol=1e-5)


def test_baselines_on_phantoms():
    x = phantoms(4, split="test").images.double()
    op = ops.MRI((1, 64, 64), 4)
    y = op.observe(x, 0.01, _gen(0))
    zf, tv = baselines.mri_zero_filled(op, y), baselines.mri_tv(op, y)
    p_zf = sum(psnr(zf[i].float(), x[i].float()) for i in range(4)) / 4
    p_tv = sum(psnr(tv[i].float(), x[i].float()) for i in range(4)) / 4
    print(f"\nMRI R=4 phantoms, sigma_y=0.01: zero-filled {p_zf:.2f} dB, TV (FISTA, 50 it., weight 0.01) {p_tv:.2f} dB")
    assert zf.shape == x.shape and p_tv > p_zf + 2


def test_solvers_accept_the_operator():
    """DDRM (through ``svd``) and RePaint / replacement (through ``partial_isometry``) on an image-shaped
    Gaussian prior: noiseless samples reproduce y."""
    from invsgm.measurement import LinearMeasurement
    from invsgm.priors import GaussianMixture
    from invsgm.sde import VPSDE
    from invsgm.solve import solve
    from invsgm.solvers import DDRM, RePaint

    op = ops.MRI((1, 8, 8), 4)
    prior = GaussianMixture(torch.zeros(1, 64, dtype=F64), None, 1.0)
    x = prior.sample(2, _gen(4)).reshape(2, 1, 8, 8)
    y = op(x)
    for solver in (DDRM(), RePaint(jump_length=2, resample=2)):
        sol = solve(LinearMeasurement(op, 0.0), y, prior, solver, sde=VPSDE(), n=4, steps=10, seed=4)
        resid = _rel(op(sol.samples.flatten(0, 1).double()), y.repeat_interleave(4, 0))
        print(f"\nMRI 8x8 R=4, {type(solver).__name__} on a Gaussian prior: relative |A x - y| {resid:.1e}")
        assert resid < 1e-5
