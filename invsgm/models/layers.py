"""Building blocks of the NCSN++/DDPM++ U-Net (Song et al., ICLR 2021) in plain PyTorch.

Every block reproduces the forward pass and the parameter layout (attribute names and
registration order) of the official score_sde_pytorch blocks, so official weights load by
name or by position. FIR resampling is ``upfirdn2d`` written with ``F.pad`` and a depthwise
``conv2d``: no compiled extension.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"swish": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.2)}


def activation(name: str) -> nn.Module:
    """The nonlinearity called ``name`` ('swish' = SiLU, 'elu', 'relu', 'lrelu' with slope 0.2)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


# --- initialisation and basic layers -------------------------------------------------------------

def default_init(shape: Sequence[int], scale: float = 1.0) -> torch.Tensor:
    """DDPM's init: U(−a, a) with a = √(3 s / fan_avg), fan_avg = ½(fan_in + fan_out); s = 0 means 1e-10.

    Fans follow the official convention: axis 1 is the input axis, axis 0 the output axis, the
    remaining axes form the receptive field.
    """
    scale = 1e-10 if scale == 0 else scale
    receptive = math.prod(shape[2:])
    fan_avg = 0.5 * (shape[0] + shape[1]) * receptive
    return (torch.rand(*shape) * 2.0 - 1.0) * math.sqrt(3.0 * scale / fan_avg)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, padding: int = 1,
            init_scale: float = 1.0) -> nn.Conv2d:
    """3×3 convolution with ``default_init`` weights and zero bias."""
    conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=padding, bias=bias)
    conv.weight.data = default_init(conv.weight.shape, init_scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def conv1x1(in_ch: int, out_ch: int, init_scale: float = 1.0) -> nn.Conv2d:
    """1×1 convolution with ``default_init`` weights and zero bias."""
    conv = nn.Conv2d(in_ch, out_ch, 1)
    conv.weight.data = default_init(conv.weight.shape, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def dense(in_features: int, out_features: int) -> nn.Linear:
    """Linear layer with ``default_init`` weights and zero bias."""
    lin = nn.Linear(in_features, out_features)
    lin.weight.data = default_init(lin.weight.shape)
    nn.init.zeros_(lin.bias)
    return lin


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(C // 4, 32) groups and eps 1e-6; raises if the groups do not divide C."""
    groups = min(channels // 4, 32)
    if groups < 1 or channels % groups:
        raise ValueError(f"channels={channels}: GroupNorm needs min(channels // 4, 32) groups to divide "
                         f"the channel count (at least 4 channels)")
    return nn.GroupNorm(groups, channels, eps=1e-6)


class NIN(nn.Module):
    """Per-pixel linear map over channels: y[b, :, h, w] = Wᵀ x[b, :, h, w] + b, W of shape (in, out)."""

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(default_init((in_dim, num_units), init_scale))
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.W.t()[:, :, None, None], self.b)


# --- noise-level embeddings ----------------------------------------------------------------------

class GaussianFourierProjection(nn.Module):
    """γ(s) = [sin(2π s W), cos(2π s W)] with fixed W ~ N(0, scale²) of size ``embedding_size``."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        proj = s[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


def noise_labels(noise_label: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """The networks' noise label as a (B,) tensor in x's dtype and device (a scalar is broadcast)."""
    noise_label = torch.as_tensor(noise_label, dtype=x.dtype, device=x.device)
    if noise_label.ndim == 0:
        noise_label = noise_label.expand(x.shape[0])
    if noise_label.shape != (x.shape[0],):
        raise ValueError(f"noise_label must have shape ({x.shape[0]},) for x of shape {tuple(x.shape)}, "
                         f"got shape {tuple(noise_label.shape)}")
    return noise_label


def timestep_embedding(t: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """Transformer sinusoids [sin(t ω_k), cos(t ω_k)], ω_k = max_positions^(−k/(dim/2 − 1)); shape (B, dim)."""
    half = dim // 2
    step = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -step)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


# --- FIR resampling (StyleGAN2's upfirdn2d) ------------------------------------------------------

def fir_kernel_2d(k: Sequence[float]) -> torch.Tensor:
    """Outer product k kᵀ of a 1-D FIR kernel (or a given 2-D kernel), normalised to sum 1."""
    kernel = torch.as_tensor(k, dtype=torch.float32)
    if kernel.ndim == 1:
        kernel = torch.outer(kernel, kernel)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"fir_kernel must be 1-D or square 2-D, got shape {tuple(kernel.shape)}")
    return kernel / kernel.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Insert up − 1 zeros after each pixel, pad (before, after) on both axes, convolve with ``kernel``,
    keep every ``down``-th pixel.

    Output size per axis: (L·up + pad₀ + pad₁ − k) // down + 1. Each channel is filtered alone.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(kernel, (0, 1)).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR upsampling: zero insertion then filtering with factor² · kernel (a constant image stays constant)."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel * factor ** 2, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR downsampling: filtering with the (sum-1) kernel then keeping every ``factor``-th pixel."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling: each pixel repeated factor × factor times."""
    return F.interpolate(x, scale_factor=factor, mode="nearest")


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Mean over non-overlapping factor × factor patches."""
    return F.avg_pool2d(x, factor)


class FIRConv2d(nn.Module):
    """A k×k convolution fused with FIR resampling (StyleGAN2): conv then FIR-down, or FIR-up of a transposed conv.

    ``down``: x → pad → filter → conv(w, stride 2). ``up``: x → conv_transpose(w, stride 2) → filter.
    Parameters ``weight`` (out, in, k, k) and ``bias`` as in the official ``up_or_down_sampling.Conv2d``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, up: bool = False, down: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if up == down:
            raise ValueError("FIRConv2d needs exactly one of up, down")
        self.weight = nn.Parameter(default_init((out_ch, in_ch, kernel, kernel)))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.up = up
        self.register_buffer("fir", fir_kernel_2d(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, conv = self.fir.shape[0], self.weight.shape[-1]
        if self.up:
            # conv_transpose with the flipped weight = zero insertion followed by a full correlation with w
            x = F.conv_transpose2d(x, torch.flip(self.weight, (2, 3)).transpose(0, 1), stride=2)
            p = (k - 2) - (conv - 1)
            x = upfirdn2d(x, self.fir * 4, pad=((p + 1) // 2 + 1, p // 2 + 1))
        else:
            p = (k - 2) + (conv - 1)
            x = F.conv2d(upfirdn2d(x, self.fir, pad=((p + 1) // 2, p // 2)), self.weight, stride=2)
        return x + self.bias[None, :, None, None]


class Upsample(nn.Module):
    """×2 upsampling: nearest (+ 3×3 conv) without FIR; FIR filter or fused FIR transposed conv with FIR."""

    def __init__(self, in_ch: int, out_ch: int | None = None, with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and not fir:
            self.Conv_0 = conv3x3(in_ch, out_ch)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, up=True, fir_kernel=fir_kernel)
        if fir and not with_conv:
            self.register_buffer("fir", fir_kernel_2d(fir_kernel), persistent=False)
        self.with_conv, self.use_fir = with_conv, fir

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_fir:
            h = naive_upsample_2d(x)
            return self.Conv_0(h) if self.with_conv else h
        return self.Conv2d_0(x) if self.with_conv else upsample_2d(x, self.fir)


class Downsample(nn.Module):
    """×2 downsampling: (0,1)-padded stride-2 3×3 conv or 2×2 mean without FIR; FIR filter or fused conv with FIR."""

    def __init__(self, in_ch: int, out_ch: int | None = None, with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and not fir:
            self.Conv_0 = conv3x3(in_ch, out_ch, stride=2, padding=0)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, down=True, fir_kernel=fir_kernel)
        if fir and not with_conv:
            self.register_buffer("fir", fir_kernel_2d(fir_kernel), persistent=False)
        self.with_conv, self.use_fir = with_conv, fir

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_fir:
            x = F.pad(x, (0, 1, 0, 1))
            return self.Conv_0(x) if self.with_conv else F.avg_pool2d(x, 2)
        return self.Conv2d_0(x) if self.with_conv else downsample_2d(x, self.fir)


# --- U-Net blocks --------------------------------------------------------------------------------

def residual_sum(x: torch.Tensor, h: torch.Tensor, skip_rescale: bool) -> torch.Tensor:
    """x + h, divided by √2 when ``skip_rescale`` (keeps the variance of a sum of two unit signals)."""
    return (x + h) / math.sqrt(2.0) if skip_rescale else x + h


class AttnBlock(nn.Module):
    """Self-attention over pixels: x + NIN₃(softmax(qᵀk / √C) v) with q, k, v = NIN₀,₁,₂(GroupNorm(x))."""

    def __init__(self, channels: int, skip_rescale: bool = False, init_scale: float = 0.0):
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = (nin(h).flatten(2).transpose(1, 2) for nin in (self.NIN_0, self.NIN_1, self.NIN_2))
        h = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C), scale 1/√C
        h = self.NIN_3(h.transpose(1, 2).reshape(b, c, hgt, wid))
        return residual_sum(x, h, self.skip_rescale)


class Combine(nn.Module):
    """Merge a 1×1-projected input-pyramid image x into features y: cat([Conv(x), y]) or Conv(x) + y."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat"):
        super().__init__()
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


class ResnetBlockDDPM(nn.Module):
    """DDPM residual block: h = Conv₁(Drop(act(GN(Conv₀(act(GN(x))) + Dense(act(temb)))))), out = NIN(x) + h.

    The shortcut is a NIN only when the channel count changes; ``skip_rescale`` divides the sum by √2.
    """

    def __init__(self, act: nn.Module, in_ch: int, out_ch: int | None = None, temb_dim: int | None = None,
                 dropout: float = 0.1, skip_rescale: bool = False, init_scale: float = 0.0):
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch:
            self.NIN_0 = NIN(in_ch, out_ch)
        self.act, self.skip_rescale = act, skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.Conv_0(self.act(self.GroupNorm_0(x)))
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if hasattr(self, "NIN_0"):
            x = self.NIN_0(x)
        return residual_sum(x, h, self.skip_rescale)


class ResnetBlockBigGAN(nn.Module):
    """BigGAN residual block, optionally resampling ×2 (FIR or nearest/mean) both branches after the first norm.

    h = Conv₁(Drop(act(GN(Conv₀(R(act(GN(x)))) + Dense(act(temb)))))), out = Conv₂(R(x)) + h, where R is
    the resampling and the 1×1 Conv₂ exists when channels change or R is not the identity.
    """

    def __init__(self, act: nn.Module, in_ch: int, out_ch: int | None = None, temb_dim: int | None = None,
                 up: bool = False, down: bool = False, dropout: float = 0.1, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True, init_scale: float = 0.0):
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch or up or down:
            self.Conv_2 = conv1x1(in_ch, out_ch)
        if fir:
            self.register_buffer("fir", fir_kernel_2d(fir_kernel), persistent=False)
        self.act, self.skip_rescale = act, skip_rescale
        self.up, self.down, self.use_fir = up, down, fir

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return upsample_2d(x, self.fir) if self.use_fir else naive_upsample_2d(x)
        if self.down:
            return downsample_2d(x, self.fir) if self.use_fir else naive_downsample_2d(x)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.Conv_0(self._resample(self.act(self.GroupNorm_0(x))))
        x = self._resample(x)
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(self.act(self.GroupNorm_1(h))))
        if hasattr(self, "Conv_2"):
            x = self.Conv_2(x)
        return residual_sum(x, h, self.skip_rescale)
