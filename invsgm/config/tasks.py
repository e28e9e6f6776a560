"""Task names → ``Measurement`` objects: the table behind the ``task:`` section of ``invsgm run`` YAML files.

A task says what was observed, not how the posterior is approximated (that is the ``sampler:`` section,
``invsgm.config.solvers``). A factory is ``factory(ctx: TaskContext, **params) -> Measurement``: ``ctx``
says what the score model works on (sample shape, data space, SDE, device) and ``params`` are the YAML
keys beside ``name``, checked against the factory's signature before it runs (an unknown key, a missing
one, or a value whose kind differs from the parameter's default raises a ``ValueError`` naming the key).

Built-in names (``BUILTINS``); noise levels ``sigma_y`` are in image units ([0, 1] pixels) and are
doubled for models of centred data ([−1, 1]):

=====================  ==============================================================================
``inpaint``            ``mask`` = ``{box: [top, left, height, width]}`` (missing box) | ``{random: p,
                       seed: 0}`` (each pixel missing with probability p) | ``{file: PATH}`` (white =
                       observed); ``sigma_y`` (0)
``random_inpaint``     ``missing`` (0.7), ``seed`` (0), ``sigma_y`` (0)
``colorize``           the grey axis (R+G+B)/√3, observed exactly
``class_conditional``  ``classifier``: a model spec (``invsgm.config.models``: a pretrained name or folder,
(or ``class``)         'digits_classifier', or ``{adm_checkpoint: PATH, preset: 64x64_classifier}``) →
                       ``ClassLabel``; the classifier's SDE must be the score model's
``super_resolution``   ``factor`` (2), ``sigma_y`` (0): ``factor``×``factor`` average pooling
``deblur``             ``sigma`` (1.0 px), ``kernel_size`` (5), ``sigma_y`` (0): circular Gaussian blur
``denoise``            ``sigma_y`` (0.1)
``mri``                ``acceleration`` (4), ``center_fraction`` (0.08), ``pattern`` (random | equispaced),
                       ``seed`` (0), ``sigma_y`` (0): k-space lines of the orthonormal 2-D FFT (grey models)
``ct``                 ``views`` (23, or a list of angles in degrees in [0, 180)), ``sigma_y`` (0): the
                       parallel-beam Radon transform (grey square models)
=====================  ==============================================================================

A list of task specs is their ``Joint`` (e.g. class labels and inpainting). Other packages add tasks
through the ``invsgm.tasks`` entry-point group: the entry point's name is the YAML name and it loads a
factory with the same signature, e.g. in the plugin's ``pyproject.toml``::

    [project.entry-points."invsgm.tasks"]
    my_task = "my_package.tasks:my_task_factory"

Built-in names take precedence over entry points of the same name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from ..imageio import mask_from_file
from ..measurement import ClassLabel, Joint, LinearMeasurement, Measurement
from ..operators import MRI, AvgPool, GaussianBlur, Grey, Identity, LinearOperator, Mask, Radon, box_mask, random_mask
from ..sde import SDE
from .checks import bad, integer, is_int, is_real, number
from .plugins import available, check_arguments, lookup

ENTRY_POINT_GROUP = "invsgm.tasks"


@dataclass(frozen=True)
class TaskContext:
    """What a task factory may need to know about the score model it conditions."""

    shape: tuple[int, int, int]                 # one sample (C, H, W)
    centered: bool                              # model data space: [−1, 1] if True, else [0, 1]
    sde: SDE                                    # the score model's SDE
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def noise(self, sigma_image: float) -> float:
        """A noise standard deviation in image units ([0, 1]) as one in the model's data space."""
        return 2.0 * sigma_image if self.centered else sigma_image


Factory = Callable[..., Measurement]


# --- value checks inside factories ----------------------------------------------------------------

def _non_negative(key: str, value: Any) -> float:
    return number(key, value, 0.0, strict=False)


def _linear(ctx: TaskContext, operator: LinearOperator, sigma_y: float) -> LinearMeasurement:
    return LinearMeasurement(operator, ctx.noise(_non_negative("sigma_y", sigma_y)))


MASK_KINDS = ("box", "random", "file")


