"""ODE integrators on tensors: fixed-step Euler/Heun/RK4 and adaptive Dormand–Prince RK45."""
from __future__ import annotations

from typing import Callable

import torch

from .. import _checks

ODEFn = Callable[[torch.Tensor, float], torch.Tensor]

# Dormand–Prince 5(4) tableau (the pair used by scipy's RK45), with the 4th-order error weights.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def fixed_step(func: ODEFn, y: torch.Tensor, times: torch.Tensor, method: str = "euler",
               callback: Callable[[int, float, torch.Tensor], None] | None = None) -> tuple[torch.Tensor, int]:
    """Integrate dy/dt = func(y, t) through ``times`` (any direction) with Euler, Heun or RK4.

    Returns (y at times[-1], number of func evaluations).
    """
    if method not in ("euler", "heun", "rk4"):
        raise ValueError(f"method must be 'euler', 'heun' or 'rk4', got {method!r}")
    ts = [float(v) for v in times]
    nfe = 0
    for i, (t, s) in enumerate(zip(ts[:-1], ts[1:])):
        h = s - t
        k1 = func(y, t)
        if method == "euler":
            y, nfe = y + h * k1, nfe + 1
        elif method == "heun":
            k2 = func(y + h * k1, s)
            y, nfe = y + 0.5 * h * (k1 + k2), nfe + 2
        else:
            k2 = func(y + 0.5 * h * k1, t + 0.5 * h)
            k3 = func(y + 0.5 * h * k2, t + 0.5 * h)
            k4 = func(y + h * k3, s)
            y, nfe = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), nfe + 4
        if callback is not None:
            callback(i, s, y)
    return y, nfe


def rk45(func: ODEFn, y: torch.Tensor, t0: float, t1: float, rtol: float = 1e-5, atol: float = 1e-5,
         first_step: float | None = None, max_steps: int = 100_000,
         callback: Callable[[int, float, torch.Tensor], None] | None = None) -> tuple[torch.Tensor, int]:
    """Adaptive Dormand–Prince RK45 for dy/dt = func(y, t) from t0 to t1 (either direction).

    Error control as in scipy: RMS over all elements of err / (atol + rtol·max(|y|, |y_new|)) ≤ 1.
    Returns (y(t1), number of func evaluations).
    """
    _checks.positive("rtol", rtol)
    _checks.positive("atol", atol)
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    h = min(span, first_step if first_step is not None else 0.01 * max(span, 1e-12))
    t, k1 = t0, func(y, t0)
    nfe, step = 1, 0
    while direction * (t1 - t) > 1e-12 * max(1.0, abs(t1)):
        if step >= max_steps:
            raise RuntimeError(f"rk45 did not reach t1={t1} in max_steps={max_steps} steps (at t={t})")
        h = min(h, abs(t1 - t))
        dt = direction * h
        ks = [k1]
        for c, a in zip(_C[1:], _A[1:]):
            yi = y + dt * sum(aj * kj for aj, kj in zip(a, ks) if aj != 0.0)
            ks.append(func(yi, t + c * dt))
        y_new = y + dt * sum(b * k for b, k in zip(_B, ks) if b != 0.0)
        k_new = func(y_new, t + dt)
        nfe += 6
        err = dt * sum(e * k for e, k in zip(_E, ks + [k_new]) if e != 0.0)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        err_norm = (err / scale).pow(2).mean().sqrt().item()
        if err_norm <= 1.0:
            t, y, k1 = t + dt, y_new, k_new  # first-same-as-last: k_new is the next step's k1
            step += 1
            if callback is not None:
                callback(step, t, y)
            factor = 10.0 if err_norm == 0 else min(10.0, 0.9 * err_norm ** -0.2)
        else:
            factor = max(0.2, 0.9 * err_norm ** -0.2)
        h *= factor
    return y, nfe
