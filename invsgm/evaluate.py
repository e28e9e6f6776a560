"""Figures of merit of a results folder written by ``invsgm run``: PSNR, SSIM and (optionally) LPIPS.

The folder's layout::

    RESULTS/run.yaml, RESULTS/metrics.json
    RESULTS/<input-name>/truth.png        (when the ground truth is known)
    RESULTS/<input-name>/observation.png  mean.png  std.png
    RESULTS/<input-name>/baseline.png     (the classical baseline of the task, when there is one)
    RESULTS/<input-name>/samples/000.png, 001.png, ...
    RESULTS/<input-name>/panel.png

Every non-hidden sub-folder is an input. Against its truth (``truth.png``, or ``TRUTH_DIR/<input-name>.png``)
three methods are scored: ``mean`` (mean.png), ``samples`` (the average of the per-sample figures over
samples/*.png) and ``baseline`` (baseline.png, when present). The images are read with the truth's
channels: a grey truth compares grey images (RGB files converted to luminance), an RGB truth RGB images.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_open
from .data import load_image
from .metrics import LPIPS, LPIPSUnavailable, psnr, ssim

__all__ = ["METHODS", "METRICS", "evaluate_folder", "summarize", "format_table"]

METHODS = ("mean", "samples", "baseline")
METRICS = ("psnr", "ssim", "lpips")
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def _channels(path: Path) -> int:
    """1 if ``path`` is a grey image file, else 3; unreadable files are errors naming them."""
    try:
        with Image.open(path) as im:
            return 1 if im.mode in _GREY_MODES else 3
    except Exception as err:  # PIL raises many types for bad files
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}") from err


def _read(path: Path, channels: int, truth_path: Path, truth_shape: tuple[int, ...] | None):
    x = load_image(path, channels=channels)
    if truth_shape is not None and tuple(x.shape) != truth_shape:
        raise ValueError(f"{path} has shape {tuple(x.shape)} (C, H, W) but its truth {truth_path} has shape "
                         f"{truth_shape}")
    return x


def _inputs(results: Path) -> list[Path]:
    if not results.is_dir():
        raise ValueError(f"results folder {results} does not exist or is not a folder")
    inputs = sorted(p for p in results.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not inputs:
        raise ValueError(f"{results} has no input sub-folders (RESULTS/<input-name>/mean.png, ...); "
                         "is it a folder written by 'invsgm run'?")
    for folder in inputs:
        if not (folder / "mean.png").is_file():
            raise ValueError(f"input folder {folder} has no mean.png (an unfinished run?)")
    return inputs


def _truth_path(folder: Path, truth_dir: Path | None) -> Path:
    path = truth_dir / f"{folder.name}.png" if truth_dir is not None else folder / "truth.png"
    if not path.is_file():
        where = f"in --truth folder {truth_dir}" if truth_dir is not None else "in its folder"
        raise ValueError(f"no ground truth for input {folder.name!r}: {path} does not exist ({where})")
    return path


def evaluate_folder(results: str | os.PathLike, truth_dir: str | os.PathLike | None = None, lpips: bool = False,
                    out: str = "eval") -> list[dict]:
    """Score every input of ``results`` and write ``RESULTS/<out>.csv`` and ``RESULTS/<out>.json`` atomically.

    Returns one row per input × method: ``{"input", "method", "n", "psnr", "ssim", "lpips"}`` (``n``: the
    number of images averaged; ``psnr`` in dB, ``math.inf`` for an exact match; ``lpips`` None when
    not asked for or unavailable). With ``lpips`` and LPIPS unavailable, the ``LPIPSUnavailable``
    message is printed once to stderr and the rest is computed. Errors (missing folder, no inputs,
    missing truth, unreadable or mismatched images) raise ``ValueError`` naming the file.
    """
    results = Path(results)
    if not out or Path(out).name != out or out in (".", ".."):
        raise ValueError(f"out must be a plain file name stem (written inside {results}), got {out!r}")
    truth_dir = Path(truth_dir) if truth_dir is not None else None
    if truth_dir is not None and not truth_dir.is_dir():
        raise ValueError(f"truth folder {truth_dir} does not exist or is not a folder")
    inputs = _inputs(results)

    lpips_metric = None
    if lpips:
        try:
            lpips_metric = LPIPS().load()
        except LPIPSUnavailable as err:
            print(f"LPIPS not computed: {err}", file=sys.stderr)

    rows = []
    for folder in inputs:
        truth_path = _truth_path(folder, truth_dir)
        channels = _channels(truth_path)
        truth = load_image(truth_path, channels=channels)
        shape = tuple(truth.shape)
        candidates = {"mean": [folder / "mean.png"],
                      "samples": sorted((folder / "samples").glob("*.png")) if (folder / "samples").is_dir() else [],
                      "baseline": [folder / "baseline.png"] if (folder / "baseline.png").is_file() else []}
        for method in METHODS:
            files = candidates[method]
            if not files:
                continue
            scores = {m: [] for m in METRICS}
            for f in files:
                x = _read(f, channels, truth_path, shape)
                scores["psnr"].append(psnr(x, truth))
                scores["ssim"].append(ssim(x, truth))
                if lpips_metric is not None:
                    scores["lpips"].append(lpips_metric(x, truth))
            rows.append({"input": folder.name, "method": method, "n": len(files),
                         **{m: (float(np.mean(v)) if v else None) for m, v in scores.items()}})

    summary = summarize(rows)
    _write_csv(results / f"{out}.csv", rows)
    with atomic_open(results / f"{out}.json", "w") as f:
        json.dump(_jsonable({"results": str(results),
                             "truth": str(truth_dir) if truth_dir is not None else "truth.png of each input",
                             "rows": rows, "summary": summary}), f, indent=2)
        f.write("\n")
    return rows


def summarize(rows: list[dict]) -> dict:
    """Per method: the number of inputs and, per metric, the mean and standard deviation (ddof 0) over inputs
    (None for a metric with no values)."""
    summary = {}
    for method in METHODS:
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue
        entry: dict = {"inputs": len(sel)}
        for m in METRICS:
            v = [r[m] for r in sel if r[m] is not None]
            if not v:
                entry[m] = None
            elif any(math.isinf(a) for a in v):  # an exact match somewhere: the mean is ∞, the spread undefined
                entry[m] = {"mean": math.inf, "std": math.nan}
            else:
                entry[m] = {"mean": float(np.mean(v)), "std": float(np.std(v))}
        summary[method] = entry
    return summary


def format_table(summary: dict) -> str:
    """The summary as a text table: method | inputs | PSNR (dB) | SSIM | LPIPS, each mean ± std over inputs."""
    def cell(entry, digits):
        if entry is None:
            return "n/a"
        if math.isinf(entry["mean"]):
            return "inf"
        return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"

    header = ("method", "inputs", "PSNR (dB)", "SSIM", "LPIPS")
    lines = [header] + [(method, str(e["inputs"]), cell(e["psnr"], 2), cell(e["ssim"], 4), cell(e["lpips"], 4))
                        for method, e in summary.items()]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    fmt = lambda line: " | ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(lines[0]), "-+-".join("-" * w for w in widths)] + [fmt(line) for line in lines[1:]])


def _write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_open(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["input", "method", "n", *METRICS])
        for r in rows:
            values = ("n/a" if r[m] is None else repr(r[m]) for m in METRICS)
            writer.writerow([r["input"], r["method"], r["n"], *values])


def _jsonable(obj):
    """Non-finite floats as the strings 'inf', '-inf', 'nan' (strict JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
