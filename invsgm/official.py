"""Load the official score_sde_pytorch checkpoints (NCSN++ / DDPM++, continuous and discrete time) into invsgm.

The official repository (github.com/yang-song/score_sde_pytorch) trains with ``main.py --config
configs/<sde>/<name>.py`` and publishes its checkpoints in a Google-Drive folder, one sub-folder per
configuration (``PRESETS[name].checkpoint_url``). A checkpoint is a ``torch.save`` of

    {"optimizer": ..., "model": DataParallel state dict ("module.sigmas", "module.all_modules.{i}...."),
     "ema": {"decay", "num_updates", "shadow_params": [tensors, in parameters() order, requires_grad only]},
     "step": int}

It is read with ``torch.load(..., weights_only=True)`` only (tensors, numbers and containers; a pickle
that asks to run code is refused, not run); the optimizer is ignored.

A preset is one official configuration: the architecture (``UNet`` arguments), the SDE, the data
scaling and how the network's output and time label read (the card's ``denoiser`` section, which
``load_pretrained`` of an exported folder uses). Its name is ``<sde>/<config>``, e.g.
``ve/cifar10_ncsnpp_continuous``, as the official ``configs/`` folder and checkpoint folders spell it
(``ffhq_1024`` / ``celebahq_1024`` for the official ``ffhq_ncsnpp_continuous.py`` /
``celebahq_ncsnpp_continuous.py``). A bare name without ``<sde>/`` means the one preset of that name if
only one SDE has it, else the one whose checkpoint the official repository released if exactly one
was; otherwise (``cifar10_ddpmpp_continuous``: VP and sub-VP were both released) it is ambiguous and
raises naming the choices.

invsgm's ``UNet`` leaves out the official network's final division by σ (``model.scale_by_sigma``), so
an NCSN++ on VE returns σ·score (``prediction='sigma_score'``); VP / sub-VP networks predict ε (``'eps'``).
Continuous time (``*_continuous``, ``training.continuous = True``): VE networks read σ(t)
(``time_label='sigma'``), VP / sub-VP ones 999·t (``'999t'``).

Discrete time (``training.continuous = False``; official ``models/utils.py:get_score_fn``):

- ``ve/cifar10_ncsnpp`` (SMLD): the network reads the noise-level index k = round((1 − t)(N − 1)) and
  divides its output by ``sigmas[k]``, the table exp(linspace(log σ_max, log σ_min, N)) that the
  checkpoint holds as ``module.sigmas`` (index 0 is the largest σ). On ``VESDE(σ_min, σ_max, N)``,
  σ(1 − k/(N − 1)) = sigmas[k], so this is ``'sigma_score'`` with ``time_label='reversed_index'``; between
  grid times invsgm divides by σ(t), the official code by σ of the nearest index. The loader checks
  ``module.sigmas`` against the preset's table and refuses a checkpoint whose table differs.
- ``vp/cifar10_ddpmpp`` (DDPM): the network reads t·(N − 1) unrounded and predicts ε; the official score
  is −ε̂ / sqrt_1m_alphas_cumprod[floor(t·(N − 1))] with β_i = linspace(β_min/N, β_max/N, N). invsgm uses
  ``DiscreteVPSDE('linear', N=1000, beta_start=1e-4, beta_end=0.02)``, whose marginals equal those tables
  at t_i = i/(N − 1) (between grid times it interpolates log ᾱ, the official code takes the lower
  index), with ``'eps'`` and ``'999t'``; N therefore stays 1000.

Data scaling: the user always works with images in [0, 1] mapped by ``invsgm.pretrained.to_model_space``.
The official VE models are trained on uncentred data (``data.centered = False``): their score is
∇log p_t of images in [0, 1] and the network itself centres its input (``UNet(input_centering=True)``).
The VP / sub-VP models use centred data in [−1, 1] (``data.centered = True``).

    python -m invsgm.official presets
    python -m invsgm.official show PRESET [--set nf=16]
    python -m invsgm.official export CHECKPOINT PRESET OUT_FOLDER [--set nf=16] [--raw]
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml

from ._names import sde_key
from ._weights_only import load_weights_only
from .config import parse_sets
from .denoisers import NetworkDenoiser
from .models.build import build_model
from .models.unet import UNet
from .pretrained import Pretrained, _check_card, save_pretrained
from .sde import sde_from_config

DRIVE = "https://drive.google.com/drive/folders/"
ALL_CHECKPOINTS = DRIVE + "1tFmF_uh57O6lx9ggtZT_5LdonVK2cV-e"  # the official repository's checkpoint folder
REPOSITORY = "https://github.com/yang-song/score_sde_pytorch"
CHECKPOINT_KEYS = ("model", "ema", "step")
EMA_KEYS = ("decay", "num_updates", "shadow_params")


@dataclass(frozen=True)
class Preset:
    """One official configuration: ``configs/<config>`` of score_sde_pytorch, as invsgm arguments."""

    name: str                   # '<sde>/<config name>', e.g. 've/cifar10_ncsnpp_continuous'
    config: str                 # the official config file, e.g. 'configs/ve/cifar10_ncsnpp_continuous.py'
    sde: dict[str, Any]         # {'kind': 've' | 'vp' | 'subvp', ...SDE parameters}
    model: dict[str, Any]       # UNet arguments (kind 'unet'), full official width
    data: dict[str, Any]        # {'name', 'image_size', 'channels', 'centered'}
    training: dict[str, Any]    # official batch_size, lr, ema_decay (model.ema_rate), n_iters
    sampling: dict[str, Any]    # the official PC sampler: predictor, corrector, snr
    checkpoint_url: str | None = field(default=None)  # Google-Drive folder of the released checkpoint
    continuous: bool = True     # training.continuous; False: discrete-time labels (see the module docstring)

    @property
    def released(self) -> bool:
        """Whether the official repository published a checkpoint of this configuration."""
        return self.checkpoint_url is not None


# --- the official configurations (configs/default_*_configs.py + configs/<sde>/*.py) ---------------

_COMMON = dict(kind="unet", in_channels=3, resblock_type="biggan", fir_kernel=(1, 3, 3, 1), resamp_with_conv=True,
               skip_rescale=True, init_scale=0.0, progressive_combine="sum", fourier_scale=16.0, conditional=True,
               nonlinearity="swish", attention_type="ddpm", attn_resolutions=(16,))
# CIFAR-10, 32 px: NCSN++ (FIR, residual input pyramid) and DDPM++ (neither); 'deep' doubles the blocks
_NCSNPP_32 = dict(_COMMON, image_size=32, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, dropout=0.1, fir=True,
                  progressive="none", progressive_input="residual")
_DDPMPP_32 = dict(_NCSNPP_32, fir=False, progressive_input="none")
# 256 px (LSUN defaults, FFHQ, CelebA-HQ) and 1024 px: output and input image pyramids
_NCSNPP_256 = dict(_COMMON, image_size=256, nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, dropout=0.0,
                   fir=True, progressive="output_skip", progressive_input="input_skip")
_NCSNPP_1024 = dict(_NCSNPP_256, image_size=1024, nf=16, ch_mult=(1, 2, 4, 8, 16, 32, 32, 32), num_res_blocks=1)

_VE_SAMPLER = dict(predictor="reverse_diffusion", corrector="langevin")
_VP_SAMPLER = dict(predictor="euler_maruyama", corrector="none", snr=0.16)
_CIFAR = dict(name="cifar10", image_size=32, channels=3)
_CIFAR_TRAIN = dict(batch_size=128, lr=2e-4, n_iters=1300001)


def _cifar(sde: str, arch: str, deep: bool, url: str | None, continuous: bool = True) -> Preset:
    """configs/<sde>/cifar10_<arch>[_deep][_continuous].py (defaults: configs/default_cifar10_configs.py)."""
    name = f"cifar10_{arch}{'_deep' if deep else ''}{'_continuous' if continuous else ''}"
    # Fourier features only for continuous VE (σ labels); positional for 999 t labels and for indices
    model = dict(_NCSNPP_32 if arch == "ncsnpp" else _DDPMPP_32, num_res_blocks=8 if deep else 4,
                 embedding_type="fourier" if sde == "ve" and continuous else "positional",
                 input_centering=sde == "ve")
    if sde == "ve":
        sde_args = dict(kind="ve", sigma_min=0.01, sigma_max=50.0, N=1000)
    elif continuous:
        sde_args = dict(kind=sde, beta_min=0.1, beta_max=20.0, N=1000)
    else:  # sde_lib.VPSDE's discrete tables: β_i = linspace(β_min/N, β_max/N, N) = linspace(1e-4, 0.02, 1000)
        sde_args = dict(kind="discretevp", schedule="linear", N=1000, beta_start=0.1 / 1000, beta_end=20.0 / 1000)
    training = dict(_CIFAR_TRAIN, ema_decay=0.999 if sde == "ve" else 0.9999, n_iters=950001 if deep else 1300001)
    if sde == "ve":
        sampling = dict(_VE_SAMPLER, snr=0.16)
    elif continuous:
        sampling = dict(_VP_SAMPLER)
    else:  # configs/vp/cifar10_ddpmpp.py: DDPM's ancestral sampler
        sampling = dict(_VP_SAMPLER, predictor="ancestral_sampling")
    return Preset(f"{sde}/{name}", f"configs/{sde}/{name}.py", sde_args, model,
                  dict(_CIFAR, centered=sde != "ve"), training, sampling, url and DRIVE + url, continuous)


def _highres(name: str, config: str, data: str, sigma_max: float, url: str | None) -> Preset:
    model = dict(_NCSNPP_1024 if "1024" in name else _NCSNPP_256, embedding_type="fourier", input_centering=True)
    size = model["image_size"]
    if size == 1024:  # configs/ve/{ffhq,celebahq}_ncsnpp_continuous.py: self-contained configs
        training, snr = dict(batch_size=8, lr=2e-4, ema_decay=0.9999, n_iters=2400001), 0.15
    else:  # configs/default_lsun_configs.py
        training, snr = dict(batch_size=64, lr=2e-4, ema_decay=0.999, n_iters=2400001), 0.075
    return Preset(f"ve/{name}", f"configs/ve/{config}.py", dict(kind="ve", sigma_min=0.01, sigma_max=sigma_max, N=2000),
                  model, dict(name=data, image_size=size, channels=3, centered=False), training,
                  dict(_VE_SAMPLER, snr=snr), url and DRIVE + url)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    _cifar("ve", "ncsnpp", False, "1sP4GwvrYiI-sDPTp7sKYzsxJLGVamVMZ", continuous=False),
    _cifar("ve", "ncsnpp", False, "1b0gy_LLgO_DaQBgoWXwlVnL_rcAUgREh"),
    _cifar("ve", "ncsnpp", True, "11s6A_xM7qiztdj8AHQWqaIAUSC3I7uX2"),
    _cifar("vp", "ncsnpp", False, None),
    _cifar("vp", "ncsnpp", True, None),
    _cifar("vp", "ddpmpp", False, "1zOVj03ZBcq339p5QEKJPh2bBrxR_HOCM", continuous=False),
    _cifar("vp", "ddpmpp", False, "1xYjVMx10N9ivQQBIsEoXEeu9nvSGTBrC"),
    _cifar("vp", "ddpmpp", True, "1ZMLBiu9j7-rpdTQu8M2LlHAEQq4xRYrj"),
    _cifar("subvp", "ncsnpp", False, None),
    _cifar("subvp", "ncsnpp", True, None),
    _cifar("subvp", "ddpmpp", False, "1bLgmnEAZnysRZfWt8qN3omGfijJ_B884"),
    _cifar("subvp", "ddpmpp", True, "16QGkviGcizSbIPRk37-YksUhlNIna4Ys"),
    _highres("bedroom_ncsnpp_continuous", "bedroom_ncsnpp_continuous", "lsun_bedroom", 378.0,
             "18GmxDvfGR8se9uFucc9uweeVrX_GzuUG"),
    _highres("church_ncsnpp_continuous", "church_ncsnpp_continuous", "lsun_church_outdoor", 380.0,
             "1zVChA0HrnJU66Jkt4P6KOnlREhBMc4Yh"),
    _highres("ffhq_256_ncsnpp_continuous", "ffhq_256_ncsnpp_continuous", "ffhq", 348.0,
             "1KG72ZKUCUa8dDcA03hOf1BsnK8kBcdPD"),
    _highres("celebahq_256_ncsnpp_continuous", "celebahq_256_ncsnpp_continuous", "celebahq", 348.0,
             "19VJ7UZTE-ytGX6z5rl-tumW9c0Ps3itk"),
    _highres("ffhq_1024_ncsnpp_continuous", "ffhq_ncsnpp_continuous", "ffhq", 1348.0,
             "1ZqLNr_kH0o9DxvwSlrQPMmkrhEnXhBm2"),
    _highres("celebahq_1024_ncsnpp_continuous", "celebahq_ncsnpp_continuous", "celebahq", 1348.0, None),
)}

_UNET_ARGS = [a for a in inspect.signature(UNet).parameters if a not in ("out_channels", "input_centering")]
_SDE_ARGS = {"ve": ("sigma_min", "sigma_max", "N"), "vp": ("beta_min", "beta_max", "N"),
             "subvp": ("beta_min", "beta_max", "N"), "discretevp": ("beta_start", "beta_end", "N")}
SIGMAS_RTOL = 1e-5  # module.sigmas vs the preset's table: float32 rounding passes, another σ_min/σ_max/N does not
SET_FORM = "KEY=VALUE, e.g. --set nf=16"  # overrides are flat: a UNet argument or an SDE parameter by name


def resolve_preset(preset: str | Preset) -> Preset:
    """The ``Preset`` named ``preset`` ('<sde>/<name>', or a bare name by the rule in the module docstring)."""
    if isinstance(preset, Preset):
        return preset
    if not isinstance(preset, str):
        raise ValueError(f"a preset is a name (str), got {type(preset).__name__}; presets: {list(PRESETS)}")
    if preset in PRESETS:
        return PRESETS[preset]
    matches = [p for p in PRESETS.values() if p.name.split("/", 1)[1] == preset]
    released = [p for p in matches if p.released]
    if len(matches) == 1 or len(released) == 1:
        return matches[0] if len(matches) == 1 else released[0]
    if matches:
        raise ValueError(f"preset {preset!r} is ambiguous: the official repository released it for "
                         f"{' and '.join(p.name.split('/')[0] for p in released)}; "
                         f"name one of {[p.name for p in matches]}")
    raise ValueError(f"unknown preset {preset!r}; presets: {list(PRESETS)}")


def _apply_overrides(p: Preset, overrides: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """(model, sde, data) of ``p`` with ``overrides`` (UNet arguments or SDE parameters by name) applied."""
    model, sde, data = dict(p.model), dict(p.sde), dict(p.data)
    sde_args = _SDE_ARGS[sde_key(sde["kind"])]
    for key, value in overrides.items():
        if key in _UNET_ARGS:
            model[key] = value
        elif key in sde_args:
            sde[key] = value
        else:
            raise ValueError(f"preset {p.name!r} has no setting {key!r}; overridable: UNet arguments {_UNET_ARGS} "
                             f"and SDE parameters {list(sde_args)}")
    data["image_size"], data["channels"] = model["image_size"], model["in_channels"]
    return model, sde, data


def _denoiser(p: Preset, sde: Mapping[str, Any]) -> dict[str, Any]:
    """The ``NetworkDenoiser`` arguments (prediction, time_label[, num_steps]) of ``p``'s official score
    function (``models/utils.py:get_score_fn``), for the SDE section ``sde`` (overrides applied)."""
    kind = sde_key(sde["kind"])
    if p.continuous:  # = score_sde_parameterization(sde)
        return {"prediction": "sigma_score", "time_label": "sigma"} if kind == "ve" else \
            {"prediction": "eps", "time_label": "999t"}
    if kind == "ve":  # labels = round((T − t)(N − 1)); the net divides by sigmas[labels]
        return {"prediction": "sigma_score", "time_label": "reversed_index", "num_steps": sde["N"]}
    if sde["N"] != 1000:  # labels = t (N − 1), unrounded: invsgm's label '999t'
        raise ValueError(f"preset {p.name!r}: N must stay 1000, got {sde['N']!r}: the network reads t·(N − 1) "
                         f"unrounded, which invsgm's denoiser provides only as 999·t")
    return {"prediction": "eps", "time_label": "999t"}


def preset_card(preset: str | Preset, **overrides: Any) -> dict[str, Any]:
    """The invsgm card of ``preset`` with ``overrides`` (e.g. ``nf=16``), checked and fully resolved.

    ``training.steps`` and ``training.final_loss`` are None (no checkpoint read); ``denoiser`` says how the
    network's output and time label read (``NetworkDenoiser`` arguments); the ``official`` section names
    the official config, the overrides, the released checkpoint, continuous or discrete time and the
    official sampler.
    """
    p = resolve_preset(preset)
    model, sde, data = _apply_overrides(p, overrides)
    card = {
        "name": p.name,
        "task": "score",
        "model": model,
        "sde": sde,
        "denoiser": None,  # filled in below, from the checked SDE section
        "data": data,
        "training": {"steps": None, "batch_size": p.training["batch_size"], "final_loss": None,
                     "ema_decay": p.training["ema_decay"], "lr": p.training["lr"],
                     "n_iters": p.training["n_iters"]},
        "command": _command("export", "CHECKPOINT", p.name, "OUT", overrides, ema=True),
        "official": {"repository": REPOSITORY, "config": p.config, "overrides": dict(overrides),
                     "checkpoint_url": p.checkpoint_url, "continuous": p.continuous, "sampling": dict(p.sampling)},
    }
    card = _check_card(card, f"preset {p.name!r}")
    card["denoiser"] = _denoiser(p, card["sde"])
    return card


def _command(action: str, checkpoint: str, preset: str, out: str, overrides: Mapping[str, Any], ema: bool) -> str:
    args = ["python", "-m", "invsgm.official", action, checkpoint, preset, out]
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: --set reads it back
    return shlex.join(args + ([] if ema else ["--raw"]))


# --- reading a checkpoint --------------------------------------------------------------------------

def _torch_load(path: Path) -> Any:
    """The official checkpoint read with ``torch.load(weights_only=True)``; a ValueError names the file."""
    return load_weights_only(path, file_hint="an official checkpoint is one checkpoint_<n>.pth file",
                             holders="Official score_sde checkpoints")


def _shape(v: Any) -> list[int] | str:
    return list(v.shape) if torch.is_tensor(v) else f"a {type(v).__name__}, not a tensor"


def official_sigmas(sigma_min: float, sigma_max: float, N: int) -> torch.Tensor:
    """The official NCSN++'s ``sigmas`` buffer (``models/utils.py:get_sigmas``), float64:
    exp(linspace(log σ_max, log σ_min, N)); index 0 is the largest σ."""
    return torch.linspace(math.log(sigma_max), math.log(sigma_min), N, dtype=torch.float64).exp()


def _uses_sigmas(p: Preset) -> bool:
    """Whether the official score of ``p`` divides by the network's ``sigmas`` table (discrete-time VE)."""
    return not p.continuous and sde_key(p.sde["kind"]) == "ve"


