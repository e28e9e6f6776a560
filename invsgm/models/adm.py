"""OpenAI guided-diffusion (ADM, Dhariwal & Nichol 2021) networks, built from explicit arguments.

``ADMUNet`` is guided-diffusion's ``UNetModel`` and ``ADMClassifier`` its ``EncoderUNetModel`` (the
noise-conditional classifier: encoder half + middle block + a pooling head). Attribute names and module
order are the official ones, so ``net.state_dict()`` has the official keys (``time_embed.0.weight``,
``input_blocks.0.0.weight``, …, ``out.2.bias``) and an official checkpoint (a plain state dict) loads with
``load_state_dict``. Only the 2-D case is built; gradient checkpointing (``use_checkpoint``) and the
``use_fp16`` torso are not (they change no key or shape): cast the whole net instead
(``net.to(torch.bfloat16)``): group norms and softmaxes are computed in float32 and cast back, the
timestep embedding is computed in float32, and the output comes back in the input's dtype.

Arguments differ from the official *flags* of ``script_util.create_model`` / ``create_classifier`` in two
places (``invsgm.adm`` converts them): ``attention_resolutions`` holds the *downsampling factors* with
attention (``(16,)`` = the 16×16 maps of a 256-px net; the official flag string holds image-size divisors),
and ``channel_mult`` is explicit (the official empty string means a default per image size; the 512-px
models use a 0.5 multiplier, so multipliers are numbers and level i has int(mult_i · model_channels)
channels, as in the official code).
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

GROUPS, EPS = 32, 1e-5
POOLS = ("attention", "adaptive", "spatial", "spatial_v2")


# --- blocks ----------------------------------------------------------------------------------------

class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32 groups, eps 1e-5) computed in float32 and cast back to the input dtype."""

    def __init__(self, channels: int):
        if channels % GROUPS:
            raise ValueError(f"GroupNorm with {GROUPS} groups needs a channel count divisible by {GROUPS}, "
                             f"got {channels}")
        super().__init__(GROUPS, channels, eps=EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), GROUPS, self.weight.float(), self.bias.float(), EPS).to(x.dtype)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos(t f), sin(t f)] (float32, shape (B, dim)), f_i = exp(−ln(max_period)·i/half), i < half = dim // 2;
    a zero column is appended when dim is odd. t is the step index, used as it is (no scaling)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


def qkv_attention(qkv: torch.Tensor, heads: int, legacy: bool) -> torch.Tensor:
    """Multi-head attention softmax(qᵀk/√ch)·v over T tokens of qkv (B, 3·heads·ch, T) → (B, heads·ch, T).

    ``legacy`` (``QKVAttentionLegacy``): the channels are grouped per head as [q, k, v]; otherwise
    (``QKVAttention``) q, k, v are split first, then each into heads. q and k are each scaled by ch^(−1/4);
    the softmax is taken in float32.
    """
    b, width, length = qkv.shape
    if width % (3 * heads):
        raise ValueError(f"qkv width {width} is not divisible by 3 x {heads} heads")
    ch = width // (3 * heads)
    if legacy:
        q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
    else:
        q, k, v = (part.reshape(b * heads, ch, length) for part in qkv.chunk(3, dim=1))
    scale = ch ** -0.25
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).to(weight.dtype)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(b, heads * ch, length)


def _heads(channels: int, num_heads: int, num_head_channels: int, where: str) -> int:
    """Head count: channels / num_head_channels when num_head_channels ≠ −1, else num_heads."""
    if num_head_channels == -1:
        if channels % num_heads:
            raise ValueError(f"{where}: {channels} channels are not divisible by num_heads={num_heads}")
        return num_heads
    if channels % num_head_channels:
        raise ValueError(f"{where}: {channels} channels are not divisible by num_head_channels={num_head_channels}")
    return channels // num_head_channels


