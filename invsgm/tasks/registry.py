"""Task names → ``Task`` objects: the table behind the ``task:`` section of ``invsgm run`` YAML files.

A factory is ``factory(ctx: TaskContext, **params) -> Task``: ``ctx`` says what the score model works
on (sample shape, data space, SDE, device) and ``params`` are the YAML keys beside ``name``. Every
parameter is checked before the factory runs: an unknown key, a missing one, or a value whose type
differs from the parameter's default (bool, int, number, string, list, mapping) raises a
``ValueError`` naming the key, the value and what was expected.

Built-in names (``BUILTINS``); noise levels ``sigma_y`` are in image units ([0, 1] pixels) and are
doubled for models of centred data ([−1, 1]):

=====================  ==============================================================================
``inpaint``            ``mask`` = ``{box: [top, left, height, width]}`` (missing box) | ``{random: p,
                       seed: 0}`` (each pixel missing with probability p) | ``{file: PATH}`` (white =
                       observed); ``sigma_y`` = 0 → ``Replacement`` (ICLR 2021), > 0 → ``LinearGaussian``
                       with ``guidance`` ('pigdm' | 'dps'), ``scale`` and ``jacobian`` ('gaussian', the
                       default: ∂x̂₀/∂x_t of a Gaussian prior, no backward pass | 'network': autograd)
``random_inpaint``     ``missing`` (0.7), ``seed`` (0), ``sigma_y``, ``guidance``, ``scale``, ``jacobian``
                       → ``LinearGaussian``
``colorize``           ``Replacement(Grey)``: the grey axis (R+G+B)/√3 is observed exactly
``class_conditional``  ``classifier`` (a pretrained name or folder, 'digits_classifier'), ``scale`` (1.0)
                       → ``ClassGuidance``; the classifier's SDE must be the score model's
``super_resolution``   ``factor`` (2), ``sigma_y``, ``guidance``, ``scale``, ``jacobian`` → ``LinearGaussian(AvgPool)``
``deblur``             ``sigma`` (1.0 px), ``kernel_size`` (5), ``sigma_y``, ``guidance``, ``scale``, ``jacobian``
                       → ``LinearGaussian(GaussianBlur)``
``denoise``            ``sigma_y`` (0.1), ``guidance``, ``scale``, ``jacobian`` → ``LinearGaussian(Identity)``
=====================  ==============================================================================

A list of task specs is their ``Composite`` (e.g. class guidance and inpainting). Other packages add
tasks through the ``invsgm.tasks`` entry-point group: the entry point's name is the YAML name and it
loads a factory with the same signature, e.g. in the plugin's ``pyproject.toml``::

    [project.entry-points."invsgm.tasks"]
    my_task = "my_package.tasks:my_task_factory"

Built-in names take precedence over entry points of the same name.
"""
from __future__ import annotations

import importlib.metadata
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from ..config import bad, choice, integer, is_int, is_real, number, type_of
from ..imageio import mask_from_file
from ..operators import AvgPool, GaussianBlur, Grey, Identity, Mask, box_mask, random_mask
from ..sde import SDE
from .base import Composite, Task
from .guidance import ClassGuidance
from .linear import GUIDANCE, JACOBIANS, LinearGaussian
from .replacement import Replacement

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


Factory = Callable[..., Task]


# --- value checks inside factories ----------------------------------------------------------------

def _non_negative(key: str, value: Any) -> float:
    return number(key, value, 0.0, strict=False)


def _linear(ctx: TaskContext, operator, sigma_y: float, guidance: str, scale: float,
            jacobian: str) -> LinearGaussian:
    return LinearGaussian(operator, ctx.noise(_non_negative("sigma_y", sigma_y)),
                          choice("guidance", guidance, GUIDANCE), _non_negative("scale", scale),
                          jacobian=choice("jacobian", jacobian, JACOBIANS))


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

