"""Train the photos prior (configs/photos_score.yaml) at a larger size on one GPU within a wall-time budget.

    python benchmarks/train_photos_gpu.py                      # ≤ 8 min on one GPU → runs/photos_score_gpu/
    python benchmarks/train_photos_gpu.py --budget 1200        # more time, more steps
    python benchmarks/train_photos_gpu.py --tiny --device cpu  # a check that it runs (tiny net, a few steps)

Same data source ('photo_crops': fresh multi-scale crops every step, test photographs held out), SDE and
objective as the CPU config; a larger U-Net (nf 64, ch_mult [1, 2, 2, 2], 2 res blocks, attention at 16×16,
8.8 M parameters), batch 128, float16 autocast, 8 data workers. The number of steps is fitted to the budget in
two phases of one run, which the loop's exact resume makes the same as a straight run of that many
steps (up to the GPU's floating-point nondeterminism):

1. ``--probe`` steps (default 300) with a checkpoint at the end: they give the seconds per step (from
   ``log.csv``, leaving out the first 100 steps: start-up, CUDA and autocast warm-up) and the time of the
   final sample grid + export;
2. the same output folder again with ``training.steps`` = probe + what the rest of the budget allows (less
   the grid and a safety margin), rounded down to a multiple of 100 (``training.steps`` may change on resume).

The export (``OUTPUT/pretrained``: EMA weights, ``card.yaml``, ``samples.png``) records the equivalent
single command, ``invsgm train score configs/photos_score.yaml --set ... --set training.steps=N --out OUTPUT``.
"""
from __future__ import annotations

import argparse
import csv
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from invsgm.train import load_config, parse_overrides, train_score  # noqa: E402

CONFIG = ROOT / "configs" / "photos_score.yaml"

# The larger model and the GPU's training settings (everything else as in configs/photos_score.yaml).
GPU = {
    "model.nf": 64, "model.ch_mult": [1, 2, 2, 2], "model.num_res_blocks": 2, "model.attn_resolutions": [16],
    "model.dropout": 0.0,
    "data.length": 4194304,  # 2**22 distinct crops: more than ~8 min of batches of 128 consume
    "training.batch_size": 128, "training.lr": 5.0e-4, "training.warmup": 500, "training.ema_decay": 0.999,
    "training.amp": True, "training.num_workers": 8, "training.checkpoint_every": 1000,
    "training.log_every": 50, "training.sample_every": 0, "training.n_samples": 64, "training.sample_steps": 500,
}
# --tiny: a check on the CPU that the script runs end to end (a tiny net, a few steps, a tiny grid).
TINY = {
    "model.nf": 8, "model.ch_mult": [1, 2], "model.num_res_blocks": 1, "model.attn_resolutions": [],
    "model.dropout": 0.0, "data.length": 4096, "training.batch_size": 8, "training.warmup": 2,
    "training.amp": True, "training.num_workers": 2, "training.checkpoint_every": 1000, "training.log_every": 2,
    "training.sample_every": 0, "training.n_samples": 4, "training.sample_steps": 2,
}
WARM_UP_STEPS = 100  # probe steps left out of the seconds-per-step estimate (GPU mode)


def _yaml(value) -> str:
    """A value as ``--set`` writes it (YAML flow style)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(_yaml, value)) + "]"
    return str(value)


def command(overrides: dict, out: Path) -> str:
    """The single ``invsgm train`` command equivalent to the two phases."""
    argv = ["invsgm", "train", "score", "configs/photos_score.yaml"]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={_yaml(value)}"]
    return shlex.join(argv + ["--out", str(out)])


def seconds_per_step(log: Path, skip: int) -> float:
    """Seconds per step between the log rows at ``skip`` (or the first row) and the last row of ``log``."""
    rows = [(int(r["step"]), float(r["seconds"])) for r in csv.DictReader(open(log))]
    start = next((r for r in rows if r[0] >= skip), rows[0])
    if rows[-1][0] == start[0]:
        start = (0, 0.0)
    return (rows[-1][1] - start[1]) / (rows[-1][0] - start[0])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=450.0,
                        help="wall seconds for the whole script, start-up to export (default 450: 7.5 min)")
    parser.add_argument("--margin", type=float, default=0.08, help="share of the remaining budget kept in reserve")
    parser.add_argument("--probe", type=int, default=None, help="steps of phase 1 (default 300; --tiny: 4)")
    parser.add_argument("--max-steps", type=int, default=None, help="an upper bound on the steps (--tiny: 8)")
    parser.add_argument("--out", type=Path, default=Path("runs/photos_score_gpu"))
    parser.add_argument("--device", default=None, help="default: cuda if available, else the CPU")
    parser.add_argument("--tiny", action="store_true", help="tiny net and a few steps: a check that it runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.SUB=VALUE",
                        help="a further config override (YAML value), e.g. --set training.batch_size=256")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.tiny:
        parser.error("no CUDA device: this script sizes a run for one GPU (use --tiny for a check on the CPU)")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    probe = args.probe if args.probe is not None else (4 if args.tiny else 300)
    skip = 2 if args.tiny else WARM_UP_STEPS
    overrides = {**(TINY if args.tiny else GPU), **parse_overrides(args.set)}
    config = load_config(CONFIG, overrides, output=args.out)
    if (args.out / "checkpoint.pt").exists():
        parser.error(f"{args.out} already holds a run; choose another --out")

    # phase 1: the probe, a prefix of the final run
    first = train_score(config.with_overrides({"training.steps": probe}), device=device)
    per_step = seconds_per_step(first.log, skip)
    elapsed = time.perf_counter() - start
    grid = max(0.0, elapsed - first.seconds)  # start-up + sample grid + export (an over-estimate of the grid)
    left = (args.budget - elapsed - grid) * (1 - args.margin)
    unit = 1 if args.tiny else 100
    steps = probe + max(0, int(left / per_step) // unit * unit)
    max_steps = args.max_steps if args.max_steps is not None else (8 if args.tiny else None)
    if max_steps is not None:
        steps = max(probe, min(steps, max_steps))
    print(f"[phase 1] {probe} steps, {per_step * 1e3:.1f} ms/step on {device}; {elapsed:.0f} s elapsed, "
          f"{grid:.0f} s outside training; training to {steps} steps", flush=True)

    # phase 2: the same run resumed to the fitted number of steps
    result = train_score(config.with_overrides({"training.steps": steps}), device=device,
                         command=command({**overrides, "training.steps": steps}, args.out))
    total = time.perf_counter() - start
    print(f"[done] {result.steps} steps (resumed from {result.start_step}), final loss {result.final_loss:.4g}, "
          f"{total:.0f} s in all (budget {args.budget:.0f} s); exported {result.pretrained}", flush=True)
    return {"steps": result.steps, "seconds_per_step": per_step, "total_seconds": total,
            "pretrained": str(result.pretrained), "final_loss": result.final_loss}


if __name__ == "__main__":
    main()