def _check_sigmas(path: Path, where: str, found: Any, sde: Mapping[str, Any]) -> None:
    """Refuse a ``module.sigmas`` that is not the table of the preset's σ_min, σ_max and N, naming both."""
    table = f"exp(linspace(log {sde['sigma_max']:g}, log {sde['sigma_min']:g}, {sde['N']}))"
    if found is None:
        raise ValueError(f"{path}: the checkpoint lacks 'module.sigmas', the noise-level table {table} that the "
                         f"official score of {where} divides by; is it a checkpoint of another configuration?")
    ref = official_sigmas(sde["sigma_min"], sde["sigma_max"], sde["N"])
    if not torch.is_tensor(found) or tuple(found.shape) != tuple(ref.shape):
        raise ValueError(f"{path}: 'module.sigmas' has shape {_shape(found)} in the checkpoint but {where} needs "
                         f"[{sde['N']}] (the table {table}); is it a checkpoint of another number of noise "
                         f"levels (--set N=...)?")
    found = found.detach().to("cpu", torch.float64)
    rel = ((found - ref).abs() / ref).nan_to_num(float("inf"))
    i = int(rel.argmax())
    if rel[i] <= SIGMAS_RTOL:
        return
    n = sde["N"]
    at = [0, i, n - 1] if 0 < i < n - 1 else [0, n - 1]
    names, ours, theirs = (", ".join(f"{v:.6g}" if torch.is_tensor(v) else f"sigmas[{v}]" for v in values)
                           for values in (at, [found[j] for j in at], [ref[j] for j in at]))
    hint = "set sigma_max, sigma_min and N to the checkpoint's"
    hi, lo = found[0].item(), found[-1].item()
    if 0 < lo < hi and torch.allclose(official_sigmas(lo, hi, n), found, rtol=SIGMAS_RTOL, atol=0):
        hint = f"the checkpoint's is the table of sigma_max={hi:.6g}, sigma_min={lo:.6g}: --set " + " --set ".join(
            f"{key}={value:.6g}" for key, value, mine in (("sigma_max", hi, sde["sigma_max"]),
                                                         ("sigma_min", lo, sde["sigma_min"]))
            if abs(value - mine) > SIGMAS_RTOL * mine)
    raise ValueError(f"{path}: 'module.sigmas', the noise-level table that the official score divides by, is not "
                     f"the one of {where}: {names} = {ours} in the checkpoint but {theirs} in {table} (relative "
                     f"difference {rel[i]:.2g} at index {i}); {hint}")


