"""Turn a raw network ``net(x, noise_label)`` into a score model ``s(x, t) ≈ ∇log p_t(x)``."""
from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from ..sde import SDE, VESDE, _bcast


class ScoreModel(nn.Module):
    """s(x, t) = raw / σ(t) for VE (NCSN++'s scale by σ) and −raw / σ_t for VP/sub-VP (−ε̂/σ_t).

    The network receives ``sde.noise_level(t)``: σ(t) for VE, 999 t for VP and sub-VP.
    """

    def __init__(self, net: nn.Module, sde: SDE):
        super().__init__()
        self.net, self.sde = net, sde
        self.sign = 1.0 if isinstance(sde, VESDE) else -1.0

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = _checks.time_vector(t, x)
        raw = self.net(x, self.sde.noise_level(t))
        _, std = self.sde.marginal_coeffs(t)
        return raw * _bcast(self.sign / std, raw)
