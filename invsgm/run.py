"""``invsgm run TASK.yaml``: solve an inverse problem (or a class-conditional generation) on a set of inputs.

The YAML file (every key checked; an unknown key, a wrong type or an unknown name raises a
``ValueError`` naming the key, the value and what was expected)::

    model: {pretrained: photos_score}       # a shipped name or a model folder, or a checkpoint you hold
                                            # (invsgm.config.models): {score_sde_checkpoint: PATH, preset: NAME,
                                            # overrides: {nf: 16}, ema: true} | {adm_checkpoint: PATH, preset: NAME,
                                            # overrides: {...}} | {diffusers: FOLDER}; class_label: K for a
                                            # class-conditional network (ADM's ImageNet models)
    sde: vp                                 # optional: ve | vp | subvp | discrete_vp or {kind: vp, beta_min: ...}
    task: {name: inpaint, mask: {box: [8, 8, 16, 16]}}   # what was observed (invsgm.config.tasks), or a list
    sampler:                                # how the posterior is sampled (invsgm.config.solvers)
      name: pc                              # pc | smc | ddrm | diffpir | daps | repaint | ddim | ddpm | a plugin
      steps: 200                            # steps of the time grid
      n_samples: 4                          # independent posterior samples per input
      batch_size: 8                         # inputs solved together (read, solved and written one batch at a time)
      grid: {sigma_max: 10, rho: 7}         # optional: steps placed by the noise level σ/α (default: uniform in t),
                                            # or {respacing: ddim50}: ADM's respaced steps (steps is then ignored)
      guidance: auto                        # pc / smc: {name: pigdm, scale: 2, power: 2, data_variance: 0.25} |
                                            # {name: dps, ...} | {name: replacement} | {name: classifier, scale: 2}
                                            # | a list, one per task of a list; auto: replacement for noiseless
                                            # masks and colorization, ΠGDM otherwise, the classifier for labels
      predictor: reverse_diffusion          # pc: euler_maruyama | reverse_diffusion | ancestral_sampling | none
      corrector: langevin                   # pc: langevin | annealed_langevin | none
      # ... and every other constructor argument of the solver (snr, n_particles, eta, lam, zeta, ...)
    inputs: {dataset: photos_test, count: 4}  # photos_test | digits_test (held-out test images), or
                                            # {path: FILE_OR_FOLDER, count: N}; class tasks: {labels: [0, 1, ...]}
    output: out/inpaint                     # default: out/<YAML file stem>
    seed: 0                                 # all randomness (observation noise, sampling) comes from it
    device: auto                            # auto (CUDA when available) | cpu | cuda | cuda:N

Relative paths (``model``, ``inputs.path``, mask files, ``output``) are resolved against the current
directory, not the YAML file's folder: the README's commands run from the repository root.

Inputs: ``photos_test`` are the held-out 32×32 test patches (``invsgm.data.photos_test_images``,
``count`` ≤ 80), ``digits_test`` scikit-learn's test digits (``digits(split='test')``, with their
labels, ≤ 355); a folder is searched recursively, sorted by path. Images are never resized: one
whose size differs from the model's is an error naming the file and both sizes. Class-conditional
tasks take their labels from ``inputs.labels`` (one input per label, no ground truth, unless images
are given too: then one label per image) or from a labelled data set.

For each input the image is mapped to the model space, its observation simulated with the measurement's
``simulate(x, generator)`` (class labels: the label), posterior samples drawn with ``invsgm.solve``
and mapped back to images in [0, 1]. Written per input, into ``OUTPUT/<input-name>/`` (the layout
``invsgm eval`` reads):

- ``truth.png`` (when known);
- ``observation.png``: the operator's picture of the image-space observation ((y + A·1)/2 for
  centred models), clamped to [0, 1];
- ``samples/000.png ...`` and ``mean.png`` (their mean). Samples leave the sampler unclipped: they
  are clamped to [0, 1], and for noiseless colorization projected (per pixel, Euclidean) onto the RGB
  values in [0, 1] with the observed grey, so the observed coordinates stay exact;
- ``std.png``: grey, the pixel-wise standard deviation of the samples (root-mean-square over
  channels) times 2, so that white is 0.5, the largest possible for values in [0, 1];
- ``baseline.png``: the classical method for the operator, on the image-space observation (mask →
  biharmonic inpainting, grey → grey image, average pooling → bicubic, blur → Wiener, identity → TV);
- ``panel.png``: truth | observation | samples | mean | std.

Then ``OUTPUT/metrics.json``: per input the PSNR and SSIM of the mean, of the baseline and the
average over samples, computed on the 8-bit images written (as ``invsgm eval`` reads them); for class
tasks the label and the classifier's class at t = 0 of each sample; a summary, the seconds and
images/s. ``OUTPUT/run.yaml`` (the resolved config) is written first.

Nothing is half-written: an input's folder is written under a hidden temporary name and renamed into
place when complete; metrics.json and run.yaml are written atomically; an error or Ctrl-C removes the
temporary folder. An existing OUTPUT must be an earlier results folder (with run.yaml) or empty;
input folders of an earlier run that this run does not produce are removed at the end.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import yaml
from PIL import Image

from .evaluate import _jsonable
from .atomic import atomic_open
from .config import (apply_set, apply_sets, bad, choice, integer, is_int, mapping, parse_set, read_yaml,
                     sde_name, string)
from .config.models import check_model_spec, class_count, load_model_spec
from .config.solvers import build_solver, build_timesteps, split_sampler
from .measurement import ClassLabel, Joint, LinearMeasurement, Measurement

SECTIONS = ("model", "sde", "task", "sampler", "inputs", "output", "seed", "device")
DATASETS = ("photos_test", "digits_test")
SAMPLER_DEFAULTS = {"steps": 200, "n_samples": 4, "batch_size": 8}  # solve()'s keys; the rest go to the solver
STD_DISPLAY_GAIN = 2.0  # std.png = 2·std: white is 0.5, the largest standard deviation of values in [0, 1]


# --- checks -----------------------------------------------------------------------------------------

def _check_model(v: Any) -> dict[str, Any]:
    return check_model_spec(v, "model")


def _check_sde(v: Any) -> str | dict | None:
    """None, an SDE name or {kind: NAME, parameters}; names as in ``sde_from_config`` ('sub-VP' → 'subvp')."""
    from .sde import SDES

    if v is None:
        return None
    if isinstance(v, str):
        return sde_name("sde", v)
    if isinstance(v, dict) and "kind" in v:
        return {**v, "kind": sde_name("sde.kind", v["kind"])}
    raise bad("sde", v, f"one of {sorted(SDES)} or a mapping {{kind: ..., parameters}}")


def _check_sampler(v: Any) -> dict[str, Any]:
    """The sampler section with solve()'s keys filled in; the solver's own keys are checked by building it."""
    spec, run_keys = split_sampler(copy.deepcopy(v), SAMPLER_DEFAULTS)
    build_solver(spec)
    return {**spec, **run_keys}


def _check_inputs(v: Any) -> dict[str, Any]:
    i = mapping("inputs", v, ("dataset", "path", "count", "labels"))
    if "dataset" in i and "path" in i:
        raise bad("inputs", v, "either dataset or path, not both")
    if not any(k in i for k in ("dataset", "path", "labels")):
        raise bad("inputs", v, f"{{dataset: one of {list(DATASETS)}, count: N}}, {{path: FILE_OR_FOLDER}} or "
                               "{labels: [...]} (class tasks)")
    if "dataset" in i:
        choice("inputs.dataset", i["dataset"], DATASETS)
    if "path" in i:
        string("inputs.path", i["path"])
    if i.get("count") is not None:
        i["count"] = integer("inputs.count", i["count"], 1)
    if "labels" in i:
        labels = i["labels"]
        if not isinstance(labels, list) or not labels or not all(is_int(y) and y >= 0 for y in labels):
            raise bad("inputs.labels", labels, "a non-empty list of class indices (integers >= 0)")
        if i.get("count") is not None and "dataset" not in i and "path" not in i:
            raise ValueError("inputs.count: with labels only, the inputs are the labels; leave count out")
    return i


def _check_device(v: Any) -> str:
    v = string("device", v)
    if v == "auto":
        return v
    try:
        torch.device(v)
    except RuntimeError:
        raise bad("device", v, "auto, cpu, cuda or cuda:N") from None
    return v


def resolve_config(values: Mapping[str, Any], stem: str = "run") -> dict[str, Any]:
    """The checked config with every default filled in (what run.yaml records)."""
    if not isinstance(values, Mapping):
        raise ValueError(f"a run config is a mapping with keys {list(SECTIONS)}, got {type(values).__name__}")
    for key in values:
        if key not in SECTIONS:
            raise ValueError(f"unknown key {key!r} = {values[key]!r}; expected one of {list(SECTIONS)}")
    for key in ("model", "task", "inputs"):
        if values.get(key) is None:
            raise ValueError(f"the config has no {key!r} key (see 'invsgm run --help')")
    output = values.get("output") if values.get("output") is not None else f"out/{stem}"
    return {"model": _check_model(values["model"]), "sde": _check_sde(values.get("sde")),
            "task": copy.deepcopy(values["task"]),  # checked by the registry once the model is known
            "sampler": _check_sampler(values.get("sampler")), "inputs": _check_inputs(values["inputs"]),
            "output": string("output", str(output) if isinstance(output, os.PathLike) else output),
            "seed": integer("seed", values.get("seed", 0), 0), "device": _check_device(values.get("device", "auto"))}


def load_run_config(path: str | os.PathLike, sets: Sequence[str] = (), *, input_path: str | None = None,
                    out: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """Read ``path``, apply the ``--set KEY.SUB=VALUE`` items, ``--input``, ``--out``, ``--seed``; check; resolve."""
    values = apply_sets(read_yaml(path, "task", SECTIONS), sets)
    if input_path is not None:
        labels = values.get("inputs", {}).get("labels") if isinstance(values.get("inputs"), dict) else None
        values["inputs"] = {"path": str(input_path), **({"labels": labels} if labels is not None else {})}
    if out is not None:
        values["output"] = str(out)
    if seed is not None:
        values["seed"] = seed
    return resolve_config(values, stem=Path(path).stem)


# --- model, task, inputs ----------------------------------------------------------------------------

def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device = {name!r}: CUDA is not available on this machine (use cpu or auto)")
    return device


def load_model(spec: Mapping[str, Any], device: torch.device):
    """The ``Pretrained`` score model of a checked ``model`` section."""
    model = load_model_spec(spec, device)
    if model.card.get("task") != "score":
        raise ValueError(f"model = {dict(spec)!r}: expected a score model, got a {model.card.get('task')!r} model")
    return model


def _sde_kind(sde) -> str:
    from .sde import SDES

    return next(k for k, cls in SDES.items() if type(sde) is cls)


def _check_model_sde(spec: str | dict | None, model) -> None:
    from .sde import sde_from_config

    if spec is None:
        return
    if isinstance(spec, str):
        if spec != _sde_kind(model.sde):
            raise ValueError(f"sde = {spec!r} but the model {model.card['name']!r} has a {_sde_kind(model.sde)!r} "
                             f"SDE ({model.sde!r})")
        return
    params = {k: v for k, v in spec.items() if k != "kind"}
    try:
        wanted = sde_from_config(spec["kind"], **params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sde = {spec!r}: {err}") from None
    if type(wanted) is not type(model.sde) or wanted.config() != model.sde.config():
        raise ValueError(f"sde = {spec!r} is {wanted!r} but the model {model.card['name']!r} has {model.sde!r}")


def _class_part(measurement: Measurement) -> ClassLabel | None:
    return next((m for m in measurement.parts if isinstance(m, ClassLabel)), None)


def _image_part(measurement: Measurement) -> LinearMeasurement | None:
    """The first linear part of the measurement (for the observation picture and the baseline)."""
    return next((m for m in measurement.parts if isinstance(m, LinearMeasurement)), None)


def measure(measurement: Measurement, x: torch.Tensor | None, labels: torch.Tensor | None,
            generator: torch.Generator | None) -> Any:
    """The simulated observation of images x (model space) and class labels."""
    if isinstance(measurement, Joint):
        return tuple(measure(m, x, labels, generator) for m in measurement.parts)
    if isinstance(measurement, ClassLabel):
        return labels
    return measurement.simulate(x, generator)


def observation_of(measurement: Measurement, part: Measurement, y: Any) -> Any:
    """The entry of the observation ``y`` of ``measurement`` that belongs to ``part`` (one of its parts)."""
    if measurement is part:
        return y
    return y[next(i for i, m in enumerate(measurement.parts) if m is part)]


@dataclass
class Item:
    """One input: its folder name, the image in [0, 1] (None for a bare label) and the class label."""

    name: str
    image: torch.Tensor | None
    label: int | None
    source: str


@dataclass
class Inputs:
    """The inputs of a run, read lazily: ``len`` is known, images are decoded in ``batches``."""

    names: list[str]
    sources: list[str]
    labels: list[int] | None
    has_images: bool
    _get: Any = field(repr=False)  # index -> (C, H, W) image in [0, 1] or None

    def __len__(self) -> int:
        return len(self.names)

    def batches(self, size: int) -> Iterator[list[Item]]:
        for start in range(0, len(self), size):
            yield [Item(self.names[i], self._get(i), None if self.labels is None else self.labels[i], self.sources[i])
                   for i in range(start, min(start + size, len(self)))]


def _image_files(path: Path) -> list[Path]:
    from .data import IMAGE_EXTENSIONS

    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"inputs.path = {str(path)!r}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise ValueError(f"inputs.path = {str(path)!r}: no image files in this folder (looked recursively for "
                         f"{', '.join(IMAGE_EXTENSIONS)})")
    return files


def _file_names(files: list[Path], root: Path) -> list[str]:
    """Folder names of input files: the path below ``root`` without its suffix ('/' → '__'), made unique."""
    stems = ["__".join((f.relative_to(root) if f != root else Path(f.name)).with_suffix("").parts) for f in files]
    if len(set(stems)) == len(stems):
        return stems
    return ["__".join((f.relative_to(root) if f != root else Path(f.name)).parts).replace(".", "_") for f in files]


def open_inputs(spec: Mapping[str, Any], shape: tuple[int, int, int], needs_labels: bool) -> Inputs:
    """The inputs of a checked ``inputs`` section for images of ``shape`` (C, H, W)."""
    C, H, W = shape
    labels = spec.get("labels")
    count = spec.get("count")
    if "dataset" in spec:
        name = spec["dataset"]
        if name == "photos_test":
            if C != 3 or H != W:
                raise ValueError(f"inputs.dataset = 'photos_test' holds square RGB patches but the model's samples "
                                 f"have shape {shape}")
            from .data import photos

            available = len(photos(H, "test"))
            n = available if count is None else count
            if n > available:
                raise bad("inputs.count", n, f"at most the {available} photos_test patches of {H}×{H}")
            from .data import photos_test_images

            images = photos_test_images(n, patch_size=H)
            data_labels = None
        else:
            if C != 1 or H != W:
                raise ValueError(f"inputs.dataset = 'digits_test' holds square grey images but the model's samples "
                                 f"have shape {shape}")
            from .data import digits

            test = digits(image_size=H, split="test")
            n = len(test) if count is None else count
            if n > len(test):
                raise bad("inputs.count", n, f"at most the {len(test)} digits_test images")
            images, data_labels = test.images[:n], test.labels[:n].tolist()
        width = max(3, len(str(n - 1)))
        names = [f"{i:0{width}d}" for i in range(n)]
        sources = [f"{name}[{i}]" for i in range(n)]
        get = images.__getitem__
    elif "path" in spec:
        root = Path(spec["path"])
        files = _image_files(root)
        if count is not None:
            files = files[:count]
        names = _file_names(files, root if root.is_dir() else root.parent)
        sources = [str(f) for f in files]
        data_labels = None

        def get(i: int) -> torch.Tensor:
            from .data import load_image

            x = load_image(files[i], channels=C)  # errors name the file
            if tuple(x.shape[1:]) != (H, W):
                raise ValueError(f"input image {files[i]} is {x.shape[1]}x{x.shape[2]} (HxW) but the model works on "
                                 f"{H}x{W} images; inputs are not resized")
            return x
    else:
        n = len(labels)
        width = max(3, len(str(n - 1)))
        names = [f"{i:0{width}d}_label{y}" for i, y in enumerate(labels)]
        sources = [f"labels[{i}]" for i in range(n)]
        data_labels = None
        get = lambda i: None  # noqa: E731

    if labels is not None and ("dataset" in spec or "path" in spec):
        if len(labels) != len(names):
            raise ValueError(f"inputs.labels has {len(labels)} labels but there are {len(names)} input images: "
                             f"give one label per image")
    if needs_labels:
        labels = labels if labels is not None else data_labels
        if labels is None:
            raise ValueError(f"the task is class-conditional but the inputs ({dict(spec)}) carry no class labels: "
                             f"give inputs.labels, or use a labelled dataset (digits_test)")
    elif spec.get("labels") is not None:
        raise ValueError(f"inputs.labels = {spec['labels']!r}: the task has no class_conditional part to use them")
    return Inputs(names, sources, list(labels) if needs_labels else None,
                  "dataset" in spec or "path" in spec, get)


# --- images -------------------------------------------------------------------------------------------

def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as written to 8-bit PNGs (the values ``invsgm eval`` reads back)."""
    return torch.round(x.detach().to("cpu", torch.float32).clamp(0, 1) * 255) / 255


