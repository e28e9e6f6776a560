"""OpenAI guided-diffusion (ADM) checkpoints: networks, presets, loading, export, refusals.

The reference folders in ``../shared/interop_adm`` (see their README) hold reduced-width checkpoints in the
official file layout and the official network's outputs; the tests that need them skip when it is absent.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from invsgm.adm import (PRESETS, attention_factors, export_adm_checkpoint, load_adm_checkpoint, main,
                        model_args_from_flags, preset_card, resolve_preset)
from invsgm.denoisers import NetworkDenoiser
from invsgm.models.adm import ADMClassifier, ADMUNet, qkv_attention
from invsgm.models.build import build_model
from invsgm.models.classifier import TimeConditionalClassifier
from invsgm.pretrained import _check_card, load_pretrained
from invsgm.sampling.timesteps import respaced_timesteps
from invsgm.sde import DiscreteVPSDE
from invsgm.solvers import DDIM

INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop_adm"
FOLDERS = ["ffhq_10m", "64x64_diffusion", "64x64_classifier"]
TOL = 1e-4
# the README's parameter counts of the full-width released files
OFFICIAL_COUNTS = {"ffhq_10m": 93_563_910, "256x256_diffusion_uncond": 552_814_086, "64x64_diffusion": 295_904_454,
                   "256x256_classifier": 54_096_360, "64x64_classifier": 65_438_568}
# reduced widths for tests without ../shared
SMALL = {"ffhq_10m": dict(model_channels=32, num_head_channels=16),
         "64x64_diffusion": dict(model_channels=32, num_head_channels=16, num_res_blocks=1),
         "64x64_classifier": dict(model_channels=32, num_head_channels=16, num_res_blocks=1)}


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a − ref| / max |ref|."""
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def _reference(folder: str) -> tuple[Path, dict, str, dict]:
    """(folder, card.json, preset name, overrides) of one reference folder; skip when it is absent."""
    root = INTEROP / folder
    if not (root / "model.pt").is_file():
        pytest.skip(f"reference folder {root} is absent (the ADM interop data lives in ../shared/interop_adm)")
    card = json.loads((root / "card.json").read_text())
    preset = resolve_preset(card["official_checkpoint"])
    # the preset's flags are the official ones, and so are the arguments they give
    assert {k: preset.flags[k] for k in card["official_create_args"]} == card["official_create_args"]
    used = model_args_from_flags(card["create_args"], preset.kind)
    if preset.kind == "classifier":  # create_classifier fixes 64 channels per head; the reduced file uses fewer
        assert preset.model_args()["num_head_channels"] == card["head_channels"]["official"]
        used["num_head_channels"] = card["head_channels"]["used"]
    overrides = {k: v for k, v in used.items() if v != preset.model_args()[k]}
    return root, card, preset.name, overrides


