"""``run(config)``: the model, the task's measurement, the solver and the inputs of a resolved config, solved one batch
at a time and written as they finish. What a task measures, how its observation is simulated, read and written,
and which baseline fits it are the measurement's (``invsgm.measurement``, ``invsgm.operators``,
``invsgm.baselines``); this module only puts them in order."""
from __future__ import annotations

import inspect
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml

from ..atomic import atomic_open
from ..config.models import class_count, load_model_spec
from ..config.solvers import build_solver, build_timesteps
from ..measurement import Measurement
from ..solvers import Solver
from .config import SAMPLER_DEFAULTS, resolve_config
from .inputs import Item, open_inputs
from .outputs import (Solved, commit, prepare_output, quantize, remove_stale, summary, temporary, write_input,
                      write_json)

NOISE_STREAM = 0x9E3779B97F4A7C15  # the observation noise's generator: seed + this (mod 2⁶⁴), apart from sampling's


@dataclass
class RunResult:
    """What a run wrote: the output folder, metrics.json's content, seconds and samples per second (end to end)."""

    output: Path
    metrics: dict[str, Any]
    seconds: float
    images_per_second: float


# --- model and task --------------------------------------------------------------------------------------------

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
    from ..sde import SDES

    return next(k for k, cls in SDES.items() if type(sde) is cls)


def _check_model_sde(spec: str | dict | None, model) -> None:
    from ..sde import sde_from_config

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


def _mask_from_inputs(spec: Any, shape: tuple[int, int, int]) -> tuple[Any, bool]:
    """Observation mode: a task whose factory takes a ``mask`` but was given none gets a placeholder (every pixel
    missing) that each input's own mask (a mask file or an alpha channel) replaces; True when one was put in."""
    from ..config.tasks import get_factory

    if isinstance(spec, (list, tuple)):
        parts = [_mask_from_inputs(s, shape) for s in spec]
        return [p for p, _ in parts], any(used for _, used in parts)
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or spec.get("mask") is not None:
        return spec, False
    try:
        parameters = inspect.signature(get_factory(spec["name"])).parameters
    except (ValueError, TypeError, ImportError):
        return spec, False  # build_task reports it
    if "mask" not in parameters:
        return spec, False
    return {**spec, "mask": {"box": [0, 0, shape[1], shape[2]]}}, True


# --- progress ---------------------------------------------------------------------------------------------------

class _Stepped(Solver):
    """A solver reporting each of its steps (``callback(i, ...)``) to ``on_step(i)``."""

    name = "stepped"

    def __init__(self, inner: Solver, on_step: Callable[[int], None]):
        self.inner, self.on_step = inner, on_step

    def check(self, measurement: Measurement) -> None:
        self.inner.check(measurement)

    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        def step(i, *args):
            self.on_step(int(i))
            if callback is not None:
                callback(i, *args)

        return self.inner(denoiser, sde, measurement, y, x, timesteps, generator=generator, callback=step)


