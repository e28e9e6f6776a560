"""Training configs: the YAML file and ``--set`` overrides become a validated ``TrainConfig`` here.

A config has five sections::

    data:      {name: digits, image_size: 16, ...}        # name + keyword arguments of load_dataset
    sde:       {kind: vp, beta_min: 0.1, beta_max: 20}    # kind + parameters of sde_from_config
    model:     {kind: unet, nf: 32, ...}                   # kind + constructor arguments of build_model
    training:  {steps: 20000, batch_size: 128, ...}        # see ``TrainingConfig``
    output:    runs/digits_score                           # folder of checkpoints, logs, grids and the export

Every key is checked: an unknown key raises a ``ValueError`` naming it and its section, a bad value
one naming the key, the value and what was expected. The model's image arguments (``in_channels``,
``image_size``, ``num_classes``, the MLP's ``dim``) default to the dataset's and need not be given.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import yaml

from ..atomic import atomic_open
from ..config import (apply_set, bad, boolean, choice, integer, is_real, number, parse_sets, parse_value,
                      read_yaml, sde_name, type_of)

SECTIONS = ("data", "sde", "model", "training", "output")

# Training keys that may change between a run and its resumption (they do not alter the trained weights).
RESUMABLE_KEYS = ("steps", "checkpoint_every", "sample_every", "n_samples", "sample_steps", "sample_corrector",
                  "sample_snr", "log_every", "num_workers")

SET_FORM = "section.key=value, e.g. --set training.steps=100"  # what a training --set item looks like


@dataclass(frozen=True)
class TrainingConfig:
    """The ``training`` section. ``batch_size`` is the GLOBAL batch, split evenly over the processes."""

    steps: int = 10000             # optimiser steps in all (a resumed run continues up to it)
    batch_size: int = 128          # global batch (per process: batch_size / world size)
    lr: float = 2e-4               # Adam learning rate after warm-up (betas 0.9, 0.999, eps 1e-8)
    warmup: int = 500              # linear learning-rate warm-up over this many steps (0: none)
    grad_clip: float | None = 1.0  # clip the gradient norm to this (null: no clipping)
    ema_decay: float = 0.999       # θ_ema ← d θ_ema + (1 − d) θ after every step
    weighting: str = "paper"       # DSM weighting λ(t): 'paper' (σ²) or 'likelihood' (g²); score task only
    reduce_mean: bool = False      # DSM: average the squared error over dimensions instead of summing
    checkpoint_every: int = 1000   # write OUTPUT/checkpoint.pt every K steps (and at the end)
    sample_every: int = 0          # write OUTPUT/samples/step_XXXXXXX.png every K steps (0: only at the end)
    n_samples: int = 64            # images per sample grid
    sample_steps: int = 200        # predictor steps of the PC sampler for the grids
    sample_corrector: str = "langevin"  # corrector of the grids' PC sampler: 'langevin' or 'none'
    sample_snr: float = 0.16       # signal-to-noise ratio of the Langevin corrector
    log_every: int = 50            # one row of OUTPUT/log.csv every K steps
    seed: int = 0                  # all randomness is a function of (seed, step, rank)
    amp: bool = False              # mixed precision (float16 autocast + GradScaler); CUDA only, ignored on CPU
    num_workers: int = 0           # DataLoader worker processes

    CHECKS = {  # no annotation: a class attribute, not a field; check(key, value) -> the plain value
        "steps": partial(integer, low=1), "batch_size": partial(integer, low=1), "lr": number,
        "warmup": partial(integer, low=0), "grad_clip": partial(number, optional=True),
        "ema_decay": partial(number, strict=False, high=1.0),
        "weighting": partial(choice, options=("paper", "likelihood")), "reduce_mean": boolean,
        "checkpoint_every": partial(integer, low=1), "sample_every": partial(integer, low=0),
        "n_samples": partial(integer, low=1), "sample_steps": partial(integer, low=1),
        "sample_corrector": partial(choice, options=("langevin", "none")), "sample_snr": number,
        "log_every": partial(integer, low=1), "seed": partial(integer, low=0), "amp": boolean,
        "num_workers": partial(integer, low=0),
    }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingConfig":
        """Check every key and value of the ``training`` section."""
        if not isinstance(values, dict):
            raise ValueError(f"section 'training' must be a mapping of keys to values, got {values!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        out = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown key {key!r} in section 'training'; expected one of {known}")
            out[key] = cls.CHECKS[key](f"training.{key}", value)
        return cls(**out)


@dataclass(frozen=True)
class TrainConfig:
    """A validated training config. ``data``, ``sde`` and ``model`` are plain dicts (name/kind + arguments)."""

    data: dict[str, Any]
    sde: dict[str, Any]
    model: dict[str, Any]
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: str = "runs/train"

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "TrainConfig":
        """Validate a config mapping (as read from YAML) and return the ``TrainConfig``."""
        if not isinstance(config, dict):
            raise ValueError(f"a training config must be a mapping with sections {list(SECTIONS)}, got {config!r}")
        for key in config:
            if key not in SECTIONS:
                raise ValueError(f"unknown section {key!r} in the config; expected sections {list(SECTIONS)}")
        for key in ("data", "sde", "model"):
            if key not in config:
                raise ValueError(f"the config has no {key!r} section")
        output = config.get("output", "runs/train")
        if not isinstance(output, (str, Path)) or not str(output):
            raise ValueError(f"output = {output!r}: expected a folder path")
        return cls(data=check_data(config["data"]), sde=check_sde(config["sde"]), model=check_model(config["model"]),
                   training=TrainingConfig.from_dict(config.get("training") or {}), output=str(output))

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML/JSON values (the inverse of ``from_dict``)."""
        return {"data": copy.deepcopy(self.data), "sde": copy.deepcopy(self.sde), "model": copy.deepcopy(self.model),
                "training": {f.name: getattr(self.training, f.name) for f in dataclasses.fields(self.training)},
                "output": self.output}

    def with_overrides(self, overrides: dict[str, Any]) -> "TrainConfig":
        """A copy with dotted keys replaced, e.g. ``{'training.steps': 10, 'model.nf': 16}`` (validated again)."""
        return TrainConfig.from_dict(apply_overrides(self.to_dict(), overrides))


