"""Model specs → loaded models: the ``model:`` section of ``invsgm run`` and the ``classifier`` of class tasks.

A spec is one of the checkpoint families invsgm reads (``FORMS``)::

    {pretrained: NAME_OR_FOLDER}                          an invsgm model folder (safetensors + card.yaml)
    {score_sde_checkpoint: PATH, preset: NAME, overrides: {nf: 16}, ema: true}     score_sde_pytorch
    {adm_checkpoint: PATH, preset: NAME, overrides: {model_channels: 32}}          OpenAI guided-diffusion
    {diffusers: FOLDER}                                   a diffusers UNet2DModel (or pipeline) folder

and, for score models whose network is class-conditional (ADM's ImageNet models), ``class_label: K``:
the class the network is evaluated at (a class-conditional task passes each input's label instead).
A bare string is short for ``{pretrained: STRING}``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .checks import bad, boolean, integer, mapping, string

FORMS: dict[str, tuple[str, ...]] = {
    "pretrained": (),
    "score_sde_checkpoint": ("preset", "overrides", "ema"),
    "adm_checkpoint": ("preset", "overrides"),
    "diffusers": (),
}
SCORE_ONLY = ("class_label",)
_EXAMPLE = ("{pretrained: NAME_OR_FOLDER}, {score_sde_checkpoint: PATH, preset: NAME}, "
            "{adm_checkpoint: PATH, preset: NAME} or {diffusers: FOLDER}")


def check_model_spec(v: Any, where: str = "model", score: bool = True) -> dict[str, Any]:
    """The spec with its defaults filled in; a ``ValueError`` names the key, the value and what was expected."""
    if isinstance(v, str):
        v = {"pretrained": v}
    allowed = tuple(FORMS) + tuple(k for keys in FORMS.values() for k in keys) + (SCORE_ONLY if score else ())
    m = mapping(where, v, tuple(dict.fromkeys(allowed)))
    forms = [k for k in FORMS if k in m]
    if len(forms) != 1:
        raise bad(where, v, f"exactly one of {_EXAMPLE}")
    form = forms[0]
    spec: dict[str, Any] = {form: string(f"{where}.{form}", m[form])}
    for key in m:
        if key != form and key not in FORMS[form] + SCORE_ONLY:
            raise ValueError(f"{where}.{key} = {m[key]!r}: a {form} model takes no {key!r} "
                             f"(its keys: {[form, *FORMS[form], *(SCORE_ONLY if score else ())]})")
    if "preset" in FORMS[form]:
        if "preset" not in m:
            example = "ve/cifar10_ncsnpp_continuous" if form == "score_sde_checkpoint" else "ffhq_10m"
            raise ValueError(f"{where}: a {form} needs a preset, e.g. preset: {example}")
        spec["preset"] = string(f"{where}.preset", m["preset"])
        overrides = m.get("overrides") or {}
        if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
            raise bad(f"{where}.overrides", overrides, "a mapping of network arguments or SDE parameters, "
                                                        "e.g. {nf: 16}")
        spec["overrides"] = dict(overrides)
    if form == "score_sde_checkpoint":
        spec["ema"] = boolean(f"{where}.ema", m.get("ema", True))
    if "class_label" in m and m["class_label"] is not None:
        spec["class_label"] = integer(f"{where}.class_label", m["class_label"], 0)
    return spec


def load_model_spec(spec: Mapping[str, Any], device: torch.device | str = "cpu"):
    """The ``Pretrained`` model of a checked spec (``check_model_spec``)."""
    if "pretrained" in spec:
        from ..pretrained import load_pretrained

        model = load_pretrained(spec["pretrained"], device=device)
    elif "score_sde_checkpoint" in spec:
        from ..official import load_score_sde_checkpoint

        model = load_score_sde_checkpoint(spec["score_sde_checkpoint"], spec["preset"], ema=spec["ema"],
                                          device=device, **spec["overrides"])
    elif "adm_checkpoint" in spec:
        from ..adm import load_adm_checkpoint

        model = load_adm_checkpoint(spec["adm_checkpoint"], spec["preset"], device=device, **spec["overrides"])
    else:
        from ..diffusers_io import load_diffusers

        model = load_diffusers(spec["diffusers"], device=device)
    if "class_label" in spec:
        classes = class_count(model)
        if classes is None:
            raise ValueError(f"model.class_label = {spec['class_label']}: the network of {model.card['name']!r} is "
                             f"not class-conditional")
        if spec["class_label"] >= classes:
            raise ValueError(f"model.class_label = {spec['class_label']}: the network knows classes 0 to "
                             f"{classes - 1}")
        model.model.class_labels = spec["class_label"]
    return model


def class_count(model) -> int | None:
    """The number of classes a class-conditional score network takes as input (its ``y``), else None."""
    if model.card.get("task") != "score":
        return None
    arch = model.card["model"]
    if arch.get("kind") == "diffusers":
        return arch.get("config", {}).get("num_class_embeds") or None
    return arch.get("num_classes") or None


__all__ = ["FORMS", "check_model_spec", "class_count", "load_model_spec"]
