"""Load OpenAI guided-diffusion (ADM) checkpoints into invsgm: presets of the released files, loading, export.

The released files (``PRESETS``) are plain state dicts ``{parameter name: float32 tensor}`` of
guided-diffusion's ``UNetModel`` (diffusion models) or ``EncoderUNetModel`` (noise-conditional ImageNet
classifiers), built by ``script_util.create_model`` / ``create_classifier`` from command-line flags. A
preset holds those official flags (as the scripts take them: ``attention_resolutions`` is a string of
image-size divisors, ``channel_mult`` "" means the default of the image size) and where they and the file
come from; ``model_args`` converts them into ``invsgm.models.adm.ADMUNet`` / ``ADMClassifier`` arguments.
Files are read with ``torch.load(..., weights_only=True)`` only (a pickle that asks to run code is
refused, not run).

The process is the discrete-time DDPM of ADM with 1000 steps: ``DiscreteVPSDE(schedule, N=1000)`` (linear
β_i = linspace(1e-4, 0.02, 1000) for ``ffhq_10m`` and the 128/256/512-px models, cosine for the 64-px
ones), step i at t = i/999. Data are centred images in [−1, 1] (``data.centered = True``).

- Diffusion models predict ε and a learned-range variance (6 channels) and read the step index:
  ``NetworkDenoiser(net, sde, prediction="eps_learned_variance", time_label="index")`` (the card's
  ``denoiser`` section); class-conditional ones need ``denoiser.class_labels`` set.
- Classifiers give ImageNet logits of p_t(y | x_t) from the same x_t and step index:
  ``TimeConditionalClassifier(net, sde, time_label="index")`` (the card's ``classifier`` section).

    python -m invsgm.adm presets
    python -m invsgm.adm show PRESET [--set model_channels=32]
    python -m invsgm.adm export CHECKPOINT PRESET OUT_FOLDER [--set model_channels=32]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml

from ._weights_only import load_weights_only
from .config import parse_sets
from .denoisers import NetworkDenoiser
from .models.adm import ADMClassifier, ADMUNet
from .models.build import build_model
from .models.classifier import TimeConditionalClassifier
from .pretrained import Pretrained, _check_card, save_pretrained
from .sde import sde_from_config

GUIDED_DIFFUSION = "https://github.com/openai/guided-diffusion"
DPS = "https://github.com/DPS2022/diffusion-posterior-sampling"
BLOB = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
DPS_DRIVE = "https://drive.google.com/drive/folders/1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh?usp=sharing"
NUM_CLASSES = 1000   # script_util.NUM_CLASSES (ImageNet)
STEPS = 1000         # diffusion_steps of every released model
KINDS = {"diffusion": ("score", "adm_unet", ADMUNet), "classifier": ("classifier", "adm_classifier", ADMClassifier)}
SET_FORM = "KEY=VALUE, e.g. --set model_channels=32"  # overrides are flat: an ADMUNet / ADMClassifier argument

# script_util.model_and_diffusion_defaults() (network part) and classifier_defaults(): the values of flags
# a command line does not set
MODEL_DEFAULTS: dict[str, Any] = dict(
    image_size=64, num_channels=128, num_res_blocks=2, num_heads=4, num_heads_upsample=-1, num_head_channels=-1,
    attention_resolutions="16,8", channel_mult="", dropout=0.0, class_cond=False, use_checkpoint=False,
    use_scale_shift_norm=True, resblock_updown=False, use_fp16=False, use_new_attention_order=False,
    learn_sigma=False)
CLASSIFIER_DEFAULTS: dict[str, Any] = dict(
    image_size=64, classifier_use_fp16=False, classifier_width=128, classifier_depth=2,
    classifier_attention_resolutions="32,16,8", classifier_use_scale_shift_norm=True,
    classifier_resblock_updown=True, classifier_pool="attention")
CLASSIFIER_HEAD_CHANNELS = 64  # create_classifier passes num_head_channels=64 to EncoderUNetModel


@dataclass(frozen=True)
class Preset:
    """One released ADM file with its official flags and where they come from."""

    name: str                    # the file's stem, e.g. '64x64_diffusion'
    kind: str                    # 'diffusion' (UNetModel) | 'classifier' (EncoderUNetModel)
    flags: dict[str, Any]        # create_model / create_classifier flags, script_util defaults filled in
    noise_schedule: str          # 'linear' | 'cosine' (of the diffusion the model belongs to)
    data: str                    # 'ffhq' | 'imagenet'
    repository: str              # where the flags and the download link are published
    flags_source: str            # the file of that repository that gives the flags
    checkpoint_url: str          # the download link as that repository gives it
    sampling: dict[str, Any] = field(default_factory=dict)   # the official sampling flags of the source
    training: dict[str, Any] = field(default_factory=dict)   # official training flags, where published

    @property
    def file(self) -> str:
        """The released file's name."""
        return f"{self.name}.pt"

    def model_args(self) -> dict[str, Any]:
        """The flags as ``ADMUNet`` / ``ADMClassifier`` arguments (``model_args_from_flags``)."""
        return model_args_from_flags(self.flags, self.kind)