def _save_png(path: Path, image: torch.Tensor) -> None:
    """Write a (C, H, W) image in [0, 1] (inside a temporary folder: no per-file rename needed)."""
    a = (torch.round(image.detach().to("cpu", torch.float32).clamp(0, 1) * 255)).to(torch.uint8)
    a = a.permute(1, 2, 0).numpy()
    Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(path, format="PNG")


def _save_array(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path, format="PNG")


def _project_grey(x: torch.Tensor, target_sum: torch.Tensor, iterations: int = 60) -> torch.Tensor:
    """Per pixel, the closest RGB value in [0, 1]³ whose channel sum is ``target_sum`` (∈ [0, 3]).

    The Euclidean projection onto the box ∩ plane is clamp(x + λ, 0, 1) for the λ at which the sum is
    the target (monotone in λ): found by bisection in [−max x, 1 − min x].
    """
    lo = -x.amax(1, keepdim=True)
    hi = 1 - x.amin(1, keepdim=True)
    target = target_sum.clamp(0, 3)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        above = (x + mid).clamp(0, 1).sum(1, keepdim=True) > target
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return (x + (lo + hi) / 2).clamp(0, 1)


def _valid_images(samples: torch.Tensor, measurement: Measurement, y_img_rep: Any) -> torch.Tensor:
    """Samples (image space) in [0, 1]; for noiseless colorization, with the observed grey kept."""
    from .operators import Grey

    part = _image_part(measurement)
    if part is not None and isinstance(part.operator, Grey) and part.sigma_y == 0 and y_img_rep is not None:
        return _project_grey(samples, y_img_rep * math.sqrt(3.0))
    return samples.clamp(0, 1)