class Resample(nn.Module):
    """Nearest ×2 up-sampling or 2×2 average pooling, with an optional 3×3 convolution (key ``conv`` up,
    ``op`` down: a stride-2 convolution replaces the pooling)."""

    def __init__(self, channels: int, up: bool, use_conv: bool):
        super().__init__()
        self.up, self.use_conv = up, use_conv
        if up and use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        elif not up:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv(x) if self.use_conv else x
        return self.op(x)


class ResBlock(nn.Module):
    """h = Conv(Drop(SiLU(N(h₁)·(1 + s) + b))) + skip(x) with h₁ = Conv(R(SiLU(N(x)))), (s, b) = Linear(SiLU(emb))
    (scale-shift norm; otherwise N(h₁ + Linear(SiLU(emb)))); R and skip resample (nearest ×2 / 2×2 mean) when
    ``up`` / ``down``; skip is a 1×1 convolution when the width changes, else the identity."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_scale_shift_norm: bool = False, up: bool = False, down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if self.updown:
            self.h_upd, self.x_upd = Resample(channels, up, False), Resample(channels, up, False)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, (2 if use_scale_shift_norm else 1)
                                                             * out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.in_layers[-1](self.h_upd(h)), self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """x + proj_out(attention(qkv(N(x)))) over the H·W positions (flattened row-major); ``new_order``
    selects the qkv layout (see ``qkv_attention``)."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, new_order: bool = False):
        super().__init__()
        self.num_heads = _heads(channels, num_heads, num_head_channels, "AttentionBlock")
        self.legacy = not new_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(qkv_attention(self.qkv(self.norm(x)), self.num_heads, self.legacy))
        return (x + h).reshape(b, c, *spatial)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, order={'legacy' if self.legacy else 'new'}"


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling: tokens [mean(x), x₁ … x_HW] + positional embedding → qkv → attention
    (new qkv order, C/num_head_channels heads) → c_proj; the output is token 0, shape (B, output_dim)."""

    def __init__(self, spatial_dim: int, embed_dim: int, num_head_channels: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(embed_dim, spatial_dim ** 2 + 1) / embed_dim ** 0.5)
        self.qkv_proj = nn.Conv1d(embed_dim, 3 * embed_dim, 1)
        self.c_proj = nn.Conv1d(embed_dim, output_dim, 1)
        self.num_heads = _heads(embed_dim, 1, num_head_channels, "AttentionPool2d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x = x.reshape(b, c, -1)
        tokens = self.positional_embedding.shape[1] - 1
        if x.shape[2] != tokens:
            raise ValueError(f"the attention pool was built for {tokens} positions, got {x.shape[2]}")
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1) + self.positional_embedding[None].to(x.dtype)
        return self.c_proj(qkv_attention(self.qkv_proj(x), self.num_heads, legacy=False))[:, :, 0]


class TimestepEmbedSequential(nn.Sequential):
    """A sequence of layers; residual blocks also receive the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


# --- the shared encoder ----------------------------------------------------------------------------

