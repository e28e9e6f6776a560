"""The NCSN++ / DDPM++ U-Net of Song et al. (ICLR 2021), built from explicit arguments.

The sub-modules live in one flat ``nn.ModuleList`` named ``all_modules``, in the order of the
official score_sde_pytorch ``NCSNpp`` and with its attribute names, so an official state dict
loads by name (after dropping the ``module.`` prefix and the unused ``sigmas`` entry) and
official EMA shadow parameters load by position onto ``[p for p in net.parameters() if p.requires_grad]``.

Unlike the official network, this one does not divide by σ (``NetworkDenoiser`` turns the raw output
into a score), and it centres its input only when asked: the official network maps x ↦ 2x − 1
when its data are not centred (``config.data.centered = False``, data in [0, 1]); here that is
``input_centering=True``, and by default the input is used as it is (feed data in [−1, 1]).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .. import _checks
from . import layers

RESBLOCK_TYPES = ("ddpm", "biggan")
EMBEDDING_TYPES = ("fourier", "positional")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
COMBINE_METHODS = ("sum", "cat")
ATTENTION_TYPES = ("ddpm",)


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


class UNet(nn.Module):
    """Noise-conditional U-Net ``net(x, noise_label) → raw`` with x of shape (B, C, H, H), label of shape (B,).

    The label is embedded as γ(log label) with Gaussian Fourier features ('fourier', for σ labels
    of VE) or as transformer sinusoids of the label itself ('positional', for 999 t labels of
    VP/sub-VP), then mapped by two dense layers to a 4·nf vector that biases every residual block.

    Args:
        in_channels: image channels C.
        out_channels: output channels; only ``in_channels`` (the score has x's shape) is supported.
        image_size: height = width H; must be divisible by 2^(len(ch_mult) − 1).
        nf: base width; level i has nf · ch_mult[i] channels.
        ch_mult: width multipliers, one per resolution level.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: resolutions (side lengths) with a self-attention block after each residual block.
        dropout: dropout rate inside residual blocks.
        resblock_type: 'biggan' (resampling inside residual blocks) or 'ddpm' (separate resampling layers).
        embedding_type: 'fourier' (of log label) or 'positional' (of label).
        fourier_scale: standard deviation of the Fourier frequencies.
        fir: resample with the FIR filter ``fir_kernel`` instead of nearest / mean.
        fir_kernel: 1-D FIR taps (the 2-D filter is their outer product).
        resamp_with_conv: resampling layers of 'ddpm' blocks carry a 3×3 convolution.
        skip_rescale: divide residual sums by √2.
        init_scale: init scale of each block's last convolution (0 → 1e-10, near-identity blocks).
        progressive: output path: 'none', 'output_skip' (sum of upsampled per-level images),
            'residual' (upsampled feature pyramid added to the features).
        progressive_input: input path: 'none', 'input_skip' (downsampled image combined at each level),
            'residual' (downsampled feature pyramid added to the features).
        progressive_combine: how 'input_skip' merges: 'sum' or 'cat'.
        conditional: condition on the noise label (else the label is ignored).
        nonlinearity: 'swish', 'elu', 'relu' or 'lrelu'.
        attention_type: 'ddpm' (the only kind).
        input_centering: map the input x ↦ 2x − 1 first (data in [0, 1], as the official network does
            when ``data.centered`` is False); False feeds x unchanged (data already in [−1, 1]).
    """

    def __init__(
        self, in_channels: int = 3, out_channels: int | None = None, image_size: int = 32, nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 4, attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1, resblock_type: str = "biggan", embedding_type: str = "fourier",
        fourier_scale: float = 16.0, fir: bool = True, fir_kernel: Sequence[float] = (1, 3, 3, 1),
        resamp_with_conv: bool = True, skip_rescale: bool = True, init_scale: float = 0.0,
        progressive: str = "none", progressive_input: str = "none", progressive_combine: str = "sum",
        conditional: bool = True, nonlinearity: str = "swish", attention_type: str = "ddpm",
        input_centering: bool = False,
    ):
        super().__init__()
        channels = _checks.positive_int("in_channels", in_channels)
        if out_channels is not None and out_channels != channels:
            raise ValueError(f"out_channels must equal in_channels ({channels}) for a score network, "
                             f"got {out_channels!r}")
        nf = _checks.positive_int("nf", nf)
        ch_mult = tuple(_checks.positive_int("ch_mult", m) for m in ch_mult)
        if not ch_mult:
            raise ValueError("ch_mult must name at least one level")
        num_res_blocks = _checks.positive_int("num_res_blocks", num_res_blocks)
        image_size = _checks.positive_int("image_size", image_size)
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"image_size={image_size} must be divisible by 2^(len(ch_mult) - 1) = "
                             f"{2 ** (len(ch_mult) - 1)} (ch_mult={ch_mult})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        _checks.non_negative("init_scale", init_scale)
        _checks.positive("fourier_scale", fourier_scale)
        self.resblock_type = _choice("resblock_type", resblock_type, RESBLOCK_TYPES)
        self.embedding_type = _choice("embedding_type", embedding_type, EMBEDDING_TYPES)
        self.progressive = _choice("progressive", progressive, PROGRESSIVE)
        self.progressive_input = _choice("progressive_input", progressive_input, PROGRESSIVE_INPUT)
        combine = _choice("progressive_combine", progressive_combine, COMBINE_METHODS)
        _choice("attention_type", attention_type, ATTENTION_TYPES)
        self.act = act = layers.activation(nonlinearity)
        layers.fir_kernel_2d(fir_kernel)  # raises on a malformed kernel

        self.in_channels, self.image_size, self.nf = channels, image_size, nf
        if not isinstance(input_centering, bool):
            raise ValueError(f"input_centering must be True or False, got {input_centering!r}")
        self.input_centering = input_centering
        self.num_res_blocks, self.conditional, self.skip_rescale = num_res_blocks, conditional, skip_rescale
        self.num_resolutions = len(ch_mult)
        self.attn_levels = [image_size // 2 ** i in tuple(attn_resolutions) for i in range(len(ch_mult))]
        try:
            self.all_modules = self._build(channels, nf, ch_mult, dropout, fourier_scale, fir, tuple(fir_kernel),
                                           resamp_with_conv, init_scale, combine, act)
        except ValueError as err:  # the only check left: a GroupNorm that cannot split the channels
            raise ValueError(f"nf={nf} with ch_mult={ch_mult}: {err}") from None

    def _build(self, channels: int, nf: int, ch_mult: tuple[int, ...], dropout: float, fourier_scale: float,
               fir: bool, fir_kernel: tuple[float, ...], resamp_with_conv: bool, init_scale: float, combine: str,
               act: nn.Module) -> nn.ModuleList:
        """The flat module list, in the official order (mirrored step for step by ``forward``)."""
        temb_dim = 4 * nf
        modules: list[nn.Module] = []
        if self.embedding_type == "fourier":
            modules.append(layers.GaussianFourierProjection(nf, fourier_scale))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        if self.conditional:
            modules += [layers.dense(embed_dim, temb_dim), layers.dense(temb_dim, temb_dim)]

        def attn(ch: int) -> nn.Module:
            return layers.AttnBlock(ch, skip_rescale=self.skip_rescale, init_scale=init_scale)

        def resblock(in_ch: int, out_ch: int | None = None, up: bool = False, down: bool = False) -> nn.Module:
            if self.resblock_type == "ddpm":
                return layers.ResnetBlockDDPM(act, in_ch, out_ch, temb_dim, dropout, self.skip_rescale, init_scale)
            return layers.ResnetBlockBigGAN(act, in_ch, out_ch, temb_dim, up, down, dropout, fir, fir_kernel,
                                            self.skip_rescale, init_scale)

        # parameter-free image-pyramid resamplers live outside ``all_modules``, as in the official code
        if self.progressive_input == "input_skip":
            self.pyramid_downsample = layers.Downsample(channels, with_conv=False, fir=fir, fir_kernel=fir_kernel)
        if self.progressive == "output_skip":
            self.pyramid_upsample = layers.Upsample(channels, with_conv=False, fir=fir, fir_kernel=fir_kernel)

        # down path
        pyramid_in_ch = channels
        modules.append(layers.conv3x3(channels, nf))
        skip_ch = [nf]
        in_ch = nf
        for level, mult in enumerate(ch_mult):
            for _ in range(self.num_res_blocks):
                modules.append(resblock(in_ch, nf * mult))
                in_ch = nf * mult
                if self.attn_levels[level]:
                    modules.append(attn(in_ch))
                skip_ch.append(in_ch)
            if level != self.num_resolutions - 1:
                if self.resblock_type == "ddpm":
                    modules.append(layers.Downsample(in_ch, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel))
                else:
                    modules.append(resblock(in_ch, down=True))
                if self.progressive_input == "input_skip":
                    modules.append(layers.Combine(pyramid_in_ch, in_ch, method=combine))
                    if combine == "cat":
                        in_ch *= 2
                elif self.progressive_input == "residual":
                    modules.append(layers.Downsample(pyramid_in_ch, in_ch, with_conv=True, fir=fir,
                                                     fir_kernel=fir_kernel))
                    pyramid_in_ch = in_ch
                skip_ch.append(in_ch)

        # middle
        in_ch = skip_ch[-1]
        modules += [resblock(in_ch), attn(in_ch), resblock(in_ch)]

        # up path
        for level in reversed(range(self.num_resolutions)):
            for _ in range(self.num_res_blocks + 1):
                modules.append(resblock(in_ch + skip_ch.pop(), nf * ch_mult[level]))
                in_ch = nf * ch_mult[level]
            if self.attn_levels[level]:
                modules.append(attn(in_ch))
            if self.progressive == "output_skip":
                modules.append(layers.group_norm(in_ch))
                modules.append(layers.conv3x3(in_ch, channels, init_scale=init_scale))
            elif self.progressive == "residual":
                if level == self.num_resolutions - 1:
                    modules.append(layers.group_norm(in_ch))
                    modules.append(layers.conv3x3(in_ch, in_ch))
                else:  # the feature pyramid has the channels of the level below
                    modules.append(layers.Upsample(nf * ch_mult[level + 1], in_ch, with_conv=True, fir=fir,
                                                   fir_kernel=fir_kernel))
            if level != 0:
                if self.resblock_type == "ddpm":
                    modules.append(layers.Upsample(in_ch, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel))
                else:
                    modules.append(resblock(in_ch, up=True))
        assert not skip_ch

        if self.progressive != "output_skip":
            modules.append(layers.group_norm(in_ch))
            modules.append(layers.conv3x3(in_ch, channels, init_scale=init_scale))
        return nn.ModuleList(modules)

    def forward(self, x: torch.Tensor, noise_label: torch.Tensor) -> torch.Tensor:
        """Raw output of x's shape; ``noise_label`` of shape (B,) (or a scalar) is σ for VE, 999 t for VP."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, expected))}), got shape {tuple(x.shape)}")
        noise_label = layers.noise_labels(noise_label, x)
        if self.input_centering:  # data in [0, 1] → [−1, 1], before the input pyramid sees it
            x = 2 * x - 1

        mods = iter(self.all_modules)
        if self.embedding_type == "fourier":
            temb = next(mods)(torch.log(noise_label))
        else:
            temb = layers.timestep_embedding(noise_label, self.nf).to(x.dtype)
        if self.conditional:
            temb = next(mods)(temb)
            temb = next(mods)(self.act(temb))
        else:
            temb = None

        # down path
        pyramid_in = x if self.progressive_input != "none" else None
        hs = [next(mods)(x)]
        for level in range(self.num_resolutions):
            for _ in range(self.num_res_blocks):
                h = next(mods)(hs[-1], temb)
                if self.attn_levels[level]:
                    h = next(mods)(h)
                hs.append(h)
            if level != self.num_resolutions - 1:
                h = next(mods)(hs[-1]) if self.resblock_type == "ddpm" else next(mods)(hs[-1], temb)
                if self.progressive_input == "input_skip":
                    pyramid_in = self.pyramid_downsample(pyramid_in)
                    h = next(mods)(pyramid_in, h)
                elif self.progressive_input == "residual":
                    pyramid_in = layers.residual_sum(next(mods)(pyramid_in), h, self.skip_rescale)
                    h = pyramid_in
                hs.append(h)

        # middle
        h = next(mods)(hs[-1], temb)
        h = next(mods)(h)
        h = next(mods)(h, temb)

        # up path
        pyramid = None
        for level in reversed(range(self.num_resolutions)):
            for _ in range(self.num_res_blocks + 1):
                h = next(mods)(torch.cat([h, hs.pop()], dim=1), temb)
            if self.attn_levels[level]:
                h = next(mods)(h)
            if self.progressive != "none":
                top = level == self.num_resolutions - 1
                if self.progressive == "output_skip":
                    norm, conv = next(mods), next(mods)
                    image = conv(self.act(norm(h)))
                    pyramid = image if top else self.pyramid_upsample(pyramid) + image
                elif top:
                    norm, conv = next(mods), next(mods)
                    pyramid = conv(self.act(norm(h)))
                else:
                    pyramid = layers.residual_sum(next(mods)(pyramid), h, self.skip_rescale)
                    h = pyramid
            if level != 0:
                h = next(mods)(h) if self.resblock_type == "ddpm" else next(mods)(h, temb)

        if self.progressive == "output_skip":
            return pyramid
        norm, conv = next(mods), next(mods)
        return conv(self.act(norm(h)))


def unet_cpu_small(in_channels: int = 3, image_size: int = 32, **overrides) -> UNet:
    """A ≈1.6 M-parameter DDPM-style U-Net that trains on a laptop CPU: nf=32, ch_mult (1, 2, 2),
    2 blocks per level, no attention, no FIR, no progressive paths; ``overrides`` replace any argument."""
    kwargs = dict(nf=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(), dropout=0.1,
                  resblock_type="ddpm", embedding_type="fourier", fir=False, resamp_with_conv=True,
                  skip_rescale=True, progressive="none", progressive_input="none")
    kwargs.update(overrides)
    return UNet(in_channels=in_channels, image_size=image_size, **kwargs)


def unet_gpu(in_channels: int = 3, image_size: int = 32, **overrides) -> UNet:
    """The official NCSN++ CIFAR-10 architecture (≈62 M parameters at 32 px): nf=128, ch_mult (1, 2, 2, 2),
    4 BigGAN blocks per level, attention at 16 px, FIR, residual input pyramid; ``overrides`` replace any argument."""
    kwargs = dict(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), dropout=0.1,
                  resblock_type="biggan", embedding_type="fourier", fir=True, resamp_with_conv=True,
                  skip_rescale=True, progressive="none", progressive_input="residual", progressive_combine="sum")
    kwargs.update(overrides)
    return UNet(in_channels=in_channels, image_size=image_size, **kwargs)


def parameter_count(net: nn.Module) -> int:
    """Number of trainable parameters (the fixed Fourier frequencies excluded)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


__all__ = ["UNet", "unet_cpu_small", "unet_gpu", "parameter_count"]
