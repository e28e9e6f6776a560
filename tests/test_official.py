"""Official score_sde_pytorch checkpoints: presets, loading (EMA / raw), export, and refusals.

The reference folders in ``shared/interop`` (see their README) hold reduced-width checkpoints in the
official file layout and the official network's outputs at given (x, t).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from invsgm.models.build import build_model
from invsgm.models.unet import UNet, parameter_count
from invsgm.official import (PRESETS, export_checkpoint, load_score_sde_checkpoint, main, preset_card,
                             resolve_preset)
from invsgm.pretrained import from_model_space, load_pretrained, to_model_space

INTEROP = Path(os.environ.get("INVSGM_INTEROP", Path(__file__).resolve().parents[2] / "shared" / "interop"))
FOLDERS = ["ve_cifar10_ncsnpp_continuous", "vp_cifar10_ddpmpp_continuous", "ve_ffhq_256_ncsnpp_continuous"]


def _reference(folder: str) -> tuple[Path, dict, str, dict]:
    """(folder, card.json, preset name, overrides) of one reference folder; skip when it is absent."""
    root = INTEROP / folder
    if not (root / "checkpoint.pth").is_file():
        pytest.skip(f"reference folder {root} is absent (set INVSGM_INTEROP to the shared/interop folder)")
    card = json.loads((root / "card.json").read_text())
    preset = card["official_config"].removeprefix("configs/").removesuffix(".py")  # 've/cifar10_ncsnpp_continuous'
    overrides = {key.removeprefix("model."): value for key, value in card["overrides"].items()}
    return root, card, preset, overrides


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a − ref| / max |ref|."""
    return ((a - ref).abs().max() / ref.abs().max()).item()


def _official_raw(net: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, scale_by_sigma: bool) -> torch.Tensor:
    """What the official network returns: ours, divided by σ where the official one divides (VE)."""
    raw = net(x, labels)
    return raw / labels[:, None, None, None] if scale_by_sigma else raw


# --- the reference vectors -------------------------------------------------------------------------

@pytest.mark.parametrize("folder", FOLDERS)
def test_reference_outputs_after_load_and_export(folder, tmp_path):
    root, card, preset, overrides = _reference(folder)
    v = load_file(str(root / "vectors.safetensors"))
    m = load_score_sde_checkpoint(root / "checkpoint.pth", preset, **overrides)
    # x is the official score function's input; the card's data space is the official one (centred or not)
    assert m.card["data"]["centered"] is card["data"]["centered"]
    assert m.card["model"]["input_centering"] is (not card["data"]["centered"])
    with torch.no_grad():
        raw = _official_raw(m.net, v["x"], v["labels"], card["model"]["scale_by_sigma"])
        score = m.model(v["x"], v["t"])
    errors = {"labels": _rel(m.model.label(v["t"]), v["labels"]), "raw": _rel(raw, v["raw"]),
              "score": _rel(score, v["score"])}

    out = export_checkpoint(root / "checkpoint.pth", preset, tmp_path / "exported", **overrides)
    e = load_pretrained(out)
    with torch.no_grad():
        errors["score after export"] = _rel(e.model(v["x"], v["t"]), v["score"])
    print(f"\n{folder} ({preset}, {overrides}): {parameter_count(m.net):,} trainable parameters; relative max-abs "
          f"error " + ", ".join(f"{k} {err:.1e}" for k, err in errors.items()))
    assert max(errors.values()) < 1e-4, errors
    assert e.card["training"]["steps"] == 1234 and e.card["training"]["ema_decay"] == card["model"]["ema_rate"]
    assert e.card["official"]["config"] == card["official_config"] and e.card["official"]["weights"] == "ema"
    assert e.card["data"]["centered"] is card["data"]["centered"]
    assert "--set nf=" in e.card["command"] and str(out) in e.card["command"]


