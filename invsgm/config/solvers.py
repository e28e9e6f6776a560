"""Solver and guidance names → objects: the table behind the ``sampler:`` section of ``invsgm run`` YAML files.

A sampler spec is ``{name: NAME, steps: N, n_samples: N, batch_size: N, grid: {...}, **params}``: ``steps``,
``n_samples``, ``batch_size`` and the optional ``grid: {sigma_max, sigma_min, rho}`` (steps placed by noise
level instead of uniformly in t) or ``grid: {respacing: ddim50 | 250 | "10,15,20"}`` (ADM's respaced
steps of a discrete-time process, ``steps`` ignored; ``build_timesteps``) are ``solve``'s, every other key is a constructor argument of the solver class
``SOLVERS[NAME]`` (e.g. ``eta`` of DDRM; ``null`` leaves the solver's default, so that
``--set sampler.name=ddrm --set sampler.guidance=null`` swaps the solver), checked against its signature: an unknown key, or a value of
another kind than the parameter's default, raises a ``ValueError`` naming the key. Two kinds of values
are names turned into objects here:

- ``guidance``: ``{name: pigdm | dps | classifier | replacement, **params}`` (``GUIDANCE``), or a list of
  such specs, one per part of a composite task (class guidance + inpainting), or ``auto`` (the default:
  ``invsgm.guidance.default_guidance``);
- ``predictor`` / ``corrector`` of the PC sampler: names in ``invsgm.sampling.PREDICTORS`` / ``CORRECTORS``.

Third-party solvers register under the ``invsgm.solvers`` entry-point group (the entry point's name is
the YAML name; it loads a ``Solver`` subclass); built-in names take precedence::

    [project.entry-points."invsgm.solvers"]
    my_solver = "my_package.solvers:MySolver"
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..guidance import DPS, Classifier, Composite, Consistency, Guidance, PiGDM, Replacement
from ..sampling import CORRECTORS, PREDICTORS
from ..sampling.timesteps import default_timesteps, noise_level_timesteps, respaced_timesteps
from ..sde import SDE
from ..solvers import DAPS, ConsistencyPC, DDIM, DDPM, DDRM, PC, SMC, DiffPIR, RePaint, Solver
from .checks import bad, choice, integer, mapping, number
from .plugins import available, check_arguments, lookup

ENTRY_POINT_GROUP = "invsgm.solvers"
SOLVERS: dict[str, type[Solver]] = {"pc": PC, "smc": SMC, "ddrm": DDRM, "diffpir": DiffPIR, "daps": DAPS,
                                    "repaint": RePaint, "ddim": DDIM, "ddpm": DDPM,
                                    "consistency": ConsistencyPC}
GUIDANCE: dict[str, type[Guidance]] = {"pigdm": PiGDM, "dps": DPS, "classifier": Classifier,
                                       "replacement": Replacement, "consistency": Consistency}
RUN_KEYS = {"steps": 1, "n_samples": 1, "batch_size": 1}  # solve()'s keys, with their lowest value
GRID_KEYS = ("sigma_max", "sigma_min", "rho", "respacing")


def available_solvers() -> list[str]:
    """Every solver name: the built-ins and the installed plugins."""
    return available(SOLVERS, ENTRY_POINT_GROUP)


def solver_class(name: Any, where: str = "sampler.name") -> type[Solver]:
    """The solver class of ``name``; an unknown name raises listing the available ones."""
    cls = lookup(name, SOLVERS, ENTRY_POINT_GROUP, "solver", where)
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise ValueError(f"solver plugin {name!r} is not an invsgm Solver subclass")
    return cls


def build_guidance(spec: Any, where: str = "sampler.guidance") -> Guidance | None:
    """A guidance term from ``{name: NAME, **params}``, a ``Composite`` from a list, None from ``auto``/None."""
    if spec is None or spec == "auto":
        return None
    if isinstance(spec, (list, tuple)):
        if len(spec) < 2:
            raise bad(where, spec, "a guidance spec {name: NAME, ...} or a list of two or more, one per task")
        return Composite([build_guidance(s, f"{where}[{i}]") for i, s in enumerate(spec)])
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise bad(where, spec, f"auto, or {{name: one of {sorted(GUIDANCE)}, ...parameters}}, or a list of them")
    name = choice(f"{where}.name", spec["name"], sorted(GUIDANCE))
    params = {k: v for k, v in spec.items() if k != "name"}
    cls = GUIDANCE[name]
    check_arguments(where, f"guidance {name!r}", cls, params)
    try:
        return cls(**params)
    except ValueError as err:
        raise ValueError(f"{where} ({name}): {err}") from None


def split_sampler(spec: Any, defaults: Mapping[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({name, **solver params}, {steps, n_samples, batch_size}) of a sampler spec, run keys checked and filled."""
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise bad("sampler", spec, f"a mapping {{name: one of {available_solvers()}, steps: N, n_samples: N, ...}}")
    spec = {k: v for k, v in spec.items() if v is not None}  # null: the solver's default (to swap solvers)
    run = {key: integer(f"sampler.{key}", spec.pop(key) if key in spec else defaults[key], low)
           for key, low in RUN_KEYS.items()}
    if "grid" in spec:
        grid = mapping("sampler.grid", spec.pop("grid"), GRID_KEYS)
        if "respacing" in grid:
            if len(grid) > 1:
                raise bad("sampler.grid", grid, "either {respacing: SPEC} or {sigma_max, sigma_min, rho}, not both")
            respacing = grid["respacing"]
            if isinstance(respacing, bool) or not isinstance(respacing, (str, int)):
                raise bad("sampler.grid.respacing", respacing, "ADM's respacing: ddimK, an integer or 'K1,K2,...'")
            run["grid"] = {"respacing": str(respacing)}
        else:
            run["grid"] = {k: number(f"sampler.grid.{k}", v) for k, v in grid.items()}
    spec.setdefault("name", "pc")
    return spec, run