def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _heads_arg(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (value < 1 and value != -1):
        raise ValueError(f"{name} must be an integer >= 1 or -1, got {value!r}")
    return int(value)


class _ADMBase(nn.Module):
    """The parts ``ADMUNet`` and ``ADMClassifier`` share: checks, timestep MLP and the encoder half + middle block."""

    def _check(self, image_size, in_channels, model_channels, num_res_blocks, attention_resolutions, dropout,
               channel_mult, num_heads, num_head_channels) -> None:
        self.image_size = _int("image_size", image_size, 1)
        self.in_channels = _int("in_channels", in_channels, 1)
        self.model_channels = _int("model_channels", model_channels, 1)
        self.num_res_blocks = _int("num_res_blocks", num_res_blocks, 1)
        self.attention_resolutions = tuple(_int("attention_resolutions", a, 1) for a in attention_resolutions)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        mult = tuple(channel_mult)
        if not mult or any(isinstance(m, bool) or not isinstance(m, numbers.Real) or m <= 0 for m in mult):
            raise ValueError(f"channel_mult must be a non-empty list of numbers > 0, got {channel_mult!r}")
        self.channel_mult = tuple(int(m) if float(m).is_integer() else float(m) for m in mult)
        self.widths = [int(m * self.model_channels) for m in self.channel_mult]
        bad = [w for w in self.widths if w < GROUPS or w % GROUPS]
        if bad:
            raise ValueError(f"model_channels={model_channels} with channel_mult={list(self.channel_mult)} gives "
                             f"level widths {self.widths}; each must be a multiple of {GROUPS} (GroupNorm)")
        self.levels = len(self.channel_mult)
        if self.image_size % 2 ** (self.levels - 1):
            raise ValueError(f"image_size={image_size} must be divisible by 2^(levels - 1) = "
                             f"{2 ** (self.levels - 1)} (channel_mult={list(self.channel_mult)})")
        self.num_heads = _heads_arg("num_heads", num_heads)
        if self.num_heads == -1:
            raise ValueError("num_heads must be an integer >= 1, got -1")
        self.num_head_channels = _heads_arg("num_head_channels", num_head_channels)

    def _time_embed(self) -> None:
        """time_embed: Linear(C, 4C) → SiLU → Linear(4C, 4C) of the sinusoidal embedding (C = model_channels)."""
        emb_dim = 4 * self.model_channels
        self.time_embed = nn.Sequential(nn.Linear(self.model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def _encoder(self, conv_resample: bool, use_scale_shift_norm: bool, resblock_updown: bool,
                 new_order: bool) -> tuple[int, int, list[int]]:
        """input_blocks and middle_block; returns (channels, downsampling factor, skip widths)."""
        emb_dim = 4 * self.model_channels
        ch = self.widths[0]
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(self.in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, width in enumerate(self.widths):
            for _ in range(self.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, self.dropout, width, use_scale_shift_norm)]
                ch = width
                if ds in self.attention_resolutions:
                    layers.append(AttentionBlock(ch, self.num_heads, self.num_head_channels, new_order))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skips.append(ch)
            if level != self.levels - 1:
                down = (ResBlock(ch, emb_dim, self.dropout, ch, use_scale_shift_norm, down=True) if resblock_updown
                        else Resample(ch, up=False, use_conv=conv_resample))
                self.input_blocks.append(TimestepEmbedSequential(down))
                skips.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, self.dropout, ch, use_scale_shift_norm),
            AttentionBlock(ch, self.num_heads, self.num_head_channels, new_order),
            ResBlock(ch, emb_dim, self.dropout, ch, use_scale_shift_norm))
        return ch, ds, skips

    def _check_input(self, x: torch.Tensor, exact_size: bool) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        step = 2 ** (self.levels - 1)
        if exact_size and tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(f"x must be {self.image_size}x{self.image_size} (the attention pool's size), "
                             f"got shape {tuple(x.shape)}")
        if x.shape[2] % step or x.shape[3] % step:
            raise ValueError(f"x's height and width must be divisible by {step}, got shape {tuple(x.shape)}")

    def _embed(self, x: torch.Tensor, timesteps: torch.Tensor | float) -> torch.Tensor:
        """time_embed(sinusoids of the step index), in the network's dtype; a scalar is broadcast to the batch."""
        t = torch.as_tensor(timesteps, device=x.device)
        if t.ndim == 0 or t.numel() == 1 and x.shape[0] != 1:
            t = t.reshape(()).expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"timesteps must have shape ({x.shape[0]},) for x of shape {tuple(x.shape)}, "
                             f"got shape {tuple(t.shape)}")
        return self.time_embed(timestep_embedding(t, self.model_channels).to(self.dtype))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters, in which the network computes."""
        return self.time_embed[0].weight.dtype


# --- the networks ----------------------------------------------------------------------------------

class ADMUNet(_ADMBase):
    """guided-diffusion's ``UNetModel``: ``net(x, timesteps, y=None) → (B, out_channels, H, W)``.

    emb = MLP(sinusoids(t)) (+ label_emb(y) when class-conditional) enters every residual block. With
    learn_sigma (out_channels = 2C), channels [0:C] are ε̂ and [C:2C] the learned-range variance v:
    log σ² = ½(v+1) log β_t + ½(1−v) log β̃_t. ``timesteps`` is the step index t ∈ {0, …, 999} (reals work too).

    Args:
        image_size: the training image size (checked: divisible by 2^(levels − 1)).
        in_channels, model_channels, out_channels: image channels, base width, output channels (6: ε̂ and v).
        num_res_blocks: residual blocks per level on the way down (one more per level on the way up).
        attention_resolutions: downsampling factors with an attention block after each residual block.
        dropout: dropout rate inside residual blocks.
        channel_mult: width multipliers per level (level i: int(channel_mult[i]·model_channels) channels).
        conv_resample: separate resampling layers carry a 3×3 convolution (only with resblock_updown False).
        num_classes: number of classes of a class-conditional model (``label_emb``), or None.
        num_heads, num_head_channels, num_heads_upsample: heads per attention block; num_head_channels ≠ −1
            overrides num_heads (heads = channels / num_head_channels); num_heads_upsample (−1: num_heads)
            for the decoder's blocks.
        use_scale_shift_norm: the embedding scales and shifts the normalised features (FiLM) instead of adding.
        resblock_updown: resample inside residual blocks instead of separate layers.
        use_new_attention_order: split q, k, v before heads (``QKVAttention``) instead of the legacy order.
    """

    def __init__(self, image_size: int = 64, in_channels: int = 3, model_channels: int = 128, out_channels: int = 6,
                 num_res_blocks: int = 2, attention_resolutions: Sequence[int] = (2, 4, 8), dropout: float = 0.0,
                 channel_mult: Sequence[float] = (1, 2, 3, 4), conv_resample: bool = True,
                 num_classes: int | None = None, num_heads: int = 4, num_head_channels: int = -1,
                 num_heads_upsample: int = -1, use_scale_shift_norm: bool = True, resblock_updown: bool = True,
                 use_new_attention_order: bool = False):
        super().__init__()
        self._check(image_size, in_channels, model_channels, num_res_blocks, attention_resolutions, dropout,
                    channel_mult, num_heads, num_head_channels)
        self.out_channels = _int("out_channels", out_channels, 1)
        self.num_classes = None if num_classes is None else _int("num_classes", num_classes, 1)
        heads_up = _heads_arg("num_heads_upsample", num_heads_upsample)
        heads_up = self.num_heads if heads_up == -1 else heads_up
        for name in ("conv_resample", "use_scale_shift_norm", "resblock_updown", "use_new_attention_order"):
            _flag(name, locals()[name])
        emb_dim = 4 * self.model_channels
        self._time_embed()  # official module order: time_embed, label_emb, input_blocks, middle_block, …
        if self.num_classes is not None:
            self.label_emb = nn.Embedding(self.num_classes, emb_dim)
        ch, ds, skips = self._encoder(conv_resample, use_scale_shift_norm, resblock_updown, use_new_attention_order)
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(self.levels)):
            width = self.widths[level]
            for i in range(self.num_res_blocks + 1):
                layers: list[nn.Module] = [ResBlock(ch + skips.pop(), emb_dim, self.dropout, width,
                                                    use_scale_shift_norm)]
                ch = width
                if ds in self.attention_resolutions:
                    layers.append(AttentionBlock(ch, heads_up, self.num_head_channels, use_new_attention_order))
                if level and i == self.num_res_blocks:
                    layers.append(ResBlock(ch, emb_dim, self.dropout, ch, use_scale_shift_norm, up=True)
                                  if resblock_updown else Resample(ch, up=True, use_conv=conv_resample))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(self.widths[0], self.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, out_channels, H, W) in x's dtype; ``y`` (B,) integer labels, given iff the model is class-conditional."""
        self._check_input(x, exact_size=False)
        if (y is None) != (self.num_classes is None):
            raise ValueError("a class-conditional ADMUNet needs labels y (B,)" if y is None
                             else "y was given to an ADMUNet that is not class-conditional (num_classes is None)")
        emb = self._embed(x, timesteps)
        if y is not None:
            y = torch.as_tensor(y, device=x.device)
            if y.shape != (x.shape[0],) or y.dtype.is_floating_point or y.dtype == torch.bool:
                raise ValueError(f"y must be an integer tensor of shape ({x.shape[0]},), got {y.dtype} of shape "
                                 f"{tuple(y.shape)}")
            emb = emb + self.label_emb(y.long())
        h, hs = x.to(self.dtype), []
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h).to(x.dtype)