def test_user_images_in_unit_interval_map_to_the_official_data_space():
    """VE presets: images in [0, 1] are the model space (the net centres); VP: they map to [−1, 1]."""
    img = torch.rand(2, 3, 4, 4)
    ve, vp = preset_card("ve/cifar10_ncsnpp_continuous"), preset_card("vp/cifar10_ddpmpp_continuous")
    assert torch.equal(to_model_space(img, ve), img) and ve["model"]["input_centering"] is True
    assert torch.allclose(to_model_space(img, vp), 2 * img - 1) and vp["model"]["input_centering"] is False
    assert torch.allclose(from_model_space(to_model_space(img, vp), vp), img)


def test_input_centering_is_the_official_map():
    torch.manual_seed(0)
    kw = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, image_size=8, progressive_input="residual", dropout=0.0)
    plain, centring = UNet(**kw).eval(), UNet(input_centering=True, **kw).eval()
    centring.load_state_dict(plain.state_dict())
    x, labels = torch.rand(2, 3, 8, 8), torch.tensor([0.5, 3.0])
    with torch.no_grad():
        assert torch.equal(centring(x, labels), plain(2 * x - 1, labels))
    with pytest.raises(ValueError, match="input_centering"):
        UNet(input_centering="yes", **kw)


@pytest.mark.parametrize("folder", FOLDERS)
def test_preset_is_the_official_configuration(folder):
    """Each setting of the preset equals the official config recorded in the reference card.json."""
    _, card, preset, overrides = _reference(folder)
    c, official = preset_card(preset, **overrides), card["model"]
    model_keys = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resblock_type", "embedding_type",
                  "fourier_scale", "fir", "fir_kernel", "resamp_with_conv", "skip_rescale", "init_scale", "progressive",
                  "progressive_input", "progressive_combine", "conditional", "nonlinearity", "attention_type")
    for key in model_keys:
        assert c["model"][key] == official[key], key
    sde_keys = {"ve": ("sigma_min", "sigma_max"), "vp": ("beta_min", "beta_max")}[c["sde"]["kind"]]
    for key in sde_keys:
        assert c["sde"][key] == card["sde_params"][key], key
    assert c["sde"]["N"] == official["num_scales"] == card["sde_params"]["N"]
    assert c["sde"]["kind"] + "sde" == card["sde"]
    assert (c["data"]["image_size"], c["data"]["channels"], c["data"]["centered"]) == \
        (card["data"]["image_size"], card["data"]["num_channels"], card["data"]["centered"])
    assert c["training"]["ema_decay"] == official["ema_rate"]


# --- presets ---------------------------------------------------------------------------------------

def test_every_preset_builds_and_parameter_counts():
    counts = {}
    for name in PRESETS:
        card = preset_card(name)
        with torch.device("meta"):
            counts[name] = parameter_count(build_model(**card["model"]))
    print("\nfull-width trainable parameters (M): "
          + ", ".join(f"{name} {n / 1e6:.2f}" for name, n in counts.items()))
    # Reduced width: every parameter of the official network, counted by the official code (card.json n_params).
    for folder in FOLDERS:
        root, card, preset, overrides = _reference(folder)
        with torch.device("meta"):
            net = build_model(**preset_card(preset, **overrides)["model"])
        assert sum(p.numel() for p in net.parameters()) == card["n_params"], folder
    # Full width: the architectures whose every key and shape matches the official net at reduced width; the
    # sizes usually quoted for them are ≈ 62 M (NCSN++/DDPM++ cont., 4 blocks) and ≈ 107 M (deep, 8 blocks).
    for name, n in counts.items():
        if name.split("/")[1].startswith("cifar10"):
            lo, hi = (106e6, 108e6) if "deep" in name else (61e6, 63e6)
            assert lo < n < hi, (name, n)
    # NCSN++ is DDPM++ with FIR resampling (no parameters) and the residual input pyramid (its convolutions)
    assert counts["vp/cifar10_ncsnpp_continuous"] > counts["vp/cifar10_ddpmpp_continuous"]
    assert counts["vp/cifar10_ddpmpp_continuous"] == counts["subvp/cifar10_ddpmpp_continuous"]


