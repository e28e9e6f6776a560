"""A small DSM training loop for score models on low-dimensional data (Adam, warm-up, EMA).

Not the full trainer: no checkpoints, mixed precision or distributed training.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import _checks
from .losses import dsm_loss
from .sde import SDE

DataSource = torch.Tensor | Callable[[int, torch.Generator | None], torch.Tensor]


@dataclass
class FitResult:
    """Per-step training losses (steps,) and the model to sample with (EMA weights if ema_decay)."""

    losses: torch.Tensor
    ema_model: nn.Module
    wall_time: float


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay θ_ema + (1 − decay) θ; buffers are copied."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def fit_score_model(
    model: nn.Module, sde: SDE, data: DataSource, *, steps: int, batch_size: int, lr: float = 2e-3,
    weighting: str = "paper", ema_decay: float | None = 0.999, warmup: int = 0, cosine_decay: bool = False,
    grad_clip: float | None = 1.0, eps: float | None = None, reduce_mean: bool = False,
    generator: torch.Generator | None = None,
    callback: Callable[[int, float, nn.Module], None] | None = None, progress: bool = False,
) -> FitResult:
    """Minimise the DSM loss of ``model(x, t)`` under ``sde`` with Adam for ``steps`` minibatches.

    ``data`` is a (N, ...) tensor to draw minibatches from (with replacement) or a sampler
    ``data(n, generator)``; batches are cast to the model's dtype and device. The learning rate
    rises linearly over ``warmup`` steps, then stays or (``cosine_decay``) follows ½(1 + cos πu) to 0.
    ``callback(step, loss, model)`` runs after each step. The model is trained in place; the result's
    ``ema_model`` is an EMA copy θ_ema ← d θ_ema + (1 − d) θ, or the model itself if ``ema_decay`` is None.
    """
    steps = _checks.positive_int("steps", steps)
    batch_size = _checks.positive_int("batch_size", batch_size)
    lr = _checks.positive("lr", lr)
    if warmup != 0:
        _checks.positive_int("warmup", warmup)
    if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1) or be None, got {ema_decay!r}")
    if grad_clip is not None:
        grad_clip = _checks.positive("grad_clip", grad_clip)
    if torch.is_tensor(data):
        if data.ndim < 2 or data.shape[0] < 1:
            raise ValueError(f"data must have shape (N, ...) with N >= 1, got {tuple(data.shape)}")
    elif not callable(data):
        raise ValueError(f"data must be a tensor or a callable (n, generator) -> tensor, got {type(data).__name__}")
    param = next(model.parameters(), None)
    if param is None:
        raise ValueError("model has no parameters to train")
    dtype, device = param.dtype, param.device

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine_decay:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    ema = copy.deepcopy(model).requires_grad_(False) if ema_decay is not None else model
    losses = torch.empty(steps)
    model.train()
    start = time.perf_counter()
    iterator = range(steps)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc="fit", leave=False)
    for step in iterator:
        if torch.is_tensor(data):
            idx = torch.randint(data.shape[0], (batch_size,), generator=generator, device=data.device)
            x0 = data[idx]
        else:
            x0 = data(batch_size, generator)
        x0 = x0.to(device=device, dtype=dtype)
        loss = dsm_loss(model, sde, x0, weighting=weighting, eps=eps, generator=generator,
                        reduce_mean=reduce_mean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        if ema_decay is not None:
            _ema_update(ema, model, ema_decay)
        losses[step] = loss.detach()
        if callback is not None:
            callback(step, losses[step].item(), model)
    ema.eval()
    return FitResult(losses=losses, ema_model=ema, wall_time=time.perf_counter() - start)
