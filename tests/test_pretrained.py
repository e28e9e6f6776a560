"""Pretrained folders (model.safetensors + card.yaml): round trips, self-describing weights, refusals, model table."""
from __future__ import annotations

import datetime
import json
import pickle
import shutil

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import invsgm.pretrained as pretrained
from invsgm.denoisers import NetworkDenoiser, score_sde_denoiser
from invsgm.models import (MLPScoreNet, NoiseConditionalClassifier, TimeConditionalClassifier, UNet,
                           build_model, model_config)
from invsgm.pretrained import (PretrainedNotFoundError, card_from_weights, from_model_space, load_pretrained,
                               save_pretrained, to_model_space)
from invsgm.sde import sde_from_config

UNET = dict(kind="unet", in_channels=1, image_size=16, nf=8, ch_mult=(1, 2), num_res_blocks=1,
            attn_resolutions=(8,), dropout=0.0, resblock_type="ddpm", fir=False, init_scale=1.0)
CLASSIFIER = dict(kind="classifier", in_channels=1, image_size=16, num_classes=3, width=8, ch_mult=(1, 2),
                  blocks_per_level=1, embedding_type="positional", init_scale=1.0)
MLP = dict(kind="mlp", dim=2, hidden=16, depth=2)



def _card(model: dict, task: str = "score", sde: dict | None = None, **data) -> dict:
    data = {"name": "synthetic", "image_size": model.get("image_size"), "channels": model.get("in_channels"),
            "centered": True, **data}
    if model["kind"] == "classifier":
        data["num_classes"] = model["num_classes"]
    return {"name": f"tiny-{model['kind']}", "task": task, "model": model,
            "sde": sde or {"kind": "ve", "sigma_min": 0.01, "sigma_max": 20.0},
            "data": {k: v for k, v in data.items() if v is not None},
            "training": {"steps": 10, "batch_size": 4, "final_loss": 0.5, "ema_decay": 0.999, "lr": 2e-4},
            "command": "invsgm train --config tiny.yaml", "samples": "samples.png"}


def _saved(folder, model: dict = UNET, task: str = "score", seed: int = 0, **card_kwargs):
    torch.manual_seed(seed)
    net = build_model(**model)
    card = _card(model, task, **card_kwargs)
    return save_pretrained(folder, net, card), net, card


# --- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model, task, sde", [(UNET, "score", {"kind": "ve", "sigma_min": 0.01, "sigma_max": 20.0}),
                                              (CLASSIFIER, "classifier", {"kind": "vp"}),
                                              (MLP, "score", {"kind": "subvp", "beta_max": 15.0})])
def test_round_trip_gives_identical_outputs(tmp_path, model, task, sde):
    folder, net, card = _saved(tmp_path / "m", model, task, sde=sde)
    loaded = load_pretrained(folder)
    ref_sde = sde_from_config(**sde)
    x = torch.randn(3, 2) if model["kind"] == "mlp" else torch.randn(3, 1, 16, 16)
    t = torch.tensor([0.05, 0.5, 0.95])
    assert not loaded.net.training and not loaded.model.training and loaded.path == folder
    assert type(loaded.sde) is type(ref_sde) and loaded.sde.config() == ref_sde.config()
    net.eval()
    with torch.no_grad():
        if task == "score":
            assert isinstance(loaded.model, NetworkDenoiser)
            assert torch.equal(loaded.model(x, t), score_sde_denoiser(net, ref_sde)(x, t))
        else:
            assert isinstance(loaded.model, TimeConditionalClassifier)
            ref = TimeConditionalClassifier(net, ref_sde)
            assert torch.equal(loaded.model(x, t), ref(x, t))
            y = torch.tensor([0, 1, 2])
            assert torch.equal(loaded.model.log_prob_grad(x, t, y), ref.log_prob_grad(x, t, y))
    # the card on disk is plain YAML: the given card with model and sde resolved (defaults filled in, lists)
    on_disk = yaml.safe_load((folder / "card.yaml").read_text())
    assert on_disk == loaded.card
    assert on_disk["model"] == model_config(**model) and on_disk["sde"] == {"kind": sde["kind"], **ref_sde.config()}
    assert {k: v for k, v in on_disk.items() if k not in ("model", "sde")} == \
           {k: v for k, v in card.items() if k not in ("model", "sde")}
    print(f"\n{model['kind']}: {sorted(p.name for p in folder.iterdir())}, "
          f"{(folder / 'model.safetensors').stat().st_size:,} bytes of weights")


def test_weights_metadata_holds_the_card(tmp_path):
    folder, _, _ = _saved(tmp_path / "m")
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    card = load_pretrained(folder).card
    assert json.loads(metadata["card"]) == card == card_from_weights(folder / "model.safetensors")
    assert metadata["format"] == "pt"