def test_preset_names():
    assert resolve_preset("cifar10_ncsnpp_continuous").name == "ve/cifar10_ncsnpp_continuous"  # only VE released
    assert resolve_preset("ffhq_1024_ncsnpp_continuous").name == "ve/ffhq_1024_ncsnpp_continuous"
    with pytest.raises(ValueError, match=r"ambiguous.*vp/cifar10_ddpmpp_continuous.*subvp/cifar10_ddpmpp_continuous"):
        resolve_preset("cifar10_ddpmpp_continuous")
    with pytest.raises(ValueError, match=r"unknown preset 'cifar100'.*ve/cifar10_ncsnpp_continuous"):
        resolve_preset("cifar100")
    with pytest.raises(ValueError, match=r"no setting 'width'.*nf"):
        preset_card("ve/cifar10_ncsnpp_continuous", width=16)
    with pytest.raises(ValueError, match="'nf'"):
        preset_card("ve/cifar10_ncsnpp_continuous", nf="16")
    c = preset_card("ve/church_ncsnpp_continuous", sigma_max=100.0, image_size=128)
    assert c["sde"]["sigma_max"] == 100.0 and c["data"]["image_size"] == c["model"]["image_size"] == 128


# --- weights: EMA vs raw -------------------------------------------------------------------------

def test_ema_weights_by_default_raw_weights_on_request(tmp_path):
    """The reference outputs come from the EMA weights; ``ema=False`` loads the ``model`` entry instead.

    (In the reference files the two are equal, so a copy with perturbed raw weights tells them apart.)
    """
    root, card, preset, overrides = _reference("vp_cifar10_ddpmpp_continuous")
    ckpt = torch.load(root / "checkpoint.pth", map_location="cpu", weights_only=True)
    g = torch.Generator().manual_seed(0)
    ckpt["model"] = {k: v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() and k != "module.sigmas"
                     else v for k, v in ckpt["model"].items()}
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    ema = load_score_sde_checkpoint(path, preset, **overrides)
    raw = load_score_sde_checkpoint(path, preset, ema=False, **overrides)
    for name, value in raw.net.state_dict().items():
        assert torch.equal(value, ckpt["model"][f"module.{name}"]), name
    trainable = [p for p in ema.net.parameters() if p.requires_grad]
    assert len(trainable) == len(ckpt["ema"]["shadow_params"])
    assert all(torch.equal(p, s) for p, s in zip(trainable, ckpt["ema"]["shadow_params"]))
    v = load_file(str(root / "vectors.safetensors"))
    with torch.no_grad():
        err_ema, err_raw = _rel(ema.model(v["x"], v["t"]), v["score"]), _rel(raw.model(v["x"], v["t"]), v["score"])
    print(f"\nEMA weights: score error {err_ema:.1e}; perturbed raw weights (ema=False): {err_raw:.2f}")
    assert err_ema < 1e-4 < 1e-2 < err_raw
    assert ema.card["official"]["weights"] == "ema" and raw.card["official"]["weights"] == "raw"
    assert raw.card["command"].endswith("--raw")


# --- malformed inputs ------------------------------------------------------------------------------

