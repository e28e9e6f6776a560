"""RePaint (Lugmayr, Danelljan, Romero, Yu, Timofte & Van Gool, CVPR 2022): inpainting with an unconditional model.

Reverse step t → s, with (a, G) = sde.transition(t, s), for a noiseless y = A x with A Aᵀ = I on A's range:
x_u ~ N((x_t + G² s(x_t, t))/a, (G σ_s/σ_t)² I), y_s = α_s y + σ_s A z, x_s = x_u + Aᵀ(y_s − A x_u);
resampling: after every ``jump_length`` steps down, x_t = a x_s + G z back up ``jump_length`` steps (the
paper's ``get_schedule_jump`` on the grid's indices), each block done ``resample`` times; x + Aᵀ(y − A x) at
the end.
"""
from __future__ import annotations

import torch

from .. import _checks
from ..measurement import LinearMeasurement
from ..sampling.pc import check_state
from ..sampling.timesteps import check_timesteps
from ..sde import _bcast
from .base import Solver, SolverResult, noise


def jump_schedule(n_steps: int, jump_length: int, resample: int) -> list[int]:
    """The grid indices RePaint visits, from 0 (t_0 = T) to ``n_steps`` (t_n), each move ±1.

    The paper's ``get_schedule_jump(t_T=n_steps, jump_length, jump_n_sample=resample)`` (andreas128/RePaint,
    ``guided_diffusion/scheduler.py``): DDPM level p = n − 1 − i of grid index i (p = −1 is the end); on
    reaching a level p ∈ {0, L, 2L, ...} below n − L for one of its first ``resample`` − 1 times, go back up
    L levels. So the blocks [p + L → p] are done ``resample`` times, the top steps above the highest such
    block and the last step once; with n ≤ L there is no resampling.
    """
    n = _checks.positive_int("n_steps", n_steps)
    L = _checks.positive_int("jump_length", jump_length)
    r = _checks.positive_int("resample", resample)
    jumps = {p: r - 1 for p in range(0, n - L, L)}
    p = n - 1
    levels = [p]
    while p >= 0:
        p -= 1
        levels.append(p)
        if jumps.get(p, 0) > 0:
            jumps[p] -= 1
            for _ in range(L):
                p += 1
                levels.append(p)
    return [n - 1 - q for q in levels]


class RePaint(Solver):
    """Ancestral steps of the prior on the unknown part, a fresh forward draw of y on the known part, and
    resampling jumps (see module). Needs a noiseless measurement whose operator is a partial isometry (masks,
    the grey axis). Defaults: the paper's jump_length = 10, resample = 10 (with 250 steps there). nfe = the
    number of reverse steps, n + (resample − 1) · jump_length · #blocks.
    """

    name = "repaint"

    def __init__(self, jump_length: int = 10, resample: int = 10):
        self.jump_length = _checks.positive_int("jump_length", jump_length)
        self.resample = _checks.positive_int("resample", resample)

    def check(self, measurement) -> None:
        ok = (isinstance(measurement, LinearMeasurement) and measurement.sigma_y == 0
              and measurement.operator.partial_isometry)
        if not ok:
            raise ValueError(f"RePaint needs noiseless inpainting-type measurements (masks, the grey axis): a "
                             f"LinearMeasurement with sigma_y = 0 whose operator has A Aᵀ = I on its range; "
                             f"got {measurement!r}")

    def schedule(self, n_steps: int) -> list[int]:
        """The grid indices visited on a grid of ``n_steps`` steps (``jump_schedule``)."""
        return jump_schedule(n_steps, self.jump_length, self.resample)

    @torch.no_grad()
    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        self.check(measurement)
        op = measurement.operator
        x = check_state(x)
        ts = check_timesteps(timesteps, sde).to(device=x.device, dtype=x.dtype)
        times = [ts[i].expand(x.shape[0]) for i in range(ts.numel())]
        path = self.schedule(ts.numel() - 1)
        start = denoiser.nfe
        step = 0
        for i, j in zip(path[:-1], path[1:]):
            if j < i:  # forward (noising) jump t_j > t_i: x_{t_j} = a x_{t_i} + G z
                a, G = sde.transition(times[j], times[i])
                x = _bcast(a, x) * x + _bcast(G, x) * noise(x, generator)
                continue
            t, s = times[i], times[j]
            ev = denoiser.evaluate(x, t)
            a, G = sde.transition(t, s)
            _, std_t = sde.marginal_coeffs(t)
            alpha_s, std_s = sde.marginal_coeffs(s)
            x_u = (x + _bcast(G.pow(2), x) * ev.score) / _bcast(a, x) \
                + _bcast(G * std_s / std_t, x) * noise(x, generator)
            y_s = _bcast(alpha_s, y) * y + _bcast(std_s, y) * op(noise(x, generator))
            x = x_u + op.adjoint(y_s - op(x_u))
            if callback is not None:
                callback(step, float(ts[j]), x, ev.x0)
            step += 1
        x = x + op.adjoint(y - op(x))
        return SolverResult(x, denoiser.nfe - start)
