"""Parallel-beam CT (``operators.Radon``): the sparse matrix reproduces scikit-image's ``radon``; Aᵀ is its
exact transpose; CG Gram solves and pseudo-inverse against dense matrices (float64, 12×12); FBP of the
full-view Shepp–Logan phantom; angle checks; the A = P(Λ) T decomposition; autograd; FBP / TV baselines."""
import math

import numpy as np
import pytest
import torch
from skimage.transform import radon

from invsgm import baselines
from invsgm import operators as ops
from invsgm.metrics import psnr
from invsgm.phantoms import phantoms, shepp_logan

F64 = torch.float64
SMALL_ANGLES = [0.0, 30.0, 65.5, 90.0, 151.25]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(shape, seed, batch=3):
    return torch.randn(batch, *shape, generator=_gen(seed), dtype=F64)


def _small() -> ops.Radon:
    return ops.Radon((1, 12, 12), SMALL_ANGLES)


def _dense(op) -> torch.Tensor:
    n = math.prod(op.in_shape)
    return op(torch.eye(n, dtype=F64).reshape(n, *op.in_shape)).reshape(n, -1).T


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def _psnr(a, b) -> float:
    return sum(psnr(a[i].float(), b[i].float()) for i in range(len(a))) / len(a)


@pytest.mark.parametrize("size, angles", [(12, SMALL_ANGLES), (13, SMALL_ANGLES), (16, 7), (33, [12.3, 99.9, 179.5])])
def test_matches_scikit_image_radon(size, angles):
    op = ops.Radon((1, size, size), angles)
    img = torch.rand(1, 1, size, size, generator=_gen(1), dtype=F64)
    ref = radon(img[0, 0].numpy(), theta=op.angles, circle=False).T      # (views, D)
    err = _rel(op(img)[0, 0], torch.from_numpy(ref))
    print(f"\nRadon {size}x{size}, {len(op.angles)} views: detectors {op.detectors} (= ceil(N sqrt 2) "
          f"{math.ceil(size * 2 ** 0.5)}), relative difference to skimage.transform.radon {err:.1e}")
    assert op.detectors == math.ceil(size * math.sqrt(2)) == ref.shape[1]
    assert err < 1e-12


@pytest.mark.parametrize("shape", [(1, 12, 12), (2, 9, 9)])
def test_adjoint_is_exact_transpose(shape):
    op = ops.Radon(shape, SMALL_ANGLES)
    x, y = _rand(op.in_shape, 10), _rand(op.out_shape, 11)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    err = abs(float(lhs - rhs)) / float(op(x).norm() * y.norm())
    print(f"\nRadon {shape}: <Ax, y> vs <x, A^T y> relative {err:.1e}")
    assert err < 1e-10
    if shape[0] == 1:
        n, m = math.prod(op.in_shape), math.prod(op.out_shape)
        rows = op.adjoint(torch.eye(m, dtype=F64).reshape(m, *op.out_shape)).reshape(m, n)  # (Aᵀ e_j)ᵀ = row j of A
        assert torch.equal(rows, _dense(op))


PARAMS = [(1.0, 0.5), (2.5, 1e-3),
          (torch.tensor([0.5, 1.0, 4.0], dtype=F64), torch.tensor([0.1, 2.0, 1e-2], dtype=F64)),
          (1.0, 0.0), (torch.tensor([1.0, 3.0, 0.2], dtype=F64), 0.0)]


@pytest.mark.parametrize("r2, s2", PARAMS)
def test_cg_gram_solve_matches_dense(r2, s2):
    """CG from 0: with s2 = 0 it gives (A Aᵀ)⁺ v for v in A's range."""
    op = _small()
    A = _dense(op)
    r2v, s2v = (torch.as_tensor(t, dtype=F64).expand(3) for t in (r2, s2))
    v = _rand(op.out_shape, 12) if float(s2v.min()) > 0 else op(_rand(op.in_shape, 12))
    AAt, eye = A @ A.T, torch.eye(A.shape[0], dtype=F64)
    want = torch.stack([torch.linalg.pinv(r2v[i] * AAt + s2v[i] * eye, hermitian=True) @ v[i].flatten()
                        for i in range(3)]).reshape(v.shape)
    got = op.gram_solve(v, r2, s2)
    resid = r2v.reshape(-1, 1, 1, 1) * op(op.adjoint(got)) + s2v.reshape(-1, 1, 1, 1) * got - v
    image_err = _rel(op.adjoint(got), op.adjoint(want))
    print(f"\nRadon 12x12 CG gram solve r2={r2}, s2={s2}: relative residual {_rel(resid + v, v):.1e}, "
          f"relative error to dense {_rel(got, want):.1e} (after A^T: {image_err:.1e})")
    assert _rel(resid + v, v) < 1e-10
    # s2 = 0: A Aᵀ on its range has condition number 2e7 here (rays through the corners weigh ~1e-3), so the
    # solutions of CG and of the dense pseudo-inverse only agree to about that times eps
    tol = 1e-10 if float(s2v.min()) > 0 else 1e-8
    assert _rel(got, want) < tol and image_err < tol