def _forward(net: torch.nn.Module, v: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return net(v["x"], v["t"], v["y"]) if isinstance(net, ADMUNet) and "y" in v else net(v["x"], v["t"])


def _check_wrappers(m, v: dict[str, torch.Tensor], out: torch.Tensor) -> None:
    """The card's denoiser / classifier read the network as ADM does: step index t·999, ε̂ and v channels."""
    t = v["t"].double() / 999  # times on the grid of the 1000-step process
    with torch.no_grad():
        if isinstance(m.model, NetworkDenoiser):
            if "y" in v:
                m.model.class_labels = v["y"]
            ev = m.model.evaluate(v["x"], t.float())
            abar = m.sde.alphas_cumprod[v["t"]]
            score = -out[:, :3].double() / (1 - abar).sqrt()[:, None, None, None]
            assert _rel(ev.score, score) < TOL
            assert _rel(ev.variance, out[:, 3:]) < TOL
        else:
            assert isinstance(m.model, TimeConditionalClassifier)
            assert _rel(m.model(v["x"], t.float()), out) < TOL


# --- the reference vectors (../shared/interop_adm) -------------------------------------------------

@pytest.mark.parametrize("folder", FOLDERS)
def test_reference_outputs_after_load_and_export(folder, tmp_path):
    root, card, preset, overrides = _reference(folder)
    v = load_file(str(root / "vectors.safetensors"))
    m = load_adm_checkpoint(root / "model.pt", preset, **overrides)
    net = m.net
    assert sum(p.numel() for p in net.parameters()) == card["n_params"]
    assert list(net.state_dict()) == list(torch.load(root / "model.pt", weights_only=True))  # official key order
    assert list(m.card["model"]["channel_mult"]) == card["derived"]["channel_mult"]
    assert list(m.card["model"]["attention_resolutions"]) == card["derived"]["attention_ds"]
    assert m.card["data"]["num_classes"] == card["derived"].get("num_classes", 1000)
    assert m.card["sde"]["schedule"] == card["diffusion"]["noise_schedule"]

    out = _forward(net, v)
    err = _rel(out, v["out"])
    print(f"\n{folder}: out rel. max-abs error {err:.2e}")
    assert out.shape == v["out"].shape and err < TOL
    _check_wrappers(m, v, out)
    if (root / "ddim.safetensors").is_file():  # the network at the first DDIM step (another timestep, from noise)
        d = load_file(str(root / "ddim.safetensors"))
        first = {"x": d["noise"], "t": d["model_timesteps"][:1].expand(2), **({"y": d["y"]} if "y" in d else {})}
        err = _rel(_forward(net, first), d["first_model_out"])
        print(f"{folder}: ddim first_model_out rel. max-abs error {err:.2e}")
        assert err < TOL

    folder_out = export_adm_checkpoint(root / "model.pt", preset, tmp_path / folder, **overrides)
    again = load_pretrained(folder_out)
    assert again.card == {**m.card, "command": again.card["command"]}
    assert again.card["command"].startswith("python -m invsgm.adm export")
    assert torch.equal(_forward(again.net, v), out)
    _check_wrappers(again, v, out)


def test_reference_schedules_match_the_discrete_vp_process():
    _reference("ffhq_10m")  # skips without ../shared
    for name in ("ffhq_10m", "64x64_diffusion"):
        ddim = load_file(str(INTEROP / name / "ddim.safetensors"))
        sde = DiscreteVPSDE(**{k: v for k, v in preset_card(name)["sde"].items() if k != "kind"})
        assert _rel(sde.alphas_cumprod, ddim["alphas_cumprod"]) < 1e-12


# --- presets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OFFICIAL_COUNTS))
def test_full_width_parameter_counts(name):
    card = preset_card(name)
    with torch.device("meta"):
        net = build_model(**card["model"])
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL_COUNTS[name]


def test_every_preset_names_its_source_and_builds():
    assert set(PRESETS) == {"ffhq_10m", "256x256_diffusion_uncond", "64x64_diffusion", "128x128_diffusion",
                            "256x256_diffusion", "512x512_diffusion", "64x64_classifier", "128x128_classifier",
                            "256x256_classifier", "512x512_classifier"}
    for name, p in PRESETS.items():
        card = preset_card(name)
        assert card["adm"]["repository"].startswith("https://github.com/")
        assert card["adm"]["checkpoint_url"].startswith("https://")
        assert card["adm"]["flags_source"] and card["adm"]["file"] == f"{name}.pt"
        assert card["sde"] == {**card["sde"], "kind": "discretevp", "N": 1000,
                               "schedule": "cosine" if name.startswith("64x64") else "linear"}
        assert card["data"]["centered"] is True and card["data"]["channels"] == 3
        if p.kind == "diffusion":
            assert card["task"] == "score" and card["model"]["kind"] == "adm_unet"
            assert card["denoiser"] == {"prediction": "eps_learned_variance", "time_label": "index"}
            conditional = name not in ("ffhq_10m", "256x256_diffusion_uncond")
            assert card["data"]["num_classes"] == card["model"]["num_classes"] == (1000 if conditional else None)
        else:
            assert card["task"] == "classifier" and card["model"]["kind"] == "adm_classifier"
            assert card["classifier"] == {"time_label": "index"}
            assert card["data"]["num_classes"] == card["model"]["out_channels"] == 1000
            assert card["model"]["num_head_channels"] == 64 and card["model"]["pool"] == "attention"
        with torch.device("meta"):
            build_model(**card["model"])
    assert preset_card("128x128_diffusion")["model"]["num_head_channels"] == -1  # 4 heads everywhere
    assert preset_card("64x64_classifier")["model"]["num_res_blocks"] == 4
    assert preset_card("512x512_diffusion")["model"]["channel_mult"][0] == 0.5
    assert resolve_preset("ffhq_10m.pt") is PRESETS["ffhq_10m"]


def test_flag_conversion():
    assert attention_factors("32,16,8", 256) == (8, 16, 32)
    assert attention_factors("16", 256) == (16,) and attention_factors(16, 256) == (16,)
    assert attention_factors("32,16,8", 64) == (2, 4, 8)
    args = model_args_from_flags({"image_size": 64, "num_channels": 64, "channel_mult": "1,2", "learn_sigma": False,
                                  "attention_resolutions": "16"})
    assert args["channel_mult"] == (1, 2) and args["out_channels"] == 3 and args["attention_resolutions"] == (4,)
    with pytest.raises(ValueError, match="image_size=48"):
        model_args_from_flags({"image_size": 48, "attention_resolutions": "16"})


def test_overrides_and_data_consistency():
    card = preset_card("ffhq_10m", model_channels=32, num_head_channels=16)
    assert card["model"]["model_channels"] == 32 and card["adm"]["overrides"] == {"model_channels": 32,
                                                                                  "num_head_channels": 16}
    assert "--set model_channels=32" in card["command"]
    with pytest.raises(ValueError, match="no setting 'nf'.*model_channels"):
        preset_card("ffhq_10m", nf=16)
    with pytest.raises(ValueError, match="model_channels.*integer"):
        preset_card("ffhq_10m", model_channels="wide")
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        preset_card("nope")
    # a card whose data and network disagree on the classes is refused, with or without classes
    bad = dict(card, data={**card["data"], "num_classes": 1000})
    with pytest.raises(ValueError, match="'data.num_classes' is 1000 but 'model.num_classes' is None"):
        _check_card(bad, "card")
    clf = preset_card("64x64_classifier")
    with pytest.raises(ValueError, match="'data.num_classes' is 10 but 'model.out_channels' is 1000"):
        _check_card(dict(clf, data={**clf["data"], "num_classes": 10}), "card")
    with pytest.raises(ValueError, match="'denoiser' has no key 'bogus'"):
        _check_card(dict(card, denoiser={"bogus": 1}), "card")
    eps_only = preset_card("ffhq_10m", out_channels=3)
    assert eps_only["denoiser"]["prediction"] == "eps"


# --- loading, export and refusals without ../shared -------------------------------------------------

def _small_checkpoint(tmp_path: Path, name: str, prefix: str = "") -> tuple[Path, torch.nn.Module]:
    """A random reduced-width network of preset ``name`` saved as a released file (plain state dict)."""
    torch.manual_seed(0)
    net = build_model(**preset_card(name, **SMALL[name])["model"]).eval()
    path = tmp_path / f"{name}.pt"
    torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)
    return path, net