class _Progress:
    """A bar over the sampler's steps of the whole run (every batch), with the time left."""

    def __init__(self, batches: int, steps: int, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        self.steps, self.base = steps, 0
        self.bar = tqdm(total=batches * steps, unit="step", desc=desc, disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True)

    def step(self, i: int) -> None:
        target = self.base + min(i + 1, self.steps)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)

    def batch_done(self, inputs_done: int, total: int) -> None:
        self.base += self.steps
        self.bar.update(max(0, self.base - self.bar.n))
        self.bar.set_postfix_str(f"{inputs_done}/{total} inputs", refresh=False)

    def write(self, msg: str) -> None:
        self.bar.write(msg, file=sys.stderr) if not self.bar.disable else print(msg, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


# --- one batch ------------------------------------------------------------------------------------------------

class _BatchSolver:
    """Observe (simulate, or take the observed files), solve and map back one batch of inputs; sampling draws come
    from one generator, in order, and simulated noise from another, so an observation read back from its file
    gives the samples of the run that simulated it."""

    def __init__(self, model, task: Measurement, solver: Solver, sampler: Mapping[str, Any],
                 shape: tuple[int, int, int], centered: bool, seed: int, device: torch.device,
                 on_step: Callable[[int], None] | None = None):
        self.model, self.task, self.sampler, self.shape, self.centered = model, task, sampler, shape, centered
        self.solver = solver if on_step is None else _Stepped(solver, on_step)
        self.timesteps = build_timesteps(model.sde, sampler["steps"], sampler.get("grid"))
        self.device = device
        self.generator = torch.Generator(device).manual_seed(seed)
        self.noise = torch.Generator(device).manual_seed((seed + NOISE_STREAM) % 2 ** 64)
        # a class-conditional network (ADM's ImageNet models) is evaluated at each input's label
        self.conditional = task.takes_labels and class_count(model) is not None
        self.seconds = 0.0  # time spent in the sampler
        self.nfe = 0        # network evaluations per sample (the last batch's)
        self._masked: dict[bytes, Measurement] = {}

    @property
    def steps(self) -> int:
        return int(len(self.timesteps) - 1)

    def _task(self, item: Item) -> Measurement:
        """The task with this input's own mask, if it has one (the same object for equal masks)."""
        if item.observed is None:
            return self.task
        key = item.observed.numpy().tobytes()
        if key not in self._masked:
            self._masked[key] = self.task.with_mask(item.observed)
        return self._masked[key]

    def __call__(self, items: list[Item]) -> Solved:
        from ..pretrained import from_model_space, to_model_space
        from ..solve import solve

        b, n, card = len(items), self.sampler["n_samples"], self.model.card
        task = self._task(items[0])  # a batch shares its mask (Inputs.batches)
        labels = (torch.tensor([it.label for it in items], dtype=torch.long, device=self.device)
                  if task.takes_labels else None)
        parts = task.file_parts
        truth = torch.stack([it.truth for it in items]).to(self.device) if items[0].truth is not None else None
        if not parts:
            pixels = None
        elif items[0].observation is not None:  # observed
            pixels = [torch.stack([it.observation for it in items]).to(self.device)]
        else:  # simulated from the truth
            pixels = [p.simulate_file(truth, self.noise, self.centered) for p in parts]
        x = to_model_space(truth, card) if truth is not None and items[0].observation is None else None
        y = task.observe(x, self.noise, images=None if pixels is None else (pixels[0] if len(pixels) == 1 else pixels),
                         labels=labels, centered=self.centered)
        if self.conditional:
            self.model.model.class_labels = labels.repeat_interleave(n)
        t0 = time.perf_counter()
        sol = solve(task, y, self.model, self.solver, n=n, timesteps=self.timesteps, shape=self.shape,
                    generator=self.generator)
        self.seconds += time.perf_counter() - t0
        self.nfe = int(sol.nfe)
        bad = ~torch.isfinite(sol.samples.reshape(b, -1)).all(1)
        if bad.any():
            first = items[int(bad.nonzero()[0])]
            raise ValueError(f"the sampler diverged: samples of input {first.name!r} ({first.source}) are NaN or "
                             f"infinite; lower the guidance scale (sampler.guidance.scale), raise its power or "
                             f"sampler.steps, or use another guidance or solver")

        samples = from_model_space(sol.samples.reshape(b * n, *self.shape), card)
        samples = task.valid_images(samples, task.repeat(y, n), self.centered)
        shown = task.picture(y, self.centered)
        shown = None if shown is None else shown.cpu()
        base = task.baseline(y, self.centered)
        observed: list[torch.Tensor | None] = [None] * b
        array = None
        if parts:  # the first file measurement's observation is the one written
            mask = parts[0].operator.observed_pixels()
            if mask is not None and not bool(mask.all()):
                observed = [mask.cpu()] * b
            pixels = pixels[0].cpu()
            if not parts[0].operator.file_is_image:
                array = parts[0].operator.write_array
        predicted = None
        class_parts = [p for p in task.parts if p.takes_labels and hasattr(p, "classifier")]
        if class_parts:
            with torch.no_grad():
                x0 = to_model_space(quantize(samples).to(self.device), card)
                predicted = class_parts[0].classifier(x0, 0.0).argmax(1).reshape(b, n).tolist()
        return Solved(samples.reshape(b, n, *self.shape).cpu(), pixels, observed, shown, base, predicted, array)


# --- the run -----------------------------------------------------------------------------------------------------

def run(config: Mapping[str, Any], *, progress: bool = True, log=None) -> RunResult:
    """Run a resolved config (``load_run_config``): solve every input, write the results folder, return the metrics."""
    from ..config.tasks import TaskContext, build_task

    log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
    config = resolve_config(config)
    device = _device(config["device"])
    model = load_model(config["model"], device)
    _check_model_sde(config["sde"], model)
    data = model.card["data"]
    shape = (int(data["channels"]), int(data["image_size"]), int(data["image_size"]))
    centered = bool(data["centered"])
    ctx = TaskContext(shape=shape, centered=centered, sde=model.sde, device=device)
    spec = config["inputs"]
    observed = "observations" in spec
    task_spec, mask_required = _mask_from_inputs(config["task"], shape) if observed else (config["task"], False)
    task = build_task(task_spec, ctx)
    parts = task.file_parts
    if observed and len(parts) != 1:
        raise ValueError(f"inputs.observations: the task observes {len(parts)} images per input; observation files "
                         f"feed a task with one measurement (inpaint, super_resolution, deblur, denoise, colorize, "
                         f"possibly with class labels; mri, ct)")
    inputs = open_inputs(spec, shape, needs_labels=task.takes_labels, image_part=parts[0] if parts else None,
                         mask_required=mask_required)
    if parts and not inputs.has_images:
        raise ValueError(f"inputs = {spec!r}: the task observes images, give inputs.dataset, inputs.path or "
                         f"inputs.observations")
    if len(inputs) == 0:
        raise ValueError("there are no inputs")
    if class_count(model) is not None and not task.takes_labels and "class_label" not in config["model"]:
        raise ValueError(f"model: the network of {model.card['name']!r} is class-conditional "
                         f"({class_count(model)} classes): set model.class_label, or add a class_conditional task")
    k = next((p.num_classes for p in task.parts if p.takes_labels and getattr(p, "num_classes", None)), None)
    if k is not None and inputs.labels is not None and not all(0 <= y < k for y in inputs.labels):
        wrong = next(y for y in inputs.labels if not 0 <= y < k)
        raise ValueError(f"inputs.labels: label {wrong} is not a class of the classifier (0 to {k - 1})")
    s = config["sampler"]
    n = s["n_samples"]
    solver = build_solver({key: v for key, v in s.items() if key not in (*SAMPLER_DEFAULTS, "grid")})
    try:
        solver.check(task)
    except ValueError as err:
        raise ValueError(f"sampler ({s['name']}): {err}") from None
    if observed:
        inputs.check()  # every observation, mask and truth read and checked before anything is written

    out = Path(config["output"])
    prepare_output(out)
    with atomic_open(out / "run.yaml", "w") as f:
        yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)

    bar = None
    records: list[dict[str, Any]] = []
    pending: list[Path] = []
    start = time.perf_counter()
    try:
        solver = _BatchSolver(model, task, solver, s, shape, centered, config["seed"], device,
                              on_step=lambda i: bar.step(i))
        bar = _Progress(inputs.batch_count(s["batch_size"]), solver.steps, f"invsgm run {out}", progress)
        say = bar.write
        for items in inputs.batches(s["batch_size"]):
            solved = solver(items)
            for j, item in enumerate(items):
                tmp = temporary(out, item.name)
                pending.append(tmp)
                records.append(write_input(tmp, item, solved, j))
                commit(tmp, out / item.name)
                pending.remove(tmp)
                for what, note in item.fit.items():
                    say(f"input {item.name}: {what} {note}")
            del solved  # nothing of a batch outlives it
            bar.batch_done(len(records), len(inputs))
    finally:
        if bar is not None:
            bar.close()
        for tmp in pending:
            shutil.rmtree(tmp, ignore_errors=True)

    remove_stale(out, set(inputs.names))
    seconds = time.perf_counter() - start
    images = len(inputs) * n
    rate = images / max(seconds, 1e-9)
    metrics = {"mode": "observations" if observed else ("simulated" if parts else "labels"),
               "inputs": records, "summary": summary(records), "n_inputs": len(inputs), "n_samples": n,
               "seconds": seconds, "sampling_seconds": solver.seconds, "nfe_per_sample": solver.nfe,
               "images_per_second": rate, "sampling_images_per_second": images / max(solver.seconds, 1e-9)}
    write_json(out / "metrics.json", metrics)
    log(f"{len(inputs)} inputs × {n} samples = {images} images in {seconds:.1f} s: {rate:.2f} images/s "
        f"({solver.seconds:.1f} s in the sampler, {metrics['sampling_images_per_second']:.2f} images/s)")
    return RunResult(out, metrics, seconds, rate)


__all__ = ["NOISE_STREAM", "RunResult", "load_model", "run"]
