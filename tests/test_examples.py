"""The checkpoint-family YAMLs in examples/ run end to end (``invsgm run``) on tiny random-weight checkpoints
written here in each family's own file layout: ADM (a plain state dict), score_sde (its checkpoint dict),
diffusers (a UNet2DModel folder saved by diffusers). Reduced widths, 3 respaced steps, one sample."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from invsgm.adm import preset_card as adm_card
from invsgm.cli import main
from invsgm.models.build import build_model
from invsgm.official import preset_card as score_sde_card

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
ADM_SMALL = {"ffhq_10m": "{model_channels: 32, num_head_channels: 16}",
             "64x64_diffusion": "{model_channels: 32, num_head_channels: 16, num_res_blocks: 1}",
             "64x64_classifier": "{model_channels: 32, num_head_channels: 16, num_res_blocks: 1}"}


def _randomized(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (the official initialisations zero some output layers)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return net


def _adm_checkpoint(tmp_path: Path, preset: str) -> Path:
    card = adm_card(preset, **yaml.safe_load(ADM_SMALL[preset]))
    path = tmp_path / f"{preset}.pt"
    torch.save(_randomized(build_model(**card["model"]), 0).state_dict(), path)
    return path


def _images(folder: Path, size: int, count: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _run(example: str, tmp_path: Path, sets: list[str]) -> dict:
    out = tmp_path / "out"
    args = ["run", str(REPO / "examples" / example), "--out", str(out)]
    for s in ["sampler.grid.respacing=3", "sampler.n_samples=1", *sets]:
        args += ["--set", s]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert all((out / rec["name"] / "mean.png").is_file() for rec in metrics["inputs"])
    return metrics


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES} == {"adm_ffhq_inpaint.yaml", "adm_imagenet64_class_inpaint.yaml",
                                          "diffusers_cifar10_inpaint.yaml", "score_sde_discrete_inpaint.yaml"}


def test_adm_ffhq_inpaint(tmp_path):
    ckpt = _adm_checkpoint(tmp_path, "ffhq_10m")
    _run("adm_ffhq_inpaint.yaml", tmp_path, [f"model.adm_checkpoint={ckpt}",
                                              f"model.overrides={ADM_SMALL['ffhq_10m']}",
                                              f"inputs.path={_images(tmp_path / 'faces', 256, 1)}"])


def test_adm_class_guidance_composed_with_inpainting(tmp_path):
    """ADM's class-conditional network at each input's label, guided by an ADM classifier, with inpainting."""
    model, clf = _adm_checkpoint(tmp_path, "64x64_diffusion"), _adm_checkpoint(tmp_path, "64x64_classifier")
    metrics = _run("adm_imagenet64_class_inpaint.yaml", tmp_path, [
        f"model.adm_checkpoint={model}", f"model.overrides={ADM_SMALL['64x64_diffusion']}",
        f"task.0.classifier.adm_checkpoint={clf}", f"task.0.classifier.overrides={ADM_SMALL['64x64_classifier']}",
        f"inputs.path={_images(tmp_path / 'imagenet64', 64, 2)}"])
    labels = [rec["label"] for rec in metrics["inputs"]]
    assert labels == [207, 933]


def test_score_sde_discrete_inpaint(tmp_path):
    card = score_sde_card("vp/cifar10_ddpmpp", nf=16, num_res_blocks=1)
    net = _randomized(build_model(**card["model"]), 1)
    ckpt = {"model": {f"module.{k}": v for k, v in net.state_dict().items()},
            "ema": {"decay": 0.9999, "num_updates": 1, "shadow_params": [p.detach().clone() for p in net.parameters()]},
            "step": 1, "optimizer": {}}
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    _run("score_sde_discrete_inpaint.yaml", tmp_path, [f"model.score_sde_checkpoint={path}",
                                                       "model.overrides={nf: 16, num_res_blocks: 1}",
                                                       "inputs.count=1"])


def test_diffusers_inpaint(tmp_path):
    diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
    folder = tmp_path / "ddpm"
    unet = diffusers.UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                                 layers_per_block=1, norm_num_groups=8,
                                 down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    _randomized(unet, 2).save_pretrained(folder)
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder)
    _run("diffusers_cifar10_inpaint.yaml", tmp_path, [f"model.diffusers={folder}", "inputs.count=1"])


def test_class_conditional_network_needs_a_label(tmp_path, capsys):
    """Without a class task, an ADM class-conditional model runs only at a fixed model.class_label."""
    model = _adm_checkpoint(tmp_path, "64x64_diffusion")
    sets = [f"model.adm_checkpoint={model}", f"model.overrides={ADM_SMALL['64x64_diffusion']}",
            "task={name: inpaint, mask: {box: [16, 16, 32, 32]}}", "sampler.guidance={name: replacement}",
            f"inputs={{path: {_images(tmp_path / 'in', 64, 1)}}}"]
    args = ["run", str(REPO / "examples" / "adm_imagenet64_class_inpaint.yaml"), "--out", str(tmp_path / "o")]
    for s in ["sampler.grid.respacing=3", "sampler.n_samples=1", *sets]:
        args += ["--set", s]
    assert main(args) == 2
    assert "is class-conditional (1000 classes): set model.class_label" in capsys.readouterr().err
    assert main([*args, "--set", "model.class_label=1000"]) == 2
    assert "model.class_label = 1000: the network knows classes 0 to 999" in capsys.readouterr().err
    assert main([*args, "--set", "model.class_label=3"]) == 0


@pytest.mark.parametrize("model, message", [
    ("{adm_checkpoint: x.pt}", "model: a adm_checkpoint needs a preset, e.g. preset: ffhq_10m"),
    ("{pretrained: a, diffusers: b}", "model = {'pretrained': 'a', 'diffusers': 'b'}: expected exactly one of"),
    ("{diffusers: b, preset: c}", "model.preset = 'c': a diffusers model takes no 'preset'"),
    ("{adm_checkpoint: x.pt, preset: ffhq_10m, ema: true}", "model.ema = True: a adm_checkpoint model takes no 'ema'"),
])
def test_model_spec_errors_name_the_key(tmp_path, capsys, model, message):
    args = ["run", str(REPO / "examples" / "adm_ffhq_inpaint.yaml"), "--out", str(tmp_path / "o"),
            "--set", f"model={model}"]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint_is_named(tmp_path, capsys):
    args = ["run", str(REPO / "examples" / "adm_ffhq_inpaint.yaml"), "--out", str(tmp_path / "o"),
            "--set", f"model.adm_checkpoint={tmp_path / 'nothing.pt'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "nothing.pt" in err and "Traceback" not in err