def build_timesteps(sde: SDE, steps: int, grid: Mapping[str, float] | None) -> torch.Tensor:
    """The time grid of a sampler section: ``steps`` uniform steps in t, or with ``grid: {sigma_max, sigma_min,
    rho}`` placed by noise level (``noise_level_timesteps``; rho 7 by default), or ADM's ``{respacing: SPEC}``."""
    if grid is None:
        return default_timesteps(sde, steps)
    try:
        if "respacing" in grid:
            return respaced_timesteps(sde, grid["respacing"])
        return noise_level_timesteps(sde, steps, grid.get("sigma_max"), grid.get("sigma_min"), grid.get("rho", 7.0))
    except ValueError as err:
        raise ValueError(f"sampler.grid = {dict(grid)!r}: {err}") from None


def build_solver(spec: Mapping[str, Any], where: str = "sampler") -> Solver:
    """A solver from ``{name: NAME, **params}`` (``steps``, ``n_samples``, ``batch_size`` already split off)."""
    name = spec.get("name", "pc")
    cls = solver_class(name, f"{where}.name")
    params = {k: v for k, v in spec.items() if k != "name"}
    check_arguments(where, f"solver {name!r}", cls, params)
    if "guidance" in params:
        params["guidance"] = build_guidance(params["guidance"], f"{where}.guidance")
    for key, table in (("predictor", PREDICTORS), ("corrector", CORRECTORS)):
        if key in params:
            params[key] = table[choice(f"{where}.{key}", params[key], sorted(table))]
    try:
        return cls(**params)
    except ValueError as err:
        raise ValueError(f"{where} ({name}): {err}") from None


__all__ = ["ENTRY_POINT_GROUP", "GUIDANCE", "RUN_KEYS", "SOLVERS", "available_solvers", "build_guidance",
           "build_solver", "build_timesteps", "solver_class", "split_sampler"]
