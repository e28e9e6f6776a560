"""Peak memory and throughput of ``invsgm run`` over 100 and 1,000 input images.

Each size runs in a fresh process (peak RSS from getrusage); inputs are 32×32 PNG patches of the
held-out photographs written to a temporary folder. ``invsgm run`` reads, solves and writes one
batch at a time, so the peak should not grow with the number of inputs (goal: within 10 %).

    python benchmarks/bench_run_memory.py [--sizes 100 1000] [--steps 5] [--batch 25]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads({threads})
from invsgm.cli import main
start = time.time()
code = main({argv!r})
print("RESULT " + json.dumps({{"code": code, "seconds": time.time() - start,
      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def write_inputs(folder: Path, n: int) -> None:
    """n distinct 32×32 PNGs: held-out test patches, each shifted and flipped differently."""
    import torch

    from invsgm.data import image_grid, photos
    from invsgm.imageio import write_png

    patches = photos(split="test").images  # (80, 3, 32, 32) in [0, 1]
    for i in range(n):
        img = patches[i % len(patches)]
        img = torch.roll(img, shifts=(i // len(patches)) % 32, dims=2)
        if (i // len(patches)) % 2:
            img = img.flip(2)
        write_png(folder / f"img_{i:05d}.png", image_grid(img[None], nrow=1, padding=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=5, help="sampler steps (memory does not depend on them)")
    parser.add_argument("--batch", type=int, default=25, help="inputs per batch")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            inputs = tmp / f"in_{n}"
            inputs.mkdir()
            write_inputs(inputs, n)
            argv = ["run", str(ROOT / "tasks" / "inpaint.yaml"), "--input", str(inputs), "--out", str(tmp / f"out_{n}"),
                    "--set", f"sampler.steps={args.steps}", "--set", "sampler.n_samples=1",
                    "--set", f"sampler.batch_size={args.batch}", "--set", "sampler.corrector=none",
                    "--set", f"inputs.count={n}"]
            proc = subprocess.run([sys.executable, "-c", CHILD.format(threads=args.threads, argv=argv)],
                                  capture_output=True, text=True, cwd=ROOT)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line or json.loads(line[-1][7:])["code"]:
                sys.exit(f"invsgm run over {n} inputs failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            r = json.loads(line[-1][7:])
            results[n] = r
            print(f"{n:5d} inputs: peak RSS {r['peak_mb']:.0f} MB, {r['seconds']:.1f} s, "
                  f"{n / r['seconds']:.1f} images/s ({args.steps} steps, batch {args.batch}, 1 sample)")
    if len(results) >= 2:
        lo, hi = min(results), max(results)
        ratio = results[hi]["peak_mb"] / results[lo]["peak_mb"]
        print(f"peak memory {hi} / {lo} inputs: {ratio:.3f} (goal: within 10 %, i.e. <= 1.10)")


if __name__ == "__main__":
    main()
