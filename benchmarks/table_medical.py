"""MRI and sparse-view CT on held-out phantoms: every score-based solver beside the classical reconstructions.

Problems (Song, Shen, Xing & Ermon, ICLR 2022): single-coil Cartesian MRI at ×4 and ×8 (random lines, a
fully sampled centre band) and parallel-beam CT at 23 and 45 views of 180°, noiseless unless ``--sigma-y``.
For each, on the first ``--count`` held-out phantoms (``invsgm.phantoms``, test split) and the shipped
``phantoms_score`` prior: PSNR / SSIM of the posterior mean of ``--samples`` samples for the paper's solver
(PC + the transform-domain consistency step, λ = 1) and the other solvers that take the operator (ΠGDM·α²
and DPS·α² with ancestral PC steps, DiffPIR; DDRM on MRI only: the Radon transform has no SVD here), beside
zero-filled / FBP and TV; network evaluations and seconds per image. Last column: the correlation, over all
pixels of all test images, of the samples' per-pixel std with the mean's absolute error (does the
uncertainty map point at the errors?).

    python benchmarks/table_medical.py [--count 8] [--samples 4] [--steps 200] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch

from invsgm.baselines import ct_fbp, ct_tv, mri_tv, mri_zero_filled
from invsgm.config.solvers import build_solver, build_timesteps, split_sampler
from invsgm.measurement import LinearMeasurement
from invsgm.metrics import psnr, ssim
from invsgm.operators import MRI, Radon
from invsgm.phantoms import phantoms
from invsgm.pretrained import from_model_space, load_pretrained, to_model_space
from invsgm.solve import solve
from invsgm.solvers import DDRM

PROBLEMS = {"MRI x4": lambda s: MRI(s, acceleration=4), "MRI x8": lambda s: MRI(s, acceleration=8),
            "CT 45 views": lambda s: Radon(s, 45), "CT 23 views": lambda s: Radon(s, 23)}
BASELINES = {MRI: (("zero-filled", mri_zero_filled), ("TV", mri_tv)), Radon: (("FBP", ct_fbp), ("TV", ct_tv))}


PIGDM = {"name": "pigdm", "scale": 4.0, "power": 2.0, "data_variance": 0.25}
NOISE_GRID = {"sigma_max": 10.0, "rho": 7.0}  # steps placed by noise level σ/α from 10 down (as the image table)
# name -> sampler spec as a YAML ``sampler:`` section takes it (``invsgm.config.solvers``); steps and samples come
# from the command line. The best one per problem is what tasks/mri.yaml and tasks/ct.yaml use.
SOLVERS: dict[str, dict] = {
    "PC + consistency (paper, λ = 1)": {"name": "consistency", "lam": 1.0},
    "PC (ancestral) + consistency, λ = 1": {"name": "consistency", "lam": 1.0, "predictor": "ancestral_sampling",
                                            "corrector": "none"},
    "PC + ΠGDM·α²": {"name": "pc", "predictor": "ancestral_sampling", "corrector": "none", "guidance": PIGDM},
    "PC + DPS·α²": {"name": "pc", "predictor": "ancestral_sampling", "corrector": "none",
                    "guidance": {"name": "dps", "scale": 1.0, "power": 2.0}},
    "DiffPIR": {"name": "diffpir", "grid": NOISE_GRID},
    "DDRM": {"name": "ddrm", "grid": NOISE_GRID},
}


def _scores(images: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Mean PSNR / SSIM over the images (B, 1, H, W) in [0, 1]."""
    pairs = list(zip(images, truth))
    return {"psnr": sum(psnr(a, b) for a, b in pairs) / len(pairs), "ssim": sum(ssim(a, b) for a, b in pairs) / len(pairs)}


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def table(model: str = "phantoms_score", count: int = 8, samples: int = 4, steps: int = 200,
          sigma_y: float = 0.0, problems: list[str] | None = None, names: list[str] | None = None,
          seed: int = 0) -> list[dict]:
    """Rows {problem, method, psnr, ssim, nfe, seconds, corr} (see module); baselines have nfe 0."""
    m = load_pretrained(model)
    size = m.card["data"]["image_size"]
    shape = (1, size, size)
    truth = phantoms(count, size=size, split="test").images if size == 64 else phantoms(count, size=size).images
    x = to_model_space(truth, m.card)
    scale = 2.0 if m.card["data"]["centered"] else 1.0
    rows = []
    for problem in problems or list(PROBLEMS):
        op = PROBLEMS[problem](shape)
        meas = LinearMeasurement(op, scale * sigma_y)
        y_img = LinearMeasurement(op, sigma_y).simulate(truth, torch.Generator().manual_seed(0))
        y = scale * y_img - (op(torch.ones_like(truth)) if m.card["data"]["centered"] else 0)
        for name, fn in BASELINES[type(op)]:
            t0 = time.perf_counter()
            rec = fn(op, y_img)
            rows.append(dict(problem=problem, method=name, **_scores(rec, truth), nfe=0,
                             seconds=(time.perf_counter() - t0) / count, corr=None))
            print(_format(rows[-1]), flush=True)
        for name, sampler in SOLVERS.items():
            if names and not any(k in name for k in names):
                continue
            spec, run = split_sampler({**sampler, "steps": steps, "n_samples": samples},
                                      {"steps": steps, "n_samples": samples, "batch_size": 1})
            solver = build_solver(spec)
            try:
                solver.check(meas)
                if isinstance(solver, DDRM):
                    op.svd()
            except (ValueError, NotImplementedError) as err:
                print(f"| {problem} | {name} | — ({str(err).splitlines()[0][:60]}) |", flush=True)
                continue
            t0 = time.perf_counter()
            sol = solve(meas, y, m, solver, n=samples, timesteps=build_timesteps(m.sde, steps, run.get("grid")),
                        seed=seed)
            seconds = (time.perf_counter() - t0) / count
            images = from_model_space(sol.samples.flatten(0, 1), m.card).clamp(0, 1).reshape(sol.samples.shape)
            mean, std = images.mean(1), images.std(1)
            rows.append(dict(problem=problem, method=name, **_scores(mean, truth), nfe=sol.nfe, seconds=seconds, corr=_correlation(std, (mean - truth).abs())))
            print(_format(rows[-1]), flush=True)
    return rows


def _format(r: dict) -> str:
    corr = "" if r["corr"] is None else f"{r['corr']:.2f}"
    return (f"| {r['problem']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['nfe']} | "
            f"{r['seconds']:.1f} | {corr} |")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="phantoms_score")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sigma-y", type=float, default=0.0)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--solvers", default=None, help="comma-separated substrings of solver names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| problem | method | PSNR | SSIM | nfe | s / image | corr(std, error) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    start = time.time()
    rows = table(args.model, args.count, args.samples, args.steps, args.sigma_y, args.problems.split(","),
                 args.solvers.split(",") if args.solvers else None, args.seed)
    print(f"({time.time() - start:.0f} s in all)")
    return rows


if __name__ == "__main__":
    main()
