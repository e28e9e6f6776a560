"""A noise-conditional MLP for vector data, with the same label conventions as the U-Net."""
from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from . import layers


class MLPScoreNet(nn.Module):
    """``net(x, noise_label) → raw`` for x of shape (B, dim): a SiLU MLP, every hidden layer biased by the label.

    With e = γ(log label) (Gaussian Fourier features, 'fourier') or sinusoids of the label
    ('positional') and c = SiLU(A e): h₀ = x, h_k = SiLU(W_k h_{k−1} + C_k c), raw = W_out h_depth.

    Args:
        dim: data dimension d.
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        embedding_dim: size of the label embedding e (even for 'fourier').
        embedding: 'fourier' (of log label: use with σ labels of VE, or 999 t) or 'positional' (of label).
        fourier_scale: standard deviation of the Fourier frequencies; 1 resolves the few units that
            log σ spans without the high-frequency wiggles a short training cannot smooth out.
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, embedding_dim: int = 32,
                 embedding: str = "fourier", fourier_scale: float = 1.0):
        super().__init__()
        self.dim = _checks.positive_int("dim", dim)
        hidden = _checks.positive_int("hidden", hidden)
        depth = _checks.positive_int("depth", depth)
        self.embedding_dim = _checks.positive_int("embedding_dim", embedding_dim)
        if embedding not in ("fourier", "positional"):
            raise ValueError(f"embedding must be 'fourier' or 'positional', got {embedding!r}")
        if embedding_dim < 4 or embedding_dim % 2:
            raise ValueError(f"embedding_dim must be an even integer >= 4, got {embedding_dim!r}")
        _checks.positive("fourier_scale", fourier_scale)
        self.embedding = embedding
        if embedding == "fourier":
            self.fourier = layers.GaussianFourierProjection(embedding_dim // 2, fourier_scale)
        self.embed = nn.Linear(embedding_dim, hidden)
        self.linears = nn.ModuleList([nn.Linear(dim, hidden)] + [nn.Linear(hidden, hidden) for _ in range(depth - 1)])
        self.conds = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.out = nn.Linear(hidden, dim)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, noise_label: torch.Tensor) -> torch.Tensor:
        """Raw output of shape (B, dim); ``noise_label`` of shape (B,) (or a scalar)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got shape {tuple(x.shape)}")
        noise_label = layers.noise_labels(noise_label, x)
        if self.embedding == "fourier":
            e = self.fourier(noise_label.log())
        else:
            e = layers.timestep_embedding(noise_label, self.embedding_dim).to(x.dtype)
        c = self.act(self.embed(e))
        h = x
        for linear, cond in zip(self.linears, self.conds):
            h = self.act(linear(h) + cond(c))
        return self.out(h)
