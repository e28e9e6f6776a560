"""Sampler overhead beyond the network: N bare score evaluations vs the PC and ODE samplers.

Prints, for one U-Net on the CPU, the time per score evaluation, the time of each sampler with
N steps, its number of score evaluations, and ratio = sampler time / (evaluations × time per
bare evaluation). A ratio of 1.00 means the sampler adds nothing beyond the network (goal ≤ 1.05).

    python benchmarks/bench_samplers.py [--steps 20] [--batch 16] [--threads 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from invsgm.denoisers import score_sde_denoiser
from invsgm.models.unet import parameter_count, unet_cpu_small
from invsgm.sampling import (default_timesteps, euler_maruyama, langevin, reverse_diffusion, sample_ode,
                             sample_pc)
from invsgm.sde import VPSDE


class Counter(torch.nn.Module):
    """Counts calls of a score model (used once, untimed, to check the evaluation counts)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x, t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sde = VPSDE()
    net = unet_cpu_small(in_channels=3, image_size=32)
    model = score_sde_denoiser(net, sde).eval()
    x0 = sde.prior_sampling((args.batch, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    ts = default_timesteps(sde, args.steps)

    def bare() -> None:
        with torch.no_grad():
            for t in ts[:-1]:
                model(x0, t.expand(args.batch))

    samplers = {
        "PC reverse_diffusion+langevin": lambda m: sample_pc(m, sde, x0, ts, predictor=reverse_diffusion,
                                                             corrector=langevin, generator=torch.Generator().manual_seed(1)),
        "reverse SDE euler_maruyama": lambda m: sample_pc(m, sde, x0, ts, predictor=euler_maruyama, corrector=None,
                                                          generator=torch.Generator().manual_seed(1)),
        "ODE euler": lambda m: sample_ode(m, sde, x0, ts, method="euler"),
        "ODE rk4": lambda m: sample_ode(m, sde, x0, ts, method="rk4"),
    }
    counts = {}
    for name, run in samplers.items():
        counter = Counter(model)
        run(counter)
        counts[name] = counter.calls

    def timed(fn) -> float:
        fn()  # warm-up
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    per_eval = timed(bare) / args.steps
    print(f"U-Net {parameter_count(net) / 1e6:.2f} M parameters, batch {args.batch}, 32x32x3, "
          f"{args.threads} threads, N = {args.steps} steps, median of {args.repeats}")
    print(f"{'bare score evaluation':32s} {per_eval * 1e3:9.1f} ms each, {args.steps} evaluations "
          f"{per_eval * args.steps:7.2f} s")
    print(f"{'sampler':32s} {'time (s)':>9s} {'evals':>6s} {'evals x bare (s)':>17s} {'ratio':>6s}")
    for name, run in samplers.items():
        seconds = timed(lambda: run(model))
        ideal = counts[name] * per_eval
        print(f"{name:32s} {seconds:9.2f} {counts[name]:6d} {ideal:17.2f} {seconds / ideal:6.3f}")


if __name__ == "__main__":
    main()