def image_observation(operator, y: torch.Tensor, centered: bool) -> torch.Tensor:
    """The observation of the image in [0, 1]: (y + A·1)/2 for centred models (A x = A(2 img − 1)), else y."""
    if not centered:
        return y
    ones = torch.ones((1, *operator.in_shape), dtype=y.dtype, device=y.device)
    return (y + operator(ones)) / 2


def baseline(part: LinearMeasurement, y_img: torch.Tensor, centered: bool) -> torch.Tensor | None:
    """The classical method for the task's operator on the image-space observation (None if there is none)."""
    from . import baselines
    from .operators import AvgPool, GaussianBlur, Grey, Identity, Mask

    op = part.operator
    sigma = part.sigma_y / (2.0 if centered else 1.0)  # noise level in image units
    y = y_img.detach().to("cpu", torch.float32)
    if isinstance(op, Mask):
        return baselines.inpaint_biharmonic(op.to_image(y).clamp(0, 1), op.mask)
    if isinstance(op, Grey):
        return baselines.colorize_grey(y.clamp(min=0))
    if isinstance(op, AvgPool):
        return baselines.upsample_bicubic(y.clamp(0, 1), op.factor)
    if isinstance(op, GaussianBlur):
        return baselines.deconvolve_wiener(y, op.kernel)
    if isinstance(op, Identity) and y.ndim == 4:
        return baselines.denoise_tv(y, weight=sigma) if sigma > 0 else y.clamp(0, 1)
    return None


