"""``invsgm run``: every shipped task YAML end to end (few steps), every built-in solver from a YAML, the results
layout, data consistency of the written samples, YAML and input errors, nothing half-written, seeds,
``--input``, official checkpoints, the task table (``invsgm.config.tasks``: tasks are ``Measurement`` objects)
and task and solver plugins through entry points."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from invsgm.cli import main
from invsgm.config.solvers import SOLVERS, available_solvers
from invsgm.config.tasks import TaskContext, available_tasks, build_task
from invsgm.data import digits, load_image, photos_test_images
from invsgm.measurement import ClassLabel, Joint, LinearMeasurement
from invsgm.operators import AvgPool, GaussianBlur, Grey, Identity, Mask
from invsgm.sde import VPSDE

REPO = Path(__file__).resolve().parents[1]
# the last reads ../shared/interop; in a bare clone the test writes a checkpoint of the same layout instead
TASKS = [*sorted((REPO / "tasks").glob("*.yaml")), REPO / "tests" / "official_inpaint.yaml"]
INTEROP = Path(os.environ.get("INVSGM_INTEROP", REPO.parent / "shared" / "interop"))
OFFICIAL = INTEROP / "ve_cifar10_ncsnpp_continuous" / "checkpoint.pth"
Q = 1 / 255 + 1e-6  # PNG quantisation


def _small(path: Path) -> list[str]:
    """--set items making a run of ``path`` tiny: 3 steps, 2 samples, 2 inputs."""
    spec = yaml.safe_load(path.read_text())
    sets = ["sampler.steps=3", "sampler.n_samples=2"]
    sets += ["inputs.labels=[0,3]"] if "labels" in spec["inputs"] else ["inputs.count=2"]
    return [a for s in sets for a in ("--set", s)]


def _run(args: list[str], capsys=None) -> tuple[int, str]:
    code = main(["run", *args])
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def _official_like(path: Path) -> Path:
    """A random-weight checkpoint in score_sde_pytorch's layout with the reference's architecture
    (ve/cifar10_ncsnpp_continuous at nf = 16), for ``tests/official_inpaint.yaml`` where ../shared is absent."""
    from invsgm.models.build import build_model
    from invsgm.official import preset_card

    torch.manual_seed(0)
    net = build_model(**preset_card("ve/cifar10_ncsnpp_continuous", nf=16)["model"])
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    ema = [p.detach().clone() for p in net.parameters() if p.requires_grad]
    torch.save({"model": state, "ema": {"decay": 0.999, "num_updates": 1, "shadow_params": ema}, "step": 1,
                "optimizer": {}}, path)
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Each shipped YAML run once (small), by file stem → its output folder (or the reason it was skipped)."""
    root = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    os.chdir(REPO)  # relative paths in the YAML files are resolved against the current directory
    out = {}
    try:
        for path in TASKS:
            sets = _small(path)
            if path.stem == "official_inpaint" and not OFFICIAL.is_file():  # a bare clone: write one like it
                sets += ["--set", f"model.score_sde_checkpoint={_official_like(root / 'checkpoint.pth')}"]
            folder = root / path.stem
            assert main(["run", str(path), "--out", str(folder), *sets]) == 0, path
            out[path.stem] = folder
    finally:
        os.chdir(cwd)
    return out


def _folder(results, stem) -> Path:
    folder = results[stem]
    if isinstance(folder, str):
        pytest.skip(folder)
    return folder


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64) / 255