def default_channel_mult(image_size: int) -> tuple[float, ...]:
    """create_model's / create_classifier's channel multipliers for channel_mult "" at ``image_size``."""
    table = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
    if image_size not in table:
        raise ValueError(f"the official code has no default channel_mult for image_size={image_size} "
                         f"(only {sorted(table)}); give channel_mult explicitly")
    return table[image_size]


def attention_factors(resolutions: str | int, image_size: int) -> tuple[int, ...]:
    """The official attention flag ("32,16,8": image-size divisors) → downsampling factors image_size // r."""
    try:
        divisors = [int(r) for r in str(resolutions).split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"attention_resolutions must be comma-separated integers, got {resolutions!r}") from None
    if any(r < 1 or image_size % r for r in divisors):
        raise ValueError(f"attention_resolutions {resolutions!r} must divide image_size={image_size}")
    return tuple(image_size // r for r in divisors)


def model_args_from_flags(flags: Mapping[str, Any], kind: str = "diffusion") -> dict[str, Any]:
    """``script_util.create_model`` flags (kind 'diffusion') or ``create_classifier`` flags ('classifier'), with
    the script defaults for missing ones, as ``ADMUNet`` / ``ADMClassifier`` keyword arguments."""
    if kind == "diffusion":
        f = {**MODEL_DEFAULTS, **flags}
        size = int(f["image_size"])
        mult = (default_channel_mult(size) if f["channel_mult"] in ("", None)
                else tuple(float(m) if "." in m else int(m) for m in str(f["channel_mult"]).split(",")))
        return dict(image_size=size, in_channels=3, model_channels=int(f["num_channels"]),
                    out_channels=6 if f["learn_sigma"] else 3, num_res_blocks=int(f["num_res_blocks"]),
                    attention_resolutions=attention_factors(f["attention_resolutions"], size),
                    dropout=float(f["dropout"]), channel_mult=mult, conv_resample=True,
                    num_classes=NUM_CLASSES if f["class_cond"] else None, num_heads=int(f["num_heads"]),
                    num_head_channels=int(f["num_head_channels"]), num_heads_upsample=int(f["num_heads_upsample"]),
                    use_scale_shift_norm=bool(f["use_scale_shift_norm"]), resblock_updown=bool(f["resblock_updown"]),
                    use_new_attention_order=bool(f["use_new_attention_order"]))
    if kind == "classifier":
        f = {**CLASSIFIER_DEFAULTS, **flags}
        size = int(f["image_size"])
        return dict(image_size=size, in_channels=3, model_channels=int(f["classifier_width"]),
                    out_channels=NUM_CLASSES, num_res_blocks=int(f["classifier_depth"]),
                    attention_resolutions=attention_factors(f["classifier_attention_resolutions"], size),
                    dropout=0.0, channel_mult=default_channel_mult(size), conv_resample=True, num_heads=1,
                    num_head_channels=CLASSIFIER_HEAD_CHANNELS,
                    use_scale_shift_norm=bool(f["classifier_use_scale_shift_norm"]),
                    resblock_updown=bool(f["classifier_resblock_updown"]), use_new_attention_order=False,
                    pool=str(f["classifier_pool"]))
    raise ValueError(f"kind must be 'diffusion' or 'classifier', got {kind!r}")


# --- the released files ----------------------------------------------------------------------------

_README = "README.md"  # guided-diffusion's README: download links ("Download pre-trained models") and flags
_IMAGENET = dict(attention_resolutions="32,16,8", class_cond=True, learn_sigma=True, num_channels=256,
                 num_head_channels=64, num_res_blocks=2, resblock_updown=True, use_fp16=True,
                 use_scale_shift_norm=True)


def _diffusion(name: str, entry: str, schedule: str, sampling: dict[str, Any], **flags: Any) -> Preset:
    return Preset(name, "diffusion", {**MODEL_DEFAULTS, **flags}, schedule, "imagenet", GUIDED_DIFFUSION,
                  f"{_README} ('Classifier guidance', {entry!r}: MODEL_FLAGS; script_util defaults for the rest)",
                  BLOB + f"{name}.pt", {"timestep_respacing": "250", **sampling})


def _classifier(size: int, schedule: str, training: dict[str, Any] | None = None, **flags: Any) -> Preset:
    return Preset(f"{size}x{size}_classifier", "classifier", {**CLASSIFIER_DEFAULTS, "image_size": size, **flags},
                  schedule, "imagenet", GUIDED_DIFFUSION,
                  f"{_README} ('Classifier guidance', '{size}x{size} model': the classifier_sample.py line and "
                  f"--image_size; script_util.classifier_defaults() for the rest)",
                  BLOB + f"{size}x{size}_classifier.pt", {"guides": f"{size}x{size}_diffusion"}, training or {})


PRESETS: dict[str, Preset] = {p.name: p for p in (
    # DPS (configs/model_config.yaml + configs/diffusion_config.yaml); the README links a Google-Drive folder
    Preset("ffhq_10m", "diffusion",
           {**MODEL_DEFAULTS, "image_size": 256, "num_channels": 128, "num_res_blocks": 1, "channel_mult": "",
            "learn_sigma": True, "class_cond": False, "use_checkpoint": False, "attention_resolutions": "16",
            "num_heads": 4, "num_head_channels": 64, "num_heads_upsample": -1, "use_scale_shift_norm": True,
            "dropout": 0.0, "resblock_updown": True, "use_fp16": False, "use_new_attention_order": False},
           "linear", "ffhq", DPS, "configs/model_config.yaml (diffusion: configs/diffusion_config.yaml; download "
           "link: README.md)", DPS_DRIVE,
           {"sampler": "ddpm", "timestep_respacing": "1000", "clip_denoised": True,
            "source": "configs/diffusion_config.yaml"}),
    _diffusion("64x64_diffusion", "64x64 model", "cosine",
               {"classifier": "64x64_classifier", "classifier_scale": 1.0},
               **{**_IMAGENET, "image_size": 64, "num_channels": 192, "num_res_blocks": 3, "dropout": 0.1,
                  "use_new_attention_order": True}),
    _diffusion("128x128_diffusion", "128x128 model", "linear",
               {"classifier": "128x128_classifier", "classifier_scale": 0.5},
               **{k: v for k, v in _IMAGENET.items() if k != "num_head_channels"}, image_size=128, num_heads=4),
    _diffusion("256x256_diffusion", "256x256 model", "linear",
               {"classifier": "256x256_classifier", "classifier_scale": 1.0},
               **_IMAGENET, image_size=256),
    _diffusion("256x256_diffusion_uncond", "256x256 model (unconditional)", "linear",
               {"classifier": "256x256_classifier", "classifier_scale": 10.0},
               **{**_IMAGENET, "class_cond": False}, image_size=256),
    _diffusion("512x512_diffusion", "512x512 model", "linear",
               {"classifier": "512x512_classifier", "classifier_scale": 4.0},
               **{**_IMAGENET, "use_fp16": False}, image_size=512),
    _classifier(64, "cosine", classifier_depth=4),
    # the README's flags for training the 128x128 classifier (TRAIN_FLAGS)
    _classifier(128, "linear", {"batch_size": 256, "lr": 3e-4, "n_iters": 300000, "weight_decay": 0.05,
                                "anneal_lr": True}),
    _classifier(256, "linear"),
    _classifier(512, "linear"),
)}


def resolve_preset(preset: str | Preset) -> Preset:
    """The ``Preset`` named ``preset`` (the file's stem; a trailing '.pt' is accepted)."""
    if isinstance(preset, Preset):
        return preset
    if not isinstance(preset, str):
        raise ValueError(f"a preset is a name (str), got {type(preset).__name__}; presets: {list(PRESETS)}")
    name = preset.removesuffix(".pt")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {list(PRESETS)}")
    return PRESETS[name]


def _model(p: Preset, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{'kind', **arguments} of ``p`` with ``overrides`` (constructor arguments by name) applied."""
    _, kind, cls = KINDS[p.kind]
    allowed = list(inspect.signature(cls).parameters)
    for key in overrides:
        if key not in allowed:
            raise ValueError(f"preset {p.name!r} has no setting {key!r}; overridable: the {cls.__name__} "
                             f"arguments {allowed}")
    return {"kind": kind, **p.model_args(), **overrides}


def preset_card(preset: str | Preset, **overrides: Any) -> dict[str, Any]:
    """The invsgm card of ``preset`` with ``overrides`` (e.g. ``model_channels=32, num_head_channels=16``), checked.

    ``training`` holds None where the source publishes nothing; the ``adm`` section names the source
    repository, the flags' file, the download link, the official flags and the overrides.
    """
    p = resolve_preset(preset)
    task, _, _ = KINDS[p.kind]
    model = _model(p, overrides)
    classes = model.get("num_classes") if task == "score" else model.get("out_channels")
    card: dict[str, Any] = {
        "name": p.name,
        "task": task,
        "model": model,
        "sde": {"kind": "discrete_vp", "schedule": p.noise_schedule, "N": STEPS},
        "data": {"name": p.data, "image_size": model.get("image_size"), "channels": model.get("in_channels"),
                 "centered": True, "num_classes": classes},
        "training": {"steps": None, "batch_size": None, "final_loss": None, "ema_decay": None, "lr": None,
                     **p.training},
        "command": _command("CHECKPOINT", p.name, "OUT", overrides),
        "adm": {"repository": p.repository, "file": p.file, "checkpoint_url": p.checkpoint_url,
                "flags_source": p.flags_source, "flags": dict(p.flags),
                "overrides": dict(overrides), "diffusion_steps": STEPS, "noise_schedule": p.noise_schedule,
                "learn_sigma": p.flags.get("learn_sigma", True), "rescale_timesteps": False,
                "sampling": dict(p.sampling)},
    }
    card = _check_card(card, f"preset {p.name!r}" + (f" with {dict(overrides)}" if overrides else ""))
    if task == "score":
        c, out = card["model"]["in_channels"], card["model"]["out_channels"]
        if out not in (c, 2 * c):
            raise ValueError(f"preset {p.name!r}: out_channels={out} must be in_channels={c} (ε) or "
                             f"{2 * c} (ε and the learned variance)")
        card["denoiser"] = {"prediction": "eps_learned_variance" if out == 2 * c else "eps", "time_label": "index"}
    else:
        card["classifier"] = {"time_label": "index"}
    return card


def _command(checkpoint: str, preset: str, out: str, overrides: Mapping[str, Any]) -> str:
    args = ["python", "-m", "invsgm.adm", "export", checkpoint, preset, out]
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: --set reads it back
    return shlex.join(args)


# --- reading a checkpoint --------------------------------------------------------------------------

def _shape(v: Any) -> list[int] | str:
    return list(v.shape) if torch.is_tensor(v) else f"a {type(v).__name__}, not a tensor"


def _looks_like(state: Mapping[str, Any]) -> str | None:
    """'diffusion' for a state dict with decoder keys, 'classifier' for an encoder-only one, else None."""
    if any(k.startswith("output_blocks.") for k in state):
        return "diffusion"
    return "classifier" if "time_embed.0.weight" in state and "middle_block.0.in_layers.0.weight" in state else None


def _check_state(path: Path, where: str, kind: str, raw: Any,
                 expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (a 'module.' prefix stripped); raise on the first key that does not fit."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: an ADM checkpoint is a plain state dict {{parameter name: tensor}}, "
                         f"got a {type(raw).__name__}")
    state: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: the state dict has a non-string key {key!r}")
        state[key.removeprefix("module.")] = value
    looks = _looks_like(state)
    if looks is not None and looks != kind:
        raise ValueError(f"{path}: holds a guided-diffusion {looks} model "
                         f"({'UNetModel' if looks == 'diffusion' else 'EncoderUNetModel'} keys) but {where} is a "
                         f"{kind} model; choose a {looks} preset")
    if state and not any(k in expected for k in state):
        wrapped = [k for k in state if isinstance(state[k], Mapping)]
        hint = (f"; it looks wrapped (keys {sorted(state)[:5]}): a released ADM file holds the parameters "
                f"themselves" if wrapped else "")
        raise ValueError(f"{path}: none of the checkpoint's keys (e.g. {next(iter(state))!r}) belongs to "
                         f"{where}{hint}")
    for name, ref in expected.items():
        if name not in state:
            raise ValueError(f"{path}: the checkpoint lacks {name!r} that {where} needs (shape {list(ref.shape)}); "
                             f"is it a checkpoint of another model?")
        value = state[name]
        if not torch.is_tensor(value) or tuple(value.shape) != tuple(ref.shape):
            raise ValueError(f"{path}: {name!r} has shape {_shape(value)} in the checkpoint but {where} needs "
                             f"{list(ref.shape)}; is it a checkpoint of another model or width (e.g. "
                             f"model_channels)?")
        if not value.is_floating_point():
            raise ValueError(f"{path}: {name!r} is a {value.dtype} tensor, not floating point")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ValueError(f"{path}: the checkpoint has {unexpected[0]!r} that {where} does not have "
                         f"({len(unexpected)} unexpected key{'s' * (len(unexpected) > 1)}); is it a checkpoint "
                         f"of another model?")
    return state


def load_adm_checkpoint(path: str | os.PathLike, preset: str | Preset, *, device: torch.device | str = "cpu",
                        **overrides: Any) -> Pretrained:
    """Load a guided-diffusion checkpoint of ``preset`` as a ``Pretrained`` model (float32, eval mode).

    Args:
        path: the released ``.pt`` file (a plain state dict; a 'module.' prefix is stripped).
        preset: a name of ``PRESETS`` (e.g. 'ffhq_10m', '256x256_classifier').
        device: where the network goes.
        overrides: ``ADMUNet`` / ``ADMClassifier`` arguments replacing the preset's (e.g. ``model_channels=32``).

    ``.net(x, timesteps[, y])`` is the official network; ``.model`` is the ``NetworkDenoiser`` (diffusion) or
    ``TimeConditionalClassifier`` (classifier) on ``.sde`` (see the module docstring). Every problem raises a
    ``ValueError`` naming the file: missing, truncated or corrupt file, a pickle that would run code
    (refused, not run), not a state dict, or weights of another model (the first missing / unexpected key,
    or a key with both shapes); an unknown preset or override raises naming the choices.
    """
    p = resolve_preset(preset)
    card = preset_card(p, **overrides)
    path = Path(path)
    raw = load_weights_only(path, file_hint="a released ADM checkpoint is one .pt file",
                            holders="Released ADM checkpoints")
    with torch.device("meta"):
        net = build_model(**card["model"])
    where = f"preset {p.name!r}" + (f" with {dict(overrides)}" if overrides else "")
    state = _check_state(path, where, p.kind, raw, net.state_dict())
    tensors = {k: v.detach().to(device=device, dtype=torch.float32, copy=True) for k, v in state.items()}
    del raw, state
    net.load_state_dict(tensors, assign=True)
    net.eval()

    card["command"] = _command(str(path), p.name, "OUT", overrides)
    card["adm"]["checkpoint"] = str(path)
    sde = sde_from_config(**card["sde"])
    if card["task"] == "score":
        model = NetworkDenoiser(net, sde, **card["denoiser"])
    else:
        model = TimeConditionalClassifier(net, sde, **card["classifier"])
    return Pretrained(card=card, net=net, sde=sde, model=model.eval(), path=path)


def export_adm_checkpoint(path: str | os.PathLike, preset: str | Preset, out_folder: str | os.PathLike,
                          **overrides: Any) -> Path:
    """Convert a guided-diffusion checkpoint into an invsgm model folder (safetensors + card.yaml); return it.

    ``invsgm.pretrained.load_pretrained(out_folder)`` reloads it to the same network, denoiser / classifier
    and outputs; the card's ``command`` is the export command and its ``adm`` section names the source.
    """
    loaded = load_adm_checkpoint(path, preset, **overrides)
    card = dict(loaded.card)
    card["command"] = _command(str(path), card["name"], str(out_folder), overrides)
    return save_pretrained(out_folder, loaded.net, card)


# --- command line ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m invsgm.adm {presets, show, export}``; a bad input prints the message and returns 2."""
    parser = argparse.ArgumentParser(prog="python -m invsgm.adm",
                                     description="OpenAI guided-diffusion (ADM) checkpoints → invsgm model folders.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("presets", help="list the presets (released files)")
    show = sub.add_parser("show", help="print a preset's card")
    show.add_argument("preset")
    export = sub.add_parser("export", help="write a released checkpoint as an invsgm model folder")
    export.add_argument("checkpoint", help="the released .pt file")
    export.add_argument("preset", help="e.g. ffhq_10m (see 'presets')")
    export.add_argument("out", help="the model folder to write")
    for p in (show, export):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override an ADMUNet / ADMClassifier argument, e.g. model_channels=32 (repeatable)")
    args = parser.parse_args(argv)
    try:
        if args.action == "presets":
            for p in PRESETS.values():
                print(f"{p.name:26s} {p.kind:10s} {p.noise_schedule:6s} {p.checkpoint_url}")
        elif args.action == "show":
            card = preset_card(args.preset, **parse_sets(args.set, SET_FORM))
            print(yaml.safe_dump(card, sort_keys=False), end="")
        else:
            folder = export_adm_checkpoint(args.checkpoint, args.preset, args.out, **parse_sets(args.set, SET_FORM))
            print(f"wrote {folder}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


__all__ = ["PRESETS", "Preset", "attention_factors", "default_channel_mult", "export_adm_checkpoint",
           "load_adm_checkpoint", "main", "model_args_from_flags", "preset_card", "resolve_preset"]

if __name__ == "__main__":
    sys.exit(main())