# --- the run ------------------------------------------------------------------------------------------

@dataclass
class RunResult:
    """What a run wrote: the output folder, metrics.json's content, seconds and samples per second (end to end)."""

    output: Path
    metrics: dict[str, Any]
    seconds: float
    images_per_second: float




def _prepare_output(out: Path) -> None:
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


def _commit(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final`` (replacing an earlier one)."""
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def _metric_pair(x: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    from .metrics import psnr, ssim

    return {"psnr": psnr(x, truth), "ssim": ssim(x, truth)}


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    from .evaluate import summarize

    rows = [{"input": r["name"], "method": method, "n": r[method]["n"], "psnr": r[method]["psnr"],
             "ssim": r[method]["ssim"], "lpips": None}
            for r in records for method in ("mean", "samples", "baseline") if method in r]
    summary = {method: {k: v for k, v in entry.items() if k != "lpips"} for method, entry in summarize(rows).items()}
    labelled = [r for r in records if "predicted" in r]
    if labelled:
        hits = [p == r["label"] for r in labelled for p in r["predicted"]]
        summary["class_accuracy"] = {"samples": len(hits), "accuracy": float(np.mean(hits))}
    return summary


@dataclass
class _Solved:
    """One solved batch in image space, on the CPU."""

    truth: list[torch.Tensor | None]        # the input images in [0, 1] (None for bare labels)
    samples: torch.Tensor                   # (b, n, C, H, W) in [0, 1]
    observation: torch.Tensor | None        # (b, C', H, W): the operator's picture of the observation
    baseline: torch.Tensor | None           # (b, C, H, W): the classical method's result
    predicted: list[list[int]] | None       # the classifier's class of each sample at t = 0


class _BatchSolver:
    """Observe, solve and map back one batch of inputs; every draw comes from one generator, in order."""

    def __init__(self, model, task: Measurement, solver, sampler: Mapping[str, Any], shape: tuple[int, int, int],
                 centered: bool, generator: torch.Generator):
        self.model, self.task, self.sampler, self.shape, self.centered = model, task, sampler, shape, centered
        self.solver = solver
        self.timesteps = build_timesteps(model.sde, sampler["steps"], sampler.get("grid"))
        self.generator = generator
        self.device = generator.device
        self.class_part, self.image_part = _class_part(task), _image_part(task)
        # a class-conditional network (ADM's ImageNet models) is evaluated at each input's label
        self.conditional = self.class_part is not None and class_count(model) is not None
        self.seconds = 0.0  # time spent in the sampler

    def __call__(self, items: list[Item]) -> _Solved:
        from .pretrained import from_model_space, to_model_space
        from .solve import solve

        b, n, card = len(items), self.sampler["n_samples"], self.model.card
        truth = [it.image for it in items]
        x = to_model_space(torch.stack(truth).to(self.device), card) if truth[0] is not None else None
        labels = (torch.tensor([it.label for it in items], dtype=torch.long, device=self.device)
                  if self.class_part is not None else None)
        y = measure(self.task, x, labels, self.generator)
        if self.conditional:
            self.model.model.class_labels = labels.repeat_interleave(n)
        t0 = time.perf_counter()
        sol = solve(self.task, y, self.model, self.solver, n=n, timesteps=self.timesteps, shape=self.shape,
                    generator=self.generator)
        self.seconds += time.perf_counter() - t0
        bad = ~torch.isfinite(sol.samples.reshape(b, -1)).all(1)
        if bad.any():
            first = items[int(bad.nonzero()[0])]
            raise ValueError(f"the sampler diverged: samples of input {first.name!r} ({first.source}) are NaN or "
                             f"infinite; lower the guidance scale (sampler.guidance.scale), raise its power or "
                             f"sampler.steps, or use another guidance or solver")

        y_img = shown = base = predicted = None
        if self.image_part is not None:
            y_img = image_observation(self.image_part.operator, observation_of(self.task, self.image_part, y),
                                      self.centered)
            try:
                shown = self.image_part.operator.to_image(y_img).clamp(0, 1).cpu()
            except NotImplementedError:  # measurements that are not images
                shown = None
            base = baseline(self.image_part, y_img, self.centered)
        samples = from_model_space(sol.samples.reshape(b * n, *self.shape), card)
        samples = _valid_images(samples, self.task, None if y_img is None else y_img.repeat_interleave(n, 0))
        if self.class_part is not None:
            with torch.no_grad():
                x0 = to_model_space(_quantize(samples).to(self.device), card)
                predicted = self.class_part.classifier(x0, 0.0).argmax(1).reshape(b, n).tolist()
        return _Solved(truth, samples.reshape(b, n, *self.shape).cpu(), shown, base, predicted)


def _write_input(folder: Path, item: Item, solved: _Solved, k: int) -> dict[str, Any]:
    """Write input k of a solved batch into ``folder`` (a new temporary folder); return its metrics record."""
    from .data import image_grid

    (folder / "samples").mkdir(parents=True)
    samples = solved.samples[k]
    n = samples.shape[0]
    smp = _quantize(samples)
    mean = _quantize(samples.mean(0))
    spread = samples.var(0).mean(0, keepdim=True).sqrt() if n > 1 else torch.zeros_like(mean[:1])
    std = _quantize(STD_DISPLAY_GAIN * spread)  # one channel: the RMS over channels of the pixel-wise std
    record: dict[str, Any] = {"name": item.name, "source": item.source}
    row = []  # the panel
    truth = _quantize(item.image) if item.image is not None else None
    if truth is not None:
        _save_png(folder / "truth.png", truth)
        row.append(truth)
    if solved.observation is not None:
        _save_png(folder / "observation.png", solved.observation[k])
        row.append(_quantize(solved.observation[k]))
    for j in range(n):
        _save_png(folder / "samples" / f"{j:03d}.png", smp[j])
    _save_png(folder / "mean.png", mean)
    _save_png(folder / "std.png", std)
    row += [*smp, mean, std]
    base = _quantize(solved.baseline[k]) if solved.baseline is not None else None
    if base is not None:
        _save_png(folder / "baseline.png", base)
    if truth is not None:
        record["mean"] = {"n": 1, **_metric_pair(mean, truth)}
        per = [_metric_pair(smp[j], truth) for j in range(n)]
        record["samples"] = {"n": n, **{m: float(np.mean([p[m] for p in per])) for m in ("psnr", "ssim")}}
        if base is not None:
            record["baseline"] = {"n": 1, **_metric_pair(base, truth)}
    if solved.predicted is not None:
        record["label"] = int(item.label)
        record["predicted"] = solved.predicted[k]
    channels = max(r.shape[0] for r in row)
    _save_array(folder / "panel.png", image_grid(torch.stack([r.expand(channels, -1, -1) for r in row]),
                                                 nrow=len(row)))
    return record


def run(config: Mapping[str, Any], *, progress: bool = True, log=None) -> RunResult:
    """Run a resolved config (``load_run_config``): solve every input, write the results folder, return the metrics."""
    from tqdm.auto import tqdm

    from .config.tasks import TaskContext, build_task

    log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
    config = resolve_config(config)
    device = _device(config["device"])
    model = load_model(config["model"], device)
    _check_model_sde(config["sde"], model)
    data = model.card["data"]
    shape = (int(data["channels"]), int(data["image_size"]), int(data["image_size"]))
    centered = bool(data["centered"])
    ctx = TaskContext(shape=shape, centered=centered, sde=model.sde, device=device)
    task = build_task(config["task"], ctx)
    class_part = _class_part(task)
    image_task = any(m is not class_part for m in task.parts)
    inputs = open_inputs(config["inputs"], shape, needs_labels=class_part is not None)
    if image_task and not inputs.has_images:
        raise ValueError(f"inputs = {config['inputs']!r}: the task observes images, give inputs.dataset or "
                         f"inputs.path")
    if len(inputs) == 0:
        raise ValueError("there are no inputs")
    if class_count(model) is not None and class_part is None and "class_label" not in config["model"]:
        raise ValueError(f"model: the network of {model.card['name']!r} is class-conditional "
                         f"({class_count(model)} classes): set model.class_label, or add a class_conditional task")
    k = getattr(class_part, "num_classes", None)
    if k is not None and inputs.labels is not None and not all(0 <= y < k for y in inputs.labels):
        bad = next(y for y in inputs.labels if not 0 <= y < k)
        raise ValueError(f"inputs.labels: label {bad} is not a class of the classifier (0 to {k - 1})")
    s = config["sampler"]
    n = s["n_samples"]
    solver = build_solver({k: v for k, v in s.items() if k not in (*SAMPLER_DEFAULTS, "grid")})
    try:
        solver.check(task)
    except ValueError as err:
        raise ValueError(f"sampler ({s['name']}): {err}") from None

    out = Path(config["output"])
    _prepare_output(out)
    with atomic_open(out / "run.yaml", "w") as f:
        yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)

    solver = _BatchSolver(model, task, solver, s, shape, centered,
                          torch.Generator(device).manual_seed(config["seed"]))
    records: list[dict[str, Any]] = []
    pending: list[Path] = []
    start = time.perf_counter()
    bar = tqdm(total=math.ceil(len(inputs) / s["batch_size"]), unit="batch", desc=f"invsgm run {out}",
               disable=not progress, file=sys.stderr)
    try:
        for items in inputs.batches(s["batch_size"]):
            solved = solver(items)
            for k, item in enumerate(items):
                tmp = out / f".{item.name}.tmp-{uuid.uuid4().hex[:12]}"
                pending.append(tmp)
                records.append(_write_input(tmp, item, solved, k))
                _commit(tmp, out / item.name)
                pending.remove(tmp)
            del solved  # nothing of a batch outlives it
            bar.update(1)
    finally:
        bar.close()
        for tmp in pending:
            shutil.rmtree(tmp, ignore_errors=True)

    names = set(inputs.names)
    for p in out.iterdir():  # input folders of an earlier run into the same OUTPUT
        if p.is_dir() and not p.name.startswith(".") and p.name not in names and (p / "mean.png").is_file():
            shutil.rmtree(p, ignore_errors=True)
    seconds = time.perf_counter() - start
    images = len(inputs) * n
    rate = images / max(seconds, 1e-9)
    metrics = {"inputs": records, "summary": _summary(records), "n_inputs": len(inputs), "n_samples": n,
               "seconds": seconds, "sampling_seconds": solver.seconds, "images_per_second": rate,
               "sampling_images_per_second": images / max(solver.seconds, 1e-9)}
    with atomic_open(out / "metrics.json", "w") as f:
        json.dump(_jsonable(metrics), f, indent=2)
        f.write("\n")
    log(f"{len(inputs)} inputs × {n} samples = {images} images in {seconds:.1f} s: {rate:.2f} images/s "
        f"({solver.seconds:.1f} s in the sampler, {metrics['sampling_images_per_second']:.2f} images/s)")
    return RunResult(out, metrics, seconds, rate)


def format_summary(metrics: Mapping[str, Any]) -> str:
    """The summary of metrics.json as a short text table (PSNR/SSIM per method; class accuracy)."""
    from .evaluate import format_table

    summary = dict(metrics["summary"])
    accuracy = summary.pop("class_accuracy", None)
    lines = [format_table({m: {**e, "lpips": None} for m, e in summary.items()})] if summary else []
    if accuracy is not None:
        lines.append(f"classifier agrees with the label on {accuracy['accuracy']:.0%} of {accuracy['samples']} "
                     f"samples")
    return "\n".join(lines)


__all__ = ["DATASETS", "SAMPLER_DEFAULTS", "RunResult", "apply_set", "baseline", "image_observation",
           "load_run_config", "measure", "open_inputs", "parse_set", "read_yaml", "resolve_config", "run"]
