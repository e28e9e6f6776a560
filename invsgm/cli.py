"""The ``invsgm`` command line: strings become objects here and nowhere else."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .sde import sde_from_config


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    params = {"sigma_max": 20.0} if args.sde == "ve" else {}  # σ_max ≈ the data diameter (Song & Ermon 2020)
    sde = sde_from_config(args.sde, **params)
    figures = demo.main(sde, args.sampler, args.n, args.steps, args.seed, Path(args.out))
    print(json.dumps(figures, indent=2))
    print(f"wrote {args.out} (left: {args.sampler} samples, right: exact samples)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="invsgm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sample a 2-D Gaussian mixture with its exact score and write a PNG")
    demo.add_argument("--sde", choices=["ve", "vp", "subvp"], default="vp")
    demo.add_argument("--sampler", choices=["pc", "ode"], default="pc")
    demo.add_argument("--n", type=int, default=4000, help="number of samples")
    demo.add_argument("--steps", type=int, default=500, help="PC steps")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="out/demo.png")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``invsgm`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"invsgm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