@pytest.mark.parametrize("name", ["64x64_diffusion", "64x64_classifier"])
def test_load_export_reload_round_trip(name, tmp_path):
    path, net = _small_checkpoint(tmp_path, name, prefix="module.")  # a DataParallel prefix is stripped
    m = load_adm_checkpoint(path, name, **SMALL[name])
    g = torch.Generator().manual_seed(1)
    x, t, y = torch.randn(2, 3, 64, 64, generator=g), torch.tensor([999, 10]), torch.tensor([207, 933])
    args = (x, t, y) if name.endswith("diffusion") else (x, t)
    with torch.no_grad():
        ref = net(*args)
        assert torch.equal(m.net(*args), ref)
    assert not m.net.training and all(p.dtype == torch.float32 for p in m.net.parameters())
    again = load_pretrained(export_adm_checkpoint(path, name, tmp_path / "out", **SMALL[name]))
    with torch.no_grad():
        assert torch.equal(again.net(*args), ref)
    if name.endswith("diffusion"):
        assert isinstance(again.model, NetworkDenoiser) and again.model.prediction == "eps_learned_variance"
        assert again.model.time_label == "index"
        with pytest.raises(ValueError, match="needs labels y"):
            again.as_denoiser().score(x, torch.full((2,), 0.5))
        again.model.class_labels = y
        score = again.as_denoiser().score(x, t / 999)
        sde = again.sde
        assert _rel(score, -ref[:, :3] / (1 - sde.alphas_cumprod[t]).sqrt()[:, None, None, None].float()) < 1e-5
    else:
        assert isinstance(again.model, TimeConditionalClassifier) and again.model.time_label == "index"
        with torch.no_grad():
            assert torch.equal(again.model(x, t / 999), ref)


