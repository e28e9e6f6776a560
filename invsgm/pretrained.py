"""Pretrained model folders: ``model.safetensors`` (weights, normally the EMA ones) + ``card.yaml``.

The card is plain YAML::

    name: ...                     task: score | classifier
    model: {kind, ...constructor arguments}      sde: {kind: ve | vp | subvp, ...parameters}
    data: {name, image_size, channels, centered, num_classes (classifiers), ...}
    training: {steps, batch_size, final_loss, ema_decay, lr, ...}
    command: the exact command that reproduces the model      samples: samples.png (optional)

The safetensors metadata carries the same card as JSON (key ``card``), so the weights describe
themselves. Loading reads YAML with ``safe_load`` and tensors with safetensors: it never runs code.
"""
from __future__ import annotations

import json
import numbers
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .models.build import build_model, model_config
from .models.classifier import TimeConditionalClassifier
from .denoisers import Denoiser, NetworkDenoiser, score_sde_parameterization
from .sde import SDE, SDES, sde_from_config

WEIGHTS, CARD = "model.safetensors", "card.yaml"
ENV_VAR = "INVSGM_PRETRAINED"
TASK_KINDS = {"score": ("unet", "mlp", "adm_unet"), "classifier": ("classifier", "adm_classifier")}
# optional sections: how the raw network reads (NetworkDenoiser / TimeConditionalClassifier arguments)
OPTIONAL = {"denoiser": ("prediction", "time_label", "num_steps"), "classifier": ("time_label",)}
REQUIRED = {
    "": ("name", "task", "model", "sde", "data", "training", "command"),
    "model": ("kind",),
    "sde": ("kind",),
    "data": ("name", "centered"),
    "training": ("steps", "batch_size", "final_loss", "ema_decay", "lr"),
}


class PretrainedNotFoundError(FileNotFoundError, ValueError):
    """No pretrained folder under the given path or name (a ``FileNotFoundError`` and a ``ValueError``)."""


@dataclass
class Pretrained:
    """A loaded model: the card, the raw ``net`` (eval mode), its ``sde`` and the time-conditional ``model``.

    ``model`` is a ``NetworkDenoiser`` (s(x, t) ≈ ∇log p_t(x) and x̂₀) for task 'score', by the card's
    ``denoiser: {prediction, time_label}`` (default: score_sde's convention for the SDE), and
    ``TimeConditionalClassifier(net, sde)`` (logits of p_t(y | x)) for task 'classifier', reading the time
    label of the card's ``classifier: {time_label}`` (default: score_sde's convention for the SDE).
    """

    card: dict[str, Any]
    net: nn.Module = field(repr=False)
    sde: SDE
    model: nn.Module = field(repr=False)
    path: Path

    def as_denoiser(self, sde: SDE | None = None) -> Denoiser:
        """The score model as a ``Denoiser`` (``solve`` calls this); a classifier raises."""
        if self.card.get("task") != "score":
            raise ValueError(f"a solver needs a score model, got a pretrained {self.card.get('task')!r} model")
        return self.model


# --- the card --------------------------------------------------------------------------------------