def test_missing_truncated_and_corrupt_files(tmp_path):
    root, _, preset, overrides = _reference("ve_cifar10_ncsnpp_continuous")
    with pytest.raises(ValueError, match="no such checkpoint file"):
        load_score_sde_checkpoint(tmp_path / "none.pth", preset, **overrides)
    with pytest.raises(ValueError, match="not a file"):
        load_score_sde_checkpoint(tmp_path, preset, **overrides)
    data = (root / "checkpoint.pth").read_bytes()
    for name, content in (("truncated.pth", data[: len(data) // 2]), ("empty.pth", b""),
                          ("text.pth", b"not a checkpoint at all\n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="truncated or corrupt") as err:  # garbage may read as a bad pickle
            load_score_sde_checkpoint(tmp_path / name, preset, **overrides)
        assert name in str(err.value)
        print(f"\n{err.value}")


class _Payload:
    """Unpickling this creates a file: a stand-in for code a malicious checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_code_executing_pickle_is_refused_and_not_run(tmp_path):
    _, _, preset, overrides = _reference("ve_cifar10_ncsnpp_continuous")
    # the payload is real: an ordinary (unsafe) load runs it
    torch.save({"model": _Payload(tmp_path / "control")}, tmp_path / "control.pth")
    torch.load(tmp_path / "control.pth", weights_only=False)
    assert (tmp_path / "control").exists()

    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(marker), "ema": {}, "step": 0}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"evil\.pth: refused to load.*nothing in it was run") as err:
        load_score_sde_checkpoint(tmp_path / "evil.pth", preset, **overrides)
    print(f"\n{err.value}")
    assert not marker.exists()


def test_not_a_checkpoint_dict(tmp_path):
    _, _, preset, overrides = _reference("ve_cifar10_ncsnpp_continuous")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth: an official checkpoint is a dict.*got a list"):
        load_score_sde_checkpoint(tmp_path / "list.pth", preset, **overrides)
    torch.save({"model": {}, "step": 3}, tmp_path / "noema.pth")
    with pytest.raises(ValueError, match=r"noema\.pth: not an official score_sde checkpoint: missing key 'ema'"):
        load_score_sde_checkpoint(tmp_path / "noema.pth", preset, **overrides)
    torch.save({"model": {}, "ema": {}, "step": 3}, tmp_path / "empty_model.pth")
    with pytest.raises(ValueError, match=r"lacks 'module.all_modules.0.W'"):
        load_score_sde_checkpoint(tmp_path / "empty_model.pth", preset, **overrides)


def test_checkpoint_of_another_configuration(tmp_path):
    root, _, preset, overrides = _reference("ve_cifar10_ncsnpp_continuous")
    path = root / "checkpoint.pth"
    with pytest.raises(ValueError) as err:  # the full-width preset: first key, both shapes
        load_score_sde_checkpoint(path, preset)
    print(f"\nwrong width: {err.value}")
    assert "'module.all_modules.0.W' has shape [16] in the checkpoint" in str(err.value)
    assert "needs [128]" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(ValueError, match=r"lacks 'module.all_modules.0.weight'"):  # DDPM++ has no Fourier layer
        load_score_sde_checkpoint(path, "vp/cifar10_ddpmpp_continuous", **overrides)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["model"]["module.extra.weight"] = torch.zeros(2)
    torch.save(ckpt, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth: the checkpoint has 'module.extra.weight' that preset "
                                         r"'ve/cifar10_ncsnpp_continuous' with \{'nf': 16\} does not have"):
        load_score_sde_checkpoint(tmp_path / "extra.pth", preset, **overrides)

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["ema"]["shadow_params"] = ckpt["ema"]["shadow_params"][:-1]
    torch.save(ckpt, tmp_path / "short_ema.pth")
    with pytest.raises(ValueError, match=r"short_ema\.pth: 'ema.shadow_params' holds 569 tensors but the "
                                         r"architecture has 570 trainable parameters"):
        load_score_sde_checkpoint(tmp_path / "short_ema.pth", preset, **overrides)
    assert load_score_sde_checkpoint(tmp_path / "short_ema.pth", preset, ema=False, **overrides).card


# --- command line ----------------------------------------------------------------------------------

def test_command_line(tmp_path, capsys):
    root, _, preset, overrides = _reference("vp_cifar10_ddpmpp_continuous")
    ckpt, out = str(root / "checkpoint.pth"), tmp_path / "model"
    assert main(["export", ckpt, preset, str(out), "--set", f"nf={overrides['nf']}"]) == 0
    assert load_pretrained(out).card["model"]["nf"] == overrides["nf"]
    assert main(["export", ckpt, preset, str(tmp_path / "x")]) == 2  # full width: does not fit
    assert "needs [" in capsys.readouterr().err
    assert main(["export", ckpt, "nope", str(tmp_path / "x"), "--set", "nf=16"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["show", "cifar10_ncsnpp_continuous"]) == 0
    assert "input_centering: true" in capsys.readouterr().out
    assert not (tmp_path / "x").exists()
    # the module entry point: messages on stderr, exit status 2
    done = subprocess.run([sys.executable, "-m", "invsgm.official", "export", str(tmp_path / "none.pth"), preset,
                           str(tmp_path / "y")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no such checkpoint file" in done.stderr, done.stderr
