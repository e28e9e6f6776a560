"""What a run writes: the results folder (created or reused, each input's folder written under a temporary name
and renamed into place), the PNGs of an input, the exact observation, the titled panel, and metrics.json."""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_open
from .inputs import Item

STD_DISPLAY_GAIN = 2.0  # std.png = 2·std: white is 0.5, the largest standard deviation of values in [0, 1]
PANEL_TILE = 96         # panel images are enlarged (nearest, an integer factor) to at least this many pixels wide
PANEL_GAP = 4


# --- the results folder ----------------------------------------------------------------------------------

def prepare_output(out: Path) -> None:
    """Create OUTPUT, or check it is an earlier results folder (or empty) and remove its stale temporaries."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output = {str(out)!r}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "run.yaml").is_file():
        raise ValueError(f"output = {str(out)!r}: the folder is not empty and holds no run.yaml, so it is not a "
                         f"results folder of 'invsgm run'; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        if p.is_dir() and p.name.startswith(".") and re.search(r"\.(tmp|old)-[0-9a-f]{12}$", p.name):
            shutil.rmtree(p, ignore_errors=True)  # left by a killed run
    (out / "metrics.json").unlink(missing_ok=True)  # rewritten at the end of this run


def temporary(out: Path, name: str) -> Path:
    """The hidden temporary name under which input ``name``'s folder is written."""
    return out / f".{name}.tmp-{uuid.uuid4().hex[:12]}"


def commit(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final`` (replacing an earlier one)."""
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def remove_stale(out: Path, names: set[str]) -> None:
    """Remove input folders of an earlier run into ``out`` that this run did not produce."""
    for p in out.iterdir():
        if p.is_dir() and not p.name.startswith(".") and p.name not in names and (p / "mean.png").is_file():
            shutil.rmtree(p, ignore_errors=True)


def write_json(path: Path, value: Any) -> None:
    from ..evaluate import _jsonable

    with atomic_open(path, "w") as f:
        json.dump(_jsonable(value), f, indent=2)
        f.write("\n")


# --- images --------------------------------------------------------------------------------------------------

def quantize(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as written to 8-bit PNGs (the values ``invsgm eval`` reads back)."""
    return torch.round(x.detach().to("cpu", torch.float32).clamp(0, 1) * 255) / 255


def _save_png(path: Path, image: torch.Tensor) -> None:
    """Write a (C, H, W) image in [0, 1], C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), inside a temporary
    folder (no per-file rename needed)."""
    a = (torch.round(image.detach().to("cpu", torch.float32).clamp(0, 1) * 255)).to(torch.uint8)
    a = a.permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(a[..., 0] if a.shape[2] == 1 else a)).save(path, format="PNG")