def _plain(value: Any, where: str, source: str) -> Any:
    """``value`` as plain YAML/JSON (dicts with str keys, lists, str, bool, int, float, None), else raise."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"{source}: {where or 'the card'} has a non-string key {key!r}")
        return {k: _plain(v, f"{where}.{k}" if where else k, source) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(f"{source}: {where} is a {type(value).__name__}, not a plain YAML value ({value!r})")


def _section(card: dict, key: str, source: str) -> dict:
    value = card[key]
    if not isinstance(value, dict):
        raise ValueError(f"{source}: key {key!r} must be a mapping, got {value!r}")
    return value


def _check_card(card: Any, source: str) -> dict[str, Any]:
    """The card with ``model`` and ``sde`` resolved (every argument filled in); raise naming ``source`` and the key."""
    if not isinstance(card, dict):
        raise ValueError(f"{source}: a card is a mapping, got {type(card).__name__}")
    card = _plain(card, "", source)
    for section, keys in REQUIRED.items():
        where = _section(card, section, source) if section else card
        for key in keys:
            if key not in where:
                raise ValueError(f"{source}: missing key {f'{section}.{key}' if section else key!r}")
    if card["task"] not in TASK_KINDS:
        raise ValueError(f"{source}: task must be one of {sorted(TASK_KINDS)}, got {card['task']!r}")
    for key, kind in (("name", str), ("command", str)):
        if not isinstance(card[key], kind):
            raise ValueError(f"{source}: {key!r} must be a string, got {card[key]!r}")
    data = card["data"]
    if not isinstance(data["centered"], bool):
        raise ValueError(f"{source}: 'data.centered' must be true or false, got {data['centered']!r}")

    try:
        card["model"] = model = model_config(**card["model"])
    except ValueError as err:
        raise ValueError(f"{source}: model: {err}") from None
    if model["kind"] not in TASK_KINDS[card["task"]]:
        raise ValueError(f"{source}: task {card['task']!r} needs model kind "
                         f"{' or '.join(TASK_KINDS[card['task']])}, got {model['kind']!r}")
    needed = {"in_channels": "channels", "image_size": "image_size", "num_classes": "num_classes"}
    if card["task"] == "classifier" and "num_classes" not in model and "out_channels" in model:
        needed["out_channels"] = "num_classes"  # a classifier whose logits are its output channels (ADM)
    for arg, key in needed.items():
        if arg in model:
            if key not in data:
                raise ValueError(f"{source}: missing key 'data.{key}'")
            if data[key] != model[arg]:
                raise ValueError(f"{source}: 'data.{key}' is {data[key]!r} but 'model.{arg}' is {model[arg]!r}")

    for section, keys in OPTIONAL.items():
        if card.get(section) is not None:  # None: not given (a preset may fill it in after the check)
            value = _section(card, section, source)
            unknown = [k for k in value if k not in keys]
            if unknown:
                raise ValueError(f"{source}: '{section}' has no key {unknown[0]!r}; keys: {list(keys)}")

    sde_args = dict(card["sde"])
    try:
        sde = sde_from_config(str(sde_args.pop("kind")), **sde_args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: sde: {err}") from None
    card["sde"] = {"kind": next(k for k, cls in SDES.items() if type(sde) is cls), **sde.config()}
    return card


def to_model_space(images01: torch.Tensor, card: dict[str, Any]) -> torch.Tensor:
    """Images in [0, 1] → the model's data space: x = 2·img − 1 if ``data.centered`` else img."""
    return 2.0 * images01 - 1.0 if _centered(card) else images01


def from_model_space(x: torch.Tensor, card: dict[str, Any]) -> torch.Tensor:
    """The model's data space → images in [0, 1] (unclipped): img = (x + 1)/2 if ``data.centered`` else x."""
    return (x + 1.0) / 2.0 if _centered(card) else x


def _centered(card: dict[str, Any]) -> bool:
    centered = card.get("data", {}).get("centered") if isinstance(card, dict) else None
    if not isinstance(centered, bool):
        raise ValueError(f"card key 'data.centered' must be true or false, got {centered!r}")
    return centered


# --- weights ---------------------------------------------------------------------------------------

def _shapes(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in tensors.items()}


def _match(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], what: str) -> None:
    """Raise naming the first key the architecture needs but ``what`` lacks, the first extra key, or shapes."""
    missing = [k for k in expected if k not in found]
    if missing:
        raise ValueError(f"{what} lacks {missing[0]!r} that the card's architecture needs "
                         f"({len(missing)} missing key{'s' * (len(missing) > 1)})")
    unexpected = [k for k in found if k not in expected]
    if unexpected:
        raise ValueError(f"{what} has {unexpected[0]!r} that the card's architecture does not have "
                         f"({len(unexpected)} unexpected key{'s' * (len(unexpected) > 1)})")
    for key, shape in expected.items():
        if found[key] != shape:
            raise ValueError(f"{what}: {key!r} has shape {list(found[key])} but the card's architecture "
                             f"needs {list(shape)}")


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; anything else (a pickle, a truncated file) is refused."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except SafetensorError as err:
        raise ValueError(f"{path}: not a valid safetensors file ({err}); only safetensors weights are "
                         f"loaded, never pickles") from None