def test_another_width_or_model_is_refused_naming_key_and_shapes(tmp_path):
    path, net = _small_checkpoint(tmp_path, "64x64_classifier")
    with pytest.raises(ValueError, match=r"64x64_classifier\.pt: 'time_embed\.0\.weight' has shape \[128, 32\] in "
                                         r"the checkpoint but preset '64x64_classifier' with .* needs \[256, 64\]"):
        load_adm_checkpoint(path, "64x64_classifier", model_channels=64, num_head_channels=16, num_res_blocks=1)
    state = net.state_dict()
    missing = {k: v for k, v in state.items() if k != "out.2.c_proj.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing\.pt: the checkpoint lacks 'out\.2\.c_proj\.bias'.*shape \[1000\]"):
        load_adm_checkpoint(tmp_path / "missing.pt", "64x64_classifier", **SMALL["64x64_classifier"])
    torch.save({**state, "label_emb.weight": torch.zeros(1000, 128)}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"extra\.pt: the checkpoint has 'label_emb\.weight' that .* does not have"):
        load_adm_checkpoint(tmp_path / "extra.pt", "64x64_classifier", **SMALL["64x64_classifier"])
    with pytest.raises(ValueError, match=r"64x64_classifier\.pt: holds a guided-diffusion classifier model .* "
                                         r"choose a classifier preset"):
        load_adm_checkpoint(path, "64x64_diffusion", **SMALL["64x64_diffusion"])
    torch.save({"state_dict": state}, tmp_path / "wrapped.pt")
    with pytest.raises(ValueError, match=r"wrapped\.pt: none of the checkpoint's keys .* looks wrapped"):
        load_adm_checkpoint(tmp_path / "wrapped.pt", "64x64_classifier", **SMALL["64x64_classifier"])
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt: an ADM checkpoint is a plain state dict.*got a list"):
        load_adm_checkpoint(tmp_path / "list.pt", "64x64_classifier", **SMALL["64x64_classifier"])