def _check_state(path: Path, p: Preset, overrides: Mapping[str, Any], official: Mapping[str, Any],
                 expected: Mapping[str, torch.Tensor], sde: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's ``model`` state dict under invsgm names; raise on the first key that does not fit.

    ``module.sigmas`` (the official noise-level table, not a ``UNet`` buffer) is left out; for discrete-time
    VE, whose official score divides by it, it must be the table of the SDE section ``sde``.
    """
    where = f"preset {p.name!r}" + (f" with {dict(overrides)}" if overrides else "")
    state: dict[str, Any] = {}
    sigmas = None
    for key, value in official.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: 'model' has a non-string key {key!r}")
        name = key.removeprefix("module.")
        if name == "sigmas":
            sigmas = value
        else:
            state[name] = value
    for name, ref in expected.items():
        if name not in state:
            raise ValueError(f"{path}: the checkpoint lacks 'module.{name}' that {where} needs "
                             f"(shape {list(ref.shape)}); is it a checkpoint of another configuration?")
        if not torch.is_tensor(state[name]) or tuple(state[name].shape) != tuple(ref.shape):
            raise ValueError(f"{path}: 'module.{name}' has shape {_shape(state[name])} in the checkpoint but "
                             f"{where} needs {list(ref.shape)}; is it a checkpoint of another configuration "
                             f"or width (e.g. nf)?")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ValueError(f"{path}: the checkpoint has 'module.{unexpected[0]}' that {where} does not have "
                         f"({len(unexpected)} unexpected key{'s' * (len(unexpected) > 1)}); is it a checkpoint "
                         f"of another configuration?")
    if _uses_sigmas(p):
        _check_sigmas(path, where, sigmas, sde)
    return state


def _check_ema(path: Path, ema: Any, trainable: Sequence[tuple[str, torch.nn.Parameter]]) -> list[torch.Tensor]:
    """The EMA shadow parameters, one per trainable parameter in order, shapes checked."""
    if not isinstance(ema, dict) or "shadow_params" not in ema:
        found = sorted(map(str, ema)) if isinstance(ema, dict) else type(ema).__name__
        raise ValueError(f"{path}: 'ema' must be a dict with keys {list(EMA_KEYS)}, got {found}")
    shadow = ema["shadow_params"]
    if not isinstance(shadow, (list, tuple)):
        raise ValueError(f"{path}: 'ema.shadow_params' must be a list of tensors, got {type(shadow).__name__}")
    if len(shadow) != len(trainable):
        raise ValueError(f"{path}: 'ema.shadow_params' holds {len(shadow)} tensors but the architecture has "
                         f"{len(trainable)} trainable parameters; the EMA does not belong to this model")
    for i, (s, (name, param)) in enumerate(zip(shadow, trainable)):
        if not torch.is_tensor(s) or tuple(s.shape) != tuple(param.shape):
            raise ValueError(f"{path}: 'ema.shadow_params[{i}]' (for 'module.{name}') has shape {_shape(s)} "
                             f"but the parameter has shape {list(param.shape)}")
    return list(shadow)


def load_score_sde_checkpoint(path: str | os.PathLike, preset: str | Preset, *, ema: bool = True,
                              device: torch.device | str = "cpu", **overrides: Any) -> Pretrained:
    """Load an official score_sde_pytorch checkpoint of ``preset`` as a ``Pretrained`` model (eval mode).

    Args:
        path: the official ``checkpoint_<n>.pth``.
        preset: a name of ``PRESETS`` ('ve/cifar10_ncsnpp_continuous', or a bare name, see the module docstring).
        ema: load the EMA weights (those the official code samples with); False loads the raw ``model`` weights.
        device: where the network goes.
        overrides: UNet arguments or SDE parameters replacing the preset's (e.g. ``nf=16``).

    ``.model(x, t)`` is the official score function at x in the model space (``to_model_space`` of
    images in [0, 1] with the card), a ``NetworkDenoiser`` built from the card's ``denoiser`` section; for
    the discrete-time presets it equals the official one on the training grid (see the module docstring).
    Every problem raises a ``ValueError`` naming the file: missing, truncated or corrupt file, a pickle
    that would run code (refused, not run), not a checkpoint dict, missing keys, weights of another
    configuration (first missing / unexpected key, or both shapes), a discrete-time VE checkpoint whose
    ``module.sigmas`` is not the preset's noise-level table (both named), an EMA list of the wrong length;
    an unknown preset raises listing the presets.
    """
    p = resolve_preset(preset)
    card = preset_card(p, **overrides)
    path = Path(path)
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: an official checkpoint is a dict with keys {list(CHECKPOINT_KEYS)} "
                         f"(and 'optimizer'), got a {type(ckpt).__name__}")
    needed = ("model", "step") + (("ema",) if ema else ())
    missing = [k for k in needed if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not an official score_sde checkpoint: missing key {missing[0]!r} "
                         f"(keys found: {sorted(map(str, ckpt))})")
    if not isinstance(ckpt["model"], Mapping):
        raise ValueError(f"{path}: 'model' must be a state dict, got a {type(ckpt['model']).__name__}")
    step = ckpt["step"]
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"{path}: 'step' must be an integer, got {step!r}")

    net = build_model(**card["model"])
    state = _check_state(path, p, overrides, ckpt["model"], net.state_dict(), card["sde"])
    net.load_state_dict(state)
    if ema:
        trainable = [(n, q) for n, q in net.named_parameters() if q.requires_grad]
        shadow = _check_ema(path, ckpt["ema"], trainable)
        with torch.no_grad():
            for (_, q), s in zip(trainable, shadow):
                q.copy_(s)
    decay = ckpt["ema"].get("decay") if isinstance(ckpt.get("ema"), dict) else None
    if isinstance(decay, (int, float)) and not isinstance(decay, bool):
        card["training"]["ema_decay"] = float(decay)
    card["training"]["steps"] = step
    card["command"] = _command("export", str(path), p.name, "OUT", overrides, ema)
    card["official"].update(checkpoint=str(path), weights="ema" if ema else "raw")
    card = _check_card(card, str(path))
    net.to(device).eval()
    sde = sde_from_config(**card["sde"])
    model = NetworkDenoiser(net, sde, **card["denoiser"])
    return Pretrained(card=card, net=net, sde=sde, model=model.eval(), path=path)


def export_checkpoint(path: str | os.PathLike, preset: str | Preset, out_folder: str | os.PathLike, *,
                      ema: bool = True, **overrides: Any) -> Path:
    """Convert an official checkpoint into an invsgm model folder (safetensors + card.yaml); return the folder.

    The folder loads with ``invsgm.pretrained.load_pretrained(out_folder)`` like a shipped model; its
    card's ``command`` is the export command and its ``official`` section names the source.
    """
    loaded = load_score_sde_checkpoint(path, preset, ema=ema, **overrides)
    card = dict(loaded.card)
    card["command"] = _command("export", str(path), card["name"], str(out_folder), overrides, ema)
    return save_pretrained(out_folder, loaded.net, card)


# --- command line ----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m invsgm.official {presets, show, export}``; a bad input prints the message and returns 2."""
    parser = argparse.ArgumentParser(prog="python -m invsgm.official",
                                     description="Official score_sde_pytorch checkpoints → invsgm model folders.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("presets", help="list the presets (* = the official repository released a checkpoint)")
    show = sub.add_parser("show", help="print a preset's card")
    show.add_argument("preset")
    export = sub.add_parser("export", help="write an official checkpoint as an invsgm model folder")
    export.add_argument("checkpoint", help="the official checkpoint_<n>.pth")
    export.add_argument("preset", help="e.g. ve/cifar10_ncsnpp_continuous (see 'presets')")
    export.add_argument("out", help="the model folder to write")
    export.add_argument("--raw", action="store_true", help="the raw 'model' weights instead of the EMA ones")
    for p in (show, export):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a UNet argument or SDE parameter, e.g. nf=16 (repeatable)")
    args = parser.parse_args(argv)
    try:
        if args.action == "presets":
            for p in PRESETS.values():
                print(f"{'*' if p.released else ' '} {p.name:40s} {p.config}")
        elif args.action == "show":
            card = preset_card(args.preset, **parse_sets(args.set, SET_FORM))
            print(yaml.safe_dump(card, sort_keys=False), end="")
        else:
            folder = export_checkpoint(args.checkpoint, args.preset, args.out, ema=not args.raw,
                                       **parse_sets(args.set, SET_FORM))
            print(f"wrote {folder}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


__all__ = ["PRESETS", "Preset", "export_checkpoint", "load_score_sde_checkpoint", "main", "official_sigmas",
           "preset_card", "resolve_preset"]

if __name__ == "__main__":
    sys.exit(main())