def _section(name: str, values: Any, key: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(values, dict):
        raise ValueError(f"section {name!r} must be a mapping with {key!r} and arguments, got {values!r}")
    if key not in values:
        raise ValueError(f"section {name!r} needs a {key!r} key")
    kwargs = dict(values)
    kind = kwargs.pop(key)
    if not isinstance(kind, str):
        raise ValueError(f"{name}.{key} = {kind!r}: expected a string")
    return kind, kwargs


def _check_signature(section: str, what: str, fn: Callable, kwargs: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Raise naming the first key of ``kwargs`` that ``fn`` does not accept (nothing if it takes **kwargs)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if n not in skip and p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in kwargs:
        if key not in allowed:
            raise ValueError(f"unknown key {key!r} in section {section!r} ({what}); expected one of {allowed}")


def check_sde(values: Any) -> dict[str, Any]:
    """The ``sde`` section: kind in {'ve', 'vp', 'subvp'} and that SDE's parameters (floats, N an integer)."""
    from ..sde import SDES, sde_from_config

    kind, params = _section("sde", values, "kind")
    key = sde_name("sde.kind", kind)
    _check_signature("sde", f"{SDES[key].__name__}", SDES[key], params)
    for name, value in params.items():
        if name == "N":
            integer("sde.N", value, 1)
        elif not is_real(value):
            raise bad(f"sde.{name}", value, "a number")
        else:
            params[name] = float(value)
    try:
        sde = sde_from_config(key, **params)
    except ValueError as err:
        raise ValueError(f"sde: {err}") from None
    return {"kind": key, **sde.config()}  # every parameter, defaults filled in


# Model arguments that come from the dataset when the config leaves them out.
DATA_ARGS = {"unet": ("in_channels", "image_size"), "classifier": ("in_channels", "image_size", "num_classes"),
             "mlp": ("dim",)}


def check_model(values: Any) -> dict[str, Any]:
    """The ``model`` section: kind in ``build.MODELS`` and that class's constructor arguments, typed."""
    from ..models.build import MODELS, model_config

    kind, kwargs = _section("model", values, "kind")
    if kind not in MODELS:
        raise ValueError(f"model.kind = {kind!r}: expected one of {sorted(MODELS)}")
    _check_signature("model", MODELS[kind].__name__, MODELS[kind], kwargs)
    placeholders = {"dim": 1} if kind == "mlp" and "dim" not in kwargs else {}
    try:
        model_config(kind, **placeholders, **kwargs)
    except ValueError as err:
        raise ValueError(f"model: {err}") from None
    return {"kind": kind, **kwargs}


def check_data(values: Any) -> dict[str, Any]:
    """The ``data`` section: a dataset name and its keyword arguments (checked against the loader's signature)."""
    name, kwargs = _section("data", values, "name")
    try:
        from .. import data as data_module
    except ImportError:  # the data module is optional at config time; load_dataset checks at run time
        return {"name": name, **kwargs}
    loader = _dataset_loader(data_module, name)
    if loader is not None:
        _check_signature("data", f"dataset {name!r}", loader, kwargs, skip=("name",))
        _check_types("data", loader, kwargs)
    return {"name": name, **kwargs}


def _check_types(section: str, fn: Callable, kwargs: dict[str, Any]) -> None:
    """Raise naming key, value and expected type when a value's type differs from the default's (``type_of``;
    null may replace a string); arguments without a default or defaulting to None are left to ``fn``."""
    params = inspect.signature(fn).parameters
    for key, value in kwargs.items():
        default = params[key].default if key in params else None
        check = None if default is inspect.Parameter.empty else type_of(default)
        if check is None or (value is None and isinstance(default, str)):
            continue
        if not check[0](value):
            raise bad(f"{section}.{key}", value, check[1])


def _dataset_loader(data_module: Any, name: str) -> Callable | None:
    """The callable behind ``load_dataset(name, ...)`` when the data module exposes its table (else None)."""
    for table_name in ("DATASETS", "_DATASETS"):
        table = getattr(data_module, table_name, None)
        if isinstance(table, dict):
            if name not in table:
                raise ValueError(f"data.name = {name!r}: expected one of {sorted(table)}")
            return table[name]
    return None


# --- overrides ------------------------------------------------------------------------------------------

def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each dotted key (``section.key[.sub...]`` or ``output``) set to its value.

    The section must be one of ``SECTIONS`` and is never replaced whole (``output`` excepted); below it,
    ``invsgm.config.apply_set`` walks mappings and list indices (``model.ch_mult.0``).
    """
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if parts[0] not in SECTIONS:
            raise ValueError(f"--set {dotted}: unknown section {parts[0]!r}; expected one of {list(SECTIONS)}")
        if parts[0] == "output" and len(parts) != 1:
            raise ValueError(f"--set {dotted}: 'output' has no sub-keys")
        if parts[0] != "output" and (len(parts) < 2 or not all(parts)):
            raise ValueError(f"--set {dotted}: expected {SET_FORM}")
        apply_set(config, parts, value, dotted)
    return config


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``['training.steps=10', 'model.ch_mult=[1,2]']`` → ``{'training.steps': 10, 'model.ch_mult': [1, 2]}``."""
    return parse_sets(items or [], SET_FORM)


def load_config(path: str | Path, overrides: dict[str, Any] | list[str] | None = None,
                output: str | Path | None = None) -> TrainConfig:
    """Read a YAML config, apply ``--set`` overrides (dict or 'key=value' strings) and ``--out``, validate.

    Without an ``output`` key the run goes to ``runs/<file stem>``.
    """
    values = read_yaml(path, "config", SECTIONS)
    values.setdefault("output", f"runs/{Path(path).stem}")
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    values = apply_overrides(values, overrides or {})
    if output is not None:
        values["output"] = str(output)
    return TrainConfig.from_dict(values)


def as_config(config: "TrainConfig | dict[str, Any]") -> TrainConfig:
    """A ``TrainConfig`` from itself or from a (validated here) mapping."""
    if isinstance(config, TrainConfig):
        return config
    return TrainConfig.from_dict(config)


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically), so ``invsgm train TASK path`` reproduces the run."""
    with atomic_open(path, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    return Path(path)


def resume_mismatch(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """Dotted keys whose values differ between a checkpoint's config and ``current`` (resumable keys ignored)."""
    now = current.to_dict()
    diffs = []
    for section in ("data", "sde", "model", "training"):
        a, b = saved.get(section, {}), now[section]
        for key in sorted(set(a) | set(b)):
            if section == "training" and key in RESUMABLE_KEYS:
                continue
            if _norm(a.get(key)) != _norm(b.get(key)):
                diffs.append(f"{section}.{key}: {a.get(key)!r} in the checkpoint, {b.get(key)!r} now")
    return diffs


def _norm(v: Any) -> Any:
    return [_norm(x) for x in v] if isinstance(v, (list, tuple)) else v


__all__ = ["TrainConfig", "TrainingConfig", "load_config", "as_config", "save_config", "parse_overrides",
           "apply_overrides", "parse_value", "read_yaml", "resume_mismatch", "RESUMABLE_KEYS"]
