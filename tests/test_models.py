"""Score networks: U-Net shapes and variants, FIR resampling, MLP training, official layout."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from invsgm.denoisers import score_sde_denoiser
from invsgm.models import MLPScoreNet, UNet, parameter_count, unet_cpu_small, unet_gpu
from invsgm.models import layers
from invsgm.sde import SubVPSDE, VESDE, VPSDE

INTEROP = Path(os.environ.get("INVSGM_INTEROP", Path(__file__).resolve().parents[2] / "shared" / "interop"))
TINY = dict(nf=8, num_res_blocks=1, dropout=0.0)



def _labels(b: int) -> torch.Tensor:
    return torch.linspace(0.05, 5.0, b)


# --- U-Net shapes and variants -------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size, ch_mult, attn", [(16, (1, 2), (8,)), (28, (1, 2, 2), (7,)),
                                                 (32, (1, 2, 2), (8,)), (64, (1, 1, 2, 2), (8,))])
def test_unet_output_shape(channels, size, ch_mult, attn):
    net = UNet(in_channels=channels, image_size=size, ch_mult=ch_mult, attn_resolutions=attn, **TINY).eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        out = net(x, _labels(2))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("resblock_type", ["ddpm", "biggan"])
@pytest.mark.parametrize("embedding_type", ["fourier", "positional"])
@pytest.mark.parametrize("fir", [True, False])
def test_unet_block_variants(resblock_type, embedding_type, fir):
    net = UNet(in_channels=3, image_size=16, ch_mult=(1, 2), attn_resolutions=(8,), resblock_type=resblock_type,
               embedding_type=embedding_type, fir=fir, init_scale=1.0, **TINY)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = net(x, _labels(2) * (1.0 if embedding_type == "fourier" else 100.0))
    out.square().mean().backward()
    assert out.shape == x.shape and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("progressive", ["none", "output_skip", "residual"])
@pytest.mark.parametrize("progressive_input, combine", [("none", "sum"), ("input_skip", "sum"),
                                                        ("input_skip", "cat"), ("residual", "sum")])
@pytest.mark.parametrize("resblock_type, fir", [("biggan", True), ("ddpm", False)])
def test_unet_progressive_modes(progressive, progressive_input, combine, resblock_type, fir):
    net = UNet(in_channels=1, image_size=16, ch_mult=(1, 2, 2), attn_resolutions=(), resblock_type=resblock_type,
               fir=fir, progressive=progressive, progressive_input=progressive_input,
               progressive_combine=combine, **TINY).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        out = net(x, _labels(2))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_unet_unconditional_ignores_label():
    net = UNet(in_channels=1, image_size=16, ch_mult=(1, 2), conditional=False, init_scale=1.0, **TINY).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x, _labels(2)), net(x, 3 * _labels(2)))


def test_unet_label_conditions_output():
    net = UNet(in_channels=1, image_size=16, ch_mult=(1, 2), init_scale=1.0, **TINY).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert (net(x, _labels(2)) - net(x, 3 * _labels(2))).abs().max() > 1e-4


def test_unet_deterministic_under_seed():
    def build(seed):
        torch.manual_seed(seed)
        return UNet(in_channels=3, image_size=16, ch_mult=(1, 2), init_scale=1.0, **TINY).eval()

    a, b, c = build(3), build(3), build(4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(a(x, _labels(2)), b(x, _labels(2)))
        assert not torch.equal(a(x, _labels(2)), c(x, _labels(2)))


def test_default_init_variance():
    w = layers.default_init((256, 128, 3, 3))
    fan_avg = 0.5 * (256 + 128) * 9
    assert w.abs().max() <= math.sqrt(3 / fan_avg)
    assert abs(w.var().item() * fan_avg - 1.0) < 0.02  # variance of U(−a, a) is a²/3 = 1/fan_avg


# --- argument checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    (dict(resblock_type="resnet"), "resblock_type"),
    (dict(embedding_type="learned"), "embedding_type"),
    (dict(progressive="skip"), "progressive"),
    (dict(progressive_input="skip"), "progressive_input"),
    (dict(progressive_combine="max"), "progressive_combine"),
    (dict(nonlinearity="tanh"), "nonlinearity"),
    (dict(attention_type="legacy"), "attention_type"),
    (dict(image_size=30, ch_mult=(1, 2, 2)), "image_size"),
    (dict(image_size=0), "image_size"),
    (dict(nf=0), "nf"),
    (dict(nf=36, ch_mult=(1, 2, 4)), "nf"),  # 36 · 4 = 144 channels: 32 groups do not divide them
    (dict(num_res_blocks=0), "num_res_blocks"),
    (dict(in_channels=0), "in_channels"),
    (dict(out_channels=1), "out_channels"),
    (dict(dropout=1.5), "dropout"),
    (dict(fir_kernel=[[1, 2, 3]]), "fir_kernel"),
])
def test_unet_bad_arguments(kwargs, name):
    base = dict(in_channels=3, image_size=16, ch_mult=(1, 2), **TINY)
    with pytest.raises(ValueError, match=name):
        UNet(**{**base, **kwargs})


def test_unet_bad_inputs():
    net = UNet(in_channels=3, image_size=16, ch_mult=(1, 2), **TINY)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 16, 16\), got shape \(2, 1, 16, 16\)"):
        net(torch.randn(2, 1, 16, 16), _labels(2))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 32, 32\)"):
        net(torch.randn(2, 3, 32, 32), _labels(2))
    with pytest.raises(ValueError, match="noise_label"):
        net(torch.randn(2, 3, 16, 16), _labels(3))


# --- FIR resampling ------------------------------------------------------------------------------

def _upfirdn2d_reference(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """upfirdn2d by its definition, pixel by pixel: y[i, j] = Σ_ab x̃[i·down + a, j·down + b] k[−a, −b]."""
    h, w = x.shape
    kh = k.shape[0]
    upsampled = np.zeros((h * up, w * up))
    upsampled[::up, ::up] = x
    padded = np.pad(upsampled, [pad, pad])
    out_h = (h * up + sum(pad) - kh) // down + 1
    out_w = (w * up + sum(pad) - kh) // down + 1
    y = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            for a in range(kh):
                for b in range(kh):
                    y[i, j] += padded[i * down + a, j * down + b] * k[kh - 1 - a, kh - 1 - b]
    return y


@pytest.mark.parametrize("up, down, pad", [(1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (0, 3))])
def test_upfirdn2d_matches_definition(up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 6, 7, generator=g, dtype=torch.float64)
    k = torch.rand(4, 4, generator=g, dtype=torch.float64)  # asymmetric: checks the kernel flip
    ours = layers.upfirdn2d(x, k, up=up, down=down, pad=pad)[0, 0].numpy()
    np.testing.assert_allclose(ours, _upfirdn2d_reference(x[0, 0].numpy(), k.numpy(), up, down, pad), atol=1e-12)


def test_fir_resampling_matches_definition_and_keeps_constants():
    k = layers.fir_kernel_2d((1, 3, 3, 1)).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    up = layers.upsample_2d(x, k)
    down = layers.downsample_2d(x, k)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(up[1, 2].numpy(), _upfirdn2d_reference(x[1, 2].numpy(), 4 * k.numpy(), 2, 1, (2, 1)))
    np.testing.assert_allclose(down[0, 1].numpy(), _upfirdn2d_reference(x[0, 1].numpy(), k.numpy(), 1, 2, (1, 1)))
    const = torch.full((1, 1, 8, 8), 2.5, dtype=torch.float64)  # zero padding only touches the border pixels
    assert torch.allclose(layers.downsample_2d(const, k)[..., 1:-1, 1:-1], torch.tensor(2.5, dtype=torch.float64))
    assert torch.allclose(layers.upsample_2d(const, k)[..., 2:-2, 2:-2], torch.tensor(2.5, dtype=torch.float64))


def test_fir_up_then_down_is_near_identity_on_smooth_images():
    k = layers.fir_kernel_2d((1, 3, 3, 1))
    i = torch.arange(32.0)
    x = (torch.sin(2 * math.pi * i / 32)[:, None] * torch.cos(2 * math.pi * i / 32)[None, :])[None, None]
    err = (layers.downsample_2d(layers.upsample_2d(x, k), k) - x)[..., 2:-2, 2:-2].abs().max().item()
    print(f"\nFIR up→down on a 1/32-cycle image: max interior error {err:.4f}")
    assert err < 0.03


@pytest.mark.parametrize("direction", ["up", "down"])
def test_fused_fir_conv_equals_resample_then_conv(direction):
    """Inside the image, the fused FIR conv = FIR resampling and a same-padded 3×3 conv, in either order."""
    torch.manual_seed(0)
    conv = layers.FIRConv2d(3, 5, up=direction == "up", down=direction == "down").double()
    nn.init.normal_(conv.bias)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    k = conv.fir
    fused = conv(x)
    same = lambda h: nn.functional.conv2d(h, conv.weight, conv.bias, padding=1)  # noqa: E731
    ref = same(layers.upsample_2d(x, k)) if direction == "up" else layers.downsample_2d(same(x), k)
    crop = 3 if direction == "up" else 2
    assert fused.shape == ref.shape
    torch.testing.assert_close(fused[..., crop:-crop, crop:-crop], ref[..., crop:-crop, crop:-crop])


# --- presets -------------------------------------------------------------------------------------

def test_preset_parameter_counts():
    small = unet_cpu_small()
    with torch.device("meta"):  # shapes only: no memory, no init cost
        big = unet_gpu()
    n_small, n_big = parameter_count(small), parameter_count(big)
    print(f"\nunet_cpu_small: {n_small:,} parameters; unet_gpu: {n_big:,} parameters")
    assert 1_000_000 <= n_small <= 2_000_000
    assert n_big > 30_000_000
    # attention only in the 8 px bottleneck (the official middle block), none at 32 or 16 px
    assert not any(small.attn_levels) and sum(isinstance(m, layers.AttnBlock) for m in small.modules()) == 1
    assert parameter_count(unet_cpu_small(in_channels=1, image_size=28)) < 2_000_000


def test_cpu_small_forward_time():
    torch.manual_seed(0)
    net = unet_cpu_small().eval()
    x, labels = torch.randn(64, 3, 32, 32), torch.full((64,), 0.5)
    seconds = {}
    with torch.no_grad():
        net(x[:2], labels[:2])  # warm-up
        for threads in (2, 1):
            torch.set_num_threads(threads)
            start = time.perf_counter()
            out = net(x, labels)
            seconds[threads] = time.perf_counter() - start
    print(f"\nunet_cpu_small forward, batch 64 × 3 × 32 × 32: {seconds[2]:.3f} s on 2 threads, "
          f"{seconds[1]:.3f} s on 1 thread")
    assert out.shape == x.shape


# --- MLP -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("embedding", ["fourier", "positional"])
def test_mlp_shapes_and_conditioning(embedding):
    net = MLPScoreNet(5, hidden=32, depth=2, embedding_dim=16, embedding=embedding)
    x = torch.randn(7, 5)
    out = net(x, torch.linspace(0.1, 10.0, 7))
    assert out.shape == (7, 5)
    assert (out - net(x, torch.linspace(0.2, 20.0, 7))).abs().max() > 1e-6
    assert net(x, torch.tensor(0.3)).shape == (7, 5)


@pytest.mark.parametrize("kwargs, name", [(dict(dim=0), "dim"), (dict(hidden=0), "hidden"), (dict(depth=0), "depth"),
                                          (dict(embedding="learned"), "embedding"),
                                          (dict(embedding_dim=7), "embedding_dim")])
def test_mlp_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MLPScoreNet(**{"dim": 2, **kwargs})
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        MLPScoreNet(2)(torch.randn(4, 3), torch.ones(4))


@pytest.mark.parametrize("sde, embedding", [(VESDE(0.01, 10.0), "fourier"), (VPSDE(), "positional")])
def test_mlp_learns_mixture_score(sde, embedding):
    """DSM on a 4-mode 2-D mixture: the σ-scaled score error at mid times falls well below that of s = 0."""
    from invsgm.fit import fit_score_model
    from invsgm.priors import GaussianMixture

    angles = torch.arange(4) * math.pi / 2
    mixture = GaussianMixture(2.0 * torch.stack([angles.cos(), angles.sin()], 1), covariances=0.05)
    torch.manual_seed(0)
    model = score_sde_denoiser(MLPScoreNet(2, embedding=embedding), sde)
    g = torch.Generator().manual_seed(1)
    result = fit_score_model(model, sde, lambda n, gen: mixture.sample(n, gen).float(), steps=1000, batch_size=256,
                             lr=2e-3, ema_decay=0.99, warmup=100, cosine_decay=True, generator=g)
    errors = []
    for t in (0.3, 0.6):
        xt = mixture.marginal(sde, t).sample(2000, g).float()
        exact = mixture.score(xt, t, sde).float()
        with torch.no_grad():
            diff = result.ema_model(xt, t) - exact
        errors.append((diff.pow(2).sum(1).mean() / exact.pow(2).sum(1).mean()).sqrt().item())
    print(f"\nMLP ({embedding}) DSM fit, 1000 steps in {result.wall_time:.1f} s: relative score error at t=0.3, 0.6: "
          f"{errors[0]:.3f}, {errors[1]:.3f}")
    assert max(errors) < 0.25


# --- official score_sde checkpoints --------------------------------------------------------------

def _unet_from_card(card: dict) -> UNet:
    m, data = card["model"], card["data"]
    keys = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resblock_type", "embedding_type",
            "fourier_scale", "fir", "fir_kernel", "resamp_with_conv", "skip_rescale", "init_scale", "progressive",
            "progressive_input", "progressive_combine", "conditional", "nonlinearity", "attention_type")
    return UNet(in_channels=data["num_channels"], image_size=data["image_size"], **{k: m[k] for k in keys})


@pytest.mark.parametrize("folder", ["ve_cifar10_ncsnpp_continuous", "vp_cifar10_ddpmpp_continuous",
                                    "ve_ffhq_256_ncsnpp_continuous"])
def test_official_layout_matches_reference(folder):
    root = INTEROP / folder
    if not root.is_dir():
        pytest.skip(f"reference folder {root} is absent")
    from safetensors.torch import load_file

    card = json.loads((root / "card.json").read_text())
    net = _unet_from_card(card).eval()
    ckpt = torch.load(root / "checkpoint.pth", map_location="cpu", weights_only=True)
    # the raw weights load by name (the official wrapper's ``module.`` prefix and unused σ table dropped) ...
    state = {k.removeprefix("module."): v for k, v in ckpt["model"].items() if k != "module.sigmas"}
    net.load_state_dict(state, strict=True)
    # ... and the EMA weights, used for sampling, by position over the trainable parameters
    trainable = [p for p in net.parameters() if p.requires_grad]
    shadow = ckpt["ema"]["shadow_params"]
    assert len(trainable) == len(shadow)
    with torch.no_grad():
        for p, s in zip(trainable, shadow):
            p.copy_(s)
    vectors = load_file(str(root / "vectors.safetensors"))
    x = vectors["x"] if card["data"]["centered"] else 2 * vectors["x"] - 1  # the official net centres [0, 1] data
    with torch.no_grad():
        raw = net(x, vectors["labels"])
    if card["model"]["scale_by_sigma"]:  # the official NCSN++ divides by σ inside; ours leaves it to the denoiser
        raw = raw / vectors["labels"][:, None, None, None]
    rel = ((raw - vectors["raw"]).abs().max() / vectors["raw"].abs().max()).item()
    print(f"\n{folder}: {parameter_count(net):,} trainable parameters, relative max-abs error {rel:.2e}")
    assert rel < 1e-4