def card_from_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The card stored (as JSON) in the metadata of a ``model.safetensors`` file."""
    path = Path(path)
    _, metadata = _read_weights(path)
    if "card" not in metadata:
        raise ValueError(f"{path}: the safetensors metadata holds no 'card'")
    return json.loads(metadata["card"])


# --- save and load ---------------------------------------------------------------------------------

def save_pretrained(folder: str | os.PathLike, model: nn.Module, card: dict[str, Any]) -> Path:
    """Write ``model``'s state dict and the card (model/sde sections resolved) to ``folder``; return it.

    The card is checked and must describe ``model``'s architecture. Files are written under temporary
    names first: a new folder appears by one rename, an existing one has its two files replaced (other
    files, e.g. samples.png, stay); an error leaves nothing half-written.
    """
    folder = Path(folder)
    card = _check_card(card, "card")
    with torch.device("meta"):
        reference = build_model(**card["model"])
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _match(_shapes(reference.state_dict()), _shapes(tensors), f"the {type(model).__name__} to save")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder")

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt", "card": json.dumps(card)})
        (tmp / CARD).write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True), encoding="utf-8")
        if folder.is_dir():
            for name in (WEIGHTS, CARD):
                os.replace(tmp / name, folder / name)
            tmp.rmdir()
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def pretrained_root() -> Path:
    """Where bare names are looked up: ``$INVSGM_PRETRAINED`` if set, else the repository's ``pretrained/``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent.parent / "pretrained"


def available_pretrained() -> list[str]:
    """Names of the model folders (those holding a card.yaml) under ``pretrained_root()``."""
    root = pretrained_root()
    return sorted(p.name for p in root.iterdir() if (p / CARD).is_file()) if root.is_dir() else []


def _resolve(name_or_path: str | os.PathLike) -> Path:
    """A bare name found under ``pretrained_root()`` first (``./name`` forces a local folder), else a folder path."""
    path = Path(name_or_path).expanduser()
    root = pretrained_root()
    if isinstance(name_or_path, str) and len(path.parts) == 1 and os.sep not in name_or_path \
            and (root / path).is_dir():
        return root / path
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path}: not a folder; a pretrained model is a folder holding {WEIGHTS} and {CARD}")
    raise PretrainedNotFoundError(
        f"no pretrained model {str(name_or_path)!r}: no such folder and no such name under {root} "
        f"(set {ENV_VAR} to look elsewhere); available: {available_pretrained() or 'none'}")


def load_pretrained(name_or_path: str | os.PathLike, device: torch.device | str = "cpu") -> Pretrained:
    """Load a model folder (a path, or a bare name under ``pretrained_root()``) onto ``device``, in eval mode.

    Every failure raises a ``ValueError`` naming the file and the problem: missing folder (with the
    available names), card missing / not YAML / missing a key, unknown model kind, or weights that do
    not fit the card's architecture (first missing or unexpected key, or a key's two shapes).
    """
    folder = _resolve(name_or_path)
    card_path, weights_path = folder / CARD, folder / WEIGHTS
    if not card_path.is_file():
        hint = f"; {WEIGHTS} holds a copy (card_from_weights)" if weights_path.is_file() else ""
        raise ValueError(f"{card_path}: card missing{hint}")
    try:
        raw = yaml.safe_load(card_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{card_path}: not valid YAML ({err})") from None
    card = _check_card(raw, str(card_path))
    if not weights_path.is_file():
        raise ValueError(f"{weights_path}: weights missing")

    net = build_model(**card["model"])
    tensors, _ = _read_weights(weights_path)
    _match(_shapes(net.state_dict()), _shapes(tensors), str(weights_path))
    net.load_state_dict(tensors)
    net.to(device).eval()
    sde = sde_from_config(**card["sde"])
    if card["task"] == "score":
        model = NetworkDenoiser(net, sde, **(card.get("denoiser") or score_sde_parameterization(sde)))
    else:
        model = TimeConditionalClassifier(net, sde, **(card.get("classifier") or {}))
    return Pretrained(card=card, net=net, sde=sde, model=model.eval(), path=folder)


__all__ = ["Pretrained", "PretrainedNotFoundError", "available_pretrained", "card_from_weights", "from_model_space",
           "load_pretrained", "pretrained_root", "save_pretrained", "to_model_space"]
