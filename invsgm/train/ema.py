"""Exponential moving average of a network's weights, updated with one fused ``foreach`` call per step."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """θ_ema ← d θ_ema + (1 − d) θ after each optimiser step; the EMA weights are the ones sampled and exported.

    ``module`` is a frozen copy of the network in eval mode. Only trainable floating-point parameters are
    averaged (one ``torch._foreach_lerp_`` over the parameter lists, no per-tensor Python loop); frozen
    parameters (e.g. fixed Fourier frequencies) never change, and floating-point buffers are copied.
    """

    def __init__(self, net: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.module = copy.deepcopy(net).eval().requires_grad_(False)
        pairs = [(pe, p) for pe, p in zip(self.module.parameters(), net.parameters())
                 if p.requires_grad and p.is_floating_point()]
        self._ema = [pe for pe, _ in pairs]
        self._src = [p for _, p in pairs]
        buffers = [(be, b) for be, b in zip(self.module.buffers(), net.buffers()) if b.is_floating_point()]
        self._ema_buffers = [be for be, _ in buffers]
        self._src_buffers = [b for _, b in buffers]

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step towards the current weights of the network given at construction."""
        if self._ema:
            torch._foreach_lerp_(self._ema, self._src, 1.0 - self.decay)
        if self._ema_buffers:
            torch._foreach_copy_(self._ema_buffers, self._src_buffers)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