def build_mask(spec: Any, shape: tuple[int, int, int]) -> Mask:
    """A ``Mask`` from ``{box: [top, left, height, width]}``, ``{random: p, seed: s}`` or ``{file: PATH}``."""
    expected = ("a mapping with one of: box: [top, left, height, width] (the missing box), "
                "random: FRACTION (with seed: INT), file: PATH")
    if not isinstance(spec, Mapping) or sum(k in spec for k in MASK_KINDS) != 1:
        raise bad("mask", spec, expected)
    allowed = {"box": ("box",), "random": ("random", "seed"), "file": ("file",)}
    kind = next(k for k in MASK_KINDS if k in spec)
    for key in spec:
        if key not in allowed[kind]:
            raise ValueError(f"mask.{key} = {spec[key]!r}: unknown key for a {kind!r} mask; expected "
                             f"{list(allowed[kind])}")
    value = spec[kind]
    if kind == "box":
        if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(is_int(v) for v in value):
            raise bad("mask.box", value, "a list of four integers [top, left, height, width]")
        try:
            return box_mask(shape, *value)
        except ValueError as err:
            raise ValueError(f"mask.box = {list(value)!r}: {err}") from None
    if kind == "random":
        if not is_real(value) or not 0 <= value < 1:
            raise bad("mask.random", value, "the missing fraction, a number in [0, 1)")
        seed = integer("mask.seed", spec.get("seed", 0), 0)
        return random_mask(shape, float(value), torch.Generator().manual_seed(seed))
    if not isinstance(value, str) or not value:
        raise bad("mask.file", value, "a path to an image file (white = observed)")
    return mask_from_file(value, shape)  # errors name the file


# --- the built-in factories -----------------------------------------------------------------------

def inpaint(ctx: TaskContext, mask: dict | None = None, sigma_y: float = 0.0) -> Measurement:
    """The pixels of ``mask`` are observed (with noise ``sigma_y``); the others are missing."""
    if mask is None:
        raise ValueError("inpaint needs a mask: mask: {box: [top, left, height, width]} | "
                         "{random: FRACTION, seed: INT} | {file: PATH}")
    return _linear(ctx, build_mask(mask, ctx.shape), sigma_y)


def random_inpaint(ctx: TaskContext, missing: float = 0.7, seed: int = 0, sigma_y: float = 0.0) -> Measurement:
    """Each pixel missing with probability ``missing`` (a fixed draw from ``seed``)."""
    return _linear(ctx, build_mask({"random": missing, "seed": seed}, ctx.shape), sigma_y)


def mri(ctx: TaskContext, acceleration: float = 4.0, center_fraction: float = 0.08, pattern: str = "random",
        seed: int = 0, sigma_y: float = 0.0) -> Measurement:
    """Single-coil Cartesian MRI: the orthonormal 2-D FFT on k-space lines kept at ``acceleration`` (×4, ×8) with
    a fully sampled centre band (``operators.MRI``); grey models only."""
    operator = MRI(ctx.shape, number("acceleration", acceleration), number("center_fraction", center_fraction),
                   pattern, integer("seed", seed))
    return _linear(ctx, operator, sigma_y)


def ct(ctx: TaskContext, views: int | list | None = None, sigma_y: float = 0.0) -> Measurement:
    """Parallel-beam CT: the Radon transform at ``views`` (default 23) equally spaced angles of [0°, 180°) (an
    integer) or at the listed angles in degrees (``operators.Radon``); grey square models only."""
    views = 23 if views is None else views
    if not (is_int(views) or (isinstance(views, list) and all(is_real(a) for a in views))):
        raise bad("views", views, "an integer (equally spaced views) or a list of angles in degrees")
    return _linear(ctx, Radon(ctx.shape, views), sigma_y)


def colorize(ctx: TaskContext) -> Measurement:
    """The grey axis (R+G+B)/√3 of RGB images, observed exactly."""
    if ctx.shape[0] != 3:
        raise ValueError(f"colorize needs an RGB model, but the model's samples have shape {ctx.shape}")
    return LinearMeasurement(Grey(ctx.shape))


