"""Noise-conditional classifiers p_t(y | x) for class-conditional sampling (Song et al., ICLR 2021, §5).

Guided sampling adds ∇ₓ log p_t(y | x) to the unconditional score:
∇log p_t(x | y) = ∇log p_t(x) + ∇log p_t(y | x).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .. import _checks
from ..denoisers.network import score_sde_parameterization, time_label
from ..sde import SDE
from . import layers

EMBEDDING_TYPES = ("fourier", "positional")


class NoiseConditionalClassifier(nn.Module):
    """Wide-ResNet classifier ``net(x, noise_label) → logits`` of shape (B, num_classes).

    Stem conv3x3 → per level ``blocks_per_level`` pre-activation residual blocks
    (GN → SiLU → conv3x3 → + Dense(SiLU(c)) → GN → SiLU → dropout → conv3x3, 1×1 shortcut when widths
    differ) with a stride-2 3×3 conv between levels → GN → SiLU → global mean → linear.
    The label embedding c = MLP(e), e = γ(log label) (Fourier, for σ labels of VE) or sinusoids of the
    label ('positional', for 999 t labels of VP/sub-VP), enters every block.

    Args:
        in_channels: image channels C.
        image_size: height = width H; must be divisible by 2^(len(ch_mult) − 1).
        num_classes: number of classes K ≥ 2.
        width: base width; level i has width · ch_mult[i] channels.
        ch_mult: width multipliers, one per resolution level.
        blocks_per_level: residual blocks per level.
        dropout: dropout rate inside residual blocks.
        embedding_type: 'fourier' (of log label) or 'positional' (of label).
        fourier_scale: standard deviation of the Fourier frequencies.
        init_scale: init scale of each block's last convolution (0 → 1e-10: blocks start as identities).
    """

    def __init__(
        self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10, width: int = 32,
        ch_mult: Sequence[int] = (1, 2, 2), blocks_per_level: int = 2, dropout: float = 0.0,
        embedding_type: str = "fourier", fourier_scale: float = 16.0, init_scale: float = 0.0,
    ):
        super().__init__()
        self.in_channels = _checks.positive_int("in_channels", in_channels)
        self.image_size = _checks.positive_int("image_size", image_size)
        self.num_classes = _checks.positive_int("num_classes", num_classes)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
        width = _checks.positive_int("width", width)
        ch_mult = tuple(_checks.positive_int("ch_mult", m) for m in ch_mult)
        if not ch_mult:
            raise ValueError("ch_mult must name at least one level")
        blocks_per_level = _checks.positive_int("blocks_per_level", blocks_per_level)
        if self.image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"image_size={image_size} must be divisible by 2^(len(ch_mult) - 1) = "
                             f"{2 ** (len(ch_mult) - 1)} (ch_mult={ch_mult})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if embedding_type not in EMBEDDING_TYPES:
            raise ValueError(f"embedding_type must be one of {list(EMBEDDING_TYPES)}, got {embedding_type!r}")
        _checks.positive("fourier_scale", fourier_scale)
        _checks.non_negative("init_scale", init_scale)
        self.embedding_type, self.width = embedding_type, width
        try:
            self._build(width, ch_mult, blocks_per_level, dropout, fourier_scale, init_scale)
        except ValueError as err:  # a GroupNorm that cannot split the channels
            raise ValueError(f"width={width} with ch_mult={ch_mult}: {err}") from None

    def _build(self, width: int, ch_mult: tuple[int, ...], blocks: int, dropout: float, fourier_scale: float,
               init_scale: float) -> None:
        temb_dim = 4 * width
        if self.embedding_type == "fourier":
            self.fourier = layers.GaussianFourierProjection(width, fourier_scale)
        embed_dim = 2 * width if self.embedding_type == "fourier" else width
        self.act = nn.SiLU()
        self.embed = nn.Sequential(layers.dense(embed_dim, temb_dim), nn.SiLU(), layers.dense(temb_dim, temb_dim))
        self.stem = layers.conv3x3(self.in_channels, width)
        self.levels, self.downsamples = nn.ModuleList(), nn.ModuleList()
        in_ch = width
        for level, mult in enumerate(ch_mult):
            stage = nn.ModuleList()
            for _ in range(blocks):
                stage.append(layers.ResnetBlockDDPM(self.act, in_ch, width * mult, temb_dim, dropout,
                                                    skip_rescale=False, init_scale=init_scale))
                in_ch = width * mult
            self.levels.append(stage)
            if level != len(ch_mult) - 1:
                self.downsamples.append(layers.Downsample(in_ch, with_conv=True))
        self.head_norm = layers.group_norm(in_ch)
        self.head = layers.dense(in_ch, self.num_classes)

    def forward(self, x: torch.Tensor, noise_label: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes); ``noise_label`` of shape (B,) (or a scalar): σ for VE, 999 t for VP."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, expected))}), got shape {tuple(x.shape)}")
        noise_label = layers.noise_labels(noise_label, x)
        if self.embedding_type == "fourier":
            e = self.fourier(noise_label.log())
        else:
            e = layers.timestep_embedding(noise_label, self.width).to(x.dtype)
        temb = self.embed(e)
        h = self.stem(x)
        for level, stage in enumerate(self.levels):
            if level:
                h = self.downsamples[level - 1](h)
            for block in stage:
                h = block(h, temb)
        return self.head(self.act(self.head_norm(h)).mean(dim=(2, 3)))


class TimeConditionalClassifier(nn.Module):
    """p_t(y | x) from a noise-conditional classifier: logits = net(x, label(t)), ``time_label`` as for the score
    networks (default: score_sde's, σ(t) on VE and 999 t on VP / sub-VP)."""

    def __init__(self, net: nn.Module, sde: SDE, time_label: str | None = None):
        super().__init__()
        self.net, self.sde = net, sde
        self.time_label = time_label or score_sde_parameterization(sde)["time_label"]

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Logits of shape (B, K)."""
        t = _checks.time_vector(t, x)
        return self.net(x, time_label(self.time_label, t, self.sde))

    def log_prob(self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | int) -> torch.Tensor:
        """log p_t(y | x) = log_softmax(logits)[y], shape (B,); y an integer tensor (B,) or one int."""
        logits = self(x, t)
        y = torch.as_tensor(y, device=logits.device)
        if y.ndim == 0:
            y = y.expand(x.shape[0])
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (x.shape[0],):
            raise ValueError(f"y must be an integer tensor of shape ({x.shape[0]},), "
                             f"got {y.dtype} of shape {tuple(y.shape)}")
        k = logits.shape[1]
        if y.device.type == "cpu" and y.numel() and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"y must lie in [0, {k - 1}], got values in [{y.min().item()}, {y.max().item()}]")
        return logits.log_softmax(dim=1).gather(1, y.long()[:, None]).squeeze(1)

    def log_prob_grad(self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | int) -> torch.Tensor:
        """∇ₓ log p_t(y | x), shape of x, by autograd; grad is enabled locally (works under ``torch.no_grad``).

        Each sample's log-probability depends on its own x only (GroupNorm, no batch statistics), so the
        gradient of the batch sum is the per-sample gradient.
        """
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_prob(x_in, t, y).sum(), x_in)
        return grad


def classifier_cpu_small(in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
                         **overrides) -> NoiseConditionalClassifier:
    """A ≈0.43 M-parameter classifier that trains on a laptop CPU: width 32, ch_mult (1, 2, 2), 2 blocks per level."""
    kwargs = dict(width=32, ch_mult=(1, 2, 2), blocks_per_level=2, dropout=0.0, embedding_type="fourier")
    kwargs.update(overrides)
    return NoiseConditionalClassifier(in_channels=in_channels, image_size=image_size, num_classes=num_classes,
                                      **kwargs)


def classifier_gpu(in_channels: int = 3, image_size: int = 32, num_classes: int = 10,
                   **overrides) -> NoiseConditionalClassifier:
    """WRN-28-10-sized (widths 160/320/640, 4 blocks per level, ≈41 M parameters), as the paper's CIFAR-10
    noise-conditional classifier; ``overrides`` replace any argument."""
    kwargs = dict(width=160, ch_mult=(1, 2, 4), blocks_per_level=4, dropout=0.1, embedding_type="fourier")
    kwargs.update(overrides)
    return NoiseConditionalClassifier(in_channels=in_channels, image_size=image_size, num_classes=num_classes,
                                      **kwargs)


__all__ = ["NoiseConditionalClassifier", "TimeConditionalClassifier", "classifier_cpu_small", "classifier_gpu"]