@pytest.mark.parametrize("stem", [p.stem for p in TASKS])
def test_every_task_yaml_runs_and_writes_the_layout(results, stem, capsys):
    folder = _folder(results, stem)
    config = yaml.safe_load((folder / "run.yaml").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    inputs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert [p.name for p in inputs] == [r["name"] for r in metrics["inputs"]] and len(inputs) == 2
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    labelled = "labels" in config["inputs"]
    for d in inputs:
        names = {p.name for p in d.iterdir()}
        assert {"mean.png", "std.png", "panel.png", "samples"} <= names, names
        assert sorted(p.name for p in (d / "samples").iterdir()) == ["000.png", "001.png"]
        samples = np.stack([_png(p) for p in sorted((d / "samples").iterdir())])
        spread = samples.std(0, ddof=1)
        spread = np.sqrt((spread ** 2).mean(2)) if spread.ndim == 3 else spread  # RMS over channels
        assert np.abs(_png(d / "std.png") - np.clip(2 * spread, 0, 1)).max() <= 2 * Q  # grey, 2·std
        if not labelled:
            assert {"truth.png", "observation.png", "baseline.png"} <= names, names
    rec = metrics["inputs"][0]
    if labelled:
        assert rec["label"] == 0 and len(rec["predicted"]) == 2 and "class_accuracy" in metrics["summary"]
    else:
        assert {"mean", "samples", "baseline"} <= set(rec) and np.isfinite(rec["mean"]["psnr"])
        assert main(["eval", str(folder)]) == 0
        table = capsys.readouterr().out
        assert "baseline" in table and (folder / "eval.json").is_file()
        ev = json.loads((folder / "eval.json").read_text())
        row = next(r for r in ev["rows"] if r["input"] == rec["name"] and r["method"] == "mean")
        assert row["psnr"] == pytest.approx(rec["mean"]["psnr"], rel=1e-9)  # metrics.json = eval of the PNGs
    assert config["sampler"]["steps"] == 3 and config["seed"] == 0


def test_noiseless_inpainting_keeps_the_observed_pixels(results):
    folder = _folder(results, "inpaint")
    config = yaml.safe_load((folder / "run.yaml").read_text())
    top, left, h, w = config["task"]["mask"]["box"]
    for d in (p for p in folder.iterdir() if p.is_dir()):
        truth = _png(d / "truth.png")
        observed = np.ones(truth.shape[:2], dtype=bool)
        observed[top:top + h, left:left + w] = False
        for s in sorted((d / "samples").glob("*.png")) + [d / "mean.png"]:
            diff = np.abs(_png(s) - truth)[observed]
            assert diff.max() <= Q, (s, diff.max())
        assert np.abs(_png(d / "samples" / "000.png") - truth)[~observed].max() > 0.05  # the box was sampled


def test_colorization_keeps_the_grey_channel(results):
    folder = _folder(results, "colorize")
    for d in (p for p in folder.iterdir() if p.is_dir()):
        grey = _png(d / "truth.png").mean(2)
        samples = [_png(s) for s in sorted((d / "samples").glob("*.png"))]
        for s in samples:
            assert np.abs(s.mean(2) - grey).max() <= Q
        assert np.abs(samples[0] - samples[0].mean(2, keepdims=True)).max() > 0.02  # colours were sampled


# --- errors -------------------------------------------------------------------------------------------

def _inpaint(tmp_path, *sets, out="out", extra=()):
    args = [str(REPO / "tasks" / "inpaint.yaml"), "--out", str(tmp_path / out), "--set", "sampler.steps=2",
            "--set", "sampler.n_samples=1", "--set", "inputs.count=1"]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


@pytest.mark.parametrize("sets, expected", [
    (["sampler.stpes=3"], "sampler.stpes = 3: unknown parameter of solver 'pc'; expected one of ['guidance', "),
    (["sampler.steps=abc"], "sampler.steps = 'abc': expected an integer >= 1"),
    (["sampler.name=ode"], "sampler.name = 'ode': unknown solver; available: ['consistency', 'daps', 'ddim', 'ddpm', "
                           "'ddrm', 'diffpir', 'pc', 'repaint', 'smc'] (plugins register more under the entry-point group 'invsgm.solvers')"),
    (["sampler.name=3"], "sampler.name = 3: expected a string, one of ['consistency', 'daps', 'ddim', 'ddpm', "),
    (["sampler=3"], "sampler = 3: expected a mapping {name: one of ['consistency', 'daps', 'ddim', 'ddpm', "),
    (["sampler.snr=fast"], "sampler.snr = 'fast': expected a number (solver 'pc')"),
    (["sampler.snr=-1"], "sampler (pc): snr must be a finite number > 0, got -1"),
    (["sampler.predictor=euler"], "sampler.predictor = 'euler': expected one of ['ancestral_sampling', "),
    (["sampler.corrector=foo"], "sampler.corrector = 'foo': expected one of ['annealed_langevin', 'langevin', "),
    (["sampler.name=ddrm"], "unknown parameter of solver 'ddrm'; expected one of ['eta', 'eta_b']"),  # PC's keys
    (["sampler={name: ddrm, eta: 2}"], "sampler (ddrm): eta must be a number in [0, 1], got 2"),
    (["sampler.guidance.name=magic"], "sampler.guidance.name = 'magic': expected one of ['classifier', 'consistency', "
                                      "'dps', 'pigdm', 'replacement']"),
    (["sampler.guidance.powr=2"], "sampler.guidance.powr = 2: unknown parameter of guidance 'pigdm'; expected one "
                                  "of ['scale', 'power', 'data_variance', 'jacobian']"),
    (["sampler.guidance.scale=big"], "sampler.guidance.scale = 'big': expected a number (guidance 'pigdm')"),
    (["sampler.guidance=[{name: pigdm}]"], "sampler.guidance = [{'name': 'pigdm'}]: expected a guidance spec"),
    (["sampler.guidance={name: classifier}"], "sampler (pc): Classifier guidance needs a ClassLabel "
                                              "measurement, got LinearMeasurement(Mask"),
    (["modle.pretrained=x"], "unknown key 'modle'"),
    (["task.name=inpant"], "task.name = 'inpant': unknown task; available: ["),
    (["task.guidance=dps"], "task.guidance = 'dps': unknown parameter of task 'inpaint'; expected one of "
                            "['mask', 'sigma_y']"),  # guidance is the sampler's now
    (["task.sigma=0.1"], "task.sigma = 0.1: unknown parameter of task 'inpaint'"),
    (["task.sigma_y=lots"], "task.sigma_y = 'lots': expected a number (task 'inpaint')"),
    (["task.sigma_y=-0.1"], "task (inpaint): sigma_y = -0.1: expected a number >= 0"),
    (["task.mask={box: [8, 8, 40, 4]}"], "task (inpaint): mask.box = [8, 8, 40, 4]: box_mask: box top=8, left=8, "
                                         "height=40, width=4 does not fit in an image of size 32x32"),
    (["task.mask={circle: 3}"], "task (inpaint): mask = {'circle': 3}: expected a mapping with one of"),
    (["sampler.guidance.name=dps", "task.sigma_y=0.1", "sampler.guidance.scale=-1"],
     "sampler.guidance (dps): scale must be a finite number >= 0, got -1"),
    (["sampler.guidance={name: replacement}", "task.sigma_y=0.1"],
     "sampler (pc): Replacement needs a noiseless measurement, got sigma_y = 0.2: use PiGDM or DPS guidance"),
    (["sde=ve"], "sde = 've' but the model 'photos_crops_score' has a 'vp' SDE"),
    (["inputs.dataset=digits_test"], "'digits_test' holds square grey images but the model's samples have shape"),
    (["model.pretrained=no_such_model"], "no pretrained model 'no_such_model'"),
    (["inputs.labels=[1]"], "inputs.labels = [1]: the task has no class_conditional part"),
    (["inputs={count: 2}"], "inputs = {'count': 2}: expected {dataset: one of ['photos_test', 'digits_test', "
                                    "'phantoms_test']"),
    (["sampler={name: smc}"], "sampler (smc): SMC needs the exact likelihood p(y | x0) of "
                              "LinearMeasurement(Mask(in_shape=(3, 32, 32), out_shape=(3, 32, 32)), sigma_y=0.0) "
                              "(e.g. sigma_y > 0)"),
    (["sampler={name: repaint}", "task.sigma_y=0.1"], "sampler (repaint): RePaint needs noiseless "
                                                      "inpainting-type measurements"),
    (["device=tpu"], "device = 'tpu': expected auto, cpu, cuda or cuda:N"),
    (["sampler.steps"], "--set 'sampler.steps': expected KEY.SUB=VALUE"),
    (["sampler.steps=[1,"], "--set 'sampler.steps=[1,': the value '[1,' is not valid YAML"),
    (["task.mask.box.9=1"], "is a list of 4; '9' is not an index into it"),
])
def test_yaml_errors_name_the_key_and_value(tmp_path, capsys, sets, expected):
    # on a PC sampler section (tasks/inpaint.yaml uses DiffPIR), whose keys the cases misspell
    pc = ("sampler={name: pc, predictor: ancestral_sampling, corrector: none, steps: 2, n_samples: 1, "
          "guidance: {name: pigdm, scale: 4.0, power: 2.0, data_variance: 0.25}}")
    code, err = _run(_inpaint(tmp_path, pc, *sets), capsys)
    assert code == 2 and err.startswith("invsgm run: error: ") and expected in err, err


def test_file_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "mask.png"
    bad.write_bytes(b"not a png")
    code, err = _run(_inpaint(tmp_path, f"task.mask={{file: {bad}}}"), capsys)
    assert code == 2 and str(bad) in err and "cannot be read as an image" in err, err
    small = tmp_path / "small.png"
    Image.new("L", (16, 8)).save(small)
    code, err = _run(_inpaint(tmp_path, f"task.mask={{file: {small}}}"), capsys)
    assert code == 2 and str(small) in err and "8x16" in err and "32x32" in err, err

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (24, 20)).save(images / "a.png")
    code, err = _run(_inpaint(tmp_path, out="o2", extra=["--input", str(images)]), capsys)
    assert code == 2 and f"input image {images / 'a.png'} is 20x24 (HxW)" in err and "32x32" in err, err
    code, err = _run(_inpaint(tmp_path, out="o3", extra=["--input", str(tmp_path / "none")]), capsys)
    assert code == 2 and str(tmp_path / "none") in err, err
    code, err = _run([str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "missing.yaml" in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    code, err = _run(_inpaint(tmp_path, out="notes"), capsys)
    assert code == 2 and "not empty and holds no run.yaml" in err and (tmp_path / "notes" / "keep.txt").is_file()


def _patch_folder(folder: Path, n: int) -> list[torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    images = photos_test_images(n)
    for i, x in enumerate(images):
        a = (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(a).save(folder / f"patch_{i}.png")
    return [load_image(folder / f"patch_{i}.png") for i in range(n)]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_nothing_half_written_on_a_bad_input(tmp_path, capsys):
    images = tmp_path / "images"
    _patch_folder(images, 3)
    (images / "patch_1.png").write_bytes((images / "patch_1.png").read_bytes()[:60])  # truncated
    out = tmp_path / "out"
    code, err = _run(_inpaint(tmp_path, "sampler.batch_size=1", extra=["--input", str(images)]), capsys)
    assert code == 2 and str(images / "patch_1.png") in err, err
    assert _leftovers(out) == ["patch_0", "run.yaml"]  # no temporary folder, no metrics.json, no patch_1
    assert sorted(p.name for p in (out / "patch_0").iterdir())[:3] == ["baseline.png", "mean.png", "observation.png"]


def test_nothing_half_written_on_ctrl_c(tmp_path, capsys, monkeypatch):
    import invsgm.runner.outputs as run_module  # where invsgm run's PNGs are written

    images = tmp_path / "images"
    _patch_folder(images, 2)
    calls = {"n": 0}
    save = run_module._save_png

    def interrupted(path, image):  # the second input's folder is being written
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        save(path, image)

    monkeypatch.setattr(run_module, "_save_png", interrupted)
    code, err = _run(_inpaint(tmp_path, "sampler.batch_size=2", extra=["--input", str(images)]), capsys)
    assert code == 130 and "interrupted" in err
    assert calls["n"] == 9 and _leftovers(tmp_path / "out") == ["patch_0", "run.yaml"]


def test_inputs_are_read_one_batch_at_a_time(tmp_path, monkeypatch):
    import importlib

    import invsgm.data

    solve_module = importlib.import_module("invsgm.solve")  # the module (the package exports the function too)
    images = tmp_path / "images"
    _patch_folder(images, 5)
    loads, seen = [], []
    real_load, real_solve = invsgm.data.load_image, solve_module.solve
    monkeypatch.setattr(invsgm.data, "load_image", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))

    def solve(measurement, y, *args, **kwargs):
        seen.append((len(loads), measurement.batch_size(y)))
        return real_solve(measurement, y, *args, **kwargs)

    monkeypatch.setattr(solve_module, "solve", solve)
    assert main(["run", *_inpaint(tmp_path, "sampler.batch_size=2", extra=["--input", str(images)])]) == 0
    assert seen == [(2, 2), (4, 2), (5, 1)]


def test_seed_makes_runs_reproducible(tmp_path):
    def files(out):
        return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.png"))}

    for out, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main(["run", *_inpaint(tmp_path, "sampler.n_samples=2", out=out, extra=["--seed", seed])]) == 0
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b and len(a) == 8
    sample = Path("000/samples/000.png")
    assert a[sample] != c[sample] and a[Path("000/truth.png")] == c[Path("000/truth.png")]
    assert yaml.safe_load((tmp_path / "c" / "run.yaml").read_text())["seed"] == 6


def test_input_folder_of_pngs(tmp_path):
    images = tmp_path / "mine"
    truths = _patch_folder(images, 3)
    out = tmp_path / "out"
    assert main(["run", *_inpaint(tmp_path, extra=["--input", str(images)])]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["patch_0", "patch_1", "patch_2"]
    for i, truth in enumerate(truths):
        assert torch.equal(load_image(out / f"patch_{i}" / "truth.png"), truth)
    assert yaml.safe_load((out / "run.yaml").read_text())["inputs"] == {"path": str(images)}
    # a rerun into the same folder with fewer inputs leaves only its own input folders
    (images / "patch_2.png").unlink()
    assert main(["run", *_inpaint(tmp_path, extra=["--input", str(images)])]) == 0
    assert _leftovers(out) == ["metrics.json", "patch_0", "patch_1", "run.yaml"]


# --- official checkpoints -------------------------------------------------------------------------------

def test_official_checkpoint_in_the_official_layout(tmp_path):
    """A tiny NCSN++ (VE) written as score_sde_pytorch writes it: DataParallel keys, sigmas, EMA list, optimizer."""
    from invsgm.models.build import build_model
    from invsgm.official import preset_card

    preset = "ve/cifar10_ncsnpp_continuous"
    overrides = {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "image_size": 16, "attn_resolutions": [8]}
    card = preset_card(preset, **overrides)
    torch.manual_seed(0)
    net = build_model(**card["model"])
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.sigmas"] = torch.exp(torch.linspace(np.log(50.0), np.log(0.01), 1000))
    ema = [p.detach() + 0.01 * torch.randn_like(p) for p in net.parameters() if p.requires_grad]
    ckpt = {"optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": list(range(len(ema)))}]},
            "model": state, "ema": {"decay": 0.999, "num_updates": 7, "shadow_params": ema}, "step": 7}
    torch.save(ckpt, tmp_path / "checkpoint_7.pth")
    config = {"model": {"score_sde_checkpoint": str(tmp_path / "checkpoint_7.pth"), "preset": preset,
                        "overrides": overrides},
              "sde": "ve", "task": {"name": "inpaint", "mask": {"box": [4, 4, 8, 8]}},
              "sampler": {"steps": 3, "n_samples": 2}, "inputs": {"dataset": "photos_test", "count": 2},
              "output": str(tmp_path / "out"), "device": "cpu"}
    (tmp_path / "official.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "official.yaml")]) == 0
    resolved = yaml.safe_load((tmp_path / "out" / "run.yaml").read_text())
    assert resolved["model"]["ema"] is True and resolved["model"]["overrides"] == overrides
    d = tmp_path / "out" / "000"
    truth, sample = _png(d / "truth.png"), _png(d / "samples" / "001.png")
    assert truth.shape == (16, 16, 3)
    observed = np.ones((16, 16), dtype=bool)
    observed[4:12, 4:12] = False
    assert np.abs(sample - truth)[observed].max() <= Q  # VE, uncentred data: the model space is the image space


# --- every built-in solver from a YAML file -------------------------------------------------------------------

# (YAML in tasks/, the sampler mapping): the shipped files configure PC (predictor, corrector, guidance), keys
# the other solvers do not take, so the sampler mapping is replaced as a whole by one --set.
BUILTIN_SOLVERS = {
    "pc": ("inpaint", "{name: pc}"),
    "smc": ("super_resolution", "{name: smc, n_particles: 2, guidance: {name: pigdm, scale: 2.0, power: 2.0, "
                                "data_variance: 0.25}}"),
    "ddrm": ("super_resolution", "{name: ddrm, eta: 0.85}"),
    "diffpir": ("super_resolution", "{name: diffpir}"),
    "daps": ("super_resolution", "{name: daps, ode_steps: 2, langevin_steps: 10}"),
    "repaint": ("inpaint", "{name: repaint, jump_length: 1, resample: 2}"),
    "ddim": ("inpaint", "{name: ddim, eta: 0.5, clip: 1.0}"),
    "ddpm": ("super_resolution", "{name: ddpm, guidance: {name: pigdm, scale: 2.0, power: 2.0}}"),
    "consistency": ("inpaint", "{name: consistency, lam: 1.0}", ["model={pretrained: digits_score}",
                                                                 "task={name: mri, acceleration: 4}",
                                                                 "inputs={dataset: digits_test}"]),
}


def test_every_builtin_solver_has_a_yaml_run():
    assert sorted(BUILTIN_SOLVERS) == sorted(SOLVERS)


@pytest.mark.parametrize("name", sorted(BUILTIN_SOLVERS))
def test_builtin_solver_runs_from_a_yaml(tmp_path, name):
    stem, sampler, *extra = BUILTIN_SOLVERS[name]
    out = tmp_path / "out"
    args = [str(REPO / "tasks" / f"{stem}.yaml"), "--out", str(out), "--set", f"sampler={sampler}"]
    for s in (*(extra[0] if extra else ()), f"sampler.name={name}", "sampler.steps=2", "sampler.n_samples=1",
              "inputs.count=1"):
        args += ["--set", s]
    assert main(["run", *args]) == 0
    assert (out / "000" / "mean.png").is_file() and (out / "000" / "samples" / "000.png").is_file()
    config = yaml.safe_load((out / "run.yaml").read_text())
    assert config["sampler"]["name"] == name and config["sampler"]["steps"] == 2
    rec = json.loads((out / "metrics.json").read_text())["inputs"][0]
    assert np.isfinite(rec["mean"]["psnr"])


# --- the task table and plugins -------------------------------------------------------------------------------

def test_task_table_builds_the_documented_measurements():
    ctx = TaskContext(shape=(3, 32, 32), centered=True, sde=VPSDE())
    box = build_task({"name": "inpaint", "mask": {"box": [0, 0, 4, 4]}}, ctx)
    assert isinstance(box, LinearMeasurement) and isinstance(box.operator, Mask) and box.sigma_y == 0
    assert box.x_shape == (3, 32, 32) and not box.operator.mask[:, :4, :4].any() and box.operator.mask[:, 4:].all()
    noisy = build_task({"name": "inpaint", "mask": {"random": 0.5, "seed": 1}, "sigma_y": 0.05}, ctx)
    assert isinstance(noisy, LinearMeasurement) and noisy.sigma_y == pytest.approx(0.1)  # image units × 2
    uncentred = TaskContext(shape=(3, 32, 32), centered=False, sde=VPSDE())
    plain = build_task({"name": "denoise", "sigma_y": 0.05}, uncentred)
    assert isinstance(plain.operator, Identity) and plain.sigma_y == pytest.approx(0.05)
    grey = build_task("colorize", ctx)
    assert isinstance(grey.operator, Grey) and grey.operator.out_shape == (1, 32, 32) and grey.sigma_y == 0
    sr = build_task({"name": "super_resolution", "factor": 4, "sigma_y": 0.01}, ctx)
    assert isinstance(sr.operator, AvgPool) and sr.operator.out_shape == (3, 8, 8) and sr.sigma_y == pytest.approx(0.02)
    a = build_task({"name": "random_inpaint", "missing": 0.7, "seed": 3}, ctx).operator.mask
    b = build_task({"name": "inpaint", "mask": {"random": 0.7, "seed": 3}}, ctx).operator.mask
    assert torch.equal(a, b) and 0.6 < 1 - a.float().mean() < 0.8
    blur = build_task({"name": "deblur", "sigma": 2.0, "kernel_size": 7}, ctx)
    assert isinstance(blur.operator, GaussianBlur) and blur.operator.kernel_size == 7 and blur.sigma_y == 0
    with pytest.raises(ValueError, match=r"task\[1\]\.factor = 2\.5: expected an integer"):
        build_task([{"name": "colorize"}, {"name": "super_resolution", "factor": 2.5}], ctx)
    with pytest.raises(ValueError, match=r"kernel_size = 4: expected an odd integer"):
        build_task({"name": "deblur", "kernel_size": 4}, ctx)
    with pytest.raises(ValueError, match=r"task.guidance = 'dps': unknown parameter of task 'super_resolution'"):
        build_task({"name": "super_resolution", "guidance": "dps"}, ctx)  # how to sample is the sampler's
    with pytest.raises(ValueError, match=r"task \(denoise\): sigma_y = 0: expected a number > 0"):
        build_task({"name": "denoise", "sigma_y": 0}, ctx)


def test_class_conditional_checks_the_sde_and_composes():
    digits = TaskContext(shape=(1, 16, 16), centered=True, sde=VPSDE())
    spec = [{"name": "class_conditional"}, {"name": "inpaint", "mask": {"box": [0, 0, 8, 16]}}]
    task = build_task(spec, digits)
    assert isinstance(task, Joint) and task.x_shape == (1, 16, 16)
    label, pixels = task.parts
    assert isinstance(label, ClassLabel) and label.num_classes == 10 and label.x_shape == (1, 16, 16)
    assert isinstance(pixels, LinearMeasurement) and isinstance(pixels.operator, Mask) and pixels.sigma_y == 0
    assert isinstance(build_task([spec[0]], digits), ClassLabel)  # a list of one is that task
    with pytest.raises(ValueError, match=r"task\[0\]\.scale = 2\.0: unknown parameter of task 'class_conditional'"):
        build_task([{"name": "class_conditional", "scale": 2.0}, spec[1]], digits)  # the scale is the guidance's
    other = TaskContext(shape=(1, 16, 16), centered=True, sde=VPSDE(beta_max=10.0))
    with pytest.raises(ValueError, match=r"trained on VPSDE\(beta_min=0.1, beta_max=20.0.*score model's SDE is "
                                         r"VPSDE\(beta_min=0.1, beta_max=10.0"):
        build_task({"name": "class_conditional"}, other)


def test_image_space_observation():
    """What observation.png and the baseline see: A·img (+ σ_y noise in image units), (y + A·1)/2 for centred
    models; the masked image, and the grey axis of the image for colorization."""
    from invsgm.run import image_observation

    ctx = TaskContext(shape=(3, 32, 32), centered=True, sde=VPSDE())
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x = 2 * images - 1  # the model's space
    mask = build_task({"name": "inpaint", "mask": {"random": 0.7, "seed": 0}}, ctx)
    y = mask.simulate(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, mask.operator(x))
    torch.testing.assert_close(image_observation(mask.operator, y, True), mask.operator(images))
    grey = build_task("colorize", ctx)
    y = grey.simulate(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(image_observation(grey.operator, y, True), grey.operator(images))
    noisy = build_task({"name": "super_resolution", "factor": 2, "sigma_y": 0.01}, ctx)
    y_img = image_observation(noisy.operator, noisy.simulate(x, torch.Generator().manual_seed(0)), True)
    assert 0.005 < (y_img - noisy.operator(images)).std() < 0.02  # σ_y in image units
    assert image_observation(noisy.operator, y_img, False) is y_img  # uncentred: the model space is the image's


def test_class_guided_inpainting_of_digits(tmp_path):
    config = {"model": {"pretrained": "digits_score"}, "sde": "vp",
              "task": [{"name": "class_conditional"}, {"name": "inpaint", "mask": {"box": [0, 0, 8, 16]}}],
              "sampler": {"steps": 3, "n_samples": 2, "batch_size": 3,
                          "guidance": [{"name": "classifier", "scale": 1.0}, {"name": "replacement"}]},
              "inputs": {"dataset": "digits_test", "count": 3},
              "output": str(tmp_path / "out")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [r["label"] for r in metrics["inputs"]] == digits(split="test").labels[:3].tolist()
    assert all(len(r["predicted"]) == 2 and "mean" in r and "baseline" in r for r in metrics["inputs"])
    truth, sample = _png(tmp_path / "out" / "000" / "truth.png"), _png(tmp_path / "out" / "000" / "samples" / "000.png")
    assert np.abs(sample - truth)[8:].max() <= Q  # the observed bottom half


PLUGIN = '''
from invsgm.measurement import LinearMeasurement
from invsgm.operators import box_mask


def top_half(ctx, rows: int = 8):
    """Inpaint the top ``rows`` rows."""
    return LinearMeasurement(box_mask(ctx.shape, 0, 0, rows, ctx.shape[2]))


def not_a_measurement(ctx):
    return "pixels"
'''


def _dist(site: Path, name: str, entry_points: str) -> None:
    """An installed distribution ``name`` 0.1 in the folder ``site`` (to put on sys.path) with these entry points."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_task_plugin_through_an_entry_point(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    _dist(site, "invsgm_test_plugin", "[invsgm.tasks]\ntop_half = invsgm_test_plugin:top_half\n"
                                      "broken = invsgm_no_such_module:factory\n"
                                      "not_a_measurement = invsgm_test_plugin:not_a_measurement\n")
    (site / "invsgm_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    assert "top_half" in available_tasks()
    spec = yaml.safe_load((REPO / "tasks" / "inpaint.yaml").read_text())
    spec.update(task={"name": "top_half", "rows": 12}, output=str(tmp_path / "out"),
                sampler={"steps": 2, "n_samples": 1}, inputs={"dataset": "photos_test", "count": 1})
    (tmp_path / "plugin.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", str(tmp_path / "plugin.yaml")]) == 0
    d = tmp_path / "out" / "000"
    assert np.abs(_png(d / "samples" / "000.png") - _png(d / "truth.png"))[12:].max() <= Q
    code, err = _run([str(tmp_path / "plugin.yaml"), "--set", "task.rows=many"], capsys)
    assert code == 2 and "task.rows = 'many': expected an integer (task 'top_half')" in err
    code, err = _run([str(tmp_path / "plugin.yaml"), "--set", "task={name: broken}"], capsys)
    assert code == 2 and "a module is missing: task plugin 'broken' (invsgm_no_such_module:factory)" in err, err
    code, err = _run([str(tmp_path / "plugin.yaml"), "--set", "task={name: not_a_measurement}"], capsys)
    assert code == 2 and "task: the factory of task 'not_a_measurement' returned a str, not a Measurement" in err, err
    shutil.rmtree(site)
    code, err = _run([str(tmp_path / "plugin.yaml")], capsys)
    assert code == 2 and "task.name = 'top_half': unknown task" in err, err


SOLVER_PLUGIN = '''
from invsgm.guidance import Guidance
from invsgm.measurement import LinearMeasurement
from invsgm.solvers import PC, Solver, SolverResult

CALLS = []  # (network evaluations, rows) of every call


class ConsistentPC(Solver):
    """Unguided PC steps (the prior's sample), then x projected onto {x: A x = y}: x + A⁺(y − A x)."""

    name = "consistent_pc"

    def __init__(self, n_corrector_steps: int = 0):
        self.pc = PC(guidance=Guidance(), n_corrector_steps=n_corrector_steps)

    def check(self, measurement):
        if not isinstance(measurement, LinearMeasurement):
            raise ValueError(f"consistent_pc needs a linear measurement, got {measurement!r}")

    def __call__(self, denoiser, sde, measurement, y, x, timesteps, *, generator=None, callback=None):
        out = self.pc(denoiser, sde, measurement, y, x, timesteps, generator=generator, callback=callback)
        CALLS.append((out.nfe, x.shape[0]))
        return SolverResult(measurement.consistent(out.samples, y), out.nfe)


def not_a_solver(x):
    return x
'''


def test_solver_plugin_through_an_entry_point(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    _dist(site, "invsgm_test_solver", "[invsgm.solvers]\nconsistent_pc = invsgm_test_solver:ConsistentPC\n"
                                      "not_a_solver = invsgm_test_solver:not_a_solver\n")
    (site / "invsgm_test_solver.py").write_text(SOLVER_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "invsgm_test_solver", raising=False)
    assert "consistent_pc" in available_solvers()
    spec = {"model": {"pretrained": "photos_score"}, "sde": "vp",
            "task": {"name": "inpaint", "mask": {"box": [8, 8, 16, 16]}},
            "sampler": {"name": "consistent_pc", "steps": 2, "n_samples": 2, "n_corrector_steps": 1},
            "inputs": {"dataset": "photos_test", "count": 1}, "output": str(tmp_path / "out")}
    (tmp_path / "solver.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", str(tmp_path / "solver.yaml")]) == 0
    plugin = sys.modules["invsgm_test_solver"]  # loaded by the entry point
    assert plugin.CALLS == [(2 * (1 + 1) + 1, 2)]  # 2 predictor + 2 corrector steps + the last x̂₀; 1 input × 2
    assert yaml.safe_load((tmp_path / "out" / "run.yaml").read_text())["sampler"]["n_corrector_steps"] == 1
    d = tmp_path / "out" / "000"
    observed = np.ones((32, 32), dtype=bool)
    observed[8:24, 8:24] = False
    for s in ("samples/000.png", "samples/001.png", "mean.png"):
        assert np.abs(_png(d / s) - _png(d / "truth.png"))[observed].max() <= Q  # its projection, exactly
    code, err = _run([str(tmp_path / "solver.yaml"), "--set", "sampler.eta=0.5"], capsys)
    assert code == 2 and ("sampler.eta = 0.5: unknown parameter of solver 'consistent_pc'; expected one of "
                          "['n_corrector_steps']") in err, err
    code, err = _run([str(tmp_path / "solver.yaml"), "--set", "sampler.n_corrector_steps=many"], capsys)
    assert code == 2 and "sampler.n_corrector_steps = 'many': expected an integer (solver 'consistent_pc')" in err
    code, err = _run([str(tmp_path / "solver.yaml"), "--set", "task={name: class_conditional}", "--set",
                      "model.pretrained=digits_score", "--set", "inputs={labels: [1]}"], capsys)
    assert code == 2 and "sampler (consistent_pc): consistent_pc needs a linear measurement" in err, err
    code, err = _run([str(tmp_path / "solver.yaml"), "--set", "sampler={name: not_a_solver}"], capsys)
    assert code == 2 and "solver plugin 'not_a_solver' is not an invsgm Solver subclass" in err, err
    assert len(plugin.CALLS) == 1  # none of the failed runs sampled
    shutil.rmtree(site)
    code, err = _run([str(tmp_path / "solver.yaml")], capsys)
    assert code == 2 and "sampler.name = 'consistent_pc': unknown solver" in err, err


def test_set_paths_reach_nested_keys_and_list_entries():
    from invsgm.run import apply_set, parse_set

    config = {"task": [{"name": "class_conditional"}, {"name": "inpaint", "mask": {"box": [0, 0, 4, 4]}}],
              "sampler": {"guidance": [{"name": "classifier"}, {"name": "replacement"}]}}
    for item in ("sampler.guidance.0.scale=3", "task.1.mask.box=[1, 2, 3, 4]", "sampler.steps=1e3", "output=out/x"):
        apply_set(config, *parse_set(item), item)
    assert config["sampler"]["guidance"][0] == {"name": "classifier", "scale": 3}
    assert config["task"][1]["mask"]["box"] == [1, 2, 3, 4]
    assert config["sampler"]["steps"] == 1000.0 and config["output"] == "out/x"
    with pytest.raises(ValueError, match=r"--set task.name=x: task is a list of 2; 'name' is not an index"):
        apply_set(config, *parse_set("task.name=x"), "task.name=x")


def test_labels_outside_the_classifier_classes(tmp_path, capsys):
    code, err = _run([str(REPO / "tasks" / "class_conditional.yaml"), "--out", str(tmp_path / "o"),
                      "--set", "inputs.labels=[3, 12]"], capsys)
    assert code == 2 and "inputs.labels: label 12 is not a class of the classifier (0 to 9)" in err, err
