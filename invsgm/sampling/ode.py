"""Probability-flow ODE sampling: dx/dt = f(x, t) − ½ g(t)² ∇log p_t(x), integrated from T down to eps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..sde import SDE, ScoreFn
from . import integrate
from .pc import Callback, check_state, tweedie_denoise
from .timesteps import check_timesteps


@dataclass
class ODESample:
    """Samples ``x`` and the number ``nfe`` of score evaluations that produced them."""

    x: torch.Tensor
    nfe: int


def _flow(score_fn: ScoreFn, sde: SDE) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """The probability-flow drift as ``func(y, t)`` of a float time, for the integrators."""
    reverse = sde.reverse(score_fn, probability_flow=True)

    def func(y: torch.Tensor, t: float) -> torch.Tensor:
        return reverse.sde(y, torch.full((y.shape[0],), t, dtype=y.dtype, device=y.device))[0]

    return func


def _with_progress(callback: Callback | None, progress: bool, total: float, desc: str,
                   t_start: float) -> tuple[Callback | None, Callable[[], None]]:
    """Wrap ``callback`` so that it also advances a tqdm bar over the time span; returns (callback, close)."""
    if not progress:
        return callback, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} [{elapsed}{postfix}]")
    last = [t_start]

    def wrapped(i: int, t: float, x: torch.Tensor) -> None:
        bar.set_postfix_str(f"t={t:.4g}", refresh=False)
        bar.update(abs(last[0] - t))
        last[0] = t
        if callback is not None:
            callback(i, t, x)

    return wrapped, bar.close


@torch.no_grad()
def sample_ode(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, timesteps: torch.Tensor | Sequence[float], *,
               method: str = "rk4", denoise: bool = True, callback: Callback | None = None,
               progress: bool = False) -> torch.Tensor:
    """Integrate the probability-flow ODE through ``timesteps`` with fixed-step Euler, Heun or RK4.

    Returns Tweedie's denoised mean at timesteps[-1] if ``denoise`` (one more score evaluation);
    ``callback(i, t, x)`` runs after step i with t = timesteps[i+1] as a float.
    """
    x = check_state(x)
    ts = check_timesteps(timesteps, sde)
    t0, t1 = float(ts[0]), float(ts[-1])
    cb, close = _with_progress(callback, progress, t0 - t1, f"ODE ({method})", t0)
    try:
        x, _ = integrate.fixed_step(_flow(score_fn, sde), x, ts, method=method, callback=cb)
    finally:
        close()
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, torch.full((x.shape[0],), t1, dtype=x.dtype, device=x.device))
    return x


@torch.no_grad()
def sample_ode_adaptive(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, t_start: float | None = None,
                        t_end: float | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                        denoise: bool = True, callback: Callback | None = None,
                        progress: bool = False) -> ODESample:
    """Integrate the probability-flow ODE from t_start (sde.T) to t_end (sde.eps) with adaptive RK45.

    ``nfe`` counts every score evaluation, the Tweedie denoising one included; ``callback(i, t, x)``
    runs after each accepted step i = 0, 1, ... with its time t as a float.
    """
    x = check_state(x)
    t0 = sde.T if t_start is None else float(t_start)
    t1 = sde.eps if t_end is None else float(t_end)
    if not 0.0 < t0 <= sde.T:
        raise ValueError(f"t_start must lie in (0, T={sde.T}], got {t_start!r}")
    if not 0.0 <= t1 < t0:
        raise ValueError(f"t_end must lie in [0, t_start={t0}), got {t_end!r}")
    cb, close = _with_progress(callback, progress, t0 - t1, "ODE (RK45)", t0)
    step_cb = None if cb is None else (lambda i, t, y: cb(i - 1, t, y))  # rk45 counts steps from 1
    try:
        x, nfe = integrate.rk45(_flow(score_fn, sde), x, t0, t1, rtol=rtol, atol=atol, callback=step_cb)
    finally:
        close()
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, torch.full((x.shape[0],), t1, dtype=x.dtype, device=x.device))
        nfe += 1
    return ODESample(x, nfe)