def test_bare_names_and_environment_override(tmp_path, monkeypatch):
    monkeypatch.setenv("INVSGM_PRETRAINED", str(tmp_path))
    _saved(tmp_path / "alpha")
    _saved(tmp_path / "beta", CLASSIFIER, "classifier")
    (tmp_path / "not-a-model").mkdir()
    assert pretrained.available_pretrained() == ["alpha", "beta"]
    assert load_pretrained("beta").card["task"] == "classifier"
    with pytest.raises(PretrainedNotFoundError, match=r"'gamma'.*available: \['alpha', 'beta'\]") as err:
        load_pretrained("gamma")
    assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)
    print(f"\n{err.value}")
    monkeypatch.delenv("INVSGM_PRETRAINED")
    assert pretrained.pretrained_root().name == "pretrained"
    assert pretrained.pretrained_root().parent == pretrained.Path(pretrained.__file__).resolve().parent.parent


def test_save_replaces_an_existing_folder_and_keeps_other_files(tmp_path):
    folder, _, _ = _saved(tmp_path / "m", seed=0)
    (folder / "samples.png").write_bytes(b"png")
    before = load_file(folder / "model.safetensors")
    _saved(folder, seed=1)
    after = load_file(folder / "model.safetensors")
    assert not torch.equal(before["all_modules.1.weight"], after["all_modules.1.weight"])
    assert (folder / "samples.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left


def test_save_leaves_nothing_on_error(tmp_path, monkeypatch):
    torch.manual_seed(0)
    card = _card(UNET)
    with pytest.raises(ValueError, match=r"the UNet to save: 'all_modules.0.W' has shape \[8\] but .* needs \[16\]"):
        save_pretrained(tmp_path / "m", build_model(**UNET), {**card, "model": {**UNET, "nf": 16}})

    def half_written(tensors, path, metadata):  # a disk that fills up half way through the weights
        open(path, "wb").write(b"\0" * 100)
        raise OSError("No space left on device")

    monkeypatch.setattr(pretrained, "save_file", half_written)
    with pytest.raises(OSError, match="No space"):
        save_pretrained(tmp_path / "m", build_model(**UNET), card)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("command"), "missing key 'command'"),
    (lambda c: c["data"].pop("centered"), "missing key 'data.centered'"),
    (lambda c: c["sde"].pop("kind"), "missing key 'sde.kind'"),
    (lambda c: c["training"].pop("ema_decay"), "missing key 'training.ema_decay'"),
    (lambda c: c["model"].pop("kind"), "missing key 'model.kind'"),
    (lambda c: c["data"].pop("channels"), "missing key 'data.channels'"),
    (lambda c: c["model"].update(kind="transformer"), r"unknown model kind 'transformer'; expected one of"),
    (lambda c: c["model"].update(depth=3), "'unet' model .* has no argument 'depth'"),
    (lambda c: c["model"].update(nf="wide"), "argument 'nf' must be an integer"),
    (lambda c: c["sde"].update(kind="ddim"), "sde: unknown SDE 'ddim'"),
    (lambda c: c["sde"].update(sigma=3.0), "sde: .*sigma"),
    (lambda c: c.update(task="segmentation"), "task must be one of"),
    (lambda c: c.update(task="classifier"), "task 'classifier' needs model kind classifier or adm_classifier, got 'unet'"),
    (lambda c: c["data"].update(centered="yes"), "'data.centered' must be true or false"),
    (lambda c: c["data"].update(image_size=32), "'data.image_size' is 32 but 'model.image_size' is 16"),
    (lambda c: c.update(data=[1, 2]), "key 'data' must be a mapping"),
    (lambda c: c.update(trained=datetime.date(2024, 1, 1)), "trained is a date, not a plain YAML value"),
])
def test_load_refuses_a_bad_card(tmp_path, change, message):
    folder, _, _ = _saved(tmp_path / "m")
    card = yaml.safe_load((folder / "card.yaml").read_text())
    change(card)
    (folder / "card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ValueError, match=message) as err:
        load_pretrained(folder)
    assert str(folder / "card.yaml") in str(err.value)


def test_load_refuses_missing_or_broken_card(tmp_path):
    folder, _, _ = _saved(tmp_path / "m")
    (folder / "card.yaml").write_text("name: [unclosed\ntask: score\n")
    with pytest.raises(ValueError, match="card.yaml: not valid YAML"):
        load_pretrained(folder)
    (folder / "card.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="card.yaml: a card is a mapping, got list"):
        load_pretrained(folder)
    (folder / "card.yaml").unlink()
    with pytest.raises(ValueError, match=r"card.yaml: card missing; model.safetensors holds a copy"):
        load_pretrained(folder)
    (folder / "card.yaml").write_text(yaml.safe_dump(card_from_weights(folder / "model.safetensors")))
    load_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors: weights missing"):
        load_pretrained(folder)
    with pytest.raises(ValueError, match="not a folder"):
        load_pretrained(folder / "card.yaml")


def test_load_refuses_weights_of_another_architecture(tmp_path):
    folder, _, _ = _saved(tmp_path / "m")
    other, _, _ = _saved(tmp_path / "wide", {**UNET, "nf": 16})
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors: 'all_modules.0.W' has shape \[16\] but the "
                                         r"card's architecture needs \[8\]") as err:
        load_pretrained(folder)
    print(f"\n{err.value}")

    state = build_model(**UNET).state_dict()
    last = list(state)[-1]
    save_file({k: v for k, v in state.items() if k != last}, folder / "model.safetensors")
    with pytest.raises(ValueError, match=rf"model.safetensors lacks '{last}'.*\(1 missing key\)"):
        load_pretrained(folder)
    save_file({**state, "extra.weight": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors has 'extra.weight' that the card's architecture does not"):
        load_pretrained(folder)


def test_load_refuses_truncated_weights(tmp_path):
    folder, _, _ = _saved(tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model.safetensors: not a valid safetensors file") as err:
        load_pretrained(folder)
    print(f"\n{err.value}")


def test_a_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return open, (str(marker), "w")  # unpickling creates the marker file

    payload = pickle.dumps(Exploit())
    pickle.loads(payload).close()  # the payload is live ...
    assert marker.exists()
    marker.unlink()

    folder, net, _ = _saved(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(payload)
    with pytest.raises(ValueError, match="model.safetensors: not a valid safetensors file.*never pickles"):
        load_pretrained(folder)
    assert not marker.exists()  # ... and loading did not run it
    torch.save(net.state_dict(), folder / "model.safetensors")  # a torch.save zip archive is refused too
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_pretrained(folder)


def test_save_checks_the_card(tmp_path):
    net = build_model(**UNET)
    with pytest.raises(ValueError, match="card: missing key 'training.lr'"):
        card = _card(UNET)
        card["training"].pop("lr")
        save_pretrained(tmp_path / "m", net, card)
    with pytest.raises(ValueError, match=r"card: training.final_loss is a Tensor, not a plain YAML value"):
        card = _card(UNET)
        card["training"]["final_loss"] = torch.tensor(0.5)
        save_pretrained(tmp_path / "m", net, card)
    with pytest.raises(ValueError, match="lacks 'all_modules.0.W'"):  # a positional-embedding net, a Fourier card
        save_pretrained(tmp_path / "m", build_model(**{**UNET, "embedding_type": "positional"}), _card(UNET))
    assert list(tmp_path.iterdir()) == []


def test_data_scaling():
    img = torch.tensor([0.0, 0.25, 1.0])
    centered, plain = {"data": {"centered": True}}, {"data": {"centered": False}}
    assert torch.equal(to_model_space(img, centered), torch.tensor([-1.0, -0.5, 1.0]))
    assert torch.equal(to_model_space(img, plain), img)
    for card in (centered, plain):
        assert torch.equal(from_model_space(to_model_space(img, card), card), img)
    with pytest.raises(ValueError, match="data.centered"):
        to_model_space(img, {"data": {}})


# --- the model table -----------------------------------------------------------------------------

def test_build_model_table():
    assert isinstance(build_model("unet", **{k: v for k, v in UNET.items() if k != "kind"}), UNet)
    assert isinstance(build_model(**MLP), MLPScoreNet)
    assert isinstance(build_model(**CLASSIFIER), NoiseConditionalClassifier)
    with pytest.raises(ValueError, match=r"unknown model kind 'resnet'; expected one of \['adm_classifier', 'adm_unet', 'classifier', 'mlp', 'unet'"):
        build_model("resnet")
    with pytest.raises(ValueError, match="has no argument 'channels'"):
        build_model("unet", channels=3)
    with pytest.raises(ValueError, match="needs the argument 'dim'"):
        build_model("mlp")
    with pytest.raises(ValueError, match="'ch_mult' must be a list of numbers, got 2"):
        build_model("classifier", ch_mult=2)
    with pytest.raises(ValueError, match="'fir' must be a bool"):
        build_model("unet", fir="yes")
    with pytest.raises(ValueError, match="'dropout' must be a number"):
        model_config("unet", dropout=None)
    with pytest.raises(ValueError, match="num_classes"):  # the constructor's own check
        build_model("classifier", num_classes=1)


@pytest.mark.parametrize("model", [UNET, CLASSIFIER, MLP])
def test_model_config_round_trip(model):
    config = model_config(**model)
    assert json.loads(json.dumps(config)) == config == yaml.safe_load(yaml.safe_dump(config))
    assert not any(isinstance(v, tuple) for v in config.values())
    assert model_config(**config) == config
    a, b = build_model(**model).state_dict(), build_model(**config).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