def test_pinv_and_prox():
    op = _small()
    A = _dense(op)
    y = op(_rand(op.in_shape, 13))
    x = op.pinv(y)
    want = (y.flatten(1) @ torch.linalg.pinv(A).T).reshape(x.shape)
    assert _rel(op(x), y) < 1e-10 and _rel(x, want) < 1e-10
    z, y2, rho = _rand(op.in_shape, 14), _rand(op.out_shape, 15), 0.7
    prox = torch.linalg.solve(rho * torch.eye(A.shape[1], dtype=F64) + A.T @ A,
                              (y2.flatten(1) @ A + rho * z.flatten(1)).T).T
    assert _rel(op.prox(z, y2, rho).flatten(1), prox) < 1e-10


def test_cg_residuals_at_64(capsys):
    """The stated behaviour at 64×64, 23 views (‖A‖² ≈ 1.4e3): CG reaches its 100·eps tolerance for s² ≳ 1 and
    stops at 500 iterations below (A Aᵀ is ill-conditioned: its non-zero eigenvalues span 1.7e-5 … 1.4e3)."""
    op = ops.Radon((1, 64, 64), 23)
    v = op(phantoms(2, split="test").images.double())
    for s2, bound in ((100.0, 1e-12), (1.0, 1e-12), (1e-2, 1e-3)):
        s = op.gram_solve(v, 1.0, s2)
        res = _rel(op(op.adjoint(s)) + s2 * s - v + v, v)
        print(f"\nRadon 64x64, 23 views: CG gram solve (A A^T + {s2:g} I), y = A x: relative residual {res:.1e}")
        assert res < bound


def test_svd_raises_naming_the_operator():
    with pytest.raises(NotImplementedError, match="DDRM needs an SVD; the Radon transform has none here"):
        _small().svd()


@pytest.mark.parametrize("angles, match", [([], "empty"), ([0.0, 10.0, 10.0], "angle 10° appears"),
                                           ([0.0, 180.0], "angle 180° is outside"), ([-1.0, 5.0], "angle -1° is"),
                                           ([float("nan")], "angle nan°"), (0, "number of views"),
                                           (181, "number of views"), ([[0.0, 10.0], [10.0, 20.0]], "angle 10°")])
def test_bad_angle_lists(angles, match):
    with pytest.raises(ValueError, match=match):
        ops.Radon((1, 12, 12), angles)


def test_views_of_the_full_grid():
    op = ops.Radon((1, 16, 16), 23)
    assert len(op.angles) == 23 and op.out_shape == (1, 23, ops.detector_count(16))
    assert np.all(np.diff(op.angles) > 0) and op.angles[0] == 0 and op.angles[-1] < 180
    assert np.allclose(ops.Radon((1, 16, 16), 45).angles, np.arange(0, 180, 4))
    assert ops.Radon((1, 16, 16), 45)._parts is ops.Radon((1, 16, 16), list(range(0, 180, 4)))._parts  # cached


def test_fbp_of_full_view_shepp_logan():
    x = shepp_logan(64)[None].double()
    op = ops.Radon((1, 64, 64), 180)
    rec = op.fbp(op(x))
    value = _psnr(rec.clamp(0, 1), x)
    print(f"\nFBP (ramp) of the 180-view sinogram of the 64x64 Shepp-Logan phantom: PSNR {value:.2f} dB")
    assert value >= 28.0