def save_observation(folder: Path, pixels: torch.Tensor, observed: torch.Tensor | None) -> bool:
    """observation.png: the observation file's pixels (C', h, w), with the observed pixels as its alpha channel
    (alpha 0 = missing) when only some are; and observation.npy (float32 (h, w, C'[+1]), unclamped) when the
    8-bit PNG does not hold the pixels exactly. Returns whether the .npy was written."""
    pixels = pixels.detach().to("cpu", torch.float32)
    if observed is not None:
        pixels = torch.cat([pixels, observed.to(pixels)])
    _save_png(folder / "observation.png", pixels)
    if torch.equal(quantize(pixels), pixels):
        return False
    np.save(folder / "observation.npy", pixels.permute(1, 2, 0).contiguous().numpy(), allow_pickle=False)
    return True


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def panel(columns: list[tuple[str, torch.Tensor]]) -> Image.Image:
    """The images (C, H, W) in [0, 1] side by side under their titles, enlarged so the titles fit."""
    font = _font()
    H, W = max(x.shape[1] for _, x in columns), max(x.shape[2] for _, x in columns)
    scale = max(1, -(-PANEL_TILE // W))
    widths = [max(W * scale, int(np.ceil(font.getlength(t))) + 2 * PANEL_GAP) for t, _ in columns]
    title_h = int(font.getbbox("Ag")[3]) + 2 * PANEL_GAP
    canvas = Image.new("RGB", (sum(widths) + PANEL_GAP * (len(columns) + 1), title_h + H * scale + PANEL_GAP),
                       "white")
    draw = ImageDraw.Draw(canvas)
    left = PANEL_GAP
    for (title, x), width in zip(columns, widths):
        a = (quantize(x) * 255).to(torch.uint8)
        a = a.expand(3, -1, -1) if a.shape[0] == 1 else a[:3]
        tile = Image.fromarray(a.permute(1, 2, 0).contiguous().numpy()).resize((x.shape[2] * scale, x.shape[1] * scale),
                                                                         Image.NEAREST)
        canvas.paste(tile, (left + (width - tile.width) // 2, title_h))
        draw.text((left + (width - font.getlength(title)) / 2, PANEL_GAP), title, fill="black", font=font)
        left += width + PANEL_GAP
    return canvas


# --- one input ------------------------------------------------------------------------------------------------

@dataclass
class Solved:
    """One solved batch in image space, on the CPU."""

    samples: torch.Tensor                   # (b, n, C, H, W) in [0, 1]
    pixels: torch.Tensor | None             # (b, *file_shape): the observation as its file holds it (image units)
    observed: list[torch.Tensor | None]     # per input: (1, h, w) bool, the observed pixels (alpha), or None
    shown: torch.Tensor | None              # (b, C, H, W): the operator's picture of the observation (the panel;
                                            # observation.png when the observation is not an image file)
    baseline: torch.Tensor | None           # (b, C, H, W): the classical method's result
    predicted: list[list[int]] | None       # the classifier's class of each sample at t = 0
    array: Callable[[torch.Tensor], np.ndarray] | None = None  # the .npy array of an observation that is not
                                            # an image (``LinearOperator.write_array``); None: an image file


def _checkered(image: torch.Tensor, observed: torch.Tensor | None) -> torch.Tensor:
    """The missing pixels of ``image`` (C, H, W) shown as a grey checkerboard (for the panel)."""
    if observed is None or tuple(observed.shape[1:]) != tuple(image.shape[1:]):
        return image
    H, W = image.shape[1:]
    i, j = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    checker = torch.where((i // 2 + j // 2) % 2 == 0, 0.55, 0.8).to(image)
    return torch.where(observed.to(torch.bool), image, checker.expand_as(image))


def _metric_pair(x: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    from ..metrics import psnr, ssim

    return {"psnr": psnr(x, truth), "ssim": ssim(x, truth)}


def write_input(folder: Path, item: Item, solved: Solved, k: int) -> dict[str, Any]:
    """Write input k of a solved batch into ``folder`` (a new temporary folder); return its metrics record."""
    (folder / "samples").mkdir(parents=True)
    samples = solved.samples[k]
    n = samples.shape[0]
    smp = quantize(samples)
    mean = quantize(samples.mean(0))
    spread = samples.var(0).mean(0, keepdim=True).sqrt() if n > 1 else torch.zeros_like(mean[:1])
    std = quantize(STD_DISPLAY_GAIN * spread)  # one channel: the RMS over channels of the pixel-wise std
    record: dict[str, Any] = {"name": item.name, "source": item.source}
    if item.files:
        record["files"] = dict(item.files)
    if item.fit:
        record["fit"] = dict(item.fit)
    columns = []  # the panel
    truth = quantize(item.truth) if item.truth is not None else None
    if truth is not None:
        _save_png(folder / "truth.png", truth)
        columns.append(("truth", truth))
    if solved.pixels is not None and solved.array is None:  # an image file
        if save_observation(folder, solved.pixels[k], solved.observed[k]):
            record["observation_npy"] = True
    else:
        if solved.array is not None:  # k-space, sinogram: the array observation mode reads
            np.save(folder / "observation.npy", solved.array(solved.pixels[k]), allow_pickle=False)
            record["observation_npy"] = True
        if solved.shown is not None:  # not an image file: its picture
            _save_png(folder / "observation.png", solved.shown[k])
    if solved.shown is not None:
        columns.append(("observation", _checkered(solved.shown[k], solved.observed[k])))
    base = quantize(solved.baseline[k]) if solved.baseline is not None else None
    if base is not None:
        _save_png(folder / "baseline.png", base)
        columns.append(("baseline", base))
    for j in range(n):
        _save_png(folder / "samples" / f"{j:03d}.png", smp[j])
    _save_png(folder / "mean.png", mean)
    _save_png(folder / "std.png", std)
    columns += [(f"sample {j + 1}", smp[j]) for j in range(n)]
    columns += [("mean", mean), (f"std x{STD_DISPLAY_GAIN:g}", std)]
    if truth is not None:
        record["mean"] = {"n": 1, **_metric_pair(mean, truth)}
        per = [_metric_pair(smp[j], truth) for j in range(n)]
        record["samples"] = {"n": n, **{m: float(np.mean([p[m] for p in per])) for m in ("psnr", "ssim")}}
        if base is not None:
            record["baseline"] = {"n": 1, **_metric_pair(base, truth)}
    if solved.predicted is not None:
        record["label"] = int(item.label)
        record["predicted"] = solved.predicted[k]
    panel(columns).save(folder / "panel.png", format="PNG")
    return record


# --- metrics.json ---------------------------------------------------------------------------------------------

def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method (mean, samples, baseline) PSNR/SSIM over the inputs with a truth; the class accuracy."""
    from ..evaluate import summarize

    rows = [{"input": r["name"], "method": method, "n": r[method]["n"], "psnr": r[method]["psnr"],
             "ssim": r[method]["ssim"], "lpips": None}
            for r in records for method in ("mean", "samples", "baseline") if method in r]
    out = {method: {k: v for k, v in entry.items() if k != "lpips"} for method, entry in summarize(rows).items()}
    labelled = [r for r in records if "predicted" in r]
    if labelled:
        hits = [p == r["label"] for r in labelled for p in r["predicted"]]
        out["class_accuracy"] = {"samples": len(hits), "accuracy": float(np.mean(hits))}
    return out


def format_summary(metrics: Mapping[str, Any]) -> str:
    """The summary of metrics.json as a short text table (PSNR/SSIM per method; class accuracy)."""
    from ..evaluate import format_table

    summary_ = dict(metrics["summary"])
    accuracy = summary_.pop("class_accuracy", None)
    lines = [format_table({m: {**e, "lpips": None} for m, e in summary_.items()})] if summary_ else []
    if accuracy is not None:
        lines.append(f"classifier agrees with the label on {accuracy['accuracy']:.0%} of {accuracy['samples']} "
                     f"samples")
    return "\n".join(lines)


__all__ = ["PANEL_TILE", "STD_DISPLAY_GAIN", "Solved", "commit", "format_summary", "panel", "prepare_output",
           "quantize", "remove_stale", "save_observation", "summary", "temporary", "write_input", "write_json"]
