"""Throughput of full-size models on a GPU: ADM ``ffhq_10m`` posterior sampling and score_sde CIFAR-10 PC.

Random weights at the official width (timing does not depend on the values):

- ``ffhq_10m`` (93.6 M parameters, 256×256) on ×4 super-resolution with σ_y = 0.05: DPS (PC, ancestral
  steps, 1000 steps: one forward and one backward pass each) and DiffPIR (100 steps), batch 1 and 8,
  float32 and bfloat16 autocast (``--dtypes float32 bfloat16 float16``);
- ``ve/cifar10_ncsnpp_continuous`` (NCSN++, 61.8 M parameters, 32×32): the paper's PC sampler (reverse
  diffusion + one Langevin step, 1000 steps = 2000 evaluations), batch 64.

Each configuration runs for at most ``--budget`` seconds after one warm-up step; a run cut short prints
the seconds per step it measured and the full run's time extrapolated from it (marked ``*``). It prints
seconds per image and images per second for the full number of steps; DPS's paper reports about 150 s
per FFHQ image on an A6000. ``--tiny`` runs every configuration at a reduced width and 4 steps on the
CPU (what the tests run). The whole default run is sized to stay under 8 minutes on one H200.

    python benchmarks/bench_gpu.py [--budget 40] [--dtypes float32 bfloat16] [--json OUT.json] [--tiny]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import asdict, dataclass

import torch

from invsgm.adm import preset_card as adm_card
from invsgm.denoisers import NetworkDenoiser, score_sde_denoiser
from invsgm.guidance import DPS
from invsgm.measurement import LinearMeasurement
from invsgm.models.build import build_model
from invsgm.official import preset_card as score_sde_card
from invsgm.operators import AvgPool
from invsgm.sampling import ancestral_sampling, default_timesteps
from invsgm.sde import sde_from_config
from invsgm.solvers import PC, DiffPIR

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Row:
    model: str
    method: str
    batch: int
    dtype: str
    steps: int            # steps of the full run
    steps_timed: int      # steps actually timed (after the warm-up step)
    seconds_per_step: float
    seconds_per_image: float
    images_per_second: float
    extrapolated: bool


class _Budget(Exception):
    """Raised by the step callback when a configuration has used its time."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(run, steps: int, batch: int, budget: float, device: torch.device) -> tuple[int, float, bool]:
    """(steps timed, seconds per step, cut short) of ``run(callback)``; step 0 is the warm-up."""
    marks: list[float] = []

    def callback(i, t, x, x0):
        _sync(device)
        marks.append(time.perf_counter())
        if marks[-1] - marks[0] > budget:
            raise _Budget

    try:
        run(callback)
        cut = False
    except _Budget:
        cut = True
    timed = len(marks) - 1
    return timed, (marks[-1] - marks[0]) / max(timed, 1), cut


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def ffhq_rows(device, dtypes, batches, budget, tiny: bool) -> list[Row]:
    overrides = dict(model_channels=32, num_head_channels=16) if tiny else {}
    card = adm_card("ffhq_10m", **overrides)
    net = build_model(**card["model"]).to(device).eval()
    sde = sde_from_config(**card["sde"])
    den = NetworkDenoiser(net, sde, **card["denoiser"])
    size = card["data"]["image_size"]
    shape = (3, size, size)
    meas = LinearMeasurement(AvgPool(4, shape), 0.1)  # σ_y = 0.05 in [0, 1] pixels, doubled for [−1, 1]
    methods = {"DPS": (PC(guidance=DPS(scale=1.0), predictor=ancestral_sampling, corrector=None), 1000),
               "DiffPIR": (DiffPIR(), 100)}
    rows = []
    for method, (solver, steps) in methods.items():
        steps = 4 if tiny else steps
        ts = default_timesteps(sde, steps)
        for batch in batches:
            g = torch.Generator(device).manual_seed(0)
            x_true = torch.rand((batch, *shape), generator=g, device=device) * 2 - 1
            y = meas.simulate(x_true, g)
            for name in dtypes:
                x = torch.randn((batch, *shape), generator=g, device=device)

                def run(callback):
                    with torch.no_grad(), _autocast(device, DTYPES[name]):
                        solver(den, sde, meas, y, x, ts, generator=g, callback=callback)
                rows.append(_row("ffhq_10m", method, batch, name, steps, budget, device, run))
                print(_format(rows[-1]), flush=True)
    return rows


def cifar_rows(device, dtypes, batch, budget, tiny: bool) -> list[Row]:
    card = score_sde_card("ve/cifar10_ncsnpp_continuous", **(dict(nf=16, num_res_blocks=1) if tiny else {}))
    net = build_model(**card["model"]).to(device).eval()
    sde = sde_from_config(**card["sde"])
    den = score_sde_denoiser(net, sde)
    steps = 4 if tiny else 1000
    ts = default_timesteps(sde, steps)
    rows = []
    for name in dtypes:
        g = torch.Generator(device).manual_seed(0)
        x = sde.prior_sampling((batch, 3, 32, 32), generator=g, device=device)

        def run(callback):
            with torch.no_grad(), _autocast(device, DTYPES[name]):
                PC()(den, sde, None, None, x, ts, generator=g, callback=callback)
        rows.append(_row("ve/cifar10_ncsnpp_continuous", "PC (RD + Langevin)", batch, name, steps, budget, device,
                         run))
        print(_format(rows[-1]), flush=True)
    return rows


def _row(model, method, batch, dtype, steps, budget, device, run) -> Row:
    timed, per_step, cut = _time(run, steps, batch, budget, device)
    total = per_step * steps
    return Row(model, method, batch, dtype, steps, timed, per_step, total / batch, batch / total, cut)


def _format(r: Row) -> str:
    star = "*" if r.extrapolated else " "
    return (f"| {r.model} | {r.method} | {r.batch} | {r.dtype} | {r.steps} | {r.steps_timed} | "
            f"{r.seconds_per_step * 1e3:.1f} | {r.seconds_per_image:.2f}{star} | {r.images_per_second:.3f}{star} |")


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=40.0, help="seconds per configuration (after warm-up)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--cifar-batch", type=int, default=64)
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--tiny", action="store_true", help="reduced width, 4 steps (CPU check)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # true float32 for the float32 rows
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}")
    print("| model | method | batch | dtype | steps | steps timed | ms / step | s / image | images / s |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    start = time.perf_counter()
    rows = ffhq_rows(device, args.dtypes, args.batches, args.budget, args.tiny)
    rows += cifar_rows(device, args.dtypes, args.cifar_batch, args.budget, args.tiny)
    print(f"(* extrapolated from the steps timed; total {time.perf_counter() - start:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return rows


if __name__ == "__main__":
    main()