def test_decomposition():
    op = ops.Radon((1, 16, 16), 23)
    assert isinstance(op, ops.Decomposed) and not op.exact_inverse
    assert op.transform_shape == (1, 180, ops.detector_count(16))
    x, y, z = _rand(op.in_shape, 30), _rand(op.out_shape, 31), _rand(op.transform_shape, 32)
    assert torch.allclose(op.subsample(op.transform(x)), op(x), atol=1e-12)
    assert torch.allclose((op.subsample(z) * y).sum(), (z * op.embed(y)).sum(), rtol=1e-12)
    assert torch.equal(op.subsample(op.embed(y)), y)
    x0 = shepp_logan(64)[None].double()
    big = ops.Radon((1, 64, 64), 23)
    inv = _psnr(big.inverse_transform(big.transform(x0)).clamp(0, 1), x0)
    assert torch.equal(big.consistent(x0, big(x0), 1.0), x0)           # x + T⁻¹(0): unchanged when A x = y
    start = torch.full_like(x0, 0.2)
    after = big.consistent(start, big(x0), 1.0)
    before_fit, after_fit = _rel(big(start), big(x0)), _rel(big(after), big(x0))
    print(f"\nRadon decomposition (64x64, 23 of 180 views): T^-1 T x (FBP) PSNR {inv:.2f} dB; one consistency step "
          f"(lambda = 1) from a flat image: data misfit {before_fit:.3f} -> {after_fit:.3f} (relative)")
    assert after_fit < before_fit
    assert inv >= 28.0
    off_grid = ops.Radon((1, 16, 16), [0.5, 10.0])
    with pytest.raises(ValueError, match="not all on the full-angle grid"):
        off_grid.transform(x)


def test_batches_channels_dtype_and_autograd():
    op = ops.Radon((2, 12, 12), SMALL_ANGLES)
    x = _rand(op.in_shape, 40, batch=4)
    y = op(x)
    assert y.shape == (4, *op.out_shape)
    assert torch.allclose(y[:, 1:], ops.Radon((1, 12, 12), SMALL_ANGLES)(x[:, 1:]), atol=1e-14)
    assert op(x.float()).dtype == torch.float32 and torch.allclose(op(x.float()).double(), y, atol=1e-4)
    xg = x.clone().requires_grad_()
    op(xg).pow(2).sum().backward()
    assert torch.allclose(xg.grad, 2 * op.adjoint(y), atol=1e-12)
    small = _small()
    xs = _rand(small.in_shape, 41, batch=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: small(t), (xs,))
    assert torch.autograd.gradgradcheck(lambda t: small(t).pow(2).sum(), (xs,))
    img = op.to_image(y)
    assert img.shape == y.shape and torch.allclose(img.abs().flatten(1).amax(1), torch.ones(4, dtype=F64))


def test_baselines_on_phantoms():
    x = phantoms(4, split="test").images.double()
    op = ops.Radon((1, 64, 64), 23)
    y0 = op(x)
    y = y0 + 0.01 * float(y0.abs().max()) * torch.randn(y0.shape, generator=_gen(0), dtype=F64)
    fbp, tv = baselines.ct_fbp(op, y), baselines.ct_tv(op, y)
    p_fbp, p_tv = _psnr(fbp, x), _psnr(tv, x)
    print(f"\nCT 23 views, 1 % noise, phantoms: FBP {p_fbp:.2f} dB, TV (FISTA, 100 it., weight 2e-4) {p_tv:.2f} dB")
    assert fbp.shape == x.shape and p_fbp > 20 and p_tv > p_fbp + 3


def test_solvers_accept_the_operator():
    """DDRM refuses the Radon transform (no SVD) with a clear error; PiGDM-guided PC (CG Gram solves) runs and
    its noisy-measurement samples fit y better than prior draws do."""
    from invsgm.guidance import PiGDM
    from invsgm.measurement import LinearMeasurement
    from invsgm.priors import GaussianMixture
    from invsgm.sde import VPSDE
    from invsgm.solve import solve
    from invsgm.solvers import DDRM, PC

    op = ops.Radon((1, 8, 8), 6)
    prior = GaussianMixture(torch.zeros(1, 64, dtype=F64), None, 1.0)
    x = prior.sample(1, _gen(4)).reshape(1, 1, 8, 8)
    meas = LinearMeasurement(op, 0.5)
    y = op(x)
    with pytest.raises(ValueError, match="DDRM needs an operator with an SVD.*Radon has none"):
        solve(meas, y, prior, DDRM(), sde=VPSDE(), n=2, steps=3, seed=0)
    sol = solve(meas, y, prior, PC(guidance=PiGDM(jacobian="gaussian")), sde=VPSDE(), n=8, steps=30, seed=1)
    fit = _rel(op(sol.samples[0].double()), y.expand(8, *op.out_shape))
    free = _rel(op(prior.sample(8, _gen(5)).reshape(8, 1, 8, 8)), y.expand(8, *op.out_shape))
    print(f"\nRadon 8x8, 6 views, PiGDM-guided PC on a Gaussian prior: relative |A x - y| {fit:.3f} "
          f"(prior draws: {free:.3f})")
    assert fit < 0.5 * free