def inpaint(ctx: TaskContext, mask: dict | None = None, sigma_y: float = 0.0, guidance: str = "pigdm",
            scale: float = 1.0, jacobian: str = "gaussian") -> Task:
    """Fill the missing pixels of ``mask``: replacement when noiseless, ΠGDM / DPS guidance when σ_y > 0."""
    if mask is None:
        raise ValueError("inpaint needs a mask: mask: {box: [top, left, height, width]} | "
                         "{random: FRACTION, seed: INT} | {file: PATH}")
    op = build_mask(mask, ctx.shape)
    if _non_negative("sigma_y", sigma_y) == 0:
        return Replacement(op)
    return _linear(ctx, op, sigma_y, guidance, scale, jacobian)


def random_inpaint(ctx: TaskContext, missing: float = 0.7, seed: int = 0, sigma_y: float = 0.0,
                   guidance: str = "pigdm", scale: float = 1.0, jacobian: str = "gaussian") -> Task:
    """Each pixel missing with probability ``missing`` (a fixed draw from ``seed``), solved by guidance."""
    op = build_mask({"random": missing, "seed": seed}, ctx.shape)
    return _linear(ctx, op, sigma_y, guidance, scale, jacobian)


def colorize(ctx: TaskContext) -> Task:
    """Colorization by replacement of the grey axis (needs RGB images)."""
    if ctx.shape[0] != 3:
        raise ValueError(f"colorize needs an RGB model, but the model's samples have shape {ctx.shape}")
    return Replacement(Grey(ctx.shape))


def class_conditional(ctx: TaskContext, classifier: str = "digits_classifier", scale: float = 1.0) -> Task:
    """Classifier guidance with a noise-conditional classifier trained on the score model's SDE."""
    from ..pretrained import load_pretrained

    scale = _non_negative("scale", scale)
    loaded = load_pretrained(classifier, device=ctx.device)
    if loaded.card["task"] != "classifier":
        raise ValueError(f"classifier = {classifier!r}: expected a pretrained classifier, got a "
                         f"{loaded.card['task']!r} model")
    if type(loaded.sde) is not type(ctx.sde) or loaded.sde.config() != ctx.sde.config():
        raise ValueError(f"classifier {classifier!r} was trained on {loaded.sde!r} but the score model's SDE is "
                         f"{ctx.sde!r}; they must be the same")
    data = loaded.card["data"]
    shape = (data.get("channels"), data.get("image_size"), data.get("image_size"))
    if shape != tuple(ctx.shape):
        raise ValueError(f"classifier {classifier!r} classifies images of shape {shape} but the score model's "
                         f"samples have shape {tuple(ctx.shape)}")
    if data["centered"] != ctx.centered:
        raise ValueError(f"classifier {classifier!r} has data.centered = {data['centered']} but the score model "
                         f"has {ctx.centered}")
    return ClassGuidance(loaded.model, scale, x_shape=ctx.shape)


def super_resolution(ctx: TaskContext, factor: int = 2, sigma_y: float = 0.0, guidance: str = "pigdm",
                     scale: float = 1.0, jacobian: str = "gaussian") -> Task:
    """×``factor`` super-resolution of ``factor``×``factor`` average pooling."""
    factor = integer("factor", factor, 1)
    return _linear(ctx, AvgPool(factor, ctx.shape), sigma_y, guidance, scale, jacobian)


def deblur(ctx: TaskContext, sigma: float = 1.0, kernel_size: int = 5, sigma_y: float = 0.0,
           guidance: str = "pigdm", scale: float = 1.0, jacobian: str = "gaussian") -> Task:
    """Deblurring of a circular Gaussian blur of width ``sigma`` pixels."""
    sigma = number("sigma", sigma)
    if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise bad("kernel_size", kernel_size, "an odd integer >= 1")
    return _linear(ctx, GaussianBlur(sigma, kernel_size, ctx.shape), sigma_y, guidance, scale, jacobian)


