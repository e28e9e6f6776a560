"""The run file's schema: every key of ``invsgm run``'s YAML checked, defaults filled in (``resolve_config``), and the
command line's overrides applied (``load_run_config``). The schema itself is documented in ``invsgm.run``."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..config import apply_sets, bad, choice, integer, is_int, mapping, read_yaml, sde_name, string
from ..config.models import check_model_spec
from ..config.solvers import build_solver, split_sampler

SECTIONS = ("model", "sde", "task", "sampler", "inputs", "output", "seed", "device")
DATASETS = ("photos_test", "digits_test", "phantoms_test")
FITS = ("resize", "crop")  # inputs.fit: how an image of another size is made to fit
INPUT_KEYS = ("dataset", "path", "observations", "masks", "truth", "fit", "count", "labels")
SOURCES = ("dataset", "path", "observations")  # at most one: where the inputs come from
SAMPLER_DEFAULTS = {"steps": 200, "n_samples": 4, "batch_size": 8}  # solve()'s keys; the rest go to the solver


def _check_model(v: Any) -> dict[str, Any]:
    return check_model_spec(v, "model")


def _check_sde(v: Any) -> str | dict | None:
    """None, an SDE name or {kind: NAME, parameters}; names as in ``sde_from_config`` ('sub-VP' → 'subvp')."""
    from ..sde import SDES

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
    i = mapping("inputs", v, INPUT_KEYS)
    given = [k for k in SOURCES if k in i]
    if len(given) > 1:
        raise bad("inputs", v, f"one of {', '.join(SOURCES)}, not {' and '.join(given)}")
    if not given and "labels" not in i:
        raise bad("inputs", v, f"{{dataset: one of {list(DATASETS)}, count: N}}, {{path: FILE_OR_FOLDER}} (clean "
                               f"images: observations simulated), {{observations: FILE_OR_FOLDER, masks: ..., truth: "
                               f"...}} (observed images) or {{labels: [...]}} (class tasks)")
    if "dataset" in i:
        choice("inputs.dataset", i["dataset"], DATASETS)
    for key in ("path", "observations", "masks", "truth"):
        if key in i:
            string(f"inputs.{key}", i[key])
    for key in ("masks", "truth"):
        if key in i and "observations" not in i:
            raise ValueError(f"inputs.{key} = {i[key]!r}: goes with inputs.observations (--observation); for "
                             f"simulated observations the images are the truth (inputs.path, --input) and the mask is "
                             f"the task's (task.mask)")
    if "fit" in i:
        if i["fit"] is None:
            del i["fit"]
        else:
            choice("inputs.fit", i["fit"], FITS)
            if "dataset" in i:
                raise ValueError(f"inputs.fit = {i['fit']!r}: the {i['dataset']} images have the model's size; fit is "
                                 f"for image files (inputs.path, inputs.observations)")
    if i.get("count") is not None:
        i["count"] = integer("inputs.count", i["count"], 1)
    if "labels" in i:
        labels = i["labels"]
        if not isinstance(labels, list) or not labels or not all(is_int(y) and y >= 0 for y in labels):
            raise bad("inputs.labels", labels, "a non-empty list of class indices (integers >= 0)")
        if i.get("count") is not None and not given:
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
                    observation: str | None = None, mask: str | None = None, truth: str | None = None,
                    fit: str | None = None, out: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """Read ``path``, apply the ``--set KEY.SUB=VALUE`` items and the command line's inputs (``--input`` clean
    images; ``--observation`` observed images with ``--mask``, ``--truth``; ``--resize`` / ``--crop`` as
    ``fit``), ``--out``, ``--seed``; check; resolve.

    ``--input`` and ``--observation`` replace the YAML's inputs, keeping its ``labels`` and ``fit``.
    """
    values = apply_sets(read_yaml(path, "task", SECTIONS), sets)
    if input_path is not None and observation is not None:
        raise ValueError("--input (clean images, observations simulated) and --observation (observed images) "
                         "exclude each other")
    inputs = values.get("inputs") if isinstance(values.get("inputs"), dict) else {}
    kept = {k: inputs[k] for k in ("labels", "fit") if inputs.get(k) is not None}
    if input_path is not None:
        values["inputs"] = {"path": str(input_path), **kept}
    if observation is not None:
        values["inputs"] = {"observations": str(observation), **kept}
    for flag, key, value in (("--mask", "masks", mask), ("--truth", "truth", truth)):
        if value is None:
            continue
        if not isinstance(values.get("inputs"), dict) or "observations" not in values["inputs"]:
            raise ValueError(f"{flag} {value}: goes with --observation (or inputs.observations in the YAML)")
        values["inputs"][key] = str(value)
    if fit is not None:
        if not isinstance(values.get("inputs"), dict):
            raise ValueError(f"--{fit}: the config has no inputs")
        values["inputs"]["fit"] = fit
    if out is not None:
        values["output"] = str(out)
    if seed is not None:
        values["seed"] = seed
    return resolve_config(values, stem=Path(path).stem)


__all__ = ["DATASETS", "FITS", "INPUT_KEYS", "SAMPLER_DEFAULTS", "SECTIONS", "load_run_config", "resolve_config"]
