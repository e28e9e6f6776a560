"""PSNR / SSIM of the posterior mean beside the classical baseline, for the YAML tasks in ``tasks/``.

Runs ``invsgm run`` on each image task (its own settings: model, sampler, guidance) over the first
``--count`` held-out test patches and prints a markdown table from each run's ``metrics.json``
(8-bit images, as ``invsgm eval`` reads them): the solver, network evaluations per sample, samples per input,
seconds per image (one input's samples, sampler time), the posterior mean and the classical baseline.
Δ = posterior mean − baseline. ``--set`` is passed to every run (e.g. ``--set model.pretrained=NAME``).

    python benchmarks/table_tasks.py [--count 8] [--out out/table] [--tasks inpaint,colorize,...] [--set K=V ...]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from invsgm.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
TASKS = {  # YAML stem -> (problem, baseline)
    "inpaint_random": ("inpainting, 70 % random pixels missing", "biharmonic"),
    "inpaint": ("inpainting, 16×16 box missing", "biharmonic"),
    "colorize": ("colorization", "grey"),
    "super_resolution": ("super-resolution ×2", "bicubic"),
    "super_resolution_x4": ("super-resolution ×4", "bicubic"),
    "deblur": ("deblurring (σ 1.5 px, 9×9, σ_y 0.01)", "Wiener"),
    "denoise": ("denoising (σ_y 0.1)", "TV"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="held-out test patches per task")
    parser.add_argument("--out", default="out/table")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, start = [], time.time()
    for stem in args.tasks.split(","):
        out = Path(args.out) / stem
        sets = [a for kv in (f"inputs.count={args.count}", *args.set) for a in ("--set", kv)]
        code = cli(["run", str(ROOT / "tasks" / f"{stem}.yaml"), "--out", str(out), *sets])
        if code:
            raise SystemExit(f"invsgm run tasks/{stem}.yaml failed with status {code}")
        rows.append((stem, json.loads((out / "metrics.json").read_text()),
                     yaml.safe_load((out / "run.yaml").read_text())))
    print(f"\n{args.count} held-out test patches per task, {time.time() - start:.0f} s\n")
    print("| task | solver | nfe | samples | s / image | posterior mean PSNR / SSIM | baseline | baseline PSNR / SSIM "
          "| Δ PSNR |")
    print("|---|---|---:|---:|---:|---|---|---|---:|")
    for stem, metrics, config in rows:
        problem, baseline = TASKS[stem]
        m, b = metrics["summary"]["mean"], metrics["summary"]["baseline"]
        print(f"| {problem} (`tasks/{stem}.yaml`) | {_solver(config['sampler'])} | {metrics['nfe_per_sample']} | "
              f"{metrics['n_samples']} | {metrics['sampling_seconds'] / metrics['n_inputs']:.1f} | "
              f"{m['psnr']['mean']:.2f} / {m['ssim']['mean']:.3f} | {baseline} | "
              f"{b['psnr']['mean']:.2f} / {b['ssim']['mean']:.3f} | {m['psnr']['mean'] - b['psnr']['mean']:+.2f} |")


def _solver(sampler: dict) -> str:
    """A short name of a sampler section: 'PC + pigdm (scale 4, power 2)', 'diffpir', ..."""
    name = sampler["name"]
    guidance = sampler.get("guidance")
    if isinstance(guidance, dict):
        extra = ", ".join(f"{k} {v:g}" for k, v in guidance.items() if k in ("scale", "power"))
        return f"{name} + {guidance['name']}" + (f" ({extra})" if extra else "")
    return name


if __name__ == "__main__":
    main()