def denoise(ctx: TaskContext, sigma_y: float = 0.1, guidance: str = "pigdm", scale: float = 1.0,
            jacobian: str = "gaussian") -> Task:
    """Denoising of additive Gaussian noise of standard deviation ``sigma_y`` (image units)."""
    if _non_negative("sigma_y", sigma_y) == 0:
        raise bad("sigma_y", sigma_y, "a number > 0 (the noise level to remove)")
    return _linear(ctx, Identity(ctx.shape), sigma_y, guidance, scale, jacobian)


BUILTINS: dict[str, Factory] = {
    "inpaint": inpaint,
    "random_inpaint": random_inpaint,
    "colorize": colorize,
    "class_conditional": class_conditional,
    "super_resolution": super_resolution,
    "deblur": deblur,
    "denoise": denoise,
}


# --- the table ------------------------------------------------------------------------------------

def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed ``invsgm.tasks`` entry points by name (read anew at every call)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_tasks() -> list[str]:
    """Every task name: the built-ins and the installed plugins."""
    return sorted(set(BUILTINS) | set(_entry_points()))


def get_factory(name: str) -> Factory:
    """The factory of task ``name``; an unknown name raises listing the available ones."""
    if not isinstance(name, str):
        raise ValueError(f"task name {name!r}: expected a string, one of {available_tasks()}")
    if name in BUILTINS:
        return BUILTINS[name]
    plugins = _entry_points()
    if name not in plugins:
        raise ValueError(f"unknown task {name!r}; available: {available_tasks()} (plugins register more "
                         f"under the entry-point group {ENTRY_POINT_GROUP!r})")
    ep = plugins[name]
    try:
        factory = ep.load()
    except ImportError as err:
        raise ImportError(f"task plugin {name!r} ({ep.value}) cannot be imported: {err}") from err
    if not callable(factory):
        raise ValueError(f"task plugin {name!r} ({ep.value}) is a {type(factory).__name__}, not a factory")
    return factory


def check_params(name: str, factory: Factory, params: Mapping[str, Any], where: str = "task") -> None:
    """Raise naming the key, its value and what was expected for an unknown, missing or ill-typed parameter."""
    signature = inspect.signature(factory)
    accepted = {k: p for k, p in list(signature.parameters.items())[1:]  # the first one is ctx
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key, value in params.items():
        if key not in accepted:
            if takes_any:
                continue
            raise ValueError(f"{where}.{key} = {value!r}: unknown parameter of task {name!r}; expected one of "
                             f"{list(accepted) or 'no parameters'}")
        check = type_of(accepted[key].default)
        if check is not None and not check[0](value):
            raise ValueError(f"{where}.{key} = {value!r}: expected {check[1]} (task {name!r})")
    missing = [k for k, p in accepted.items() if p.default is inspect.Parameter.empty and k not in params]
    if missing:
        raise ValueError(f"{where}: task {name!r} needs the parameter(s) {missing}")


def build_task(spec: Any, ctx: TaskContext, where: str = "task") -> Task:
    """A ``Task`` from a spec: ``NAME``, ``{name: NAME, **params}`` or a list of specs (their ``Composite``).

    ``where`` prefixes error messages (the spec's position in the YAML file).
    """
    if isinstance(spec, (list, tuple)):
        if len(spec) == 0:
            raise bad(where, spec, "a task spec {name: NAME, ...} or a list of two or more")
        if len(spec) == 1:
            return build_task(spec[0], ctx, f"{where}[0]")
        return Composite([build_task(s, ctx, f"{where}[{i}]") for i, s in enumerate(spec)])
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"{where} = {spec!r}: expected a mapping with a 'name' key (one of {available_tasks()}) "
                         f"and the task's parameters, or a list of such mappings")
    params = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    factory = get_factory(name)
    check_params(name, factory, params, where)
    try:
        task = factory(ctx, **params)
    except ValueError as err:
        raise ValueError(f"{where} ({name}): {err}") from None
    if not isinstance(task, Task):
        raise ValueError(f"{where}: the factory of task {name!r} returned a {type(task).__name__}, not a Task")
    return task


__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "TaskContext", "available_tasks", "build_mask", "build_task",
           "check_params", "get_factory"]
