"""invsgm.config: one YAML loader, one ``--set`` parser and one set of value checks for run, train and official."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from invsgm.config import (apply_set, apply_sets, boolean, choice, integer, is_int, is_real, mapping, number,
                           parse_set, parse_sets, parse_value, read_yaml, sde_key, sde_name, string)
from invsgm.official import main as official_main
from invsgm.run import load_run_config
from invsgm.sde import SDES, sde_from_config
from invsgm.train.config import TrainConfig, apply_overrides, load_config, parse_overrides

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "inpaint.yaml"  # sde: vp, task: {name: inpaint, mask: {box: [8, 8, 16, 16]}}
TRAIN = {"data": {"name": "digits", "image_size": 8}, "sde": {"kind": "vp"},
         "model": {"kind": "unet", "nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": []},
         "training": {"steps": 1}}


def _train_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**TRAIN, "output": str(tmp_path / "run")}))
    return path


def _official_card(capsys, *sets: str, preset: str = "vp/cifar10_ddpmpp_continuous") -> dict:
    assert official_main(["show", preset, *[a for s in sets for a in ("--set", s)]]) == 0
    return yaml.safe_load(capsys.readouterr().out)


# --- one value for one text -------------------------------------------------------------------------------

VALUES = [("1e-3", 0.001), ("2.5E+2", 250.0), ("3", 3), ("true", True), ("false", False), ("[1, 2]", [1, 2]),
          ("{a: 1}", {"a": 1}), ("null", None), ("", None), ("abc", "abc"), (" 7 ", 7), ("'1e-3'", "1e-3")]


@pytest.mark.parametrize("text, expected", VALUES)
def test_the_same_set_text_is_the_same_value_everywhere(text, expected):
    item = f"x.y={text}"
    run_values = apply_sets({}, [item])                                      # invsgm run
    train_values = apply_overrides({"model": {}}, parse_overrides([f"model.y={text}"]))  # invsgm train
    official_values = parse_sets([f"y={text}"])                               # python -m invsgm.official
    for got in (parse_value(text), run_values["x"]["y"], train_values["model"]["y"], official_values["y"]):
        assert got == expected and type(got) is type(expected), (text, got)


def test_yaml_files_read_1e_3_as_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1e-3\nb: [1e5, .5, -2E-2]\nc: yes_string\n")
    assert read_yaml(path) == {"a": 0.001, "b": [1e5, 0.5, -0.02], "c": "yes_string"}


def test_run_train_and_official_read_set_values_alike(tmp_path, capsys):
    sets = ["task.scale=1e-3", "task.flag=true", "task.sizes=[1, 2]", "task.mask.box.0=3"]
    run = load_run_config(TASK, sets)["task"]
    assert run["scale"] == 0.001 and run["flag"] is True and run["sizes"] == [1, 2]
    assert run["mask"]["box"] == [3, 8, 16, 16]  # an integer index into a list

    cfg = load_config(_train_yaml(tmp_path), ["training.lr=1e-3", "training.amp=true", "model.ch_mult=[1, 2]",
                                              "model.ch_mult.0=3", "sde.beta_min=1e-3"])
    assert cfg.training.lr == 0.001 and cfg.training.amp is True and cfg.model["ch_mult"] == [3, 2]
    assert cfg.sde["beta_min"] == 0.001

    card = _official_card(capsys, "beta_min=1e-3", "conditional=true", "nf=16")
    assert card["sde"]["beta_min"] == 0.001 and isinstance(card["sde"]["beta_min"], float)
    assert card["model"]["conditional"] is True and card["model"]["nf"] == 16
    assert "--set beta_min=0.001" in card["command"]  # and the recorded command reads back the same


def test_set_walks_mappings_and_lists():
    config = {"task": [{"name": "a"}, {"name": "b", "mask": {"box": [0, 0, 4, 4]}}], "sampler": None}
    apply_sets(config, ["task.0.scale=3", "task.-1.mask.box.2=8", "sampler.steps=10", "new.deep.key=x"])
    assert config["task"][0]["scale"] == 3 and config["task"][1]["mask"]["box"] == [0, 0, 8, 4]
    assert config["sampler"] == {"steps": 10} and config["new"] == {"deep": {"key": "x"}}
    assert parse_set(" a.b = [1, 2] ") == (["a", "b"], [1, 2])


# --- SDE names ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, key", [("vp", "vp"), ("VP", "vp"), ("sub-vp", "subvp"), ("sub_VP", "subvp"),
                                       ("SubVP", "subvp"), ("VE", "ve")])
def test_sde_names_are_normalised_identically(tmp_path, name, key):
    assert sde_key(name) == key and sde_name("sde", name) == key
    assert type(sde_from_config(name)) is SDES[key]
    assert load_run_config(TASK, [f"sde={name}"])["sde"] == key
    assert load_run_config(TASK, [f"sde={{kind: {name}, beta_max: 10}}"])["sde"] == {"kind": key, "beta_max": 10}
    assert load_config(_train_yaml(tmp_path), [f"sde.kind={name}"]).sde["kind"] == key


def test_unknown_sde_names_are_refused_alike(tmp_path):
    with pytest.raises(ValueError, match=r"unknown SDE 'ou'; expected one of \['discretevp', 'subvp', 've', 'vp'\]"):
        sde_from_config("ou")
    with pytest.raises(ValueError, match=r"^sde = 'ou': expected one of \['discretevp', 'subvp', 've', 'vp'\]"):
        load_run_config(TASK, ["sde=ou"])
    with pytest.raises(ValueError, match=r"^sde.kind = 'ou': expected one of \['discretevp', 'subvp', 've', 'vp'\]"):
        load_run_config(TASK, ["sde={kind: ou}"])
    with pytest.raises(ValueError, match=r"^sde.kind = 'ou': expected one of \['discretevp', 'subvp', 've', 'vp'\]"):
        load_config(_train_yaml(tmp_path), ["sde.kind=ou"])
    with pytest.raises(ValueError, match=r"^sde = 3: expected one of"):
        sde_name("sde", 3)


# --- errors name the key and the value -----------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: integer("a.steps", 1.5, 1), "a.steps = 1.5: expected an integer >= 1"),
    (lambda: integer("a.steps", True, 0), "a.steps = True: expected an integer >= 0"),
    (lambda: integer("seed", -1), "seed = -1: expected an integer >= 0"),
    (lambda: number("snr", 0), "snr = 0: expected a number > 0"),
    (lambda: number("scale", -1, strict=False), "scale = -1: expected a number >= 0"),
    (lambda: number("lr", float("inf")), "lr = inf: expected a number > 0"),
    (lambda: number("lr", "1e-3"), "lr = '1e-3': expected a number > 0"),
    (lambda: number("ema", 1.0, strict=False, high=1.0), "ema = 1.0: expected a number in [0, 1)"),
    (lambda: number("clip", "off", optional=True), "clip = 'off': expected a number > 0 or null"),
    (lambda: boolean("amp", "yes please"), "amp = 'yes please': expected true or false"),
    (lambda: string("device", ""), "device = '': expected a non-empty string"),
    (lambda: choice("sampler.name", "ode", ["pc", "smc"]), "sampler.name = 'ode': expected one of ['pc', 'smc']"),
    (lambda: choice("guidance", ["x"], ("pigdm", "dps")), "guidance = ['x']: expected one of ['pigdm', 'dps']"),
    (lambda: mapping("inputs", [1], ["path"]), "inputs = [1]: expected a mapping with keys from ['path']"),
    (lambda: mapping("inputs", {"pth": 1}, ["path"]), "unknown key inputs.pth = 1; expected one of ['path']"),
    (lambda: parse_set("sampler.steps"), "--set 'sampler.steps': expected KEY.SUB=VALUE"),
    (lambda: parse_set("a..b=1"), "--set 'a..b=1': expected KEY.SUB=VALUE"),
    (lambda: parse_set("a=[1,"), "--set 'a=[1,': the value '[1,' is not valid YAML"),
    (lambda: apply_set({"a": [1]}, ["a", "x"], 0, "a.x=0"), "--set a.x=0: a is a list of 1; 'x' is not an index"),
    (lambda: apply_set({"a": 3}, ["a", "b"], 0, "a.b=0"), "--set a.b=0: a = 3 is not a mapping or a list"),
])
def test_errors_name_the_key_and_the_value(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value), str(err.value)


def test_checks_return_plain_values():
    assert integer("n", 3, 1) == 3 and number("x", 2) == 2.0 and type(number("x", 2)) is float
    assert number("clip", None, optional=True) is None and boolean("b", False) is False
    assert not is_int(True) and is_int(3) and not is_real(float("nan")) and not is_real(False) and is_real(0.5)


def test_read_yaml_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"task file not found: .*nope\.yaml"):
        read_yaml(tmp_path / "nope.yaml", "task")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML"):
        read_yaml(bad)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match=r"list\.yaml: expected a mapping with keys \['a'\], got list"):
        read_yaml(tmp_path / "list.yaml", keys=["a"])
    (tmp_path / "latin.yaml").write_bytes(b"a: \xe9\n")
    with pytest.raises(ValueError, match=r"latin\.yaml: not valid YAML"):
        read_yaml(tmp_path / "latin.yaml")


def test_train_keeps_its_section_rules(tmp_path):
    with pytest.raises(ValueError, match=r"--set model: expected section.key=value"):
        apply_overrides(dict(TRAIN), {"model": {"kind": "classifier"}})
    with pytest.raises(ValueError, match=r"--set optimizer.lr: unknown section 'optimizer'"):
        apply_overrides(dict(TRAIN), {"optimizer.lr": 1})
    with pytest.raises(ValueError, match=r"--set output.x: 'output' has no sub-keys"):
        apply_overrides(dict(TRAIN), {"output.x": 1})
    with pytest.raises(ValueError, match=r"--set 'training.steps': expected section.key=value"):
        parse_overrides(["training.steps"])
    with pytest.raises(ValueError, match=r"training.steps = 'abc': expected an integer >= 1"):
        load_config(_train_yaml(tmp_path), ["training.steps=abc"])
    with pytest.raises(ValueError, match=r"--set 'training.lr=\[': the value '\[' is not valid YAML"):
        load_config(_train_yaml(tmp_path), ["training.lr=["])  # no longer read as the string '['
    with pytest.raises(ValueError, match=r"training.ema_decay = 1.5: expected a number in \[0, 1\)"):
        TrainConfig.from_dict({**TRAIN, "training": {"ema_decay": 1.5}})


def test_official_set_errors(capsys):
    assert official_main(["show", "vp/cifar10_ddpmpp_continuous", "--set", "nf"]) == 2
    assert "--set 'nf': expected KEY=VALUE, e.g. --set nf=16" in capsys.readouterr().err
    assert official_main(["show", "vp/cifar10_ddpmpp_continuous", "--set", "nf=[1,"]) == 2
    assert "--set 'nf=[1,': the value '[1,' is not valid YAML" in capsys.readouterr().err
    assert official_main(["show", "vp/cifar10_ddpmpp_continuous", "--set", "nf.x=1"]) == 2  # keys stay flat
    assert "has no setting 'nf.x'" in capsys.readouterr().err