def test_missing_truncated_and_corrupt_files(tmp_path):
    path, _ = _small_checkpoint(tmp_path, "64x64_classifier")
    kw = SMALL["64x64_classifier"]
    with pytest.raises(ValueError, match="no such checkpoint file"):
        load_adm_checkpoint(tmp_path / "none.pt", "64x64_classifier", **kw)
    with pytest.raises(ValueError, match="not a file"):
        load_adm_checkpoint(tmp_path, "64x64_classifier", **kw)
    data = path.read_bytes()
    for name, content in (("truncated.pt", data[: len(data) // 2]), ("text.pt", b"not a checkpoint\n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="truncated or corrupt") as err:
            load_adm_checkpoint(tmp_path / name, "64x64_classifier", **kw)
        assert name in str(err.value)


class _Payload:
    """Unpickling this creates a file: a stand-in for code a malicious checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_code_executing_pickle_is_refused_and_not_run(tmp_path):
    torch.save({"time_embed.0.weight": _Payload(tmp_path / "control")}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)  # the payload is real: an unsafe load runs it
    assert (tmp_path / "control").exists()
    marker = tmp_path / "pwned"
    torch.save({"time_embed.0.weight": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt: refused to load.*nothing in it was run"):
        load_adm_checkpoint(tmp_path / "evil.pt", "ffhq_10m")
    assert not marker.exists()


# --- command line ----------------------------------------------------------------------------------

def test_cli(tmp_path, capsys):
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in PRESETS)
    assert main(["show", "ffhq_10m", "--set", "model_channels=32", "--set", "num_head_channels=16"]) == 0
    assert "model_channels: 32" in capsys.readouterr().out
    assert main(["show", "no_such_preset"]) == 2
    assert "unknown preset 'no_such_preset'" in capsys.readouterr().err
    assert main(["show", "ffhq_10m", "--set", "bogus=1"]) == 2
    assert "no setting 'bogus'" in capsys.readouterr().err
    path, _ = _small_checkpoint(tmp_path, "64x64_classifier")
    sets = [a for k, v in SMALL["64x64_classifier"].items() for a in ("--set", f"{k}={v}")]
    assert main(["export", str(path), "64x64_classifier", str(tmp_path / "out"), *sets]) == 0
    assert load_pretrained(tmp_path / "out").card["adm"]["overrides"] == SMALL["64x64_classifier"]
    assert main(["export", str(path), "64x64_classifier", str(tmp_path / "bad")]) == 2  # full width: refused
    assert "has shape" in capsys.readouterr().err
    done = subprocess.run([sys.executable, "-m", "invsgm.adm", "show", "no_such_preset"], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2 and "unknown preset" in done.stderr


# --- the networks ----------------------------------------------------------------------------------

def _tiny_unet(**kw) -> ADMUNet:
    torch.manual_seed(0)
    args = dict(image_size=16, model_channels=32, num_res_blocks=1, attention_resolutions=(2,), channel_mult=(1, 2),
                num_head_channels=16, num_classes=10)
    return ADMUNet(**{**args, **kw}).eval()


def test_bfloat16_forward_is_close_to_float32():
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(2, 3, 16, 16, generator=g), torch.tensor([999.0, 10.0]), torch.tensor([3, 7])
    for net, args in ((_tiny_unet(), (x, t, y)), (_tiny_unet(use_new_attention_order=True), (x, t, y)),
                      (ADMClassifier(image_size=16, model_channels=32, out_channels=10, num_res_blocks=1,
                                     attention_resolutions=(2,), channel_mult=(1, 2), num_head_channels=16).eval(),
                       (x, t))):
        with torch.no_grad():
            ref = net(*args)
            low = net.to(torch.bfloat16)(*args)  # float32 input: computed in bfloat16, returned in float32
            assert low.dtype == torch.float32 and _rel(low, ref) < 5e-2
            half = net(args[0].to(torch.bfloat16), *args[1:])
            assert half.dtype == torch.bfloat16 and torch.isfinite(half).all() and _rel(half, ref) < 5e-2


def test_network_details():
    # the two qkv orders differ on the same weights (the same number of parameters)
    qkv = torch.randn(1, 3 * 32, 5)
    assert not torch.allclose(qkv_attention(qkv, 2, legacy=True), qkv_attention(qkv, 2, legacy=False))
    assert torch.allclose(qkv_attention(qkv, 1, legacy=True), qkv_attention(qkv, 1, legacy=False), atol=1e-6)
    # separate resampling layers (resblock_updown False) and the other pooling heads build and run
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 500])
    for kw in (dict(resblock_updown=False), dict(resblock_updown=False, conv_resample=False)):
        net = _tiny_unet(num_classes=None, **kw)
        assert net(x, t).shape == (2, 6, 16, 16)
        keys = net.state_dict()
        assert ("input_blocks.2.0.op.weight" in keys) is ("output_blocks.1.2.conv.weight" in keys) \
            is kw.get("conv_resample", True)
    for pool in ("adaptive", "spatial", "spatial_v2"):
        clf = ADMClassifier(image_size=16, model_channels=32, out_channels=10, num_res_blocks=1,
                            attention_resolutions=(2,), channel_mult=(1, 2), num_head_channels=16, pool=pool)
        assert clf(x, t).shape == (2, 10)
    net = _tiny_unet()
    with pytest.raises(ValueError, match="needs labels y"):
        net(x, t)
    with pytest.raises(ValueError, match="not class-conditional"):
        _tiny_unet(num_classes=None)(x, t, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="multiple of 32"):
        ADMUNet(model_channels=16)
    with pytest.raises(ValueError, match="not divisible by num_head_channels"):
        ADMUNet(model_channels=96, num_head_channels=64)
    assert net(x, 7, torch.tensor([1, 2])).shape == (2, 6, 16, 16)  # one timestep for the batch


# --- ADM's DDIM (../shared/interop_adm ddim.safetensors) --------------------------------------------

def _ddim_run(m, d: dict[str, torch.Tensor], respacing: str, clip: float | None):
    """invsgm's DDIM on the card's denoiser from the reference noise: (final x, x after step 0, network labels)."""
    den = m.as_denoiser()
    if "y" in d:
        den.class_labels = d["y"]
    labels, first = [], []
    hook = m.net.register_forward_pre_hook(lambda module, args: labels.append(args[1].clone()))
    try:
        with torch.no_grad():
            out = DDIM(clip=clip)(den, m.sde, None, None, d["noise"], respaced_timesteps(m.sde, respacing),
                                  callback=lambda i, t, x, x0: first.append(x.clone()) if i == 0 else None)
    finally:
        hook.remove()
    return out.samples, first[0], labels


@pytest.mark.parametrize("folder", ["ffhq_10m", "64x64_diffusion"])
def test_reference_ddim_runs(folder, tmp_path):
    """The official ``ddim_sample_loop`` (η = 0, respaced 'ddim10' on the linear / '10' on the cosine schedule)
    from the same noise: the network receives the original step indices in order, the first step and the
    unclipped result agree within 1e-4, the clipped (DPS) result within 1e-2; also after export + reload."""
    root, card, preset, overrides = _reference(folder)
    d = load_file(str(root / "ddim.safetensors"))
    respacing = card["ddim"]["timestep_respacing"]
    m = load_adm_checkpoint(root / "model.pt", preset, **overrides)
    kept = respaced_timesteps(m.sde, respacing)
    alpha, _ = m.sde.marginal_coeffs(kept.flip(0))
    assert _rel(alpha ** 2, d["alphas_cumprod_respaced"]) < 1e-12
    again = load_pretrained(export_adm_checkpoint(root / "model.pt", preset, tmp_path / folder, **overrides))
    sample_noclip, _, labels = _ddim_run(m, d, respacing, None)
    sample, first, _ = _ddim_run(m, d, respacing, 1.0)
    assert len(labels) == len(d["model_timesteps"])
    assert all(torch.equal(lab.long(), torch.full((2,), int(s))) for lab, s in zip(labels, d["model_timesteps"]))
    errors = {"first_sample": _rel(first, d["first_sample"]), "sample": _rel(sample, d["sample"]),
              "sample_noclip": _rel(sample_noclip, d["sample_noclip"])}
    print(f"\n{folder} DDIM: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert errors["first_sample"] < 1e-4 and errors["sample_noclip"] < 1e-4 and errors["sample"] < 1e-2
    exported = _ddim_run(again, d, respacing, None)[0]  # the exported folder's network is bit-identical
    assert torch.equal(exported, sample_noclip)
