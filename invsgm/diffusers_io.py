"""diffusers ``UNet2DModel`` folders as invsgm score models (optional: ``pip install 'invsgm[diffusers]'``).

``load_diffusers(folder)`` reads either layout diffusers writes:

- a UNet folder: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (``UNet2DModel.save_pretrained``),
  with the ``scheduler_config.json`` beside it;
- a pipeline folder: ``model_index.json``, ``unet/`` and ``scheduler/scheduler_config.json``
  (``DDPMPipeline.save_pretrained``, ``ScoreSdeVePipeline.save_pretrained``).

The network is diffusers' own ``UNet2DModel`` (``from_pretrained(..., use_safetensors=True)``, local files only);
weights are read from safetensors only: a folder holding only a pickled ``.bin`` is refused. The scheduler
config fixes the process and what the network predicts:

- DDPM-family schedulers (DDPM, DDIM, PNDM, DPM-Solver, Euler, ...): ``DiscreteVPSDE`` with
  ``beta_schedule`` linear / scaled_linear / squaredcos_cap_v2 (→ ``cosine``), ``beta_start``, ``beta_end``,
  ``num_train_timesteps``; ``prediction_type`` epsilon / sample / v_prediction → ``NetworkDenoiser``
  prediction eps / x0 / v, labelled by the integer step index (t = index/(N − 1)). A UNet with 2C output
  channels and ``variance_type: learned_range`` is ``eps_learned_variance`` (ADM's interpolation output).
  Options that only choose an inference grid (``timestep_spacing``, ``steps_offset``, ``use_karras_sigmas``,
  ...) or a sampler's clipping are ignored: invsgm's solvers take their own grid.
- ``ScoreSdeVeScheduler`` (the NCSN++ conversions, e.g. google/ncsnpp-celebahq-256): ``VESDE(sigma_min,
  sigma_max, N)``; the UNet reads σ(t) as its timestep and returns the score (a Fourier-embedded UNet2DModel
  divides by σ itself), so ``net(x, σ)`` = σ · UNet(x, σ) is a ``sigma_score`` network. Data in [0, 1]
  (``ScoreSdeVePipeline`` clamps to [0, 1]); the VP models' data is centred, [−1, 1].

Everything else (``trained_betas``, other schedules, ``rescale_betas_zero_snr``, EDM / Karras-VE and
continuous-VP schedulers, latent or text-conditional pipelines) raises a ``ValueError`` naming the file and key.

The returned ``Pretrained`` has a card of the usual shape (name, task 'score', model, sde, denoiser, data,
command) whose model kind is ``diffusers``; it is built here, not by ``invsgm.pretrained``'s card check
(which knows only invsgm's own model kinds), and there is no ``training`` section.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .denoisers import NetworkDenoiser
from .pretrained import Pretrained
from .sde import VESDE, DiscreteVPSDE

INSTALL_HINT = "diffusers is not installed: pip install 'invsgm[diffusers]'"
UNET_CONFIG, MODEL_INDEX, SCHEDULER_CONFIG = "config.json", "model_index.json", "scheduler_config.json"
SAFETENSORS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")
PICKLES = ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json")
SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
VE_SCHEDULERS = ("ScoreSdeVeScheduler",)
LATENT_COMPONENTS = ("vae", "vqvae", "text_encoder")
# diffusers' defaults of the DDPM-family schedulers, used for keys a config leaves out
DEFAULTS = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
            "prediction_type": "epsilon"}


class DiffusersUNet(nn.Module):
    """diffusers' ``UNet2DModel`` called as ``net(x, label[, class_labels])`` → tensor (its ``.sample``).

    ``scale_by_label``: multiply the output by the label (VE: the UNet returns the score at σ = label, and
    invsgm's ``sigma_score`` networks return σ·score).
    """

    def __init__(self, unet: nn.Module, scale_by_label: bool = False):
        super().__init__()
        self.unet, self.scale_by_label = unet, bool(scale_by_label)

    def forward(self, x: torch.Tensor, label: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        out = self.unet(x, label, class_labels=class_labels).sample
        if self.scale_by_label:
            out = out * label.to(out.dtype).reshape(-1, *([1] * (out.ndim - 1)))
        return out


def _import_diffusers():
    try:
        import diffusers
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return diffusers


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _layout(folder: Path, subfolder: str | None) -> tuple[Path, list[Path]]:
    """(the UNet folder, the scheduler configs to look for, in order); refuse latent / text pipelines."""
    if not folder.exists():
        raise ValueError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder; a diffusers model is a folder holding {UNET_CONFIG} and "
                         f"{SAFETENSORS[0]} (or a pipeline folder holding {MODEL_INDEX}, unet/ and scheduler/)")
    index_path = folder / MODEL_INDEX
    if index_path.is_file():
        index = _read_json(index_path)
        for key in LATENT_COMPONENTS:
            component = index.get(key)
            if isinstance(component, list) and any(component):
                raise ValueError(f"{index_path}: key {key!r}: a latent or text-conditional pipeline "
                                 f"({index.get('_class_name', '?')}); only pixel-space UNet2DModel pipelines "
                                 f"are supported")
    unet_dir = folder / subfolder if subfolder else (folder / "unet" if index_path.is_file() else folder)
    if not (unet_dir / UNET_CONFIG).is_file():
        raise ValueError(f"{unet_dir / UNET_CONFIG}: missing; a diffusers UNet folder holds {UNET_CONFIG} and {SAFETENSORS[0]}, "
                         f"a pipeline folder {MODEL_INDEX}, unet/ and scheduler/{SCHEDULER_CONFIG}")
    candidates = [unet_dir / SCHEDULER_CONFIG, folder / "scheduler" / SCHEDULER_CONFIG,
                  unet_dir.parent / "scheduler" / SCHEDULER_CONFIG]
    return unet_dir, list(dict.fromkeys(candidates))


def _scheduler(path: Path, diffusers) -> tuple[Any, dict[str, str], bool]:
    """(the SDE, the NetworkDenoiser parameterization, data centred) of a scheduler config."""
    config = _read_json(path)
    name = str(config.get("_class_name", ""))
    if name in VE_SCHEDULERS:
        try:
            sde = VESDE(sigma_min=config.get("sigma_min", 0.01), sigma_max=config.get("sigma_max", 1348.0),
                        N=config.get("num_train_timesteps", 2000))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {name}: {err}") from None
        return sde, {"prediction": "sigma_score", "time_label": "sigma"}, False
    if "Karras" in name or "EDM" in name or "sigma_data" in config:
        raise ValueError(f"{path}: key '_class_name': {name} is an EDM / Karras VE scheduler (a preconditioned "
                         f"network on a VE process); not supported")
    if "beta_schedule" not in config and ("beta_min" in config or "sigma_max" in config):
        raise ValueError(f"{path}: key '_class_name': {name or 'this scheduler'} is not a discrete DDPM "
                         f"scheduler (no 'beta_schedule'); supported: the DDPM family and ScoreSdeVeScheduler")
    if config.get("trained_betas") is not None:
        raise ValueError(f"{path}: key 'trained_betas': explicit beta tables are not supported; supported "
                         f"schedules: {sorted(SCHEDULES)}")
    if config.get("rescale_betas_zero_snr"):
        raise ValueError(f"{path}: key 'rescale_betas_zero_snr': a zero terminal SNR (ᾱ = 0 at the last step) "
                         f"is not supported")
    if config.get("timestep_type", "discrete") != "discrete":
        raise ValueError(f"{path}: key 'timestep_type': {config['timestep_type']!r}; only discrete step indices "
                         f"are supported")
    values = {key: config.get(key, default) for key, default in DEFAULTS.items()}
    schedule, prediction = values["beta_schedule"], values["prediction_type"]
    if schedule not in SCHEDULES:
        raise ValueError(f"{path}: key 'beta_schedule': {schedule!r} is not supported; supported: "
                         f"{sorted(SCHEDULES)}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"{path}: key 'prediction_type': {prediction!r} is not supported; supported: "
                         f"{sorted(PREDICTIONS)}")
    try:
        sde = DiscreteVPSDE(SCHEDULES[schedule], N=values["num_train_timesteps"],
                            beta_start=values["beta_start"], beta_end=values["beta_end"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    _same_as_diffusers(path, config, sde, diffusers)
    return sde, {"prediction": PREDICTIONS[prediction], "time_label": "index"}, True


def _same_as_diffusers(path: Path, config: dict[str, Any], sde: DiscreteVPSDE, diffusers) -> None:
    """Check ᾱ against diffusers' own scheduler built from the same config (where the class exists here):
    a key this module does not read that changes the betas is caught instead of silently ignored."""
    cls = getattr(diffusers, str(config.get("_class_name", "")), None)
    if cls is None or not hasattr(cls, "from_config"):
        return
    try:
        theirs = getattr(cls.from_config(config), "alphas_cumprod", None)
    except Exception as err:  # noqa: BLE001 - diffusers raises many kinds on a config it cannot build
        raise ValueError(f"{path}: diffusers cannot build {cls.__name__} from it ({err})") from None
    if theirs is None:
        return
    theirs = torch.as_tensor(theirs, dtype=torch.float64)
    if theirs.shape != sde.alphas_cumprod.shape or not torch.allclose(theirs, sde.alphas_cumprod, atol=1e-5,
                                                                       rtol=0):
        raise ValueError(f"{path}: diffusers' {cls.__name__} gives a noise schedule (alphas_cumprod) that differs "
                         f"from the one read from 'beta_schedule', 'beta_start', 'beta_end', "
                         f"'num_train_timesteps'; not supported")


def _unet(unet_dir: Path, diffusers, device: torch.device | str) -> tuple[nn.Module, dict[str, Any]]:
    config_path = unet_dir / UNET_CONFIG
    config = _read_json(config_path)
    name = config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise ValueError(f"{config_path}: key '_class_name': {name}; only diffusers' UNet2DModel "
                         f"(pixel-space, unconditional or class-conditional) is supported")
    if not any((unet_dir / f).is_file() for f in SAFETENSORS):
        pickled = [f for f in PICKLES if (unet_dir / f).is_file()]
        if pickled:
            raise ValueError(f"{unet_dir / pickled[0]}: pickled weights are not loaded (they can run code); "
                             f"invsgm loads only {SAFETENSORS[0]}: convert once where you trust the file, "
                             f"e.g. UNet2DModel.from_pretrained(folder).save_pretrained(folder)")
        raise ValueError(f"{unet_dir / SAFETENSORS[0]}: weights missing")
    try:
        unet = diffusers.UNet2DModel.from_pretrained(str(unet_dir), use_safetensors=True, local_files_only=True,
                                                     torch_dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise ValueError(f"{unet_dir}: diffusers could not load the UNet2DModel: {err}") from None
    return unet.to(device).eval(), config


def load_diffusers(folder: str | os.PathLike, *, device: torch.device | str = "cpu",
                   subfolder: str | None = None) -> Pretrained:
    """A diffusers ``UNet2DModel`` folder (or pipeline folder) as a ``Pretrained`` score model (see module).

    ``subfolder``: the UNet's folder inside ``folder`` (default: ``unet`` in a pipeline folder, else
    ``folder`` itself); the scheduler config is looked for beside the UNet's ``config.json``, then in
    ``scheduler/`` of ``folder``. Every failure raises a ``ValueError`` naming the file and key.
    """
    diffusers = _import_diffusers()
    folder = Path(folder).expanduser()
    unet_dir, candidates = _layout(folder, subfolder)
    scheduler_path = next((p for p in candidates if p.is_file()), None)
    if scheduler_path is None:
        raise ValueError(f"{candidates[0]}: scheduler config missing (the noise schedule and prediction type "
                         f"come from it); expected {' or '.join(str(p) for p in candidates)}")
    sde, parameterization, centered = _scheduler(scheduler_path, diffusers)
    unet, unet_config = _unet(unet_dir, diffusers, device)

    cfg = unet.config
    channels, out_channels = int(cfg.in_channels), int(cfg.out_channels)
    time_embedding = cfg.time_embedding_type
    if isinstance(sde, DiscreteVPSDE):
        if time_embedding == "fourier":
            raise ValueError(f"{unet_dir / UNET_CONFIG}: key 'time_embedding_type': 'fourier' reads a noise level "
                             f"σ (a VE model), but {scheduler_path} is a discrete VP scheduler")
        scheduler_config = _read_json(scheduler_path)
        variance_type = scheduler_config.get("variance_type")
        if out_channels == 2 * channels and variance_type == "learned_range" \
                and parameterization["prediction"] == "eps":
            parameterization["prediction"] = "eps_learned_variance"
        elif out_channels != channels:
            raise ValueError(f"{unet_dir / UNET_CONFIG}: key 'out_channels': {out_channels} output channels for "
                             f"{channels} input channels (variance_type {variance_type!r}); supported: "
                             f"out = in, or out = 2·in with variance_type 'learned_range' and epsilon prediction")
        parameterization["num_steps"] = sde.N
    elif out_channels != channels:
        raise ValueError(f"{unet_dir / UNET_CONFIG}: key 'out_channels': {out_channels} output channels for "
                         f"{channels} input channels; a VE score network has as many as it reads")

    net = DiffusersUNet(unet, scale_by_label=isinstance(sde, VESDE)).eval()
    model = NetworkDenoiser(net, sde, **parameterization).eval()
    size = cfg.sample_size
    if isinstance(size, (list, tuple)):
        size = int(size[0]) if len(set(size)) == 1 else [int(s) for s in size]
    elif size is not None:
        size = int(size)
    sde_kind = "ve" if isinstance(sde, VESDE) else "discretevp"
    card = {
        "name": folder.resolve().name,
        "task": "score",
        "model": {"kind": "diffusers", "class": "UNet2DModel",
                  "config": {k: v for k, v in unet_config.items() if not k.startswith("_")}},
        "sde": {"kind": sde_kind, **sde.config()},
        "denoiser": dict(parameterization),
        "data": {"name": folder.resolve().name, "image_size": size, "channels": channels, "centered": centered,
                 **({"num_classes": int(cfg.num_class_embeds)} if cfg.num_class_embeds else {})},
        "source": {"format": "diffusers", "unet": str(unet_dir), "scheduler": str(scheduler_path),
                   "scheduler_class": _read_json(scheduler_path).get("_class_name"),
                   "diffusers_version": unet_config.get("_diffusers_version")},
        "command": f"python -c \"from invsgm.diffusers_io import load_diffusers; load_diffusers({str(folder)!r}"
                   f"{f', subfolder={subfolder!r}' if subfolder else ''})\"",
    }
    return Pretrained(card=card, net=net, sde=sde, model=model, path=folder)


__all__ = ["DiffusersUNet", "INSTALL_HINT", "load_diffusers"]
