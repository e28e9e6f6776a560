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


def _train(args: argparse.Namespace) -> int:
    from .train.config import load_config
    from .train.loop import TASKS, command_line

    config = load_config(args.config, args.set or [], output=args.out)
    result = TASKS[args.task](config, command=command_line(args.argv))
    if result.pretrained is not None:  # rank 0
        print(f"trained {result.steps} steps (from step {result.start_step}) in {result.seconds:.1f} s; "
              f"final loss {result.final_loss:.4g}; exported {result.pretrained}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_folder, format_table, summarize

    rows = evaluate_folder(args.results, truth_dir=args.truth, lpips=args.lpips, out=args.out)
    print(format_table(summarize(rows)))
    print(f"wrote {Path(args.results, args.out + '.csv')} and {Path(args.results, args.out + '.json')}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .run import format_summary, load_run_config, run

    try:
        config = load_run_config(args.config, args.set or [], input_path=args.input, observation=args.observation,
                                 mask=args.mask, truth=args.truth, fit=args.fit, out=args.out, seed=args.seed)
        result = run(config)
    except ImportError as err:  # an optional extra (torchvision, a task plugin's dependency) is missing
        print(f"invsgm run: error: a module is missing: {err} (optional extras: pip install -e \".[vision]\"; "
              f"a task plugin: install its package)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("invsgm run: interrupted; finished inputs are kept, the unfinished one was removed", file=sys.stderr)
        return 130
    if result.metrics["summary"]:
        print(format_summary(result.metrics))
    print(f"wrote {result.output} ({result.metrics['n_inputs']} inputs; metrics.json, run.yaml)")
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
    train = sub.add_parser(
        "train", help="train a score model or a noise-conditional classifier from a YAML config",
        description="Train from a YAML config (sections data, sde, model, training, output); rerunning the same "
                    "command resumes from OUTPUT/checkpoint.pt. Multi-GPU / multi-process: the same command under "
                    "'torchrun --nproc_per_node N -m invsgm.cli train ...'.")
    train.add_argument("task", choices=["score", "classifier"], help="what to train")
    train.add_argument("config", help="YAML config file")
    train.add_argument("--set", action="append", metavar="KEY.SUB=VALUE",
                       help="override a config value (YAML syntax), e.g. --set training.steps=500; repeatable")
    train.add_argument("--out", default=None, help="output folder (overrides the config's 'output')")
    train.set_defaults(func=_train)
    evaluate = sub.add_parser(
        "eval", help="PSNR / SSIM / LPIPS of a results folder written by 'invsgm run'",
        description="Score mean.png, the samples and baseline.png of every RESULTS/<input-name>/ against its "
                    "truth.png (or DIR/<input-name>.png with --truth); write RESULTS/NAME.csv and "
                    "RESULTS/NAME.json and print a summary table.")
    evaluate.add_argument("results", metavar="RESULTS", help="results folder written by 'invsgm run'")
    evaluate.add_argument("--truth", metavar="DIR", default=None,
                          help="folder of ground truths DIR/<input-name>.png (default: RESULTS/<input-name>/truth.png)")
    evaluate.add_argument("--lpips", action="store_true",
                          help="also compute LPIPS (needs the 'vision' extra and AlexNet weights; never downloads)")
    evaluate.add_argument("--out", metavar="NAME", default="eval",
                          help="output file stem inside RESULTS (default: eval)")
    evaluate.set_defaults(func=_eval)
    run = sub.add_parser(
        "run", help="solve an inverse problem (or class-conditional generation) described by a YAML file",
        description="Read a task YAML (model, sde, task, sampler, inputs, output, seed, device; see tasks/*.yaml and "
                    "invsgm/run.py), solve every input and write OUTPUT/<input-name>/ (truth, observation, samples, "
                    "mean, std, baseline, panel), OUTPUT/metrics.json and OUTPUT/run.yaml. The inputs are clean "
                    "images whose observations are simulated (the YAML's inputs, --input) or observed images "
                    "(--observation, with --mask for inpainting and --truth for PSNR/SSIM). Relative paths are "
                    "resolved against the current directory.")
    run.add_argument("config", metavar="FILE.yaml", help="task YAML file, e.g. tasks/inpaint.yaml")
    run.add_argument("--set", action="append", metavar="KEY.SUB=VALUE",
                     help="override a value (YAML syntax), e.g. --set sampler.steps=50 or "
                          "--set task.mask.box=[0,0,16,16]; list entries by index (sampler.guidance.0.scale=2); repeatable")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="PATH", default=None,
                        help="clean images (a file or a folder) instead of the YAML's inputs; the run simulates "
                             "their observations (benchmarks)")
    source.add_argument("--observation", metavar="PATH", default=None,
                        help="observed images (a file or a folder; .npy too) instead of the YAML's inputs: the "
                             "degraded image, the low-resolution image (super-resolution), the grey image "
                             "(colorization), the image with missing pixels (inpainting)")
    run.add_argument("--mask", metavar="PATH", default=None,
                     help="inpainting with --observation: a mask file for every observation, or a folder of masks "
                          "with the observations' names; WHITE = MISSING (without it: the image's alpha channel, "
                          "alpha 0 = missing, or the task's mask)")
    run.add_argument("--truth", metavar="PATH", default=None,
                     help="with --observation: the clean images (a file, or a folder with the observations' names), "
                          "for PSNR / SSIM in metrics.json")
    fit = run.add_mutually_exclusive_group()
    fit.add_argument("--resize", dest="fit", action="store_const", const="resize", default=None,
                     help="fit images of another size: the centre part of the needed aspect ratio, resized "
                          "(antialiased bicubic); YAML inputs.fit: resize")
    fit.add_argument("--crop", dest="fit", action="store_const", const="crop",
                     help="fit larger images of another size by their centre; YAML inputs.fit: crop")
    run.add_argument("--out", metavar="DIR", default=None, help="output folder (overrides the YAML's 'output')")
    run.add_argument("--seed", type=int, default=None, help="random seed (overrides the YAML's 'seed')")
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``invsgm`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"invsgm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