class ADMClassifier(_ADMBase):
    """guided-diffusion's ``EncoderUNetModel``: ``net(x, timesteps) → logits (B, out_channels)`` of p_t(y | x_t).

    The encoder half of ``ADMUNet`` and its middle block, then a head (``pool``): 'attention' (GroupNorm →
    SiLU → ``AttentionPool2d``, as the released classifiers), 'adaptive' (GroupNorm → SiLU → global mean →
    1×1 conv), 'spatial' / 'spatial_v2' (the spatial means of every block, concatenated → MLP). Arguments as
    for ``ADMUNet``; ``num_head_channels`` is 64 in every released classifier (``create_classifier`` fixes it)
    and the attention pool needs it ≠ −1 and inputs of exactly image_size × image_size.
    """

    def __init__(self, image_size: int = 64, in_channels: int = 3, model_channels: int = 128,
                 out_channels: int = 1000, num_res_blocks: int = 2, attention_resolutions: Sequence[int] = (2, 4, 8),
                 dropout: float = 0.0, channel_mult: Sequence[float] = (1, 2, 3, 4), conv_resample: bool = True,
                 num_heads: int = 1, num_head_channels: int = 64, use_scale_shift_norm: bool = True,
                 resblock_updown: bool = True, use_new_attention_order: bool = False, pool: str = "attention"):
        super().__init__()
        self._check(image_size, in_channels, model_channels, num_res_blocks, attention_resolutions, dropout,
                    channel_mult, num_heads, num_head_channels)
        self.out_channels = _int("out_channels", out_channels, 1)
        self.num_classes = self.out_channels  # one logit per class
        for name in ("conv_resample", "use_scale_shift_norm", "resblock_updown", "use_new_attention_order"):
            _flag(name, locals()[name])
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {list(POOLS)}, got {pool!r}")
        self.pool = pool
        self._time_embed()
        ch, ds, skips = self._encoder(conv_resample, use_scale_shift_norm, resblock_updown, use_new_attention_order)
        if pool == "attention":
            if self.num_head_channels == -1:
                raise ValueError("pool='attention' needs num_head_channels != -1")
            self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(),
                                     AttentionPool2d(self.image_size // ds, ch, self.num_head_channels,
                                                     self.out_channels))
        elif pool == "adaptive":
            self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)),
                                     nn.Conv2d(ch, self.out_channels, 1), nn.Flatten())
        else:
            features = sum(skips) + ch
            hidden = [nn.ReLU()] if pool == "spatial" else [GroupNorm32(2048), nn.SiLU()]
            self.out = nn.Sequential(nn.Linear(features, 2048), *hidden, nn.Linear(2048, self.out_channels))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float) -> torch.Tensor:
        """Logits (B, out_channels) in x's dtype; ``timesteps`` (B,) step indices."""
        self._check_input(x, exact_size=self.pool == "attention")
        emb = self._embed(x, timesteps)
        spatial = self.pool.startswith("spatial")
        h, means = x.to(self.dtype), []
        for block in self.input_blocks:
            h = block(h, emb)
            if spatial:
                means.append(h.mean(dim=(2, 3)))
        h = self.middle_block(h, emb)
        if spatial:
            h = torch.cat(means + [h.mean(dim=(2, 3))], dim=-1)
        return self.out(h).to(x.dtype)


__all__ = ["ADMClassifier", "ADMUNet", "AttentionBlock", "AttentionPool2d", "GroupNorm32", "POOLS", "ResBlock",
           "qkv_attention", "timestep_embedding"]