def class_conditional(ctx: TaskContext, classifier: str | dict | None = None) -> Measurement:
    """Class labels, with the likelihood of a noise-conditional classifier trained on the score model's SDE:
    ``classifier`` is a model spec (``invsgm.config.models``: a pretrained name or folder, default
    'digits_classifier', or ``{adm_checkpoint: PATH, preset: 64x64_classifier}``)."""
    from .models import check_model_spec, load_model_spec

    spec = check_model_spec("digits_classifier" if classifier is None else classifier, "classifier", score=False)
    loaded = load_model_spec(spec, device=ctx.device)
    name = loaded.card.get("name", str(next(iter(spec.values()))))
    if loaded.card["task"] != "classifier":
        raise ValueError(f"classifier = {classifier!r}: expected a classifier, got a {loaded.card['task']!r} model")
    if type(loaded.sde) is not type(ctx.sde) or loaded.sde.config() != ctx.sde.config():
        raise ValueError(f"classifier {name!r} was trained on {loaded.sde!r} but the score model's SDE is "
                         f"{ctx.sde!r}; they must be the same")
    data = loaded.card["data"]
    shape = (data.get("channels"), data.get("image_size"), data.get("image_size"))
    if shape != tuple(ctx.shape):
        raise ValueError(f"classifier {name!r} classifies images of shape {shape} but the score model's "
                         f"samples have shape {tuple(ctx.shape)}")
    if data["centered"] != ctx.centered:
        raise ValueError(f"classifier {name!r} has data.centered = {data['centered']} but the score model "
                         f"has {ctx.centered}")
    return ClassLabel(loaded.model, x_shape=ctx.shape)


def super_resolution(ctx: TaskContext, factor: int = 2, sigma_y: float = 0.0) -> Measurement:
    """×``factor`` super-resolution of ``factor``×``factor`` average pooling."""
    factor = integer("factor", factor, 1)
    return _linear(ctx, AvgPool(factor, ctx.shape), sigma_y)


def deblur(ctx: TaskContext, sigma: float = 1.0, kernel_size: int = 5, sigma_y: float = 0.0) -> Measurement:
    """Deblurring of a circular Gaussian blur of width ``sigma`` pixels."""
    sigma = number("sigma", sigma)
    if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise bad("kernel_size", kernel_size, "an odd integer >= 1")
    return _linear(ctx, GaussianBlur(sigma, kernel_size, ctx.shape), sigma_y)


def denoise(ctx: TaskContext, sigma_y: float = 0.1) -> Measurement:
    """Denoising of additive Gaussian noise of standard deviation ``sigma_y`` (image units)."""
    if _non_negative("sigma_y", sigma_y) == 0:
        raise bad("sigma_y", sigma_y, "a number > 0 (the noise level to remove)")
    return _linear(ctx, Identity(ctx.shape), sigma_y)


BUILTINS: dict[str, Factory] = {
    "inpaint": inpaint,
    "random_inpaint": random_inpaint,
    "colorize": colorize,
    "class_conditional": class_conditional,
    "class": class_conditional,
    "super_resolution": super_resolution,
    "deblur": deblur,
    "denoise": denoise,
    "mri": mri,
    "ct": ct,
}


# --- the table ------------------------------------------------------------------------------------

def available_tasks() -> list[str]:
    """Every task name: the built-ins and the installed plugins."""
    return available(BUILTINS, ENTRY_POINT_GROUP)


def get_factory(name: str, where: str = "task.name") -> Factory:
    """The factory of task ``name``; an unknown name raises listing the available ones."""
    factory = lookup(name, BUILTINS, ENTRY_POINT_GROUP, "task", where)
    if not callable(factory):
        raise ValueError(f"task plugin {name!r} is a {type(factory).__name__}, not a factory")
    return factory


def build_task(spec: Any, ctx: TaskContext, where: str = "task") -> Measurement:
    """A ``Measurement`` from a spec: ``NAME``, ``{name: NAME, **params}`` or a list of specs (their ``Joint``).

    ``where`` prefixes error messages (the spec's position in the YAML file).
    """
    if isinstance(spec, (list, tuple)):
        if len(spec) == 0:
            raise bad(where, spec, "a task spec {name: NAME, ...} or a list of two or more")
        if len(spec) == 1:
            return build_task(spec[0], ctx, f"{where}[0]")
        return Joint([build_task(s, ctx, f"{where}[{i}]") for i, s in enumerate(spec)])
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"{where} = {spec!r}: expected a mapping with a 'name' key (one of {available_tasks()}) "
                         f"and the task's parameters, or a list of such mappings")
    params = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    factory = get_factory(name, f"{where}.name")
    check_arguments(where, f"task {name!r}", factory, params, skip=1)
    try:
        task = factory(ctx, **params)
    except ValueError as err:
        raise ValueError(f"{where} ({name}): {err}") from None
    if not isinstance(task, Measurement):
        raise ValueError(f"{where}: the factory of task {name!r} returned a {type(task).__name__}, not a "
                         f"Measurement")
    return task


__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "TaskContext", "available_tasks", "build_mask", "build_task",
           "get_factory"]
